/**
 * boostr's `KvCache` (Rust, one attention layer) in its own vocabulary, on top of the
 * engine's DynamicCache (one layer, layout bhsd). It holds no logic of its own: growth,
 * bounds and storage are the core's; this file translates tensors, names and errors.
 *
 *   storage per K and V: [batchSize, numKvHeads, capacity, headDim] in `dtype` bytes
 *   capacity = min(initialCapacity, maxSeqLen) at creation; when an update needs
 *   `required` > capacity it doubles until >= required, capped at maxSeqLen
 *   (contents are kept; the buffers move).
 *
 * NOTE(1): `update` and `updateFused` write through the same path here. boostr's fused
 *   variant is a single CUDA/CPU kernel launch instead of two slice_assigns; in this engine
 *   every append is already one encode pass over the new rows, so both calls are identical.
 * NOTE(2): Stable raw buffers. `kCacheRaw()` / `vCacheRaw()` are views of the cache's
 *   arena allocation: their `byteOffset` (the address inside the arena's WebAssembly.Memory,
 *   which is what a WASM kernel or worker is given) stays the same until the cache grows;
 *   `generation()` counts growths. The Uint8Array object itself is tied to the memory's
 *   current buffer: re-take it after anything allocates from the same arena.
 * NOTE(3): Where boostr only debug-asserts (`increment_seq_len` past max_seq_len) or loops
 *   forever (initial_capacity 0 never doubles), this facade throws a typed error.
 */
import type { Arena } from '../core/arena.js';
import { parseDType, type DType } from '../core/dtype.js';
import { CapacityError, MemoryLimitError, StateError } from '../core/errors.js';
import { checkSameShape, checkShape, stackHeadMajor, type Tensor } from '../core/tensor.js';
import { DynamicCache } from '../kv/dynamic-cache.js';

export interface BoostrKvCacheOptions {
  /** Where storage lives. Default: the process-wide arena. */
  arena?: Arena;
}

/** boostr spells dtypes `DType::F32`; both 'F32' and 'f32' are accepted. */
export type BoostrDType = DType | 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

export class KvCache {
  /** The engine cache this facade translates onto (one layer). */
  readonly core: DynamicCache;

  private constructor(core: DynamicCache) {
    this.core = core;
  }

  /** `KvCache::new(batch_size, num_kv_heads, initial_capacity, max_seq_len, head_dim, dtype, device)`. */
  static new(
    batchSize: number,
    numKvHeads: number,
    initialCapacity: number,
    maxSeqLen: number,
    headDim: number,
    dtype: BoostrDType = 'f32',
    opts: BoostrKvCacheOptions = {},
  ): KvCache {
    const core = new DynamicCache({
      nLayers: 1,
      batchSize,
      nKvHeads: numKvHeads,
      headDim,
      maxSeqLen,
      initialCapacity,
      dtype: parseDType(typeof dtype === 'string' ? dtype.toLowerCase() : dtype),
      layout: 'bhsd',
      arena: opts.arena,
    });
    return new KvCache(core);
  }

  /** Append k, v: [batchSize, numKvHeads, newTokens, headDim]. CapacityError past maxSeqLen (cache unchanged). */
  update(k: Tensor, v: Tensor): void {
    checkShape('k', k, [this.core.batchSize, this.core.nKvHeads, 'newTokens', this.core.headDim]);
    checkSameShape('k', k, 'v', v);
    const seqLen = this.seqLen();
    const newTokens = k.shape[2]!;
    try {
      this.core.append(0, k.data, v.data);
    } catch (e) {
      if (e instanceof CapacityError && !(e instanceof MemoryLimitError)) {
        throw new CapacityError(`cache overflow: ${seqLen} + ${newTokens} > maxSeqLen ${this.maxSeqLen()}`, e.expected, e.given);
      }
      throw e;
    }
  }

  /** boostr's single-kernel update; the same write path as `update` here (NOTE(1)). */
  updateFused(k: Tensor, v: Tensor): void {
    this.update(k, v);
  }

  /** The used portion: K and V as [batchSize, numKvHeads, seqLen, headDim] copies. StateError when empty. */
  getKV(): [Tensor, Tensor] {
    const len = this.seqLen();
    if (len === 0) throw new StateError('getKV: cache is empty', 'at least one cached token', 'seqLen 0');
    const ks: Float32Array[] = [];
    const vs: Float32Array[] = [];
    for (let b = 0; b < this.core.batchSize; b++) {
      ks.push(this.core.keys(0, b));
      vs.push(this.core.values(0, b));
    }
    const { nKvHeads, headDim } = this.core;
    return [stackHeadMajor(ks, nKvHeads, len, headDim), stackHeadMajor(vs, nKvHeads, len, headDim)];
  }

  /** The whole K buffer [batchSize, numKvHeads, capacity, headDim] as `dtype()` bytes; address stable until growth (NOTE(2)). */
  kCacheRaw(): Uint8Array {
    return this.core.rawK(0);
  }

  /** The whole V buffer [batchSize, numKvHeads, capacity, headDim] as `dtype()` bytes; address stable until growth. */
  vCacheRaw(): Uint8Array {
    return this.core.rawV(0);
  }

  /** How many times the buffers have moved (grown). */
  generation(): number {
    return this.core.generation(0);
  }

  seqLen(): number {
    return this.core.seqLen(0, 0);
  }

  capacity(): number {
    return this.core.capacity(0);
  }

  maxSeqLen(): number {
    return this.core.maxSeqLen;
  }

  isEmpty(): boolean {
    return this.seqLen() === 0;
  }

  /**
   * Advance the length by one without writing (graph mode: a captured kernel wrote the row
   * into the raw buffer). Grows first if the new position is past the capacity. CapacityError
   * at maxSeqLen (boostr only debug-asserts).
   */
  incrementSeqLen(): void {
    const len = this.seqLen();
    if (len >= this.maxSeqLen()) {
      throw new CapacityError('KvCache overflow on increment', `seqLen < maxSeqLen ${this.maxSeqLen()}`, len);
    }
    for (let b = 0; b < this.core.batchSize; b++) this.core.setSeqLen(0, b, len + 1);
  }

  /** Forget every token; capacity and buffers are kept. */
  reset(): void {
    this.core.reset();
  }

  batchSize(): number {
    return this.core.batchSize;
  }

  numKvHeads(): number {
    return this.core.nKvHeads;
  }

  headDim(): number {
    return this.core.headDim;
  }

  /** Storage dtype of K and V (what the raw buffers hold). */
  dtype(): DType {
    return this.core.kDtype;
  }

  /** Return the buffers to the arena. */
  dispose(): void {
    this.core.dispose();
  }
}

export { KvCache as BoostrKvCache };
