/**
 * The sampler: greedy, penalty formula, seeded determinism, and the filtered distributions
 * (top-k, top-p, min-p) checked by frequency over many seeded draws.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, ShapeError, StateError } from '../src/core/errors.js';
import { Sampler, argmaxOf, type SamplingOptions } from '../src/generate/sampler.js';

function freqs(opts: SamplingOptions, logits: number[], draws: number): number[] {
  const s = new Sampler(logits.length, opts);
  const x = Float32Array.from(logits);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[s.sample(x)]!++;
  return counts.map((c) => c / draws);
}

const LOG_PROBS = [Math.log(0.5), Math.log(0.3), Math.log(0.2)]; // softmax = [0.5, 0.3, 0.2]

test('greedy: argmax, first index on ties, NaN never chosen, nothing usable is a StateError', () => {
  const s = new Sampler(5);
  assert.equal(s.sample(Float32Array.from([1, 3, 3, -1, 2])), 1);
  assert.equal(s.sample(Float32Array.from([NaN, -5, NaN, -7, -6])), 1);
  assert.equal(argmaxOf([-Infinity, -Infinity, 0]), 2);
  assert.throws(() => s.sample(Float32Array.from([NaN, NaN, -Infinity, NaN, -Infinity])), StateError);
  assert.throws(() => s.sample(new Float32Array(4)), ShapeError);
});

test('repetition penalty: positive logits divided, negative multiplied, each distinct id once', () => {
  // Without penalty id 0 wins; with penalty 3 on ids [0, 0, 2]: 6 -> 2, -1 -> -3, so id 1 (5) wins.
  const s = new Sampler(3, { repetitionPenalty: 3 });
  const x = Float32Array.from([6, 5, -1]);
  assert.equal(s.sample(x, [0, 0, 2]), 1);
  assert.deepEqual([...x], [6, 5, -1], 'the caller\'s logits are not modified');
  assert.equal(s.sample(x, []), 0);
  // A penalty < 1 favors repeats: 4 / 0.5 = 8 beats 7.
  assert.equal(new Sampler(2, { repetitionPenalty: 0.5 }).sample(Float32Array.from([4, 7]), [0]), 0);
});

test('seeded: the same seed gives the same tokens, another seed other tokens', () => {
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
  const run = (seed: number) => {
    const s = new Sampler(50, { temperature: 1, seed });
    return Array.from({ length: 40 }, () => s.sample(logits));
  };
  assert.deepEqual(run(7), run(7));
  assert.notDeepEqual(run(7), run(8));
});

test('temperature 1 samples the softmax; temperature scales it; top-k 1 is greedy', () => {
  const f = freqs({ temperature: 1, seed: 1 }, LOG_PROBS, 40000);
  [0.5, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(f[i]! - p) < 0.01, `p[${i}] = ${f[i]}, want ${p}`));
  // T = 0.5 squares the ratios: 0.25 : 0.09 : 0.04 normalized.
  const g = freqs({ temperature: 0.5, seed: 2 }, LOG_PROBS, 40000);
  [0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38].forEach((p, i) => assert.ok(Math.abs(g[i]! - p) < 0.01, `T=0.5 p[${i}] = ${g[i]}, want ${p}`));
  assert.deepEqual(freqs({ temperature: 5, topK: 1, seed: 3 }, LOG_PROBS, 200), [1, 0, 0]);
});

test('top-k, top-p and min-p keep exactly the documented candidates, renormalized', () => {
  const k2 = freqs({ temperature: 1, topK: 2, seed: 4 }, LOG_PROBS, 30000);
  assert.equal(k2[2], 0);
  assert.ok(Math.abs(k2[0]! - 0.625) < 0.01, `top-k 2: ${k2}`);
  const p7 = freqs({ temperature: 1, topP: 0.7, seed: 5 }, LOG_PROBS, 30000);
  assert.equal(p7[2], 0, 'mass 0.5 + 0.3 reaches 0.7');
  assert.ok(Math.abs(p7[0]! - 0.625) < 0.01);
  assert.deepEqual(freqs({ temperature: 1, topP: 0.5, seed: 6 }, LOG_PROBS, 500), [1, 0, 0]);
  const m = freqs({ temperature: 1, minP: 0.5, seed: 7 }, LOG_PROBS, 30000);
  assert.equal(m[2], 0, '0.2 < 0.5 * 0.5');
  assert.ok(m[1]! > 0.3, `min-p keeps 0.3 >= 0.25: ${m}`);
});

test('invalid sampling options are ConfigErrors that name the option', () => {
  assert.throws(() => new Sampler(3, { temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler(3, { topP: 0 }), ConfigError);
  assert.throws(() => new Sampler(3, { topP: 1.5 }), ConfigError);
  assert.throws(() => new Sampler(3, { minP: 1 }), ConfigError);
  assert.throws(() => new Sampler(3, { topK: 1.5 }), ConfigError);
  assert.throws(() => new Sampler(3, { repetitionPenalty: 0 }), ConfigError);
  assert.throws(() => new Sampler(3, { seed: -1 }), ConfigError);
});
