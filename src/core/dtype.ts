/**
 * Storage dtypes for K/V (and later weights) and the row codecs that read and write them.
 *
 * A "row" is `n` consecutive values of one (token, head): for the block-quantized dtypes
 * `n` must be a multiple of 32 and the row is n/32 ggml blocks. Bytes are little-endian.
 */
import { DTypeError, ShapeError } from './errors.js';
import { bf16BitsToF32, f16BitsToF32, f32Bits, f32FromBits, f32ToBf16Bits, f32ToF16Bits } from './half.js';
import { Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK, dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from './quant.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';

export interface DTypeInfo {
  /** Values per block (1 for plain floats, 32 for ggml blocks). */
  readonly blockValues: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  readonly quantized: boolean;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  f32: { blockValues: 1, blockBytes: 4, quantized: false },
  f16: { blockValues: 1, blockBytes: 2, quantized: false },
  bf16: { blockValues: 1, blockBytes: 2, quantized: false },
  q8_0: { blockValues: QK, blockBytes: Q8_0_BLOCK_BYTES, quantized: true },
  q4_0: { blockValues: QK, blockBytes: Q4_0_BLOCK_BYTES, quantized: true },
};

export const DTYPE_NAMES = Object.keys(DTYPES) as DType[];

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** Parse a dtype name, or throw DTypeError listing the valid names. */
export function parseDType(s: unknown, what = 'dtype'): DType {
  if (!isDType(s)) throw new DTypeError(what, `one of ${DTYPE_NAMES.join('|')}`, s);
  return s;
}

/** Throws DTypeError unless rows of `n` values can be stored in `dtype`. */
export function checkRowLength(dtype: DType, n: number, what = 'row length'): void {
  const bv = DTYPES[dtype].blockValues;
  if (n % bv !== 0) throw new DTypeError(`${what} for ${dtype}`, `a multiple of ${bv}`, n);
}

/** Bytes of one row of `n` values. */
export function rowSizeBytes(dtype: DType, n: number): number {
  checkRowLength(dtype, n);
  const info = DTYPES[dtype];
  return (n / info.blockValues) * info.blockBytes;
}

/**
 * Encode `n` values src[srcOff..] as one row of `dtype` at dst[dstOff..].
 * dst is a byte view (the arena or a file buffer); no alignment is assumed.
 */
export function encodeRow(dtype: DType, src: ArrayLike<number>, srcOff: number, n: number, dst: Uint8Array, dstOff: number): void {
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < n; i++) {
        const u = f32Bits(src[srcOff + i]!);
        const o = dstOff + 4 * i;
        dst[o] = u & 0xff;
        dst[o + 1] = (u >>> 8) & 0xff;
        dst[o + 2] = (u >>> 16) & 0xff;
        dst[o + 3] = u >>> 24;
      }
      return;
    case 'f16':
    case 'bf16': {
      const enc = dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < n; i++) {
        const h = enc(src[srcOff + i]!);
        dst[dstOff + 2 * i] = h & 0xff;
        dst[dstOff + 2 * i + 1] = h >>> 8;
      }
      return;
    }
    case 'q8_0':
      return quantizeQ8_0(src, srcOff, n, dst, dstOff);
    case 'q4_0':
      return quantizeQ4_0(src, srcOff, n, dst, dstOff);
  }
}

/** Decode one row of `n` values of `dtype` at src[srcOff..] into dst[dstOff..]. */
export function decodeRow(dtype: DType, src: Uint8Array, srcOff: number, n: number, dst: Float32Array | Float64Array, dstOff: number): void {
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < n; i++) {
        const o = srcOff + 4 * i;
        dst[dstOff + i] = f32FromBits(src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24));
      }
      return;
    case 'f16':
      for (let i = 0; i < n; i++) dst[dstOff + i] = f16BitsToF32(src[srcOff + 2 * i]! | (src[srcOff + 2 * i + 1]! << 8));
      return;
    case 'bf16':
      for (let i = 0; i < n; i++) dst[dstOff + i] = bf16BitsToF32(src[srcOff + 2 * i]! | (src[srcOff + 2 * i + 1]! << 8));
      return;
    case 'q8_0':
      return dequantizeQ8_0(src, srcOff, n, dst, dstOff);
    case 'q4_0':
      return dequantizeQ4_0(src, srcOff, n, dst, dstOff);
  }
}

/** Encode a whole f32 array (length a multiple of the block) into a new byte array. */
export function encodeArray(dtype: DType, src: ArrayLike<number>): Uint8Array {
  if (src.length % DTYPES[dtype].blockValues !== 0) {
    throw new ShapeError(`array length for ${dtype}`, `a multiple of ${DTYPES[dtype].blockValues}`, src.length);
  }
  if (dtype === 'f32' && src instanceof Float32Array) {
    // Typed arrays are little-endian on every platform WebAssembly runs on: f32 bytes are a copy.
    return new Uint8Array(src.slice().buffer);
  }
  const out = new Uint8Array(rowSizeBytes(dtype, src.length));
  encodeRow(dtype, src, 0, src.length, out, 0);
  return out;
}

/** Decode a whole byte array of `dtype` holding `n` values. */
export function decodeArray(dtype: DType, src: Uint8Array, n: number): Float32Array {
  const need = rowSizeBytes(dtype, n);
  if (src.length < need) throw new ShapeError(`bytes for ${n} ${dtype} values`, need, src.length);
  const out = new Float32Array(n);
  decodeRow(dtype, src, 0, n, out, 0);
  return out;
}
