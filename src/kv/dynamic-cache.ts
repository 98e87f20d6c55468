/**
 * DynamicCache: each layer starts at `initialCapacity` positions and doubles up to
 * maxSeqLen (boostr's KvCache, MLLM's DynamicCache), keeping its contents on growth.
 *
 * NOTE(1): Raw buffers are stable between growths: a layer's storage offsets (and so
 *   `rawK`/`rawV` and any view) change only when an append needs more capacity than the
 *   layer has; `generation(layer)` counts those moves so a caller holding offsets can tell.
 * NOTE(2): Growth allocates the new buffers before freeing the old ones; if the arena
 *   cannot supply them the append fails with MemoryLimitError and the cache is unchanged.
 */
import { defaultArena } from '../core/arena.js';
import { CapacityError, checkInt } from '../core/errors.js';
import { DenseCache, resolveDenseConfig, type DenseCacheConfig, type LayerStorage } from './dense-cache.js';
import { allocAllLayers, allocLayerStorage, copyLayerRows, freeLayerStorage } from './layer-storage.js';

export interface DynamicCacheConfig extends DenseCacheConfig {
  /** Positions allocated per row at first. Default min(256, maxSeqLen). */
  initialCapacity?: number;
}

export class DynamicCache extends DenseCache {
  private readonly layers: LayerStorage[];
  private readonly generations: Uint32Array; // [nLayers]
  private readonly cfg: ReturnType<typeof resolveDenseConfig>;

  constructor(config: DynamicCacheConfig) {
    const cfg = resolveDenseConfig(config);
    const arena = config.arena ?? defaultArena();
    super(cfg, arena);
    this.cfg = cfg;
    const initial = checkInt('initialCapacity', config.initialCapacity ?? Math.min(256, cfg.maxSeqLen), 1);
    this.layers = allocAllLayers(arena, cfg, Math.min(initial, cfg.maxSeqLen));
    this.generations = new Uint32Array(cfg.nLayers);
  }

  storageOf(layer: number): LayerStorage {
    this.checkLayer(layer);
    return this.layers[layer]!;
  }

  /** How many times `layer`'s storage has moved (grown). */
  generation(layer = 0): number {
    this.checkLayer(layer);
    return this.generations[layer]!;
  }

  /** The whole K buffer of a layer, [batch, nKvHeads, capacity, headDim] (bhsd) in kDtype bytes; stable until the next growth. */
  rawK(layer = 0): Uint8Array {
    const s = this.storageOf(layer);
    return this.arena.slice(s.kOffsetBytes, s.k.sizeBytes);
  }

  /** The whole V buffer of a layer; stable until the next growth. */
  rawV(layer = 0): Uint8Array {
    const s = this.storageOf(layer);
    return this.arena.slice(s.vOffsetBytes, s.v.sizeBytes);
  }

  protected ensureCapacity(layer: number, needed: number): void {
    const old = this.layers[layer]!;
    if (needed <= old.capacity) return;
    if (needed > this.maxSeqLen) {
      throw new CapacityError(`layer ${layer}: cannot grow beyond maxSeqLen ${this.maxSeqLen}`, `at most ${this.maxSeqLen} positions`, needed);
    }
    let cap = old.capacity;
    while (cap < needed) cap *= 2;
    cap = Math.min(cap, this.maxSeqLen);
    const grown = allocLayerStorage(this.arena, this.cfg, cap);
    const lens = this.lens.subarray(layer * this.batchSize, (layer + 1) * this.batchSize);
    copyLayerRows(this.arena.bytes, old, grown, this.cfg, lens);
    freeLayerStorage(this.arena, old);
    this.layers[layer] = grown;
    this.generations[layer]!++;
  }

  dispose(): void {
    if (this.disposed) return;
    for (const s of this.layers) freeLayerStorage(this.arena, s);
    this.disposed = true;
  }
}
