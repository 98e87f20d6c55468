/**
 * A pool worker: instantiates the kernel module over the shared memory, then loops: wait for a
 * new job generation, run its share of the range, report completion. Runs on worker_threads
 * (Node) and as a module Web Worker (browsers); see pool.ts.
 *
 * NOTE(1): Errors never escape the loop: a trap or exception is written into the control block
 *   (ERROR, message) and the job is still counted as done, so the caller never waits forever.
 * NOTE(2): If the thread exits anyway (process.exit in a worker), the 'exit' hook marks it
 *   exited and releases the caller; the caller then throws WorkerDiedError.
 */
import {
  ARGS, BEGIN, CONTROL_BYTES, END, ERRLEN, ERROR, FN, GEN, GRAIN, MESSAGE_BYTES, MESSAGE_OFFSET, NACTIVE,
  PENDING, READY, STATE_BASE, STOP, TEST_EXIT, WORKER_EXITED, WORKER_RUNNING, chunkOf, exportedFunctions,
  instantiate, type WorkerInit,
} from './protocol.js';

function run(init: WorkerInit, exit: (code: number) => void): void {
  const ctl = new Int32Array(init.memory.buffer, init.controlOffset, CONTROL_BYTES / 4);
  const msg = new Uint8Array(init.memory.buffer, init.controlOffset + MESSAGE_OFFSET, MESSAGE_BYTES);
  const fns = exportedFunctions(instantiate(init.module, init.memory));
  const me = init.index;
  const thread = me + 1;
  onExit(() => {
    // Not counted as done: the caller sees the EXITED state and fails the job (pool.ts NOTE(3)).
    Atomics.store(ctl, STATE_BASE + me, WORKER_EXITED);
    Atomics.notify(ctl, PENDING);
  });
  // Read the generation BEFORE announcing readiness: the caller may start a job the moment the
  // last worker is ready, and a generation read after that bump would miss the job (and hang it).
  let seen = Atomics.load(ctl, GEN);
  Atomics.store(ctl, STATE_BASE + me, WORKER_RUNNING);
  Atomics.add(ctl, READY, 1);
  Atomics.notify(ctl, READY);
  for (;;) {
    seen = waitForChange(ctl, seen, init.spinMicros);
    if (Atomics.load(ctl, STOP) !== 0) break;
    const nActive = ctl[NACTIVE]!;
    if (thread < nActive) {
      const [lo, hi] = chunkOf(thread, nActive, ctl[BEGIN]!, ctl[END]!, ctl[GRAIN]!);
      if (Atomics.load(ctl, TEST_EXIT) === me + 1) exit(3);
      try {
        if (lo < hi) fns[ctl[FN]!]!(ctl[ARGS]!, lo, hi);
      } catch (e) {
        reportError(ctl, msg, me, e);
      }
    }
    if (Atomics.sub(ctl, PENDING, 1) === 1) Atomics.notify(ctl, PENDING);
  }
  // The pool waits for this before it frees (and may reuse) the control block: pool.ts NOTE(4).
  Atomics.store(ctl, STATE_BASE + me, WORKER_EXITED);
  Atomics.notify(ctl, PENDING);
}

/** Spin on GEN for up to `spinMicros`, then sleep on it; returns the new generation. */
function waitForChange(ctl: Int32Array, seen: number, spinMicros: number): number {
  let g = Atomics.load(ctl, GEN);
  if (g !== seen) return g;
  const t0 = performance.now();
  for (let i = 1; ; i++) {
    g = Atomics.load(ctl, GEN);
    if (g !== seen) return g;
    if ((i & 255) === 0 && (performance.now() - t0) * 1000 > spinMicros) break;
  }
  for (;;) {
    Atomics.wait(ctl, GEN, seen);
    g = Atomics.load(ctl, GEN);
    if (g !== seen) return g;
  }
}

function reportError(ctl: Int32Array, msg: Uint8Array, me: number, e: unknown): void {
  if (Atomics.compareExchange(ctl, ERROR, 0, me + 1) !== 0) return; // keep the first error
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  const bytes = new TextEncoder().encode(text).subarray(0, MESSAGE_BYTES);
  msg.set(bytes);
  Atomics.store(ctl, ERRLEN, bytes.length);
}

let exitHooks: (() => void)[] = [];
function onExit(hook: () => void): void {
  exitHooks.push(hook);
}

interface NodeLike {
  process?: { versions?: { node?: string }; on(ev: string, fn: () => void): void; exit(code: number): never };
}
const g = globalThis as unknown as NodeLike & { onmessage?: unknown; close?: () => void };
if (g.process?.versions?.node) {
  const { workerData, isMainThread } = await import('node:worker_threads');
  if (!isMainThread) {
    const proc = g.process;
    proc.on('exit', () => {
      for (const h of exitHooks) h();
      exitHooks = [];
    });
    run(workerData as WorkerInit, (code) => proc.exit(code));
  }
} else if ('WorkerGlobalScope' in globalThis) {
  // Browser (a module Web Worker; never a page, whose onmessage this must not take): the init
  // record arrives as the first message.
  (g as { onmessage: ((ev: { data: WorkerInit }) => void) | null }).onmessage = (ev) => {
    (g as { onmessage: unknown }).onmessage = null;
    run(ev.data, () => {
      for (const h of exitHooks) h();
      g.close?.();
      throw new Error('worker exit');
    });
  };
}
