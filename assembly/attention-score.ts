// Step 1 of attention-block.ts: the scores of one block of keys for every query row of a tile,
//
//   S[r, k] = q'[r] . K[k]      (q' = q * scale * log2 e: scores in log2 units)
//   S[r, k] = -Infinity         where key k's position is outside row r's [lo, hi]
//
// as a register tile of 2 query rows x 4 keys: each K vector loaded feeds two multiply-adds and
// each q vector four; the four sums of a row are reduced together (sum4x4). An odd last row runs
// the 1 x 4 tile. The reduction order is fixed by the tile, never by the thread.
//
// Both operands are interleaved in scratch (attention.ts) so that a tile step reads every vector
// at an immediate offset from two pointers that just advance: V8 neither folds address adds into
// loads nor keeps many pointers in registers, and spills in these loops cost more than the math.
//
//   q pairs  [nPairs, nChunks, 2 rows, chunk]     rows 2p, 2p + 1 side by side per chunk
//   K quads  [nbPad / 4, nChunks, 4 keys, chunk]  the 4 keys of a tile side by side per chunk
//
// A chunk is 4 f32 (float path) or 8 i16 (integer path); either way 16 bytes.
import { sum4x4, sum4x4i } from './attention-math';
import { fma4 } from './simd';

/** Keys per block: S rows, decoded K/V rows and the row address tables are sized by it (JS: BLOCK_KEYS). */
export const BLOCK_KEYS: i32 = 64;

const NEG_INF: f32 = -Infinity;

/** -Infinity in the lanes of `s` whose key position is outside [lo, hi]. */
@inline function maskScores(s: v128, posPtr: usize, lo: v128, hi: v128): v128 {
  const p = v128.load(posPtr);
  const visible = v128.and(i32x4.ge_s(p, lo), i32x4.le_s(p, hi));
  return v128.bitselect(s, f32x4.splat(NEG_INF), visible);
}

/**
 * Scores from f32 operands: qs = q' pairs ([.., hdPad / 4, 2, 4] f32), kf = K quads
 * ([nbPad / 4, hdPad / 4, 4, 4] f32, quads `quadStride` bytes apart: other kv heads' chunks may
 * sit between them). rows: the row table (attention-block.ts header).
 */
export function scoreBlockF32(
  nRows: i32, qs: usize, rows: usize, kf: usize, pos: usize, scores: usize, nbPad: i32, hdPad: i32, quadStride: usize,
): void {
  const pairBytes = <usize>hdPad << 3; // one q pair: hdPad / 4 chunks x 32 bytes
  const quadBytes = <usize>hdPad << 4; // one K quad: hdPad / 4 chunks x 64 bytes
  let r = 0;
  for (; r + 2 <= nRows; r += 2) {
    const qp = qs + <usize>(r >> 1) * pairBytes;
    const rt = rows + (<usize>r << 4);
    const loA = i32x4.splat(load<i32>(rt, 4)), hiA = i32x4.splat(load<i32>(rt, 8));
    const loB = i32x4.splat(load<i32>(rt, 20)), hiB = i32x4.splat(load<i32>(rt, 24));
    const sA = scores + (<usize>(r * BLOCK_KEYS) << 2);
    for (let k = 0; k < nbPad; k += 4) {
      let x = qp;
      let y = kf + <usize>(k >> 2) * quadStride;
      const end = y + quadBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
      for (; y < end; x += 32, y += 64) {
        const va = v128.load(x);
        const vb = v128.load(x, 16);
        let kv = v128.load(y);
        a0 = fma4(va, kv, a0);
        b0 = fma4(vb, kv, b0);
        kv = v128.load(y, 16);
        a1 = fma4(va, kv, a1);
        b1 = fma4(vb, kv, b1);
        kv = v128.load(y, 32);
        a2 = fma4(va, kv, a2);
        b2 = fma4(vb, kv, b2);
        kv = v128.load(y, 48);
        a3 = fma4(va, kv, a3);
        b3 = fma4(vb, kv, b3);
      }
      const o = <usize>k << 2;
      v128.store(sA + o, maskScores(sum4x4(a0, a1, a2, a3), pos + o, loA, hiA));
      v128.store(sA + o, maskScores(sum4x4(b0, b1, b2, b3), pos + o, loB, hiB), BLOCK_KEYS << 2);
    }
  }
  if (r < nRows) scoreRowF32(qs + <usize>(r >> 1) * pairBytes, rows + (<usize>r << 4), kf, pos, scores + (<usize>(r * BLOCK_KEYS) << 2), nbPad, quadBytes, quadStride);
}

/** The odd last row: a 1 x 4 tile. */
function scoreRowF32(qp: usize, rt: usize, kf: usize, pos: usize, sRow: usize, nbPad: i32, quadBytes: usize, quadStride: usize): void {
  const lo = i32x4.splat(load<i32>(rt, 4));
  const hi = i32x4.splat(load<i32>(rt, 8));
  for (let k = 0; k < nbPad; k += 4) {
    let x = qp;
    let y = kf + <usize>(k >> 2) * quadStride;
    const end = y + quadBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (; y < end; x += 32, y += 64) {
      const v = v128.load(x);
      a0 = fma4(v, v128.load(y), a0);
      a1 = fma4(v, v128.load(y, 16), a1);
      a2 = fma4(v, v128.load(y, 32), a2);
      a3 = fma4(v, v128.load(y, 48), a3);
    }
    v128.store(sRow + (<usize>k << 2), maskScores(sum4x4(a0, a1, a2, a3), pos + (<usize>k << 2), lo, hi));
  }
}

/**
 * Scores from int16 operands (q8_0 / q4_0 K): qi = quantized q' pairs ([.., hdPad / 8, 2, 8]
 * i16, |q| <= 32767) with scales qd = f32 [nRows, nBlocks]; ki = K quads ([nbPad / 4,
 * hdPad / 8, 4, 8] i16, |k| <= 127; quads `quadStride` bytes apart) with scales kd = f32
 * [nBlocks, BLOCK_KEYS]. As ggml's
 * vec_dot_q8_0_q8_0 but with a 16-bit query: each 32-block dot is exact in i32
 * (i32x4.dot_i16x8_s; |sum| <= 32 * 32767 * 127 < 2^31), then scaled by d_k * d_q, summed in f32.
 */
export function scoreBlockInt(
  nRows: i32, qi: usize, qd: usize, rows: usize, ki: usize, kd: usize, pos: usize, scores: usize,
  nbPad: i32, hdPad: i32, quadStride: usize,
): void {
  const nBlocks = hdPad >> 5;
  const pairBytes = <usize>hdPad << 2; // hdPad / 8 chunks x 32 bytes
  let r = 0;
  for (; r + 2 <= nRows; r += 2) {
    const qp = qi + <usize>(r >> 1) * pairBytes;
    const qda = qd + (<usize>(r * nBlocks) << 2);
    const qdb = qda + (<usize>nBlocks << 2);
    const rt = rows + (<usize>r << 4);
    const loA = i32x4.splat(load<i32>(rt, 4)), hiA = i32x4.splat(load<i32>(rt, 8));
    const loB = i32x4.splat(load<i32>(rt, 20)), hiB = i32x4.splat(load<i32>(rt, 24));
    const sA = scores + (<usize>(r * BLOCK_KEYS) << 2);
    for (let k = 0; k < nbPad; k += 4) {
      let x = qp;
      let y = ki + <usize>(k >> 2) * quadStride;
      let accA = f32x4.splat(0), accB = f32x4.splat(0);
      for (let b = 0; b < nBlocks; b++) {
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        let b0 = i32x4.splat(0), b1 = i32x4.splat(0), b2 = i32x4.splat(0), b3 = i32x4.splat(0);
        const end = y + 256;
        for (; y < end; x += 32, y += 64) {
          const xa = v128.load(x);
          const xb = v128.load(x, 16);
          let kv = v128.load(y);
          a0 = i32x4.add(a0, i32x4.dot_i16x8_s(xa, kv));
          b0 = i32x4.add(b0, i32x4.dot_i16x8_s(xb, kv));
          kv = v128.load(y, 16);
          a1 = i32x4.add(a1, i32x4.dot_i16x8_s(xa, kv));
          b1 = i32x4.add(b1, i32x4.dot_i16x8_s(xb, kv));
          kv = v128.load(y, 32);
          a2 = i32x4.add(a2, i32x4.dot_i16x8_s(xa, kv));
          b2 = i32x4.add(b2, i32x4.dot_i16x8_s(xb, kv));
          kv = v128.load(y, 48);
          a3 = i32x4.add(a3, i32x4.dot_i16x8_s(xa, kv));
          b3 = i32x4.add(b3, i32x4.dot_i16x8_s(xb, kv));
        }
        const dk = v128.load(kd + (<usize>(b * BLOCK_KEYS + k) << 2));
        const qo = <usize>b << 2;
        accA = fma4(f32x4.mul(f32x4.convert_i32x4_s(sum4x4i(a0, a1, a2, a3)), dk), v128.load32_splat(qda + qo), accA);
        accB = fma4(f32x4.mul(f32x4.convert_i32x4_s(sum4x4i(b0, b1, b2, b3)), dk), v128.load32_splat(qdb + qo), accB);
      }
      const o = <usize>k << 2;
      v128.store(sA + o, maskScores(accA, pos + o, loA, hiA));
      v128.store(sA + o, maskScores(accB, pos + o, loB, hiB), BLOCK_KEYS << 2);
    }
  }
  if (r < nRows) {
    const qp = qi + <usize>(r >> 1) * pairBytes;
    const qdr = qd + (<usize>(r * nBlocks) << 2);
    const rt = rows + (<usize>r << 4);
    const lo = i32x4.splat(load<i32>(rt, 4));
    const hi = i32x4.splat(load<i32>(rt, 8));
    const sRow = scores + (<usize>(r * BLOCK_KEYS) << 2);
    for (let k = 0; k < nbPad; k += 4) {
      let x = qp;
      let y = ki + <usize>(k >> 2) * quadStride;
      let acc = f32x4.splat(0);
      for (let b = 0; b < nBlocks; b++) {
        let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
        const end = y + 256;
        for (; y < end; x += 32, y += 64) {
          const v = v128.load(x);
          a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v, v128.load(y)));
          a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v, v128.load(y, 16)));
          a2 = i32x4.add(a2, i32x4.dot_i16x8_s(v, v128.load(y, 32)));
          a3 = i32x4.add(a3, i32x4.dot_i16x8_s(v, v128.load(y, 48)));
        }
        const dk = v128.load(kd + (<usize>(b * BLOCK_KEYS + k) << 2));
        acc = fma4(f32x4.mul(f32x4.convert_i32x4_s(sum4x4i(a0, a1, a2, a3)), dk), v128.load32_splat(qdr + (<usize>b << 2)), acc);
      }
      v128.store(sRow + (<usize>k << 2), maskScores(acc, pos + (<usize>k << 2), lo, hi));
    }
  }
}
