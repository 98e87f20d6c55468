/**
 * Same-run limits for the WASM kernels: SIMD read bandwidth and peak SIMD multiply-add rate
 * (assembly/probe.ts) on 1..n threads, and the cost of an empty parallel-for. Kernel figures
 * are reported as fractions of these.
 */
import type { Arena } from '../src/core/arena.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { timeIt } from './probes.js';

export interface WasmProbes {
  threads: number;
  variant: string;
  /** SIMD read of a 256 MiB buffer, GB/s. */
  readGBps: number;
  /** Peak f32 SIMD multiply-add rate (no memory traffic), GFLOP/s (an FMA counts 2). */
  peakGflops: number;
  /** parallelFor over 2 items that do nothing, µs per call. */
  emptyDispatchMicros: number;
}

const READ_BYTES = 256 << 20;
const READ_CHUNK = 1 << 16;

export function runWasmProbes(arena: Arena, rt: KernelRuntime, minSeconds = 0.4): WasmProbes {
  const src = arena.alloc(READ_BYTES);
  const out = arena.alloc((READ_BYTES / READ_CHUNK) * 4);
  try {
    arena.f32.fill(1, src / 4, (src + READ_BYTES) / 4);
    const nChunks = READ_BYTES / READ_CHUNK;
    const read = () => {
      rt.args().ptr(src).ptr(out).i32(READ_CHUNK);
      rt.parallelFor('probe_read', 0, nChunks, 16);
    };
    read();
    const readSec = timeIt(read, minSeconds);
    const iters = 1 << 16;
    const items = 8 * rt.nThreads;
    const flops = () => {
      rt.args().ptr(out).i32(iters);
      rt.parallelFor('probe_flops', 0, items);
    };
    flops();
    const flopSec = timeIt(flops, minSeconds);
    const empty = () => {
      rt.args().ptr(out).i32(0);
      rt.parallelFor('probe_flops', 0, 2);
    };
    for (let i = 0; i < 1000; i++) empty();
    const emptySec = timeIt(() => {
      for (let i = 0; i < 100; i++) empty();
    }, minSeconds) / 100;
    return {
      threads: rt.nThreads,
      variant: rt.variant,
      readGBps: READ_BYTES / readSec / 1e9,
      peakGflops: (items * iters * 8 * 4 * 2) / flopSec / 1e9,
      emptyDispatchMicros: emptySec * 1e6,
    };
  } finally {
    arena.free(src);
    arena.free(out);
  }
}
