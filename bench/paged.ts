/**
 * `npm run bench -- paged [--preset small] [--weights q8_0]`: what batching on the paged cache
 * buys. The same B prompts (B = 1, 2, 4, 8) are generated one after another with generate() on the
 * model's single cache (the baseline, same run) and together with generateMany() on a PagedSession,
 * where every step reads each weight matrix once for all sequences. Reports aggregate generated
 * tokens/s of both and whether the greedy tokens agree.
 */
import { benchPrompt } from '../src/generate/e2e-bench.js';
import { generate, runToEnd, type GenerateSummary } from '../src/generate/generate.js';
import { generateMany } from '../src/generate/generate-many.js';
import { LanguageModel } from '../src/model/language-model.js';
import { PagedSession } from '../src/model/paged-session.js';
import { benchModel, type ModelBenchOptions } from './model-options.js';

export interface PagedSuiteOptions extends ModelBenchOptions {
  tokens: number;
}

export interface PagedRow {
  batch: number;
  sequentialTokensPerS: number;
  batchedTokensPerS: number;
  speedup: number;
  sameTokens: boolean;
}

export interface PagedResult {
  model: string;
  weights: string;
  kv: string;
  tokens: number;
  promptTokens: number;
  rows: PagedRow[];
}

export async function benchPaged(o: PagedSuiteOptions): Promise<PagedResult> {
  const { dir, weights, kv } = benchModel(o);
  const promptTokens = 32;
  const lm = await LanguageModel.load(dir, { weights, kv, threads: o.threads, maxSeqLen: promptTokens + o.tokens + 8 });
  const rows: PagedRow[] = [];
  try {
    const opts = { maxTokens: o.tokens, temperature: 0, eosIds: [] as number[] };
    // Distinct prompts (no shared prefix: the prefix cache must not flatter the batched side).
    const prompts = (b: number) => Array.from({ length: b }, (_, i) => benchPrompt(promptTokens + i).slice(i));
    await runToEnd(generate(lm, prompts(1)[0]!, { ...opts, maxTokens: 4 })); // warm-up
    for (const batch of [1, 2, 4, 8]) {
      const ps = prompts(batch);
      const t0 = performance.now();
      const seq: GenerateSummary[] = [];
      for (const p of ps) seq.push(await runToEnd(generate(lm, p, opts)));
      const t1 = performance.now();
      const session = new PagedSession(lm, { kv, maxSeqs: batch, maxStepTokens: Math.max(64, batch), nBlocks: 1 + batch * Math.ceil((promptTokens + o.tokens + 8) / 32) });
      let many: GenerateSummary[];
      const t2 = performance.now();
      try {
        many = await runToEnd(generateMany(session, ps, opts));
      } finally {
        session.dispose();
      }
      const t3 = performance.now();
      const total = batch * o.tokens;
      const row: PagedRow = {
        batch, sequentialTokensPerS: total / ((t1 - t0) / 1000), batchedTokensPerS: total / ((t3 - t2) / 1000), speedup: (t1 - t0) / (t3 - t2),
        sameTokens: many.every((m, i) => m.tokens.join() === seq[i]!.tokens.join()),
      };
      rows.push(row);
      o.log(`  batch ${batch}: sequential ${row.sequentialTokensPerS.toFixed(1)} tok/s, batched ${row.batchedTokensPerS.toFixed(1)} tok/s (${row.speedup.toFixed(2)}x), tokens ${row.sameTokens ? 'identical' : 'differ'}`);
    }
  } finally {
    lm.dispose();
  }
  return { model: dir, weights, kv, tokens: o.tokens, promptTokens, rows };
}

export function pagedTables(r: PagedResult): string {
  const lines = [
    `model ${r.model}, weights ${r.weights}, KV ${r.kv}, ${r.promptTokens}-token prompts, ${r.tokens} generated tokens each, greedy`,
    '',
    '| prompts | one after another (generate) tok/s | together (generateMany, paged) tok/s | speed-up | same tokens |',
    '|---:|---:|---:|---:|---|',
  ];
  for (const x of r.rows) {
    lines.push(`| ${x.batch} | ${x.sequentialTokensPerS.toFixed(1)} | ${x.batchedTokensPerS.toFixed(1)} | ${x.speedup.toFixed(2)}x | ${x.sameTokens ? 'yes' : 'no'} |`);
  }
  return lines.join('\n') + '\n';
}
