/**
 * Logits, not just tokens: cached and uncached generation agree within LOGITS_TOLERANCES.f32 at
 * every step, and each KV dtype stays within its own bound of the f32-KV logits (the same tokens
 * fed to both, teacher-forced). Also checks the bounds are not vacuous: a cache that drops the
 * last position's K/V (the classic off-by-one) is caught by far.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { LOGITS_TOLERANCES, nmse } from '../src/kernels/tolerances.js';
import { argmaxOf } from '../src/generate/sampler.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';

const PRESETS = ['tiny', 'tiny-llama'] as const;
const PROMPT = Array.from({ length: 40 }, (_, i) => (i * 7919 + 11) % 5000); // crosses 2 prefill chunks of 16
const STEPS = 12;
let root = '';
let arena: Arena;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-logits-'));
  for (const preset of PRESETS) makeModel({ preset, outDir: join(root, preset), seed: 5, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
});
after(() => {
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

interface Run {
  /** [STEPS + 1] logits rows: after the prompt, then after each fed token. */
  logits: Float32Array[];
  tokens: number[];
}

/**
 * Prompt, then STEPS tokens: the run's own greedy choice, or `forced` when given. Cached feeds one
 * token per step; uncached resets and feeds the whole sequence every step.
 */
function run(lm: LanguageModel, cached: boolean, forced?: readonly number[]): Run {
  lm.resetCache();
  const seq = [...PROMPT];
  const logits = [Float32Array.from(lm.feed(seq, 0))];
  for (let s = 0; s < STEPS; s++) {
    seq.push(forced ? forced[s]! : argmaxOf(logits[s]!));
    if (cached) logits.push(Float32Array.from(lm.feed([seq[seq.length - 1]!], seq.length - 1)));
    else {
      lm.resetCache();
      logits.push(Float32Array.from(lm.feed(seq, 0)));
    }
  }
  return { logits, tokens: seq.slice(PROMPT.length) };
}

async function withModel<T>(preset: string, kv: DType, fn: (lm: LanguageModel) => T): Promise<T> {
  const lm = await LanguageModel.load(join(root, preset), { kv, arena, maxSeqLen: 128, chunk: 16 });
  try {
    return fn(lm);
  } finally {
    lm.dispose();
  }
}

const worst = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((x, i) => nmse(x, b[i]!)));

for (const preset of PRESETS) {
  test(`${preset}: cached == uncached (tokens, logits within ${LOGITS_TOLERANCES.f32}) for every KV dtype; each dtype within its bound of f32 KV`, async () => {
    const [ref, unc] = await withModel(preset, 'f32', (lm) => [run(lm, true), run(lm, false)] as const);
    assert.deepEqual(unc.tokens, ref.tokens, 'uncached greedy tokens');
    assert.ok(worst(unc.logits, ref.logits) <= LOGITS_TOLERANCES.f32, `uncached logits NMSE ${worst(unc.logits, ref.logits)}`);
    for (const kv of ['f16', 'bf16', 'q8_0', 'q4_0'] as const) {
      const [c, u, free] = await withModel(preset, kv, (lm) => [run(lm, true, ref.tokens), run(lm, false, ref.tokens), run(lm, true)] as const);
      const vsF32 = worst(c.logits, ref.logits);
      assert.ok(vsF32 <= LOGITS_TOLERANCES[kv], `${kv} KV logits vs f32 KV: NMSE ${vsF32} > ${LOGITS_TOLERANCES[kv]}`);
      assert.ok(worst(u.logits, c.logits) <= LOGITS_TOLERANCES.f32, `${kv} KV: uncached vs cached logits NMSE ${worst(u.logits, c.logits)}`);
      // f16 and bf16 KV keep f32 KV's greedy tokens on these models (top-1 margins >> their error).
      if (kv === 'f16' || kv === 'bf16') assert.deepEqual(free.tokens, ref.tokens, `${kv} KV greedy tokens`);
    }
  });
}

test('the bounds are not vacuous: logits computed without the newest position are far outside every bound', async () => {
  const ref = await withModel('tiny', 'f32', (lm) => run(lm, true));
  // Logits of step s+1 compared with those of step s: what a cache that lost the last row would give.
  const shifted = worst(ref.logits.slice(1), ref.logits.slice(0, -1));
  assert.ok(shifted > 4 * LOGITS_TOLERANCES.q4_0, `NMSE between consecutive steps ${shifted}`);
});
