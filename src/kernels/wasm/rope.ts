/**
 * Binding of the RoPE kernel (assembly/rope.ts), twin of ref/rope.ts.
 *
 *   ropeAt(rt, { q: { x, nHeads }, k: { x, nHeads }, nTokens, headDim, positions, theta | invFreq })
 *
 * rotates q and k in place in ONE dispatch: the cos/sin of a token are computed once (f64 angle,
 * f64 sincos, see ref/rope.ts NOTE(2)) and applied to every head of both tensors.
 *
 * NOTE(1): The default table (theta^(-2i/rotaryDim)) is built once per (runtime, theta, rotaryDim)
 *   and kept in a scratch buffer; a model with llama3 / linear scaling stages its own table once
 *   and passes its offset as `invFreq`.
 * NOTE(2): Split by tokens in shares worth ~16K element-equivalents (a sincos costs ~20 multiply-
 *   adds); one token is independent of the others, so results do not depend on the thread count.
 */
import { ShapeError, checkInt } from '../../core/errors.js';
import { checkPositions, checkRopeMode, checkRotaryDim, checkTheta, resolveRope, ropeInvFreq, type RopeMode, type RopeOptions } from '../ref/rope.js';
import { checkRows, checkWords, grainFor, readF32 } from './arena-span.js';
import type { KernelRuntime } from './runtime.js';

export interface RopeTensor {
  /** [nTokens, tokenStride] f32 arena byte offset; each token row starts with nHeads * headDim values. */
  x: number;
  nHeads: number;
  /** Elements between tokens (>= nHeads * headDim; default that), e.g. q inside a fused QKV row. */
  tokenStride?: number;
}

export interface RopeAt {
  /** The first tensor (q). */
  q: RopeTensor;
  /** An optional second tensor (k) rotated with the same cos/sin. */
  k?: RopeTensor;
  nTokens: number;
  headDim: number;
  /** Default headDim. */
  rotaryDim?: number;
  /** Default 'neox'. */
  mode?: RopeMode;
  /** int32 [nTokens] arena byte offset (any values, e.g. shifted positions). */
  positions: number;
  /** f32 [rotaryDim / 2] arena byte offset of the inverse frequencies; default: the table of `theta`. */
  invFreq?: number;
  /** Base of the default table (default 10000); ignored when invFreq is given. */
  theta?: number;
}

interface ThetaTable {
  theta: number;
  rotaryDim: number;
  offset: number;
}
const thetaTables = new WeakMap<KernelRuntime, ThetaTable>();

/** The arena offset of the default inverse-frequency table (NOTE(1)). */
function thetaTable(rt: KernelRuntime, theta: number, rotaryDim: number): number {
  const cur = thetaTables.get(rt);
  if (cur && cur.theta === theta && cur.rotaryDim === rotaryDim) return cur.offset;
  const offset = rt.stage('rope.invFreqTheta', ropeInvFreq(theta, rotaryDim));
  thetaTables.set(rt, { theta, rotaryDim, offset });
  return offset;
}

function checkTensor(rt: KernelRuntime, what: string, t: RopeTensor, nTokens: number, headDim: number): { nHeads: number; stride: number } {
  const nHeads = checkInt(`${what} nHeads`, t.nHeads, 1);
  const stride = checkRows(rt, what, t.x, nTokens, nHeads * headDim, t.tokenStride ?? nHeads * headDim);
  return { nHeads, stride };
}

/** Rotate q (and k) in place for tokens [0, nTokens). */
export function ropeAt(rt: KernelRuntime, a: RopeAt): void {
  const nTokens = checkInt('rope nTokens', a.nTokens, 0);
  const headDim = checkInt('rope headDim', a.headDim, 2);
  const rotaryDim = checkRotaryDim(a.rotaryDim ?? headDim, headDim);
  const mode = checkRopeMode(a.mode ?? 'neox');
  const q = checkTensor(rt, 'rope q', a.q, nTokens, headDim);
  const k = a.k ? checkTensor(rt, 'rope k', a.k, nTokens, headDim) : { nHeads: 0, stride: 0 };
  checkWords(rt, 'rope positions', a.positions, nTokens);
  const invFreq = a.invFreq ?? thetaTable(rt, checkTheta(a.theta ?? 10000), rotaryDim);
  checkWords(rt, 'rope invFreq', invFreq, rotaryDim / 2);
  rt.args()
    .ptr(a.q.x).i32(q.nHeads).i32(q.stride)
    .ptr(a.k?.x ?? 0).i32(k.nHeads).i32(k.stride)
    .i32(headDim).i32(rotaryDim).ptr(a.positions).ptr(invFreq).i32(mode === 'interleaved' ? 1 : 0);
  const perToken = (q.nHeads + k.nHeads) * rotaryDim + 20 * rotaryDim;
  rt.parallelFor('rope_f32', 0, nTokens, grainFor(perToken, 16384));
}

/** RoPE of x [nTokens, nHeads, headDim] at the given positions; returns a new array. */
export function rope(rt: KernelRuntime, x: Float32Array, positions: ArrayLike<number>, opts: RopeOptions): Float32Array {
  const r = resolveRope(opts);
  const tokenLen = r.nHeads * r.headDim;
  if (x.length % tokenLen !== 0) throw new ShapeError('rope x length (a multiple of nHeads * headDim)', `a multiple of ${tokenLen}`, x.length);
  const nTokens = x.length / tokenLen;
  checkPositions(positions, nTokens);
  const xo = rt.stage('rope.x', x);
  const po = rt.stage('rope.positions', Int32Array.from(positions));
  const fo = rt.stage('rope.invFreq', r.invFreq);
  ropeAt(rt, { q: { x: xo, nHeads: r.nHeads }, nTokens, headDim: r.headDim, rotaryDim: r.rotaryDim, mode: r.mode, positions: po, invFreq: fo });
  return readF32(rt, xo, x.length);
}
