/**
 * MixedPrecisionCache: a quantized KV cache with a full-precision recent window (KIVI-style).
 * Per (layer, row) the positions [0, len) are split in two contiguous parts:
 *
 *   positions   0 ............................ h ..................... len
 *               [ history: historyK/VDtype    ][ recent: recentDtype   ]
 *
 *   history  [batch, historyCapacity, nKvHeads, row]   (bshd), indexed by position
 *   recent   [batch, C, nKvHeads, row]                 (bshd ring), position p in slot p % C,
 *            C = min(R + G, maxSeqLen)
 *
 * NOTE(1): The rule (R = recentTokens, G = groupTokens, G <= R). New tokens go to the recent ring;
 *   whenever the recent part holds more than R tokens, its oldest G tokens are quantized into the
 *   history (h += G) until it holds at most R. So after appending N tokens to an empty row:
 *     h = 0                         when N <= R
 *     h = G * ceil((N - R) / G)     otherwise, and then r = N - h lies in (R - G, R].
 *   Appends are processed in pieces that fit the ring, so the result never depends on how the
 *   tokens were chunked (quantization is per row: one (token, kv head), headDim values).
 * NOTE(2): What is quantized: the recent rows decoded back to f32, i.e. history row =
 *   encode(historyDtype, decode(recentDtype, encode(recentDtype, x))). With recentDtype 'f32' that
 *   is exactly encode(historyDtype, x) of the original values. No f32 shadow of the window is
 *   kept: it would cost more memory than a recentDtype 'f32' window itself (f16 + f32 per value),
 *   so a caller who wants quantization from the originals chooses recentDtype 'f32'. With an f16
 *   model (KIVI's setting) the f16 rows ARE the full-precision values.
 * NOTE(3): Attention sees two KVViews, history then recent, each with one K and one V dtype
 *   (views()); the forward pass attends each and merges them by LSE. The ring makes the recent
 *   view one or two segments; nothing is ever moved inside the ring.
 * NOTE(4): crop(len) below h keeps the history as it is (h = len, the recent part empty): dropped
 *   precision is not regained. Every append validates all rows before writing anything.
 */
import { defaultArena, type Arena } from '../core/arena.js';
import { decodeRow, encodeRow, type DType } from '../core/dtype.js';
import { DisposedError, ShapeError, StateError, checkIndex, checkInt } from '../core/errors.js';
import { checkAppendRoom, countNewTokens } from './cache-checks.js';
import { denseStrides, type DenseStrides } from './dense-layout.js';
import { resolveMixedConfig, type MixedPrecisionCacheConfig, type RecentDType } from './mixed-precision-config.js';
import type { KVSegment, KVView } from './types.js';

export { resolveMixedConfig, type MixedPrecisionCacheConfig, type ResolvedMixedConfig, type RecentDType } from './mixed-precision-config.js';

/** One region (history or recent ring) of one layer: K and V buffers with their strides. */
interface Region {
  readonly kOffsetBytes: number;
  readonly vOffsetBytes: number;
  readonly k: DenseStrides;
  readonly v: DenseStrides;
}

interface MixedLayer {
  readonly history: Region;
  readonly recent: Region;
}

/** What the forward pass needs of one sequence; structurally a model/SequenceKV (kv/ may not import model/). */
export interface MixedRowKV {
  nextPos(): number;
  append(layer: number, k: Float32Array, v: Float32Array, nTokens: number): void;
  view(layer: number): KVView;
  views(layer: number): readonly KVView[];
}

export class MixedPrecisionCache {
  readonly nLayers: number;
  readonly batchSize: number;
  readonly nKvHeads: number;
  readonly nHeads: number;
  readonly headDim: number;
  readonly maxSeqLen: number;
  readonly recentTokens: number;
  readonly groupTokens: number;
  readonly recentDtype: RecentDType;
  readonly historyKDtype: DType;
  readonly historyVDtype: DType;
  /** Input layout of append / appendRow: token-major [.., nNew, nKvHeads, headDim]. */
  readonly layout = 'bshd' as const;
  readonly arena: Arena;
  /** Positions of the history region per row: the most h can ever be (NOTE(1)). */
  readonly historyCapacity: number;
  /** Slots of the recent ring per row (C). */
  readonly ringCapacity: number;
  private readonly layers: MixedLayer[] = [];
  /** [nLayers, batchSize] valid positions. */
  private readonly lens: Int32Array;
  /** [nLayers, batchSize] positions in the history (h). */
  private readonly hist: Int32Array;
  private readonly scratch: Float32Array; // [headDim] one decoded recent row being quantized
  private readonly rowKV: MixedRowKV[] = [];
  private disposed = false;

  constructor(config: MixedPrecisionCacheConfig) {
    const c = resolveMixedConfig(config);
    this.nLayers = c.nLayers;
    this.batchSize = c.batchSize;
    this.nKvHeads = c.nKvHeads;
    this.nHeads = c.nHeads;
    this.headDim = c.headDim;
    this.maxSeqLen = c.maxSeqLen;
    this.recentTokens = c.recentTokens;
    this.groupTokens = c.groupTokens;
    this.recentDtype = c.recentDtype;
    this.historyKDtype = c.historyKDtype;
    this.historyVDtype = c.historyVDtype;
    this.arena = config.arena ?? defaultArena();
    this.ringCapacity = Math.min(c.recentTokens + c.groupTokens, c.maxSeqLen);
    // After a flush r >= R - G + 1, and len <= maxSeqLen: h <= maxSeqLen - (R - G + 1).
    this.historyCapacity = Math.max(0, c.maxSeqLen - (c.recentTokens - c.groupTokens + 1));
    this.lens = new Int32Array(c.nLayers * c.batchSize);
    this.hist = new Int32Array(c.nLayers * c.batchSize);
    this.scratch = new Float32Array(c.headDim);
    try {
      for (let l = 0; l < c.nLayers; l++) {
        const history = this.allocRegion(c.historyKDtype, c.historyVDtype, Math.max(1, this.historyCapacity));
        let recent: Region;
        try {
          recent = this.allocRegion(c.recentDtype, c.recentDtype, this.ringCapacity);
        } catch (e) {
          this.freeRegion(history);
          throw e;
        }
        this.layers.push({ history, recent });
      }
    } catch (e) {
      for (const L of this.layers) {
        this.freeRegion(L.history);
        this.freeRegion(L.recent);
      }
      throw e;
    }
  }

  seqLen(layer = 0, row = 0): number {
    return this.lens[this.idx(layer, row)]!;
  }

  /** Positions [0, h) held quantized in the history. */
  historyLen(layer = 0, row = 0): number {
    return this.hist[this.idx(layer, row)]!;
  }

  /** Positions [h, len) held in recentDtype. */
  recentLen(layer = 0, row = 0): number {
    const i = this.idx(layer, row);
    return this.lens[i]! - this.hist[i]!;
  }

  /** Append to every row of `layer`: k, v are [batch, nNew, nKvHeads, headDim]; each row appends at its own length. */
  append(layer: number, k: Float32Array, v: Float32Array): void {
    this.checkLayer(layer);
    const nNew = this.newTokens(k, v, this.batchSize * this.nKvHeads * this.headDim, `[${this.batchSize}, nNew, nKvHeads, headDim]`);
    for (let b = 0; b < this.batchSize; b++) this.checkRoom(layer, b, nNew);
    const rowFloats = nNew * this.nKvHeads * this.headDim;
    for (let b = 0; b < this.batchSize; b++) this.writeRow(layer, b, k, v, b * rowFloats, nNew);
  }

  /** Append to one row: k, v are [nNew, nKvHeads, headDim]. */
  appendRow(layer: number, row: number, k: Float32Array, v: Float32Array): void {
    this.idx(layer, row);
    const nNew = this.newTokens(k, v, this.nKvHeads * this.headDim, '[nNew, nKvHeads, headDim]');
    this.checkRoom(layer, row, nNew);
    this.writeRow(layer, row, k, v, 0, nNew);
  }

  /** K of (layer, row) dequantised: [nKvHeads, len, headDim] (history rows, then recent rows). */
  keys(layer: number, row = 0): Float32Array {
    return this.materialise(layer, row, 'k');
  }

  /** V of (layer, row) dequantised: [nKvHeads, len, headDim]. */
  values(layer: number, row = 0): Float32Array {
    return this.materialise(layer, row, 'v');
  }

  /**
   * The attention contract's views of (layer, row): [history, recent], each with its own dtypes,
   * empty parts left out (so [] for an empty row). Valid until the arena grows or the next append.
   */
  views(layer: number, row = 0): KVView[] {
    const i = this.idx(layer, row);
    const h = this.hist[i]!;
    const len = this.lens[i]!;
    const out: KVView[] = [];
    if (h > 0) out.push(this.historyView(layer, row, h));
    if (len > h) out.push(this.recentView(layer, row, h, len));
    return out;
  }

  /** The single view of (layer, row) when it is stored in one part; StateError when both parts are non-empty (use views()). */
  view(layer: number, row = 0): KVView {
    const vs = this.views(layer, row);
    if (vs.length === 1) return vs[0]!;
    if (vs.length === 0) return this.recentView(layer, row, 0, 0);
    throw new StateError(`view(${layer}, ${row}) of a mixed-precision cache`, 'a row stored in one part (history or recent)', `history ${this.historyLen(layer, row)} + recent ${this.recentLen(layer, row)} tokens: use views()`);
  }

  /** Batch row `row` as a SequenceKV (model/sequence-kv.ts) for Forward.runBatch; one object per row. */
  sequenceKV(row = 0): MixedRowKV {
    this.checkLive();
    checkIndex('row', row, this.batchSize);
    const existing = this.rowKV[row];
    if (existing !== undefined) return existing;
    const kv: MixedRowKV = {
      nextPos: () => this.seqLen(0, row),
      append: (layer, k, v, nTokens) => {
        if (k.length !== nTokens * this.nKvHeads * this.headDim) {
          throw new ShapeError(`k length ([nTokens, nKvHeads, headDim] = [${nTokens}, ${this.nKvHeads}, ${this.headDim}])`, nTokens * this.nKvHeads * this.headDim, k.length);
        }
        this.appendRow(layer, row, k, v);
      },
      view: (layer) => this.view(layer, row),
      views: (layer) => this.views(layer, row),
    };
    this.rowKV[row] = kv;
    return kv;
  }

  /** Keep at most `len` positions in every layer and row (NOTE(4)). */
  crop(len: number): void {
    this.checkLive();
    checkInt('crop length', len, 0);
    for (let i = 0; i < this.lens.length; i++) {
      this.lens[i] = Math.min(this.lens[i]!, len);
      this.hist[i] = Math.min(this.hist[i]!, len);
    }
  }

  /** Forget every position (storage is kept and reused). */
  reset(): void {
    this.checkLive();
    this.lens.fill(0);
    this.hist.fill(0);
  }

  /** Bytes of K and V storage (history regions + recent rings) this cache owns. */
  get kvBytes(): number {
    let total = 0;
    for (const L of this.layers) total += L.history.k.sizeBytes + L.history.v.sizeBytes + L.recent.k.sizeBytes + L.recent.v.sizeBytes;
    return total;
  }

  dispose(): void {
    if (this.disposed) return;
    if (!this.arena.isDisposed) {
      for (const L of this.layers) {
        this.freeRegion(L.history);
        this.freeRegion(L.recent);
      }
    }
    this.disposed = true;
  }

  private allocRegion(kDtype: DType, vDtype: DType, capacity: number): Region {
    const k = denseStrides('bshd', kDtype, this.batchSize, this.nKvHeads, capacity, this.headDim);
    const v = denseStrides('bshd', vDtype, this.batchSize, this.nKvHeads, capacity, this.headDim);
    const kOffsetBytes = this.arena.alloc(k.sizeBytes);
    let vOffsetBytes: number;
    try {
      vOffsetBytes = this.arena.alloc(v.sizeBytes);
    } catch (e) {
      this.arena.free(kOffsetBytes);
      throw e;
    }
    return { kOffsetBytes, vOffsetBytes, k, v };
  }

  private freeRegion(r: Region): void {
    this.arena.free(r.kOffsetBytes);
    this.arena.free(r.vOffsetBytes);
  }

  private historyView(layer: number, row: number, h: number): KVView {
    const r = this.layers[layer]!.history;
    const seg: KVSegment = { kOffsetBytes: r.kOffsetBytes + row * r.k.batchStrideBytes, vOffsetBytes: r.vOffsetBytes + row * r.v.batchStrideBytes, nTokens: h, pos0: 0 };
    return this.makeView(r, this.historyKDtype, this.historyVDtype, [seg], h);
  }

  /** Positions [p0, p1) of the ring: one segment, or two when they wrap past slot C - 1. */
  private recentView(layer: number, row: number, p0: number, p1: number): KVView {
    const r = this.layers[layer]!.recent;
    const C = this.ringCapacity;
    const kBase = r.kOffsetBytes + row * r.k.batchStrideBytes;
    const vBase = r.vOffsetBytes + row * r.v.batchStrideBytes;
    const s0 = p0 % C;
    const n1 = Math.min(p1 - p0, C - s0);
    const segments: KVSegment[] = [];
    if (n1 > 0) segments.push({ kOffsetBytes: kBase + s0 * r.k.tokenStrideBytes, vOffsetBytes: vBase + s0 * r.v.tokenStrideBytes, nTokens: n1, pos0: p0 });
    if (p1 - p0 > n1) segments.push({ kOffsetBytes: kBase, vOffsetBytes: vBase, nTokens: p1 - p0 - n1, pos0: p0 + n1 });
    return this.makeView(r, this.recentDtype, this.recentDtype, segments, p1 - p0);
  }

  private makeView(r: Region, kDtype: DType, vDtype: DType, segments: KVSegment[], nTokens: number): KVView {
    return {
      bytes: this.arena.bytes, kDtype, vDtype, nKvHeads: this.nKvHeads, headDim: this.headDim,
      kTokenStrideBytes: r.k.tokenStrideBytes, kHeadStrideBytes: r.k.headStrideBytes,
      vTokenStrideBytes: r.v.tokenStrideBytes, vHeadStrideBytes: r.v.headStrideBytes,
      segments, nTokens,
    };
  }

  /**
   * Write nNew tokens (src[base..] as [nNew, nKvHeads, headDim]) after the row's last position:
   * in pieces that fit the ring, each followed by the flushes the rule asks for (NOTE(1)).
   */
  private writeRow(layer: number, row: number, k: Float32Array, v: Float32Array, base: number, nNew: number): void {
    const i = layer * this.batchSize + row;
    const { recent } = this.layers[layer]!;
    const bytes = this.arena.bytes;
    const C = this.ringCapacity;
    const H = this.nKvHeads;
    const D = this.headDim;
    const dt = this.recentDtype;
    const kRow = recent.kOffsetBytes + row * recent.k.batchStrideBytes;
    const vRow = recent.vOffsetBytes + row * recent.v.batchStrideBytes;
    let done = 0;
    while (done < nNew) {
      const len = this.lens[i]!;
      const n = Math.min(nNew - done, C - (len - this.hist[i]!));
      for (let t = 0; t < n; t++) {
        const slot = (len + t) % C;
        for (let h = 0; h < H; h++) {
          const from = base + ((done + t) * H + h) * D;
          encodeRow(dt, k, from, D, bytes, kRow + slot * recent.k.tokenStrideBytes + h * recent.k.headStrideBytes);
          encodeRow(dt, v, from, D, bytes, vRow + slot * recent.v.tokenStrideBytes + h * recent.v.headStrideBytes);
        }
      }
      done += n;
      this.lens[i] = len + n;
      while (this.lens[i]! - this.hist[i]! > this.recentTokens) this.flush(layer, row, bytes);
    }
  }

  /** Quantize the oldest G recent positions [h, h + G) of (layer, row) into the history (NOTE(2)). */
  private flush(layer: number, row: number, bytes: Uint8Array): void {
    const i = layer * this.batchSize + row;
    const { history, recent } = this.layers[layer]!;
    const h0 = this.hist[i]!;
    const C = this.ringCapacity;
    const D = this.headDim;
    const sc = this.scratch;
    for (let p = h0; p < h0 + this.groupTokens; p++) {
      const slot = p % C;
      for (let h = 0; h < this.nKvHeads; h++) {
        decodeRow(this.recentDtype, bytes, recent.kOffsetBytes + row * recent.k.batchStrideBytes + slot * recent.k.tokenStrideBytes + h * recent.k.headStrideBytes, D, sc, 0);
        encodeRow(this.historyKDtype, sc, 0, D, bytes, history.kOffsetBytes + row * history.k.batchStrideBytes + p * history.k.tokenStrideBytes + h * history.k.headStrideBytes);
        decodeRow(this.recentDtype, bytes, recent.vOffsetBytes + row * recent.v.batchStrideBytes + slot * recent.v.tokenStrideBytes + h * recent.v.headStrideBytes, D, sc, 0);
        encodeRow(this.historyVDtype, sc, 0, D, bytes, history.vOffsetBytes + row * history.v.batchStrideBytes + p * history.v.tokenStrideBytes + h * history.v.headStrideBytes);
      }
    }
    this.hist[i] = h0 + this.groupTokens;
  }

  private materialise(layer: number, row: number, which: 'k' | 'v'): Float32Array {
    const i = this.idx(layer, row);
    const len = this.lens[i]!;
    const h = this.hist[i]!;
    const { history, recent } = this.layers[layer]!;
    const hs = which === 'k' ? history.k : history.v;
    const rs = which === 'k' ? recent.k : recent.v;
    const hBase = (which === 'k' ? history.kOffsetBytes : history.vOffsetBytes) + row * hs.batchStrideBytes;
    const rBase = (which === 'k' ? recent.kOffsetBytes : recent.vOffsetBytes) + row * rs.batchStrideBytes;
    const hDtype = which === 'k' ? this.historyKDtype : this.historyVDtype;
    const D = this.headDim;
    const bytes = this.arena.bytes;
    const out = new Float32Array(this.nKvHeads * len * D); // [nKvHeads, len, headDim]
    for (let g = 0; g < this.nKvHeads; g++) {
      for (let t = 0; t < len; t++) {
        if (t < h) decodeRow(hDtype, bytes, hBase + t * hs.tokenStrideBytes + g * hs.headStrideBytes, D, out, (g * len + t) * D);
        else decodeRow(this.recentDtype, bytes, rBase + (t % this.ringCapacity) * rs.tokenStrideBytes + g * rs.headStrideBytes, D, out, (g * len + t) * D);
      }
    }
    return out;
  }

  private newTokens(k: Float32Array, v: Float32Array, perToken: number, shape: string): number {
    return countNewTokens(k, v, perToken, shape);
  }

  private checkRoom(layer: number, row: number, nNew: number): void {
    checkAppendRoom(layer, row, this.lens[layer * this.batchSize + row]!, nNew, this.maxSeqLen);
  }

  private idx(layer: number, row: number): number {
    this.checkLayer(layer);
    checkIndex('row', row, this.batchSize);
    return layer * this.batchSize + row;
  }

  private checkLayer(layer: number): void {
    this.checkLive();
    checkIndex('layer', layer, this.nLayers);
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('cache', 'a live cache', 'a disposed cache');
  }
}
