/**
 * The kernel families of `npm run bench -- kernels`: matvec / matmul per weight dtype, decode
 * and prefill attention per KV dtype, and a batched decode step's attention over many varlen
 * sequences (one dispatch vs one per sequence), each timed on one runtime (one thread count).
 */
import type { Arena } from '../src/core/arena.js';
import { DTYPE_NAMES, encodeArray, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { mulberry32, normalArray, shuffle } from '../src/core/rng.js';
import type { AttentionCall } from '../src/kernels/types.js';
import { wasmAttention, wasmAttentionAt, wasmAttentionManyAt } from '../src/kernels/wasm/attention.js';
import { matmulAt, matvecAt, uploadWeights } from '../src/kernels/wasm/linear.js';
import type { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { StaticCache } from '../src/kv/static-cache.js';
import type { KVView } from '../src/kv/types.js';
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

/**
 * The many-sequence decode rows: 8 sequences (f16 KV in 32-token blocks, ATTN_SHAPE heads) of
 * 1k..8k keys (the headline row), and of 64..512 keys (where dispatch overhead matters most).
 */
export const MANY_SHAPE = { nSeqs: 8, dtype: 'f16', blockLen: 32, ranges: [[1024, 8192], [64, 512]] } as const;
export interface ManyRow { threads: number; minKeys: number; maxKeys: number; keys: number[]; oneDispatchMs: number; perSequenceMs: number; speedup: number }

/**
 * One decode step's attention for MANY_SHAPE.nSeqs sequences of different lengths over a paged
 * pool (one segment per 32-token block, blocks scattered): wasmAttentionManyAt (one dispatch)
 * against wasmAttentionAt per sequence. The two are timed alternately (medians), so a busy
 * machine slows both alike.
 */
export function benchAttentionMany(arena: Arena, rt: KernelRuntime, log: (s: string) => void, seconds = 1): ManyRow[] {
  return MANY_SHAPE.ranges.map(([minKeys, maxKeys]) => benchMany(arena, rt, log, minKeys, maxKeys, seconds));
}

function benchMany(arena: Arena, rt: KernelRuntime, log: (s: string) => void, minKeys: number, maxKeys: number, seconds: number): ManyRow {
  const { nHeads, nKvHeads, headDim } = ATTN_SHAPE;
  const { nSeqs, dtype, blockLen } = MANY_SHAPE;
  const rng = mulberry32(7);
  const keys = shuffle(rng, Array.from({ length: nSeqs }, (_, i) => Math.round(minKeys + (i * (maxKeys - minKeys)) / (nSeqs - 1))));
  const row = rowSizeBytes(dtype, headDim);
  const blockBytes = nKvHeads * blockLen * row; // head-major in a block (kv/paged/block-storage.ts)
  const nBlocks = keys.reduce((a, n) => a + Math.ceil(n / blockLen), 0);
  const kBase = arena.alloc(nBlocks * blockBytes);
  const vBase = arena.alloc(nBlocks * blockBytes);
  const qDim = nHeads * headDim;
  const q = arena.alloc(nSeqs * qDim * 4);
  const out = arena.alloc(nSeqs * qDim * 4);
  const lse = arena.alloc(nSeqs * nHeads * 4);
  try {
    arena.bytes.set(encodeArray(dtype, normalArray(rng, (nBlocks * blockBytes) / 2)), kBase);
    arena.bytes.set(encodeArray(dtype, normalArray(rng, (nBlocks * blockBytes) / 2)), vBase);
    arena.f32.set(normalArray(rng, nSeqs * qDim), q >> 2);
    const blocks = shuffle(rng, Array.from({ length: nBlocks }, (_, i) => i));
    const calls: AttentionCall[] = keys.map((n, s) => {
      const segments = [];
      for (let t = 0; t < n; t += blockLen) {
        const b = blocks.pop()!;
        segments.push({ kOffsetBytes: kBase + b * blockBytes, vOffsetBytes: vBase + b * blockBytes, nTokens: Math.min(blockLen, n - t), pos0: t });
      }
      const view: KVView = {
        bytes: arena.bytes, kDtype: dtype, vDtype: dtype, nKvHeads, headDim, segments, nTokens: n,
        kTokenStrideBytes: row, kHeadStrideBytes: blockLen * row, vTokenStrideBytes: row, vHeadStrideBytes: blockLen * row,
      };
      return { qOffset: q + s * qDim * 4, outOffset: out + s * qDim * 4, lseOffset: lse + s * nHeads * 4, positions: [n - 1], view };
    });
    const many = () => wasmAttentionManyAt(rt, calls, nHeads);
    const each = () => {
      for (const c of calls) wasmAttentionAt(rt, c.qOffset, c.outOffset, c.lseOffset, c.positions, nHeads, c.view);
    };
    for (let i = 0; i < 3; i++) {
      many();
      each();
    }
    const tMany: number[] = [];
    const tEach: number[] = [];
    const t0 = performance.now();
    while (tMany.length < 10 || performance.now() - t0 < seconds * 1000) {
      let a = performance.now();
      many();
      tMany.push(performance.now() - a);
      a = performance.now();
      each();
      tEach.push(performance.now() - a);
    }
    const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1]!;
    const r: ManyRow = { threads: rt.nThreads, minKeys, maxKeys, keys, oneDispatchMs: median(tMany), perSequenceMs: median(tEach), speedup: median(tEach) / median(tMany) };
    log(`  ${rt.nThreads}t decode attention, ${nSeqs} sequences (${keys.join(', ')} keys, ${dtype}): one dispatch ${r.oneDispatchMs.toFixed(3)} ms, one per sequence ${r.perSequenceMs.toFixed(3)} ms, x${r.speedup.toFixed(2)}`);
    return r;
  } finally {
    for (const o of [kBase, vBase, q, out, lse]) arena.free(o);
  }
}
