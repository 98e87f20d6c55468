/**
 * `npm run bench -- kernels`: the WASM kernels against same-run limits. For each thread count
 * 1..--threads: the SIMD read-bandwidth and peak-FLOP probes and the empty parallel-for latency;
 * then each kernel family, as GB/s, GFLOP/s and fraction of its roofline; then a batched decode
 * step's attention over 8 varlen sequences, one dispatch vs one per sequence.
 * `--only many` (or any of probes, linear, attention, many) runs only those parts; linear and
 * attention bring the probes (their roofline) with them.
 */
import { Arena } from '../src/core/arena.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import type { SuiteOptions } from './main.js';
import { mdTable, sig } from './table.js';
import { runWasmProbes, type WasmProbes } from './wasm-probes.js';
import { ATTN_SHAPE, MANY_SHAPE, benchAttention, benchAttentionMany, benchLinear, type AttnRow, type LinearRow, type ManyRow } from './kernels-ops.js';

export interface KernelBenchResult {
  probes: WasmProbes[];
  linear: LinearRow[];
  attention: AttnRow[];
  many: ManyRow[];
}

/** Parts of the suite (`--only`). */
export const KERNEL_PARTS = ['probes', 'linear', 'attention', 'many'] as const;

export function benchKernels(opts: SuiteOptions & { ctxs: number[] }): KernelBenchResult {
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
      try {
        if (only.has('probes')) {
          const p = runWasmProbes(arena, rt);
          probes.push(p);
          opts.log(`  probes, ${t} thread(s), ${p.variant}: read ${sig(p.readGBps)} GB/s, peak ${sig(p.peakGflops)} GFLOP/s, empty dispatch ${sig(p.emptyDispatchMicros)} µs`);
        }
        if (only.has('linear')) linear.push(...benchLinear(arena, rt, opts.log));
        if (only.has('attention')) attention.push(...benchAttention(arena, rt, opts.ctxs, opts.log));
        if (only.has('many')) many.push(...benchAttentionMany(arena, rt, opts.log));
      } finally {
        rt.dispose();
      }
    }
  } finally {
    arena.dispose();
  }
  return { probes, linear, attention, many };
}

/** Roofline time of an attention row: the larger of its memory time and its compute time. */
function roofline(r: AttnRow, p: WasmProbes): number {
  const bytes = (r.kvGBps * r.ms) / 1e3; // GB
  const flops = (r.gflops * r.ms) / 1e3; // GFLOP
  return Math.max(bytes / p.readGBps, flops / p.peakGflops) * 1e3; // ms
}

export function kernelTables(r: KernelBenchResult): string {
  const probe = (t: number) => r.probes.find((p) => p.threads === t)!;
  const parts: string[] = [];
  if (r.probes.length > 0) {
    parts.push(mdTable(
      ['threads', 'build', 'SIMD read GB/s', 'peak SIMD GFLOP/s', 'empty parallel-for µs'],
      r.probes.map((p) => [p.threads, p.variant, sig(p.readGBps), sig(p.peakGflops), sig(p.emptyDispatchMicros)]),
    ));
  }
  if (r.linear.length > 0) {
    parts.push(mdTable(
      ['threads', 'weights', 'nOut x nIn', 'matvec ms', 'matvec GB/s', 'of read probe', 'matmul 64 tok GFLOP/s'],
      r.linear.map((l) => [l.threads, l.dtype, `${l.nOut}x${l.nIn}`, sig(l.matvecMs), sig(l.matvecGBps), sig(l.matvecGBps / probe(l.threads).readGBps, 2), sig(l.matmulGflops)]),
    ));
  }
  if (r.attention.length > 0) {
    const attn = mdTable(
      ['threads', 'kind', 'kv dtype', 'ctx', 'ms', 'KV GB/s', 'GFLOP/s', 'of roofline'],
      r.attention.map((a) => [a.threads, a.kind, a.dtype, a.ctx, sig(a.ms), sig(a.kvGBps), sig(a.gflops), a.kind === 'decode' ? sig(roofline(a, probe(a.threads)) / a.ms, 2) : '-']),
    );
    const shape = `attention: nHeads ${ATTN_SHAPE.nHeads}, nKvHeads ${ATTN_SHAPE.nKvHeads}, headDim ${ATTN_SHAPE.headDim}; prefill = 512 causal tokens`;
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
