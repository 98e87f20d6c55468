/**
 * `npm run bench -- kernels`: the WASM kernels against same-run limits. For each thread count
 * 1..--threads: the SIMD read-bandwidth and peak-FLOP probes and the empty parallel-for latency;
 * then each kernel family, as GB/s, GFLOP/s and fraction of its roofline.
 */
import { Arena } from '../src/core/arena.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import type { SuiteOptions } from './main.js';
import { mdTable, sig } from './table.js';
import { runWasmProbes, type WasmProbes } from './wasm-probes.js';
import { ATTN_SHAPE, benchAttention, benchLinear, type AttnRow, type LinearRow } from './kernels-ops.js';

export interface KernelBenchResult {
  probes: WasmProbes[];
  linear: LinearRow[];
  attention: AttnRow[];
}

export function benchKernels(opts: SuiteOptions & { ctxs: number[] }): KernelBenchResult {
  const arena = new Arena();
  const probes: WasmProbes[] = [];
  const linear: LinearRow[] = [];
  const attention: AttnRow[] = [];
  try {
    for (let t = 1; t <= opts.threads; t++) {
      const rt = new KernelRuntime(arena, { nThreads: t });
      try {
        const p = runWasmProbes(arena, rt);
        probes.push(p);
        opts.log(`  probes, ${t} thread(s), ${p.variant}: read ${sig(p.readGBps)} GB/s, peak ${sig(p.peakGflops)} GFLOP/s, empty dispatch ${sig(p.emptyDispatchMicros)} µs`);
        linear.push(...benchLinear(arena, rt, opts.log));
        attention.push(...benchAttention(arena, rt, opts.ctxs, opts.log));
      } finally {
        rt.dispose();
      }
    }
  } finally {
    arena.dispose();
  }
  return { probes, linear, attention };
}

/** Roofline time of an attention row: the larger of its memory time and its compute time. */
function roofline(r: AttnRow, p: WasmProbes): number {
  const bytes = (r.kvGBps * r.ms) / 1e3; // GB
  const flops = (r.gflops * r.ms) / 1e3; // GFLOP
  return Math.max(bytes / p.readGBps, flops / p.peakGflops) * 1e3; // ms
}

export function kernelTables(r: KernelBenchResult): string {
  const probe = (t: number) => r.probes.find((p) => p.threads === t)!;
  const probes = mdTable(
    ['threads', 'build', 'SIMD read GB/s', 'peak SIMD GFLOP/s', 'empty parallel-for µs'],
    r.probes.map((p) => [p.threads, p.variant, sig(p.readGBps), sig(p.peakGflops), sig(p.emptyDispatchMicros)]),
  );
  const linear = mdTable(
    ['threads', 'weights', 'nOut x nIn', 'matvec ms', 'matvec GB/s', 'of read probe', 'matmul 64 tok GFLOP/s'],
    r.linear.map((l) => [l.threads, l.dtype, `${l.nOut}x${l.nIn}`, sig(l.matvecMs), sig(l.matvecGBps), sig(l.matvecGBps / probe(l.threads).readGBps, 2), sig(l.matmulGflops)]),
  );
  const attn = mdTable(
    ['threads', 'kind', 'kv dtype', 'ctx', 'ms', 'KV GB/s', 'GFLOP/s', 'of roofline'],
    r.attention.map((a) => [a.threads, a.kind, a.dtype, a.ctx, sig(a.ms), sig(a.kvGBps), sig(a.gflops), a.kind === 'decode' ? sig(roofline(a, probe(a.threads)) / a.ms, 2) : '-']),
  );
  const shape = `attention: nHeads ${ATTN_SHAPE.nHeads}, nKvHeads ${ATTN_SHAPE.nKvHeads}, headDim ${ATTN_SHAPE.headDim}; prefill = 512 causal tokens`;
  return `${probes}\n${linear}\n${shape}\n\n${attn}`;
}
