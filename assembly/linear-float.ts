// Linear layers with float weights (f32, f16, bf16) and f32 activations: y = W x (matvec, decode)
// and Y = X W^T (matmul, prefill). W is row-major [nOut, nIn] in its stored dtype.
//
// NOTE(1): One canonical arithmetic per (row, token) pair, used by every tile shape: two f32x4
//   accumulators over 8-element steps (f32: acc0 takes elements 8k..8k+3, acc1 8k+4..8k+7;
//   f16 / bf16: acc0 the even elements 8k, 8k+2, .., acc1 the odd ones), a last 4-element group
//   into acc0, hsum4(acc0 + acc1), then a scalar tail in element order. So a row's result does
//   not depend on the tile it was computed in, nor on the thread split, and matmul with one
//   token equals matvec bit for bit.
// NOTE(2): The body of each kernel is an @inline function of a constant `kind`: once inlined
//   into the per-dtype export, the dtype branches fold away (one specialised loop per dtype).
// NOTE(3): matvec streams the weights once: 4 rows per tile (f16: 2) share each x load, except
//   short rows (SHORT_ROW_BYTES), which stream one at a time.
//   matmul works on chunks of MM_CHUNK rows (kept in L1/L2) and, inside a chunk, 3 tokens per
//   tile (f16: 4) share each decoded weight vector, so the weights come from memory once per
//   call and are decoded once per tile of tokens.
// NOTE(4): 16-bit weights are widened without shuffles: viewing 8 of them as i32x4, lane k holds
//   w[2k] (low half) and w[2k+1] (high half), so `shl 16` (bf16) or the f16 rebias of the high
//   half gives the even and the odd elements directly. The activations are staged once per call
//   in the matching order (linear_permute_x: each 8-group as x0 x2 x4 x6 x1 x3 x5 x7).
// NOTE(5): The f16 main loop converts without the Inf/NaN patch (half its conversion cost) and
//   instead tracks the largest exponent field it saw; a row that held an Inf or NaN is recomputed
//   with the exact conversion (`exact`). For every other row the two conversions are the same
//   values, so the result is the same whichever path ran.
import { argI32, argU32, f16ToF32, f16x4ToF32, fma4, hsum4 } from './simd';
import { touchStart, touchUpTo } from './touch-ahead';

const F32 = 0;
const F16 = 1;
const BF16 = 2;

/** matvec rows up to this size are streamed one at a time, longer ones in tiles of rows. */
const SHORT_ROW_BYTES: usize = 4096;
/** Rows per matmul chunk: 16 rows of up to ~5k f32 weights stay in L2 across the token tiles. */
const MM_CHUNK = 16;
/**
 * Tokens per matmul tile: 3 tokens x 2 accumulators + 2 weight vectors + the loads fit the 16
 * registers; f16 takes 4 (some spills) to spread its dearer conversion over more tokens.
 */
@inline function mmTokens(kind: i32): i32 {
  return kind == F16 ? 4 : 3;
}

@inline function elemShift(kind: i32): usize {
  return kind == F32 ? 2 : 1;
}

/** f16 in the HIGH half of each i32 lane of t -> f32x4, finite inputs only (NOTE(5)). */
@inline function f16HiFinite(t: v128): v128 {
  // (t >> 3) & 0x8fffe000 is the f32 pattern with the exponent 112 too small: multiplying by
  // 2^112 rebiases normals and normalises subnormals exactly.
  return f32x4.mul(v128.and(i32x4.shr_s(t, 3), i32x4.splat(0x8fffe000)), f32x4.splat(5.192296858534828e33));
}
/** The same with exponent 31 (Inf / NaN) patched to 255, payload kept. */
@inline function f16HiExact(t: v128): v128 {
  const infNan = i32x4.eq(v128.and(t, i32x4.splat(0x7c000000)), i32x4.splat(0x7c000000));
  return v128.or(f16HiFinite(t), v128.and(infNan, i32x4.splat(0x7f800000)));
}
@inline function f16Hi(t: v128, exact: bool): v128 {
  return exact ? f16HiExact(t) : f16HiFinite(t);
}
/** f16 exponent fields of the 8 halves in r (their max over a row says whether one was Inf / NaN). */
@inline function f16Exponents(r: v128): v128 {
  return v128.and(r, i16x8.splat(0x7c00));
}
/** Whether a max of f16Exponents saw exponent 31. */
@inline function sawInfNan(m: v128): bool {
  return v128.any_true(i16x8.eq(m, i16x8.splat(0x7c00)));
}

/** Weights 0..3 of an 8-element step (f16 / bf16: the even ones, NOTE(4)); r0 = its first 16 raw bytes. */
@inline function lo8(kind: i32, r0: v128, exact: bool): v128 {
  if (kind == F32) return r0;
  if (kind == F16) return f16Hi(i32x4.shl(r0, 16), exact);
  return i32x4.shl(r0, 16);
}
/** Weights 4..7 of the step (f16 / bf16: the odd ones); `r1` is the second 16 raw bytes (f32 only). */
@inline function hi8(kind: i32, r0: v128, r1: v128, exact: bool): v128 {
  if (kind == F32) return r1;
  if (kind == F16) return f16Hi(r0, exact);
  return v128.and(r0, i32x4.splat(0xffff0000));
}
/** Second 16 raw bytes of an 8-element step (only f32 steps span 32 bytes). */
@inline function raw1(kind: i32, p: usize): v128 {
  return kind == F32 ? v128.load(p, 16) : f32x4.splat(0);
}
/** 4 weights at p in element order (the last 4-element group), exact. */
@inline function w4(kind: i32, p: usize): v128 {
  if (kind == F32) return v128.load(p);
  if (kind == F16) return f16x4ToF32(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
  return i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(p)), 16);
}
/** One weight at p (the scalar tail), exact. */
@inline function w1(kind: i32, p: usize): f32 {
  if (kind == F32) return load<f32>(p);
  if (kind == F16) return f16ToF32(<u32>load<u16>(p));
  return reinterpret<f32>(<u32>load<u16>(p) << 16);
}

/** The end of a pair's dot: the last 4-group from element i into a0, hsum4(a0 + a1), the scalar tail. */
@inline function finish(kind: i32, a0: v128, a1: v128, w: usize, x: usize, i: i32, nIn: i32): f32 {
  const sh = elemShift(kind);
  let acc0 = a0;
  if (i + 4 <= nIn) {
    acc0 = fma4(w4(kind, w + (<usize>i << sh)), v128.load(x + (<usize>i << 2)), acc0);
    i += 4;
  }
  let s = hsum4(f32x4.add(acc0, a1));
  for (; i < nIn; i++) s += w1(kind, w + (<usize>i << sh)) * load<f32>(x + (<usize>i << 2));
  return s;
}

/** dot(W row at w, x) for one (row, token) pair (NOTE(1)), with the given f16 conversion. */
@inline function dot1(kind: i32, w: usize, x: usize, nIn: i32, exact: bool): f32 {
  const sh = elemShift(kind);
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  const n8 = nIn & ~7;
  for (let i = 0; i < n8; i += 8) {
    const p = w + (<usize>i << sh);
    const q = x + (<usize>i << 2);
    const r0 = v128.load(p);
    a0 = fma4(lo8(kind, r0, exact), v128.load(q), a0);
    a1 = fma4(hi8(kind, r0, raw1(kind, p), exact), v128.load(q, 16), a1);
  }
  return finish(kind, a0, a1, w, x, n8, nIn);
}

/** dot1 on the fast path, redone exactly if the row held an f16 Inf / NaN (NOTE(5)). */
@inline function dotRow(kind: i32, w: usize, x: usize, nIn: i32): f32 {
  if (kind != F16) return dot1(kind, w, x, nIn, false);
  const sh = elemShift(kind);
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let ex = i16x8.splat(0);
  const n8 = nIn & ~7;
  for (let i = 0; i < n8; i += 8) {
    const r0 = v128.load(w + (<usize>i << sh));
    const q = x + (<usize>i << 2);
    ex = i16x8.max_u(ex, f16Exponents(r0));
    a0 = fma4(lo8(kind, r0, false), v128.load(q), a0);
    a1 = fma4(hi8(kind, r0, r0, false), v128.load(q, 16), a1);
  }
  if (sawInfNan(ex)) return dot1(kind, w, x, nIn, true);
  return finish(kind, a0, a1, w, x, n8, nIn);
}

/**
 * nr (2 or 4, a constant) consecutive rows (w, w + rowBytes, ..) against one x, sharing each x
 * load; y[0 .. nr) = the dots. f16 uses 2 rows: its conversion constants leave too few
 * registers for 8 accumulators.
 */
@inline function rowsN(kind: i32, nr: i32, w: usize, rowBytes: usize, x: usize, nIn: i32, y: usize): void {
  const sh = elemShift(kind);
  const wa = w, wb = w + rowBytes, wc = w + 2 * rowBytes, wd = w + 3 * rowBytes;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let exA = i16x8.splat(0), exB = i16x8.splat(0);
  const n8 = nIn & ~7;
  for (let i = 0; i < n8; i += 8) {
    const off = <usize>i << sh;
    const q = x + (<usize>i << 2);
    const xl = v128.load(q);
    const xh = v128.load(q, 16);
    const ra = v128.load(wa + off);
    a0 = fma4(lo8(kind, ra, false), xl, a0);
    a1 = fma4(hi8(kind, ra, raw1(kind, wa + off), false), xh, a1);
    const rb = v128.load(wb + off);
    b0 = fma4(lo8(kind, rb, false), xl, b0);
    b1 = fma4(hi8(kind, rb, raw1(kind, wb + off), false), xh, b1);
    if (kind == F16) {
      exA = i16x8.max_u(exA, f16Exponents(ra));
      exB = i16x8.max_u(exB, f16Exponents(rb));
    }
    if (nr == 4) {
      const rc = v128.load(wc + off);
      c0 = fma4(lo8(kind, rc, false), xl, c0);
      c1 = fma4(hi8(kind, rc, raw1(kind, wc + off), false), xh, c1);
      const rd = v128.load(wd + off);
      d0 = fma4(lo8(kind, rd, false), xl, d0);
      d1 = fma4(hi8(kind, rd, raw1(kind, wd + off), false), xh, d1);
    }
  }
  store<f32>(y, finish(kind, a0, a1, wa, x, n8, nIn));
  store<f32>(y, finish(kind, b0, b1, wb, x, n8, nIn), 4);
  if (nr == 4) {
    store<f32>(y, finish(kind, c0, c1, wc, x, n8, nIn), 8);
    store<f32>(y, finish(kind, d0, d1, wd, x, n8, nIn), 12);
  }
  if (kind == F16) {
    if (sawInfNan(exA)) store<f32>(y, dot1(kind, wa, x, nIn, true));
    if (sawInfNan(exB)) store<f32>(y, dot1(kind, wb, x, nIn, true), 4);
  }
}

/**
 * One row against nt (2..4, a constant) tokens (x rows xStride bytes apart); results at
 * y + k * yStride. Each weight vector is decoded once and used for the nt tokens.
 */
@inline function tokensN(kind: i32, nt: i32, w: usize, x: usize, xStride: usize, nIn: i32, y: usize, yStride: usize): void {
  const sh = elemShift(kind);
  const xa = x, xb = x + xStride, xc = x + 2 * xStride, xd = x + 3 * xStride;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let ex = i16x8.splat(0);
  const n8 = nIn & ~7;
  for (let i = 0; i < n8; i += 8) {
    const p = w + (<usize>i << sh);
    const q = <usize>i << 2;
    const r0 = v128.load(p);
    if (kind == F16) ex = i16x8.max_u(ex, f16Exponents(r0));
    const wl = lo8(kind, r0, false);
    const wh = hi8(kind, r0, raw1(kind, p), false);
    a0 = fma4(wl, v128.load(xa + q), a0);
    a1 = fma4(wh, v128.load(xa + q, 16), a1);
    b0 = fma4(wl, v128.load(xb + q), b0);
    b1 = fma4(wh, v128.load(xb + q, 16), b1);
    if (nt >= 3) {
      c0 = fma4(wl, v128.load(xc + q), c0);
      c1 = fma4(wh, v128.load(xc + q, 16), c1);
    }
    if (nt >= 4) {
      d0 = fma4(wl, v128.load(xd + q), d0);
      d1 = fma4(wh, v128.load(xd + q, 16), d1);
    }
  }
  if (kind == F16 && sawInfNan(ex)) {
    for (let k = 0; k < nt; k++) store<f32>(y + <usize>k * yStride, dot1(kind, w, x + <usize>k * xStride, nIn, true));
    return;
  }
  store<f32>(y, finish(kind, a0, a1, w, xa, n8, nIn));
  store<f32>(y + yStride, finish(kind, b0, b1, w, xb, n8, nIn));
  if (nt >= 3) store<f32>(y + 2 * yStride, finish(kind, c0, c1, w, xc, n8, nIn));
  if (nt >= 4) store<f32>(y + 3 * yStride, finish(kind, d0, d1, w, xd, n8, nIn));
}

/**
 * args: [0] X ptr f32 [nTokens, nIn], [1] Xp ptr f32 [nTokens, nIn], [2] nIn. Token rows
 * [begin, end): every whole 8-group of a row becomes x0 x2 x4 x6 x1 x3 x5 x7 (NOTE(4)); the last
 * nIn % 8 values are copied as they are.
 */
export function linear_permute_x(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const xp = argU32(args, 1);
  const nIn = argI32(args, 2);
  const n8 = nIn & ~7;
  for (let t = begin; t < end; t++) {
    const src = x + <usize>t * (<usize>nIn << 2);
    const dst = xp + <usize>t * (<usize>nIn << 2);
    let i = 0;
    for (; i < n8; i += 8) {
      const a = v128.load(src + (<usize>i << 2));
      const b = v128.load(src + (<usize>i << 2), 16);
      v128.store(dst + (<usize>i << 2), i32x4.shuffle(a, b, 0, 2, 4, 6));
      v128.store(dst + (<usize>i << 2), i32x4.shuffle(a, b, 1, 3, 5, 7), 16);
    }
    for (; i < nIn; i++) store<f32>(dst + (<usize>i << 2), load<f32>(src + (<usize>i << 2)));
  }
}

/**
 * args: [0] W ptr [nOut, nIn], [1] x ptr f32 [nIn] (f16 / bf16: permuted by linear_permute_x),
 * [2] y ptr f32 [nOut], [3] nIn. Rows [begin, end).
 */
@inline function matvecBody(kind: i32, args: usize, begin: i32, end: i32): void {
  const w = argU32(args, 0);
  const x = argU32(args, 1);
  const y = argU32(args, 2);
  const nIn = argI32(args, 3);
  const rowBytes = <usize>nIn << elemShift(kind);
  const nr = kind == F16 ? 2 : 4;
  let o = begin;
  // Short rows stream faster one at a time (measured: 4864 x 896 f32 ~20% faster from DRAM);
  // long rows faster nr at a time (4096 x 4096 ~30%). Same arithmetic either way (NOTE(1)).
  if (rowBytes > SHORT_ROW_BYTES) {
    for (; o + nr <= end; o += nr) rowsN(kind, nr, w + <usize>o * rowBytes, rowBytes, x, nIn, y + (<usize>o << 2));
  }
  // Short rows are touched ahead in bursts (touch-ahead.ts: more lines in flight from DRAM; lm_head
  // 151936 x 896 on 2 threads: f16 6.4 -> 11.5 GB/s, bf16 9.1 -> 15.5). Long rows are not: nr
  // rows at a time already keep nr streams in flight, and touching them measured slower.
  const limit = w + <usize>end * rowBytes;
  let next = touchStart(w + <usize>o * rowBytes);
  for (; o < end; o++) {
    const row = w + <usize>o * rowBytes;
    next = touchUpTo(next, row + rowBytes, limit);
    store<f32>(y + (<usize>o << 2), dotRow(kind, row, x, nIn));
  }
}

/**
 * args: [0] W ptr [nOut, nIn], [1] X ptr f32 [nTokens, nIn] (f16 / bf16: permuted), [2] Y ptr
 * f32 [nTokens, nOut], [3] nIn, [4] nTokens, [5] nOut. Output columns (weight rows) [begin, end).
 */
@inline function matmulBody(kind: i32, args: usize, begin: i32, end: i32): void {
  const w = argU32(args, 0);
  const x = argU32(args, 1);
  const y = argU32(args, 2);
  const nIn = argI32(args, 3);
  const nTokens = argI32(args, 4);
  const nOut = argI32(args, 5);
  const rowBytes = <usize>nIn << elemShift(kind);
  const xStride = <usize>nIn << 2;
  const yStride = <usize>nOut << 2;
  for (let o0 = begin; o0 < end; o0 += MM_CHUNK) {
    const o1 = min(end, o0 + MM_CHUNK);
    let t = 0;
    const nt = mmTokens(kind);
    for (; t + nt <= nTokens; t += nt) {
      const xt = x + <usize>t * xStride;
      const yt = y + <usize>t * yStride;
      for (let o = o0; o < o1; o++) tokensN(kind, nt, w + <usize>o * rowBytes, xt, xStride, nIn, yt + (<usize>o << 2), yStride);
    }
    for (; t < nTokens; t++) {
      const xt = x + <usize>t * xStride;
      const yt = y + <usize>t * yStride;
      for (let o = o0; o < o1; o++) store<f32>(yt + (<usize>o << 2), dotRow(kind, w + <usize>o * rowBytes, xt, nIn));
    }
  }
}

export function matvec_f32(args: usize, begin: i32, end: i32): void {
  matvecBody(F32, args, begin, end);
}
export function matvec_f16(args: usize, begin: i32, end: i32): void {
  matvecBody(F16, args, begin, end);
}
export function matvec_bf16(args: usize, begin: i32, end: i32): void {
  matvecBody(BF16, args, begin, end);
}
export function matmul_f32(args: usize, begin: i32, end: i32): void {
  matmulBody(F32, args, begin, end);
}
export function matmul_f16(args: usize, begin: i32, end: i32): void {
  matmulBody(F16, args, begin, end);
}
export function matmul_bf16(args: usize, begin: i32, end: i32): void {
  matmulBody(BF16, args, begin, end);
}
