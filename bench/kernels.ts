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

export interface KernelBenchResult {
  probes: WasmProbes[];
}

export function benchKernels(opts: SuiteOptions & { ctxs: number[] }): KernelBenchResult {
  const arena = new Arena();
  const probes: WasmProbes[] = [];
  try {
    for (let t = 1; t <= opts.threads; t++) {
      const rt = new KernelRuntime(arena, { nThreads: t });
      try {
        const p = runWasmProbes(arena, rt);
        probes.push(p);
        opts.log(`  probes, ${t} thread(s), ${p.variant}: read ${sig(p.readGBps)} GB/s, peak ${sig(p.peakGflops)} GFLOP/s, empty dispatch ${sig(p.emptyDispatchMicros)} µs`);
      } finally {
        rt.dispose();
      }
    }
  } finally {
    arena.dispose();
  }
  return { probes };
}

export function kernelTables(r: KernelBenchResult): string {
  return mdTable(
    ['threads', 'build', 'SIMD read GB/s', 'peak SIMD GFLOP/s', 'empty parallel-for µs'],
    r.probes.map((p) => [p.threads, p.variant, sig(p.readGBps), sig(p.peakGflops), sig(p.emptyDispatchMicros)]),
  );
}
