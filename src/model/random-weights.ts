/**
 * Deterministic random weights for generated checkpoints, produced tensor by tensor in
 * bounded chunks and encoded straight to f32 / f16 / bf16 bytes.
 *
 * NOTE(1): One independent stream per (seed, tensor name): xoshiro128** (128-bit state,
 *   period 2^128 - 1) seeded through splitmix32 from a 32-bit FNV-1a hash of
 *   "seed:name". A tensor's values do not depend on which other tensors exist or on their
 *   order, so a sharded and an unsharded checkpoint of one seed hold identical tensors, and
 *   the 136M-value embedding of a 0.5B model never overlaps another tensor's stream (as
 *   offsets of one 32-bit generator could).
 * NOTE(2): Normal samples come from a piecewise-linear inverse CDF of N(0, 1) on 4096 cells,
 *   one 32-bit draw per value (6x faster than Box-Muller here, which matters at 0.5-1.2B
 *   values): a normal truncated at |z| ~ 4.3, its table rescaled so the variance is exactly 1.
 * NOTE(3): Values are rounded to f32 first, then to f16/bf16 by round-to-nearest-even
 *   (half.ts NOTE(2)), so the stored bits are what f32ToBf16Bits / f32ToF16Bits give.
 */
import { f32ToF16Bits } from '../core/half.js';
import type { WeightDType } from '../io/safetensors-format.js';

/** Values generated per chunk: bounds memory at ~6 MB whatever the tensor size. */
export const WEIGHT_CHUNK_VALUES = 1 << 20;

/** 32-bit FNV-1a of a string's UTF-16 code units. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function splitmix32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

/** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  if (p > 0.5) return -normalQuantile(1 - p);
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

const CELL_BITS = 12;
const CELLS = 1 << CELL_BITS;

/** Quantiles at the cell edges i / CELLS (the outermost clamped to 1/2^16), variance-normalised (NOTE(2)). */
const QUANTILES: Float64Array = (() => {
  const t = new Float64Array(CELLS + 1); // [cells + 1]
  const pMin = 1 / 2 ** 16;
  for (let i = 0; i <= CELLS; i++) t[i] = normalQuantile(Math.min(Math.max(i / CELLS, pMin), 1 - pMin));
  // Within a cell the value is linear in a uniform draw: E[z^2] = (lo^2 + lo hi + hi^2) / 3.
  let m2 = 0;
  for (let i = 0; i < CELLS; i++) m2 += (t[i]! * t[i]! + t[i]! * t[i + 1]! + t[i + 1]! * t[i + 1]!) / 3;
  const scale = 1 / Math.sqrt(m2 / CELLS);
  for (let i = 0; i <= CELLS; i++) t[i] = t[i]! * scale;
  return t;
})();

/** Seeded generator of (approximately, NOTE(2)) standard normal values, one stream per tensor (NOTE(1)). */
export class WeightRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream: string) {
    const sm = splitmix32(fnv1a(`${seed >>> 0}:${stream}`));
    this.s0 = sm() | 0;
    this.s1 = sm() | 0;
    this.s2 = sm() | 0;
    this.s3 = sm() | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the one forbidden state
  }

  /** xoshiro128**: next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const x = Math.imul(this.s1, 5);
    const r = Math.imul((x << 7) | (x >>> 25), 9);
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return r >>> 0;
  }

  /** Next N(0, 1) value: top 12 bits pick the cell, low 20 bits interpolate in it. */
  normal(): number {
    const u = this.nextU32();
    const cell = u >>> (32 - CELL_BITS);
    const frac = (u & ((1 << (32 - CELL_BITS)) - 1)) / 2 ** (32 - CELL_BITS);
    const lo = QUANTILES[cell]!;
    return lo + (QUANTILES[cell + 1]! - lo) * frac;
  }
}

/** value = mean + std * z. */
export interface WeightInit {
  readonly mean: number;
  readonly std: number;
}

/**
 * Generate `nValues` weights of stream (seed, name) and pass their `dtype` bytes to `write`
 * in chunks of at most WEIGHT_CHUNK_VALUES values (NOTE(3)). The chunk buffer is reused:
 * `write` must consume it before returning.
 */
export function generateWeights(seed: number, name: string, nValues: number, init: WeightInit, dtype: WeightDType, write: (chunk: Uint8Array) => void): void {
  const rng = new WeightRng(seed, name);
  const chunkValues = Math.min(nValues, WEIGHT_CHUNK_VALUES);
  const values = new Float32Array(chunkValues); // [chunk]
  const bits = new Uint32Array(values.buffer); // [chunk] f32 bit patterns
  const halves = new Uint16Array(dtype === 'f32' ? 0 : chunkValues); // [chunk] f16/bf16 bit patterns
  for (let done = 0; done < nValues; done += chunkValues) {
    const n = Math.min(chunkValues, nValues - done);
    for (let i = 0; i < n; i++) values[i] = init.mean + init.std * rng.normal();
    if (dtype === 'f32') {
      write(new Uint8Array(values.buffer, 0, n * 4));
      continue;
    }
    if (dtype === 'bf16') {
      // Round to nearest even on the f32 bits; the values are finite, so no NaN case.
      for (let i = 0; i < n; i++) {
        const u = bits[i]!;
        halves[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
      }
    } else {
      for (let i = 0; i < n; i++) halves[i] = f32ToF16Bits(values[i]!);
    }
    write(new Uint8Array(halves.buffer, 0, n * 2));
  }
}
