// Shared SIMD helpers for every kernel file. Compile-time switch: ASC_FEATURE_RELAXED_SIMD is
// true only in the relaxed build (scripts/build-wasm.mjs), where a*b+c becomes one fused op.

/** a * b + c on 4 f32 lanes (fused in the relaxed build, two rounded ops in the plain one). */
@inline export function fma4(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Sum of the 4 f32 lanes. */
@inline export function hsum4(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/** Max of the 4 f32 lanes. */
@inline export function hmax4(v: v128): f32 {
  const s = f32x4.max(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return max<f32>(f32x4.extract_lane(s, 0), f32x4.extract_lane(s, 1));
}

/**
 * 4 IEEE half values (low 4 u16 lanes of `h` already widened to u32 lanes) -> 4 f32.
 * Magic-multiply: (h & 0x7fff) << 13 is the f32 bit pattern with a 112-too-small exponent, so
 * multiplying by 2^112 rebias normals and normalises subnormals exactly; exponent 31 (Inf/NaN)
 * is patched to 255 with the payload kept; the sign is ORed back in.
 */
@inline export function f16x4ToF32(h32: v128): v128 {
  const magnitude = v128.and(h32, i32x4.splat(0x7fff));
  const scaled = f32x4.mul(i32x4.shl(magnitude, 13), f32x4.splat(5.192296858534828e33)); // 2^112
  const infNan = i32x4.ge_u(magnitude, i32x4.splat(0x7c00));
  const patched = v128.or(scaled, v128.and(infNan, i32x4.splat(0x7f800000)));
  const sign = i32x4.shl(v128.and(h32, i32x4.splat(0x8000)), 16);
  return v128.or(patched, sign);
}

/** 8 halves at `p` -> two f32x4 (lo = elements 0..3, hi = 4..7). */
@inline export function loadF16x8Lo(p: usize): v128 {
  return f16x4ToF32(i32x4.extend_low_i16x8_u(v128.load(p)));
}
@inline export function loadF16x8Hi(p: usize): v128 {
  return f16x4ToF32(i32x4.extend_high_i16x8_u(v128.load(p)));
}

/** 4 bf16 values at `p` (8 bytes) -> f32x4 (bf16 is the high half of an f32). */
@inline export function loadBf16x4(p: usize): v128 {
  return i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(p)), 16);
}

/** Scalar half -> f32 (same rule as f16x4ToF32). */
@inline export function f16ToF32(h: u32): f32 {
  const magnitude = h & 0x7fff;
  let bits = reinterpret<u32>(reinterpret<f32>(magnitude << 13) * 5.192296858534828e33);
  if (magnitude >= 0x7c00) bits |= 0x7f800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/** Argument slot k (4 bytes each) of a kernel's argument block. */
@inline export function argI32(args: usize, k: i32): i32 {
  return load<i32>(args + (<usize>k << 2));
}
@inline export function argU32(args: usize, k: i32): usize {
  return <usize>load<u32>(args + (<usize>k << 2));
}
@inline export function argF32(args: usize, k: i32): f32 {
  return load<f32>(args + (<usize>k << 2));
}
