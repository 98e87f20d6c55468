/**
 * The custom Hugging Face-style KV cache (Python: `KVCache`, `MultiLayerKVCache`) in its own
 * vocabulary, on top of the engine's DynamicCache (layout bhsd). Storage and growth are the
 * core's; this file infers dimensions, checks tensors and converts to and from HF's legacy
 * format.
 *
 *   update(k, v[, layerIdx]) with k, v [B, H, S_new, D]  ->  [K, V], each [B, H, S_total, D]
 *   (the cached tensors concatenated along S, as `torch.cat([cache, new], dim=-2)`)
 *
 * NOTE(1): Dimensions (batch, heads, headDim) are inferred from the first update and then
 *   fixed for every layer until `reset()`, which returns the storage and forgets them.
 * NOTE(2): The core cache starts at `initialCapacity` positions and doubles up to `maxSeqLen`
 *   (default 4096, the Python project's max_seq_len); past it an update throws CapacityError and
 *   leaves the cache unchanged.
 * NOTE(3): Legacy format = one `[K, V]` pair per layer, each [B, H, S, D] (HF's
 *   `past_key_values` tuples). `toLegacy()` copies out; `fromLegacy()` copies in.
 */
import type { Arena } from '../core/arena.js';
import { parseDType, type DType } from '../core/dtype.js';
import { ConfigError, StateError, checkIndex, checkInt } from '../core/errors.js';
import { checkSameShape, checkShape, stackHeadMajor, type Tensor } from '../core/tensor.js';
import { DynamicCache } from '../kv/dynamic-cache.js';

export interface HfKVCacheOptions {
  /** Positions each layer may hold. Default 4096. */
  maxSeqLen?: number;
  /** Storage dtype of K and V. Default 'f32' (quantized dtypes need headDim % 32 == 0). */
  dtype?: DType;
  /** Positions allocated per layer at first. Default min(256, maxSeqLen). */
  initialCapacity?: number;
  /** Where storage lives. Default: the process-wide arena. */
  arena?: Arena;
}

/** One `[K, V]` pair per layer, each [B, H, S, D]. */
export type LegacyCache = readonly (readonly [Tensor, Tensor])[];

export class MultiLayerKVCache {
  readonly nLayers: number;
  readonly maxSeqLen: number;
  readonly dtype: DType;
  private readonly opts: HfKVCacheOptions;
  private core_: DynamicCache | null = null;

  constructor(nLayers: number, opts: HfKVCacheOptions = {}) {
    this.nLayers = checkInt('nLayers', nLayers, 1);
    this.maxSeqLen = checkInt('maxSeqLen', opts.maxSeqLen ?? 4096, 1);
    this.dtype = parseDType(opts.dtype ?? 'f32');
    this.opts = opts;
  }

  /** Rebuild a cache from HF's legacy per-layer `[K, V]` list (copies the values in). */
  static fromLegacy(legacy: LegacyCache, opts: HfKVCacheOptions = {}): MultiLayerKVCache {
    if (!Array.isArray(legacy) || legacy.length === 0) throw new ConfigError('legacy cache', 'a non-empty list of [K, V] pairs', legacy);
    const cache = new MultiLayerKVCache(legacy.length, opts);
    try {
      legacy.forEach((pair, l) => {
        if (!Array.isArray(pair) || pair.length !== 2) throw new ConfigError(`legacy cache layer ${l}`, 'a [K, V] pair', pair);
        cache.update(pair[0], pair[1], l);
      });
    } catch (e) {
      cache.dispose();
      throw e;
    }
    return cache;
  }

  /** The engine cache, once the first update has fixed the dimensions. */
  get core(): DynamicCache | null {
    return this.core_;
  }

  /** Append k, v [B, H, S_new, D] to `layerIdx`; returns that layer's whole K and V [B, H, S_total, D]. */
  update(k: Tensor, v: Tensor, layerIdx: number): [Tensor, Tensor] {
    checkIndex('layerIdx', layerIdx, this.nLayers);
    const c = this.core_;
    checkShape('k', k, c ? [c.batchSize, c.nKvHeads, 'S', c.headDim] : ['B', 'H', 'S', 'D']);
    checkSameShape('k', k, 'v', v);
    const core = c ?? this.create(k.shape);
    try {
      core.append(layerIdx, k.data, v.data);
    } catch (e) {
      if (!c) this.reset(); // a rejected first update must not fix the dimensions
      throw e;
    }
    return this.read(core, layerIdx);
  }

  /** Tokens cached in `layerIdx` (0 before the first update). */
  getSeqLength(layerIdx = 0): number {
    checkIndex('layerIdx', layerIdx, this.nLayers);
    return this.core_ ? this.core_.seqLen(layerIdx, 0) : 0;
  }

  /** The cached K and V of one layer, [B, H, S, D] each. StateError before the first update. */
  get(layerIdx: number): [Tensor, Tensor] {
    checkIndex('layerIdx', layerIdx, this.nLayers);
    if (!this.core_) throw new StateError('get before the first update', 'a cache that has seen one update (its dimensions are not known yet)', 'none');
    return this.read(this.core_, layerIdx);
  }

  /** HF's legacy format: one [K, V] pair per layer ([] before the first update). */
  toLegacy(): [Tensor, Tensor][] {
    const core = this.core_;
    if (!core) return [];
    const out: [Tensor, Tensor][] = [];
    for (let l = 0; l < this.nLayers; l++) out.push(this.read(core, l));
    return out;
  }

  /** Forget every token and the inferred dimensions; storage goes back to the arena. */
  reset(): void {
    this.core_?.dispose();
    this.core_ = null;
  }

  dispose(): void {
    this.reset();
  }

  private create(shape: readonly number[]): DynamicCache {
    this.core_ = new DynamicCache({
      nLayers: this.nLayers,
      batchSize: shape[0]!,
      nKvHeads: shape[1]!,
      headDim: shape[3]!,
      maxSeqLen: this.maxSeqLen,
      initialCapacity: this.opts.initialCapacity,
      dtype: this.dtype,
      layout: 'bhsd',
      arena: this.opts.arena,
    });
    return this.core_;
  }

  private read(core: DynamicCache, layer: number): [Tensor, Tensor] {
    const len = core.seqLen(layer, 0);
    const ks: Float32Array[] = [];
    const vs: Float32Array[] = [];
    for (let b = 0; b < core.batchSize; b++) {
      ks.push(core.keys(layer, b));
      vs.push(core.values(layer, b));
    }
    return [stackHeadMajor(ks, core.nKvHeads, len, core.headDim), stackHeadMajor(vs, core.nKvHeads, len, core.headDim)];
  }
}

/** The single-layer `KVCache`: a one-layer MultiLayerKVCache under the Python names. */
export class HfKVCache {
  private readonly inner: MultiLayerKVCache;

  constructor(opts: HfKVCacheOptions = {}) {
    this.inner = new MultiLayerKVCache(1, opts);
  }

  get maxSeqLen(): number {
    return this.inner.maxSeqLen;
  }

  get dtype(): DType {
    return this.inner.dtype;
  }

  /** The engine cache, once the first update has fixed the dimensions. */
  get core(): DynamicCache | null {
    return this.inner.core;
  }

  /** Append k, v [B, H, S_new, D]; returns the whole K and V [B, H, S_total, D]. */
  update(k: Tensor, v: Tensor): [Tensor, Tensor] {
    return this.inner.update(k, v, 0);
  }

  getSeqLength(): number {
    return this.inner.getSeqLength(0);
  }

  /** The cached K and V. StateError before the first update. */
  get(): [Tensor, Tensor] {
    return this.inner.get(0);
  }

  reset(): void {
    this.inner.reset();
  }

  dispose(): void {
    this.inner.dispose();
  }
}
