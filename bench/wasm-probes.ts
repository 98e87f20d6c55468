/**
 * Same-run limits for the WASM kernels: SIMD read bandwidth and peak SIMD multiply-add rate
 * (assembly/probe.ts) on 1..n threads, and the cost of an empty parallel-for. Kernel figures
 * are reported as fractions of these.
 *
 * runWasmProbes measures them once (0.4 s each: the header row of the kernels tables, and the
 * batch-decode roofline). LimitProbes keeps the probe buffers allocated so that the kernels suite
 * can probe again, briefly, after every timing window of a kernel (bench/stats.ts
 * interleaveRounds): on the noisy benchmark VM the limits drift within minutes, and a fraction
 * is only meaningful against limits measured next to the kernel time it divides.
 */
import type { Arena } from '../src/core/arena.js';
import type { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { medianTime, timeIt } from './probes.js';

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

/** The read probe's buffer: 8x the 32 MiB L3 of the benchmark machine, so it streams from DRAM. */
export const READ_BYTES = 256 << 20;
const READ_CHUNK = 1 << 16;
const FLOP_ITERS = 1 << 16;

/** The probes of one runtime, their buffers allocated until dispose(). */
export class LimitProbes {
  private readonly src: number;
  private readonly out: number;

  constructor(private readonly arena: Arena, private readonly rt: KernelRuntime) {
    this.src = arena.alloc(READ_BYTES);
    try {
      this.out = arena.alloc((READ_BYTES / READ_CHUNK) * 4);
    } catch (e) {
      arena.free(this.src);
      throw e;
    }
    arena.f32.fill(1, this.src / 4, (this.src + READ_BYTES) / 4);
  }

  private readPass(): void {
    this.rt.args().ptr(this.src).ptr(this.out).i32(READ_CHUNK);
    this.rt.parallelFor('probe_read', 0, READ_BYTES / READ_CHUNK, 16);
  }

  private flopPass(): number {
    const items = 8 * this.rt.nThreads;
    this.rt.args().ptr(this.out).i32(FLOP_ITERS);
    this.rt.parallelFor('probe_flops', 0, items);
    return items * FLOP_ITERS * 12 * 4 * 2; // 12 chains of f32x4 multiply-adds, 2 FLOP each
  }

  /** SIMD read bandwidth over READ_BYTES, GB/s: mean over `seconds` (median of the passes when `median`). */
  readGBps(seconds: number, median = false): number {
    this.readPass();
    const sec = median ? medianTime(() => this.readPass(), seconds, 1) : timeIt(() => this.readPass(), seconds);
    return READ_BYTES / sec / 1e9;
  }

  /** Peak f32 SIMD multiply-add rate, GFLOP/s: mean over `seconds` (median of the calls when `median`). */
  peakGflops(seconds: number, median = false): number {
    const flops = this.flopPass();
    const sec = median ? medianTime(() => this.flopPass(), seconds, 1) : timeIt(() => this.flopPass(), seconds);
    return flops / sec / 1e9;
  }

  /** An empty parallelFor over 2 items, µs per call. */
  emptyDispatchMicros(seconds: number): number {
    const empty = () => {
      this.rt.args().ptr(this.out).i32(0);
      this.rt.parallelFor('probe_flops', 0, 2);
    };
    for (let i = 0; i < 1000; i++) empty();
    return (timeIt(() => {
      for (let i = 0; i < 100; i++) empty();
    }, seconds) / 100) * 1e6;
  }

  dispose(): void {
    this.arena.free(this.src);
    this.arena.free(this.out);
  }
}

/** The three probes once, `minSeconds` each (means over the window). */
export function runWasmProbes(arena: Arena, rt: KernelRuntime, minSeconds = 0.4, probes?: LimitProbes): WasmProbes {
  const p = probes ?? new LimitProbes(arena, rt);
  try {
    return {
      threads: rt.nThreads,
      variant: rt.variant,
      readGBps: p.readGBps(minSeconds),
      peakGflops: p.peakGflops(minSeconds),
      emptyDispatchMicros: p.emptyDispatchMicros(minSeconds),
    };
  } finally {
    if (probes === undefined) p.dispose();
  }
}
