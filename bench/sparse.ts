/**
 * `npm run bench -- sparse [--preset qwen2.5-0.5b-long] [--ctx 8192,32768] [--weights q8_0]
 * [--kv f16] [--decode-tokens 32] [--llama-cpp]`: decode speed at long context with block-sparse
 * attention (model/sparse-sequence.ts) against dense attention on the same cache, and against
 * llama.cpp's dense decode (node-llama-cpp, same GGUF-exported weights, same threads, same
 * context) in the same run; plus the attention-output error of sparse vs dense on that cache.
 *
 * Per context: one prompt (benchPrompt ids, as the llama.cpp side), prefilled once (dense);
 *   1. sparse decode of N tokens, timed;
 *   2. dense decode of N more tokens over the same blocks (forceDense: pick -1), timed;
 *   3. M tokens with measureError: per layer and step, the sparse output against the dense
 *      attention of the same query on the same cache (relative L2 error).
 *
 * NOTE(1): The default preset has the attention shapes of Qwen2.5-0.5B (14/2 heads x 64) in 8
 *   layers so a 32k prefill takes ~10 minutes on 2 cores (issue 6 allows fewer layers); with 8
 *   layers the default of 2 dense first layers would leave a quarter of the model dense, so
 *   denseLayers is 0 here (ktransformers keeps 2 of 32 dense). With few layers the 151936 x 896
 *   lm_head is a large share of every decode step whatever the attention (BENCHMARKS.md).
 *   Selection: blocks of 128, init 1, pick 32, local 4 (512 tokens), QUEST anchors (no
 *   importance pass needed), LAYER retrieval.
 */
import type { DType } from '../src/core/dtype.js';
import { benchPrompt } from '../src/generate/e2e-bench.js';
import { argmaxOf } from '../src/generate/sampler.js';
import { LanguageModel } from '../src/model/language-model.js';
import type { SparseSequenceOptions } from '../src/model/sparse-sequence.js';
import { ensureGguf, llamaCppRows } from './e2e.js';
import { benchModel, type ModelBenchOptions } from './model-options.js';
import { mdTable, sig } from './table.js';

export interface SparseSuiteOptions extends ModelBenchOptions {
  ctxs: number[] | null;
  decodeTokens: number;
  llamaCpp: boolean;
}

export interface SparseRow {
  ctx: number;
  prefillMs: number;
  sparseTokensPerS: number;
  denseTokensPerS: number;
  llamaCppTokensPerS: number | null;
  attendedFraction: number;
  outRelError: number;
}

export interface SparseResult {
  model: string;
  weights: DType;
  kv: DType;
  threads: number;
  sparse: SparseSequenceOptions;
  decodeTokens: number;
  rows: SparseRow[];
}

const SPARSE: SparseSequenceOptions = { blockLen: 128, init: 1, pick: 32, local: 4, anchorType: 'quest', retrievalType: 'layer', denseLayers: 0 };
/** Decode steps of the error measurement (part 3). */
const ERROR_TOKENS = 8;

export async function benchSparse(o: SparseSuiteOptions): Promise<SparseResult> {
  const { dir, weights, kv } = benchModel(o, 'qwen2.5-0.5b-long');
  const ctxs = o.ctxs ?? [8192, 32768];
  const N = o.decodeTokens;
  const lm = await LanguageModel.load(dir, { weights, kv, threads: o.threads, chunk: 256, maxSeqLen: 64 });
  const rows: SparseRow[] = [];
  try {
    for (const ctx of ctxs) {
      lm.setCache({ kv, maxSeqLen: ctx + 2 * N + ERROR_TOKENS + 16, sparse: SPARSE });
      const sq = lm.sparse!;
      const prompt = benchPrompt(ctx);
      o.log(`  ctx ${ctx}: prefill (dense) ...`);
      const t0 = performance.now();
      let next = argmaxOf(lm.feed(prompt, 0));
      const prefillMs = performance.now() - t0;
      let pos = ctx;
      const decode = (n: number): number => {
        const a = performance.now();
        for (let i = 0; i < n; i++) next = argmaxOf(lm.feedToken(next, pos++));
        return (n * 1000) / (performance.now() - a);
      };
      decode(2); // untimed: the decode path's first calls (V8 tiers, scratch) and the first selection
      Object.assign(sq.stats, { attendedKeys: 0, denseKeys: 0 });
      const sparseTokensPerS = decode(N);
      const attendedFraction = sq.stats.attendedKeys / sq.stats.denseKeys;
      sq.forceDense = true;
      const denseTokensPerS = decode(N);
      sq.forceDense = false;
      sq.measureError = true;
      const e0 = { err: sq.stats.errSq, ref: sq.stats.refSq };
      decode(ERROR_TOKENS);
      sq.measureError = false;
      const outRelError = Math.sqrt((sq.stats.errSq - e0.err) / (sq.stats.refSq - e0.ref));
      rows.push({ ctx, prefillMs, sparseTokensPerS, denseTokensPerS, llamaCppTokensPerS: null, attendedFraction, outRelError });
      o.log(`  ctx ${ctx}: prefill ${sig(prefillMs / 1000)} s; decode sparse ${sig(sparseTokensPerS)} tok/s (${(100 * attendedFraction).toFixed(1)}% of keys), dense ${sig(denseTokensPerS)} tok/s; attention error ${sig(outRelError)}`);
    }
  } finally {
    lm.dispose();
  }
  if (o.llamaCpp) {
    const gguf = ensureGguf(dir, weights, o.log);
    for (const r of llamaCppRows(gguf, [kv], ctxs, { decodeTokens: N, threads: o.threads, log: o.log })) {
      rows.find((x) => x.ctx === r.ctx)!.llamaCppTokensPerS = r.decodeTokensPerS;
    }
  }
  return { model: dir, weights, kv, threads: o.threads, sparse: SPARSE, decodeTokens: N, rows };
}

export function sparseTables(r: SparseResult): string {
  const s = r.sparse;
  return [
    `model ${r.model}, weights ${r.weights}, KV ${r.kv}, ${r.threads} threads, ${r.decodeTokens} decode tokens per row;`,
    `sparse: blocks of ${s.blockLen}, init ${s.init} + pick ${s.pick} + local ${s.local} (+ the tail), ${s.anchorType} anchors, ${s.retrievalType} retrieval, ${s.denseLayers} dense layers`,
    '',
    mdTable(
      ['context', 'prefill s', 'keys read (sparse)', 'decode tok/s sparse', 'decode tok/s dense (same cache)', 'decode tok/s llama.cpp (dense)', 'sparse / dense', 'sparse / llama.cpp', 'attention rel. error'],
      r.rows.map((x) => [
        x.ctx, sig(x.prefillMs / 1000), `${(100 * x.attendedFraction).toFixed(1)}%`, sig(x.sparseTokensPerS), sig(x.denseTokensPerS),
        x.llamaCppTokensPerS === null ? '-' : sig(x.llamaCppTokensPerS), `${(x.sparseTokensPerS / x.denseTokensPerS).toFixed(2)}x`,
        x.llamaCppTokensPerS === null ? '-' : `${(x.sparseTokensPerS / x.llamaCppTokensPerS).toFixed(2)}x`, sig(x.outRelError),
      ]),
    ),
  ].join('\n');
}
