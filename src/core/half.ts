/**
 * f16 (IEEE 754 binary16) and bf16 (bfloat16) bit conversions.
 *
 * NOTE(1): Node 20 has no Float16Array, so halves travel as uint16 bit patterns.
 * NOTE(2): Inputs are f32 values by contract: a JS number is first rounded to f32
 *   (Math.fround semantics through a Float32Array), then to the half format with
 *   round-to-nearest-even, exactly as F16C `vcvtps2ph` (imm 0) and ggml do. Rounding
 *   straight from f64 could differ by one ulp through double rounding.
 * NOTE(3): NaN stays NaN (quiet, sign kept); overflow goes to ±Inf by RNE (f16: |x| >= 65520);
 *   values below half the smallest subnormal go to ±0; subnormals are exact where representable.
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** f32 bit pattern of x (after rounding x to f32). */
export function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

/** f32 value of a 32-bit pattern. */
export function f32FromBits(u: number): number {
  u32Scratch[0] = u >>> 0;
  return f32Scratch[0]!;
}

/** f32 -> f16 bits, round to nearest even. */
export function f32ToF16Bits(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const he = exp - 112; // half exponent field = exp - 127 + 15
  if (he >= 31) return sign | 0x7c00;
  if (he <= 0) {
    // Result is a half subnormal (or zero, or rounds up to the smallest normal).
    if (he < -10) return sign;
    const m = mant | 0x800000; // 24-bit significand with the implicit 1
    const shift = 14 - he; // in [14, 24]
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = (he << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r++; // a carry into the exponent is correct (up to Inf)
  return sign | r;
}

function decodeF16Slow(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * f16 bits -> f32 value for all 65,536 patterns (a table: decoding is on every read path).
 * NaN entries are written as bits (sign, quiet bit, payload << 13, as F16C `vcvtph2ps` does):
 * a JS `NaN` literal would lose the sign.
 */
const F16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  const tBits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) tBits[h] = ((h & 0x8000) << 16) | 0x7fc00000 | ((h & 0x3ff) << 13);
    else t[h] = decodeF16Slow(h);
  }
  return t;
})();

/** f16 bits -> value (exactly representable in f32). */
export function f16BitsToF32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** f32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN with its sign. */
export function f32ToBf16Bits(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
  const rounding = 0x7fff + ((u >>> 16) & 1);
  return ((u + rounding) >>> 16) & 0xffff;
}

/** bf16 bits -> value. */
export function bf16BitsToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/** Round a value through f16 and back (what an f16 cache stores). */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}
