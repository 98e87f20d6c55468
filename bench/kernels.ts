/**
 * `npm run bench -- kernels`: the WASM kernels against same-run limits. For each thread count
 * 1..--threads: the SIMD read-bandwidth and peak-FLOP probes and the empty parallel-for latency
 * (0.4 s each, the header table); then each kernel family, as GB/s, GFLOP/s and fraction of its
 * roofline; then a batched decode step's attention over 8 varlen sequences, one dispatch vs one
 * per sequence.
 * `--only many` (or any of probes, linear, attention, many) runs only those parts; linear and
 * attention bring the probes (their roofline) with them.
 *
 * NOTE: the fractions of the matvec and decode attention rows are not taken against the header
 * probes. The benchmark VM (2 vCPUs) loses 20-40% of its bandwidth and compute to neighbours,
 * varying within minutes, so a fraction against limits probed once per thread count moved 0.39-0.76
 * between runs, and rows of one run disagreed. Each such row is timed in `--rounds` rounds
 * (default 5; bench/stats.ts interleaveRounds): a 0.1 s window of kernel calls, then short probes
 * (read bandwidth over 256 MiB, and the peak SIMD rate for attention), then that round's fraction;
 * the row gives the median call over all rounds, the median fraction and its min-max over rounds.
 * Drift that slows both the kernel and the probe next to it cancels in the ratio; what remains in
 * the spread is noise faster than a round.
 *   matvec:           (weight bytes / call time) / read GB/s                  (target >= 0.75)
 *   decode attention: max(KV bytes / read GB/s, FLOPs / peak GFLOP/s) / call time  (target >= 0.6)
 * Matvec weights that fit in the L3 (32 MiB here) are marked: those rows can beat a read probe that
 * streams from DRAM, which is why the DRAM-bound lm_head shape [151936 x 896] is there too.
 */
import { Arena } from '../src/core/arena.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import type { SuiteOptions } from './main.js';
import { mdTable, sig } from './table.js';
import { LimitProbes, runWasmProbes, type WasmProbes } from './wasm-probes.js';
import { ATTN_SHAPE, MANY_SHAPE, benchAttention, benchAttentionMany, benchLinear, l3Bytes, type AttnRow, type LinearRow, type ManyRow } from './kernels-ops.js';
import type { Spread } from './stats.js';

export interface KernelBenchResult {
  probes: WasmProbes[];
  /** Interleaved rounds per matvec and decode attention row. */
  rounds: number;
  /** Bytes of the L3 (sysfs); null where unknown. */
  l3Bytes: number | null;
  linear: LinearRow[];
  attention: AttnRow[];
  many: ManyRow[];
}

/** Parts of the suite (`--only`). */
export const KERNEL_PARTS = ['probes', 'linear', 'attention', 'many'] as const;

export function benchKernels(opts: SuiteOptions & { ctxs: number[]; rounds: number }): KernelBenchResult {
  const only = new Set<string>(opts.only ?? KERNEL_PARTS);
  for (const p of only) if (!(KERNEL_PARTS as readonly string[]).includes(p)) throw new Error(`--only: unknown kernels part "${p}" (expected ${KERNEL_PARTS.join(', ')})`);
  if (only.has('linear') || only.has('attention')) only.add('probes');
  const arena = new Arena();
  const probes: WasmProbes[] = [];
  const linear: LinearRow[] = [];
  const attention: AttnRow[] = [];
  const many: ManyRow[] = [];
  try {
    for (let t = 1; t <= opts.threads; t++) {
      const rt = new KernelRuntime(arena, { nThreads: t });
      const limits = only.has('probes') ? new LimitProbes(arena, rt) : null;
      try {
        if (limits !== null) {
          const p = runWasmProbes(arena, rt, 0.4, limits);
          probes.push(p);
          opts.log(`  probes, ${t} thread(s), ${p.variant}: read ${sig(p.readGBps)} GB/s, peak ${sig(p.peakGflops)} GFLOP/s, empty dispatch ${sig(p.emptyDispatchMicros)} µs`);
        }
        const ro = { probes: limits!, rounds: opts.rounds };
        if (only.has('linear')) linear.push(...benchLinear(arena, rt, ro, opts.log));
        if (only.has('attention')) attention.push(...benchAttention(arena, rt, opts.ctxs, ro, opts.log));
        if (only.has('many')) many.push(...benchAttentionMany(arena, rt, opts.log));
      } finally {
        limits?.dispose();
        rt.dispose();
      }
    }
  } finally {
    arena.dispose();
  }
  return { probes, rounds: opts.rounds, l3Bytes: l3Bytes(), linear, attention, many };
}

/** The cells of a fraction over rounds: its median, and "min-max". */
function fractionCells(s: Spread): [string, string] {
  return [sig(s.median, 2), `${sig(s.min, 2)}-${sig(s.max, 2)}`];
}

export function kernelTables(r: KernelBenchResult): string {
  const parts: string[] = [];
  if (r.probes.length > 0) {
    parts.push(mdTable(
      ['threads', 'build', 'SIMD read GB/s', 'peak SIMD GFLOP/s', 'empty parallel-for µs'],
      r.probes.map((p) => [p.threads, p.variant, sig(p.readGBps), sig(p.peakGflops), sig(p.emptyDispatchMicros)]),
    ));
  }
  const roundsNote = `; fractions: median over ${r.rounds} interleaved rounds (kernel, then probes), min-max beside`;
  if (r.linear.length > 0) {
    const l3 = r.l3Bytes;
    const title = `matvec and matmul${roundsNote}; weights MB marked (L3) fit in the ${l3 === null ? 'L3 (size unknown)' : `${Number.isInteger(l3 / 2 ** 20) ? l3 / 2 ** 20 : sig(l3 / 2 ** 20)} MiB L3`}`;
    parts.push(`${title}\n\n${mdTable(
      ['threads', 'weights', 'nOut x nIn', 'weights MB', 'matvec ms', 'matvec GB/s', 'read probe GB/s', 'of read probe', 'min-max', 'matmul 64 tok GFLOP/s'],
      r.linear.map((l) => {
        const mb = `${sig(l.weightsBytes / 1e6)}${l.l3Resident === true ? ' (L3)' : ''}`;
        return [l.threads, l.dtype, `${l.nOut}x${l.nIn}`, mb, sig(l.matvecMs), sig(l.matvecGBps), sig(l.readGBps),
          ...fractionCells(l.ofReadProbe), l.matmulGflops === null ? '-' : sig(l.matmulGflops)];
      }),
    )}`);
  }
  if (r.attention.length > 0) {
    const attn = mdTable(
      ['threads', 'kind', 'kv dtype', 'ctx', 'ms', 'KV GB/s', 'GFLOP/s', 'read probe GB/s', 'peak probe GFLOP/s', 'bound', 'of roofline', 'min-max'],
      r.attention.map((a) => {
        const head = [a.threads, a.kind, a.dtype, a.ctx, sig(a.ms), sig(a.kvGBps), sig(a.gflops)];
        if (a.ofRoofline === undefined) return [...head, '-', '-', '-', '-', '-']; // prefill
        return [...head, sig(a.readGBps!), sig(a.peakGflops!), a.bound!, ...fractionCells(a.ofRoofline)];
      }),
    );
    const shape = `attention: nHeads ${ATTN_SHAPE.nHeads}, nKvHeads ${ATTN_SHAPE.nKvHeads}, headDim ${ATTN_SHAPE.headDim}; prefill = 512 causal tokens${roundsNote}`;
    parts.push(`${shape}\n\n${attn}`);
  }
  if ((r.many ?? []).length > 0) {
    const { nSeqs, dtype, blockLen } = MANY_SHAPE;
    const k = (n: number) => (n >= 1024 ? `${n / 1024}k` : `${n}`);
    const title = `decode attention, ${nSeqs} sequences varlen (${dtype} KV in ${blockLen}-token blocks, ` +
      `${ATTN_SHAPE.nHeads}/${ATTN_SHAPE.nKvHeads} heads x ${ATTN_SHAPE.headDim}), one dispatch vs one per sequence`;
    parts.push(`${title}\n\n${mdTable(
      ['threads', 'keys', 'keys per sequence', 'one dispatch ms', 'one per sequence ms', 'speed-up'],
      r.many.map((m) => [m.threads, `${k(m.minKeys)}..${k(m.maxKeys)}`, m.keys.join(' '), sig(m.oneDispatchMs), sig(m.perSequenceMs), `${sig(m.speedup)}x`]),
    )}`);
  }
  return parts.join('\n');
}
