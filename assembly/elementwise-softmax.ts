// Softmax over rows, in place or out of place, with a scale (1 / temperature).
import { argF32, argI32, argU32, hmax4 } from './simd';
import { exp4, exp1 } from './elementwise-exp';

/**
 * args: [0] x ptr, [1] y ptr (may equal x), [2] n (row length), [3] scale (f32, > 0),
 *       [4] x row stride (elements), [5] y row stride (elements).
 * Rows [begin, end): y[r] = softmax(scale * x[r])                 x, y: [nRows, stride]
 *
 * Three passes per row: the max (NaN-propagating f32x4.max), e = exp((x - max) * scale) written to
 * y with its sum (in f64: over a 152K vocabulary an f32 sum is off by ~1e-5 relative), then
 * y *= 1 / sum. Edge rows: a row whose max is -Inf (all masked) becomes all
 * zeros; a row holding NaN or +Inf becomes all NaN (the reference does the same).
 */
export function softmax_f32(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const y = argU32(args, 1);
  const n = argI32(args, 2);
  const scale = argF32(args, 3);
  const xStride = <usize>argI32(args, 4) << 2;
  const yStride = <usize>argI32(args, 5) << 2;
  const n4 = n & ~3;
  const sv = f32x4.splat(scale);
  for (let r = begin; r < end; r++) {
    const xr = x + <usize>r * xStride;
    const yr = y + <usize>r * yStride;
    let m0 = f32x4.splat(-Infinity), m1 = f32x4.splat(-Infinity);
    let i = 0;
    for (; i + 8 <= n; i += 8) {
      const p = xr + (<usize>i << 2);
      m0 = f32x4.max(m0, v128.load(p));
      m1 = f32x4.max(m1, v128.load(p, 16));
    }
    for (; i < n4; i += 4) m0 = f32x4.max(m0, v128.load(xr + (<usize>i << 2)));
    let mx = hmax4(f32x4.max(m0, m1));
    for (; i < n; i++) mx = max<f32>(mx, load<f32>(xr + (<usize>i << 2)));
    if (mx == -Infinity) {
      for (i = 0; i < n; i++) store<f32>(yr + (<usize>i << 2), 0);
      continue;
    }
    const mv = f32x4.splat(mx);
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
    i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      const e = exp4(f32x4.mul(f32x4.sub(v128.load(xr + o), mv), sv));
      v128.store(yr + o, e);
      s0 = f64x2.add(s0, f64x2.promote_low_f32x4(e));
      s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1)));
    }
    const s01 = f64x2.add(s0, s1);
    let sum = f64x2.extract_lane(s01, 0) + f64x2.extract_lane(s01, 1);
    for (; i < n; i++) {
      const o = <usize>i << 2;
      const e = exp1((load<f32>(xr + o) - mx) * scale);
      store<f32>(yr + o, e);
      sum += <f64>e;
    }
    const inv = <f32>(1.0 / sum);
    const iv = f32x4.splat(inv);
    i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(yr + o, f32x4.mul(v128.load(yr + o), iv));
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(yr + o, load<f32>(yr + o) * inv);
    }
  }
}
