// Elementwise f32 kernels of the forward pass (residual add, SwiGLU's silu(gate) * up), and the
// re-exports of this family's other kernel files (see index.ts for the calling convention).
//
// NOTE(1): Loop tails go through the same vector code on a splat (or the same scalar IEEE ops),
//   so an element's result never depends on where a thread's share [begin, end) starts: 1 and N
//   threads give bit-identical outputs.
import { argU32 } from './simd';
import { exp4 } from './elementwise-exp';

export * from './elementwise-norm';
export * from './elementwise-softmax';
export * from './rope';
export * from './embedding';
export * from './sampling';

/** args: [0] a ptr, [1] b ptr, [2] y ptr (may equal a or b). Elements [begin, end): y = a + b   [n] */
export function add_f32(args: usize, begin: i32, end: i32): void {
  const a = argU32(args, 0);
  const b = argU32(args, 1);
  const y = argU32(args, 2);
  let i = begin;
  for (; i + 16 <= end; i += 16) {
    const o = <usize>i << 2;
    const v0 = f32x4.add(v128.load(a + o), v128.load(b + o));
    const v1 = f32x4.add(v128.load(a + o, 16), v128.load(b + o, 16));
    const v2 = f32x4.add(v128.load(a + o, 32), v128.load(b + o, 32));
    const v3 = f32x4.add(v128.load(a + o, 48), v128.load(b + o, 48));
    v128.store(y + o, v0);
    v128.store(y + o, v1, 16);
    v128.store(y + o, v2, 32);
    v128.store(y + o, v3, 48);
  }
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** silu(g) * u = g / (1 + e^-g) * u on 4 lanes. */
@inline function siluMul4(g: v128, u: v128): v128 {
  const e = exp4(f32x4.neg(g));
  return f32x4.mul(f32x4.div(g, f32x4.add(f32x4.splat(1.0), e)), u);
}

/**
 * args: [0] gate ptr, [1] up ptr, [2] out ptr (may equal gate or up).
 * Elements [begin, end): out = silu(gate) * up                     gate, up, out: [n]
 * (gate and up may be the two halves of one fused projection: they are separate pointers.)
 */
export function silu_mul_f32(args: usize, begin: i32, end: i32): void {
  const g = argU32(args, 0);
  const u = argU32(args, 1);
  const y = argU32(args, 2);
  let i = begin;
  for (; i + 8 <= end; i += 8) {
    const o = <usize>i << 2;
    const r0 = siluMul4(v128.load(g + o), v128.load(u + o));
    const r1 = siluMul4(v128.load(g + o, 16), v128.load(u + o, 16));
    v128.store(y + o, r0);
    v128.store(y + o, r1, 16);
  }
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, siluMul4(v128.load(g + o), v128.load(u + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, f32x4.extract_lane(siluMul4(f32x4.splat(load<f32>(g + o)), f32x4.splat(load<f32>(u + o))), 0));
  }
}
