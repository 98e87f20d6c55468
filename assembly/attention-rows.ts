// Row decoders of the attention kernels: the stored K or V rows of one block of keys (any dtype)
// into the f32 scratch the inner loops read, or, for block-quantized K, into int16 values plus
// per-block scales for the integer dot products. A block at a time (the dtype is dispatched once
// per block, not per row); the cache is never expanded as a whole.
//
// Decoded f32 blocks are written in 4-value chunks; chunk c of row k goes to
//   dst + (k >> 2) * quadStride + (k & 3) * laneStride + c * chunkStride
// which covers both layouts of attention.ts: V rows back to back ([nb, hdPad]) and K "quad
// interleaved" ([nbPad / 4, hdPad / 4, 4 keys, 4 values]), where the four keys scored together
// sit at fixed offsets 0, 16, 32, 48 from one pointer (immediate offsets, one address add).
import { f16ToF32, loadBf16x4, loadF16x8Hi, loadF16x8Lo } from './simd';

// Dtype codes, shared with src/kernels/wasm/attention.ts (DTYPE_CODE).
export const DT_F32: i32 = 0;
export const DT_F16: i32 = 1;
export const DT_BF16: i32 = 2;
export const DT_Q8_0: i32 = 3;
export const DT_Q4_0: i32 = 4;

/** 2^112 and 2^-112: a "raw" f16 value (its bits moved into f32 position, no rebias) is the value times 2^-112. */
export const F16_REBIAS: f32 = 5.192296858534828e33;
export const F16_RAW: f32 = 1.925929944387236e-34;

/** Bytes of one ggml block: f16 scale + 32 int8 (q8_0) or + 16 bytes of nibbles (q4_0). */
const Q8_BLOCK: usize = 34;
const Q4_BLOCK: usize = 18;

/** Bytes of a stored row of hd values (block dtypes: hd % 32 == 0). */
export function rowBytes(dt: i32, hd: i32): usize {
  if (dt == DT_F32) return <usize>hd << 2;
  if (dt == DT_F16 || dt == DT_BF16) return <usize>hd << 1;
  return <usize>(hd >> 5) * (dt == DT_Q8_0 ? Q8_BLOCK : Q4_BLOCK);
}

/** 16 signed bytes -> 16 f32 times `d`: four chunks at o, o + cs, o + 2 cs, o + 3 cs. */
@inline function storeI8x16Scaled(v: v128, d: v128, o: usize, cs: usize): void {
  const lo = i16x8.extend_low_i8x16_s(v);
  const hi = i16x8.extend_high_i8x16_s(v);
  v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), d));
  v128.store(o + cs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), d));
  v128.store(o + 2 * cs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), d));
  v128.store(o + 3 * cs, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), d));
}

/** The 32 nibbles of a q4_0 block's 16 bytes as signed bytes minus 8: lo = elements 0..15, hi = 16..31. */
@inline function q4Low(v: v128): v128 {
  return i8x16.sub(v128.and(v, i8x16.splat(0x0f)), i8x16.splat(8));
}
@inline function q4High(v: v128): v128 {
  return i8x16.sub(i8x16.shr_u(v, 4), i8x16.splat(8));
}

/**
 * 8 halves -> 8 raw f32 (value * 2^-112, exact for every finite half, normal or subnormal): the
 * half's bits moved 13 places up, built as 16-bit halves and interleaved (3 ops + 2 unpacks per
 * 8 values; widening to i32 first took 7): high = sign, three zeros, exponent, top 7 mantissa
 * bits (the arithmetic shift copies the sign, the mask clears the copies); low = the last 3
 * mantissa bits. Two chunks, at o and o + cs. Inf / NaN halves do not convert this way (callers
 * detect them).
 */
@inline function storeF16x8Raw(v: v128, o: usize, cs: usize): void {
  const hi = v128.and(i16x8.shr_s(v, 3), i16x8.splat(<i16>0x8fff));
  const lo = i16x8.shl(v, 13);
  v128.store(o, i16x8.shuffle(lo, hi, 0, 8, 1, 9, 2, 10, 3, 11));
  v128.store(o + cs, i16x8.shuffle(lo, hi, 4, 12, 5, 13, 6, 14, 7, 15));
}

/** Lane max of (half << 1) folded into `top`: a half is Inf / NaN iff its shifted value is >= 0xf800. */
@inline function trackSpecial(top: v128, v: v128): v128 {
  return i16x8.max_u(top, i16x8.shl(v, 1));
}

/** Element d of a row whose chunks are cs bytes apart. */
@inline function elementAt(o: usize, cs: usize, d: i32): usize {
  return o + <usize>(d >> 2) * cs + (<usize>(d & 3) << 2);
}

/**
 * One row of any dtype at src into f32 chunks at o (chunk stride cs), zeros up to hdPad: the
 * exact path for every dtype and shape. `raw` (f16 only): store value * 2^-112.
 */
function decodeRow(dt: i32, src: usize, o: usize, cs: usize, hd: i32, hdPad: i32, raw: bool): void {
  let d = 0;
  if (dt == DT_F32) {
    for (; d + 4 <= hd; d += 4) v128.store(o + <usize>(d >> 2) * cs, v128.load(src + (<usize>d << 2)));
    for (; d < hd; d++) store<f32>(elementAt(o, cs, d), load<f32>(src + (<usize>d << 2)));
  } else if (dt == DT_F16) {
    const scale: f32 = raw ? F16_RAW : 1;
    const s = f32x4.splat(scale);
    for (; d + 8 <= hd; d += 8) {
      const p = src + (<usize>d << 1);
      const c = o + <usize>(d >> 2) * cs;
      v128.store(c, f32x4.mul(loadF16x8Lo(p), s));
      v128.store(c + cs, f32x4.mul(loadF16x8Hi(p), s));
    }
    for (; d < hd; d++) store<f32>(elementAt(o, cs, d), f16ToF32(<u32>load<u16>(src + (<usize>d << 1))) * scale);
  } else if (dt == DT_BF16) {
    for (; d + 4 <= hd; d += 4) v128.store(o + <usize>(d >> 2) * cs, loadBf16x4(src + (<usize>d << 1)));
    for (; d < hd; d++) store<u32>(elementAt(o, cs, d), <u32>load<u16>(src + (<usize>d << 1)) << 16);
  } else if (dt == DT_Q8_0) {
    let p = src;
    for (; d < hd; d += 32, p += Q8_BLOCK) {
      const scale = f32x4.splat(f16ToF32(<u32>load<u16>(p)));
      const c = o + <usize>(d >> 2) * cs;
      storeI8x16Scaled(v128.load(p, 2), scale, c, cs);
      storeI8x16Scaled(v128.load(p, 18), scale, c + 4 * cs, cs);
    }
  } else {
    let p = src;
    for (; d < hd; d += 32, p += Q4_BLOCK) {
      const scale = f32x4.splat(f16ToF32(<u32>load<u16>(p)));
      const v = v128.load(p, 2);
      const c = o + <usize>(d >> 2) * cs;
      storeI8x16Scaled(q4Low(v), scale, c, cs);
      storeI8x16Scaled(q4High(v), scale, c + 4 * cs, cs);
    }
  }
  for (; d < hdPad; d++) store<f32>(elementAt(o, cs, d), 0);
}

/**
 * Decode the nb rows of a block, row k from the cache address ptrs[k] + off (u32 [nb]), into f32 chunks
 * at the layout of the header (quadStride, laneStride, chunkStride). Block dtypes have
 * hd % 32 == 0 (checked in JS).
 *
 * f16 with raw = true stores value * 2^-112 (the half's bits moved into f32 position, no rebias
 * multiply). Callers fold 2^112 into the other factor (q, or the softmax weight): both scalings
 * are exact powers of two, so every product is bit-identical to the rebiased one, one multiply
 * per 4 values cheaper. Inf / NaN halves do not convert that way: a block holding one (rare) is
 * decoded again row by row on the exact path, so every result is exact.
 */
export function decodeBlockF32(
  dt: i32, ptrs: usize, off: usize, nb: i32, dst: usize, quadStride: usize, laneStride: usize, cs: usize, hd: i32, hdPad: i32, raw: bool,
): void {
  if (dt == DT_F16 && raw && (hd & 15) == 0) {
    let top = i16x8.splat(0);
    for (let k = 0; k < nb; k++) {
      let p = <usize>load<u32>(ptrs + (<usize>k << 2)) + off;
      let o = dst + <usize>(k >> 2) * quadStride + <usize>(k & 3) * laneStride;
      const end = p + (<usize>hd << 1);
      for (; p < end; p += 32, o += 4 * cs) {
        const a = v128.load(p);
        const b = v128.load(p, 16);
        top = trackSpecial(trackSpecial(top, a), b);
        storeF16x8Raw(a, o, cs);
        storeF16x8Raw(b, o + 2 * cs, cs);
      }
    }
    if (!v128.any_true(i16x8.ge_u(top, i16x8.splat(<i16>-2048)))) return; // -2048 = 0xf800
  } else if (dt == DT_F32 && (hd & 3) == 0) {
    for (let k = 0; k < nb; k++) {
      let p = <usize>load<u32>(ptrs + (<usize>k << 2)) + off;
      let o = dst + <usize>(k >> 2) * quadStride + <usize>(k & 3) * laneStride;
      const end = p + (<usize>hd << 2);
      for (; p < end; p += 16, o += cs) v128.store(o, v128.load(p));
    }
    return;
  } else if (dt == DT_BF16 && (hd & 7) == 0) {
    // bf16 is the high half of an f32: interleave zero halves below each value.
    const zero = i16x8.splat(0);
    for (let k = 0; k < nb; k++) {
      let p = <usize>load<u32>(ptrs + (<usize>k << 2)) + off;
      let o = dst + <usize>(k >> 2) * quadStride + <usize>(k & 3) * laneStride;
      const end = p + (<usize>hd << 1);
      for (; p < end; p += 16, o += 2 * cs) {
        const v = v128.load(p);
        v128.store(o, i16x8.shuffle(zero, v, 0, 8, 0, 9, 0, 10, 0, 11));
        v128.store(o + cs, i16x8.shuffle(zero, v, 0, 12, 0, 13, 0, 14, 0, 15));
      }
    }
    return;
  }
  for (let k = 0; k < nb; k++) {
    const o = dst + <usize>(k >> 2) * quadStride + <usize>(k & 3) * laneStride;
    decodeRow(dt, <usize>load<u32>(ptrs + (<usize>k << 2)) + off, o, cs, hd, hdPad, raw);
  }
}

/**
 * Decode the nb q8_0 / q4_0 K rows of a block (row k from ptrs[k] + off) into int16 values, quad
 * interleaved like the f32 K layout with 8-value chunks ([nbPad / 4, hd / 8, 4 keys, 8 i16]:
 * chunk c of key k at dst + (k >> 2) * quadStride + c * 64 + (k & 3) * 16, quadStride >= hd * 8;
 * exact, |value| <= 127), and
 * their per-block scales at scales + (b * blockKeys + k) * 4 ([hd / 32, blockKeys] f32).
 */
export function decodeBlockI16(dt: i32, ptrs: usize, off: usize, nb: i32, dst: usize, quadStride: usize, scales: usize, hd: i32, blockKeys: i32): void {
  const blockBytes = dt == DT_Q8_0 ? Q8_BLOCK : Q4_BLOCK;
  const scaleStride = <usize>blockKeys << 2;
  for (let k = 0; k < nb; k++) {
    let p = <usize>load<u32>(ptrs + (<usize>k << 2)) + off;
    let o = dst + <usize>(k >> 2) * quadStride + (<usize>(k & 3) << 4);
    let s = scales + (<usize>k << 2);
    for (let d = 0; d < hd; d += 32, p += blockBytes, o += 256, s += scaleStride) {
      store<f32>(s, f16ToF32(<u32>load<u16>(p)));
      let lo: v128, hi: v128;
      if (dt == DT_Q8_0) {
        lo = v128.load(p, 2);
        hi = v128.load(p, 18);
      } else {
        const v = v128.load(p, 2);
        lo = q4Low(v);
        hi = q4High(v);
      }
      v128.store(o, i16x8.extend_low_i8x16_s(lo));
      v128.store(o, i16x8.extend_high_i8x16_s(lo), 64);
      v128.store(o, i16x8.extend_low_i8x16_s(hi), 128);
      v128.store(o, i16x8.extend_high_i8x16_s(hi), 192);
    }
  }
}
