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
 * NOTE(5): Browsers. A Web Worker starts only after the thread that created it returns to its
 *   event loop (measured in Chromium: a blocking wait for READY never ends, on a page or in a
 *   Worker), so there the pool must start with `deferStart` and `await waitStarted()` before its
 *   first job (KernelRuntime.start does both). And a page's main thread may not Atomics.wait:
 *   every wait for the workers (each job, dispose) would be a busy spin of the thread that runs
 *   the page, so workers are refused on such a thread (ConfigError): the runtime belongs in a
 *   dedicated Worker, or runs single-threaded there. Hence every wait below may block.
 */
import { ConfigError, DisposedError, KernelError, StateError, WorkerDiedError, assert, checkInt } from '../core/errors.js';
import {
  ARGS, BEGIN, CONTROL_BYTES, END, ERRLEN, ERROR, FN, GEN, GRAIN, MAX_WORKERS, MESSAGE_OFFSET, NACTIVE, PENDING,
  READY, STATE_BASE, STOP, TEST_EXIT, WORKER_EXITED, WORKER_RUNNING, chunkOf, type WorkerInit,
} from './protocol.js';

type KernelFn = (args: number, begin: number, end: number) => void;

interface WorkerHandle {
  terminate(): unknown;
  /** Why the worker failed (load error, uncaught exception), once this thread's event loop saw it. */
  failure: string | null;
}

export interface ThreadPoolOptions {
  /** Total threads including the caller; 1 = no workers. */
  nThreads: number;
  /** Worker spin time before sleeping, µs. Default 300. */
  spinMicros?: number;
  /** How long to wait for workers to start, ms. Default 30000. */
  startTimeoutMs?: number;
  /**
   * Return without waiting for the workers; `await waitStarted()` before the first job. Needed
   * where workers are Web Workers (NOTE(5)); elsewhere the constructor waits. Default false.
   */
  deferStart?: boolean;
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
  private readonly startTimeoutMs: number;
  private started: Promise<void> | null = null;
  private ready = false;
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
    this.startTimeoutMs = opts.startTimeoutMs ?? 30000;
    const nWorkers = this.nThreads - 1;
    if (nWorkers > 0 && !(memory.buffer instanceof SharedArrayBuffer)) {
      throw new WorkerDiedError('thread pool memory', 'a shared WebAssembly.Memory (needed by workers)', 'an unshared memory');
    }
    if (nWorkers > 0 && !threadCanBlock()) {
      throw new ConfigError(
        "thread pool nThreads on a thread that may not block (a browser page's main thread)",
        '1 here, or the runtime in a dedicated Worker (KernelRuntime.start there)',
        this.nThreads,
      );
    }
    if (nWorkers > 0 && !nodeWorkers && !opts.deferStart) {
      throw new ConfigError(
        'thread pool start with Web Workers (they start only once this thread yields)',
        'an asynchronous start: KernelRuntime.start(), or deferStart + await waitStarted()',
        'a blocking start',
      );
    }
    for (let i = 0; i < nWorkers; i++) {
      const init: WorkerInit = { module, memory, controlOffset, index: i, spinMicros: opts.spinMicros ?? 300 };
      this.workers.push(spawnWorker(init));
    }
    if (nWorkers === 0) this.ready = true;
    else if (!opts.deferStart) this.waitReady(nWorkers, this.startTimeoutMs);
  }

  /**
   * Resolves once every worker has started (at once for a pool that was not deferred); rejects
   * with WorkerDiedError, the pool disposed, if one fails to load or the start times out.
   */
  waitStarted(): Promise<void> {
    this.started ??= this.ready ? Promise.resolve() : this.waitReadyAsync(this.workers.length, this.startTimeoutMs);
    return this.started;
  }

  /** Workers that are in their job loop now (nThreads - 1 once started; 0 after dispose). */
  get liveWorkers(): number {
    let n = 0;
    for (let i = 0; i < this.workers.length; i++) if (Atomics.load(this.ctl, STATE_BASE + i) === WORKER_RUNNING) n++;
    return n;
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
    if (!this.ready) {
      // A worker that is not in its loop yet would miss this job's generation and hang it.
      throw new StateError('thread pool job', 'a started pool (await waitStarted() first)', 'a pool whose workers are still starting');
    }
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
      if (Date.now() - t0 > timeoutMs) return false;
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
      if (ready >= n) {
        this.ready = true;
        return;
      }
      if (Date.now() - t0 > timeoutMs) throw this.startFailed(n, timeoutMs, ready);
      Atomics.wait(this.ctl, READY, ready, 10);
    }
  }

  /** waitReady without blocking: the workers' threads (and their error events) need this one's event loop. */
  private async waitReadyAsync(n: number, timeoutMs: number): Promise<void> {
    const t0 = Date.now();
    for (;;) {
      this.checkUsable();
      const ready = Atomics.load(this.ctl, READY);
      if (ready >= n) {
        this.ready = true;
        return;
      }
      const failed = this.workers.findIndex((w) => w.failure !== null);
      if (failed >= 0) {
        this.dispose(0);
        throw new WorkerDiedError(`worker ${failed} of the thread pool, starting`, 'a worker that loads and starts', this.workers[failed]!.failure);
      }
      if (Date.now() - t0 > timeoutMs) throw this.startFailed(n, timeoutMs, ready);
      // A timer, not Atomics.waitAsync: Node's unref'd workers and a pending waitAsync do not keep
      // the event loop alive, so the process could end before the workers start.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** Workers that never got ready will not acknowledge a stop either: dispose without waiting. */
  private startFailed(n: number, timeoutMs: number, ready: number): WorkerDiedError {
    this.dispose(0);
    return new WorkerDiedError('thread pool start', `${n} workers ready within ${timeoutMs} ms`, `${ready} ready`);
  }

  /** Spin briefly, then sleep in slices; each slice checks that no worker has exited. */
  private waitDone(): void {
    const ctl = this.ctl;
    for (let i = 0; i < 2048; i++) if (Atomics.load(ctl, PENDING) === 0) return;
    for (;;) {
      const pending = Atomics.load(ctl, PENDING);
      if (pending <= 0) return;
      this.checkAlive();
      Atomics.wait(ctl, PENDING, pending, 20);
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

let canBlock: boolean | undefined;
/**
 * Whether this thread may block in Atomics.wait: false on a browser page's main thread (and
 * where there is no SharedArrayBuffer, so no workers either); true on Node and in Web Workers.
 */
export function threadCanBlock(): boolean {
  if (canBlock === undefined) {
    try {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0); // value differs: returns at once where allowed
      canBlock = true;
    } catch {
      canBlock = false;
    }
  }
  return canBlock;
}

function spawnWorker(init: WorkerInit): WorkerHandle {
  if (nodeWorkers) {
    const w = new nodeWorkers.Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    const handle = { terminate: () => w.terminate(), failure: null as string | null };
    w.unref(); // an idle pool must not keep the process alive
    // Surfaced through the control block (STATE / ERROR); kept for a deferred start.
    w.on('error', (e) => (handle.failure = errorText(e)));
    return handle;
  }
  // Written inline so that bundlers (webpack 5, Vite) see the worker entry and emit it.
  const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: `kvcache-pool-${init.index}` });
  const handle = { terminate: () => w.terminate(), failure: null as string | null };
  w.addEventListener('error', (ev) => {
    // A module worker that fails to load reports an empty message: say what failed.
    handle.failure = ev.message || 'the worker module failed to load (its URL, MIME type or COEP headers)';
    ev.preventDefault();
  });
  w.postMessage(init);
  return handle;
}
