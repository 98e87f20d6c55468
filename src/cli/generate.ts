/**
 * `kvcache generate`: load a checkpoint folder, run the prompt, stream the generated text, and
 * end with a report (or, with --json, print exactly the DESIGN.md object on stdout:
 * {"tokens":[...],"text":"...","promptTokens":N,"prefillMs":x,"decodeTokensPerS":y,"kvBytes":z}).
 *
 * NOTE(1): --prompt-ids uses exactly the given ids (no BOS); --prompt encodes the text with the
 *   checkpoint's tokenizer as it is configured; --chat wraps --prompt in the chat template as
 *   one user message with the generation prompt.
 */
import { ConfigError } from '../core/errors.js';
import { parseDType, type DType } from '../core/dtype.js';
import { generate, generateWithoutCache, runToEnd } from '../generate/generate.js';
import type { LanguageModel } from '../model/language-model.js';
import { sparseOptionsOf, sparseReport, type SparseCliOptions } from './sparse-options.js';
import { loadWithProgress } from './with-progress.js';

export interface GenerateCliOptions extends SparseCliOptions {
  model: string;
  prompt?: string;
  promptIds?: string;
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed: number;
  weights: string;
  kv: string;
  kvK?: string;
  kvV?: string;
  threads?: number;
  cache: boolean;
  chat?: boolean;
  json?: boolean;
  maxSeqLen?: number;
}

function promptIdsOf(lm: LanguageModel, o: GenerateCliOptions): number[] {
  if ((o.prompt === undefined) === (o.promptIds === undefined)) {
    throw new ConfigError('prompt', 'exactly one of --prompt TEXT or --prompt-ids 1,2,3', o.prompt === undefined ? 'neither' : 'both');
  }
  if (o.promptIds !== undefined) {
    const ids = o.promptIds.split(',').map((s) => Number(s.trim()));
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= lm.config.vocabSize);
    if (bad !== undefined) throw new ConfigError('--prompt-ids', `comma-separated integers in [0, ${lm.config.vocabSize})`, o.promptIds);
    return ids;
  }
  if (!lm.tokenizer) throw new ConfigError(`${o.model}/tokenizer.json`, 'a tokenizer for --prompt (or use --prompt-ids)', 'no tokenizer.json');
  if (o.chat) return lm.tokenizer.encodeChat([{ role: 'user', content: o.prompt! }]);
  return lm.tokenizer.encode(o.prompt!);
}

export async function runGenerate(o: GenerateCliOptions): Promise<void> {
  const dt = (s: string | undefined, what: string): DType | undefined => (s === undefined ? undefined : parseDType(s, what));
  const sparse = sparseOptionsOf(o);
  if (sparse && !o.cache) throw new ConfigError('--sparse', 'a cached run (sparse attention reads the cache)', '--no-cache');
  const lm = await loadWithProgress(o.model, {
    weights: dt(o.weights, '--weights'), kv: dt(o.kv, '--kv'), kvK: dt(o.kvK, '--kv-k'), kvV: dt(o.kvV, '--kv-v'), threads: o.threads,
    maxSeqLen: o.maxSeqLen, sparse,
  });
  try {
    const ids = promptIdsOf(lm, o);
    // Sampling flags left out take the checkpoint's generation_config.json defaults (generate()).
    const opts = {
      maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP, repetitionPenalty: o.repetitionPenalty, seed: o.seed,
    };
    const it = o.cache ? generate(lm, ids, opts) : generateWithoutCache(lm, ids, opts);
    const summary = await runToEnd(it, (ev) => {
      if (!o.json) process.stdout.write(ev.text);
    });
    const kvBytes = lm.kvBytesUsed;
    if (o.json) {
      const { tokens, text, promptTokens, prefillMs, decodeTokensPerS } = summary;
      process.stdout.write(JSON.stringify({ tokens, text, promptTokens, prefillMs, decodeTokensPerS, kvBytes }) + '\n');
      return;
    }
    process.stdout.write('\n');
    process.stderr.write(
      `\n[${summary.reason}] prompt ${summary.promptTokens} tokens, generated ${summary.tokens.length}; ` +
        `time to first token ${summary.prefillMs.toFixed(0)} ms, decode ${summary.decodeTokensPerS.toFixed(1)} tok/s; ` +
        `KV ${(kvBytes / 2 ** 20).toFixed(2)} MiB (${lm.kvDtypes.k}/${lm.kvDtypes.v}), kernels ${lm.ks.name} x${lm.ks.nThreads}` +
        `${o.cache ? '' : ', no cache (recomputes the sequence every step)'}\n`,
    );
    if (lm.sparse) process.stderr.write(sparseReport(lm.sparse) + '\n');
  } finally {
    lm.dispose();
  }
}
