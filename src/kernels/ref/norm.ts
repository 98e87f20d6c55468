/**
 * Reference RMSNorm (Llama / Qwen2 / Qwen3 / Mistral, HF `LlamaRMSNorm`), the oracle of the wasm
 * kernel `rmsnorm_f32`:
 *
 *   y[r, i] = x[r, i] / sqrt(mean_j(x[r, j]^2) + eps) * weight[i]          x, y: [nRows, dim]
 *
 * NOTE(1): float64 arithmetic, one f32 rounding of each output. Gemma's (1 + weight) variant is
 *   not this function (pass weight + 1 if ever needed).
 * NOTE(2): Qwen3's per-head q/k norm is the same call with rows = nTokens * nHeads, dim = headDim.
 */
import { ConfigError, ShapeError, checkInt } from '../../core/errors.js';

/** Throws ConfigError unless eps is a finite number >= 0 (HF configs use 1e-5 / 1e-6). */
export function checkEps(eps: unknown): number {
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new ConfigError('rmsnorm eps', 'a finite number >= 0', eps);
  return eps;
}

/** Number of rows of `x` for rows of `dim` values (ShapeError unless it divides exactly). */
export function rowsOf(what: string, x: { length: number }, dim: number): number {
  checkInt(`${what} row length`, dim, 1);
  if (x.length % dim !== 0) throw new ShapeError(`${what} length (a multiple of the row length ${dim})`, `a multiple of ${dim}`, x.length);
  return x.length / dim;
}

/** RMSNorm of every row of x (rows of weight.length values); returns a new array. */
export function rmsnorm(x: Float32Array, weight: Float32Array, eps: number): Float32Array {
  checkEps(eps);
  const dim = weight.length;
  const nRows = rowsOf('rmsnorm x', x, dim);
  const y = new Float32Array(x.length); // [nRows, dim]
  for (let r = 0; r < nRows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
    const scale = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[o + i] = x[o + i]! * scale * weight[i]!;
  }
  return y;
}
