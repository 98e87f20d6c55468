/**
 * StaticCache: every layer preallocated for batchSize rows x maxSeqLen positions
 * (MLLM's StaticCache). Storage never moves, so views and sub-views stay valid.
 */
import { defaultArena } from '../core/arena.js';
import { DenseCache, resolveDenseConfig, type DenseCacheConfig, type LayerStorage } from './dense-cache.js';
import { CapacityError } from '../core/errors.js';
import { allocAllLayers, freeLayerStorage } from './layer-storage.js';

export type StaticCacheConfig = DenseCacheConfig;

export class StaticCache extends DenseCache {
  private readonly layers: LayerStorage[];

  constructor(config: StaticCacheConfig) {
    const cfg = resolveDenseConfig(config);
    const arena = config.arena ?? defaultArena();
    super(cfg, arena);
    this.layers = allocAllLayers(arena, cfg, cfg.maxSeqLen);
  }

  storageOf(layer: number): LayerStorage {
    this.checkLayer(layer);
    return this.layers[layer]!;
  }

  protected ensureCapacity(layer: number, needed: number): void {
    if (needed > this.maxSeqLen) throw new CapacityError(`layer ${layer}`, `at most ${this.maxSeqLen} positions (maxSeqLen)`, needed);
  }

  dispose(): void {
    if (this.disposed) return;
    for (const s of this.layers) freeLayerStorage(this.arena, s);
    this.disposed = true;
  }
}
