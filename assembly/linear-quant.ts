// Linear layers with ggml block-quantized weights (q8_0, q4_0): the f32 activations are first
// quantized per 32-block to int8 (ggml's rule, linear_quantize_x), then every block's dot
// product is exact integer arithmetic and only the block scale product d_w * d_x is f32.
//
//   weight block q8_0 (34 bytes): [d f16][q int8 x 32]                               w_j = d * q_j
//   weight block q4_0 (18 bytes): [d f16][16 bytes: low nibble j, high nibble j + 16]  w_j = d * (n_j - 8)
//
//   quantized activations, per token row (written by linear_quantize_x):
//     xq [nBlocks, 4, 8] i16   block = [q0 q2 .. q14 | q1 q3 .. q15 | q16 q18 .. q30 | q17 q19 .. q31]
//     xs [nGroups * 4] f32     d_x per block (amax / 127, kept f32), zero past nBlocks
//   (nGroups = ceil(nBlocks / 4): blocks are handled 4 at a time)
//
// NOTE(1): Widening a weight block to i16 costs one or two ops per 8 weights because the
//   activations come in even/odd order: viewing 16 weight bytes as i16x8, lane k holds bytes 2k
//   (low) and 2k+1 (high), so `shl 8` gives 256 * q[2k] and `and 0xff00` gives 256 * q[2k+1]
//   (q8_0); for q4_0, XOR with 0x8 turns each nibble n into the 4-bit two's complement of n - 8,
//   and `shl 12`, `shl 4 & 0xf000`, `shl 8 & 0xf000`, `& 0xf000` give 4096 * (n - 8) of nibbles
//   {2k, 2k+1, 16+2k, 17+2k}. i32x4.dot_i16x8_s then sums the products pairwise, exactly: a block
//   sum is 256 S (q8_0, |S| <= 32*128*127) or 4096 S (q4_0, |S| <= 32*8*127), below 2^31 and
//   exact in f32. The 1/256 or 1/4096 is folded, exactly, into the f16 -> f32 scale conversion.
// NOTE(2): Blocks go 4 at a time: the 4 block sums are transposed into one i32x4 (lane k = block
//   k), converted once and multiplied by 4 scale products (d_w gathered and converted as one
//   vector). One canonical arithmetic per (row, token) pair: acc += f32(S_g) * (d_w,g * d_x,g)
//   over the groups g in order on one f32x4, then hsum4. Tiles never change it, so 1 and N
//   threads agree bit for bit and matmul of one token equals matvec.
// NOTE(3): d_x stays f32 (ggml stores it as f16 in block_q8_0): the int8 values are ggml's,
//   the scale is just more precise, which only lowers the error against the f32 reference.
import { argI32, argU32, fma4, hsum4 } from './simd';
import { touchStart, touchUpTo } from './touch-ahead';

const Q8 = 0;
const Q4 = 1;
const QK = 32;
/** Rows per matmul chunk (kept in L1/L2 across the token tiles). */
const MM_CHUNK = 16;

@inline function blockBytes(kind: i32): usize {
  return kind == Q8 ? 34 : 18;
}

/**
 * C roundf (half away from zero) on 4 lanes, exactly: copysign(trunc(|v| + c), v) with c the
 * float just below 0.5. A tie k + 0.5 gives k + 1 - 2^-25, which rounds up to k + 1 in f32,
 * while 0.49999997 + c stays below 1 (checked against roundf near every k and k + 0.5 up to 128
 * and on all of [2^-31, 1)).
 */
@inline function roundHalfAway(v: v128): v128 {
  const mag = f32x4.add(v128.and(v, i32x4.splat(0x7fffffff)), f32x4.splat(0.4999999701976776));
  return v128.or(f32x4.trunc(mag), v128.and(v, i32x4.splat(0x80000000)));
}

/**
 * ggml's int8 of 4 lanes: roundf(v * id) as i32 lanes (|.| <= 127 by construction). The rounded
 * value is an integer-valued f32, so adding 1.5 * 2^23 leaves it in the low mantissa bits
 * (cheaper than i32x4.trunc_sat_f32x4_s, which handles NaN and overflow).
 */
@inline function int8Lanes(v: v128, id: v128): v128 {
  const r = roundHalfAway(f32x4.mul(v, id));
  return i32x4.sub(f32x4.add(r, f32x4.splat(12582912.0)), i32x4.splat(0x4b400000));
}

/** i16 elements {0, 2, .., 14} of 16 held as i32 in a (0..3), b, c, d (12..15). */
@inline function evens16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i16x8.narrow_i32x4_s(i32x4.shuffle(a, b, 0, 2, 4, 6), i32x4.shuffle(c, d, 0, 2, 4, 6));
}
/** i16 elements {1, 3, .., 15}. */
@inline function odds16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i16x8.narrow_i32x4_s(i32x4.shuffle(a, b, 1, 3, 5, 7), i32x4.shuffle(c, d, 1, 3, 5, 7));
}

/**
 * args: [0] X ptr f32 [nTokens, nIn], [1] xq ptr, [2] xs ptr (layouts: file header), [3] nIn
 * (a multiple of 32). Token rows [begin, end).
 */
export function linear_quantize_x(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const xq = argU32(args, 1);
  const xs = argU32(args, 2);
  const nIn = argI32(args, 3);
  const nBlocks = nIn / QK;
  const nPad = (nBlocks + 3) & ~3;
  for (let t = begin; t < end; t++) {
    const xRow = x + <usize>t * (<usize>nIn << 2);
    const qRow = xq + <usize>t * (<usize>nIn << 1);
    const sRow = xs + <usize>t * (<usize>nPad << 2);
    for (let b = 0; b < nBlocks; b++) {
      const p = xRow + (<usize>b << 7); // 32 f32 = 128 bytes per block
      const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48);
      const v4 = v128.load(p, 64), v5 = v128.load(p, 80), v6 = v128.load(p, 96), v7 = v128.load(p, 112);
      // amax on the magnitude bit patterns: for non-negative floats the i32 order is the float
      // order (and NaN sorts above Inf, so it propagates), and i32x4.max_s is one instruction
      // where f32x4.max is six (NaN and -0 rules).
      const mag = i32x4.splat(0x7fffffff);
      const m = i32x4.max_s(
        i32x4.max_s(i32x4.max_s(v128.and(v0, mag), v128.and(v1, mag)), i32x4.max_s(v128.and(v2, mag), v128.and(v3, mag))),
        i32x4.max_s(i32x4.max_s(v128.and(v4, mag), v128.and(v5, mag)), i32x4.max_s(v128.and(v6, mag), v128.and(v7, mag))),
      );
      const m2 = i32x4.max_s(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
      const amax = reinterpret<f32>(max<i32>(i32x4.extract_lane(m2, 0), i32x4.extract_lane(m2, 1)));
      const d: f32 = amax / 127;
      // ggml: id = d ? 1 / d : 0. A subnormal d (a block of |x| < ~4e-37) would make 1 / d Inf
      // and the int8 values garbage: it is treated as a zero block. NaN d stays NaN in xs.
      const id = f32x4.splat(d >= 1.1754943508222875e-38 ? <f32>1 / d : 0);
      const q0 = int8Lanes(v0, id), q1 = int8Lanes(v1, id), q2 = int8Lanes(v2, id), q3 = int8Lanes(v3, id);
      const q4 = int8Lanes(v4, id), q5 = int8Lanes(v5, id), q6 = int8Lanes(v6, id), q7 = int8Lanes(v7, id);
      const o = qRow + (<usize>b << 6); // 32 i16 = 64 bytes per block
      v128.store(o, evens16(q0, q1, q2, q3));
      v128.store(o, odds16(q0, q1, q2, q3), 16);
      v128.store(o, evens16(q4, q5, q6, q7), 32);
      v128.store(o, odds16(q4, q5, q6, q7), 48);
      store<f32>(sRow + (<usize>b << 2), d);
    }
    for (let b = nBlocks; b < nPad; b++) store<f32>(sRow + (<usize>b << 2), 0);
  }
}

/** First 16 bytes of the weight block's quants (q4_0: nibbles XOR 8, NOTE(1)). */
@inline function wRaw0(kind: i32, pw: usize): v128 {
  return kind == Q8 ? v128.load(pw, 2) : v128.xor(v128.load(pw, 2), i8x16.splat(<i8>0x88));
}
/** Second 16 bytes (q8_0 only). */
@inline function wRaw1(kind: i32, pw: usize): v128 {
  return kind == Q8 ? v128.load(pw, 18) : i32x4.splat(0);
}
/** Weights {2k} of the block, scaled (NOTE(1)). */
@inline function wE0(kind: i32, v0: v128): v128 {
  return kind == Q8 ? i16x8.shl(v0, 8) : i16x8.shl(v0, 12);
}
/** Weights {2k + 1}. */
@inline function wE1(kind: i32, v0: v128): v128 {
  return kind == Q8 ? v128.and(v0, i16x8.splat(<i16>0xff00)) : v128.and(i16x8.shl(v0, 4), i16x8.splat(<i16>0xf000));
}
/** Weights {16 + 2k}. */
@inline function wE2(kind: i32, v0: v128, v1: v128): v128 {
  return kind == Q8 ? i16x8.shl(v1, 8) : v128.and(i16x8.shl(v0, 8), i16x8.splat(<i16>0xf000));
}
/** Weights {17 + 2k}. */
@inline function wE3(kind: i32, v0: v128, v1: v128): v128 {
  return kind == Q8 ? v128.and(v1, i16x8.splat(<i16>0xff00)) : v128.and(v0, i16x8.splat(<i16>0xf000));
}
/** Lanes summing to the (scaled) block dot of widened weights e0..e3 with the xq block at px. */
@inline function dot4(e0: v128, e1: v128, e2: v128, e3: v128, px: usize): v128 {
  const s01 = i32x4.add(i32x4.dot_i16x8_s(e0, v128.load(px)), i32x4.dot_i16x8_s(e1, v128.load(px, 16)));
  const s23 = i32x4.add(i32x4.dot_i16x8_s(e2, v128.load(px, 32)), i32x4.dot_i16x8_s(e3, v128.load(px, 48)));
  return i32x4.add(s01, s23);
}

/** Integer block sum (its 4 lanes add up to it) of the weight block at pw with the xq block at px. */
@inline function blockSum(kind: i32, pw: usize, px: usize): v128 {
  const v0 = wRaw0(kind, pw);
  const v1 = wRaw1(kind, pw);
  return dot4(wE0(kind, v0), wE1(kind, v0), wE2(kind, v0, v1), wE3(kind, v0, v1), px);
}

/**
 * The weight block at pw against two token blocks (px and px + qStride), the block widened
 * once: [a0 + a2, a1 + a3, c0 + c2, c1 + c3] of the two lane sums a and c.
 */
@inline function blockPair(kind: i32, pw: usize, px: usize, qStride: usize): v128 {
  const v0 = wRaw0(kind, pw);
  const v1 = wRaw1(kind, pw);
  const e0 = wE0(kind, v0), e1 = wE1(kind, v0), e2 = wE2(kind, v0, v1), e3 = wE3(kind, v0, v1);
  const a = dot4(e0, e1, e2, e3, px);
  const c = dot4(e0, e1, e2, e3, px + qStride);
  return i32x4.add(i32x4.shuffle(a, c, 0, 1, 4, 5), i32x4.shuffle(a, c, 2, 3, 6, 7));
}

/** [sum(s0), sum(s1), sum(s2), sum(s3)]: the 4 block sums of a group in one vector. */
@inline function transposeSum(s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  const t01 = i32x4.add(i32x4.shuffle(s0, s1, 0, 1, 4, 5), i32x4.shuffle(s0, s1, 2, 3, 6, 7));
  const t23 = i32x4.add(i32x4.shuffle(s2, s3, 0, 1, 4, 5), i32x4.shuffle(s2, s3, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(t01, t23, 0, 2, 4, 6), i32x4.shuffle(t01, t23, 1, 3, 5, 7));
}

/**
 * d_w of the group's nb (1..4) blocks at pw as f32x4 (lanes >= nb zero), divided by 256 (q8_0)
 * or 4096 (q4_0), exactly (NOTE(1)). Each f16 is gathered into the high half of its lane, so
 * (t >> 3) & 0x8fffe000 is the f32 pattern with the exponent 112 too small: the multiply
 * rebiases normals and normalises subnormals; exponent 31 (Inf / NaN) is patched to 255.
 */
@inline function weightScales(kind: i32, pw: usize, nb: i32): v128 {
  const bb = blockBytes(kind);
  let t = v128.load16_lane(pw, i32x4.splat(0), 1);
  if (nb > 1) t = v128.load16_lane(pw + bb, t, 3);
  if (nb > 2) t = v128.load16_lane(pw + 2 * bb, t, 5);
  if (nb > 3) t = v128.load16_lane(pw + 3 * bb, t, 7);
  const bits = v128.and(i32x4.shr_s(t, 3), i32x4.splat(0x8fffe000));
  // 2^112 / 256 = 2^104 (q8_0) or 2^112 / 4096 = 2^100 (q4_0)
  const magic = kind == Q8 ? f32x4.splat(2.028240960365167e31) : f32x4.splat(1.2676506002282294e30);
  const scaled = f32x4.mul(bits, magic);
  const infNan = i32x4.eq(v128.and(t, i32x4.splat(0x7c000000)), i32x4.splat(0x7c000000));
  return v128.or(scaled, v128.and(infNan, i32x4.splat(0x7f800000)));
}

/** Block sums of the group's nb (1..4) blocks (zero lanes past nb) in one i32x4. */
@inline function groupSums(kind: i32, pw: usize, px: usize, nb: i32): v128 {
  const bb = blockBytes(kind);
  const z = i32x4.splat(0);
  const s0 = blockSum(kind, pw, px);
  const s1 = nb > 1 ? blockSum(kind, pw + bb, px + 64) : z;
  const s2 = nb > 2 ? blockSum(kind, pw + 2 * bb, px + 128) : z;
  const s3 = nb > 3 ? blockSum(kind, pw + 3 * bb, px + 192) : z;
  return transposeSum(s0, s1, s2, s3);
}

/**
 * dot(weight row at w, one quantized token row (xq, xs)) in the canonical order (NOTE(2)).
 * NOTE: the 4 blocks of a group go through a real loop that rotates their sums through s0..s3:
 *   written out straight, TurboFan issues all 24 loads of a group first and spills.
 */
@inline function dotRow(kind: i32, w: usize, xq: usize, xs: usize, nBlocks: i32): f32 {
  const bb = blockBytes(kind);
  const z = i32x4.splat(0);
  let acc = f32x4.splat(0);
  let pw = w;
  let px = xq;
  let ps = xs;
  const nFull = nBlocks & ~3;
  for (let b = 0; b < nFull; b += 4) {
    const d = f32x4.mul(weightScales(kind, pw, 4), v128.load(ps));
    let s0 = z, s1 = z, s2 = z, s3 = z;
    for (let k = 0; k < 4; k++) {
      const s = blockSum(kind, pw, px);
      s0 = s1;
      s1 = s2;
      s2 = s3;
      s3 = s;
      pw += bb;
      px += 64;
    }
    acc = fma4(f32x4.convert_i32x4_s(transposeSum(s0, s1, s2, s3)), d, acc);
    ps += 16;
  }
  if (nFull < nBlocks) {
    const nb = nBlocks - nFull;
    const d = f32x4.mul(weightScales(kind, pw, nb), v128.load(ps));
    acc = fma4(f32x4.convert_i32x4_s(groupSums(kind, pw, px, nb)), d, acc);
  }
  return hsum4(acc);
}

/** [a_j c_j a_k c_k] from the blockPair results of blocks j and k. */
@inline function pairSums(pj: v128, pk: v128): v128 {
  return i32x4.add(i32x4.shuffle(pj, pk, 0, 2, 4, 6), i32x4.shuffle(pj, pk, 1, 3, 5, 7));
}

/**
 * One weight row against 2 token rows (xq rows qStride bytes apart, xs rows sStride); results at
 * y and y + yStride. Each weight block is widened once and its scales converted once for both
 * tokens; the group sums are the same integers as dotRow's, so the results are identical.
 */
@inline function tokens2(kind: i32, w: usize, xq: usize, qStride: usize, xs: usize, sStride: usize, nBlocks: i32, y: usize, yStride: usize): void {
  const bb = blockBytes(kind);
  const z = i32x4.splat(0);
  let a = f32x4.splat(0);
  let c = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nBlocks; b += 4) {
    let pw = w + <usize>b * bb;
    let px = xq + (<usize>b << 6);
    const ps = xs + (<usize>b << 2);
    const dw = weightScales(kind, pw, 4);
    let p0 = z, p1 = z, p2 = z, p3 = z;
    for (let k = 0; k < 4; k++) {
      const p = blockPair(kind, pw, px, qStride);
      p0 = p1;
      p1 = p2;
      p2 = p3;
      p3 = p;
      pw += bb;
      px += 64;
    }
    const q01 = pairSums(p0, p1);
    const q23 = pairSums(p2, p3);
    a = fma4(f32x4.convert_i32x4_s(i32x4.shuffle(q01, q23, 0, 2, 4, 6)), f32x4.mul(dw, v128.load(ps)), a);
    c = fma4(f32x4.convert_i32x4_s(i32x4.shuffle(q01, q23, 1, 3, 5, 7)), f32x4.mul(dw, v128.load(ps + sStride)), c);
  }
  if (b < nBlocks) {
    const nb = nBlocks - b;
    const pw = w + <usize>b * bb;
    const px = xq + (<usize>b << 6);
    const ps = xs + (<usize>b << 2);
    const dw = weightScales(kind, pw, nb);
    const p0 = blockPair(kind, pw, px, qStride);
    const p1 = nb > 1 ? blockPair(kind, pw + bb, px + 64, qStride) : z;
    const p2 = nb > 2 ? blockPair(kind, pw + 2 * bb, px + 128, qStride) : z;
    const p3 = nb > 3 ? blockPair(kind, pw + 3 * bb, px + 192, qStride) : z;
    const q01 = pairSums(p0, p1);
    const q23 = pairSums(p2, p3);
    a = fma4(f32x4.convert_i32x4_s(i32x4.shuffle(q01, q23, 0, 2, 4, 6)), f32x4.mul(dw, v128.load(ps)), a);
    c = fma4(f32x4.convert_i32x4_s(i32x4.shuffle(q01, q23, 1, 3, 5, 7)), f32x4.mul(dw, v128.load(ps + sStride)), c);
  }
  store<f32>(y, hsum4(a));
  store<f32>(y + yStride, hsum4(c));
}

/** args: [0] W ptr [nOut, nBlocks] blocks, [1] xq, [2] xs (one token), [3] y ptr f32 [nOut], [4] nIn. Rows [begin, end). */
@inline function matvecBody(kind: i32, args: usize, begin: i32, end: i32): void {
  const w = argU32(args, 0);
  const xq = argU32(args, 1);
  const xs = argU32(args, 2);
  const y = argU32(args, 3);
  const nBlocks = argI32(args, 4) / QK;
  const rowBytes = <usize>nBlocks * blockBytes(kind);
  // One row at a time: streaming two rows side by side measured ~20% slower from DRAM here.
  const limit = w + <usize>end * rowBytes;
  let next = touchStart(w + <usize>begin * rowBytes);
  for (let o = begin; o < end; o++) {
    const row = w + <usize>o * rowBytes;
    next = touchUpTo(next, row + rowBytes, limit);
    store<f32>(y + (<usize>o << 2), dotRow(kind, row, xq, xs, nBlocks));
  }
}

/**
 * args: [0] W ptr, [1] xq, [2] xs ([nTokens] rows each), [3] Y ptr f32 [nTokens, nOut], [4] nIn,
 * [5] nTokens, [6] nOut. Output columns (weight rows) [begin, end).
 */
@inline function matmulBody(kind: i32, args: usize, begin: i32, end: i32): void {
  const w = argU32(args, 0);
  const xq = argU32(args, 1);
  const xs = argU32(args, 2);
  const y = argU32(args, 3);
  const nBlocks = argI32(args, 4) / QK;
  const nTokens = argI32(args, 5);
  const yStride = <usize>argI32(args, 6) << 2;
  const rowBytes = <usize>nBlocks * blockBytes(kind);
  const qStride = <usize>nBlocks << 6;
  const sStride = <usize>((nBlocks + 3) & ~3) << 2;
  for (let o0 = begin; o0 < end; o0 += MM_CHUNK) {
    const o1 = min(end, o0 + MM_CHUNK);
    let t = 0;
    for (; t + 2 <= nTokens; t += 2) {
      const tq = xq + <usize>t * qStride;
      const ts = xs + <usize>t * sStride;
      const yt = y + <usize>t * yStride;
      for (let o = o0; o < o1; o++) tokens2(kind, w + <usize>o * rowBytes, tq, qStride, ts, sStride, nBlocks, yt + (<usize>o << 2), yStride);
    }
    if (t < nTokens) {
      const tq = xq + <usize>t * qStride;
      const ts = xs + <usize>t * sStride;
      const yt = y + <usize>t * yStride;
      for (let o = o0; o < o1; o++) store<f32>(yt + (<usize>o << 2), dotRow(kind, w + <usize>o * rowBytes, tq, ts, nBlocks));
    }
  }
}

export function matvec_q8_0(args: usize, begin: i32, end: i32): void {
  matvecBody(Q8, args, begin, end);
}
export function matvec_q4_0(args: usize, begin: i32, end: i32): void {
  matvecBody(Q4, args, begin, end);
}
export function matmul_q8_0(args: usize, begin: i32, end: i32): void {
  matmulBody(Q8, args, begin, end);
}
export function matmul_q4_0(args: usize, begin: i32, end: i32): void {
  matmulBody(Q4, args, begin, end);
}
