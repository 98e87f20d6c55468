/**
 * Reference elementwise / row kernels of the forward pass: softmax over rows, SwiGLU's
 * silu(gate) * up, residual add. Oracles of the wasm kernels softmax_f32, silu_mul_f32, add_f32.
 *
 * NOTE(1): float64 arithmetic, one f32 rounding of each output.
 * NOTE(2): softmax edge rows (the wasm kernel does the same): a row whose max is -Infinity (every
 *   entry masked) becomes all zeros rather than 0/0; a row holding NaN or +Infinity is all NaN.
 */
import { ConfigError, ShapeError } from '../../core/errors.js';
import { rowsOf } from './norm.js';

/** Throws ConfigError unless the softmax scale (1 / temperature) is finite and > 0. */
export function checkSoftmaxScale(scale: unknown): number {
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) throw new ConfigError('softmax scale', 'a finite number > 0', scale);
  return scale;
}

/** softmax(scale * x) over each row of n values; returns a new array. */
export function softmax(x: Float32Array, n: number, scale = 1): Float32Array {
  checkSoftmaxScale(scale);
  const nRows = rowsOf('softmax x', x, n);
  const y = new Float32Array(x.length); // [nRows, n]
  const e = new Float64Array(n); // [n] one row's exponentials, unrounded
  for (let r = 0; r < nRows; r++) {
    const o = r * n;
    let mx = -Infinity;
    let nan = false;
    for (let i = 0; i < n; i++) {
      const v = x[o + i]!;
      if (v !== v) nan = true;
      else if (v > mx) mx = v;
    }
    if (nan || mx === Infinity) {
      y.fill(NaN, o, o + n);
      continue;
    }
    if (mx === -Infinity) continue; // all masked: zeros (NOTE(2))
    let sum = 0;
    for (let i = 0; i < n; i++) sum += e[i] = Math.exp((x[o + i]! - mx) * scale);
    for (let i = 0; i < n; i++) y[o + i] = e[i]! / sum;
  }
  return y;
}

/** silu(g) = g / (1 + e^-g) = g * sigmoid(g). */
export function silu(g: number): number {
  return g / (1 + Math.exp(-g));
}

/** out = silu(gate) * up, elementwise; returns a new array. */
export function siluMul(gate: Float32Array, up: Float32Array): Float32Array {
  if (up.length !== gate.length) throw new ShapeError('siluMul up length (the gate length)', gate.length, up.length);
  const out = new Float32Array(gate.length); // [n]
  for (let i = 0; i < gate.length; i++) out[i] = silu(gate[i]!) * up[i]!;
  return out;
}

/** y = a + b, elementwise; returns a new array. */
export function residualAdd(a: Float32Array, b: Float32Array): Float32Array {
  if (b.length !== a.length) throw new ShapeError('residualAdd b length (the a length)', a.length, b.length);
  const y = new Float32Array(a.length); // [n]
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!;
  return y;
}
