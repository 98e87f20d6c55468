// Vector exp for the softmax and SiLU kernels (wasm SIMD has no transcendental instructions).
import { fma4 } from './simd';

// The constants, each as 4 equal f32 lanes in static data, read with v128.load: V8 (Node 20)
// materialises a v128.const with several instructions at every use inside a loop, a load is one
// L1 hit (~15-30% faster silu measured).                                        // [14 constants, 4 lanes]
const K: usize = memory.data<f32>([
  -104.0, -104.0, -104.0, -104.0,
  88.72283, 88.72283, 88.72283, 88.72283,
  1.44269504088896341, 1.44269504088896341, 1.44269504088896341, 1.44269504088896341,
  12582912.0, 12582912.0, 12582912.0, 12582912.0,
  -0.693359375, -0.693359375, -0.693359375, -0.693359375,
  2.12194440e-4, 2.12194440e-4, 2.12194440e-4, 2.12194440e-4,
  1.9875691500e-4, 1.9875691500e-4, 1.9875691500e-4, 1.9875691500e-4,
  1.3981999507e-3, 1.3981999507e-3, 1.3981999507e-3, 1.3981999507e-3,
  8.3334519073e-3, 8.3334519073e-3, 8.3334519073e-3, 8.3334519073e-3,
  4.1665795894e-2, 4.1665795894e-2, 4.1665795894e-2, 4.1665795894e-2,
  1.6666665459e-1, 1.6666665459e-1, 1.6666665459e-1, 1.6666665459e-1,
  5.0000001201e-1, 5.0000001201e-1, 5.0000001201e-1, 5.0000001201e-1,
  1.0, 1.0, 1.0, 1.0,
  Infinity, Infinity, Infinity, Infinity,
], 16);
const LO: usize = 0; // below: e^x < half the smallest subnormal -> 0
const HI: usize = 16; // above: e^x overflows -> +Inf
const LOG2E: usize = 32;
const SHIFTER: usize = 48; // 1.5 * 2^23, bits 0x4b400000
const NEG_LN2_HI: usize = 64;
const LN2_LO: usize = 80;
const P0: usize = 96;
const P1: usize = 112;
const P2: usize = 128;
const P3: usize = 144;
const P4: usize = 160;
const P5: usize = 176;
const ONE: usize = 192; // bits 0x3f800000 = 127 << 23
const INF: usize = 208;

@inline function k(offset: usize): v128 {
  return v128.load(K + offset);
}

/**
 * e^x on 4 f32 lanes, within ~2 ulp of the correctly rounded result (Cephes expf polynomial).
 *
 * x = n ln2 + r with n = round(x log2 e) and |r| <= ln2 / 2 (Cody-Waite split of ln2, so r is
 * exact to f32 precision); e^r by a degree-7 polynomial; 2^n applied in two halves n1 + n2 so
 * that every factor is a normal f32 even at n = 128 (overflow edge) or n = -150 (gradual
 * underflow into subnormals). x > 88.72 gives +Inf, x < -104 (below half the smallest subnormal)
 * gives 0, -Inf gives 0, NaN stays NaN.
 */
@inline export function exp4(x: v128): v128 {
  // pmin/pmax (one instruction each, unlike f32x4.min/max) keep NaN because x is their first operand.
  const xc = f32x4.pmin(f32x4.pmax(x, k(LO)), k(HI));
  // n = round(xc log2 e) by the shifter: t's low mantissa bits hold n as an integer.
  const t = f32x4.add(f32x4.mul(xc, k(LOG2E)), k(SHIFTER));
  const n = f32x4.sub(t, k(SHIFTER));
  const ni = i32x4.sub(t, k(SHIFTER));
  let r = fma4(n, k(NEG_LN2_HI), xc);
  r = fma4(n, k(LN2_LO), r);
  let p = k(P0);
  p = fma4(p, r, k(P1));
  p = fma4(p, r, k(P2));
  p = fma4(p, r, k(P3));
  p = fma4(p, r, k(P4));
  p = fma4(p, r, k(P5));
  const y = f32x4.add(fma4(f32x4.mul(p, r), r, r), k(ONE)); // 1 + r + p r^2
  const n1 = i32x4.shr_s(ni, 1);
  const n2 = i32x4.sub(ni, n1);
  const s1 = i32x4.add(i32x4.shl(n1, 23), k(ONE)); // 2^n1 as f32 bits: (n1 + 127) << 23
  const s2 = i32x4.add(i32x4.shl(n2, 23), k(ONE)); // 2^n2
  let e = f32x4.mul(f32x4.mul(y, s1), s2);
  e = v128.bitselect(k(INF), e, f32x4.gt(x, k(HI)));
  e = v128.andnot(e, f32x4.lt(x, k(LO)));
  return e;
}

/** Scalar twin of exp4 (the same lane code) for loop tails: a value's result never depends on its position. */
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}
