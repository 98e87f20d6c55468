/**
 * The page script of test/browser/pool.html: the main-thread checks (a page's main thread may
 * not block, so the runtime there is single-threaded and a pool with workers is a typed error:
 * pool.ts NOTE(5)), then the dedicated Worker that hosts the real pool (pool-worker.ts) and the
 * README's engine-worker.js example. `runPoolChecks()` resolves to a BrowserSummary (summary.ts).
 */
import {
  Arena, KernelRuntime, defaultThreads, encodeArray, kernelsFor, mulberry32, nmse, normalArray, refMatvec,
  threadCanBlock, uploadWeights,
} from '../../src/browser.js';
import type { BrowserSummary, ErrorInfo, MainThreadReport } from './summary.js';

/** Give up on a worker's report after this long (the Node side's whole test must stay ~30 s). */
const WORKER_TIMEOUT_MS = 20000;

async function mainThreadChecks(): Promise<MainThreadReport> {
  const arena = new Arena({ maximumBytes: 64 << 20 });
  let startTwoThreads: ErrorInfo = null;
  try {
    (await KernelRuntime.start(arena, { nThreads: 2 })).dispose();
  } catch (e) {
    startTwoThreads = e instanceof Error ? { name: e.name, message: e.message } : { name: typeof e, message: String(e) };
  }
  // The engine's default on this thread: one thread, the WASM kernels, no waiting anywhere.
  const ks = kernelsFor(arena);
  const nOut = 64;
  const nIn = 128;
  const rng = mulberry32(3);
  const w = encodeArray('q8_0', normalArray(rng, nOut * nIn)); // [nOut, nIn]
  const x = normalArray(rng, nIn); // [nIn]
  const wOff = uploadWeights(arena, w);
  const xOff = arena.alloc(nIn * 4);
  const yOff = arena.alloc(nOut * 4);
  arena.f32.set(x, xOff / 4);
  ks.matmul(wOff, 'q8_0', nOut, nIn, xOff, 1, yOff);
  const matvecNmse = nmse(arena.f32.slice(yOff / 4, yOff / 4 + nOut), refMatvec(w, 'q8_0', nOut, nIn, x));
  const report: MainThreadReport = {
    crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency, threadCanBlock: threadCanBlock(),
    defaultThreads: defaultThreads(), startTwoThreads, kernelSetThreads: ks.nThreads, kernelSetName: ks.name, matvecNmse,
  };
  KernelRuntime.for(arena).dispose();
  arena.dispose();
  return report;
}

/**
 * Start a module worker and resolve with its first message (reject on load error, `fatal`, or
 * timeout). It is left running: the pool workers it started must be closed by its own dispose().
 */
function reportOf<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(url, { type: 'module' });
    const timer = setTimeout(() => reject(new Error(`${url}: no report within ${WORKER_TIMEOUT_MS} ms`)), WORKER_TIMEOUT_MS);
    w.onmessage = (ev: MessageEvent) => {
      clearTimeout(timer);
      const data = ev.data as T & { fatal?: string };
      if (data.fatal !== undefined) reject(new Error(`${url}: ${data.fatal}`));
      else resolve(data);
    };
    w.onerror = (ev: ErrorEvent) => {
      clearTimeout(timer);
      reject(new Error(`${url}: ${ev.message || 'failed to load (the test lists the files the server did not find)'}`));
    };
  });
}

async function runPoolChecks(): Promise<BrowserSummary> {
  const main = await mainThreadChecks();
  const worker = await reportOf<BrowserSummary['worker']>('/dist/test/browser/pool-worker.js');
  const readme = await reportOf<BrowserSummary['readme']>('/readme/engine-worker.js');
  return { main, worker, readme };
}

(globalThis as unknown as { runPoolChecks: typeof runPoolChecks }).runPoolChecks = runPoolChecks;
