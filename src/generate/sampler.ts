/**
 * Next-token sampling: greedy, or temperature + top-k + top-p + min-p, with a repetition
 * penalty, from a seeded generator (same seed, same logits -> same tokens on every machine).
 *
 * Order of operations, as Hugging Face transformers applies its logits processors:
 *   1. repetition penalty over the distinct ids seen so far (prompt + generated):
 *      logit < 0 ? logit * penalty : logit / penalty
 *   2. greedy (temperature 0): argmax, first index on ties; otherwise
 *   3. logits / temperature -> keep the top-k -> keep the smallest prefix (by probability,
 *      descending) whose mass reaches top-p -> drop tokens with p < min-p * p_max -> sample.
 *
 * NOTE(1): No allocation per token: candidate ids and probabilities live in buffers sized to the
 *   vocabulary once. Only candidates within CUTOFF_NATS of the max logit (after temperature)
 *   are sorted: each dropped token has p < e^-40 relative to the best, so over a 152k vocabulary
 *   the dropped mass is < 1e-12 and no top-p threshold can tell the difference.
 * NOTE(2): NaN logits are never chosen (treated as -Infinity); if no logit is above
 *   -Infinity the sampler throws StateError rather than returning a made-up id.
 */
import { ConfigError, ShapeError, StateError, checkInt } from '../core/errors.js';
import { mulberry32, type Rng } from '../core/rng.js';

export interface SamplingOptions {
  /** 0 = greedy (the default). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK?: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP?: number;
  /** Drop tokens below minP * p(best), in [0, 1); 0 = off. */
  minP?: number;
  /** > 0; 1 = off. */
  repetitionPenalty?: number;
  /** Seed of the generator (uint32). Default 0. */
  seed?: number;
}

export interface ResolvedSampling {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  readonly seed: number;
}

const CUTOFF_NATS = 40;

export function resolveSampling(o: SamplingOptions = {}): ResolvedSampling {
  const num = (name: string, v: number, ok: boolean, expected: string) => {
    if (typeof v !== 'number' || !ok) throw new ConfigError(`sampling ${name}`, expected, v);
    return v;
  };
  const t = o.temperature ?? 0;
  const p = o.topP ?? 1;
  const m = o.minP ?? 0;
  const r = o.repetitionPenalty ?? 1;
  return {
    temperature: num('temperature', t, Number.isFinite(t) && t >= 0, 'a finite number >= 0'),
    topK: checkInt('sampling topK', o.topK ?? 0, 0),
    topP: num('topP', p, p > 0 && p <= 1, 'a number in (0, 1]'),
    minP: num('minP', m, m >= 0 && m < 1, 'a number in [0, 1)'),
    repetitionPenalty: num('repetitionPenalty', r, Number.isFinite(r) && r > 0, 'a finite number > 0'),
    seed: checkInt('sampling seed', o.seed ?? 0, 0, 0xffffffff),
  };
}

export class Sampler {
  readonly params: ResolvedSampling;
  readonly vocabSize: number;
  private readonly rng: Rng;
  private readonly ids: Int32Array; // [vocabSize] candidate ids
  private readonly probs: Float64Array; // [vocabSize] candidate weights, aligned with ids
  private readonly seen: Uint8Array; // [vocabSize] 1 if the id was penalized this step
  private readonly work: Float32Array; // [vocabSize] penalized logits

  constructor(vocabSize: number, opts: SamplingOptions = {}) {
    this.vocabSize = checkInt('vocabSize', vocabSize, 1);
    this.params = resolveSampling(opts);
    this.rng = mulberry32(this.params.seed);
    this.ids = new Int32Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
    this.work = new Float32Array(vocabSize);
  }

  /** Pick the next id from `logits` [vocabSize]; `history` = ids so far (for the penalty). */
  sample(logits: Float32Array, history: ArrayLike<number> = []): number {
    if (logits.length !== this.vocabSize) throw new ShapeError('logits length (vocabSize)', this.vocabSize, logits.length);
    const x = this.penalize(logits, history);
    return this.params.temperature === 0 ? argmaxOf(x) : this.draw(x);
  }

  private penalize(logits: Float32Array, history: ArrayLike<number>): Float32Array {
    const pen = this.params.repetitionPenalty;
    if (pen === 1 || history.length === 0) return logits;
    const x = this.work;
    x.set(logits);
    for (let i = 0; i < history.length; i++) {
      const id = history[i]!;
      if (id < 0 || id >= this.vocabSize || this.seen[id]) continue;
      this.seen[id] = 1;
      x[id] = x[id]! < 0 ? x[id]! * pen : x[id]! / pen;
    }
    for (let i = 0; i < history.length; i++) {
      const id = history[i]!;
      if (id >= 0 && id < this.vocabSize) this.seen[id] = 0;
    }
    return x;
  }

  private draw(x: Float32Array): number {
    const { temperature, topK, topP, minP } = this.params;
    const top = argmaxOf(x);
    const best = x[top]!;
    if (best === Infinity) return top;
    const cutoff = best - CUTOFF_NATS * temperature;
    let n = 0;
    for (let i = 0; i < x.length; i++) {
      if (x[i]! >= cutoff) this.ids[n++] = i; // NaN fails the comparison and is dropped
    }
    const ids = this.ids.subarray(0, n);
    ids.sort((a, b) => x[b]! - x[a]! || a - b);
    if (topK > 0 && topK < n) n = topK;
    let total = 0;
    for (let j = 0; j < n; j++) total += this.probs[j] = Math.exp((x[ids[j]!]! - best) / temperature);
    if (topP < 1) n = nucleus(this.probs, n, total, topP);
    if (minP > 0) {
      const floor = minP * this.probs[0]!;
      let keep = 1;
      while (keep < n && this.probs[keep]! >= floor) keep++;
      n = keep;
    }
    let mass = 0;
    for (let j = 0; j < n; j++) mass += this.probs[j]!;
    let u = this.rng() * mass;
    for (let j = 0; j < n; j++) {
      u -= this.probs[j]!;
      if (u < 0) return ids[j]!;
    }
    return ids[n - 1]!;
  }
}

/** Smallest prefix of `probs` (descending) whose mass reaches topP of `total`; at least 1. */
function nucleus(probs: Float64Array, n: number, total: number, topP: number): number {
  let acc = 0;
  for (let j = 0; j < n; j++) {
    acc += probs[j]!;
    if (acc >= topP * total) return j + 1;
  }
  return n;
}

/** Index of the largest value, first on ties, NaN never chosen; StateError if no value > -Infinity. */
export function argmaxOf(x: ArrayLike<number>): number {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > bestV) {
      best = i;
      bestV = v;
    }
  }
  if (best < 0) throw new StateError('sampling', 'at least one logit above -Infinity (not NaN)', 'none');
  return best;
}
