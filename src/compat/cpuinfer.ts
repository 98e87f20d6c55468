/**
 * ktransformers' `CPUInfer(nThreads)`: a task queue in front of the thread pool.
 *
 *   const cpu = new CPUInfer(2);
 *   cpu.submit(() => wasmAttention(cpu.runtime, q, pos, nHeads, view));   // returns at once
 *   cpu.submit({ kernel: 'probe_read', begin: 0, end: n, args: [src, out, 4096] });
 *   cpu.sync();                                                          // all done (or throws)
 *
 * NOTE(1): As in the original, `submit` never blocks and results are defined only after `sync`.
 *   Here the queue drains on the calling thread at `sync`, each task itself running on every
 *   thread of the pool; the original drains it on a background thread. The observable contract
 *   (order of tasks, completion at sync) is the same, and no thread is wasted waiting.
 * NOTE(2): A task that throws stops the drain: sync rethrows that error and drops the tasks after
 *   it (they were submitted against a state that no longer holds). The queue is empty afterwards.
 * NOTE(3): The CUDA-stream variants (submit_with_cuda_stream / sync_with_cuda_stream) have no
 *   meaning without a GPU and are not offered.
 */
import type { Arena } from '../core/arena.js';
import { ConfigError } from '../core/errors.js';
import { KernelRuntime } from '../kernels/wasm/runtime.js';

/** A kernel job: `kernel` over [begin, end) with its argument slots (pointers and i32 as integers, f32 marked). */
export interface KernelTask {
  readonly kernel: string;
  readonly begin: number;
  readonly end: number;
  readonly grain?: number;
  /** Argument slots in order: a number is written as i32/u32, `{ f32: x }` as f32. */
  readonly args: readonly (number | { readonly f32: number })[];
}

export type CPUInferTask = (() => void) | KernelTask;

export class CPUInfer {
  readonly runtime: KernelRuntime;
  private queue: CPUInferTask[] = [];

  constructor(nThreads: number, arena?: Arena) {
    this.runtime = KernelRuntime.for(arena, { nThreads });
  }

  get nThreads(): number {
    return this.runtime.nThreads;
  }

  /** Tasks submitted and not yet run. */
  get pending(): number {
    return this.queue.length;
  }

  /** Enqueue a task; it runs at the next sync(), after every task submitted before it. */
  submit(task: CPUInferTask): void {
    const ok = typeof task === 'function' || (typeof task === 'object' && task !== null && typeof task.kernel === 'string');
    if (!ok) throw new ConfigError('CPUInfer task', 'a function or { kernel, begin, end, args }', task);
    this.queue.push(task);
  }

  /** Run every queued task in order; returns when all are done, or throws the first error. */
  sync(): void {
    const tasks = this.queue;
    this.queue = [];
    for (const task of tasks) {
      if (typeof task === 'function') task();
      else this.parallelFor(task);
    }
  }

  /** Run one kernel task now on all threads (the pool's parallel-for). */
  parallelFor(task: KernelTask): void {
    const a = this.runtime.args();
    for (const v of task.args) {
      if (typeof v === 'number') a.i32(v | 0);
      else a.f32(v.f32);
    }
    this.runtime.parallelFor(task.kernel, task.begin, task.end, task.grain ?? 1);
  }

  /** Stop the pool's workers (the arena and its data stay). */
  dispose(): void {
    this.queue = [];
    this.runtime.dispose();
  }
}
