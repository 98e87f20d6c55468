/**
 * Binding of the embedding kernels (assembly/embedding.ts), twin of ref/embedding.ts: token ids
 * -> f32 rows decoded from a table stored in any weight dtype, bit-identical to decodeRow.
 *
 * NOTE(1): ids are checked in JS (OutOfRangeError naming the first bad one) before the kernel
 *   runs: the kernel trusts them, as an out-of-range id would read another tensor's bytes.
 * NOTE(2): Split by tokens in shares of ~8K output values; each token is independent.
 */
import { rowSizeBytes, type DType } from '../../core/dtype.js';
import { checkInt, checkIndex } from '../../core/errors.js';
import { checkIds, vocabOf } from '../ref/embedding.js';
import { checkRows, checkSpan, checkWords, grainFor, readF32 } from './arena-span.js';
import type { KernelRuntime } from './runtime.js';

const KERNELS: Readonly<Record<DType, string>> = {
  f32: 'embedding_f32',
  f16: 'embedding_f16',
  bf16: 'embedding_bf16',
  q8_0: 'embedding_q8_0',
  q4_0: 'embedding_q4_0',
};

export interface EmbeddingAt {
  /** The table [vocab, rowSizeBytes(dtype, dim)] bytes, arena byte offset (no alignment needed). */
  table: number;
  dtype: DType;
  vocab: number;
  dim: number;
  /** int32 [nTokens] arena byte offset. */
  ids: number;
  nTokens: number;
  /** [nTokens, outStride] f32 arena byte offset. */
  out: number;
  /** Elements between output rows (>= dim, default dim). */
  outStride?: number;
}

/** out[t] = decoded row ids[t] of the table, for t in [0, nTokens). */
export function embeddingAt(rt: KernelRuntime, a: EmbeddingAt): void {
  const dim = checkInt('embedding dim', a.dim, 1);
  const rowBytes = rowSizeBytes(a.dtype, dim); // DTypeError for an unknown dtype or dim % 32 != 0 (q8_0 / q4_0)
  const vocab = checkInt('embedding vocab', a.vocab, 1);
  const nTokens = checkInt('embedding nTokens', a.nTokens, 0);
  checkSpan(rt, 'embedding table', a.table, vocab * rowBytes);
  checkWords(rt, 'embedding ids', a.ids, nTokens);
  const outStride = checkRows(rt, 'embedding out', a.out, nTokens, dim, a.outStride ?? dim);
  const ids = rt.arena.i32;
  const base = a.ids >> 2;
  for (let t = 0; t < nTokens; t++) checkIndex(`embedding ids[${t}]`, ids[base + t], vocab);
  rt.args().ptr(a.table).ptr(a.ids).ptr(a.out).i32(dim).i32(outStride);
  rt.parallelFor(KERNELS[a.dtype], 0, nTokens, grainFor(dim));
}

/**
 * The rows of `ids` decoded to f32, [ids.length, dim]. Stages the whole table into a scratch buffer
 * of the runtime (kept until dispose): a model keeps its table in the arena and calls embeddingAt.
 */
export function embedding(rt: KernelRuntime, table: Uint8Array, dtype: DType, dim: number, ids: ArrayLike<number>): Float32Array {
  const vocab = vocabOf(dtype, dim, table.length);
  checkIds(ids, vocab);
  const to = rt.stage('embedding.table', table);
  const io = rt.stage('embedding.ids', Int32Array.from(ids));
  const oo = rt.scratch('embedding.out', ids.length * dim * 4);
  embeddingAt(rt, { table: to, dtype, vocab, dim, ids: io, nTokens: ids.length, out: oo });
  return readF32(rt, oo, ids.length * dim);
}
