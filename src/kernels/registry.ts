/**
 * The two KernelSets (kernel-set.ts) and the switch between them.
 *
 *   kernelsFor(arena)                    -> WASM kernels (relaxed or plain SIMD), or the reference
 *   KVCACHE_KERNELS=ref                  -> the reference kernels everywhere (load.ts NOTE(2))
 *
 * NOTE(1): The reference set reads and writes the same arena buffers as the WASM set, through
 *   typed-array views at the given offsets, and calls the plain TS kernels of kernels/ref: the
 *   engine above runs unchanged on either, which is how the suite checks the whole engine on
 *   the oracle and how a platform without WebAssembly SIMD still works.
 * NOTE(2): Reference views are taken right before each use (the arena may grow between calls).
 */
import type { Arena } from '../core/arena.js';
import { defaultArena } from '../core/arena.js';
import { rowSizeBytes, type DType } from '../core/dtype.js';
import type { KVView } from '../kv/types.js';
import type { KernelSet, RopePairing } from './kernel-set.js';
import { attention as refAttention, checkPositions, checkView } from './ref/attention.js';
import { residualAdd, siluMul as refSiluMul } from './ref/elementwise.js';
import { embedding as refEmbedding } from './ref/embedding.js';
import { matmul as refMatmul } from './ref/linear.js';
import { rmsnorm as refRmsnorm } from './ref/norm.js';
import { rope as refRope } from './ref/rope.js';
import { argmax as refArgmax } from './ref/sampling.js';
import { resolveAttentionOptions, type AttentionCall, type AttentionOptions } from './types.js';
import { wasmAttentionAt, wasmAttentionManyAt } from './wasm/attention.js';
import { residualAddAt, rmsnormAt, siluMulAt } from './wasm/elementwise.js';
import { embeddingAt } from './wasm/embedding.js';
import { matmulAt } from './wasm/linear.js';
import { bestVariant } from './wasm/load.js';
import { ropeAt } from './wasm/rope.js';
import { KernelRuntime } from './wasm/runtime.js';
import { argmaxAt } from './wasm/sampling.js';

/** f32 view of n values at a byte offset (valid until the arena grows). */
function f32At(arena: Arena, off: number, n: number): Float32Array {
  return arena.f32.subarray(off / 4, off / 4 + n);
}

class RefKernelSet implements KernelSet {
  readonly name = 'ref';
  readonly nThreads = 1;
  constructor(readonly arena: Arena) {}

  matmul(wOff: number, wDtype: DType, nOut: number, nIn: number, xOff: number, nTokens: number, yOff: number): void {
    const w = this.arena.bytes.subarray(wOff, wOff + nOut * rowSizeBytes(wDtype, nIn));
    const y = refMatmul(w, wDtype, nOut, nIn, f32At(this.arena, xOff, nTokens * nIn).slice(), nTokens);
    this.arena.f32.set(y, yOff / 4);
  }
  rmsnorm(xOff: number, wOff: number, yOff: number, nRows: number, dim: number, eps: number): void {
    const y = refRmsnorm(f32At(this.arena, xOff, nRows * dim).slice(), f32At(this.arena, wOff, dim).slice(), eps);
    this.arena.f32.set(y, yOff / 4);
  }
  rope(qOff: number, nqHeads: number, kOff: number, nkHeads: number, nTokens: number, headDim: number, positions: Int32Array, invFreqOff: number, rotaryDim: number, pairing: RopePairing): void {
    const invFreq = f32At(this.arena, invFreqOff, rotaryDim / 2).slice();
    for (const [off, nHeads] of [[qOff, nqHeads], [kOff, nkHeads]] as const) {
      const y = refRope(f32At(this.arena, off, nTokens * nHeads * headDim).slice(), positions, { nHeads, headDim, rotaryDim, mode: pairing, invFreq });
      this.arena.f32.set(y, off / 4);
    }
  }
  attention(qOff: number, outOff: number, lseOff: number, positions: ArrayLike<number>, nHeads: number, view: KVView, opts?: AttentionOptions): void {
    const q = f32At(this.arena, qOff, positions.length * nHeads * view.headDim).slice();
    const { out, lse } = refAttention(q, positions, nHeads, { ...view, bytes: this.arena.bytes }, opts);
    this.arena.f32.set(out, outOff / 4);
    this.arena.f32.set(lse, lseOff / 4);
  }
  attentionMany(calls: readonly AttentionCall[], nHeads: number, opts?: AttentionOptions): void {
    // Every call checked first (errors name the call), as the WASM set does, then one by one.
    resolveAttentionOptions(opts, 1);
    calls.forEach((c, i) => {
      checkView({ ...c.view, bytes: this.arena.bytes }, nHeads, `calls[${i}].view`);
      resolveAttentionOptions(opts, c.view.headDim);
      checkPositions(c.positions, `calls[${i}].positions`);
    });
    for (const c of calls) this.attention(c.qOffset, c.outOffset, c.lseOffset, c.positions, nHeads, c.view, opts);
  }
  siluMul(gateOff: number, upOff: number, outOff: number, n: number): void {
    this.arena.f32.set(refSiluMul(f32At(this.arena, gateOff, n).slice(), f32At(this.arena, upOff, n).slice()), outOff / 4);
  }
  add(aOff: number, bOff: number, outOff: number, n: number): void {
    this.arena.f32.set(residualAdd(f32At(this.arena, aOff, n).slice(), f32At(this.arena, bOff, n).slice()), outOff / 4);
  }
  addBias(yOff: number, bOff: number, nRows: number, n: number): void {
    const b = f32At(this.arena, bOff, n).slice();
    for (let r = 0; r < nRows; r++) {
      const at = yOff + r * n * 4;
      this.arena.f32.set(residualAdd(f32At(this.arena, at, n).slice(), b), at / 4);
    }
  }
  embedding(tableOff: number, dtype: DType, vocab: number, dim: number, ids: Int32Array, outOff: number): void {
    const table = this.arena.bytes.subarray(tableOff, tableOff + vocab * rowSizeBytes(dtype, dim));
    this.arena.f32.set(refEmbedding(table, dtype, dim, ids), outOff / 4);
  }
  argmax(xOff: number, n: number): number {
    return refArgmax(f32At(this.arena, xOff, n));
  }
}

class WasmKernelSet implements KernelSet {
  readonly name: string;
  readonly arena: Arena;
  private readonly posScratch = 'kernelset.positions';
  private readonly idsScratch = 'kernelset.ids';
  constructor(readonly rt: KernelRuntime) {
    this.name = rt.variant;
    this.arena = rt.arena;
  }
  get nThreads(): number {
    return this.rt.nThreads;
  }
  matmul(wOff: number, wDtype: DType, nOut: number, nIn: number, xOff: number, nTokens: number, yOff: number): void {
    matmulAt(this.rt, wOff, wDtype, nOut, nIn, xOff, nTokens, yOff);
  }
  rmsnorm(xOff: number, wOff: number, yOff: number, nRows: number, dim: number, eps: number): void {
    rmsnormAt(this.rt, { x: xOff, y: yOff, weight: wOff, nRows, dim, eps });
  }
  rope(qOff: number, nqHeads: number, kOff: number, nkHeads: number, nTokens: number, headDim: number, positions: Int32Array, invFreqOff: number, rotaryDim: number, pairing: RopePairing): void {
    const pos = this.rt.stage(this.posScratch, positions);
    ropeAt(this.rt, { q: { x: qOff, nHeads: nqHeads }, k: { x: kOff, nHeads: nkHeads }, nTokens, headDim, rotaryDim, mode: pairing, positions: pos, invFreq: invFreqOff });
  }
  attention(qOff: number, outOff: number, lseOff: number, positions: Int32Array, nHeads: number, view: KVView, opts?: AttentionOptions): void {
    wasmAttentionAt(this.rt, qOff, outOff, lseOff, positions, nHeads, view, opts);
  }
  attentionMany(calls: readonly AttentionCall[], nHeads: number, opts?: AttentionOptions): void {
    wasmAttentionManyAt(this.rt, calls, nHeads, opts);
  }
  siluMul(gateOff: number, upOff: number, outOff: number, n: number): void {
    siluMulAt(this.rt, { gate: gateOff, up: upOff, out: outOff, n });
  }
  add(aOff: number, bOff: number, outOff: number, n: number): void {
    residualAddAt(this.rt, { a: aOff, b: bOff, y: outOff, n });
  }
  addBias(yOff: number, bOff: number, nRows: number, n: number): void {
    for (let r = 0; r < nRows; r++) residualAddAt(this.rt, { a: yOff + r * n * 4, b: bOff, y: yOff + r * n * 4, n });
  }
  embedding(tableOff: number, dtype: DType, vocab: number, dim: number, ids: Int32Array, outOff: number): void {
    const io = this.rt.stage(this.idsScratch, ids);
    embeddingAt(this.rt, { table: tableOff, dtype, vocab, dim, ids: io, nTokens: ids.length, out: outOff });
  }
  argmax(xOff: number, n: number): number {
    return argmaxAt(this.rt, xOff, n);
  }
}

/** The reference kernels over `arena` (NOTE(1)). */
export function refKernels(arena: Arena = defaultArena()): KernelSet {
  return new RefKernelSet(arena);
}

/** The WASM kernels of a runtime. */
export function wasmKernels(rt: KernelRuntime): KernelSet {
  return new WasmKernelSet(rt);
}

/** The engine's kernels for `arena`: WASM unless KVCACHE_KERNELS=ref or SIMD is missing. */
export function kernelsFor(arena: Arena = defaultArena(), nThreads?: number): KernelSet {
  if (bestVariant() === 'ref') return refKernels(arena);
  return wasmKernels(KernelRuntime.for(arena, nThreads === undefined ? {} : { nThreads }));
}
