/**
 * The end-to-end benchmark behind `kvcache bench` and `npm run bench -- e2e`: a real checkpoint,
 * the real generate() loop, timed. For each KV dtype and context: prefill tokens/s, time to first
 * token, decode tokens/s at that context; KV bytes per token for every dtype; and the speed-up the
 * cache gives over recomputing the sequence every step, at `speedupTokens` generated tokens.
 *
 * NOTE(1): Prompts are the fixed ids 1000 + (i * 7919 mod 20000), the same ids the llama.cpp side
 *   of bench/e2e.ts feeds (scripts/llama-cpp.mjs), so both engines process identical tokens.
 * NOTE(2): eos is ignored (eosIds []) so every run decodes exactly the tokens asked for. Decode
 *   tokens/s counts the tokens after the first (the first one closes the prefill: TTFT).
 * NOTE(3): One model load for all dtypes and contexts: setCache() swaps the cache, the weights stay.
 *   A short warm-up generation runs first so V8's optimizing wasm tier is in place before timing.
 */
import { rowSizeBytes, DTYPE_NAMES, type DType } from '../core/dtype.js';
import { checkInt } from '../core/errors.js';
import type { LanguageModel } from '../model/language-model.js';
import { generate, generateWithoutCache, runToEnd } from './generate.js';

export interface E2EBenchOptions {
  /** KV dtypes timed (K and V the same). */
  kvDtypes: readonly DType[];
  /** Prompt lengths. */
  ctxs: readonly number[];
  /** Tokens decoded after each prompt. Default 32. */
  decodeTokens?: number;
  /** Tokens generated cached and uncached for the speed-up (0 = skip). Default 512. */
  speedupTokens?: number;
  /** Prompt length of the speed-up runs. Default 16. */
  speedupPromptTokens?: number;
  log?: (s: string) => void;
}

export interface E2ERun {
  kv: DType;
  ctx: number;
  prefillTokensPerS: number;
  timeToFirstTokenMs: number;
  decodeTokensPerS: number;
  kvBytes: number;
}

export interface E2ESpeedup {
  kv: DType;
  promptTokens: number;
  tokens: number;
  cachedMs: number;
  uncachedMs: number;
  speedup: number;
  cachedDecodeTokensPerS: number;
  uncachedDecodeTokensPerS: number;
  sameTokens: boolean;
}

export interface E2EResult {
  kernels: string;
  threads: number;
  /** KV bytes per token for every dtype (all layers, K + V). */
  kvBytesPerToken: Record<DType, number>;
  runs: E2ERun[];
  speedup: E2ESpeedup | null;
}

/** The fixed prompt of `n` tokens (NOTE(1)). */
export function benchPrompt(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % 20000));
}

export async function runE2EBench(lm: LanguageModel, o: E2EBenchOptions): Promise<E2EResult> {
  const log = o.log ?? (() => undefined);
  const decodeTokens = checkInt('decodeTokens', o.decodeTokens ?? 32, 2);
  const speedupTokens = checkInt('speedupTokens', o.speedupTokens ?? 512, 0);
  const speedupPrompt = checkInt('speedupPromptTokens', o.speedupPromptTokens ?? 16, 1);
  for (const c of o.ctxs) checkInt('ctx', c, 1);
  const s = lm.config;
  const kvBytesPerToken = Object.fromEntries(DTYPE_NAMES.map((d) => [d, s.nLayers * s.nKvHeads * 2 * rowSizeBytes(d, s.headDim)])) as Record<DType, number>;
  const capacity = Math.max(...o.ctxs.map((c) => c + decodeTokens), speedupPrompt + speedupTokens, 80) + 8;
  const runs: E2ERun[] = [];
  for (const kv of o.kvDtypes) {
    lm.setCache({ kv, maxSeqLen: capacity });
    await runToEnd(generate(lm, benchPrompt(70), { maxTokens: 3, temperature: 0, eosIds: [] })); // warm-up (NOTE(3))
    for (const ctx of o.ctxs) {
      const r = await runToEnd(generate(lm, benchPrompt(ctx), { maxTokens: decodeTokens, temperature: 0, eosIds: [] }));
      const run: E2ERun = {
        kv, ctx, prefillTokensPerS: ctx / (r.prefillMs / 1000), timeToFirstTokenMs: r.prefillMs, decodeTokensPerS: r.decodeTokensPerS, kvBytes: lm.kvBytesUsed,
      };
      runs.push(run);
      log(`  kv ${kv} ctx ${ctx}: prefill ${run.prefillTokensPerS.toFixed(0)} tok/s (TTFT ${run.timeToFirstTokenMs.toFixed(0)} ms), decode ${run.decodeTokensPerS.toFixed(1)} tok/s`);
    }
  }
  let speedup: E2ESpeedup | null = null;
  if (speedupTokens > 0 && o.kvDtypes.length > 0) {
    const kv = o.kvDtypes[0]!;
    lm.setCache({ kv, maxSeqLen: capacity });
    const prompt = benchPrompt(speedupPrompt);
    const opts = { maxTokens: speedupTokens, temperature: 0, eosIds: [] };
    log(`  speed-up: ${speedupTokens} tokens after a ${speedupPrompt}-token prompt, kv ${kv}, with the cache ...`);
    const t0 = performance.now();
    const c = await runToEnd(generate(lm, prompt, opts));
    const t1 = performance.now();
    log(`  ... and without it (every step recomputes the sequence; this is the slow part) ...`);
    const u = await runToEnd(generateWithoutCache(lm, prompt, opts));
    const t2 = performance.now();
    speedup = {
      kv, promptTokens: speedupPrompt, tokens: speedupTokens, cachedMs: t1 - t0, uncachedMs: t2 - t1, speedup: (t2 - t1) / (t1 - t0),
      cachedDecodeTokensPerS: c.decodeTokensPerS, uncachedDecodeTokensPerS: u.decodeTokensPerS,
      sameTokens: c.tokens.length === u.tokens.length && c.tokens.every((t, i) => t === u.tokens[i]),
    };
    log(`  speed-up ${speedup.speedup.toFixed(1)}x (${speedup.cachedMs.toFixed(0)} ms vs ${speedup.uncachedMs.toFixed(0)} ms), tokens ${speedup.sameTokens ? 'identical' : 'differ'}`);
  }
  return { kernels: lm.ks.name, threads: lm.ks.nThreads, kvBytesPerToken, runs, speedup };
}

/** Markdown tables of a result (what BENCHMARKS.md holds). */
export function e2eTables(r: E2EResult): string {
  const lines = ['| KV dtype | context | prefill tok/s | time to first token ms | decode tok/s | KV bytes |', '|---|---:|---:|---:|---:|---:|'];
  for (const x of r.runs) {
    lines.push(`| ${x.kv} | ${x.ctx} | ${x.prefillTokensPerS.toFixed(0)} | ${x.timeToFirstTokenMs.toFixed(0)} | ${x.decodeTokensPerS.toFixed(1)} | ${x.kvBytes.toLocaleString('en-US')} |`);
  }
  lines.push('', '| KV dtype | ' + DTYPE_NAMES.join(' | ') + ' |', '|---|' + DTYPE_NAMES.map(() => '---:').join('|') + '|');
  lines.push('| KV bytes per token | ' + DTYPE_NAMES.map((d) => r.kvBytesPerToken[d].toLocaleString('en-US')).join(' | ') + ' |');
  const s = r.speedup;
  if (s) {
    lines.push('', '| with vs without cache | prompt | generated | with cache ms | without ms | speed-up | decode tok/s with / without | same tokens |', '|---|---:|---:|---:|---:|---:|---:|---|');
    lines.push(`| kv ${s.kv} | ${s.promptTokens} | ${s.tokens} | ${s.cachedMs.toFixed(0)} | ${s.uncachedMs.toFixed(0)} | ${s.speedup.toFixed(1)}x | ${s.cachedDecodeTokensPerS.toFixed(1)} / ${s.uncachedDecodeTokensPerS.toFixed(1)} | ${s.sameTokens ? 'yes' : 'no'} |`);
  }
  return lines.join('\n') + '\n';
}
