/**
 * `npm run bench -- cache`: cache append, reference decode attention and snapshot throughput
 * on Qwen2.5-0.5B attention shapes (14 query heads, 2 KV heads, headDim 64), for every KV dtype,
 * beside same-run probes (native memcpy, plain-JS read loop).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { DTYPE_NAMES, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { mulberry32, normalArray } from '../src/core/rng.js';
import { attention } from '../src/kernels/ref/attention.js';
import { loadCache, saveCache } from '../src/kv/cache-snapshot.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { timeIt, type Probes } from './probes.js';
import { mdTable, sig } from './table.js';

const SHAPE = { nHeads: 14, nKvHeads: 2, headDim: 64 } as const;

export interface CacheBenchRow {
  dtype: DType;
  ctx: number;
  appendTokensPerS: number;
  attnMsPerCall: number;
  attnKvGBps: number;
  attnFractionOfJsProbe: number;
}

export interface SnapshotBenchRow {
  dtype: DType;
  layers: number;
  ctx: number;
  fileMiB: number;
  saveMBps: number;
  loadMBps: number;
}

export interface CacheBenchResult {
  probes: Probes;
  attention: CacheBenchRow[];
  snapshot: SnapshotBenchRow[];
}

export function benchCache(probes: Probes, ctxs: number[], log: (s: string) => void): CacheBenchResult {
  log(`probes: memcpy ${probes.memcpyGBps.toFixed(2)} GB/s, plain-JS read ${probes.jsReadGBps.toFixed(2)} GB/s`);
  const rng = mulberry32(7);
  const arena = new Arena();
  const rows: CacheBenchRow[] = [];
  const maxCtx = Math.max(...ctxs);
  const k = normalArray(rng, maxCtx * SHAPE.nKvHeads * SHAPE.headDim); // [maxCtx, nKvHeads, headDim]
  const v = normalArray(rng, k.length);
  const q = normalArray(rng, SHAPE.nHeads * SHAPE.headDim); // [1, nHeads, headDim]
  const tokenFloats = SHAPE.nKvHeads * SHAPE.headDim;
  for (const dtype of DTYPE_NAMES) {
    for (const ctx of ctxs) {
      const cache = new StaticCache({ nLayers: 1, ...SHAPE, maxSeqLen: ctx, dtype, layout: 'bshd', arena });
      const appendSec = timeIt(() => {
        cache.reset();
        for (let p = 0; p < ctx; p += 256) cache.append(0, k.subarray(p * tokenFloats, Math.min(ctx, p + 256) * tokenFloats), v.subarray(p * tokenFloats, Math.min(ctx, p + 256) * tokenFloats));
      }, 0.3);
      const view = cache.view(0);
      const attnSec = timeIt(() => attention(q, [ctx - 1], SHAPE.nHeads, view), 0.3);
      const kvBytes = ctx * SHAPE.nKvHeads * 2 * rowSizeBytes(dtype, SHAPE.headDim);
      const row: CacheBenchRow = {
        dtype,
        ctx,
        appendTokensPerS: ctx / appendSec,
        attnMsPerCall: attnSec * 1000,
        attnKvGBps: kvBytes / attnSec / 1e9,
        attnFractionOfJsProbe: kvBytes / attnSec / 1e9 / probes.jsReadGBps,
      };
      rows.push(row);
      log(`  cache ${dtype} ctx ${ctx}: append ${row.appendTokensPerS.toFixed(0)} tok/s, ref attention ${row.attnMsPerCall.toFixed(2)} ms`);
      cache.dispose();
    }
  }
  const snapshot = benchSnapshot(arena, log);
  arena.dispose();
  return { probes, attention: rows, snapshot };
}

function benchSnapshot(arena: Arena, log: (s: string) => void): SnapshotBenchRow[] {
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-bench-'));
  const out: SnapshotBenchRow[] = [];
  const layers = 24, ctx = 2048;
  const rng = mulberry32(9);
  const kv = normalArray(rng, ctx * SHAPE.nKvHeads * SHAPE.headDim);
  try {
    for (const dtype of ['f16', 'q8_0'] as const) {
      const cache = new StaticCache({ nLayers: layers, ...SHAPE, maxSeqLen: ctx, dtype, layout: 'bshd', arena });
      for (let l = 0; l < layers; l++) cache.append(l, kv, kv);
      const file = join(dir, `${dtype}.kvsnap`);
      const bytes = layers * ctx * SHAPE.nKvHeads * 2 * rowSizeBytes(dtype, SHAPE.headDim);
      const saveSec = timeIt(() => saveCache(cache, file), 0.5);
      const loadSec = timeIt(() => loadCache(file, { arena }).dispose(), 0.5);
      const row = { dtype, layers, ctx, fileMiB: bytes / 2 ** 20, saveMBps: bytes / saveSec / 1e6, loadMBps: bytes / loadSec / 1e6 };
      out.push(row);
      log(`  snapshot ${dtype}: save ${row.saveMBps.toFixed(0)} MB/s, load ${row.loadMBps.toFixed(0)} MB/s`);
      cache.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

/** The markdown tables of a cache run. */
export function cacheTables(r: CacheBenchResult): string {
  const p = r.probes;
  const attn = mdTable(
    ['kv dtype', 'ctx', 'append tok/s', 'ref decode attention ms', 'KV read GB/s', 'vs plain-JS probe'],
    r.attention.map((a) => [a.dtype, a.ctx, a.appendTokensPerS.toFixed(0), a.attnMsPerCall.toFixed(2), a.attnKvGBps.toFixed(3), a.attnFractionOfJsProbe.toFixed(2)]),
  );
  const snap = mdTable(
    ['snapshot', 'layers x ctx', 'MiB', 'save MB/s', 'load MB/s', 'memcpy MB/s (probe)'],
    r.snapshot.map((s) => [s.dtype, `${s.layers} x ${s.ctx}`, s.fileMiB.toFixed(1), s.saveMBps.toFixed(0), s.loadMBps.toFixed(0), (p.memcpyGBps * 1000).toFixed(0)]),
  );
  return `probes: memcpy ${sig(p.memcpyGBps)} GB/s, plain-JS read ${sig(p.jsReadGBps)} GB/s\n\n${attn}\n${snap}`;
}
