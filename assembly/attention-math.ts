// Vector math of the attention kernels: exp2 on 4 lanes, 4-way transposed sums, lane max.
// Scores are kept in log2 units (q is pre-multiplied by scale * log2(e)), so the softmax needs
// 2^x, which is cheaper and exact in its exponent part, instead of e^x.
import { fma4 } from './simd';

/** Lanes below this (2^-126, the smallest normal f32) are flushed to exactly 0 by exp2x4. */
const EXP2_FLOOR: f32 = -126.0;
/** 1.5 * 2^23 + 127: x + this rounds x to an integer, held (plus the exponent bias) in the low mantissa bits. */
const ROUND_BIASED: f32 = 12583039.0;

/**
 * 2^x on 4 lanes for x <= 0 (the only range the softmax needs: x = score - running max).
 * x = n + f with n = round(x) by the add-magic trick, |f| <= 0.5; 2^f by a degree-5 polynomial
 * fitted for minimax relative error on [-0.5, 0.5] (7.5e-8; 2.4e-7 with f32 rounding), 2^n by
 * shifting n + 127 into the exponent field. Lanes <= -126 (-Infinity included) give exactly 0,
 * so masked keys get weight 0, never a denormal; NaN stays NaN (a NaN score must poison the
 * output as it does in the reference, not vanish).
 */
@inline export function exp2x4(x: v128): v128 {
  const t = f32x4.add(x, f32x4.splat(ROUND_BIASED));
  const f = f32x4.sub(x, f32x4.sub(t, f32x4.splat(ROUND_BIASED)));
  let p = f32x4.splat(1.3276466020158105e-3);
  p = fma4(p, f, f32x4.splat(9.67554142279893e-3));
  p = fma4(p, f, f32x4.splat(5.5507132894423356e-2));
  p = fma4(p, f, f32x4.splat(2.4022119722444513e-1));
  p = fma4(p, f, f32x4.splat(6.931469670566706e-1));
  p = fma4(p, f, f32x4.splat(1.0000000716548991));
  const r = f32x4.mul(p, i32x4.shl(t, 23));
  return v128.andnot(r, f32x4.le(x, f32x4.splat(EXP2_FLOOR)));
}

/** Scalar 2^x (x <= 0) through the same polynomial, so rescale factors match the weights. */
@inline export function exp2s(x: f32): f32 {
  return f32x4.extract_lane(exp2x4(f32x4.splat(x)), 0);
}

/**
 * Transposed sum of four f32x4 accumulators: lane k of the result = sum of the lanes of ak.
 * Fixed association order (the result never depends on which thread runs it).
 */
@inline export function sum4x4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t01 = f32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
  const t23 = f32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(t01, t23, 0, 1, 4, 5), i32x4.shuffle(t01, t23, 2, 3, 6, 7));
}

/** sum4x4 for i32x4 accumulators (exact integer sums). */
@inline export function sum4x4i(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t01 = i32x4.add(i32x4.shuffle(a0, a1, 0, 4, 1, 5), i32x4.shuffle(a0, a1, 2, 6, 3, 7));
  const t23 = i32x4.add(i32x4.shuffle(a2, a3, 0, 4, 1, 5), i32x4.shuffle(a2, a3, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(t01, t23, 0, 1, 4, 5), i32x4.shuffle(t01, t23, 2, 3, 6, 7));
}

/** Max of 4 lanes that hold no NaN (pmax: one instruction, unlike the NaN-propagating max). */
@inline export function pmaxLanes(v: v128): f32 {
  const s = f32x4.pmax(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return max<f32>(f32x4.extract_lane(s, 0), f32x4.extract_lane(s, 1));
}
