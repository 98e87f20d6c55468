/**
 * The kernel families of `npm run bench -- kernels`: matvec / matmul per weight dtype, decode
 * and prefill attention per KV dtype, each timed on one runtime (one thread count).
 */
import type { Arena } from '../src/core/arena.js';
import { DTYPE_NAMES, encodeArray, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { mulberry32, normalArray } from '../src/core/rng.js';
import { wasmAttention } from '../src/kernels/wasm/attention.js';
import { matmulAt, matvecAt, uploadWeights } from '../src/kernels/wasm/linear.js';
import type { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { medianTime as timeIt } from './probes.js';

export const ATTN_SHAPE = { nHeads: 14, nKvHeads: 2, headDim: 64 } as const;
export const MATVEC_SHAPES: readonly (readonly [number, number])[] = [[4096, 4096], [4864, 896]]; // [nOut, nIn]
const MATMUL_TOKENS = 64;
const PREFILL_TOKENS = 512;

export interface LinearRow { threads: number; dtype: DType; nOut: number; nIn: number; matvecMs: number; matvecGBps: number; matmulGflops: number }
export interface AttnRow { threads: number; kind: 'decode' | 'prefill'; dtype: DType; ctx: number; ms: number; kvGBps: number; gflops: number }

/** matvec GB/s of weight bytes and matmul (64 tokens) GFLOP/s, per dtype and shape. */
export function benchLinear(arena: Arena, rt: KernelRuntime, log: (s: string) => void): LinearRow[] {
  const rows: LinearRow[] = [];
  const rng = mulberry32(11);
  for (const [nOut, nIn] of MATVEC_SHAPES) {
    const data = normalArray(rng, nOut * nIn, 0.05); // [nOut, nIn]
    const x = arena.alloc(MATMUL_TOKENS * nIn * 4); // [64, nIn]
    const y = arena.alloc(MATMUL_TOKENS * nOut * 4); // [64, nOut]
    arena.f32.set(normalArray(rng, MATMUL_TOKENS * nIn), x / 4);
    for (const dtype of DTYPE_NAMES) {
      const w = uploadWeights(arena, encodeArray(dtype, data));
      const bytes = nOut * rowSizeBytes(dtype, nIn);
      matvecAt(rt, w, dtype, nOut, nIn, x, y);
      const mv = timeIt(() => matvecAt(rt, w, dtype, nOut, nIn, x, y), 0.3);
      const mm = timeIt(() => matmulAt(rt, w, dtype, nOut, nIn, x, MATMUL_TOKENS, y), 0.3);
      const row = { threads: rt.nThreads, dtype, nOut, nIn, matvecMs: mv * 1e3, matvecGBps: bytes / mv / 1e9, matmulGflops: (2 * nOut * nIn * MATMUL_TOKENS) / mm / 1e9 };
      rows.push(row);
      log(`  ${rt.nThreads}t ${dtype} ${nOut}x${nIn}: matvec ${row.matvecGBps.toFixed(2)} GB/s, matmul ${row.matmulGflops.toFixed(1)} GFLOP/s`);
      arena.free(w);
    }
    arena.free(x);
    arena.free(y);
  }
  return rows;
}

/** Decode attention at each context and prefill of 512 tokens, per KV dtype. */
export function benchAttention(arena: Arena, rt: KernelRuntime, ctxs: readonly number[], log: (s: string) => void): AttnRow[] {
  const { nHeads, nKvHeads, headDim } = ATTN_SHAPE;
  const rows: AttnRow[] = [];
  const rng = mulberry32(5);
  const maxCtx = Math.max(...ctxs, PREFILL_TOKENS);
  const kv = normalArray(rng, maxCtx * nKvHeads * headDim); // [maxCtx, nKvHeads, headDim]
  const q1 = normalArray(rng, nHeads * headDim); // [1, nHeads, headDim]
  const qp = normalArray(rng, PREFILL_TOKENS * nHeads * headDim); // [512, nHeads, headDim]
  const prefillPos = Int32Array.from({ length: PREFILL_TOKENS }, (_, i) => i);
  for (const dtype of DTYPE_NAMES) {
    const cache = new StaticCache({ nLayers: 1, nHeads, nKvHeads, headDim, maxSeqLen: maxCtx, dtype, layout: 'bshd', arena });
    const rowBytes = 2 * nKvHeads * rowSizeBytes(dtype, headDim); // K + V of one token
    let filled = 0;
    for (const ctx of [...ctxs].sort((a, b) => a - b)) {
      cache.appendRow(0, 0, kv.subarray(filled * nKvHeads * headDim, ctx * nKvHeads * headDim), kv.subarray(filled * nKvHeads * headDim, ctx * nKvHeads * headDim));
      filled = ctx;
      const view = cache.view(0);
      wasmAttention(rt, q1, [ctx - 1], nHeads, view);
      const sec = timeIt(() => wasmAttention(rt, q1, [ctx - 1], nHeads, view), 0.3);
      const row: AttnRow = { threads: rt.nThreads, kind: 'decode', dtype, ctx, ms: sec * 1e3, kvGBps: (ctx * rowBytes) / sec / 1e9, gflops: (4 * headDim * nHeads * ctx) / sec / 1e9 };
      rows.push(row);
      log(`  ${rt.nThreads}t decode ${dtype} ctx ${ctx}: ${row.ms.toFixed(3)} ms, ${row.kvGBps.toFixed(2)} GB/s, ${row.gflops.toFixed(1)} GFLOP/s`);
    }
    cache.crop(PREFILL_TOKENS);
    const view = cache.view(0);
    const sec = timeIt(() => wasmAttention(rt, qp, prefillPos, nHeads, view), 0.3);
    const pairs = (PREFILL_TOKENS * (PREFILL_TOKENS + 1)) / 2;
    rows.push({ threads: rt.nThreads, kind: 'prefill', dtype, ctx: PREFILL_TOKENS, ms: sec * 1e3, kvGBps: (PREFILL_TOKENS * rowBytes) / sec / 1e9, gflops: (4 * headDim * nHeads * pairs) / sec / 1e9 });
    log(`  ${rt.nThreads}t prefill ${dtype} ${PREFILL_TOKENS} tokens: ${(sec * 1e3).toFixed(2)} ms`);
    cache.dispose();
  }
  return rows;
}
