/**
 * `npm run bench -- batch-decode [--preset qwen2.5-0.5b] [--weights q8_0] [--kv f16]`: aggregate
 * decode tokens/s of B concurrent sequences on one PagedSession (B = 1, 2, 4, 8), each beside its
 * roofline from limits measured in the same run (bench/wasm-probes.ts):
 *
 *   roofline time per step = max(bytes read / SIMD read bandwidth, FLOPs / peak SIMD FLOP rate)
 *     bytes = every weight matrix once (batching shares it) + every sequence's K/V
 *     FLOPs = B x 2 x (matrix parameters) + attention (4 x context x nHeads x headDim per layer)
 *
 * At B = 1 decode is memory-bound; batching multiplies FLOPs but not weight bytes, so on 2 cores
 * it turns compute-bound. Issue 5 goal: >= 0.7 of the batched roofline.
 */
import { rowSizeBytes } from '../src/core/dtype.js';
import { benchPrompt } from '../src/generate/e2e-bench.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { LanguageModel } from '../src/model/language-model.js';
import { PagedSession } from '../src/model/paged-session.js';
import type { LinearWeight } from '../src/model/weights-layout.js';
import { decodeStep, prefillSeq } from './session-steps.js';
import { benchModel, type ModelBenchOptions } from './model-options.js';
import { mdTable, sig } from './table.js';
import { runWasmProbes, type WasmProbes } from './wasm-probes.js';

export interface BatchDecodeOptions extends ModelBenchOptions {
  /** Decode steps timed per batch size. */
  tokens: number;
  /** Prompt tokens per sequence; default 128. */
  prompt?: number;
}

export interface BatchDecodeRow {
  batch: number;
  msPerStep: number;
  tokensPerS: number;
  rooflineMsPerStep: number;
  bound: 'memory' | 'compute';
  ofRoofline: number;
}

export interface BatchDecodeResult {
  model: string;
  weights: string;
  kv: string;
  promptTokens: number;
  steps: number;
  probes: WasmProbes;
  matrixBytes: number;
  matrixParams: number;
  rows: BatchDecodeRow[];
}

const BATCHES = [1, 2, 4, 8];

export async function benchBatchDecode(o: BatchDecodeOptions): Promise<BatchDecodeResult> {
  const { dir, weights, kv } = benchModel(o, 'qwen2.5-0.5b');
  const prompt = o.prompt ?? 128;
  const lm = await LanguageModel.load(dir, { weights, kv, threads: o.threads, maxSeqLen: 64 });
  try {
    const m = lm.model;
    const s = m.shape;
    const probes = runWasmProbes(m.arena, KernelRuntime.for(m.arena, { nThreads: o.threads }));
    o.log(`  probes: read ${sig(probes.readGBps)} GB/s, peak ${sig(probes.peakGflops)} GFLOP/s (${o.threads} threads)`);
    const mats: LinearWeight[] = [m.weights.lmHead];
    for (const L of m.weights.layers) mats.push(L.q, L.k, L.v, L.o, L.gate, L.up, L.down);
    const matrixBytes = mats.reduce((a, w) => a + w.nOut * rowSizeBytes(w.dtype, w.nIn), 0);
    const matrixParams = mats.reduce((a, w) => a + w.nOut * w.nIn, 0);
    const kvBytesPerToken = s.nLayers * s.nKvHeads * (rowSizeBytes(kv, s.headDim) * 2);
    const blockLen = 32;
    const maxB = Math.max(...BATCHES);
    const session = new PagedSession(lm, {
      kv, blockLen, maxSeqs: maxB, maxStepTokens: 128, nBlocks: 1 + maxB * Math.ceil((prompt + o.tokens + 8) / blockLen),
    });
    const rows: BatchDecodeRow[] = [];
    try {
      for (const batch of BATCHES) {
        // Distinct prompts: nothing shared through the prefix cache.
        const seqs: number[] = [];
        let tokens: number[] = [];
        for (let b = 0; b < batch; b++) {
          const ids = benchPrompt(prompt + b).slice(b);
          const { seq, cachedTokens } = session.cache.seqAdd(ids);
          seqs.push(seq);
          tokens.push(prefillSeq(session, seq, ids.slice(cachedTokens)));
        }
        tokens = decodeStep(session, seqs, tokens); // untimed first step
        const t0 = performance.now();
        for (let i = 0; i < o.tokens; i++) tokens = decodeStep(session, seqs, tokens);
        const msPerStep = (performance.now() - t0) / o.tokens;
        // Mean context over the timed steps: prompt + 1 + (steps + 1) / 2.
        const ctx = prompt + 1 + (o.tokens + 1) / 2;
        const bytes = matrixBytes + batch * ctx * kvBytesPerToken;
        const flops = batch * (2 * matrixParams + 4 * ctx * s.nHeads * s.headDim * s.nLayers);
        const memMs = (bytes / (probes.readGBps * 1e9)) * 1e3;
        const cmpMs = (flops / (probes.peakGflops * 1e9)) * 1e3;
        const rooflineMsPerStep = Math.max(memMs, cmpMs);
        const row: BatchDecodeRow = {
          batch, msPerStep, tokensPerS: (batch * 1000) / msPerStep, rooflineMsPerStep,
          bound: memMs >= cmpMs ? 'memory' : 'compute', ofRoofline: rooflineMsPerStep / msPerStep,
        };
        rows.push(row);
        o.log(`  batch ${batch}: ${sig(row.tokensPerS)} tok/s, ${sig(msPerStep)} ms/step, roofline ${sig(rooflineMsPerStep)} ms (${row.bound}-bound), ${sig(row.ofRoofline, 2)} of roofline`);
        for (const seq of seqs) session.cache.seqFree(seq);
      }
    } finally {
      session.dispose();
    }
    return { model: dir, weights, kv, promptTokens: prompt, steps: o.tokens, probes, matrixBytes, matrixParams, rows };
  } finally {
    lm.dispose();
  }
}

export function batchDecodeTables(r: BatchDecodeResult): string {
  const p = r.probes;
  return [
    `model ${r.model}, weights ${r.weights} (${sig(r.matrixBytes / 2 ** 20)} MiB of matrices), KV ${r.kv}, ${r.promptTokens}-token prompts, ${r.steps} timed steps;`,
    `same-run limits on ${p.threads} threads (${p.variant}): SIMD read ${sig(p.readGBps)} GB/s, peak SIMD ${sig(p.peakGflops)} GFLOP/s`,
    '',
    mdTable(
      ['sequences', 'aggregate tok/s', 'ms / step', 'roofline ms / step', 'bound', 'of roofline', 'vs 1 sequence'],
      r.rows.map((x) => [x.batch, sig(x.tokensPerS), sig(x.msPerStep), sig(x.rooflineMsPerStep), x.bound, sig(x.ofRoofline, 2), `${(x.tokensPerS / r.rows[0]!.tokensPerS).toFixed(2)}x`]),
    ),
  ].join('\n');
}
