/**
 * generate() on a generated tiny checkpoint: cached and uncached greedy decoding give the same
 * tokens, every KV dtype stays close to f32 KV, seeded sampling repeats, and the stops (eos,
 * maxTokens, stop strings, AbortSignal) end the stream as documented.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { ConfigError, StateError } from '../src/core/errors.js';
import { generate, generateWithoutCache, type GenerateEvent, type GenerateOptions, type GenerateSummary } from '../src/generate/generate.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';

let root = '';
let dir = '';
let arena: Arena;
const PROMPT = [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13];

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-gen-'));
  dir = join(root, 'tiny');
  makeModel({ preset: 'tiny', outDir: dir, seed: 5, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
});
after(() => {
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function collect(it: AsyncGenerator<GenerateEvent, GenerateSummary>): Promise<{ events: GenerateEvent[]; summary: GenerateSummary }> {
  const events: GenerateEvent[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { events, summary: r.value };
    events.push(r.value);
  }
}

async function withModel<T>(opts: Parameters<typeof LanguageModel.load>[1], fn: (lm: LanguageModel) => Promise<T>): Promise<T> {
  const lm = await LanguageModel.load(dir, { arena, maxSeqLen: 64, ...opts });
  try {
    return await fn(lm);
  } finally {
    lm.dispose();
  }
}

test('greedy with the cache equals greedy without it; events carry ids and text', async () => {
  await withModel({}, async (lm) => {
    const opts: GenerateOptions = { maxTokens: 12, eosIds: [] };
    const cached = await collect(generate(lm, PROMPT, opts));
    const uncached = await collect(generateWithoutCache(lm, PROMPT, opts));
    assert.equal(cached.summary.tokens.length, 12);
    assert.deepEqual(cached.summary.tokens, uncached.summary.tokens);
    assert.deepEqual(cached.events.map((e) => e.tokenId), cached.summary.tokens);
    assert.equal(cached.events.map((e) => e.text).join(''), cached.summary.text);
    assert.equal(cached.summary.reason, 'length');
    assert.equal(cached.summary.promptTokens, PROMPT.length);
  });
});

test('every KV dtype: greedy tokens stay close to f32 KV (f16/bf16/q8_0 identical on this model)', async () => {
  const ref = await withModel({}, async (lm) => (await collect(generate(lm, PROMPT, { maxTokens: 8, eosIds: [] }))).summary.tokens);
  for (const kv of ['f16', 'bf16', 'q8_0'] as const) {
    const got = await withModel({ kv }, async (lm) => (await collect(generate(lm, PROMPT, { maxTokens: 8, eosIds: [] }))).summary.tokens);
    assert.deepEqual(got, ref, `kv ${kv}`);
  }
});

test('seeded sampling repeats; stops on eos, stop strings and abort', async () => {
  await withModel({}, async (lm) => {
    const s = { maxTokens: 10, temperature: 1, topK: 20, seed: 9, eosIds: [] };
    const a = (await collect(generate(lm, PROMPT, s))).summary.tokens;
    const b = (await collect(generate(lm, PROMPT, s))).summary.tokens;
    assert.deepEqual(a, b);
    const greedy = (await collect(generate(lm, PROMPT, { maxTokens: 6, eosIds: [] }))).summary;
    const eosAt = greedy.tokens[2]!;
    const stopped = (await collect(generate(lm, PROMPT, { maxTokens: 6, eosIds: [eosAt] }))).summary;
    assert.equal(stopped.reason, 'eos');
    assert.deepEqual(stopped.tokens, greedy.tokens.slice(0, greedy.tokens.indexOf(eosAt) + 1));
    const stopText = greedy.text.slice(0, Math.max(1, Math.floor(greedy.text.length / 2)));
    const byString = (await collect(generate(lm, PROMPT, { maxTokens: 6, eosIds: [], stop: [stopText.slice(-1)] }))).summary;
    assert.equal(byString.reason, 'stop');
    assert.ok(!byString.text.includes(stopText.slice(-1)), 'the stop string itself is not returned');
    const ctl = new AbortController();
    const it = generate(lm, PROMPT, { maxTokens: 50, eosIds: [], signal: ctl.signal });
    await it.next();
    ctl.abort();
    const rest = await collect(it);
    assert.equal(rest.summary.reason, 'abort');
    assert.equal(rest.summary.tokens.length, 1);
    await assert.rejects(collect(generate(lm, [], {})), ConfigError);
    await assert.rejects(collect(generate(lm, PROMPT, { maxTokens: 100 })), /at most the cache's 64 positions/);
  });
});

test('two generations interleaved on one model: the older one fails loudly instead of mixing K/V', async () => {
  await withModel({}, async (lm) => {
    const a = generate(lm, PROMPT, { maxTokens: 5, eosIds: [] });
    await a.next();
    const b = generate(lm, PROMPT.slice(0, 4), { maxTokens: 5, eosIds: [] });
    await b.next();
    await assert.rejects(a.next(), (e: unknown) => e instanceof StateError && /generateMany/.test((e as Error).message));
    const rest = await collect(b);
    assert.equal(rest.summary.tokens.length, 5, 'the newer generation runs on');
  });
});
