/**
 * The dense multi-layer cache that StaticCache, DynamicCache and SubCache share.
 *
 * NOTE(1): Bookkeeping (per-layer, per-row lengths) is separate from storage (arena
 *   allocations described by `LayerStorage`); only this file writes K/V bytes of dense caches.
 * NOTE(2): Every append validates all rows before writing anything, so a rejected append
 *   (bad shape, capacity) leaves the cache unchanged.
 * NOTE(3): A view (`view()`) describes storage without copying: one segment per (layer, row),
 *   valid until the cache grows (DynamicCache) or the arena grows (re-take `view()` then).
 */
import type { Arena } from '../core/arena.js';
import { decodeRow, encodeRow, parseDType, checkRowLength, type DType } from '../core/dtype.js';
import { CapacityError, ConfigError, DisposedError, checkIndex, checkInt } from '../core/errors.js';
import { checkAppendRoom, countNewTokens, resolveCacheShape, type CacheShape, type CacheShapeConfig } from './cache-checks.js';
import { denseStrides, type DenseStrides } from './dense-layout.js';
import type { KVLayout, KVView, LayeredKVCache } from './types.js';

export interface DenseCacheConfig extends CacheShapeConfig {
  /** dtype of both K and V unless kDtype / vDtype say otherwise. Default 'f32'. */
  dtype?: DType;
  kDtype?: DType;
  vDtype?: DType;
  /** Default 'bhsd'. */
  layout?: KVLayout;
  /** Where storage lives. Default: the process-wide arena. */
  arena?: Arena;
}

/** Where one layer's K and V live and how they are strided. */
export interface LayerStorage {
  readonly kOffsetBytes: number;
  readonly vOffsetBytes: number;
  /** Positions allocated per row. */
  readonly capacity: number;
  readonly k: DenseStrides;
  readonly v: DenseStrides;
}

export interface ResolvedDenseConfig extends CacheShape {
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly layout: KVLayout;
}

/** Validate a cache config; throws ConfigError / DTypeError naming the bad field. */
export function resolveDenseConfig(c: DenseCacheConfig): ResolvedDenseConfig {
  const shape = resolveCacheShape(c, 'cache config');
  const kDtype = parseDType(c.kDtype ?? c.dtype ?? 'f32', 'kDtype');
  const vDtype = parseDType(c.vDtype ?? c.dtype ?? 'f32', 'vDtype');
  checkRowLength(kDtype, shape.headDim, 'headDim');
  checkRowLength(vDtype, shape.headDim, 'headDim');
  const layout = c.layout ?? 'bhsd';
  if (layout !== 'bhsd' && layout !== 'bshd') throw new ConfigError('layout', "'bhsd' or 'bshd'", layout);
  return { ...shape, kDtype, vDtype, layout };
}

/** Source strides (in floats) of new K/V handed to append. */
interface SrcLayout {
  base: number;
  tokenStride: number;
  headStride: number;
}

export abstract class DenseCache implements LayeredKVCache {
  readonly nLayers: number;
  readonly batchSize: number;
  readonly nKvHeads: number;
  readonly nHeads: number;
  readonly headDim: number;
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly layout: KVLayout;
  readonly maxSeqLen: number;
  readonly arena: Arena;
  /** [nLayers, batchSize] valid positions per (layer, row). */
  protected readonly lens: Int32Array;
  /** Position of this cache's position 0 inside its storage (non-zero for a sub-view). */
  protected readonly posBase: number;
  protected disposed = false;

  protected constructor(cfg: ResolvedDenseConfig, arena: Arena, posBase = 0) {
    this.nLayers = cfg.nLayers;
    this.batchSize = cfg.batchSize;
    this.nKvHeads = cfg.nKvHeads;
    this.nHeads = cfg.nHeads;
    this.headDim = cfg.headDim;
    this.kDtype = cfg.kDtype;
    this.vDtype = cfg.vDtype;
    this.layout = cfg.layout;
    this.maxSeqLen = cfg.maxSeqLen;
    this.arena = arena;
    this.posBase = posBase;
    this.lens = new Int32Array(cfg.nLayers * cfg.batchSize);
  }

  /** The storage of a layer (internal to kv/: caches and snapshot code). */
  abstract storageOf(layer: number): LayerStorage;
  /** Make room for `needed` positions in `layer`, or throw CapacityError. */
  protected abstract ensureCapacity(layer: number, needed: number): void;
  /** Called before positions [p0, p1) of (layer, row) are written; may throw to refuse. */
  protected beforeWrite(_layer: number, _row: number, _p0: number, _p1: number): void {}
  /** Called after positions [p0, p1) of (layer, row) were written. */
  protected onWritten(_layer: number, _row: number, _p0: number, _p1: number): void {}

  /** Positions allocated per row of `layer` right now (maxSeqLen for a static cache). */
  capacity(layer = 0): number {
    this.checkLayer(layer);
    return this.storageOf(layer).capacity - this.posBase;
  }

  seqLen(layer = 0, row = 0): number {
    this.checkLayer(layer);
    checkIndex('row', row, this.batchSize);
    return this.lens[layer * this.batchSize + row]!;
  }

  /**
   * Append to every row of `layer`. bhsd: k, v are [batch, nKvHeads, nNew, headDim];
   * bshd: [batch, nNew, nKvHeads, headDim]. Each row appends at its own length.
   */
  append(layer: number, k: Float32Array, v: Float32Array): void {
    this.checkLayer(layer);
    const perRow = this.batchSize * this.nKvHeads * this.headDim;
    const nNew = this.newTokens(k, v, perRow, `[${this.batchSize}, ${this.layout === 'bhsd' ? 'nKvHeads, nNew' : 'nNew, nKvHeads'}, headDim]`);
    let needed = 0;
    for (let b = 0; b < this.batchSize; b++) {
      needed = Math.max(needed, this.checkRoom(layer, b, nNew));
      const len = this.lens[layer * this.batchSize + b]!;
      this.beforeWrite(layer, b, len, len + nNew);
    }
    this.ensureCapacity(layer, needed);
    const rowFloats = this.nKvHeads * nNew * this.headDim;
    for (let b = 0; b < this.batchSize; b++) this.writeRow(layer, b, k, v, nNew, this.srcLayout(b * rowFloats, nNew));
  }

  /** Append to one row: k, v are [nKvHeads, nNew, headDim] (bhsd) or [nNew, nKvHeads, headDim] (bshd). */
  appendRow(layer: number, row: number, k: Float32Array, v: Float32Array): void {
    this.checkLayer(layer);
    checkIndex('row', row, this.batchSize);
    const nNew = this.newTokens(k, v, this.nKvHeads * this.headDim, this.layout === 'bhsd' ? '[nKvHeads, nNew, headDim]' : '[nNew, nKvHeads, headDim]');
    const after = this.checkRoom(layer, row, nNew);
    this.beforeWrite(layer, row, after - nNew, after);
    this.ensureCapacity(layer, after);
    this.writeRow(layer, row, k, v, nNew, this.srcLayout(0, nNew));
  }

  /** Set the valid length of (layer, row) without writing (the caller wrote the bytes itself). */
  setSeqLen(layer: number, row: number, len: number): void {
    this.checkLayer(layer);
    checkIndex('row', row, this.batchSize);
    checkInt('seqLen', len, 0);
    if (len > this.maxSeqLen) throw new CapacityError(`layer ${layer} row ${row}: seqLen`, `at most ${this.maxSeqLen} positions (maxSeqLen)`, len);
    this.ensureCapacity(layer, len);
    this.lens[layer * this.batchSize + row] = len;
  }

  /** K of (layer, row) dequantised: [nKvHeads, len, headDim]. */
  keys(layer: number, row = 0): Float32Array {
    return this.materialise(layer, row, 'k');
  }

  /** V of (layer, row) dequantised: [nKvHeads, len, headDim]. */
  values(layer: number, row = 0): Float32Array {
    return this.materialise(layer, row, 'v');
  }

  /** The block description kernels read (no copy). */
  view(layer: number, row = 0): KVView {
    const len = this.seqLen(layer, row);
    const s = this.storageOf(layer);
    return {
      bytes: this.arena.bytes,
      kDtype: this.kDtype,
      vDtype: this.vDtype,
      nKvHeads: this.nKvHeads,
      headDim: this.headDim,
      kTokenStrideBytes: s.k.tokenStrideBytes,
      kHeadStrideBytes: s.k.headStrideBytes,
      vTokenStrideBytes: s.v.tokenStrideBytes,
      vHeadStrideBytes: s.v.headStrideBytes,
      segments: [
        {
          kOffsetBytes: s.kOffsetBytes + row * s.k.batchStrideBytes + this.posBase * s.k.tokenStrideBytes,
          vOffsetBytes: s.vOffsetBytes + row * s.v.batchStrideBytes + this.posBase * s.v.tokenStrideBytes,
          nTokens: len,
          pos0: 0,
        },
      ],
      nTokens: len,
    };
  }

  /** Keep at most `len` positions in every layer and row. */
  crop(len: number): void {
    this.checkLive();
    checkInt('crop length', len, 0);
    for (let i = 0; i < this.lens.length; i++) this.lens[i] = Math.min(this.lens[i]!, len);
  }

  /** Forget every position (storage is kept and reused). */
  reset(): void {
    this.checkLive();
    this.lens.fill(0);
  }

  /** Bytes of K and V storage this cache addresses. */
  get kvBytes(): number {
    let total = 0;
    for (let l = 0; l < this.nLayers; l++) {
      const s = this.storageOf(l);
      total += s.k.sizeBytes + s.v.sizeBytes;
    }
    return total;
  }

  abstract dispose(): void;

  protected checkLive(): void {
    if (this.disposed) throw new DisposedError('cache', 'a live cache', 'a disposed cache');
  }

  protected checkLayer(layer: number): void {
    this.checkLive();
    checkIndex('layer', layer, this.nLayers);
  }

  private newTokens(k: Float32Array, v: Float32Array, perToken: number, shape: string): number {
    return countNewTokens(k, v, perToken, shape);
  }

  /** Returns the length (layer, row) will have after appending nNew, or throws CapacityError. */
  private checkRoom(layer: number, row: number, nNew: number): number {
    return checkAppendRoom(layer, row, this.lens[layer * this.batchSize + row]!, nNew, this.maxSeqLen);
  }

  private srcLayout(base: number, nNew: number): SrcLayout {
    const D = this.headDim;
    return this.layout === 'bhsd' ? { base, tokenStride: D, headStride: nNew * D } : { base, tokenStride: this.nKvHeads * D, headStride: D };
  }

  private writeRow(layer: number, row: number, k: Float32Array, v: Float32Array, nNew: number, src: SrcLayout): void {
    const s = this.storageOf(layer);
    const bytes = this.arena.bytes;
    const idx = layer * this.batchSize + row;
    const p0 = this.lens[idx]!;
    const D = this.headDim;
    for (let t = 0; t < nNew; t++) {
      const pos = this.posBase + p0 + t;
      for (let h = 0; h < this.nKvHeads; h++) {
        const from = src.base + t * src.tokenStride + h * src.headStride;
        const kOff = s.kOffsetBytes + row * s.k.batchStrideBytes + pos * s.k.tokenStrideBytes + h * s.k.headStrideBytes;
        const vOff = s.vOffsetBytes + row * s.v.batchStrideBytes + pos * s.v.tokenStrideBytes + h * s.v.headStrideBytes;
        encodeRow(this.kDtype, k, from, D, bytes, kOff);
        encodeRow(this.vDtype, v, from, D, bytes, vOff);
      }
    }
    this.lens[idx] = p0 + nNew;
    this.onWritten(layer, row, p0, p0 + nNew);
  }

  private materialise(layer: number, row: number, which: 'k' | 'v'): Float32Array {
    const len = this.seqLen(layer, row);
    const s = this.storageOf(layer);
    const st = which === 'k' ? s.k : s.v;
    const dtype = which === 'k' ? this.kDtype : this.vDtype;
    const base = (which === 'k' ? s.kOffsetBytes : s.vOffsetBytes) + row * st.batchStrideBytes + this.posBase * st.tokenStrideBytes;
    const D = this.headDim;
    const bytes = this.arena.bytes;
    const out = new Float32Array(this.nKvHeads * len * D); // [nKvHeads, len, headDim]
    for (let h = 0; h < this.nKvHeads; h++) {
      for (let t = 0; t < len; t++) decodeRow(dtype, bytes, base + t * st.tokenStrideBytes + h * st.headStrideBytes, D, out, (h * len + t) * D);
    }
    return out;
  }
}
