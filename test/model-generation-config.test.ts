/**
 * generation_config.json: parsing with transformers' semantics, typed errors naming the file
 * and key, and generate() taking its eos ids, sampling and max_new_tokens when the caller
 * leaves them out (explicit options still win).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { ConfigError } from '../src/core/errors.js';
import { generate, type GenerateEvent, type GenerateSummary } from '../src/generate/generate.js';
import { GREEDY_DEFAULTS, loadGenerationConfig, parseGenerationConfig } from '../src/model/generation-config.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';

let root = '';
let dir = '';
let arena: Arena;
const PROMPT = [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13];

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-gencfg-'));
  dir = join(root, 'tiny');
  makeModel({ preset: 'tiny', outDir: dir, seed: 3, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
});
after(() => {
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function tokensOf(it: AsyncGenerator<GenerateEvent, GenerateSummary>): Promise<GenerateSummary> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

test('parse: do_sample false is greedy whatever the temperature; do_sample true takes transformers defaults', () => {
  const greedy = parseGenerationConfig({ do_sample: false, temperature: 0.7, top_k: 20, eos_token_id: [5, 6], repetition_penalty: 1.1 });
  assert.deepEqual(greedy, { ...GREEDY_DEFAULTS, eosTokenIds: [5, 6], repetitionPenalty: 1.1 });
  assert.deepEqual(parseGenerationConfig({ do_sample: true }), { eosTokenIds: null, temperature: 1, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: null });
  const full = parseGenerationConfig({ do_sample: true, temperature: 0.7, top_k: 0, top_p: 0.8, min_p: 0.05, eos_token_id: 9, max_new_tokens: 33 });
  assert.deepEqual(full, { eosTokenIds: [9], temperature: 0.7, topK: 0, topP: 0.8, minP: 0.05, repetitionPenalty: 1, maxNewTokens: 33 });
  assert.deepEqual(parseGenerationConfig({}), GREEDY_DEFAULTS);
});

test('parse errors are ConfigErrors naming the file and key', () => {
  assert.throws(() => parseGenerationConfig([], 'g.json'), ConfigError);
  assert.throws(() => parseGenerationConfig({ do_sample: 'yes' }, 'g.json'), /g\.json: do_sample: expected true or false, given yes/);
  assert.throws(() => parseGenerationConfig({ do_sample: true, top_p: 1.5 }, 'g.json'), /g\.json: top_p/);
  assert.throws(() => parseGenerationConfig({ do_sample: true, top_k: -1 }, 'g.json'), /g\.json: top_k/);
  assert.throws(() => parseGenerationConfig({ eos_token_id: ['a'] }, 'g.json'), /g\.json: eos_token_id/);
  const bad = join(root, 'bad');
  makeModel({ preset: 'tiny', outDir: bad, seed: 1, dtype: 'bf16' });
  writeFileSync(join(bad, 'generation_config.json'), '{ not json');
  assert.throws(() => loadGenerationConfig(bad), (e: unknown) => e instanceof ConfigError && e.message.includes(join(bad, 'generation_config.json')));
  assert.deepEqual(loadGenerationConfig(root), GREEDY_DEFAULTS, 'no file: greedy defaults');
});

test('generate() uses the file when options are left out; explicit options win', async () => {
  const sampled = { temperature: 0.9, topK: 40, topP: 0.95, seed: 7 };
  const load = () => LanguageModel.load(dir, { arena, maxSeqLen: 64 });
  // As shipped by make-model: greedy, eos ids of the preset.
  let lm = await load();
  const greedy = await tokensOf(generate(lm, PROMPT, { maxTokens: 8, eosIds: [] }));
  const explicit = await tokensOf(generate(lm, PROMPT, { maxTokens: 8, eosIds: [], ...sampled }));
  lm.dispose();
  assert.notDeepEqual(explicit.tokens, greedy.tokens, 'sampling must differ from greedy for this test to mean anything');
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({
    do_sample: true, temperature: sampled.temperature, top_k: sampled.topK, top_p: sampled.topP, eos_token_id: [explicit.tokens[5]!], max_new_tokens: 4,
  }));
  lm = await load();
  try {
    const fromFile = await tokensOf(generate(lm, PROMPT, { seed: 7, eosIds: [] }));
    assert.deepEqual(fromFile.tokens, explicit.tokens.slice(0, 4), 'sampling and max_new_tokens from the file');
    assert.equal(fromFile.reason, 'length');
    const eosFromFile = await tokensOf(generate(lm, PROMPT, { seed: 7, maxTokens: 8 }));
    assert.equal(eosFromFile.reason, 'eos');
    assert.deepEqual(eosFromFile.tokens, explicit.tokens.slice(0, explicit.tokens.indexOf(explicit.tokens[5]!) + 1));
    const override = await tokensOf(generate(lm, PROMPT, { maxTokens: 8, eosIds: [], temperature: 0 }));
    assert.deepEqual(override.tokens, greedy.tokens, 'an explicit temperature 0 wins over the file');
  } finally {
    lm.dispose();
  }
});
