/**
 * Batched generation with a sliding window and attention sinks (generateMany's `window` option):
 * a sequence generates far more tokens than the pool holds while the blocks in use stay under
 * windowBlockBound (checked after every step and every event); a window larger than the whole
 * generation changes nothing (greedy tokens equal); two windowed prompts at once give the tokens
 * each gives alone; a long prompt is prefilled under the window; blocks the window edited never
 * serve prefix hits, and a windowed sequence takes hits only up to windowHitLimit.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { generateMany, type ManyEvent, type ManyOptions } from '../src/generate/generate-many.js';
import type { GenerateSummary } from '../src/generate/token-stream.js';
import { windowBlockBound, windowHitLimit, type WindowOptions } from '../src/kv/paged/window-policy.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';
import { PagedSession, type PagedSessionOptions, type StepItem } from '../src/model/paged-session.js';

let root = '';
let lm: LanguageModel;
let arena: Arena;
const P1 = [785, 3974, 13876, 11, 42, 907, 3, 77, 1234, 56, 8, 990];
const P2 = [17, 4242, 303, 9, 1500, 61];
const L = 8;
const STEP = 16;
// The reference-kernel pass of `npm test` spends ~0.13 s per token on this model's 152k-row
// logits: it runs the long generation shorter (still ~2x what the pool holds).
const LONG = process.env.KVCACHE_KERNELS === 'ref' ? 120 : 300;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-window-'));
  makeModel({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 8, dtype: 'f32' });
  arena = new Arena({ maximumBytes: 1 << 30 });
  lm = await LanguageModel.load(join(root, 'tiny'), { arena, maxSeqLen: 64 });
});
after(() => {
  lm.dispose();
  arena.dispose();
  rmSync(root, { recursive: true, force: true });
});

function newSession(nBlocks: number, opts: PagedSessionOptions = {}): PagedSession {
  return new PagedSession(lm, { blockLen: L, nBlocks, maxStepTokens: STEP, maxSeqs: 2, ...opts });
}

/** Runs generateMany; `onStep` / `onEvent` see the session after every step / yielded event. */
async function run(session: PagedSession, prompts: readonly (readonly number[])[], opts: ManyOptions, onStep?: () => void, onEvent?: () => void): Promise<{ events: ManyEvent[]; summaries: GenerateSummary[] }> {
  const step = session.step;
  if (onStep) {
    session.step = (items: readonly StepItem[]): boolean => {
      const ok = step.call(session, items);
      onStep();
      return ok;
    };
  }
  try {
    const it = generateMany(session, prompts, { eosIds: [], ...opts });
    const events: ManyEvent[] = [];
    for (;;) {
      const r = await it.next();
      if (r.done) return { events, summaries: r.value };
      onEvent?.();
      events.push(r.value);
    }
  } finally {
    session.step = step;
  }
}

test(`${LONG} tokens through a pool of 8 blocks of 8: completes, blocks in use stay bounded`, async () => {
  const window: WindowOptions = { sinks: 8, size: 32 };
  // Sinks: 1 block. Past them at most W + L - 1 = 39 tokens after a step (steps <= 16): 5 blocks.
  const bound = 1 + 5;
  assert.equal(windowBlockBound(window, L, STEP), bound);
  const session = newSession(9);
  try {
    assert.ok(session.cache.totalBlocks * L < LONG / 1.5, 'the pool holds far fewer tokens than generated');
    let maxUsed = 0;
    const check = (): void => {
      maxUsed = Math.max(maxUsed, session.cache.usedBlocks);
      assert.ok(session.cache.usedBlocks <= bound, `used ${session.cache.usedBlocks} > ${bound}`);
      for (const seq of session.cache.seqIds()) assert.ok(session.cache.nextPos(seq) <= 8 + 39, 'positions stay in the window');
    };
    const { events, summaries } = await run(session, [P1], { maxTokens: LONG, window }, check, check);
    assert.equal(summaries[0]!.reason, 'length');
    assert.equal(summaries[0]!.tokens.length, LONG);
    assert.equal(events.length, LONG);
    assert.equal(maxUsed, bound, 'the bound is reached: it is tight');
    assert.equal(session.cache.usedBlocks, 0, 'every block returned');
    // Without a window the same pool runs out (64 token slots) and the lone sequence stops.
    const plain = await run(session, [P1], { maxTokens: LONG });
    assert.equal(plain.summaries[0]!.reason, 'capacity');
    assert.equal(session.cache.usedBlocks, 0);
  } finally {
    session.dispose();
  }
});

test('a window larger than the whole generation gives the tokens of no window (greedy)', async () => {
  const session = newSession(40);
  try {
    const plain = await run(session, [P1, P2], { maxTokens: 24 });
    session.cache.clearPrefixCache();
    const windowed = await run(session, [P1, P2], { maxTokens: 24, window: { sinks: 4, size: 36 } });
    assert.deepEqual(windowed.summaries.map((s) => s.tokens), plain.summaries.map((s) => s.tokens));
  } finally {
    session.dispose();
  }
});

test('two windowed prompts at once both complete, each with the tokens it gives alone', async () => {
  const window: WindowOptions = { sinks: 8, size: 24, minDiscard: 16 };
  const bound = windowBlockBound(window, L, STEP);
  assert.equal(bound, 1 + 6, 'past the sinks: W + minDiscard + L - 2 = 46 tokens, 6 blocks');
  const n = 64; // P1: 76 tokens, evictions of 16 from 47 on
  const alone: number[][] = [];
  for (const p of [P1, P2]) {
    const s = newSession(1 + bound);
    try {
      alone.push((await run(s, [p], { maxTokens: n, window })).summaries[0]!.tokens);
    } finally {
      s.dispose();
    }
  }
  const session = newSession(1 + 2 * bound);
  try {
    const check = (): void => assert.ok(session.cache.usedBlocks <= 2 * bound);
    const { events, summaries } = await run(session, [P1, P2], { maxTokens: n, window }, check, check);
    assert.deepEqual(summaries.map((s) => s.reason), ['length', 'length']);
    assert.deepEqual(summaries.map((s) => s.tokens), alone);
    const order = events.map((e) => e.index);
    assert.ok(order.indexOf(1) < order.lastIndexOf(0), 'the prompts run together');
    assert.equal(session.cache.usedBlocks, 0);
  } finally {
    session.dispose();
  }
});

test('a prompt longer than the window is prefilled under it, chunk by chunk', async () => {
  const window: WindowOptions = { sinks: 4, size: 20 };
  const bound = windowBlockBound(window, L, STEP);
  const long = Array.from({ length: 100 }, (_, i) => (i * 7919 + 5) % 5000);
  const session = newSession(1 + bound);
  try {
    let maxLen = 0;
    const check = (): void => {
      assert.ok(session.cache.usedBlocks <= bound, `used ${session.cache.usedBlocks} > ${bound}`);
      for (const seq of session.cache.seqIds()) maxLen = Math.max(maxLen, session.cache.seqLen(seq));
    };
    const { summaries } = await run(session, [long], { maxTokens: 20, window }, check, check);
    assert.equal(summaries[0]!.reason, 'length');
    assert.equal(summaries[0]!.tokens.length, 20);
    // S + max(W + L - 1, step) = 4 + 27: the sequence never held its whole prompt.
    assert.ok(maxLen <= 31, `held ${maxLen} tokens`);
  } finally {
    session.dispose();
  }
});

test('blocks the window edited never serve prefix hits; windowed admission takes hits only up to windowHitLimit', async () => {
  const window: WindowOptions = { sinks: 8, size: 32 };
  const session = newSession(40);
  const fresh = newSession(40);
  try {
    const { summaries } = await run(session, [P1], { maxTokens: 60, window });
    const history = [...P1, ...summaries[0]!.tokens];
    // Indexed before the first eviction (at 47 tokens): blocks 0..4. The eviction removed block 1
    // (still indexed: bytes unchanged) and rotated blocks 2..4 (they left the index).
    assert.equal(session.cache.cachedPrefixTokens(history), 16);
    const withHits = await run(session, [history], { maxTokens: 10 });
    const withoutHits = await run(fresh, [history], { maxTokens: 10 });
    assert.deepEqual(withHits.summaries[0]!.tokens, withoutHits.summaries[0]!.tokens);

    // Admission asks for at most windowHitLimit hit tokens: all but the last when the history
    // fits in the window, only the sinks when it does not.
    const asked: (number | undefined)[] = [];
    const seqAdd = session.cache.seqAdd.bind(session.cache);
    session.cache.seqAdd = (tokens, opts = {}) => {
      asked.push(opts.maxHitTokens);
      return seqAdd(tokens, opts);
    };
    await run(session, [history.slice(0, 30), history], { maxTokens: 1, window });
    assert.deepEqual(asked, [29, 8]);
    assert.deepEqual(asked, [windowHitLimit(window, 30), windowHitLimit(window, history.length)]);
  } finally {
    session.dispose();
    fresh.dispose();
  }
});
