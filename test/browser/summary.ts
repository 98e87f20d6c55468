/**
 * What the browser side of test/browser-workers.test.ts reports back (page.evaluate returns it
 * as JSON): raw values only, so that the Node side asserts them against the tolerance table.
 */

/** A thrown error, as its class name and message (null: nothing was thrown). */
export type ErrorInfo = { name: string; message: string } | null;

/** Results of one kernel on 1, 2 and 3 threads against its reference twin. */
export interface ParityReport {
  /** NMSE of the 1-thread result against the reference kernel (ref/). */
  nmse: number;
  /** f32 values whose bits differ between 1 and 2 threads, and between 1 and 3 threads. */
  bitDiff2: number;
  bitDiff3: number;
  /** Values compared (so that an empty result cannot pass). */
  length: number;
}

/** Checks run on the page's main thread (pool-page.ts). */
export interface MainThreadReport {
  crossOriginIsolated: boolean;
  hardwareConcurrency: number;
  threadCanBlock: boolean;
  defaultThreads: number;
  /** KernelRuntime.start(arena, { nThreads: 2 }) on the main thread. */
  startTwoThreads: ErrorInfo;
  /** kernelsFor(arena) there: its thread count and kernel build. */
  kernelSetThreads: number;
  kernelSetName: string;
  /** A q8_0 matvec through that single-threaded kernel set, against the reference. */
  matvecNmse: number;
}

/** Checks run in the dedicated Worker that hosts the runtime (pool-worker.ts). */
export interface WorkerReport {
  threadCanBlock: boolean;
  variant: string;
  /** `new KernelRuntime(arena, { nThreads: 2 })`: a blocking start, refused with Web Workers. */
  blockingStart: ErrorInfo;
  /** Per runtime (1, 2, 3 threads, from KernelRuntime.start): nThreads and workers in their loop. */
  runtimes: { nThreads: number; liveWorkers: number }[];
  matvec: ParityReport & { nOut: number; nIn: number; weightBytes: number };
  /** kernelsFor(arena, 2) after start: its thread count and whether its matmul (1 token) equals the matvec bit for bit. */
  kernelSet: { nThreads: number; sameAsMatvec: boolean };
  attention: ParityReport & {
    nHeads: number; nKvHeads: number; headDim: number; nKeys: number;
    /** The shape-only work plan: work items and key chunks. */
    nItems: number; nChunks: number;
    /** max |lse - lseRef| over heads (1 thread). */
    lseMaxErr: number;
  };
  /** A trap in the worker's share only, and in a calling-thread-only run. */
  workerTrap: ErrorInfo;
  localTrap: ErrorInfo;
  /** probe_read sums after the traps (expected 1024 * (c + 1)). */
  sumsAfterTrap: number[];
  /** crashWorkerForTest: the job that loses its worker, then the next job. */
  crash: { job: ErrorInfo; next: ErrorInfo };
  /** After dispose(): pool.dispose() (true = every worker left its loop), workers in their loop, a job. */
  dispose: { stopped: boolean; liveWorkers: number; job: ErrorInfo };
}

/** What the README's engine-worker.js block posts. */
export interface ReadmeReport {
  nThreads: number;
  workers: number;
  rows: number;
}

export interface BrowserSummary {
  main: MainThreadReport;
  worker: WorkerReport;
  readme: ReadmeReport;
}
