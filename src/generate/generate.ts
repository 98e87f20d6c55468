/**
 * Streaming generation over a loaded model and a KV cache, and the no-cache baseline.
 *
 *   for await (const ev of generate(lm, promptIds, { maxTokens: 64, temperature: 0 })) {
 *     process.stdout.write(ev.text);        // text delta (may be '' mid-character)
 *   }
 *
 * NOTE(1): The prompt is prefilled in chunks of the workspace size; only the last chunk asks for
 *   logits, and only of its last token. Each decode step runs one token and reads one logits row.
 * NOTE(2): generateWithoutCache recomputes the whole sequence (prompt + generated so far) at every
 *   step, on a reset cache: the seed systems' uncached comparison. With greedy sampling both give
 *   the same tokens (tested); the ratio of their speeds is what the cache buys.
 * NOTE(3): Stops: eos ids (given, else generation_config.json's, else config.json's), maxTokens, stop strings
 *   (checked on the decoded text; the text up to the stop string is yielded, the rest dropped),
 *   and an AbortSignal (checked before every step; the generator then returns with reason 'abort').
 */
import { ConfigError, checkInt } from '../core/errors.js';
import type { LanguageModel } from '../model/language-model.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default: generation_config.json max_new_tokens, else 128. */
  maxTokens?: number;
  /** Default: the model's eos ids. */
  eosIds?: readonly number[];
  stop?: readonly string[];
  signal?: AbortSignal;
}

export interface GenerateEvent {
  readonly tokenId: number;
  /** New text this token completes (UTF-8 safe; '' while a character is incomplete). */
  readonly text: string;
}

export type StopReason = 'eos' | 'length' | 'stop' | 'abort';

export interface GenerateSummary {
  readonly tokens: number[];
  readonly text: string;
  readonly promptTokens: number;
  readonly reason: StopReason;
  /** Time from the call to the first generated token (prefill + one sample), ms. */
  readonly prefillMs: number;
  readonly decodeTokensPerS: number;
}

type StepFn = (history: readonly number[], nPrompt: number) => Float32Array;

/** Generate with the KV cache: prefill once, then one token per step. */
export function generate(lm: LanguageModel, promptIds: readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GenerateEvent, GenerateSummary> {
  let pos = 0;
  const step: StepFn = (history) => {
    if (pos === 0) lm.resetCache();
    // Decode steps feed one token without building an array (no allocation per token).
    const logits = history.length - pos === 1 ? lm.feedToken(history[pos]!, pos) : lm.feed(history.slice(pos), pos);
    pos = history.length;
    return logits;
  };
  return run(lm, promptIds, opts, step);
}

/** The uncached baseline (NOTE(2)). */
export function generateWithoutCache(lm: LanguageModel, promptIds: readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GenerateEvent, GenerateSummary> {
  const step: StepFn = (history) => {
    lm.resetCache();
    return lm.feed(history, 0);
  };
  return run(lm, promptIds, opts, step);
}

async function* run(lm: LanguageModel, promptIds: readonly number[], opts: GenerateOptions, step: StepFn): AsyncGenerator<GenerateEvent, GenerateSummary> {
  if (promptIds.length === 0) throw new ConfigError('prompt', 'at least one token id', 0);
  const g = lm.generation;
  const maxTokens = checkInt('maxTokens', opts.maxTokens ?? g.maxNewTokens ?? 128, 0);
  if (promptIds.length + maxTokens > lm.maxSeqLen) {
    throw new ConfigError('prompt + maxTokens', `at most the cache's ${lm.maxSeqLen} positions`, promptIds.length + maxTokens);
  }
  const eos = new Set(opts.eosIds ?? g.eosTokenIds ?? lm.config.eosTokenIds);
  const sampler = new Sampler(lm.config.vocabSize, {
    temperature: opts.temperature ?? g.temperature,
    topK: opts.topK ?? g.topK,
    topP: opts.topP ?? g.topP,
    minP: opts.minP ?? g.minP,
    repetitionPenalty: opts.repetitionPenalty ?? g.repetitionPenalty,
    seed: opts.seed,
  });
  const decoder = lm.tokenizer?.streamDecoder();
  const history = [...promptIds];
  const out: number[] = [];
  let text = '';
  let reason: StopReason = 'length';
  const t0 = performance.now();
  let tFirst = t0;
  while (out.length < maxTokens) {
    if (opts.signal?.aborted) {
      reason = 'abort';
      break;
    }
    const logits = step(history, promptIds.length);
    const id = sampler.sample(logits, history);
    if (out.length === 0) tFirst = performance.now();
    history.push(id);
    out.push(id);
    if (eos.has(id)) {
      reason = 'eos';
      break;
    }
    let delta = decoder ? decoder.push(id) : '';
    const stopAt = findStop(text + delta, opts.stop, text.length);
    if (stopAt >= 0) {
      delta = (text + delta).slice(text.length, stopAt);
      text += delta;
      if (delta) yield { tokenId: id, text: delta };
      reason = 'stop';
      break;
    }
    text += delta;
    yield { tokenId: id, text: delta };
    await Promise.resolve(); // let an abort listener run between tokens
  }
  const t1 = performance.now();
  const decodeS = (t1 - tFirst) / 1000;
  return { tokens: out, text, promptTokens: promptIds.length, reason, prefillMs: tFirst - t0, decodeTokensPerS: out.length > 1 ? (out.length - 1) / decodeS : 0 };
}

/** Index where the first stop string starts in `s` (searching from near `from`), or -1. */
function findStop(s: string, stops: readonly string[] | undefined, from: number): number {
  if (!stops || stops.length === 0) return -1;
  let best = -1;
  for (const st of stops) {
    if (st === '') continue;
    const i = s.indexOf(st, Math.max(0, from - st.length + 1));
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
