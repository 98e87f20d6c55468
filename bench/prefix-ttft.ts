/**
 * `npm run bench -- prefix-ttft [--preset qwen2.5-0.5b] [--weights q8_0] [--kv f16]`: time to first
 * token of a prompt whose first 2,048 tokens are in the prefix cache, plus 32 new ones, vs the same
 * prompt cold (the baseline, same run, same session settings). Issue 5 goal: warm <= 5% of cold.
 *
 *   cold:  a fresh PagedSession; seqAdd(shared + tailA) finds nothing; prefill 2,080 tokens.
 *   warm:  seqAdd(shared + tailB) on the same session finds the 64 full blocks of `shared`
 *          (chained hashes, kv/paged/block-hash.ts); only 32 tokens are computed.
 */
import { benchPrompt } from '../src/generate/e2e-bench.js';
import { LanguageModel } from '../src/model/language-model.js';
import { PagedSession } from '../src/model/paged-session.js';
import { prefillSeq } from './session-steps.js';
import { benchModel, type ModelBenchOptions } from './model-options.js';
import { mdTable, sig } from './table.js';

export interface PrefixTtftOptions extends ModelBenchOptions {
  /** Cached prefix tokens; default 2048 (a multiple of the 32-token block). */
  cached?: number;
  /** New tokens after the prefix; default 32. */
  fresh?: number;
}

export interface PrefixTtftResult {
  model: string;
  weights: string;
  kv: string;
  cachedTokens: number;
  freshTokens: number;
  coldMs: number;
  warmMs: number;
  warmHitTokens: number;
  warmOverCold: number;
  sameFirstToken: boolean;
}

export async function benchPrefixTtft(o: PrefixTtftOptions): Promise<PrefixTtftResult> {
  const { dir, weights, kv } = benchModel(o, 'qwen2.5-0.5b');
  const cached = o.cached ?? 2048;
  const fresh = o.fresh ?? 32;
  const lm = await LanguageModel.load(dir, { weights, kv, threads: o.threads, maxSeqLen: 64 });
  const blockLen = 32;
  const perSeqBlocks = Math.ceil((cached + fresh + 1) / blockLen);
  const session = new PagedSession(lm, { kv, blockLen, maxStepTokens: 256, maxSeqs: 4, nBlocks: 1 + 3 * perSeqBlocks });
  try {
    const shared = benchPrompt(cached);
    const tail = (seed: number) => Array.from({ length: fresh }, (_, i) => 3000 + ((seed * 131 + i * 17) % 5000));
    // Warm-up: a short prompt of its own, so the timed runs do not pay first-call costs.
    const w = session.cache.seqAdd(tail(9)).seq;
    prefillSeq(session, w, tail(9));
    session.cache.seqFree(w);
    session.cache.clearPrefixCache();

    const promptA = [...shared, ...tail(1)];
    const t0 = performance.now();
    const a = session.cache.seqAdd(promptA);
    const firstA = prefillSeq(session, a.seq, promptA.slice(a.cachedTokens));
    const coldMs = performance.now() - t0;
    if (a.cachedTokens !== 0) throw new Error(`cold run found ${a.cachedTokens} cached tokens`);
    o.log(`  cold: ${promptA.length} tokens computed, first token after ${sig(coldMs)} ms`);

    const promptB = [...shared, ...tail(2)];
    const t1 = performance.now();
    const b = session.cache.seqAdd(promptB);
    prefillSeq(session, b.seq, promptB.slice(b.cachedTokens));
    const warmMs = performance.now() - t1;
    o.log(`  warm: ${b.cachedTokens} tokens from the prefix cache, ${promptB.length - b.cachedTokens} computed, first token after ${sig(warmMs)} ms`);

    // Same prompt as A through the prefix cache: its first token must equal A's cold one.
    const c = session.cache.seqAdd(promptA);
    const firstC = prefillSeq(session, c.seq, promptA.slice(c.cachedTokens));
    return {
      model: dir, weights, kv, cachedTokens: cached, freshTokens: fresh, coldMs, warmMs, warmHitTokens: b.cachedTokens,
      warmOverCold: warmMs / coldMs, sameFirstToken: firstA === firstC,
    };
  } finally {
    session.dispose();
    lm.dispose();
  }
}

export function prefixTtftTables(r: PrefixTtftResult): string {
  return `model ${r.model}, weights ${r.weights}, KV ${r.kv}, 32-token blocks, 256-token prefill chunks\n\n` + mdTable(
    ['prompt', 'cold TTFT ms', 'warm TTFT ms', 'tokens from cache (warm)', 'warm / cold', 'same first token (cached vs cold)'],
    [[`${r.cachedTokens} shared + ${r.freshTokens} new`, sig(r.coldMs), sig(r.warmMs), r.warmHitTokens, `${(100 * r.warmOverCold).toFixed(1)}%`, r.sameFirstToken ? 'yes' : 'no']],
  );
}
