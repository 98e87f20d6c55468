/**
 * The control block through which the pool's threads talk: Int32 slots in shared memory, so a
 * dispatch is a few stores, one Atomics.notify, and a futex wait only when a thread is idle
 * (no message per operation).
 *
 *   slot  name       written by   meaning
 *   0     GEN        main         job generation; workers wait for it to change
 *   1     PENDING    both         workers that have not finished the current job; main waits on it
 *   2     FN         main         index of the function to run (module export order)
 *   3     ARGS       main         byte offset of the job's argument block
 *   4,5   BEGIN,END  main         the job's range [begin, end)
 *   6     GRAIN      main         split granularity: every chunk but the last is a multiple of it
 *   7     NACTIVE    main         threads with a share (main = thread 0, worker i = thread i + 1)
 *   8     STOP       main         1: workers leave their loop
 *   9     ERROR      workers      0, or 1 + index of the first worker that failed this job
 *   10    ERRLEN     workers      bytes of the UTF-8 error message at MESSAGE_OFFSET
 *   11    READY      workers      workers that have instantiated the module
 *   12    TEST_EXIT  tests        1 + index of a worker that must exit during the next job
 *   16+i  STATE      worker i     0 starting, 1 running, 2 exited
 */
export const GEN = 0;
export const PENDING = 1;
export const FN = 2;
export const ARGS = 3;
export const BEGIN = 4;
export const END = 5;
export const GRAIN = 6;
export const NACTIVE = 7;
export const STOP = 8;
export const ERROR = 9;
export const ERRLEN = 10;
export const READY = 11;
export const TEST_EXIT = 12;
export const STATE_BASE = 16;
export const WORKER_RUNNING = 1;
export const WORKER_EXITED = 2;

/** At most this many workers (slots 16..79). */
export const MAX_WORKERS = 64;
/** Byte offset of the error message inside the control block, and its capacity. */
export const MESSAGE_OFFSET = 512;
export const MESSAGE_BYTES = 1024;
/** Total bytes of the control block. */
export const CONTROL_BYTES = MESSAGE_OFFSET + MESSAGE_BYTES;

/** What a worker receives at start. */
export interface WorkerInit {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  /** Byte offset of the control block in `memory`. */
  readonly controlOffset: number;
  /** This worker's index (thread index - 1). */
  readonly index: number;
  /** Spin this long (µs) for a new job before sleeping on the futex. */
  readonly spinMicros: number;
}

/**
 * Thread `t` of `n` gets the chunk [lo, hi) of [begin, end): whole grains, as even as possible.
 * Returns lo === hi for a thread with nothing to do.
 */
export function chunkOf(t: number, n: number, begin: number, end: number, grain: number): [number, number] {
  const nGrains = Math.ceil((end - begin) / grain);
  const g0 = Math.floor((t * nGrains) / n);
  const g1 = Math.floor(((t + 1) * nGrains) / n);
  return [Math.min(end, begin + g0 * grain), Math.min(end, begin + g1 * grain)];
}

/** The functions a module exports, in export order: the index space of FN. */
export function exportedFunctions(instance: WebAssembly.Instance): ((args: number, begin: number, end: number) => void)[] {
  const out: ((args: number, begin: number, end: number) => void)[] = [];
  for (const desc of WebAssembly.Module.exports(moduleOf(instance))) {
    if (desc.kind === 'function') out.push(instance.exports[desc.name] as (a: number, b: number, e: number) => void);
  }
  return out;
}

const modules = new WeakMap<WebAssembly.Instance, WebAssembly.Module>();
/** Instantiate and remember the module (WebAssembly.Instance does not expose it). */
export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): WebAssembly.Instance {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  modules.set(instance, module);
  return instance;
}
function moduleOf(instance: WebAssembly.Instance): WebAssembly.Module {
  const m = modules.get(instance);
  if (!m) throw new Error('kvcache internal invariant broken: instance not created by instantiate()');
  return m;
}

/** Names of the exported functions, in the same order as exportedFunctions. */
export function exportedFunctionNames(module: WebAssembly.Module): string[] {
  return WebAssembly.Module.exports(module).filter((d) => d.kind === 'function').map((d) => d.name);
}
