// Embedding lookup: token ids -> f32 rows decoded from a table of any weight dtype.
//
// Exactness: every decoded value equals the TS decodeRow result bit for bit. f16/bf16 widen
// exactly; a q8_0 / q4_0 value is (int q) * (f32 d) with |q| <= 128 and d an f16 value (11
// significant bits), a product of at most 19 significant bits, so the f32 multiply is exact.
import { argI32, argU32, f16ToF32, loadBf16x4, loadF16x8Hi, loadF16x8Lo } from './simd';

// Common args: [0] table ptr ([vocab, rowBytes]), [1] ids ptr (i32 [nTokens], validated by the
// caller), [2] out ptr, [3] dim, [4] out row stride (elements). Tokens [begin, end).

/** f32 table: a row copy. */
export function embedding_f32(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const ids = argU32(args, 1);
  const out = argU32(args, 2);
  const rowBytes = <usize>argI32(args, 3) << 2;
  const outStride = <usize>argI32(args, 4) << 2;
  for (let t = begin; t < end; t++) {
    const id = <usize>load<i32>(ids + (<usize>t << 2));
    memory.copy(out + <usize>t * outStride, table + id * rowBytes, rowBytes);
  }
}

/** f16 table: 8 halves per step (magic-multiply widening, exact including subnormals). */
export function embedding_f16(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const ids = argU32(args, 1);
  const out = argU32(args, 2);
  const dim = argI32(args, 3);
  const outStride = <usize>argI32(args, 4) << 2;
  for (let t = begin; t < end; t++) {
    const src = table + <usize>load<i32>(ids + (<usize>t << 2)) * (<usize>dim << 1);
    const dst = out + <usize>t * outStride;
    let i = 0;
    for (; i + 8 <= dim; i += 8) {
      const p = src + (<usize>i << 1);
      v128.store(dst + (<usize>i << 2), loadF16x8Lo(p));
      v128.store(dst + (<usize>i << 2), loadF16x8Hi(p), 16);
    }
    for (; i < dim; i++) store<f32>(dst + (<usize>i << 2), f16ToF32(<u32>load<u16>(src + (<usize>i << 1))));
  }
}

/** bf16 table: a bf16 is the high half of an f32. */
export function embedding_bf16(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const ids = argU32(args, 1);
  const out = argU32(args, 2);
  const dim = argI32(args, 3);
  const outStride = <usize>argI32(args, 4) << 2;
  for (let t = begin; t < end; t++) {
    const src = table + <usize>load<i32>(ids + (<usize>t << 2)) * (<usize>dim << 1);
    const dst = out + <usize>t * outStride;
    let i = 0;
    for (; i + 4 <= dim; i += 4) v128.store(dst + (<usize>i << 2), loadBf16x4(src + (<usize>i << 1)));
    for (; i < dim; i++) store<u32>(dst + (<usize>i << 2), <u32>load<u16>(src + (<usize>i << 1)) << 16);
  }
}

/** 16 int8 lanes -> 4 f32x4 scaled by d, stored at dst (16 floats). */
@inline function storeScaledI8x16(dst: usize, q: v128, d: v128): void {
  const lo = i16x8.extend_low_i8x16_s(q);
  const hi = i16x8.extend_high_i8x16_s(q);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), d));
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), d), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), d), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), d), 48);
}

/** q8_0 table (dim % 32 == 0): block = [d: f16][qs: int8 x 32], value = qs * d. */
export function embedding_q8_0(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const ids = argU32(args, 1);
  const out = argU32(args, 2);
  const nBlocks = argI32(args, 3) >> 5;
  const outStride = <usize>argI32(args, 4) << 2;
  const rowBytes = <usize>nBlocks * 34;
  for (let t = begin; t < end; t++) {
    const src = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + <usize>t * outStride;
    for (let b = 0; b < nBlocks; b++) {
      const blk = src + <usize>b * 34;
      const d = f32x4.splat(f16ToF32(<u32>load<u16>(blk)));
      const o = dst + (<usize>b << 7);
      storeScaledI8x16(o, v128.load(blk, 2), d);
      storeScaledI8x16(o + 64, v128.load(blk, 18), d);
    }
  }
}

/** q4_0 table (dim % 32 == 0): block = [d: f16][16 bytes]; byte j: low nibble = value j, high = j + 16; value = (nibble - 8) * d. */
export function embedding_q4_0(args: usize, begin: i32, end: i32): void {
  const table = argU32(args, 0);
  const ids = argU32(args, 1);
  const out = argU32(args, 2);
  const nBlocks = argI32(args, 3) >> 5;
  const outStride = <usize>argI32(args, 4) << 2;
  const rowBytes = <usize>nBlocks * 18;
  const eight = i8x16.splat(8);
  const lowMask = i8x16.splat(0x0f);
  for (let t = begin; t < end; t++) {
    const src = table + <usize>load<i32>(ids + (<usize>t << 2)) * rowBytes;
    const dst = out + <usize>t * outStride;
    for (let b = 0; b < nBlocks; b++) {
      const blk = src + <usize>b * 18;
      const d = f32x4.splat(f16ToF32(<u32>load<u16>(blk)));
      const qs = v128.load(blk, 2);
      const o = dst + (<usize>b << 7);
      storeScaledI8x16(o, i8x16.sub(v128.and(qs, lowMask), eight), d);
      storeScaledI8x16(o + 64, i8x16.sub(i8x16.shr_u(qs, 4), eight), d);
    }
  }
}
