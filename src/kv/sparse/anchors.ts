/**
 * Block anchors: a few vectors per (layer, physical block) that stand for the block's keys when a
 * query scores blocks (block-select.ts). ktransformers' layout, per q head:
 *
 *   anchors of layer l:  [nBlocks, anchorNum, nqHeads, headDim] f32
 *
 *   fixed       mean of the keys at slots 0, s, 2s, ... (anchorNum of them, s = floor(blockLen / anchorNum))
 *   dynamic     per q head: sum of the keys of the anchorNum tokens with the highest importance
 *   quest       slot 0 = per-dimension max of the keys, slot 1 = per-dimension min
 *   block_mean  mean key;   block_max: per-dimension max key
 *
 * NOTE(1): Keys belong to kv heads; a key-derived anchor is written to every q head of the kv head's
 *   group (q head h uses kv head floor(h / group)). The original wrote QUEST's per-kv-head values
 *   at q-head indices, so under GQA most q heads read an untouched (+-FLT_MAX) anchor.
 * NOTE(2): Types with one anchor vector replicate it into every slot: the score's max over slots
 *   (block-select.ts) then equals the plain dot product whatever anchorNum is, and every slot a
 *   getter returns means something. (ktransformers leaves slots >= 1 zero, so its max over slots
 *   clips negative products to 0.)
 * NOTE(3): DYNAMIC ties (e.g. a block whose importance was never accumulated: all zero) go to the
 *   lower slot, so such a block's anchor is the sum of its first anchorNum keys.
 * NOTE(4): Per-layer arrays are allocated on first use (dense layers never touch theirs). `valid`
 *   marks anchors computed (or set) for the block's current keys; whoever rewrites a block's keys
 *   (a new owner, a rotation) recomputes or invalidates them (sparse-attention.ts NOTE(3)).
 *   Memory: nLayers * nBlocks * anchorNum * nqHeads * headDim * 4 bytes when every layer is used.
 */
import { decodeRow } from '../../core/dtype.js';
import type { BlockStorage } from '../paged/block-storage.js';
import { BlockFloats } from './block-floats.js';
import type { AnchorType } from './sparse-config.js';

/** Float64 scratch of computeAnchors, grown on demand (one JS thread). */
let acc = new Float64Array(64); // [headDim]
let acc2 = new Float64Array(64); // [headDim]
let taken = new Uint8Array(64); // [blockLen]

function ensureScratch(headDim: number, n: number): void {
  if (acc.length < headDim) {
    acc = new Float64Array(headDim);
    acc2 = new Float64Array(headDim);
  }
  if (taken.length < n) taken = new Uint8Array(n);
}

/** Shape of the anchors computeAnchors writes. */
export interface AnchorShape {
  readonly anchorNum: number;
  readonly nqHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly blockLen: number;
}

/**
 * One block's anchors from its keys: keys [nKvHeads, blockLen, headDim] (slots [0, n) valid),
 * importance [blockLen, nqHeads] from impOff (read by 'dynamic' only) -> out [anchorNum, nqHeads,
 * headDim] from outOff. Sums in float64, stored as f32.
 */
export function computeAnchors(
  type: AnchorType, s: AnchorShape, keys: Float32Array, n: number,
  importance: Float32Array | null, impOff: number, out: Float32Array, outOff: number,
): void {
  const { anchorNum: A, nqHeads: H, nKvHeads, headDim: D, blockLen: L } = s;
  const group = H / nKvHeads;
  ensureScratch(D, L);
  for (let h = 0; h < H; h++) {
    const g = (h / group) | 0;
    const kBase = g * L * D; // keys of kv head g
    // Key-derived anchors are the same for every q head of a group: compute on the group's first.
    if (type !== 'dynamic' && h % group !== 0) {
      const first = outOff + (h - 1) * D;
      for (let a = 0; a < A; a++) out.copyWithin(first + a * H * D + D, first + a * H * D, first + a * H * D + D);
      continue;
    }
    if (type === 'quest') {
      acc.fill(-Infinity, 0, D);
      acc2.fill(Infinity, 0, D);
      for (let t = 0; t < n; t++) {
        for (let d = 0; d < D; d++) {
          const k = keys[kBase + t * D + d]!;
          if (k > acc[d]!) acc[d] = k;
          if (k < acc2[d]!) acc2[d] = k;
        }
      }
      for (let d = 0; d < D; d++) {
        out[outOff + h * D + d] = acc[d]!;
        out[outOff + H * D + h * D + d] = acc2[d]!;
      }
      continue;
    }
    acc.fill(type === 'block_max' ? -Infinity : 0, 0, D);
    if (type === 'block_max') {
      for (let t = 0; t < n; t++) for (let d = 0; d < D; d++) acc[d] = Math.max(acc[d]!, keys[kBase + t * D + d]!);
    } else if (type === 'block_mean') {
      for (let t = 0; t < n; t++) for (let d = 0; d < D; d++) acc[d] += keys[kBase + t * D + d]!;
      for (let d = 0; d < D; d++) acc[d] /= n;
    } else if (type === 'fixed') {
      const stride = Math.floor(L / A);
      for (let a = 0; a < A; a++) for (let d = 0; d < D; d++) acc[d] += keys[kBase + a * stride * D + d]!;
      for (let d = 0; d < D; d++) acc[d] /= A;
    } else {
      sumTopKeys(keys, kBase, n, D, A, importance!, impOff, H, h);
    }
    // NOTE(2): one vector, replicated into every slot.
    for (let a = 0; a < A; a++) for (let d = 0; d < D; d++) out[outOff + a * H * D + h * D + d] = acc[d]!;
  }
}

/** acc = sum of the keys of the `count` most important tokens for q head h (NOTE(3)). */
function sumTopKeys(keys: Float32Array, kBase: number, n: number, D: number, count: number, imp: Float32Array, impOff: number, H: number, h: number): void {
  taken.fill(0, 0, n);
  for (let c = 0; c < Math.min(count, n); c++) {
    let best = -1;
    let bestVal = -Infinity;
    for (let t = 0; t < n; t++) {
      const v = imp[impOff + t * H + h]!;
      if (taken[t] === 0 && (best < 0 || v > bestVal)) {
        best = t;
        bestVal = v;
      }
    }
    taken[best] = 1;
    for (let d = 0; d < D; d++) acc[d] += keys[kBase + best * D + d]!;
  }
}

/** Decode slots [0, n) of every kv head of (layer, block) into keys [nKvHeads, blockLen, headDim]. */
export function decodeBlockKeys(st: BlockStorage, layer: number, block: number, n: number, keys: Float32Array): void {
  const bytes = st.arena.bytes;
  const D = st.headDim;
  for (let g = 0; g < st.nKvHeads; g++) {
    const at = st.kOffset(layer, block, 0) + g * st.kHeadStrideBytes;
    for (let t = 0; t < n; t++) decodeRow(st.kDtype, bytes, at + t * st.kRowBytes, D, keys, (g * st.blockLen + t) * D);
  }
}

/** Anchors of every (layer, physical block), with a computed flag each (NOTE(4)). */
export class AnchorStore extends BlockFloats {
  /** [nLayers, nBlocks] 1 = anchors match the block's keys. */
  private readonly valid: Uint8Array;

  constructor(nLayers: number, nBlocks: number, readonly shape: AnchorShape) {
    super(nLayers, nBlocks, shape.anchorNum * shape.nqHeads * shape.headDim, 'anchors',
      `[anchorNum, nqHeads, headDim] = [${shape.anchorNum}, ${shape.nqHeads}, ${shape.headDim}]`);
    this.valid = new Uint8Array(nLayers * nBlocks);
  }

  isValid(layer: number, block: number): boolean {
    return this.valid[layer * this.nBlocks + block] === 1;
  }

  markValid(layer: number, block: number): void {
    this.valid[layer * this.nBlocks + block] = 1;
  }

  /** Forget the anchors of `block` in every layer (its keys changed). */
  invalidate(block: number): void {
    for (let l = 0; l < this.nLayers; l++) this.valid[l * this.nBlocks + block] = 0;
  }

  invalidateAll(): void {
    this.valid.fill(0);
  }

  /** Overwrite one block's anchors with data [anchorNum, nqHeads, headDim]; marks them computed. */
  override set(layer: number, block: number, data: ArrayLike<number>): void {
    super.set(layer, block, data);
    this.markValid(layer, block);
  }
}
