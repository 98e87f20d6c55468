/**
 * One sequence's side of generation, independent of how its logits are computed: the sampler,
 * the history, streaming text, and the stops (eos ids, maxTokens, stop strings). generate(),
 * generateWithoutCache() and the batched generateMany() all drive one TokenStream per sequence.
 *
 * NOTE(1): Options the caller leaves out come from the model's generation_config.json (eos ids,
 *   sampling, max_new_tokens), then config.json's eos ids, then greedy / 128 tokens.
 * NOTE(2): A stop string ends the text where it starts: the text before it is yielded, the stop
 *   string and anything after it are dropped.
 */
import { ConfigError, checkInt } from '../core/errors.js';
import type { LanguageModel } from '../model/language-model.js';
import type { StreamDecoder } from '../model/tokenizer.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default: generation_config.json max_new_tokens, else 128. */
  maxTokens?: number;
  /** Default: generation_config.json's eos ids, else config.json's. */
  eosIds?: readonly number[];
  stop?: readonly string[];
  signal?: AbortSignal;
}

export interface GenerateEvent {
  readonly tokenId: number;
  /** New text this token completes (UTF-8 safe; '' while a character is incomplete). */
  readonly text: string;
}

export type StopReason = 'eos' | 'length' | 'stop' | 'abort' | 'capacity';

export interface GenerateSummary {
  readonly tokens: number[];
  readonly text: string;
  readonly promptTokens: number;
  readonly reason: StopReason;
  /** Time from the call to the first generated token (prefill + one sample), ms. */
  readonly prefillMs: number;
  readonly decodeTokensPerS: number;
}

export class TokenStream {
  readonly history: number[];
  readonly out: number[] = [];
  readonly maxTokens: number;
  text = '';
  reason: StopReason = 'length';
  /** No more tokens: a stop fired, maxTokens reached, or end() was called. */
  done: boolean;
  private readonly eos: ReadonlySet<number>;
  private readonly sampler: Sampler;
  private readonly decoder: StreamDecoder | undefined;
  private readonly t0 = performance.now();
  private tFirst = this.t0;
  private tEnd = 0;

  /** `seedOffset` is added to the seed (batched generation gives each prompt its own stream). */
  constructor(
    lm: LanguageModel,
    readonly promptIds: readonly number[],
    private readonly opts: GenerateOptions,
    seedOffset = 0,
  ) {
    if (promptIds.length === 0) throw new ConfigError('prompt', 'at least one token id', 0);
    const g = lm.generation;
    this.maxTokens = checkInt('maxTokens', opts.maxTokens ?? g.maxNewTokens ?? 128, 0);
    this.eos = new Set(opts.eosIds ?? g.eosTokenIds ?? lm.config.eosTokenIds);
    this.sampler = new Sampler(lm.config.vocabSize, {
      temperature: opts.temperature ?? g.temperature,
      topK: opts.topK ?? g.topK,
      topP: opts.topP ?? g.topP,
      minP: opts.minP ?? g.minP,
      repetitionPenalty: opts.repetitionPenalty ?? g.repetitionPenalty,
      seed: ((opts.seed ?? 0) + seedOffset) >>> 0,
    });
    this.decoder = lm.tokenizer?.streamDecoder();
    this.history = [...promptIds];
    this.done = this.maxTokens === 0;
  }

  /** True (and the stream ends with reason 'abort') when the caller's signal fired. */
  aborted(): boolean {
    if (this.opts.signal?.aborted) this.end('abort');
    return this.opts.signal?.aborted === true;
  }

  /** Sample the next token from `logits` and apply the stops; the event to yield, or null. */
  push(logits: Float32Array): GenerateEvent | null {
    const id = this.sampler.sample(logits, this.history);
    if (this.out.length === 0) this.tFirst = performance.now();
    this.history.push(id);
    this.out.push(id);
    if (this.eos.has(id)) {
      this.end('eos');
      return null;
    }
    let delta = this.decoder ? this.decoder.push(id) : '';
    const stopAt = findStop(this.text + delta, this.opts.stop, this.text.length);
    if (stopAt >= 0) {
      delta = (this.text + delta).slice(this.text.length, stopAt);
      this.text += delta;
      this.end('stop');
      return delta ? { tokenId: id, text: delta } : null;
    }
    this.text += delta;
    if (this.out.length >= this.maxTokens) this.end('length');
    return { tokenId: id, text: delta };
  }

  end(reason: StopReason): void {
    if (this.tEnd === 0) {
      this.reason = reason;
      this.tEnd = performance.now();
    }
    this.done = true;
  }

  summary(): GenerateSummary {
    const t1 = this.tEnd || performance.now();
    const n = this.out.length;
    const decodeS = (t1 - this.tFirst) / 1000;
    return { tokens: this.out, text: this.text, promptTokens: this.promptIds.length, reason: this.reason, prefillMs: this.tFirst - this.t0, decodeTokensPerS: n > 1 ? (n - 1) / decodeS : 0 };
  }
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
