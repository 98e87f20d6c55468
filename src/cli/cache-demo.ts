/**
 * `kvcache cache-demo`: the caches and attention kernels alone, on a real
 * model's attention shapes (Qwen2.5-0.5B: 24 layers, 14 query heads, 2 KV heads, headDim 64):
 *
 *   1. synthesises K/V/Q for `ctx` positions (seeded; keys carry a few large outlier channels,
 *      as real post-RoPE keys do, which is what makes low-bit KV hard);
 *   2. for every KV dtype: fills a StaticCache (prefill in chunks, then token-by-token decode
 *      appends), runs decode attention of the last position over every layer with the
 *      reference kernel, and measures the output error against the f32 cache;
 *   3. snapshots each cache to a temp file, loads it back, and checks the bytes are identical.
 *
 * Every figure printed is measured in this run.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../core/arena.js';
import { parseDType, rowSizeBytes, type DType } from '../core/dtype.js';
import { mulberry32, normalArray, type Rng } from '../core/rng.js';
import { attention } from '../kernels/ref/attention.js';
import { wasmAttention } from '../kernels/wasm/attention.js';
import { bestVariant } from '../kernels/wasm/load.js';
import { KernelRuntime } from '../kernels/wasm/runtime.js';
import { nmse } from '../kernels/tolerances.js';
import { loadCache, saveCache } from '../kv/cache-snapshot.js';
import { StaticCache } from '../kv/static-cache.js';

export interface CacheDemoOptions {
  ctx: number;
  layers: number;
  dtypes: string[];
  seed: number;
  json: boolean;
}

const SHAPE = { nHeads: 14, nKvHeads: 2, headDim: 64 } as const;
const PREFILL_CHUNK = 256;
const DECODE_TOKENS = 32;

interface DtypeReport {
  dtype: DType;
  kvBytesPerToken: number;
  kvMiB: number;
  appendTokensPerS: number;
  attentionMsPerToken: number;
  /** The same attention on the WASM kernels (all threads), or null under KVCACHE_KERNELS=ref. */
  wasmAttentionMsPerToken: number | null;
  outNmseVsF32: number;
  snapshotMiB: number;
  saveMs: number;
  loadMs: number;
  roundTripExact: boolean;
}

/** Synthetic K or V for one layer, [1, ctx, nKvHeads, headDim] (bshd, the order a model produces). */
function synthKV(rng: Rng, ctx: number, outliers: boolean): Float32Array {
  const { nKvHeads, headDim } = SHAPE;
  const a = normalArray(rng, ctx * nKvHeads * headDim);
  if (outliers) {
    // A few channels an order of magnitude larger, like the massive dims of real keys.
    for (let i = 0; i < a.length; i++) if (i % headDim === 3 || i % headDim === 41) a[i]! *= 12;
  }
  return a;
}

function fillCache(cache: StaticCache, ks: Float32Array[], vs: Float32Array[], ctx: number): number {
  const tokenFloats = SHAPE.nKvHeads * SHAPE.headDim;
  const prefill = ctx - Math.min(DECODE_TOKENS, ctx - 1);
  const t0 = performance.now();
  for (let l = 0; l < ks.length; l++) {
    for (let p = 0; p < prefill; p += PREFILL_CHUNK) {
      const end = Math.min(prefill, p + PREFILL_CHUNK);
      cache.append(l, ks[l]!.subarray(p * tokenFloats, end * tokenFloats), vs[l]!.subarray(p * tokenFloats, end * tokenFloats));
    }
  }
  for (let p = prefill; p < ctx; p++) {
    for (let l = 0; l < ks.length; l++) cache.append(l, ks[l]!.subarray(p * tokenFloats, (p + 1) * tokenFloats), vs[l]!.subarray(p * tokenFloats, (p + 1) * tokenFloats));
  }
  return (performance.now() - t0) / 1000;
}

function sameStorage(a: StaticCache, b: StaticCache): boolean {
  for (let l = 0; l < a.nLayers; l++) {
    const sa = a.storageOf(l), sb = b.storageOf(l);
    if (a.seqLen(l) !== b.seqLen(l)) return false;
    const bytesA = a.arena.bytes, bytesB = b.arena.bytes;
    for (const [oa, ob, n] of [[sa.kOffsetBytes, sb.kOffsetBytes, sa.k.sizeBytes], [sa.vOffsetBytes, sb.vOffsetBytes, sa.v.sizeBytes]] as const) {
      for (let i = 0; i < n; i++) if (bytesA[oa + i] !== bytesB[ob + i]) return false;
    }
  }
  return true;
}

export async function runCacheDemo(opts: CacheDemoOptions): Promise<void> {
  const dtypes = opts.dtypes.map((d) => parseDType(d.trim(), '--kv'));
  const { ctx, layers } = opts;
  const log = (s: string) => {
    if (!opts.json) process.stdout.write(s + '\n');
  };
  log(`kvcache demo: Qwen2.5-0.5B attention shapes (${layers} layers, ${SHAPE.nHeads} query heads, ${SHAPE.nKvHeads} KV heads, headDim ${SHAPE.headDim}), context ${ctx}`);
  const rng = mulberry32(opts.seed);
  const ks = Array.from({ length: layers }, () => synthKV(rng, ctx, true)); // each [ctx, nKvHeads, headDim]
  const vs = Array.from({ length: layers }, () => synthKV(rng, ctx, false));
  const qs = Array.from({ length: layers }, () => normalArray(rng, SHAPE.nHeads * SHAPE.headDim)); // each [1, nHeads, headDim]
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-demo-'));
  const arena = new Arena();
  const reports: DtypeReport[] = [];
  let reference: Float32Array[] | null = null;
  try {
    for (const dtype of ['f32' as DType, ...dtypes.filter((d) => d !== 'f32')]) {
      const cache = new StaticCache({ nLayers: layers, ...SHAPE, maxSeqLen: ctx, dtype, layout: 'bshd', arena });
      const appendS = fillCache(cache, ks, vs, ctx);
      const t0 = performance.now();
      const outs = qs.map((q, l) => attention(q, [ctx - 1], SHAPE.nHeads, cache.view(l)).out);
      const attnMs = performance.now() - t0;
      const rt = bestVariant() === 'ref' ? null : KernelRuntime.for(arena);
      let wasmMs: number | null = null;
      if (rt) {
        const fast = () => qs.map((q, l) => wasmAttention(rt, q, [ctx - 1], SHAPE.nHeads, cache.view(l)).out);
        fast(); // the first calls run in the baseline wasm tier
        const tw = performance.now();
        const outsFast = fast();
        wasmMs = performance.now() - tw;
        const diff = outsFast.reduce((m, o, l) => Math.max(m, nmse(o, outs[l]!)), 0);
        if (!(diff <= 1e-6)) throw new Error(`WASM attention differs from the reference: NMSE ${diff}`);
      }
      reference ??= outs;
      const err = outs.reduce((s, o, l) => s + nmse(o, reference![l]!), 0) / layers;
      const file = join(dir, `${dtype}.kvsnap`);
      const ts = performance.now();
      saveCache(cache, file);
      const saveMs = performance.now() - ts;
      const tl = performance.now();
      const loaded = loadCache(file, { arena }) as StaticCache;
      const loadMs = performance.now() - tl;
      const exact = sameStorage(cache, loaded);
      const perToken = layers * SHAPE.nKvHeads * (rowSizeBytes(dtype, SHAPE.headDim) * 2);
      const report: DtypeReport = {
        dtype,
        kvBytesPerToken: perToken,
        kvMiB: (perToken * ctx) / 2 ** 20,
        appendTokensPerS: ctx / appendS,
        attentionMsPerToken: attnMs,
        wasmAttentionMsPerToken: wasmMs,
        outNmseVsF32: err,
        snapshotMiB: statSync(file).size / 2 ** 20,
        saveMs,
        loadMs,
        roundTripExact: exact,
      };
      loaded.dispose();
      cache.dispose();
      if (dtypes.includes(dtype)) {
        reports.push(report);
        log(`  ${dtype.padEnd(5)} filled, attended and snapshotted (${report.kvMiB.toFixed(1)} MiB)`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    arena.dispose();
  }
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ctx, layers, shape: SHAPE, results: reports }) + '\n');
    return;
  }
  printTable(reports);
  if (reports.some((r) => !r.roundTripExact)) throw new Error('snapshot round trip was not bit-exact');
}

function printTable(reports: DtypeReport[]): void {
  const head = ['kv dtype', 'bytes/token', 'KV MiB', 'append tok/s', 'ref attn ms', 'wasm attn ms', 'speed-up', 'NMSE vs f32', 'snapshot MiB', 'save ms', 'load ms', 'round trip'];
  const rows = reports.map((r) => [
    r.dtype,
    String(r.kvBytesPerToken),
    r.kvMiB.toFixed(1),
    r.appendTokensPerS.toFixed(0),
    r.attentionMsPerToken.toFixed(1),
    r.wasmAttentionMsPerToken === null ? '-' : r.wasmAttentionMsPerToken.toFixed(2),
    r.wasmAttentionMsPerToken === null ? '-' : `${(r.attentionMsPerToken / r.wasmAttentionMsPerToken).toFixed(0)}x`,
    r.outNmseVsF32 === 0 ? '0 (reference)' : r.outNmseVsF32.toExponential(2),
    r.snapshotMiB.toFixed(1),
    r.saveMs.toFixed(0),
    r.loadMs.toFixed(0),
    r.roundTripExact ? 'bit-exact' : 'MISMATCH',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  process.stdout.write('\n' + line(head) + '\n' + line(widths.map((w) => '-'.repeat(w))) + '\n');
  for (const r of rows) process.stdout.write(line(r) + '\n');
  process.stdout.write('\n  append: prefill in 256-token chunks then 32 single-token decode appends, all layers;\n');
  process.stdout.write('  attn: decode attention of the last position over all layers (one token), with the reference\n');
  process.stdout.write('  (plain TS) kernel and with the WASM SIMD kernels on all threads (checked equal to the reference);\n');
  process.stdout.write('  NMSE: attention output vs the f32 cache.\n');
}
