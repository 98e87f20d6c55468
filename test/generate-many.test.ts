/**
 * Batched generation on a paged cache: several prompts at once give the tokens each gives alone
 * (greedy, f32 KV), with prefill chunks beside decode tokens; a shared prefix is served from the
 * prefix cache; a pool too small for everyone preempts and still finishes every prompt right; a
 * prompt that can never fit ends with reason 'capacity'; nothing leaks.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { generate, type GenerateSummary } from '../src/generate/generate.js';
import { generateMany, type ManyEvent } from '../src/generate/generate-many.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';
import { PagedSession } from '../src/model/paged-session.js';

let root = '';
let lm: LanguageModel;
let arena: Arena;
const SHARED = Array.from({ length: 40 }, (_, i) => (i * 7919 + 5) % 5000);
const PROMPTS = [
  [...SHARED, 11, 12, 13],
  [785, 3974, 13876],
  [...SHARED, 21],
  Array.from({ length: 27 }, (_, i) => (i * 104729 + 3) % 5000),
];
const N = 10;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-many-'));
  makeModel({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 8, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
  lm = await LanguageModel.load(join(root, 'tiny'), { arena, maxSeqLen: 128 });
});
after(() => {
  lm.dispose();
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

async function alone(ids: readonly number[]): Promise<number[]> {
  const out: number[] = [];
  for await (const ev of generate(lm, ids, { maxTokens: N, eosIds: [] })) out.push(ev.tokenId);
  return out;
}

/** One after another: generate() runs on the model's single cache. */
async function aloneAll(prompts: readonly (readonly number[])[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const p of prompts) out.push(await alone(p));
  return out;
}

async function many(session: PagedSession, prompts: readonly (readonly number[])[]): Promise<{ events: ManyEvent[]; summaries: GenerateSummary[] }> {
  const it = generateMany(session, prompts, { maxTokens: N, eosIds: [] });
  const events: ManyEvent[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { events, summaries: r.value };
    events.push(r.value);
  }
}

test('four prompts at once equal each alone; events interleave; blocks all returned', async () => {
  const expected = await aloneAll(PROMPTS);
  const session = new PagedSession(lm, { blockLen: 8, maxStepTokens: 16, maxSeqs: 3 });
  try {
    const { events, summaries } = await many(session, PROMPTS);
    assert.deepEqual(summaries.map((s) => s.tokens), expected);
    for (let i = 0; i < PROMPTS.length; i++) {
      assert.deepEqual(events.filter((e) => e.index === i).map((e) => e.tokenId), expected[i]);
      assert.equal(summaries[i]!.reason, 'length');
      assert.equal(summaries[i]!.promptTokens, PROMPTS[i]!.length);
    }
    const order = events.map((e) => e.index);
    assert.ok(order.indexOf(1) < order.lastIndexOf(0), 'prompts progress together, not one after another');
    assert.equal(session.cache.usedBlocks, 0, 'every sequence freed');
    // Full blocks stay cached: the 40-token shared prefix (5 blocks of 8) is a hit for a new prompt.
    assert.equal(session.cache.cachedPrefixTokens([...SHARED, 99]), 40);
  } finally {
    session.dispose();
  }
});

test('a pool too small for all prompts preempts and still gives each prompt its own tokens', async () => {
  const expected = await aloneAll(PROMPTS);
  // 53 positions at most per sequence = 7 blocks of 8; 12 usable blocks cannot hold 3 at once.
  const session = new PagedSession(lm, { blockLen: 8, nBlocks: 13, maxStepTokens: 16, maxSeqs: 3 });
  try {
    const { summaries } = await many(session, PROMPTS);
    assert.deepEqual(summaries.map((s) => s.tokens), expected);
    assert.equal(session.cache.usedBlocks, 0);
  } finally {
    session.dispose();
  }
});

test('a prompt that can never fit ends with reason capacity; the others finish', async () => {
  const session = new PagedSession(lm, { blockLen: 8, nBlocks: 5, maxStepTokens: 16, maxSeqs: 2 });
  try {
    const long = Array.from({ length: 60 }, (_, i) => i + 100);
    const { summaries } = await many(session, [long, PROMPTS[1]!]);
    assert.equal(summaries[0]!.reason, 'capacity');
    assert.equal(summaries[1]!.reason, 'length');
    assert.deepEqual(summaries[1]!.tokens, await alone(PROMPTS[1]!));
    assert.equal(session.cache.usedBlocks, 0);
  } finally {
    session.dispose();
  }
});
