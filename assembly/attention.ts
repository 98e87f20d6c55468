// Attention over a KV view (src/kv/types.ts), decode and prefill, every K/V dtype, GQA, windows.
// The JS side is src/kernels/wasm/attention.ts: it validates, plans the work and writes the
// argument block (in the slot order of loadArgs below) and the segment / range tables.
//
// Work items (attention_tile): (query tile, kv heads, key chunk). A tile = `tile` consecutive query
// tokens x the `group` query heads of one kv head = nRows query rows; an item runs the tiles of
// `kvPerItem` consecutive kv heads over one key chunk = keys [c * chunkKeys, (c + 1) * chunkKeys)
// in segment order. The plan depends only on the shapes, never on the thread count, so 1 and N
// threads give bit-identical results.
//
//   item -> (tile, c, g0)    tiles in zigzag order (0, T-1, 1, T-2, ...) so that every thread's
//                            contiguous share mixes short (early) and long (late) causal rows;
//                            kv heads g0 .. g0 + kvPerItem - 1, block by block: with `bshd`
//                            caches a token's heads share cache lines, so a block's K/V lines
//                            are fetched once for all of them (one head per item read every
//                            line twice, far apart: 2x slower at 32k keys, 1 thread)
//   direct mode (1 chunk):   acc rows are the `out` rows; the item normalizes them and writes lse
//   partial mode:            acc, m, l go to the item's partial record; attention_merge combines
//                            the chunks of each (token, head) exactly, in chunk order (LSE merge)
//
// Per-slot scratch (one slot per grain of items, slot = begin / grain: two threads never share a
// slot because their item ranges start at different grains) holds the scaled query rows, scores,
// decoded K/V rows and the block's row addresses; its layout comes from JS (slots 27..40).
//
// attention_multi / attention_merge_multi (end of file) run the items / merge rows of MANY calls
// (one per sequence of a batched step) in one dispatch, each call with its own argument block.
import { accumulateBlock, softmaxBlock } from './attention-block';
import { BLOCK_KEYS, scoreBlockF32, scoreBlockInt } from './attention-score';
import { pmaxLanes } from './attention-math';
import { DT_F16, F16_REBIAS, decodeBlockF32, decodeBlockI16, rowBytes } from './attention-rows';
import { argF32, argI32, argU32 } from './simd';
import { touchLines } from './touch-ahead';

const NEG_INF: f32 = -Infinity;
const LN2: f64 = 0.6931471805599453;

// ---- per-call parameters, copied from the argument block at kernel entry (wasm globals are
// per instance, i.e. per thread) ----
let qPtr: usize = 0; // [nTokens, nHeads, headDim] f32
let outPtr: usize = 0; // [nTokens, nHeads, headDim] f32
let lsePtr: usize = 0; // [nTokens, nHeads] f32
let rangePtr: usize = 0; // i32 [nTokens, 2]: lowest, highest visible key position
let segPtr: usize = 0; // i32 [nSegments, 5]: kOff, vOff, nTokens, pos0, first key index
let nSegments: i32 = 0;
let nTokens: i32 = 0;
let nHeads: i32 = 0;
let nKvHeads: i32 = 0;
let headDim: i32 = 0;
let hdPad: i32 = 0; // headDim rounded up to 4: scratch rows and partial acc rows
let kDtype: i32 = 0;
let vDtype: i32 = 0;
let kTokenStride: usize = 0;
let kHeadStride: usize = 0;
let vTokenStride: usize = 0;
let vHeadStride: usize = 0;
let scaleLog2e: f32 = 0; // scale * log2(e): scores in log2 units
let tileTokens: i32 = 0;
let nTiles: i32 = 0;
let nChunks: i32 = 0;
let chunkKeys: i32 = 0;
let nKeys: i32 = 0;
let partialPtr: usize = 0; // [nTiles, nKvHeads, nChunks] records of acc [R, hdPad], m [R], l [R]
let slotBase: usize = 0;
let slotBytes: usize = 0;
let grain: i32 = 1;
let intK: bool = false;
let group: i32 = 1;
let maxRows: i32 = 0; // R = tileTokens * group (rows of one kv head's tile)
let kvPerItem: i32 = 1; // kv heads per item; per-head slot buffers (qs .. rows) repeat kvPerItem times
// slot layout (byte offsets inside a slot); qs .. rows: one copy per kv head of the item (headBuf)
let oQs: usize = 0; // f32 [ceil(R / 2), hdPad / 4, 2, 4] scaled query rows in pairs (attention-score.ts)
let oQi: usize = 0; // i16 [ceil(R / 2), hdPad / 8, 2, 8] quantized query rows in pairs (intK)
let oQd: usize = 0; // f32 [R, hdPad / 32] their scales (intK)
let oS: usize = 0; // f32 [R, BLOCK_KEYS] scores, then weights
let oM: usize = 0; // f32 [R] running max (direct mode)
let oL: usize = 0; // f32 [R] running sum of weights (direct mode)
let oRows: usize = 0; // i32 [R, 4] row table (attention-block.ts)
// K/V scratch rows are the item's kv heads side by side: W = kvPerItem * hdPad values per key
let oKf: usize = 0; // f32 [BLOCK_KEYS / 4, W / 4, 4, 4] decoded K rows, quad interleaved
let oKi: usize = 0; // i16 [BLOCK_KEYS / 4, W / 8, 4, 8] decoded K rows, quad interleaved (intK)
let oKd: usize = 0; // f32 [W / 32, BLOCK_KEYS] their scales (intK)
let oVf: usize = 0; // f32 [BLOCK_KEYS, W] decoded V rows
let oKr: usize = 0; // u32 [BLOCK_KEYS] cache addresses of the block's K rows
let oVr: usize = 0; // u32 [BLOCK_KEYS] cache addresses of the block's V rows
let oPos: usize = 0; // i32 [BLOCK_KEYS] key positions of the block
// The item's kv heads' K (V) rows are one stretch of the cache: decoded as one row (loadArgs)
let kJoint: bool = false;
let vJoint: bool = false;
// per item: f16 K rows decoded raw (value * 2^-112) with 2^112 folded into q (attention-rows.ts)
let kRaw: bool = false;

function loadArgs(args: usize): void {
  qPtr = argU32(args, 0);
  outPtr = argU32(args, 1);
  lsePtr = argU32(args, 2);
  rangePtr = argU32(args, 3);
  segPtr = argU32(args, 4);
  nSegments = argI32(args, 5);
  nTokens = argI32(args, 6);
  nHeads = argI32(args, 7);
  nKvHeads = argI32(args, 8);
  headDim = argI32(args, 9);
  hdPad = (headDim + 3) & ~3;
  kDtype = argI32(args, 10);
  vDtype = argI32(args, 11);
  kTokenStride = argU32(args, 12);
  kHeadStride = argU32(args, 13);
  vTokenStride = argU32(args, 14);
  vHeadStride = argU32(args, 15);
  scaleLog2e = argF32(args, 16);
  tileTokens = argI32(args, 17);
  nTiles = argI32(args, 18);
  nChunks = argI32(args, 19);
  chunkKeys = argI32(args, 20);
  nKeys = argI32(args, 21);
  partialPtr = argU32(args, 22);
  slotBase = argU32(args, 23);
  slotBytes = argU32(args, 24);
  grain = argI32(args, 25);
  intK = argI32(args, 26) != 0;
  oQs = argU32(args, 27);
  oQi = argU32(args, 28);
  oQd = argU32(args, 29);
  oS = argU32(args, 30);
  oM = argU32(args, 31);
  oL = argU32(args, 32);
  oRows = argU32(args, 33);
  oKf = argU32(args, 34);
  oKi = argU32(args, 35);
  oKd = argU32(args, 36);
  oVf = argU32(args, 37);
  oKr = argU32(args, 38);
  oVr = argU32(args, 39);
  oPos = argU32(args, 40);
  kvPerItem = argI32(args, 41);
  group = nHeads / nKvHeads;
  maxRows = tileTokens * group;
  // The item's kv heads are one row of the cache (bshd: a token's heads back to back): decode
  // them in one sequential pass over the row instead of one pass per head.
  kJoint = kvPerItem > 1 && hdPad == headDim && kHeadStride == rowBytes(kDtype, headDim);
  vJoint = kvPerItem > 1 && hdPad == headDim && vHeadStride == rowBytes(vDtype, headDim);
}

/** Bytes of one partial record: acc [R, hdPad], m [R], l [R] (f32). */
@inline function partialBytes(): usize {
  return <usize>(maxRows * hdPad + 2 * maxRows) << 2;
}

/** Tile of item position ti: 0, T-1, 1, T-2, ... */
@inline function tileAt(ti: i32): i32 {
  return (ti & 1) == 0 ? ti >> 1 : nTiles - 1 - (ti >> 1);
}

/**
 * args: see loadArgs (JS: ARG in src/kernels/wasm/attention.ts). Runs items [begin, end) with
 * the scratch slot of grain begin / grain.
 */
export function attention_tile(args: usize, begin: i32, end: i32): void {
  loadArgs(args);
  const slot = slotBase + <usize>(begin / grain) * slotBytes;
  for (let item = begin; item < end; item++) runItem(item, slot);
}

// Per item: where kv head e of the item keeps its running max / sum: mBase + e * mStride etc.
let mBase: usize = 0;
let lBase: usize = 0;
let mStride: usize = 0;

/** Buffer `off` of kv head e of the item: per-head buffers repeat every `bytes` (of one head). */
@inline function headBuf(slot: usize, off: usize, e: i32, bytes: usize): usize {
  return slot + off + <usize>e * bytes;
}
/** Bytes of one head's pair-layout q rows (f32; the i16 copy is half). */
@inline function qsHeadBytes(): usize {
  return <usize>((maxRows + 1) >> 1) * (<usize>hdPad << 3);
}

function runItem(item: i32, slot: usize): void {
  const nGroups = nKvHeads / kvPerItem;
  const g0 = (item % nGroups) * kvPerItem;
  const tc = item / nGroups;
  const c = tc % nChunks;
  const tile = tileAt(tc / nChunks);
  const t0 = tile * tileTokens;
  const nRows = min(tileTokens, nTokens - t0) * group;
  const direct = partialPtr == 0;
  let accBase: usize, headStride: usize, tokenStride: usize, rowStride: usize;
  if (direct) {
    accBase = outPtr + (<usize>((t0 * nHeads + g0 * group) * headDim) << 2);
    headStride = <usize>(group * headDim) << 2;
    tokenStride = <usize>(nHeads * headDim) << 2;
    rowStride = <usize>headDim << 2; // = hdPad: direct mode needs headDim % 4 == 0 (JS)
    mBase = slot + oM;
    lBase = slot + oL;
    mStride = <usize>maxRows << 2;
  } else {
    accBase = partialPtr + <usize>((tile * nKvHeads + g0) * nChunks + c) * partialBytes();
    headStride = <usize>nChunks * partialBytes();
    tokenStride = <usize>(group * hdPad) << 2;
    rowStride = <usize>hdPad << 2;
    mBase = accBase + (<usize>(maxRows * hdPad) << 2);
    lBase = mBase + (<usize>maxRows << 2);
    mStride = headStride;
  }
  let uLo: i32 = i32.MAX_VALUE, uHi: i32 = -1;
  let qMax: f32 = 0;
  for (let e = 0; e < kvPerItem; e++) {
    const rows = headBuf(slot, oRows, e, <usize>maxRows << 4);
    const m = mBase + <usize>e * mStride;
    const l = lBase + <usize>e * mStride;
    for (let r = 0; r < nRows; r++) {
      const i = r / group;
      const j = r - i * group;
      const rt = rows + (<usize>r << 4);
      const acc = accBase + <usize>e * headStride + <usize>i * tokenStride + <usize>j * rowStride;
      const lo = load<i32>(rangePtr + (<usize>(t0 + i) << 3));
      const hi = load<i32>(rangePtr + (<usize>(t0 + i) << 3), 4);
      store<u32>(rt, <u32>acc);
      store<i32>(rt, lo, 4);
      store<i32>(rt, hi, 8);
      uLo = min(uLo, lo);
      uHi = max(uHi, hi);
      store<f32>(m + (<usize>r << 2), NEG_INF);
      store<f32>(l + (<usize>r << 2), 0);
      if (kDtype == DT_F16) qMax = max(qMax, absMax(queryRow(t0 + i, (g0 + e) * group + j)));
    }
  }
  // Raw f16 K needs q' * 2^112 finite: |q'| < 2^15 (a NaN / Inf q takes the exact path).
  kRaw = kDtype == DT_F16 && qMax * Mathf.abs(scaleLog2e) < 32768;
  const qScale = kRaw ? scaleLog2e * F16_REBIAS : scaleLog2e;
  for (let e = 0; e < kvPerItem; e++) {
    for (let r = 0; r < nRows; r++) {
      const i = r / group;
      prepareQuery(slot, e, r, queryRow(t0 + i, (g0 + e) * group + (r - i * group)), qScale);
    }
  }
  // The acc rows are zeroed only now: in direct mode they are `out` rows, which may be the q
  // rows just read (out = q, in place).
  for (let e = 0; e < kvPerItem; e++) {
    const rows = headBuf(slot, oRows, e, <usize>maxRows << 4);
    for (let r = 0; r < nRows; r++) {
      const acc = <usize>load<u32>(rows + (<usize>r << 4));
      for (let d: usize = 0; d < (<usize>hdPad << 2); d += 16) v128.store(acc + d, f32x4.splat(0));
    }
  }
  const kBeg = c * chunkKeys;
  const kEnd = min(nKeys, kBeg + chunkKeys);
  if (kBeg < kEnd && uLo <= uHi) gatherAndRun(slot, nRows, g0, kBeg, kEnd, uLo, uHi);
  if (direct) {
    for (let e = 0; e < kvPerItem; e++) {
      finishRows(headBuf(slot, oRows, e, <usize>maxRows << 4), nRows, mBase + <usize>e * mStride, lBase + <usize>e * mStride, t0, g0 + e);
    }
  }
}

/** Address of q row (token, head). */
@inline function queryRow(token: i32, head: i32): usize {
  return qPtr + (<usize>((token * nHeads + head) * headDim) << 2);
}

/** max |x| over a q row (NaN if the row holds a NaN: f32x4.max propagates it, pmax would not). */
function absMax(src: usize): f32 {
  let v = f32x4.splat(0);
  let d = 0;
  for (; d + 4 <= headDim; d += 4) v = f32x4.max(v, f32x4.abs(v128.load(src + (<usize>d << 2))));
  let m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  for (; d < headDim; d++) m = max(m, Mathf.abs(load<f32>(src + (<usize>d << 2))));
  return m;
}

/**
 * Query row r of kv head e of the item times `qScale` (scale * log2 e: scores in log2 units, times 2^112 for raw f16 K)
 * into the slot in the pair layout of attention-score.ts (chunk c of row r at
 * qs + (r >> 1) * hdPad * 8 + c * 32 + (r & 1) * 16), zero padded to hdPad; and for intK
 * quantized per 32-block to int16 into the int16 pair layout with 8-value chunks.
 */
function prepareQuery(slot: usize, e: i32, r: i32, src: usize, qScale: f32): void {
  const dst = headBuf(slot, oQs, e, qsHeadBytes()) + <usize>(r >> 1) * (<usize>hdPad << 3) + (<usize>(r & 1) << 4);
  const s = f32x4.splat(qScale);
  let d = 0;
  for (; d + 4 <= headDim; d += 4) v128.store(dst + (<usize>d << 3), f32x4.mul(v128.load(src + (<usize>d << 2)), s));
  for (; d < hdPad; d++) {
    const x = d < headDim ? load<f32>(src + (<usize>d << 2)) * qScale : <f32>0;
    store<f32>(dst + (<usize>(d >> 2) << 5) + (<usize>(d & 3) << 2), x);
  }
  if (!intK) return;
  const nBlocks = hdPad >> 5;
  const qi = headBuf(slot, oQi, e, qsHeadBytes() >> 1) + <usize>(r >> 1) * (<usize>hdPad << 2) + (<usize>(r & 1) << 4);
  const qd = headBuf(slot, oQd, e, <usize>(maxRows * nBlocks) << 2) + (<usize>(r * nBlocks) << 2);
  for (let b = 0; b < nBlocks; b++) {
    const p = dst + (<usize>b << 8); // the block's 8 f32 chunks, 32 bytes apart
    let amax = f32x4.abs(v128.load(p));
    for (let k: usize = 32; k < 256; k += 32) amax = f32x4.pmax(amax, f32x4.abs(v128.load(p + k)));
    const a = pmaxLanes(amax);
    // ggml's q8_0 rule with 16-bit values: d = amax / 32767, q = round(x / d) (an all-zero block
    // has d = 0, q = 0). The dot products are i16 x i16 anyway (K widened from int8), so the
    // wider query costs nothing and its rounding (~1.5e-5 of the block max) is negligible; with
    // ggml's 8-bit query it would be ~4e-3, which dominated the error of q8_0 K.
    const inv = f32x4.splat(a > 0 ? <f32>32767.0 / a : <f32>0);
    const o = qi + (<usize>b << 7); // the block's 4 i16 chunks, 32 bytes apart
    for (let k: usize = 0; k < 4; k++) {
      const x0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p + (k << 6)), inv)));
      const x1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p + (k << 6), 32), inv)));
      v128.store(o + (k << 5), i16x8.narrow_i32x4_s(x0, x1));
    }
    store<f32>(qd + (<usize>b << 2), a / <f32>32767.0);
  }
}

/**
 * Walk the segments overlapping keys [kBeg, kEnd), keeping only positions in [uLo, uHi] (the
 * union of the tile's visible ranges), and run the block steps on every BLOCK_KEYS keys
 * gathered, across segment boundaries (paged caches give many small segments).
 */
function gatherAndRun(slot: usize, nRows: i32, g: i32, kBeg: i32, kEnd: i32, uLo: i32, uHi: i32): void {
  // Last segment whose first key index is <= kBeg (binary search: segments can be thousands).
  let lo = 0, hi = nSegments - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (load<i32>(segPtr + <usize>mid * 20, 16) <= kBeg) lo = mid;
    else hi = mid - 1;
  }
  const kr = slot + oKr;
  const vr = slot + oVr;
  const pos = slot + oPos;
  const kRowBytes = rowBytes(kDtype, headDim);
  const vRowBytes = rowBytes(vDtype, headDim);
  let nb = 0;
  for (let s = lo; s < nSegments; s++) {
    const seg = segPtr + <usize>s * 20;
    const first = load<i32>(seg, 16);
    if (first >= kEnd) break;
    const pos0 = load<i32>(seg, 12);
    const t0 = max(max(0, kBeg - first), uLo - pos0);
    const t1 = min(min(load<i32>(seg, 8), kEnd - first), uHi - pos0 + 1);
    if (t0 >= t1) continue;
    let kp = <usize>load<u32>(seg) + <usize>g * kHeadStride + <usize>t0 * kTokenStride;
    let vp = <usize>load<u32>(seg, 4) + <usize>g * vHeadStride + <usize>t0 * vTokenStride;
    for (let t = t0; t < t1; t++, kp += kTokenStride, vp += vTokenStride) {
      // The row's K and V lines are touched as the block is gathered, so the block's misses are
      // in flight together before the decode passes read them (touch-ahead.ts: from DRAM a
      // decode pass alone keeps only its reorder window's lines in flight).
      if (kJoint) touchLines(kp, <usize>kvPerItem * kRowBytes);
      else for (let e = 0; e < kvPerItem; e++) touchLines(kp + <usize>e * kHeadStride, kRowBytes);
      if (vJoint) touchLines(vp, <usize>kvPerItem * vRowBytes);
      else for (let e = 0; e < kvPerItem; e++) touchLines(vp + <usize>e * vHeadStride, vRowBytes);
      store<u32>(kr + (<usize>nb << 2), <u32>kp);
      store<u32>(vr + (<usize>nb << 2), <u32>vp);
      store<i32>(pos + (<usize>nb << 2), pos0 + t);
      if (++nb == BLOCK_KEYS) {
        runBlock(slot, nRows, nb);
        nb = 0;
      }
    }
  }
  if (nb > 0) runBlock(slot, nRows, nb);
}

/**
 * Decode the block's K rows of the item's kv heads (quad layout, attention-score.ts), then per
 * kv head score and softmax step; decode the V rows ([nb, W]), then per kv head accumulate. The
 * kr / vr tables hold the cache addresses of the nb rows of the item's first kv head.
 */
function runBlock(slot: usize, nRows: i32, nb: i32): void {
  const nbPad = (nb + 3) & ~3;
  const pos = slot + oPos;
  // Padding keys: never visible (their K scratch is stale but finite or not, it is masked).
  for (let k = nb; k < nbPad; k++) store<i32>(pos + (<usize>k << 2), -1);
  const heads = kvPerItem;
  const headBytes = <usize>hdPad << 2; // one head's f32 row (V), or its 4-key chunk column (K)
  const wRow = <usize>heads * headBytes; // an f32 row of all the item's heads
  if (intK) {
    const quad = wRow << 1; // i16 quad: W / 8 chunks x 64 bytes
    const kd = slot + oKd;
    const kdHead = <usize>(hdPad >> 5) * (<usize>BLOCK_KEYS << 2);
    if (kJoint) decodeBlockI16(kDtype, slot + oKr, 0, nb, slot + oKi, quad, kd, heads * headDim, BLOCK_KEYS);
    else for (let e = 0; e < heads; e++) decodeBlockI16(kDtype, slot + oKr, <usize>e * kHeadStride, nb, slot + oKi + <usize>e * (headBytes << 1), quad, kd + <usize>e * kdHead, headDim, BLOCK_KEYS);
    for (let e = 0; e < heads; e++) {
      const qi = headBuf(slot, oQi, e, qsHeadBytes() >> 1);
      const qd = headBuf(slot, oQd, e, <usize>(maxRows * (hdPad >> 5)) << 2);
      scoreBlockInt(nRows, qi, qd, headBuf(slot, oRows, e, <usize>maxRows << 4), slot + oKi + <usize>e * (headBytes << 1), kd + <usize>e * kdHead, pos, headBuf(slot, oS, e, <usize>(maxRows * BLOCK_KEYS) << 2), nbPad, hdPad, quad);
    }
  } else {
    const quad = wRow << 2; // f32 quad: W / 4 chunks x 64 bytes
    if (kJoint) decodeBlockF32(kDtype, slot + oKr, 0, nb, slot + oKf, quad, 16, 64, heads * headDim, heads * hdPad, kRaw);
    else for (let e = 0; e < heads; e++) decodeBlockF32(kDtype, slot + oKr, <usize>e * kHeadStride, nb, slot + oKf + <usize>e * (headBytes << 2), quad, 16, 64, headDim, hdPad, kRaw);
    for (let e = 0; e < heads; e++) {
      scoreBlockF32(nRows, headBuf(slot, oQs, e, qsHeadBytes()), headBuf(slot, oRows, e, <usize>maxRows << 4), slot + oKf + <usize>e * (headBytes << 2), pos, headBuf(slot, oS, e, <usize>(maxRows * BLOCK_KEYS) << 2), nbPad, hdPad, quad);
    }
  }
  const vScale: f32 = vDtype == DT_F16 ? F16_REBIAS : 1;
  for (let e = 0; e < heads; e++) {
    const rows = headBuf(slot, oRows, e, <usize>maxRows << 4);
    softmaxBlock(nRows, rows, headBuf(slot, oS, e, <usize>(maxRows * BLOCK_KEYS) << 2), nb, mBase + <usize>e * mStride, lBase + <usize>e * mStride, hdPad, vScale);
  }
  if (vJoint) decodeBlockF32(vDtype, slot + oVr, 0, nb, slot + oVf, wRow << 2, wRow, 16, heads * headDim, heads * hdPad, true);
  else for (let e = 0; e < heads; e++) decodeBlockF32(vDtype, slot + oVr, <usize>e * vHeadStride, nb, slot + oVf + <usize>e * headBytes, wRow << 2, wRow, 16, headDim, hdPad, true);
  for (let e = 0; e < heads; e++) {
    accumulateBlock(nRows, headBuf(slot, oRows, e, <usize>maxRows << 4), headBuf(slot, oS, e, <usize>(maxRows * BLOCK_KEYS) << 2), slot + oVf + <usize>e * headBytes, nb, hdPad, wRow);
  }
}

/** Direct mode: out = acc / l and lse = m ln 2 + ln l; rows with no visible key get 0 / -Infinity. */
function finishRows(rows: usize, nRows: i32, m: usize, l: usize, t0: i32, g: i32): void {
  const rowBytes = <usize>headDim << 2;
  for (let r = 0; r < nRows; r++) {
    const i = r / group;
    const h = g * group + (r - i * group);
    const acc = <usize>load<u32>(rows + (<usize>r << 4));
    const mr = load<f32>(m + (<usize>r << 2));
    const lp = lsePtr + (<usize>((t0 + i) * nHeads + h) << 2);
    if (mr == NEG_INF) {
      for (let d: usize = 0; d < rowBytes; d += 16) v128.store(acc + d, f32x4.splat(0));
      store<f32>(lp, NEG_INF);
      continue;
    }
    const lr = load<f32>(l + (<usize>r << 2));
    const inv = f32x4.splat(lr);
    for (let d: usize = 0; d < rowBytes; d += 16) v128.store(acc + d, f32x4.div(v128.load(acc + d), inv));
    store<f32>(lp, <f32>(<f64>mr * LN2 + Math.log(<f64>lr)));
  }
}

/**
 * args: as attention_tile. Items [begin, end) are (token, head) rows of the output: combine the
 * nChunks partial records of the row in chunk order (exact LSE merge; a chunk with m = -Infinity
 * saw no key and is skipped without reading its acc).
 */
export function attention_merge(args: usize, begin: i32, end: i32): void {
  loadArgs(args);
  for (let row = begin; row < end; row++) mergeRow(row);
}

/** Merge the chunk partials of output row `row` (token * nHeads + head) of the loaded call. */
function mergeRow(row: i32): void {
  const pBytes = partialBytes();
  const token = row / nHeads;
  const h = row - token * nHeads;
  const tile = token / tileTokens;
  const g = h / group;
  const r = (token - tile * tileTokens) * group + (h - g * group);
  const first = partialPtr + <usize>((tile * nKvHeads + g) * nChunks) * pBytes;
  const mOff = (<usize>(maxRows * hdPad + r) << 2);
  const lOff = (<usize>(maxRows * hdPad + maxRows + r) << 2);
  const accOff = <usize>(r * hdPad) << 2;
  let mMax = NEG_INF;
  for (let c = 0; c < nChunks; c++) mMax = max(mMax, load<f32>(first + <usize>c * pBytes + mOff));
  const out = outPtr + (<usize>(row * headDim) << 2);
  const lse = lsePtr + (<usize>row << 2);
  for (let d = 0; d < headDim; d++) store<f32>(out + (<usize>d << 2), 0);
  if (mMax == NEG_INF) {
    store<f32>(lse, NEG_INF);
    return;
  }
  let sum: f64 = 0;
  for (let c = 0; c < nChunks; c++) {
    const rec = first + <usize>c * pBytes;
    const mc = load<f32>(rec + mOff);
    // exp2, not pow(2, x): the same accuracy (< 0.52 ulp), a third of the cost (pow = log + exp).
    if (mc != NEG_INF) sum += <f64>load<f32>(rec + lOff) * Math.exp2(<f64>(mc - mMax));
  }
  for (let c = 0; c < nChunks; c++) {
    const rec = first + <usize>c * pBytes;
    const mc = load<f32>(rec + mOff);
    if (mc == NEG_INF) continue;
    const w = <f32>(Math.exp2(<f64>(mc - mMax)) / sum);
    addScaledRow(out, rec + accOff, w);
  }
  store<f32>(lse, <f32>(<f64>mMax * LN2 + Math.log(sum)));
}

// ---- many calls in one dispatch (JS: wasmAttentionManyAt) ----
//
// The multi argument block (slots): 0 call table (one per-call argument block of loadArgs every
// `stride` bytes), 1 stride, 2 item starts (i32 [nCalls + 1], prefix sums of the calls' item
// counts), 3 nCalls, 4 slot base, 5 slot bytes (the largest call's), 6 grain, 7 merge-row starts
// (i32 [nCalls + 1], prefix sums of the rows each call merges: 0 for a direct call).
// Item i of the dispatch is local item i - starts[c] of the call c with starts[c] <= i <
// starts[c + 1]: each call runs exactly the items of its own plan, with its own globals, so the
// results are bit-identical to running the calls one by one. A call's slot layout fits in the
// shared slot (slot bytes = the max over calls).

/** The call c with starts[c] <= i < starts[c + 1] (the last such c when counts are 0). */
function callOf(starts: usize, nCalls: i32, i: i32): i32 {
  let lo = 0, hi = nCalls - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (load<i32>(starts + (<usize>mid << 2)) <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** args: the multi block above. Runs the dispatch's items [begin, end) (attention_tile per call). */
export function attention_multi(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const stride = argU32(args, 1);
  const starts = argU32(args, 2);
  const n = argI32(args, 3);
  const slot = argU32(args, 4) + <usize>(begin / argI32(args, 6)) * argU32(args, 5);
  let c = -1;
  let cBeg = 0, cEnd = 0;
  for (let item = begin; item < end; item++) {
    if (item >= cEnd) {
      c = c < 0 ? callOf(starts, n, item) : c + 1;
      while (load<i32>(starts + (<usize>(c + 1) << 2)) <= item) c++;
      cBeg = load<i32>(starts + (<usize>c << 2));
      cEnd = load<i32>(starts + (<usize>(c + 1) << 2));
      loadArgs(table + <usize>c * stride);
    }
    runItem(item - cBeg, slot);
  }
}

/** args: the multi block above. Merges rows [begin, end) of the dispatch (attention_merge per call). */
export function attention_merge_multi(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const stride = argU32(args, 1);
  const starts = argU32(args, 7);
  const n = argI32(args, 3);
  let c = -1;
  let cBeg = 0, cEnd = 0;
  for (let row = begin; row < end; row++) {
    if (row >= cEnd) {
      c = c < 0 ? callOf(starts, n, row) : c + 1;
      while (load<i32>(starts + (<usize>(c + 1) << 2)) <= row) c++;
      cBeg = load<i32>(starts + (<usize>c << 2));
      cEnd = load<i32>(starts + (<usize>(c + 1) << 2));
      loadArgs(table + <usize>c * stride);
    }
    mergeRow(row - cBeg);
  }
}

/** out[0, headDim) += w * acc[0, headDim) (acc rows are hdPad long; out rows headDim). */
function addScaledRow(out: usize, acc: usize, w: f32): void {
  const wv = f32x4.splat(w);
  let d = 0;
  for (; d + 4 <= headDim; d += 4) {
    const o = out + (<usize>d << 2);
    v128.store(o, f32x4.add(v128.load(o), f32x4.mul(v128.load(acc + (<usize>d << 2)), wv)));
  }
  for (; d < headDim; d++) {
    const o = out + (<usize>d << 2);
    store<f32>(o, load<f32>(o) + load<f32>(acc + (<usize>d << 2)) * w);
  }
}
