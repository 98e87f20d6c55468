/**
 * KVViews over chosen blocks of a row (kv/types.ts contract): one segment per block, so the fast
 * attention kernels read the selected blocks in place, with no copy of any K/V byte.
 *
 *   segment of logical block i (physical table[i]):
 *     kOffsetBytes = storage.kOffset(layer, table[i], 0) + kvHead * kHeadStrideBytes
 *     pos0 = i * blockLen,  nTokens = min(blockLen, seqLen - i * blockLen)
 *
 * NOTE(1): Positions are kept (token i of the row is at position i), so the kernels' position mask
 *   (kernels/types.ts NOTE(2)) stays causal in any block order, and block order only changes float
 *   rounding. A single-kv-head view (kvHead >= 0, nKvHeads 1) serves KVHEAD / QHEAD selections.
 * NOTE(2): A view and its segment objects are rewritten in place on every fill (no allocation per
 *   token once the segment list has grown); `bytes` is re-taken from the arena on every fill.
 */
import type { KVSegment, KVView } from '../types.js';
import type { BlockStorage } from '../paged/block-storage.js';

type MutableSegment = { -readonly [K in keyof KVSegment]: KVSegment[K] };
export type BlockView = { -readonly [K in keyof Omit<KVView, 'segments'>]: KVView[K] } & { segments: MutableSegment[] };

export function newBlockView(st: BlockStorage): BlockView {
  return {
    bytes: st.arena.bytes, kDtype: st.kDtype, vDtype: st.vDtype, nKvHeads: st.nKvHeads, headDim: st.headDim,
    kTokenStrideBytes: st.kTokenStrideBytes, kHeadStrideBytes: st.kHeadStrideBytes,
    vTokenStrideBytes: st.vTokenStrideBytes, vHeadStrideBytes: st.vHeadStrideBytes,
    segments: [], nTokens: 0,
  };
}

/**
 * Point `view` at logical blocks blocks[from, from + n) of a row (table, seqLen) in that order, all
 * kv heads (kvHead -1) or one. Returns the view's token count.
 */
export function fillBlockView(
  view: BlockView, st: BlockStorage, layer: number, table: ArrayLike<number>, seqLen: number,
  blocks: ArrayLike<number>, from: number, n: number, kvHead: number,
): number {
  const segs = view.segments;
  while (segs.length < n) segs.push({ kOffsetBytes: 0, vOffsetBytes: 0, nTokens: 0, pos0: 0 });
  segs.length = n;
  const kShift = kvHead < 0 ? 0 : kvHead * st.kHeadStrideBytes;
  const vShift = kvHead < 0 ? 0 : kvHead * st.vHeadStrideBytes;
  const L = st.blockLen;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const b = blocks[from + i]!;
    const phys = table[b]!;
    const seg = segs[i]!;
    seg.kOffsetBytes = st.kOffset(layer, phys, 0) + kShift;
    seg.vOffsetBytes = st.vOffset(layer, phys, 0) + vShift;
    seg.pos0 = b * L;
    seg.nTokens = Math.min(L, seqLen - b * L);
    total += seg.nTokens;
  }
  view.nKvHeads = kvHead < 0 ? st.nKvHeads : 1;
  view.nTokens = total;
  view.bytes = st.arena.bytes;
  return total;
}
