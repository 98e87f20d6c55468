/**
 * What the forward pass needs from a cache for one sequence: where the next position is, a place
 * to append a chunk's K/V, and the attention contract's view of the rows. Dense caches (a batch
 * row of a static / dynamic cache) and paged caches (a sequence id) both adapt to it, so one
 * forward pass serves every cache, and a batched step can mix sequences of different caches.
 */
import type { KernelSet } from '../kernels/kernel-set.js';
import type { AttentionOptions } from '../kernels/types.js';
import type { KVView, LayeredKVCache } from '../kv/types.js';

export interface SequenceKV {
  /** Position the next appended token takes. */
  nextPos(): number;
  /** Append K and V of `nTokens` new tokens, each [nTokens, nKvHeads, headDim] f32 (may be arena views). */
  append(layer: number, k: Float32Array, v: Float32Array, nTokens: number): void;
  view(layer: number): KVView;
  /**
   * Optional: the sequence's rows as several views over disjoint positions (each with its own
   * dtypes); the forward pass attends over each and merges by LSE. When present it is used
   * instead of view().
   */
  views?(layer: number): readonly KVView[];
  /**
   * Optional: attention of this sequence's queries done by the sequence itself (e.g. sparse
   * attention, whose blocks depend on the queries): q [nTokens, nHeads, headDim], out (same) and
   * lse [nTokens, nHeads] are f32 arena offsets, with the contract of KernelSet.attention. When
   * present it is used instead of view() / views().
   */
  attend?(ks: KernelSet, layer: number, qOffset: number, outOffset: number, lseOffset: number, positions: Int32Array, nHeads: number, opts: AttentionOptions): void;
}

/**
 * Batch row `row` of a dense cache. A 'bhsd' cache takes [nKvHeads, nNew, headDim], so a chunk
 * of more than one token is transposed through a buffer reused across calls.
 */
export class DenseRowKV implements SequenceKV {
  private tk = new Float32Array(0); // [nTokens, nKvHeads, headDim] transposed K, reused
  private tv = new Float32Array(0);

  constructor(
    readonly cache: LayeredKVCache,
    readonly row: number,
  ) {}

  nextPos(): number {
    return this.cache.seqLen(0, this.row);
  }

  append(layer: number, k: Float32Array, v: Float32Array, nTokens: number): void {
    if (this.cache.layout === 'bhsd' && nTokens > 1) {
      const n = k.length;
      if (this.tk.length < n) {
        this.tk = new Float32Array(n);
        this.tv = new Float32Array(n);
      }
      const { nKvHeads: H, headDim: D } = this.cache;
      k = transposeTokensHeads(k, this.tk.subarray(0, n), nTokens, H, D);
      v = transposeTokensHeads(v, this.tv.subarray(0, n), nTokens, H, D);
    }
    this.cache.appendRow(layer, this.row, k, v);
  }

  view(layer: number): KVView {
    return this.cache.view(layer, this.row);
  }
}

/** [T, H, D] -> [H, T, D]. */
function transposeTokensHeads(src: Float32Array, dst: Float32Array, T: number, H: number, D: number): Float32Array {
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) dst.set(src.subarray((t * H + h) * D, (t * H + h + 1) * D), (h * T + t) * D);
  }
  return dst;
}
