// RMSNorm over rows (Llama / Qwen2 / Qwen3 / Mistral; also Qwen3's per-head q/k norm).
import { argF32, argI32, argU32, hsum4 } from './simd';

/**
 * args: [0] x ptr, [1] y ptr (may equal x), [2] weight ptr (f32 [dim]), [3] dim, [4] eps (f32),
 *       [5] x row stride (elements), [6] y row stride (elements).
 * Rows [begin, end): y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight      x, y: [nRows, stride]
 *
 * As HF transformers computes it in f32: the sum of squares in f32 (16 lanes, then the lanes in a
 * fixed order, so a row's result never depends on the thread split), the scale rounded to f32,
 * then (x * scale) * weight. Every element is read before its own output is written, so y == x is fine.
 */
export function rmsnorm_f32(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const y = argU32(args, 1);
  const w = argU32(args, 2);
  const dim = argI32(args, 3);
  const eps = argF32(args, 4);
  const xStride = <usize>argI32(args, 5) << 2;
  const yStride = <usize>argI32(args, 6) << 2;
  const n16 = dim & ~15;
  const n4 = dim & ~3;
  for (let r = begin; r < end; r++) {
    const xr = x + <usize>r * xStride;
    const yr = y + <usize>r * yStride;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let i = 0;
    for (; i < n16; i += 16) {
      const p = xr + (<usize>i << 2);
      const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48);
      a0 = f32x4.add(a0, f32x4.mul(v0, v0));
      a1 = f32x4.add(a1, f32x4.mul(v1, v1));
      a2 = f32x4.add(a2, f32x4.mul(v2, v2));
      a3 = f32x4.add(a3, f32x4.mul(v3, v3));
    }
    for (; i < n4; i += 4) {
      const v = v128.load(xr + (<usize>i << 2));
      a0 = f32x4.add(a0, f32x4.mul(v, v));
    }
    let ss = hsum4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
    for (; i < dim; i++) {
      const v = load<f32>(xr + (<usize>i << 2));
      ss += v * v;
    }
    const scale: f32 = <f32>1.0 / Mathf.sqrt(ss / <f32>dim + eps);
    const sv = f32x4.splat(scale);
    i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), sv), v128.load(w + o)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(yr + o, load<f32>(xr + o) * scale * load<f32>(w + o));
    }
  }
}
