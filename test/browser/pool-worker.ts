/**
 * The browser side of test/browser-workers.test.ts, in the configuration a browser user runs:
 * the kernel runtime inside a dedicated module Worker (pool.ts NOTE(5)), its pool's threads
 * real module Web Workers. Runs q8_0 matvec and f16 GQA decode attention through the pool on 1,
 * 2 and 3 threads against the reference kernels, provokes a trap in a worker and a worker exit,
 * disposes, and posts a WorkerReport (summary.ts) to the page: values only, asserted in Node.
 */
import {
  Arena, KernelRuntime, attention as refAttention, encodeArray, kernelsFor, mulberry32, nmse, normalArray,
  refMatvec, threadCanBlock, uploadWeights, wasmAttention, wasmMatvec, type KVView,
} from '../../src/browser.js';
import { planAttention } from '../../src/kernels/wasm/attention.js';
import type { ErrorInfo, ParityReport, WorkerReport } from './summary.js';

const MiB = 1 << 20;
/** probe_read reads chunks of this many bytes (assembly/probe.ts: a multiple of 256). */
const CHUNK_BYTES = 4096;

function errorOf(f: () => unknown): ErrorInfo {
  try {
    f();
    return null;
  } catch (e) {
    return e instanceof Error ? { name: e.name, message: e.message } : { name: typeof e, message: String(e) };
  }
}

/** f32 values of `b` whose bits differ from `a` (length mismatch counts every value). */
function bitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let n = 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) n++;
  return n;
}

function parity(results: Float32Array[], ref: Float32Array): ParityReport {
  const [r1, r2, r3] = results as [Float32Array, Float32Array, Float32Array];
  return { nmse: nmse(r1, ref), bitDiff2: bitDiff(r1, r2), bitDiff3: bitDiff(r1, r3), length: r1.length };
}

/** y = W x for a 300 x 256 q8_0 W: 81,600 weight bytes, over linear.ts PARALLEL_MIN_BYTES (64 KiB). */
function matvecCheck(arena: Arena, rts: KernelRuntime[]): { report: WorkerReport['matvec']; wOff: number; x: Float32Array; y: Float32Array } {
  const nOut = 300;
  const nIn = 256;
  const rng = mulberry32(7);
  const w = encodeArray('q8_0', normalArray(rng, nOut * nIn)); // [nOut, nIn] as q8_0 rows
  const x = normalArray(rng, nIn); // [nIn]
  const wOff = uploadWeights(arena, w);
  const ys = rts.map((rt) => wasmMatvec(rt, wOff, 'q8_0', nOut, nIn, x)); // each [nOut]
  const report = { ...parity(ys, refMatvec(w, 'q8_0', nOut, nIn, x)), nOut, nIn, weightBytes: w.length };
  return { report, wOff, x, y: ys[0]! };
}

/** Decode attention, GQA 14 q heads over 2 kv heads, headDim 64, 3,000 f16 keys (bshd, one segment). */
function attentionCheck(arena: Arena, rts: KernelRuntime[]): WorkerReport['attention'] {
  const nHeads = 14;
  const nKvHeads = 2;
  const headDim = 64;
  const nKeys = 3000;
  const rng = mulberry32(11);
  const k = encodeArray('f16', normalArray(rng, nKeys * nKvHeads * headDim)); // [nKeys, nKvHeads, headDim]
  const v = encodeArray('f16', normalArray(rng, nKeys * nKvHeads * headDim)); // same shape
  const kOff = arena.alloc(k.length);
  const vOff = arena.alloc(v.length);
  arena.bytes.set(k, kOff);
  arena.bytes.set(v, vOff);
  const rowBytes = headDim * 2;
  // Taken fresh per call: the arena's byte view changes when it grows.
  const view = (): KVView => ({
    bytes: arena.bytes, kDtype: 'f16', vDtype: 'f16', nKvHeads, headDim,
    kTokenStrideBytes: nKvHeads * rowBytes, kHeadStrideBytes: rowBytes,
    vTokenStrideBytes: nKvHeads * rowBytes, vHeadStrideBytes: rowBytes,
    segments: [{ kOffsetBytes: kOff, vOffsetBytes: vOff, nTokens: nKeys, pos0: 0 }], nTokens: nKeys,
  });
  const q = normalArray(rng, nHeads * headDim); // [1, nHeads, headDim]
  const pos = [nKeys - 1]; // the newest token, whose key is already in the cache
  const results = rts.map((rt) => wasmAttention(rt, q, pos, nHeads, view()));
  const ref = refAttention(q, pos, nHeads, view());
  let lseMaxErr = 0;
  for (let h = 0; h < nHeads; h++) lseMaxErr = Math.max(lseMaxErr, Math.abs(results[0]!.lse[h]! - ref.lse[h]!));
  const out = parity(results.map((r) => r.out), ref.out);
  const lse = parity(results.map((r) => r.lse), ref.lse);
  const plan = planAttention(1, nHeads, nKvHeads, headDim, 'f16', nKeys);
  return {
    ...out, bitDiff2: out.bitDiff2 + lse.bitDiff2, bitDiff3: out.bitDiff3 + lse.bitDiff3,
    nHeads, nKvHeads, headDim, nKeys, nItems: plan.nItems, nChunks: plan.nChunks, lseMaxErr,
  };
}

/** Traps in the worker's share only (thread 0 gets chunks 0-1 in bounds, the worker 2-3 past the memory's end). */
function trapCheck(arena: Arena, rt: KernelRuntime): Pick<WorkerReport, 'workerTrap' | 'localTrap' | 'sumsAfterTrap'> {
  const out = arena.alloc(4 * 4); // [4] f32, one sum per chunk
  const edge = arena.mappedBytes - 2 * CHUNK_BYTES;
  rt.args().ptr(edge).ptr(out).i32(CHUNK_BYTES);
  const workerTrap = errorOf(() => rt.parallelFor('probe_read', 0, 4));
  rt.args().ptr(edge + 2 * CHUNK_BYTES).ptr(out).i32(CHUNK_BYTES);
  const localTrap = errorOf(() => rt.runLocal('probe_read', 0, 1));
  const good = arena.alloc(4 * CHUNK_BYTES); // chunk c: 1024 floats of value c + 1
  for (let c = 0; c < 4; c++) arena.f32.fill(c + 1, good / 4 + c * 1024, good / 4 + (c + 1) * 1024);
  rt.args().ptr(good).ptr(out).i32(CHUNK_BYTES);
  rt.parallelFor('probe_read', 0, 4);
  return { workerTrap, localTrap, sumsAfterTrap: [...arena.f32.subarray(out / 4, out / 4 + 4)] };
}

/** A worker that exits during a job (its own arena, so the other runtimes stay untouched). */
async function crashCheck(): Promise<WorkerReport['crash']> {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  const rt = await KernelRuntime.start(arena, { nThreads: 2 });
  const src = arena.alloc(4 * CHUNK_BYTES);
  const out = arena.alloc(4 * 4);
  rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES);
  rt.parallelFor('probe_read', 0, 4); // healthy first
  rt.pool.crashWorkerForTest(0);
  const job = errorOf(() => rt.parallelFor('probe_read', 0, 4));
  const next = errorOf(() => rt.parallelFor('probe_read', 0, 4));
  rt.dispose();
  arena.dispose();
  return { job, next };
}

async function main(): Promise<WorkerReport> {
  const arena = new Arena({ initialBytes: 32 * MiB, maximumBytes: 256 * MiB });
  const blockingStart = errorOf(() => new KernelRuntime(arena, { nThreads: 2 }));
  const rts = [];
  for (const nThreads of [1, 2, 3]) rts.push(await KernelRuntime.start(arena, { nThreads }));
  const runtimes = rts.map((rt) => ({ nThreads: rt.nThreads, liveWorkers: rt.pool.liveWorkers }));
  const mv = matvecCheck(arena, rts);
  // The engine's switch returns the started 2-thread runtime; one token of matmul is the matvec.
  const ks = kernelsFor(arena, 2);
  const xOff = rts[1]!.stage('check.x', mv.x);
  const yOff = arena.alloc(mv.y.length * 4);
  ks.matmul(mv.wOff, 'q8_0', mv.report.nOut, mv.report.nIn, xOff, 1, yOff);
  const kernelSet = { nThreads: ks.nThreads, sameAsMatvec: bitDiff(arena.f32.slice(yOff / 4, yOff / 4 + mv.y.length), mv.y) === 0 };
  const attention = attentionCheck(arena, rts);
  const traps = trapCheck(arena, rts[1]!);
  const crash = await crashCheck();
  const rt3 = rts[2]!;
  rt3.dispose();
  const dispose = {
    stopped: rt3.pool.dispose(), // idempotent: whether every worker left its loop
    liveWorkers: rt3.pool.liveWorkers,
    job: errorOf(() => rt3.parallelFor('probe_read', 0, 4)),
  };
  for (const rt of rts) rt.dispose();
  arena.dispose();
  return {
    threadCanBlock: threadCanBlock(), variant: rts[0]!.variant, blockingStart, runtimes,
    matvec: mv.report, kernelSet, attention, ...traps, crash, dispose,
  };
}

main().then(
  (report) => postMessage(report),
  (e: unknown) => postMessage({ fatal: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e) }),
);
