/**
 * Bindings of the f32 row / elementwise kernels (assembly/elementwise*.ts): RMSNorm, softmax,
 * silu(gate) * up, residual add. Twins of ref/norm.ts and ref/elementwise.ts.
 *
 * Each op has two forms:
 *   - `xxxAt(rt, {...arena offsets})`: what the model runtime calls on buffers already in the
 *     arena; no allocation; offsets and sizes are checked (arena-span.ts) before the kernel runs.
 *   - `xxx(rt, arrays...)`: a convenience form over Float32Arrays (staged into the runtime's
 *     scratch buffers, result copied out); for tests and one-off use.
 *
 * NOTE(1): Work is split by rows (rmsnorm, softmax) or by elements (add, silu), in shares worth
 *   ~8-16K elements so that the dispatch cost (a few µs) stays small; a decode-sized call (one row,
 *   a few thousand elements) runs on the calling thread alone. Every element's result depends only
 *   on its own row (or itself), never on the split: 1 and N threads are bit-identical.
 */
import { checkInt, ShapeError } from '../../core/errors.js';
import { checkSoftmaxScale } from '../ref/elementwise.js';
import { checkEps, rowsOf } from '../ref/norm.js';
import { checkRows, checkWords, grainFor, readF32 } from './arena-span.js';
import type { KernelRuntime } from './runtime.js';

const ELEMENT_GRAIN = 16384; // elements per share for add / silu (a multiple of 16)

export interface RmsnormAt {
  /** x: [nRows, xStride] f32, arena byte offset. */
  x: number;
  /** y: [nRows, yStride] f32; default x (in place). */
  y?: number;
  /** weight: [dim] f32. */
  weight: number;
  nRows: number;
  dim: number;
  eps: number;
  /** Elements between rows of x (>= dim, default dim), e.g. heads inside a fused QKV row. */
  xStride?: number;
  yStride?: number;
}

/** y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight for rows [0, nRows). */
export function rmsnormAt(rt: KernelRuntime, a: RmsnormAt): void {
  const dim = checkInt('rmsnorm dim', a.dim, 1);
  const nRows = checkInt('rmsnorm nRows', a.nRows, 0);
  const eps = checkEps(a.eps);
  const y = a.y ?? a.x;
  const xStride = checkRows(rt, 'rmsnorm x', a.x, nRows, dim, a.xStride ?? dim);
  const yStride = checkRows(rt, 'rmsnorm y', y, nRows, dim, a.yStride ?? (a.y === undefined ? xStride : dim));
  checkWords(rt, 'rmsnorm weight', a.weight, dim);
  rt.args().ptr(a.x).ptr(y).ptr(a.weight).i32(dim).f32(eps).i32(xStride).i32(yStride);
  rt.parallelFor('rmsnorm_f32', 0, nRows, grainFor(dim));
}

/** RMSNorm of every row of x (rows of weight.length values); returns a new array. */
export function rmsnorm(rt: KernelRuntime, x: Float32Array, weight: Float32Array, eps: number): Float32Array {
  checkEps(eps);
  const nRows = rowsOf('rmsnorm x', x, weight.length);
  const xo = rt.stage('elementwise.a', x);
  const wo = rt.stage('elementwise.b', weight);
  rmsnormAt(rt, { x: xo, weight: wo, nRows, dim: weight.length, eps });
  return readF32(rt, xo, x.length);
}

export interface SoftmaxAt {
  /** x: [nRows, xStride] f32, arena byte offset. */
  x: number;
  /** y: [nRows, yStride] f32; default x (in place). */
  y?: number;
  nRows: number;
  /** Row length. */
  n: number;
  /** Multiplies x before the softmax (1 / temperature); default 1. */
  scale?: number;
  xStride?: number;
  yStride?: number;
}

/** y[r] = softmax(scale * x[r]) for rows [0, nRows) (edge rows: ref/elementwise.ts NOTE(2)). */
export function softmaxAt(rt: KernelRuntime, a: SoftmaxAt): void {
  const n = checkInt('softmax n', a.n, 1);
  const nRows = checkInt('softmax nRows', a.nRows, 0);
  const scale = checkSoftmaxScale(a.scale ?? 1);
  const y = a.y ?? a.x;
  const xStride = checkRows(rt, 'softmax x', a.x, nRows, n, a.xStride ?? n);
  const yStride = checkRows(rt, 'softmax y', y, nRows, n, a.yStride ?? (a.y === undefined ? xStride : n));
  rt.args().ptr(a.x).ptr(y).i32(n).f32(scale).i32(xStride).i32(yStride);
  rt.parallelFor('softmax_f32', 0, nRows, grainFor(n));
}

/** softmax(scale * x) over each row of n values; returns a new array. */
export function softmax(rt: KernelRuntime, x: Float32Array, n: number, scale = 1): Float32Array {
  checkSoftmaxScale(scale);
  const nRows = rowsOf('softmax x', x, n);
  const xo = rt.stage('elementwise.a', x);
  softmaxAt(rt, { x: xo, nRows, n, scale });
  return readF32(rt, xo, x.length);
}

export interface SiluMulAt {
  /** gate: [n] f32, arena byte offset. */
  gate: number;
  /** up: [n] f32 (may be the second half of the same fused buffer). */
  up: number;
  /** out: [n] f32; may equal gate or up. */
  out: number;
  n: number;
}

/** out = silu(gate) * up over n elements. */
export function siluMulAt(rt: KernelRuntime, a: SiluMulAt): void {
  const n = checkInt('siluMul n', a.n, 0);
  checkWords(rt, 'siluMul gate', a.gate, n);
  checkWords(rt, 'siluMul up', a.up, n);
  checkWords(rt, 'siluMul out', a.out, n);
  rt.args().ptr(a.gate).ptr(a.up).ptr(a.out);
  rt.parallelFor('silu_mul_f32', 0, n, ELEMENT_GRAIN);
}

/** silu(gate) * up; returns a new array. */
export function siluMul(rt: KernelRuntime, gate: Float32Array, up: Float32Array): Float32Array {
  if (up.length !== gate.length) throw new ShapeError('siluMul up length (the gate length)', gate.length, up.length);
  const go = rt.stage('elementwise.a', gate);
  const uo = rt.stage('elementwise.b', up);
  siluMulAt(rt, { gate: go, up: uo, out: go, n: gate.length });
  return readF32(rt, go, gate.length);
}

export interface ResidualAddAt {
  /** a, b, y: [n] f32 arena byte offsets; y may equal a or b (the residual stream in place). */
  a: number;
  b: number;
  y: number;
  n: number;
}

/** y = a + b over n elements. */
export function residualAddAt(rt: KernelRuntime, p: ResidualAddAt): void {
  const n = checkInt('residualAdd n', p.n, 0);
  checkWords(rt, 'residualAdd a', p.a, n);
  checkWords(rt, 'residualAdd b', p.b, n);
  checkWords(rt, 'residualAdd y', p.y, n);
  rt.args().ptr(p.a).ptr(p.b).ptr(p.y);
  rt.parallelFor('add_f32', 0, n, ELEMENT_GRAIN);
}

/** a + b; returns a new array. */
export function residualAdd(rt: KernelRuntime, a: Float32Array, b: Float32Array): Float32Array {
  if (b.length !== a.length) throw new ShapeError('residualAdd b length (the a length)', a.length, b.length);
  const ao = rt.stage('elementwise.a', a);
  const bo = rt.stage('elementwise.b', b);
  residualAddAt(rt, { a: ao, b: bo, y: ao, n: a.length });
  return readF32(rt, ao, a.length);
}
