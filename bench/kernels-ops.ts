/**
 * The kernel families of `npm run bench -- kernels`: matvec / matmul per weight dtype, decode
 * and prefill attention per KV dtype, and a batched decode step's attention over many varlen
 * sequences (one dispatch vs one per sequence), each timed on one runtime (one thread count).
 *
 * NOTE: decode attention and matvec rows are timed in interleaved rounds (bench/stats.ts
 * interleaveRounds): each of `rounds` rounds times the kernel for ROUND_SECONDS (median call),
 * then probes the read bandwidth (256 MiB, from DRAM) and, for attention, the peak SIMD rate, and
 * scores the round against those limits; a row reports the median call over all rounds and the
 * median fraction with its min-max over rounds. The benchmark VM's bandwidth and compute drift
 * 20-40% within minutes (neighbours), which limits probed once per thread count cannot follow.
 *   matvec fraction    = (weight bytes / call time) / read probe GB/s
 *   attention fraction = max(KV bytes / read probe, FLOPs / peak probe) / call time
 * Prefill and matmul rows are timed once (medianTime, 0.3 s), with no fraction.
 */
import { readFileSync } from 'node:fs';
import type { Arena } from '../src/core/arena.js';
import { DTYPE_NAMES, encodeArray, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { mulberry32, normalArray, shuffle } from '../src/core/rng.js';
import type { AttentionCall } from '../src/kernels/types.js';
import { wasmAttention, wasmAttentionAt, wasmAttentionManyAt } from '../src/kernels/wasm/attention.js';
import { matmulAt, matvecAt } from '../src/kernels/wasm/linear.js';
import type { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { StaticCache } from '../src/kv/static-cache.js';
import type { KVView } from '../src/kv/types.js';
import { medianTime as timeIt, timeSamples } from './probes.js';
import { interleaveRounds, median, parseCacheSize, rooflineSeconds, type Spread } from './stats.js';
import type { LimitProbes } from './wasm-probes.js';

export const ATTN_SHAPE = { nHeads: 14, nKvHeads: 2, headDim: 64 } as const;
/** [nOut, nIn] of the matvec rows named by the issue; (partly) resident in a 32 MiB L3. */
export const MATVEC_SHAPES: readonly (readonly [number, number])[] = [[4096, 4096], [4864, 896]];
/**
 * A DRAM-bound matvec: the Qwen2.5-0.5B lm_head, [151936, 896] (f32 545 MB, q4_0 77 MB), in
 * LM_HEAD_DTYPES only; no matmul row (17 GFLOP per 64-token call, and a model only ever needs the
 * last token's logits).
 */
export const LM_HEAD_SHAPE = [151936, 896] as const;
export const LM_HEAD_DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
/** Rows of random weights encoded once and repeated down the lm_head (encoding 136M values in JS takes seconds per dtype). */
const LM_HEAD_TILE_ROWS = 4096;
const MATMUL_TOKENS = 64;
const PREFILL_TOKENS = 512;
/** Seconds of kernel calls per round, and of each probe after it. */
const ROUND_SECONDS = 0.1;
const ROUND_READ_SECONDS = 0.1;
const ROUND_PEAK_SECONDS = 0.05;

/** Options of the interleaved rows. */
export interface RoundOptions {
  /** Probes kept allocated for the runtime being timed. */
  probes: LimitProbes;
  /** Rounds per row (kernel window, then probes). */
  rounds: number;
}

export interface LinearRow {
  threads: number; dtype: DType; nOut: number; nIn: number;
  /** Median matvec call over all rounds. */
  matvecMs: number; matvecGBps: number;
  /** null for the lm_head shape (not timed). */
  matmulGflops: number | null;
  weightsBytes: number;
  /** Whether the weights fit in the last-level cache (l3Bytes); null when its size is unknown. */
  l3Resident: boolean | null;
  rounds: number;
  /** Median of the rounds' read probes, GB/s. */
  readGBps: number;
  /** Each round's matvec GB/s over its read probe, and their median / min / max. */
  roundFractions: number[];
  ofReadProbe: Spread;
}
export interface AttnRow {
  threads: number; kind: 'decode' | 'prefill'; dtype: DType; ctx: number;
  /** Median call (decode: over all rounds). */
  ms: number; kvGBps: number; gflops: number;
  /** Decode rows only: the interleaved rounds. */
  rounds?: number;
  /** Medians of the rounds' probes. */
  readGBps?: number;
  peakGflops?: number;
  /** Which term of the roofline is larger at the median probes. */
  bound?: 'memory' | 'compute';
  /** Each round's roofline time / call time, and their median / min / max. */
  roundFractions?: number[];
  ofRoofline?: Spread;
}

/** Bytes of the last-level (L3) cache, from Linux sysfs; null where it cannot be read. */
export function l3Bytes(): number | null {
  try {
    return parseCacheSize(readFileSync('/sys/devices/system/cpu/cpu0/cache/index3/size', 'utf8'));
  } catch {
    return null;
  }
}

/**
 * matvec GB/s of weight bytes (interleaved rounds against the read probe) and matmul (64 tokens)
 * GFLOP/s, per dtype and shape; then the lm_head shape in LM_HEAD_DTYPES.
 */
export function benchLinear(arena: Arena, rt: KernelRuntime, ro: RoundOptions, log: (s: string) => void): LinearRow[] {
  const rows: LinearRow[] = [];
  const l3 = l3Bytes();
  const rng = mulberry32(11);
  const shapes: { nOut: number; nIn: number; dtypes: readonly DType[]; matmul: boolean }[] = [
    ...MATVEC_SHAPES.map(([nOut, nIn]) => ({ nOut, nIn, dtypes: DTYPE_NAMES, matmul: true })),
    { nOut: LM_HEAD_SHAPE[0], nIn: LM_HEAD_SHAPE[1], dtypes: LM_HEAD_DTYPES, matmul: false },
  ];
  for (const { nOut, nIn, dtypes, matmul } of shapes) {
    const tileRows = matmul ? nOut : Math.min(nOut, LM_HEAD_TILE_ROWS);
    const data = normalArray(rng, tileRows * nIn, 0.05); // [tileRows, nIn]
    const tokens = matmul ? MATMUL_TOKENS : 1;
    const x = arena.alloc(tokens * nIn * 4); // [tokens, nIn]
    const y = arena.alloc(tokens * nOut * 4); // [tokens, nOut]
    arena.f32.set(normalArray(rng, tokens * nIn), x / 4);
    for (const dtype of dtypes) {
      const tile = encodeArray(dtype, data);
      const bytes = nOut * rowSizeBytes(dtype, nIn);
      const w = arena.alloc(bytes);
      for (let off = 0; off < bytes; off += tile.byteLength) arena.bytes.set(tile.subarray(0, Math.min(tile.byteLength, bytes - off)), w + off);
      const call = () => matvecAt(rt, w, dtype, nOut, nIn, x, y);
      call();
      const r = interleaveRounds(
        ro.rounds,
        () => timeSamples(call, ROUND_SECONDS, 2),
        () => ro.probes.readGBps(ROUND_READ_SECONDS, true),
        (sec, read) => bytes / sec / 1e9 / read,
      );
      const mm = matmul ? timeIt(() => matmulAt(rt, w, dtype, nOut, nIn, x, MATMUL_TOKENS, y), 0.3) : null;
      const row: LinearRow = {
        threads: rt.nThreads, dtype, nOut, nIn, matvecMs: r.seconds * 1e3, matvecGBps: bytes / r.seconds / 1e9,
        matmulGflops: mm === null ? null : (2 * nOut * nIn * MATMUL_TOKENS) / mm / 1e9,
        weightsBytes: bytes, l3Resident: l3 === null ? null : bytes <= l3,
        rounds: ro.rounds, readGBps: median(r.limits), roundFractions: r.fractions, ofReadProbe: r.fraction,
      };
      rows.push(row);
      log(`  ${rt.nThreads}t ${dtype} ${nOut}x${nIn} (${(bytes / 1e6).toFixed(1)} MB): matvec ${row.matvecGBps.toFixed(2)} GB/s, ` +
        `${r.fraction.median.toFixed(2)} of read probe (${r.fraction.min.toFixed(2)}-${r.fraction.max.toFixed(2)}, probe ${row.readGBps.toFixed(1)} GB/s)` +
        (row.matmulGflops === null ? '' : `, matmul ${row.matmulGflops.toFixed(1)} GFLOP/s`));
      arena.free(w);
    }
    arena.free(x);
    arena.free(y);
  }
  return rows;
}

/**
 * Decode attention at each context (interleaved rounds against the read and peak probes) and
 * prefill of 512 tokens, per KV dtype.
 */
export function benchAttention(arena: Arena, rt: KernelRuntime, ctxs: readonly number[], ro: RoundOptions, log: (s: string) => void): AttnRow[] {
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
      const call = () => wasmAttention(rt, q1, [ctx - 1], nHeads, view);
      call();
      const bytes = ctx * rowBytes;
      const flops = 4 * headDim * nHeads * ctx; // scores and the weighted V sum
      const r = interleaveRounds(
        ro.rounds,
        () => timeSamples(call, ROUND_SECONDS, 2),
        () => ({ read: ro.probes.readGBps(ROUND_READ_SECONDS, true), peak: ro.probes.peakGflops(ROUND_PEAK_SECONDS, true) }),
        (sec, l) => rooflineSeconds(bytes, flops, l.read, l.peak) / sec,
      );
      const readGBps = median(r.limits.map((l) => l.read));
      const peakGflops = median(r.limits.map((l) => l.peak));
      const row: AttnRow = {
        threads: rt.nThreads, kind: 'decode', dtype, ctx, ms: r.seconds * 1e3, kvGBps: bytes / r.seconds / 1e9, gflops: flops / r.seconds / 1e9,
        rounds: ro.rounds, readGBps, peakGflops, bound: bytes / readGBps >= flops / peakGflops ? 'memory' : 'compute',
        roundFractions: r.fractions, ofRoofline: r.fraction,
      };
      rows.push(row);
      log(`  ${rt.nThreads}t decode ${dtype} ctx ${ctx}: ${row.ms.toFixed(3)} ms, ${row.kvGBps.toFixed(2)} GB/s, ${row.gflops.toFixed(1)} GFLOP/s, ` +
        `${r.fraction.median.toFixed(2)} of roofline (${r.fraction.min.toFixed(2)}-${r.fraction.max.toFixed(2)}; probes ${readGBps.toFixed(1)} GB/s, ${peakGflops.toFixed(1)} GFLOP/s)`);
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
