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
 * NOTE(4): A LanguageModel has one cache: a generation claims it when it starts, and a step that
 *   finds another generation claimed it since throws StateError rather than mixing two sequences'
 *   K/V. Concurrent prompts belong on a PagedSession (generateMany).
 */
import { ConfigError, StateError } from '../core/errors.js';
import type { LanguageModel } from '../model/language-model.js';
import { TokenStream, type GenerateEvent, type GenerateOptions, type GenerateSummary } from './token-stream.js';

export type { GenerateEvent, GenerateOptions, GenerateSummary, StopReason } from './token-stream.js';

type StepFn = (history: readonly number[]) => Float32Array;

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
  const ts = new TokenStream(lm, promptIds, opts);
  if (promptIds.length + ts.maxTokens > lm.maxSeqLen) {
    throw new ConfigError('prompt + maxTokens', `at most the cache's ${lm.maxSeqLen} positions`, promptIds.length + ts.maxTokens);
  }
  const owner = lm.claimCache(); // NOTE(4)
  while (!ts.done && !ts.aborted()) {
    if (!lm.ownsCache(owner)) {
      throw new StateError('generation on this model', 'sole use of its cache until it ends', 'another generate() used the cache meanwhile (use generateMany with a PagedSession for concurrent prompts)');
    }
    const ev = ts.push(step(ts.history));
    if (ev) yield ev;
    await Promise.resolve(); // let an abort listener run between tokens
  }
  return ts.summary();
}

/** Run a generation to its end, handing each event to `onEvent`; its summary (any generator of events). */
export async function runToEnd<E, S>(it: AsyncGenerator<E, S>, onEvent?: (ev: E) => void): Promise<S> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    onEvent?.(r.value);
  }
}
