/**
 * Reference rotary position embedding (RoPE), the oracle of the wasm kernel `rope_f32`.
 *
 *   x: [nTokens, nHeads, headDim];  for each token t, head h, pair i < rotaryDim / 2:
 *     angle = positions[t] * invFreq[i]
 *     (x_a, x_b) <- (x_a cos(angle) - x_b sin(angle),  x_b cos(angle) + x_a sin(angle))
 *
 *   'neox'        (HF Llama `rotate_half`):   a = i,      b = i + rotaryDim / 2
 *   'interleaved' (GPT-J, llama.cpp non-NeoX): a = 2i,    b = 2i + 1
 *
 *   head:  [ rotated: rotaryDim values | untouched: headDim - rotaryDim values ]
 *
 * NOTE(1): invFreq is an f32 table [rotaryDim / 2], the one contract between model code and
 *   kernels: ropeInvFreq(theta, rotaryDim) gives theta^(-2i / rotaryDim); llama3 / linear / NTK
 *   scaling is just another table. Ref and wasm read the SAME f32 table, so parity checks the
 *   kernel, not the table's rounding.
 * NOTE(2): The angle is pos * invFreq in float64 and cos/sin are float64: at positions ~1e5..1e6
 *   an f32 angle would be off by up to ~0.06 rad. The rotation is float64, rounded once to f32.
 */
import { ConfigError, ShapeError, checkInt } from '../../core/errors.js';

export type RopeMode = 'neox' | 'interleaved';

export interface RopeOptions {
  nHeads: number;
  headDim: number;
  /** Leading dims of each head that rotate (even, <= headDim); default headDim. */
  rotaryDim?: number;
  /** Default 'neox' (HF Llama / Qwen2 / Qwen3 / Mistral). */
  mode?: RopeMode;
  /** Base of the default table (default 10000); ignored when invFreq is given. */
  theta?: number;
  /** Precomputed inverse frequencies, f32 [rotaryDim / 2] (NOTE(1)). */
  invFreq?: Float32Array;
}

export interface ResolvedRope {
  readonly nHeads: number;
  readonly headDim: number;
  readonly rotaryDim: number;
  readonly mode: RopeMode;
  readonly invFreq: Float32Array; // [rotaryDim / 2]
}

/** Throws ConfigError unless theta is finite and > 0. */
export function checkTheta(theta: unknown): number {
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) throw new ConfigError('rope theta', 'a finite number > 0', theta);
  return theta;
}

/** Throws ConfigError unless rotaryDim is even and in [2, headDim]; returns it. */
export function checkRotaryDim(rotaryDim: unknown, headDim: number): number {
  checkInt('rope headDim', headDim, 2);
  const r = checkInt('rope rotaryDim', rotaryDim, 2, headDim);
  if (r % 2 !== 0) throw new ConfigError('rope rotaryDim', 'an even number', r);
  return r;
}

/** Throws ConfigError unless mode is 'neox' or 'interleaved'. */
export function checkRopeMode(mode: unknown): RopeMode {
  if (mode !== 'neox' && mode !== 'interleaved') throw new ConfigError('rope mode', "'neox' or 'interleaved'", mode);
  return mode;
}

/** inv_freq[i] = theta^(-2i / rotaryDim), i < rotaryDim / 2, computed in float64, stored as f32. */
export function ropeInvFreq(theta: number, rotaryDim: number): Float32Array {
  checkTheta(theta);
  checkInt('rope rotaryDim', rotaryDim, 2);
  const t = new Float32Array(rotaryDim / 2); // [rotaryDim / 2]
  for (let i = 0; i < t.length; i++) t[i] = Math.pow(theta, (-2 * i) / rotaryDim);
  return t;
}

/** Validate options and fill defaults (shared with the wasm binding so both accept the same). */
export function resolveRope(opts: RopeOptions): ResolvedRope {
  const nHeads = checkInt('rope nHeads', opts.nHeads, 1);
  const headDim = checkInt('rope headDim', opts.headDim, 2);
  const rotaryDim = checkRotaryDim(opts.rotaryDim ?? headDim, headDim);
  const mode = checkRopeMode(opts.mode ?? 'neox');
  let invFreq = opts.invFreq;
  if (invFreq === undefined) invFreq = ropeInvFreq(opts.theta ?? 10000, rotaryDim);
  else checkInvFreq(invFreq, rotaryDim);
  return { nHeads, headDim, rotaryDim, mode, invFreq };
}

/** ShapeError unless the table has rotaryDim / 2 entries; ConfigError for a non-finite entry. */
export function checkInvFreq(invFreq: Float32Array, rotaryDim: number): void {
  if (invFreq.length !== rotaryDim / 2) throw new ShapeError('rope invFreq length (rotaryDim / 2)', rotaryDim / 2, invFreq.length);
  for (let i = 0; i < invFreq.length; i++) {
    if (!Number.isFinite(invFreq[i]!)) throw new ConfigError(`rope invFreq[${i}]`, 'a finite number', invFreq[i]);
  }
}

/** Throws unless positions holds nTokens int32 values. */
export function checkPositions(positions: ArrayLike<number>, nTokens: number): void {
  if (positions.length !== nTokens) throw new ShapeError('rope positions length (nTokens)', nTokens, positions.length);
  for (let t = 0; t < nTokens; t++) {
    const p = positions[t]!;
    if (!Number.isInteger(p) || p < -0x80000000 || p > 0x7fffffff) throw new ConfigError(`rope positions[${t}]`, 'an int32', p);
  }
}

/** RoPE of x [nTokens, nHeads, headDim] at the given positions; returns a new array. */
export function rope(x: Float32Array, positions: ArrayLike<number>, opts: RopeOptions): Float32Array {
  const { nHeads, headDim, rotaryDim, mode, invFreq } = resolveRope(opts);
  const tokenLen = nHeads * headDim;
  if (x.length % tokenLen !== 0) throw new ShapeError('rope x length (a multiple of nHeads * headDim)', `a multiple of ${tokenLen}`, x.length);
  const nTokens = x.length / tokenLen;
  checkPositions(positions, nTokens);
  const y = Float32Array.from(x); // [nTokens, nHeads, headDim]
  const half = rotaryDim / 2;
  for (let t = 0; t < nTokens; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t]! * invFreq[i]!;
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const ia = mode === 'neox' ? i : 2 * i;
      const ib = mode === 'neox' ? i + half : 2 * i + 1;
      for (let h = 0; h < nHeads; h++) {
        const o = t * tokenLen + h * headDim;
        const a = x[o + ia]!;
        const b = x[o + ib]!;
        y[o + ia] = a * c - b * s;
        y[o + ib] = b * c + a * s;
      }
    }
  }
  return y;
}
