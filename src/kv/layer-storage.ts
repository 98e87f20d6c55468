/**
 * Allocation of a dense layer's K and V buffers in the arena. Only this module and
 * DenseCache touch dense K/V bytes (DESIGN decision 2).
 */
import type { Arena } from '../core/arena.js';
import { denseStrides } from './dense-layout.js';
import type { LayerStorage, ResolvedDenseConfig } from './dense-cache.js';

/** Allocate K and V for one layer with `capacity` positions per row (zero-filled). */
export function allocLayerStorage(arena: Arena, cfg: ResolvedDenseConfig, capacity: number): LayerStorage {
  const k = denseStrides(cfg.layout, cfg.kDtype, cfg.batchSize, cfg.nKvHeads, capacity, cfg.headDim);
  const v = denseStrides(cfg.layout, cfg.vDtype, cfg.batchSize, cfg.nKvHeads, capacity, cfg.headDim);
  const kOffsetBytes = arena.alloc(k.sizeBytes);
  let vOffsetBytes: number;
  try {
    vOffsetBytes = arena.alloc(v.sizeBytes);
  } catch (e) {
    arena.free(kOffsetBytes);
    throw e;
  }
  return { kOffsetBytes, vOffsetBytes, capacity, k, v };
}

export function freeLayerStorage(arena: Arena, s: LayerStorage): void {
  arena.free(s.kOffsetBytes);
  arena.free(s.vOffsetBytes);
}

/** Allocate every layer, or none: a failure frees what was already allocated. */
export function allocAllLayers(arena: Arena, cfg: ResolvedDenseConfig, capacity: number): LayerStorage[] {
  const out: LayerStorage[] = [];
  try {
    for (let l = 0; l < cfg.nLayers; l++) out.push(allocLayerStorage(arena, cfg, capacity));
  } catch (e) {
    for (const s of out) freeLayerStorage(arena, s);
    throw e;
  }
  return out;
}

/**
 * Copy the valid positions of every row from `from` to `to` (same config, larger capacity):
 * lens is [batchSize] for this layer. Works for both layouts through the strides.
 */
export function copyLayerRows(bytes: Uint8Array, from: LayerStorage, to: LayerStorage, cfg: ResolvedDenseConfig, lens: ArrayLike<number>): void {
  for (const which of ['k', 'v'] as const) {
    const fs = from[which];
    const ts = to[which];
    const fBase = which === 'k' ? from.kOffsetBytes : from.vOffsetBytes;
    const tBase = which === 'k' ? to.kOffsetBytes : to.vOffsetBytes;
    for (let b = 0; b < cfg.batchSize; b++) {
      const len = lens[b]!;
      if (len === 0) continue;
      if (cfg.layout === 'bshd') {
        // Positions are outermost within a row: the valid prefix is one contiguous run.
        const src = fBase + b * fs.batchStrideBytes;
        bytes.copyWithin(tBase + b * ts.batchStrideBytes, src, src + len * fs.tokenStrideBytes);
        continue;
      }
      for (let h = 0; h < cfg.nKvHeads; h++) {
        const src = fBase + b * fs.batchStrideBytes + h * fs.headStrideBytes;
        bytes.copyWithin(tBase + b * ts.batchStrideBytes + h * ts.headStrideBytes, src, src + len * fs.tokenStrideBytes);
      }
    }
  }
}
