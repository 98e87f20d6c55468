/**
 * The operations a model forward pass needs, on buffers that live in one arena (every pointer
 * below is an arena byte offset; activations are f32). Two implementations share this shape:
 * the WASM kernels (fast path) and the reference kernels (the oracle), chosen in registry.ts,
 * so the whole engine runs on either and the test suite can force the reference path.
 *
 * Shapes use the row-major convention of the model: a weight W is [nOut, nIn] (each row
 * rowSizeBytes(dtype, nIn) bytes), activations are [nTokens, features].
 */
import type { Arena } from '../core/arena.js';
import type { DType } from '../core/dtype.js';
import type { KVView } from '../kv/types.js';
import type { AttentionCall, AttentionOptions } from './types.js';

export type RopePairing = 'neox' | 'interleaved';

export interface KernelSet {
  /** 'ref', 'simd' or 'relaxed'. */
  readonly name: string;
  readonly arena: Arena;
  /** Threads the fast kernels use (1 for the reference). */
  readonly nThreads: number;

  /** y [nTokens, nOut] = x [nTokens, nIn] W^T, W [nOut, nIn] stored as wDtype. */
  matmul(wOff: number, wDtype: DType, nOut: number, nIn: number, xOff: number, nTokens: number, yOff: number): void;
  /** y [nRows, dim] = x / sqrt(mean(x^2) + eps) * w; w f32 [dim]; y may equal x. */
  rmsnorm(xOff: number, wOff: number, yOff: number, nRows: number, dim: number, eps: number): void;
  /**
   * Rotate q [nTokens, nqHeads, headDim] and k [nTokens, nkHeads, headDim] in place at positions
   * [nTokens] with invFreq f32 [rotaryDim / 2]; one call so both share the cos/sin of a token.
   */
  rope(qOff: number, nqHeads: number, kOff: number, nkHeads: number, nTokens: number, headDim: number, positions: Int32Array, invFreqOff: number, rotaryDim: number, pairing: RopePairing): void;
  /** out [nTokens, nHeads, headDim], lse [nTokens, nHeads] over the keys of `view` (kernels/types.ts rules). */
  attention(qOff: number, outOff: number, lseOff: number, positions: Int32Array, nHeads: number, view: KVView, opts?: AttentionOptions): void;
  /**
   * attention() for each of `calls` (types.ts AttentionCall: its own buffers, positions and view;
   * views of any lengths and dtypes), all with nHeads query heads and `opts`: the same results
   * as the calls one by one, bit for bit. Every call is checked before any runs (errors name
   * `calls[i]`). The WASM set runs them as one parallel dispatch.
   */
  attentionMany(calls: readonly AttentionCall[], nHeads: number, opts?: AttentionOptions): void;
  /** out [n] = silu(gate) * up. */
  siluMul(gateOff: number, upOff: number, outOff: number, n: number): void;
  /** out [n] = a + b (out may equal a or b). */
  add(aOff: number, bOff: number, outOff: number, n: number): void;
  /** y [nRows, n] += b [n] for every row. */
  addBias(yOff: number, bOff: number, nRows: number, n: number): void;
  /** out [nTokens, dim] = rows `ids` of the table [vocab, dim] stored as dtype. */
  embedding(tableOff: number, dtype: DType, vocab: number, dim: number, ids: Int32Array, outOff: number): void;
  /** Index of the largest of x [n] (first on ties). */
  argmax(xOff: number, n: number): number;
}
