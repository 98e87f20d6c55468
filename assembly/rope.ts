// Rotary position embedding, in place, on one or two tensors (q and k share the cos/sin).
import { argI32, argU32 } from './simd';

// Per-token cos/sin of 4 consecutive pairs, filled by angles4 (globals are per instance, so per thread).
let cos4: v128 = f32x4.splat(1);
let sin4: v128 = f32x4.splat(0);

/**
 * cos/sin of pos * invFreq[i..i+4) into cos4/sin4. The angle is formed and reduced in f64: at
 * pos ~1e6 an f32 angle would be off by ~0.03 rad; the f64 musl sincos is then rounded to f32.
 */
@inline function angles4(pos: f64, invFreq: usize, i: i32): void {
  let c = f32x4.splat(0), s = f32x4.splat(0);
  const p = invFreq + (<usize>i << 2);
  NativeMath.sincos(pos * <f64>load<f32>(p));
  c = f32x4.replace_lane(c, 0, <f32>NativeMath.sincos_cos); s = f32x4.replace_lane(s, 0, <f32>NativeMath.sincos_sin);
  NativeMath.sincos(pos * <f64>load<f32>(p, 4));
  c = f32x4.replace_lane(c, 1, <f32>NativeMath.sincos_cos); s = f32x4.replace_lane(s, 1, <f32>NativeMath.sincos_sin);
  NativeMath.sincos(pos * <f64>load<f32>(p, 8));
  c = f32x4.replace_lane(c, 2, <f32>NativeMath.sincos_cos); s = f32x4.replace_lane(s, 2, <f32>NativeMath.sincos_sin);
  NativeMath.sincos(pos * <f64>load<f32>(p, 12));
  c = f32x4.replace_lane(c, 3, <f32>NativeMath.sincos_cos); s = f32x4.replace_lane(s, 3, <f32>NativeMath.sincos_sin);
  cos4 = c;
  sin4 = s;
}

/** Rotate-half (NeoX / HF Llama): pairs (i, i + half) of every head, 4 pairs at once. */
@inline function neox4(row: usize, nHeads: i32, headBytes: usize, i: i32, half: i32, c: v128, s: v128): void {
  const o0 = <usize>i << 2;
  const o1 = <usize>(i + half) << 2;
  for (let h = 0; h < nHeads; h++) {
    const p = row + <usize>h * headBytes;
    const a = v128.load(p + o0);
    const b = v128.load(p + o1);
    v128.store(p + o0, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
    v128.store(p + o1, f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s)));
  }
}

/** Interleaved (GPT-J / llama.cpp non-NeoX): pairs (2i, 2i+1), 4 pairs = 8 floats at once. */
@inline function interleaved4(row: usize, nHeads: i32, headBytes: usize, i: i32, c01: v128, s01: v128, c23: v128, s23: v128): void {
  const o = <usize>i << 3;
  for (let h = 0; h < nHeads; h++) {
    const p = row + <usize>h * headBytes + o;
    const v = v128.load(p);
    const w = v128.load(p, 16);
    // [a0, b0, a1, b1] * [c0, c0, c1, c1] + [b0, a0, b1, a1] * [-s0, s0, -s1, s1]
    v128.store(p, f32x4.add(f32x4.mul(v, c01), f32x4.mul(i32x4.shuffle(v, v, 1, 0, 3, 2), s01)));
    v128.store(p, f32x4.add(f32x4.mul(w, c23), f32x4.mul(i32x4.shuffle(w, w, 1, 0, 3, 2), s23)), 16);
  }
}

/** One pair (element offsets o0, o1 in each head) by (c, s), scalar. */
@inline function pair1(row: usize, nHeads: i32, headBytes: usize, o0: usize, o1: usize, c: f32, s: f32): void {
  for (let h = 0; h < nHeads; h++) {
    const p = row + <usize>h * headBytes;
    const a = load<f32>(p + o0);
    const b = load<f32>(p + o1);
    store<f32>(p + o0, a * c - b * s);
    store<f32>(p + o1, b * c + a * s);
  }
}

/**
 * args: [0] x ptr, [1] nHeads, [2] x token stride (elements), [3] x2 ptr, [4] nHeads2 (0: none),
 *       [5] x2 token stride (elements), [6] headDim, [7] rotaryDim (even, <= headDim),
 *       [8] positions ptr (i32 [nTokens]), [9] invFreq ptr (f32 [rotaryDim / 2]), [10] mode
 *       (0 = NeoX rotate-half, 1 = interleaved).
 * Tokens [begin, end), in place:                 x: [nTokens, stride] holding [nHeads, headDim]
 *   angle_i = pos * invFreq[i];  (x_a, x_b) <- (x_a cos - x_b sin, x_b cos + x_a sin)
 * with (a, b) = (i, i + rotaryDim/2) (NeoX) or (2i, 2i + 1) (interleaved); dims >= rotaryDim untouched.
 * The cos/sin of a token are computed once and applied to every head of x and x2 (q and k).
 */
export function rope_f32(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const nHeads = argI32(args, 1);
  const stride = <usize>argI32(args, 2) << 2;
  const x2 = argU32(args, 3);
  const nHeads2 = argI32(args, 4);
  const stride2 = <usize>argI32(args, 5) << 2;
  const headBytes = <usize>argI32(args, 6) << 2;
  const half = argI32(args, 7) >> 1;
  const positions = argU32(args, 8);
  const invFreq = argU32(args, 9);
  const interleaved = argI32(args, 10) == 1;
  for (let t = begin; t < end; t++) {
    const pos = <f64>load<i32>(positions + (<usize>t << 2));
    const row = x + <usize>t * stride;
    const row2 = x2 + <usize>t * stride2;
    let i = 0;
    for (; i + 4 <= half; i += 4) {
      angles4(pos, invFreq, i);
      const c = cos4, s = sin4;
      if (interleaved) {
        const sn = f32x4.neg(s);
        const c01 = i32x4.shuffle(c, c, 0, 0, 1, 1), c23 = i32x4.shuffle(c, c, 2, 2, 3, 3);
        const s01 = i32x4.shuffle(sn, s, 0, 4, 1, 5), s23 = i32x4.shuffle(sn, s, 2, 6, 3, 7);
        interleaved4(row, nHeads, headBytes, i, c01, s01, c23, s23);
        interleaved4(row2, nHeads2, headBytes, i, c01, s01, c23, s23);
      } else {
        neox4(row, nHeads, headBytes, i, half, c, s);
        neox4(row2, nHeads2, headBytes, i, half, c, s);
      }
    }
    for (; i < half; i++) {
      NativeMath.sincos(pos * <f64>load<f32>(invFreq + (<usize>i << 2)));
      const c = <f32>NativeMath.sincos_cos, s = <f32>NativeMath.sincos_sin;
      const o0 = interleaved ? <usize>i << 3 : <usize>i << 2;
      const o1 = interleaved ? o0 + 4 : <usize>(i + half) << 2;
      pair1(row, nHeads, headBytes, o0, o1, c, s);
      pair1(row2, nHeads2, headBytes, o0, o1, c, s);
    }
  }
}
