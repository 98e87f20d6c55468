/**
 * The thread pool (the CPUInfer of this engine): the calling thread plus `nThreads - 1` workers,
 * each with its own instance of the kernel module over the one shared memory.
 *
 *   main                                   worker i (thread i + 1)
 *   write FN/ARGS/range, PENDING = nWorkers
 *   GEN += 1, notify(GEN) ───────────────► wakes (or was spinning), runs chunkOf(i + 1)
 *   run chunkOf(0) itself                  PENDING -= 1, notify(PENDING) if it was the last
 *   wait until PENDING == 0 ◄─────────────
 *   ERROR set? throw KernelError
 *
 * NOTE(1): Jobs are synchronous: parallelFor returns when every share is done, so a kernel's
 *   outputs can be read right after, and the single argument block can be reused.
 * NOTE(2): Workers spin briefly before sleeping (protocol.ts WorkerInit.spinMicros): a decode
 *   step issues hundreds of small jobs back to back, and a futex wake costs tens of µs.
 * NOTE(3): A dead worker never hangs the caller: the wait is sliced, and every slice checks the
 *   workers' STATE slots (set by the worker's exit hook); then WorkerDiedError, pool unusable.
 * NOTE(4): dispose() waits until every worker has left its loop (STATE = exited) before it
 *   reports the control block free: worker termination is asynchronous, and a worker still
 *   alive on a reused control block would take part in the next pool's jobs.
 */
import { DisposedError, KernelError, WorkerDiedError, assert, checkInt } from '../core/errors.js';
import {
  ARGS, BEGIN, CONTROL_BYTES, END, ERRLEN, ERROR, FN, GEN, GRAIN, MAX_WORKERS, MESSAGE_OFFSET, NACTIVE, PENDING,
  READY, STATE_BASE, STOP, TEST_EXIT, WORKER_EXITED, chunkOf, type WorkerInit,
} from './protocol.js';

type KernelFn = (args: number, begin: number, end: number) => void;

interface WorkerHandle {
  terminate(): unknown;
}

export interface ThreadPoolOptions {
  /** Total threads including the caller; 1 = no workers. */
  nThreads: number;
  /** Worker spin time before sleeping, µs. Default 300. */
  spinMicros?: number;
  /** How long to wait for workers to start, ms. Default 30000. */
  startTimeoutMs?: number;
}

const nodeWorkers: typeof import('node:worker_threads') | null =
  typeof process !== 'undefined' && process.versions?.node ? await import('node:worker_threads') : null;

export class ThreadPool {
  readonly nThreads: number;
  private readonly ctl: Int32Array; // [CONTROL_BYTES / 4] in the shared memory
  private readonly memory: WebAssembly.Memory;
  private readonly controlOffset: number;
  private readonly workers: WorkerHandle[] = [];
  private readonly fns: readonly KernelFn[];
  private readonly names: readonly string[];
  private readonly canBlock: boolean;
  private disposed = false;
  private broken: Error | null = null;
  private stopped = true;

  /**
   * `fns`/`names`: this thread's instance of the module, in export order (protocol.ts).
   * `controlOffset`: CONTROL_BYTES reserved in `memory` for this pool.
   */
  constructor(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    controlOffset: number,
    fns: readonly KernelFn[],
    names: readonly string[],
    opts: ThreadPoolOptions,
  ) {
    this.nThreads = checkInt('nThreads', opts.nThreads, 1, MAX_WORKERS + 1);
    this.memory = memory;
    this.controlOffset = controlOffset;
    this.fns = fns;
    this.names = names;
    this.ctl = new Int32Array(memory.buffer, controlOffset, CONTROL_BYTES / 4);
    this.ctl.fill(0);
    this.canBlock = agentCanBlock(this.ctl);
    const nWorkers = this.nThreads - 1;
    if (nWorkers > 0 && !(memory.buffer instanceof SharedArrayBuffer)) {
      throw new WorkerDiedError('thread pool memory', 'a shared WebAssembly.Memory (needed by workers)', 'an unshared memory');
    }
    for (let i = 0; i < nWorkers; i++) {
      const init: WorkerInit = { module, memory, controlOffset, index: i, spinMicros: opts.spinMicros ?? 300 };
      this.workers.push(spawnWorker(init));
    }
    if (nWorkers > 0) this.waitReady(nWorkers, opts.startTimeoutMs ?? 30000);
  }

  /** Index of an exported kernel by name. */
  kernelIndex(name: string): number {
    const i = this.names.indexOf(name);
    assert(i >= 0, `no kernel named ${name} in the module`);
    return i;
  }

  /**
   * Run kernel `fn` over [begin, end) on every thread: thread t runs fn(args, lo, hi) for its
   * chunkOf(t). Returns when all are done; throws KernelError if any share failed.
   */
  parallelFor(fn: number, args: number, begin: number, end: number, grain = 1): void {
    this.checkUsable();
    if (end <= begin) return;
    const nGrains = Math.ceil((end - begin) / grain);
    const nActive = Math.min(this.nThreads, nGrains);
    if (nActive <= 1 || this.workers.length === 0) {
      this.runLocal(fn, args, begin, end);
      return;
    }
    const ctl = this.ctl;
    ctl[FN] = fn;
    ctl[ARGS] = args;
    ctl[BEGIN] = begin;
    ctl[END] = end;
    ctl[GRAIN] = grain;
    ctl[NACTIVE] = nActive;
    Atomics.store(ctl, PENDING, this.workers.length);
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    const [lo, hi] = chunkOf(0, nActive, begin, end, grain);
    let localError: unknown = null;
    try {
      this.fns[fn]!(args, lo, hi);
    } catch (e) {
      localError = e;
    }
    this.waitDone();
    this.checkAlive();
    const workerError = this.takeError();
    if (localError !== null) throw new KernelError(`kernel ${this.names[fn]} on the calling thread`, 'completion', errorText(localError));
    if (workerError !== null) throw workerError;
  }

  /** Run kernel `fn` over [begin, end) on the calling thread only. */
  runLocal(fn: number, args: number, begin: number, end: number): void {
    this.checkUsable();
    if (end <= begin) return;
    try {
      this.fns[fn]!(args, begin, end);
    } catch (e) {
      throw new KernelError(`kernel ${this.names[fn]} on the calling thread`, 'completion', errorText(e));
    }
  }

  /** Test hook: worker `index` exits (as if it crashed) during the next job. */
  crashWorkerForTest(index: number): void {
    Atomics.store(this.ctl, TEST_EXIT, index + 1);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Stop the workers. Returns true once every worker has left its loop, so the control block
   * may be freed (NOTE(4)); false if that could not be confirmed (a thread that may not block,
   * or a worker stuck in a kernel for over `timeoutMs`): then the block must not be reused.
   * Idempotent.
   */
  dispose(timeoutMs = 5000): boolean {
    if (this.disposed) return this.stopped;
    this.disposed = true;
    Atomics.store(this.ctl, STOP, 1);
    Atomics.add(this.ctl, GEN, 1);
    Atomics.notify(this.ctl, GEN);
    this.stopped = this.waitExited(timeoutMs);
    for (const w of this.workers) void w.terminate();
    return this.stopped;
  }

  private waitExited(timeoutMs: number): boolean {
    const t0 = Date.now();
    for (;;) {
      let running = 0;
      for (let i = 0; i < this.workers.length; i++) if (Atomics.load(this.ctl, STATE_BASE + i) !== WORKER_EXITED) running++;
      if (running === 0) return true;
      if (!this.canBlock || Date.now() - t0 > timeoutMs) return false;
      Atomics.wait(this.ctl, PENDING, Atomics.load(this.ctl, PENDING), 5);
    }
  }

  private checkUsable(): void {
    if (this.broken) throw this.broken;
    if (this.disposed) throw new DisposedError('thread pool', 'a live pool', 'a disposed pool');
  }

  private waitReady(n: number, timeoutMs: number): void {
    const t0 = Date.now();
    for (;;) {
      const ready = Atomics.load(this.ctl, READY);
      if (ready >= n) return;
      if (Date.now() - t0 > timeoutMs) {
        this.dispose();
        throw new WorkerDiedError('thread pool start', `${n} workers ready within ${timeoutMs} ms`, `${ready} ready`);
      }
      if (this.canBlock) Atomics.wait(this.ctl, READY, ready, 10);
    }
  }

  /** Spin briefly, then sleep in slices; each slice checks that no worker has exited. */
  private waitDone(): void {
    const ctl = this.ctl;
    for (let i = 0; i < 2048; i++) if (Atomics.load(ctl, PENDING) === 0) return;
    for (;;) {
      const pending = Atomics.load(ctl, PENDING);
      if (pending <= 0) return;
      this.checkAlive();
      if (this.canBlock) Atomics.wait(ctl, PENDING, pending, 20);
    }
  }

  private checkAlive(): void {
    const dead = this.exitedWorker();
    if (dead < 0) return;
    this.broken = new WorkerDiedError(`worker ${dead} of the thread pool`, 'a running worker', 'a worker that exited');
    this.dispose();
    throw this.broken;
  }

  private exitedWorker(): number {
    for (let i = 0; i < this.workers.length; i++) {
      if (Atomics.load(this.ctl, STATE_BASE + i) === WORKER_EXITED) return i;
    }
    return -1;
  }

  private takeError(): KernelError | null {
    const who = Atomics.load(this.ctl, ERROR);
    if (who === 0) return null;
    const len = Atomics.load(this.ctl, ERRLEN);
    const bytes = new Uint8Array(this.memory.buffer, this.controlOffset + MESSAGE_OFFSET, len).slice();
    Atomics.store(this.ctl, ERROR, 0);
    Atomics.store(this.ctl, ERRLEN, 0);
    return new KernelError(`kernel ${this.names[this.ctl[FN]!]} on worker ${who - 1}`, 'completion', new TextDecoder().decode(bytes));
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Whether this thread may block in Atomics.wait (false on a browser's main thread). */
function agentCanBlock(ctl: Int32Array): boolean {
  try {
    Atomics.wait(ctl, STOP, 1, 0); // value differs: returns at once where blocking is allowed
    return true;
  } catch {
    return false;
  }
}

function spawnWorker(init: WorkerInit): WorkerHandle {
  const url = new URL('./worker.js', import.meta.url);
  if (nodeWorkers) {
    const w = new nodeWorkers.Worker(url, { workerData: init });
    w.unref(); // an idle pool must not keep the process alive
    w.on('error', () => undefined); // surfaced through the control block (STATE / ERROR)
    return w;
  }
  const w = new Worker(url, { type: 'module' });
  w.postMessage(init);
  return w;
}
