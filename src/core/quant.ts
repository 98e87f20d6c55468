/**
 * ggml block quantization, byte-identical to ggml's reference quantizers.
 *
 *   block_q8_0 (34 bytes per 32 values):  [d: f16 LE][qs: int8 x 32]          value_j = qs_j * d
 *   block_q4_0 (18 bytes per 32 values):  [d: f16 LE][qs: uint8 x 16]
 *       qs[j] low nibble  = value j,  high nibble = value j + 16;          value = (nibble - 8) * d
 *
 * NOTE(1): The arithmetic mirrors ggml's C in f32: `d = amax / 127` (q8_0) or `d = max / -8`
 *   (q4_0, max = the value of largest magnitude, first one on ties), `id = 1/d`, products
 *   `x * id` rounded to f32 (Math.fround), then `roundf` (half away from zero) for q8_0 and
 *   `MIN(15, (int8_t)(x*id + 8.5f))` (truncation) for q4_0. The scale stored is f16(d) while
 *   the quantized values use the f32 `id`, as in ggml.
 */
import { f16BitsToF32, f32ToF16Bits } from './half.js';

export const QK = 32;
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;

const fr = Math.fround;

/** C `roundf`: round half away from zero. */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Quantize `n` (multiple of 32) f32 values src[srcOff..] into q8_0 blocks at dst[dstOff..]. */
export function quantizeQ8_0(src: ArrayLike<number>, srcOff: number, n: number, dst: Uint8Array, dstOff: number): void {
  for (let b = 0; b < n / QK; b++) {
    const s = srcOff + b * QK;
    const o = dstOff + b * Q8_0_BLOCK_BYTES;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      const a = Math.abs(fr(src[s + j]!));
      if (a > amax) amax = a;
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f32ToF16Bits(d);
    dst[o] = h & 0xff;
    dst[o + 1] = h >>> 8;
    for (let j = 0; j < QK; j++) dst[o + 2 + j] = roundf(fr(fr(src[s + j]!) * id)) & 0xff;
  }
}

/** Dequantize `n` values of q8_0 blocks at src[srcOff..] into dst[dstOff..]. */
export function dequantizeQ8_0(src: Uint8Array, srcOff: number, n: number, dst: Float32Array | Float64Array, dstOff: number): void {
  for (let b = 0; b < n / QK; b++) {
    const o = srcOff + b * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(src[o]! | (src[o + 1]! << 8));
    const t = dstOff + b * QK;
    for (let j = 0; j < QK; j++) dst[t + j] = ((src[o + 2 + j]! << 24) >> 24) * d;
  }
}

/** Quantize `n` (multiple of 32) f32 values into q4_0 blocks. */
export function quantizeQ4_0(src: ArrayLike<number>, srcOff: number, n: number, dst: Uint8Array, dstOff: number): void {
  for (let b = 0; b < n / QK; b++) {
    const s = srcOff + b * QK;
    const o = dstOff + b * Q4_0_BLOCK_BYTES;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = fr(src[s + j]!);
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f32ToF16Bits(d);
    dst[o] = h & 0xff;
    dst[o + 1] = h >>> 8;
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fr(fr(src[s + j]!) * id);
      const x1 = fr(fr(src[s + QK / 2 + j]!) * id);
      const q0 = Math.min(15, Math.trunc(fr(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(x1 + 8.5)));
      dst[o + 2 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
    }
  }
}

/** Dequantize `n` values of q4_0 blocks. */
export function dequantizeQ4_0(src: Uint8Array, srcOff: number, n: number, dst: Float32Array | Float64Array, dstOff: number): void {
  for (let b = 0; b < n / QK; b++) {
    const o = srcOff + b * Q4_0_BLOCK_BYTES;
    const d = f16BitsToF32(src[o]! | (src[o + 1]! << 8));
    const t = dstOff + b * QK;
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 2 + j]!;
      dst[t + j] = ((q & 0xf) - 8) * d;
      dst[t + QK / 2 + j] = ((q >>> 4) - 8) * d;
    }
  }
}
