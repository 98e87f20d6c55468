// Steps 2 and 3 of online softmax attention over one block of keys (at most BLOCK_KEYS) for all
// query rows of a tile (a tile = some query tokens x the query heads of one kv head); step 1,
// the scores, is attention-score.ts:
//
//   scores    S[r, k] = q'[r] . K[k] in log2 units, -Infinity where key k is not visible to row r
//   softmax   m[r] = max(m[r], max_k S[r, k]); rescale l[r] and acc[r] by 2^(m_old - m_new);
//             S[r, k] = 2^(S[r, k] - m[r]); l[r] += sum_k S[r, k]
//   values    acc[r] += sum_k S[r, k] * V[k]
//
// Every K/V row of the block is decoded once and then used by every row of the tile (GQA heads
// and, in prefill, the tile's query tokens), so K/V bytes are read once per tile.
//
// Row table `rows`: i32 [nRows, 4] = (acc pointer, lowest visible position, highest visible
// position, 1 if every one of the block's nb weights of the row is nonzero (set by
// softmaxBlock)); acc rows are [hdPad] f32. Scores, then weights: S = f32 [nRows, BLOCK_KEYS].
// Key positions `pos`: i32 [nbPad], -1 on the padding keys past nb (never visible: every lowest
// visible position is >= 0).
import { exp2s, exp2x4, pmaxLanes } from './attention-math';
import { BLOCK_KEYS } from './attention-score';
import { fma4, hsum4 } from './simd';

const NEG_INF: f32 = -Infinity;

/**
 * Online softmax step for every row: fold the block's max into m, rescale l and acc when m grows,
 * turn S into weights 2^(S - m) and add them to l. m = f32 [nRows], l = f32 [nRows].
 * A row whose block is fully masked gets all-zero weights and keeps m, l, acc unchanged.
 * The weights left in S are multiplied by vScale (2^112 for raw f16 V rows, attention-rows.ts
 * decodeBlockF32; else 1): an exact power-of-two scaling, so S * V is unchanged bit for bit.
 */
export function softmaxBlock(nRows: i32, rows: usize, scores: usize, nb: i32, m: usize, l: usize, hdPad: i32, vScale: f32): void {
  const nbPad = (nb + 3) & ~3;
  const vs = f32x4.splat(vScale);
  const zero = f32x4.splat(0);
  for (let r = 0; r < nRows; r++) {
    const sRow = scores + (<usize>(r * BLOCK_KEYS) << 2);
    const rt = rows + (<usize>r << 4);
    const lp = l + (<usize>r << 2);
    let vmax = v128.load(sRow);
    for (let k = 4; k < nbPad; k += 4) vmax = f32x4.pmax(vmax, v128.load(sRow + (<usize>k << 2)));
    const mNew = foldMax(pmaxLanes(vmax), m + (<usize>r << 2), lp, rt, hdPad);
    if (mNew == NEG_INF) {
      for (let k = 0; k < nbPad; k += 4) v128.store(sRow + (<usize>k << 2), zero);
      store<i32>(rt, 0, 12);
      continue;
    }
    const mv = f32x4.splat(mNew);
    let sum = zero;
    let zeros = i32x4.splat(0); // -1 per zero weight (the padding keys included)
    let k = 0;
    for (; k + 16 <= nbPad; k += 16) {
      // Four exponentials side by side, for the out-of-order core to overlap.
      const sp = sRow + (<usize>k << 2);
      const p0 = exp2x4(f32x4.sub(v128.load(sp), mv));
      const p1 = exp2x4(f32x4.sub(v128.load(sp, 16), mv));
      const p2 = exp2x4(f32x4.sub(v128.load(sp, 32), mv));
      const p3 = exp2x4(f32x4.sub(v128.load(sp, 48), mv));
      v128.store(sp, f32x4.mul(p0, vs));
      v128.store(sp, f32x4.mul(p1, vs), 16);
      v128.store(sp, f32x4.mul(p2, vs), 32);
      v128.store(sp, f32x4.mul(p3, vs), 48);
      sum = f32x4.add(sum, f32x4.add(f32x4.add(p0, p1), f32x4.add(p2, p3)));
      zeros = i32x4.add(zeros, i32x4.add(i32x4.add(f32x4.eq(p0, zero), f32x4.eq(p1, zero)), i32x4.add(f32x4.eq(p2, zero), f32x4.eq(p3, zero))));
    }
    for (; k < nbPad; k += 4) {
      const p = exp2x4(f32x4.sub(v128.load(sRow + (<usize>k << 2)), mv));
      v128.store(sRow + (<usize>k << 2), f32x4.mul(p, vs));
      sum = f32x4.add(sum, p);
      zeros = i32x4.add(zeros, f32x4.eq(p, zero));
    }
    store<f32>(lp, load<f32>(lp) + hsum4(sum));
    const z = i32x4.add(zeros, i32x4.shuffle(zeros, zeros, 2, 3, 0, 1));
    const nZero = -(i32x4.extract_lane(z, 0) + i32x4.extract_lane(z, 1));
    store<i32>(rt, nZero == nbPad - nb ? 1 : 0, 12);
  }
}

/**
 * Fold a block's max into the running max at mp; when it grows, rescale the running sum (lp) and
 * the acc row (row table entry rt) from the old max to the new one. Returns the new max
 * (-Infinity: nothing visible yet, the block adds nothing).
 */
@inline function foldMax(blockMax: f32, mp: usize, lp: usize, rt: usize, hdPad: i32): f32 {
  const mOld = load<f32>(mp);
  if (!(blockMax > mOld)) return mOld;
  store<f32>(mp, blockMax);
  if (mOld != NEG_INF) {
    const alpha = exp2s(mOld - blockMax);
    store<f32>(lp, load<f32>(lp) * alpha);
    scaleRow(<usize>load<u32>(rt), alpha, hdPad);
  }
  return blockMax;
}

@inline function scaleRow(acc: usize, alpha: f32, hdPad: i32): void {
  const a = f32x4.splat(alpha);
  const end = acc + (<usize>hdPad << 2);
  for (let p = acc; p < end; p += 16) v128.store(p, f32x4.mul(v128.load(p), a));
}

/**
 * acc[r] += sum_k S[r, k] * V[k] over the nb real keys; vf = f32 [nb, hdPad] decoded V rows,
 * `rowBytes` apart (>= hdPad * 4: other kv heads' values may sit between them).
 * Register tile of 2 rows x 16 output lanes kept across the keys of the block: each V vector
 * loaded feeds both rows; weights and V rows are walked by pointers with immediate offsets.
 * Zero weights (masked keys) are skipped per row, so a key that a row cannot see never touches
 * that row's sum (not even as 0 * Inf); rows whose weights are all nonzero (the row table's
 * flag, the common case) take the loop without the per-key test.
 */
export function accumulateBlock(nRows: i32, rows: usize, scores: usize, vf: usize, nb: i32, hdPad: i32, rowBytes: usize): void {
  const wide = hdPad & ~15;
  let r = 0;
  for (; r + 2 <= nRows; r += 2) {
    const rt = rows + (<usize>r << 4);
    const accA = <usize>load<u32>(rt);
    const accB = <usize>load<u32>(rt, 16);
    const sA = scores + (<usize>(r * BLOCK_KEYS) << 2);
    if ((load<i32>(rt, 12) & load<i32>(rt, 28)) == 0) {
      for (let d = 0; d < hdPad; d += 4) {
        accumulateLanes(accA, sA, vf, nb, d, rowBytes);
        accumulateLanes(accB, sA + (<usize>BLOCK_KEYS << 2), vf, nb, d, rowBytes);
      }
      continue;
    }
    const sEnd = sA + (<usize>nb << 2);
    let d = 0;
    for (; d < wide; d += 16) {
      const off = <usize>d << 2;
      const pa = accA + off;
      const pb = accB + off;
      let a0 = v128.load(pa), a1 = v128.load(pa, 16), a2 = v128.load(pa, 32), a3 = v128.load(pa, 48);
      let b0 = v128.load(pb), b1 = v128.load(pb, 16), b2 = v128.load(pb, 32), b3 = v128.load(pb, 48);
      let v = vf + off;
      for (let sp = sA; sp < sEnd; sp += 4, v += rowBytes) {
        const x = v128.load32_splat(sp);
        const y = v128.load32_splat(sp, BLOCK_KEYS << 2);
        let vv = v128.load(v);
        a0 = fma4(x, vv, a0);
        b0 = fma4(y, vv, b0);
        vv = v128.load(v, 16);
        a1 = fma4(x, vv, a1);
        b1 = fma4(y, vv, b1);
        vv = v128.load(v, 32);
        a2 = fma4(x, vv, a2);
        b2 = fma4(y, vv, b2);
        vv = v128.load(v, 48);
        a3 = fma4(x, vv, a3);
        b3 = fma4(y, vv, b3);
      }
      v128.store(pa, a0);
      v128.store(pa, a1, 16);
      v128.store(pa, a2, 32);
      v128.store(pa, a3, 48);
      v128.store(pb, b0);
      v128.store(pb, b1, 16);
      v128.store(pb, b2, 32);
      v128.store(pb, b3, 48);
    }
    for (; d < hdPad; d += 4) {
      accumulateLanes(accA, sA, vf, nb, d, rowBytes);
      accumulateLanes(accB, sA + (<usize>BLOCK_KEYS << 2), vf, nb, d, rowBytes);
    }
  }
  if (r < nRows) accumulateRow(rows + (<usize>r << 4), scores + (<usize>(r * BLOCK_KEYS) << 2), vf, nb, hdPad, rowBytes);
}

/**
 * The odd last row: 16 output lanes per pass without the per-key test when its weights are all
 * nonzero, else 4 lanes skipping zero weights. (Wider register tiles spill here: V8 hoists every
 * load of the loop body, and a spilled sum turns the loop into a store-to-load latency chain.)
 */
function accumulateRow(rt: usize, sRow: usize, vf: usize, nb: i32, hdPad: i32, rowBytes: usize): void {
  const acc = <usize>load<u32>(rt);
  const sEnd = sRow + (<usize>nb << 2);
  let d = 0;
  if (load<i32>(rt, 12) != 0) {
    for (; d + 16 <= hdPad; d += 16) {
      const off = <usize>d << 2;
      const ap = acc + off;
      let o0 = v128.load(ap), o1 = v128.load(ap, 16), o2 = v128.load(ap, 32), o3 = v128.load(ap, 48);
      let v = vf + off;
      for (let sp = sRow; sp < sEnd; sp += 4, v += rowBytes) {
        const x = v128.load32_splat(sp);
        o0 = fma4(x, v128.load(v), o0);
        o1 = fma4(x, v128.load(v, 16), o1);
        o2 = fma4(x, v128.load(v, 32), o2);
        o3 = fma4(x, v128.load(v, 48), o3);
      }
      v128.store(ap, o0);
      v128.store(ap, o1, 16);
      v128.store(ap, o2, 32);
      v128.store(ap, o3, 48);
    }
  }
  for (; d < hdPad; d += 4) accumulateLanes(acc, sRow, vf, nb, d, rowBytes);
}

/** The 4 output lanes [d, d + 4) of one row, skipping zero weights. */
function accumulateLanes(acc: usize, sRow: usize, vf: usize, nb: i32, d: i32, rowBytes: usize): void {
  const off = <usize>d << 2;
  let o = v128.load(acc + off);
  let v = vf + off;
  for (let k = 0; k < nb; k++, v += rowBytes) {
    const w = load<f32>(sRow + (<usize>k << 2));
    if (w == 0) continue;
    o = fma4(f32x4.splat(w), v128.load(v), o);
  }
  v128.store(acc + off, o);
}
