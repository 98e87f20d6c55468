/**
 * The model runtime with block-sparse decode attention (LanguageModel `sparse` option,
 * model/sparse-sequence.ts): teacher-forced logits against the dense cache. Selecting every block
 * gives the dense logits (within f32 rounding, blocks in another order); a small selection
 * changes them, reads fewer keys, and its measured attention error is what it says.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { StateError } from '../src/core/errors.js';
import { argmaxOf } from '../src/generate/sampler.js';
import { generate, runToEnd } from '../src/generate/generate.js';
import { nmse } from '../src/kernels/tolerances.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';
import type { SparseSequenceOptions } from '../src/model/sparse-sequence.js';

const PROMPT = Array.from({ length: 300 }, (_, i) => (i * 7919 + 11) % 5000);
const STEPS = 40; // crosses a 32-token block boundary during decode
let root = '';
let arena: Arena;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-sparse-model-'));
  makeModel({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 7, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
});
after(() => {
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

/** Prompt then STEPS forced tokens; the logits after the prompt and after each token. */
function logitsRun(lm: LanguageModel, forced: readonly number[]): Float32Array[] {
  lm.resetCache();
  const out = [Float32Array.from(lm.feed(PROMPT, 0))];
  for (let s = 0; s < STEPS; s++) out.push(Float32Array.from(lm.feedToken(forced[s]!, PROMPT.length + s)));
  return out;
}

async function load(sparse?: SparseSequenceOptions): Promise<LanguageModel> {
  return LanguageModel.load(join(root, 'tiny'), { arena, kv: 'f32', maxSeqLen: 512, chunk: 64, sparse });
}

test('sparse decode selecting every block equals dense decode; a small selection reads fewer keys and differs', async () => {
  const dense = await load();
  let forced: number[];
  let ref: Float32Array[];
  try {
    const r = await runToEnd(generate(dense, PROMPT, { maxTokens: STEPS, temperature: 0, eosIds: [] }));
    forced = r.tokens;
    ref = logitsRun(dense, forced);
  } finally {
    dense.dispose();
  }
  // Every block selected through the selection path (no dense fallback), every anchor type.
  for (const anchorType of ['quest', 'dynamic', 'block_mean'] as const) {
    const lm = await load({ blockLen: 32, pick: 64, init: 1, local: 1, denseLayers: 0, tokenStep: 3, denseFallback: false, anchorType });
    try {
      const got = logitsRun(lm, forced);
      for (let s = 0; s < got.length; s++) assert.ok(nmse(got[s]!, ref[s]!) < 1e-10, `${anchorType} step ${s}: nmse ${nmse(got[s]!, ref[s]!)}`);
      const st = lm.sparse!.stats;
      assert.equal(st.steps, STEPS);
      assert.equal(st.attendedKeys, st.denseKeys, 'every key attended');
      assert.ok(st.selections > 0 && st.selections < STEPS * 2, `selections every tokenStep: ${st.selections}`);
    } finally {
      lm.dispose();
    }
  }
  // A small selection: 1 init + 2 picked + 1 local block of 32 (+ the tail) out of ~11.
  const lm = await load({ blockLen: 32, pick: 2, init: 1, local: 1, denseLayers: 1, tokenStep: 1, anchorType: 'quest', measureError: true });
  try {
    const got = logitsRun(lm, forced);
    assert.ok(nmse(got[0]!, ref[0]!) < 1e-10, 'prefill is dense');
    const worst = Math.max(...got.slice(1).map((g, s) => nmse(g, ref[s + 1]!)));
    assert.ok(worst > 1e-8, `sparse logits differ from dense (worst nmse ${worst})`);
    const st = lm.sparse!.stats;
    assert.ok(st.attendedKeys < 0.6 * st.denseKeys, `attended ${st.attendedKeys} of ${st.denseKeys} keys`);
    const rel = Math.sqrt(st.errSq / st.refSq);
    assert.ok(rel > 0 && rel < 1, `relative attention error ${rel}`);
    assert.equal(argmaxOf(got[0]!), forced[0]);
    assert.throws(() => lm.cache, StateError);
    assert.deepEqual(lm.kvDtypes, { k: 'f32', v: 'f32' });
    // reset: the same run again gives the same logits bit for bit (no state left behind).
    const again = logitsRun(lm, forced);
    for (let s = 0; s < got.length; s++) assert.deepEqual(again[s], got[s], `step ${s} after reset`);
  } finally {
    lm.dispose();
  }
});

test('setCache switches between dense and sparse and keeps generating the same greedy tokens with every block selected', async () => {
  const lm = await load();
  try {
    const opts = { maxTokens: 16, temperature: 0, eosIds: [] as number[] };
    const a = await runToEnd(generate(lm, PROMPT, opts));
    lm.setCache({ kv: 'f32', maxSeqLen: 512, sparse: { blockLen: 32, pick: 64, local: 1, denseLayers: 0, denseFallback: false, anchorType: 'block_max' } });
    const b = await runToEnd(generate(lm, PROMPT, opts));
    assert.deepEqual(b.tokens, a.tokens);
    assert.ok(lm.kvBytesUsed > 0);
    lm.setCache({ kv: 'f32', maxSeqLen: 512 });
    assert.equal(lm.sparse, null);
    const c = await runToEnd(generate(lm, PROMPT, opts));
    assert.deepEqual(c.tokens, a.tokens);
  } finally {
    lm.dispose();
  }
});
