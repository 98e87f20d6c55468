/**
 * `npm run bench -- kv-memory`: what each KV representation costs per token, and what the
 * quantized ones cost in attention accuracy, with and without a full-precision recent window
 * (KIVI, kv/mixed-precision-cache.ts).
 *
 *   memory:  bytes of K+V storage per token for every dtype, at the attention shapes of
 *            qwen2.5-0.5b (24 layers, 2 KV heads x 64), measured from the caches themselves
 *            (StaticCache, MixedPrecisionCache with a 128-token f16 window, PagedKVCache) at 8k.
 *   error:   decode attention at an 8k context (14 query heads / 2 KV heads x 64) of the same
 *            K/V stored f32 (the baseline, same run) vs each representation: relative L2 error
 *            of out and max |lse error|, through the reference kernels (the oracle) so that only
 *            storage differs.
 *
 * NOTE(1): The K/V are synthetic: normal keys with 4 outlier channels (x8, the pattern that makes
 *   per-token K quantization hard, KIVI section 3: KIVI quantizes K per channel for it; ours is per
 *   token, 32-value blocks) and queries aimed at one recent key and one old key plus
 *   noise, so attention is concentrated on recent tokens as in real decoders; and the same without
 *   outliers. The figures compare
 *   representations of the same data; they are not a claim about a particular model's accuracy.
 */
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { mulberry32, randn } from '../src/core/rng.js';
import { attention } from '../src/kernels/ref/attention.js';
import { mergeAttention } from '../src/kernels/ref/merge.js';
import type { AttentionResult } from '../src/kernels/types.js';
import { MixedPrecisionCache } from '../src/kv/mixed-precision-cache.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { mdTable, sig } from './table.js';

export interface KvMemoryOptions {
  log: (s: string) => void;
  /** Context of the error measurement; default 8192. */
  ctx?: number;
}

export interface MemoryRow {
  cache: string;
  kDtype: DType;
  vDtype: DType;
  recentTokens: number;
  bytesPerToken: number;
  vsF32: number;
}

export interface ErrorRow {
  data: string;
  /** Share of the f32 attention weight on the last RECENT keys (mean over queries and heads). */
  recentMass: number;
  cache: string;
  outRelError: number;
  maxLseError: number;
}

export interface KvMemoryResult {
  shape: { nLayers: number; nHeads: number; nKvHeads: number; headDim: number };
  ctx: number;
  memory: MemoryRow[];
  error: ErrorRow[];
}

const SHAPE = { nLayers: 24, nHeads: 14, nKvHeads: 2, headDim: 64 };
const DTYPES: DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
const RECENT = 128;
/** Queries per measurement (decode steps at the last positions). */
const N_QUERIES = 16;

export function benchKvMemory(o: KvMemoryOptions): KvMemoryResult {
  const ctx = o.ctx ?? 8192;
  const arena = new Arena();
  try {
    const memory = measureMemory(arena, ctx, o.log);
    const error = measureError(arena, ctx, o.log);
    return { shape: SHAPE, ctx, memory, error };
  } finally {
    arena.dispose();
  }
}

function measureMemory(arena: Arena, ctx: number, log: (s: string) => void): MemoryRow[] {
  const rows: MemoryRow[] = [];
  const base = { arena, nLayers: SHAPE.nLayers, nKvHeads: SHAPE.nKvHeads, headDim: SHAPE.headDim, batchSize: 1, maxSeqLen: ctx };
  let f32PerToken = 0;
  const push = (cache: string, kDtype: DType, vDtype: DType, recentTokens: number, bytes: number) => {
    const bytesPerToken = bytes / ctx;
    if (cache === 'static' && kDtype === 'f32') f32PerToken = bytesPerToken;
    rows.push({ cache, kDtype, vDtype, recentTokens, bytesPerToken, vsF32: bytesPerToken / f32PerToken });
    log(`  ${cache} K ${kDtype} / V ${vDtype}${recentTokens ? ` + ${recentTokens} f16 recent` : ''}: ${sig(bytesPerToken)} B/token`);
  };
  for (const d of DTYPES) {
    const c = new StaticCache({ ...base, kDtype: d, vDtype: d });
    push('static', d, d, 0, c.kvBytes);
    c.dispose();
  }
  for (const d of DTYPES) {
    // Pool sized for ctx tokens exactly (+ the null block, which is overhead and counted).
    const blockLen = 32;
    const c = new PagedKVCache({ ...base, kDtype: d, vDtype: d, nBlocks: 1 + ctx / blockLen, blockLen, fingerprint: 'bench' });
    push('paged (32-token blocks)', d, d, 0, c.storage.sizeBytes);
    c.dispose();
  }
  for (const [k, v] of [['q8_0', 'q8_0'], ['q4_0', 'q4_0'], ['q8_0', 'q4_0']] as const) {
    const c = new MixedPrecisionCache({ ...base, historyKDtype: k, historyVDtype: v, recentTokens: RECENT, recentDtype: 'f16' });
    push('KIVI (history + recent ring)', k, v, RECENT, c.kvBytes);
    c.dispose();
  }
  return rows;
}

/** [ctx, nKvHeads, headDim] keys with outlier channels, values, and queries aimed at a recent and an old key (NOTE(1)). */
function syntheticKV(ctx: number, outlier: number) {
  const { nHeads, nKvHeads, headDim } = SHAPE;
  const rng = mulberry32(20261123);
  const k = new Float32Array(ctx * nKvHeads * headDim); // [ctx, nKvHeads, headDim]
  const v = new Float32Array(ctx * nKvHeads * headDim); // [ctx, nKvHeads, headDim]
  for (let i = 0; i < k.length; i++) {
    const d = i % headDim;
    k[i] = randn(rng) * (d < 4 ? outlier : 1);
    v[i] = randn(rng);
  }
  const group = nHeads / nKvHeads;
  const q = new Float32Array(N_QUERIES * nHeads * headDim); // [N_QUERIES, nHeads, headDim]
  for (let t = 0; t < N_QUERIES; t++) {
    const pos = ctx - N_QUERIES + t;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      // Aim at one recent key (score ~9 before noise) and one old key (~7): q = sum of
      // target * sqrt(headDim) * k / |k|^2, plus unit noise.
      const recent = pos - Math.floor(rng() * 64);
      const old = Math.floor(rng() * (ctx - 512));
      const kr = k.subarray((recent * nKvHeads + g) * headDim, (recent * nKvHeads + g + 1) * headDim);
      const ko = k.subarray((old * nKvHeads + g) * headDim, (old * nKvHeads + g + 1) * headDim);
      const ar = (9 * Math.sqrt(headDim)) / sqNorm(kr);
      const ao = (7 * Math.sqrt(headDim)) / sqNorm(ko);
      // Noise divided by the channel's scale, so the outliers do not turn it into the main term.
      for (let d = 0; d < headDim; d++) q[(t * nHeads + h) * headDim + d] = ar * kr[d]! + ao * ko[d]! + randn(rng) / (d < 4 ? outlier : 1);
    }
  }
  return { k, v, q, positions: Int32Array.from({ length: N_QUERIES }, (_, t) => ctx - N_QUERIES + t) };
}

function sqNorm(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

function measureError(arena: Arena, ctx: number, log: (s: string) => void): ErrorRow[] {
  const rows: ErrorRow[] = [];
  for (const [name, outlier] of [['normal K', 1], ['K with 4 outlier channels x8', 8]] as const) rows.push(...errorsOn(arena, ctx, name, outlier, log));
  return rows;
}

function errorsOn(arena: Arena, ctx: number, dataName: string, outlier: number, log: (s: string) => void): ErrorRow[] {
  const { nHeads, nKvHeads, headDim } = SHAPE;
  const data = syntheticKV(ctx, outlier);
  const base = { arena, nLayers: 1, nKvHeads, headDim, batchSize: 1, maxSeqLen: ctx };
  /** Attention of the N_QUERIES decode queries, each over the keys up to its own position. */
  const dense = (kDtype: DType, vDtype: DType): AttentionResult => {
    const c = new StaticCache({ ...base, kDtype, vDtype, layout: 'bshd' });
    try {
      c.appendRow(0, 0, data.k, data.v);
      return attention(data.q, data.positions, nHeads, c.view(0, 0));
    } finally {
      c.dispose();
    }
  };
  const kivi = (kDtype: DType, vDtype: DType): AttentionResult => {
    const c = new MixedPrecisionCache({ ...base, historyKDtype: kDtype, historyVDtype: vDtype, recentTokens: RECENT, recentDtype: 'f16' });
    try {
      c.appendRow(0, 0, data.k, data.v);
      const [first, ...rest] = c.views(0, 0).map((view) => attention(data.q, data.positions, nHeads, view));
      return rest.reduce((acc, part) => mergeAttention(acc, part, headDim), first!);
    } finally {
      c.dispose();
    }
  };
  const ref = dense('f32', 'f32');
  const recentMass = massOfLastKeys(data, ref.lse, RECENT);
  log(`  ${dataName}: ${(100 * recentMass).toFixed(1)}% of the attention falls on the last ${RECENT} keys`);
  const rows: ErrorRow[] = [];
  const push = (cache: string, r: AttentionResult) => {
    let num = 0, den = 0, lseErr = 0;
    for (let i = 0; i < ref.out.length; i++) {
      num += (r.out[i]! - ref.out[i]!) ** 2;
      den += ref.out[i]! ** 2;
    }
    for (let i = 0; i < ref.lse.length; i++) lseErr = Math.max(lseErr, Math.abs(r.lse[i]! - ref.lse[i]!));
    rows.push({ data: dataName, recentMass, cache, outRelError: Math.sqrt(num / den), maxLseError: lseErr });
    log(`  ${dataName}, ${cache}: out rel. error ${sig(Math.sqrt(num / den))}, max |lse error| ${sig(lseErr)}`);
  };
  for (const d of ['f16', 'bf16', 'q8_0', 'q4_0'] as const) push(`${d} (every token)`, dense(d, d));
  push('K q8_0 / V q4_0 (every token)', dense('q8_0', 'q4_0'));
  for (const [k, v] of [['q8_0', 'q8_0'], ['q4_0', 'q4_0'], ['q8_0', 'q4_0']] as const) {
    push(`K ${k} / V ${v} + ${RECENT} f16 recent`, kivi(k, v));
  }
  return rows;
}

/** Mean over (query, head) of the softmax weight on keys at positions > pos - n (f32 scores, lse from the reference). */
function massOfLastKeys(data: ReturnType<typeof syntheticKV>, lse: Float32Array, n: number): number {
  const { nHeads, nKvHeads, headDim } = SHAPE;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  let total = 0;
  for (let t = 0; t < data.positions.length; t++) {
    const pos = data.positions[t]!;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const qo = (t * nHeads + h) * headDim;
      let mass = 0;
      for (let p = Math.max(0, pos - n + 1); p <= pos; p++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += data.q[qo + d]! * data.k[(p * nKvHeads + g) * headDim + d]!;
        mass += Math.exp(dot * scale - lse[t * nHeads + h]!);
      }
      total += mass;
    }
  }
  return total / (data.positions.length * nHeads);
}

export function kvMemoryTables(r: KvMemoryResult): string {
  const s = r.shape;
  return [
    `Memory per token (${s.nLayers} layers, ${s.nKvHeads} KV heads x ${s.headDim}; caches sized for ${r.ctx} tokens):`,
    '',
    mdTable(
      ['cache', 'K', 'V', 'recent window', 'bytes / token', 'vs f32'],
      r.memory.map((m) => [m.cache, m.kDtype, m.vDtype, m.recentTokens ? `${m.recentTokens} f16` : '-', sig(m.bytesPerToken, 4), sig(m.vsF32, 3)]),
    ),
    `Decode attention error vs the same K/V in f32 (${r.ctx}-token context, ${s.nHeads}/${s.nKvHeads} heads x ${s.headDim}, ${N_QUERIES} queries, reference kernels):`,
    '',
    mdTable(['K/V data', `attention on last ${RECENT} keys`, 'storage', 'out rel. L2 error', 'max abs lse error'], r.error.map((e) => [e.data, `${(100 * e.recentMass).toFixed(1)}%`, e.cache, sig(e.outRelError), sig(e.maxLseError)])),
  ].join('\n');
}
