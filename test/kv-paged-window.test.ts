/**
 * Sliding window with attention sinks on a PagedKVCache (kv/paged/window-policy.ts):
 *
 *   - exact traces: which tokens go (whole blocks past the first S), the positions after the shift
 *     (contiguous), block ids, freed blocks; sinks that end inside a block keep a hole there;
 *   - a naive layout model (token -> block, slot) replays the rule for 1,000 tokens in random step
 *     sizes: after every step the cache holds exactly the model's tokens (identified by their
 *     values, bit-identical), at positions 0..len-1, in the model's number of blocks, never more
 *     than windowBlockBound; kept keys equal keys written directly at their new positions within
 *     the K dtype's tolerance (f32, q8_0), sinks bit-identical;
 *   - capacity: a shift that must copy shared blocks the pool cannot supply returns false and
 *     changes nothing; blocks freed by the removal count toward the copies;
 *   - the prefix index names only blocks whose bytes are unchanged after evictions.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { decodeRow, encodeRow, type DType } from '../src/core/dtype.js';
import { ConfigError, StateError } from '../src/core/errors.js';
import { rope, ropeInvFreq } from '../src/kernels/ref/rope.js';
import { ATTENTION_TOLERANCES, nmse } from '../src/kernels/tolerances.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import { applyWindow, planWindow, windowBlockBound, windowHitLimit, type WindowOptions } from '../src/kv/paged/window-policy.js';
import { mulberry32, normalArray, randInt } from './helpers/rng.js';

const arena = new Arena({ initialBytes: 4 << 20, maximumBytes: 256 << 20 });
after(() => arena.dispose());

const NL = 2;
const H = 2;
const D = 32;
const TF = H * D; // floats per token per layer
const INV = ropeInvFreq(10000, D);

/** Per-layer K (before RoPE) and V of token t of a stream, deterministic. */
class Source {
  readonly raw: Float32Array[]; // [nLayers][nTokens, H, D]
  readonly v: Float32Array[]; // [nLayers][nTokens, H, D]
  constructor(nTokens: number, seed: number) {
    const rng = mulberry32(seed);
    this.raw = Array.from({ length: NL }, () => normalArray(rng, nTokens * TF));
    this.v = Array.from({ length: NL }, () => normalArray(rng, nTokens * TF));
  }
  /** Rows of tokens `orig` of one layer's array, in that order. */
  static gather(a: Float32Array, orig: readonly number[]): Float32Array {
    const out = new Float32Array(orig.length * TF);
    orig.forEach((t, i) => out.set(a.subarray(t * TF, (t + 1) * TF), i * TF));
    return out;
  }
}

function ropeAt(x: Float32Array, positions: readonly number[]): Float32Array {
  return rope(x, positions, { nHeads: H, headDim: D, rotaryDim: D, mode: 'neox', invFreq: INV });
}

/** What storage of `dtype` gives back for rows of D values. */
function stored(x: Float32Array, dtype: DType): Float32Array {
  const y = Float32Array.from(x);
  const bytes = new Uint8Array(D * 4);
  for (let r = 0; r < y.length / D; r++) {
    encodeRow(dtype, y, r * D, D, bytes, 0);
    decodeRow(dtype, bytes, 0, D, y, r * D);
  }
  return y;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

interface Cell {
  orig: number; // token index in the Source
  block: number; // model block id (not the cache's)
  slot: number;
}

interface HarnessOptions {
  blockLen: number;
  nBlocks: number;
  window: WindowOptions;
  kDtype?: DType;
  vDtype?: DType;
  nTokens?: number;
  seed?: number;
  /** Reserve with token ids (orig + 100) so that full blocks enter the prefix index. */
  ids?: boolean;
}

/**
 * One sequence of a cache plus a naive model of its layout: the rule of window-policy NOTE(1)
 * replayed on (block, slot) cells, and appends that fill the last block's next slot.
 */
class Harness {
  readonly c: PagedKVCache;
  readonly seq: number;
  readonly src: Source;
  readonly L: number;
  readonly w: WindowOptions;
  readonly kDtype: DType;
  readonly vDtype: DType;
  model: Cell[] = [];
  next = 0; // next token of the source
  private nextModelBlock = 0;

  constructor(readonly o: HarnessOptions) {
    this.kDtype = o.kDtype ?? 'f32';
    this.vDtype = o.vDtype ?? 'f32';
    this.c = new PagedKVCache({ arena, nLayers: NL, nKvHeads: H, headDim: D, kDtype: this.kDtype, vDtype: this.vDtype, nBlocks: o.nBlocks, blockLen: o.blockLen, fingerprint: 'window-test', rope: { theta: 10000 } });
    this.seq = this.c.seqAdd().seq;
    this.src = new Source(o.nTokens ?? 64, o.seed ?? 1);
    this.L = o.blockLen;
    this.w = o.window;
  }

  /** Tokens the rule discards before a step of n tokens, from the model alone. */
  modelDiscard(n: number): number {
    const { sinks: S, size: W } = this.w;
    const len = this.model.length;
    const over = len + n - (S + W);
    if (over <= 0 || len <= S) return 0;
    if (len - S <= over) return len - S;
    let best = 0;
    for (let i = S + 1; i < len && i - S <= over; i++) if (this.model[i]!.block !== this.model[i - 1]!.block) best = i - S;
    return best >= (this.w.minDiscard ?? 1) ? best : 0;
  }

  /** Window, then append n tokens of the source (written at cache.nextPos). */
  step(n: number): void {
    const d = this.modelDiscard(n);
    const plan = planWindow(this.c, this.seq, this.w, n);
    assert.equal(plan?.nDiscard ?? 0, d, `tokens discarded before token ${this.next}`);
    assert.equal(applyWindow(this.c, this.seq, this.w, n), true);
    this.model.splice(this.w.sinks, d);
    this.append(n);
  }

  append(n: number): void {
    const pos0 = this.c.nextPos(this.seq);
    assert.equal(pos0, this.model.length, 'positions are contiguous from 0');
    const orig = range(this.next, this.next + n);
    const ids = this.o.ids ? orig.map((t) => t + 100) : undefined;
    assert.ok(this.c.reserve(this.seq, n, ids), `room for ${n} tokens at ${pos0}`);
    for (let l = 0; l < NL; l++) this.c.write(l, this.seq, ropeAt(Source.gather(this.src.raw[l]!, orig), range(pos0, pos0 + n)), Source.gather(this.src.v[l]!, orig));
    this.c.commit(this.seq);
    for (const t of orig) {
      const last = this.model[this.model.length - 1];
      if (last && last.slot + 1 < this.L) this.model.push({ orig: t, block: last.block, slot: last.slot + 1 });
      else this.model.push({ orig: t, block: this.nextModelBlock++, slot: 0 });
    }
    this.next += n;
  }

  origs(): number[] {
    return this.model.map((m) => m.orig);
  }

  /** The cache holds exactly the model's tokens at positions 0..len-1, in the model's blocks. */
  check(keyTolerance = ATTENTION_TOLERANCES[this.kDtype].outNmse): void {
    const orig = this.origs();
    const len = orig.length;
    const S = Math.min(this.w.sinks, len);
    assert.equal(this.c.seqLen(this.seq), len);
    assert.equal(this.c.blockTable(this.seq).length, new Set(this.model.map((m) => m.block)).size, 'blocks of the model');
    for (let l = 0; l < NL; l++) {
      const r = this.c.read(l, this.seq);
      assert.deepEqual([...r.positions], range(0, len));
      assert.ok(sameBits(r.v, stored(Source.gather(this.src.v[l]!, orig), this.vDtype)), `layer ${l}: values untouched (tokens ${orig.join(',')})`);
      const want = stored(ropeAt(Source.gather(this.src.raw[l]!, orig), range(0, len)), this.kDtype);
      assert.ok(sameBits(r.k.subarray(0, S * TF), want.subarray(0, S * TF)), `layer ${l}: sink keys never rotated`);
      const e = nmse(r.k, want);
      assert.ok(e <= keyTolerance, `layer ${l}: key NMSE ${e} > ${keyTolerance}`);
    }
  }

  dispose(): void {
    this.c.dispose();
  }
}

test('block-aligned sinks: whole blocks past the sinks go, the rest shifts back; exact trace', () => {
  // L = 4, S = 4, W = 8: eviction before a token when len + 1 - 12 reaches a block (4 tokens).
  const h = new Harness({ blockLen: 4, nBlocks: 8, window: { sinks: 4, size: 8 } });
  for (let t = 0; t < 15; t++) h.step(1);
  assert.deepEqual(h.origs(), range(0, 15), 'S + W + L - 1 tokens: nothing discarded yet');
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 2, 3, 4]);
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 4, p0: 4, p1: 8, delta: -4, freedBlocks: 1, copies: 0 });
  h.step(1); // token 15: tokens 4..7 (block 2) go, 8..14 move to positions 4..10
  assert.deepEqual(h.origs(), [...range(0, 4), ...range(8, 16)]);
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 3, 4]);
  assert.equal(h.c.usedBlocks, 3);
  h.check();
  h.step(1); // token 16 starts a block: the freed block 2 (LIFO)
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 3, 4, 2]);
  for (let t = 17; t < 40; t++) {
    h.step(1);
    h.check();
    const n = h.model.length;
    assert.ok(n >= 12 && n <= 15, `S + W <= ${n} <= S + W + L - 1`);
    assert.deepEqual(h.origs().slice(n - 8), range(t - 7, t + 1), 'the last W tokens are kept');
  }
  h.dispose();
});

test('sinks ending inside a block keep a hole there; later evictions free whole blocks', () => {
  // L = 4, S = 6: the sinks fill block 1 and half of block 2.
  const h = new Harness({ blockLen: 4, nBlocks: 8, window: { sinks: 6, size: 8 } });
  for (let t = 0; t < 15; t++) h.step(1);
  // Before token 15: over = 2, the first cut point past 6 is index 8 (block 3's first token).
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 2, p0: 6, p1: 8, delta: -2, freedBlocks: 0, copies: 0 });
  h.step(1);
  assert.deepEqual(h.origs(), [...range(0, 6), ...range(8, 16)]);
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 2, 3, 4], 'block 2 keeps the sinks 4, 5 (slots 2, 3 a hole)');
  assert.equal(h.c.view(0, h.seq).segments.length, 4, 'segments: block 1, block 2 slots 0..1, block 3, block 4');
  h.check();
  for (let t = 16; t < 19; t++) h.step(1); // len 17: over = 17 + 1 - 14 = 4 reaches index 10 (block 4's first token)
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 4, p0: 6, p1: 10, delta: -4, freedBlocks: 1, copies: 0 });
  h.step(1);
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 2, 4, 5]);
  h.check();
  const bound = windowBlockBound(h.w, 4, 1);
  assert.equal(bound, 2 + 3);
  for (let t = 0; t < 60; t++) {
    h.step(1);
    h.check();
    assert.ok(h.c.usedBlocks <= bound);
  }
  h.dispose();
});

test('a step larger than the window discards everything past the sinks (tail truncation, no shift)', () => {
  const h = new Harness({ blockLen: 4, nBlocks: 12, window: { sinks: 2, size: 4 } });
  h.step(9);
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 6), { nDiscard: 7, p0: 2, p1: Infinity, delta: 0, freedBlocks: 2, copies: 0 });
  h.step(6);
  assert.deepEqual(h.origs(), [0, 1, ...range(9, 15)]);
  // The new tokens fill the sinks' block after them, then the block released last (LIFO).
  assert.deepEqual([...h.c.blockTable(h.seq)], [1, 2]);
  h.check();
  h.dispose();
});

test('minDiscard: evictions wait until that many tokens can go, then take whole blocks', () => {
  const h = new Harness({ blockLen: 4, nBlocks: 12, window: { sinks: 4, size: 8, minDiscard: 6 }, nTokens: 80 });
  for (let t = 0; t < 15; t++) h.step(1);
  assert.equal(planWindow(h.c, h.seq, h.w, 1), null, 'one block (4 tokens) could go, fewer than 6');
  for (let t = 15; t < 19; t++) h.step(1);
  assert.deepEqual(h.origs(), range(0, 19), '19 tokens held: nothing gone yet');
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 8, p0: 4, p1: 12, delta: -8, freedBlocks: 2, copies: 0 });
  h.step(1);
  assert.deepEqual(h.origs(), [...range(0, 4), ...range(12, 20)]);
  h.check();
  const bound = windowBlockBound(h.w, 4, 1);
  for (let t = 20; t < 80; t++) {
    h.step(1);
    h.check();
    assert.ok(h.c.usedBlocks <= bound && h.model.length <= 4 + 8 + 6 + 4 - 2);
  }
  h.dispose();
});

describe('1,000 tokens in random steps: the cache equals the model, blocks stay bounded', () => {
  const cases: { name: string; L: number; w: WindowOptions; k: DType; v: DType; maxStep: number; keyNmse?: number }[] = [
    { name: 'f32, L 4, S 4, W 16', L: 4, w: { sinks: 4, size: 16 }, k: 'f32', v: 'f32', maxStep: 5 },
    { name: 'K q8_0 / V f16, L 8, S 5 (inside a block), W 24', L: 8, w: { sinks: 5, size: 24 }, k: 'q8_0', v: 'f16', maxStep: 6 },
    { name: 'K q8_0, L 4, S 4, W 64 (keys rotated ~16 times)', L: 4, w: { sinks: 4, size: 64 }, k: 'q8_0', v: 'q8_0', maxStep: 3 },
    { name: 'f32, L 4, no sinks, W 6, steps up to 9 (> W)', L: 4, w: { sinks: 0, size: 6 }, k: 'f32', v: 'f32', maxStep: 9 },
    { name: 'K q8_0, L 4, S 4, W 64, minDiscard 30 (keys rotated ~3 times)', L: 4, w: { sinks: 4, size: 64, minDiscard: 30 }, k: 'q8_0', v: 'f32', maxStep: 3, keyNmse: 2.5e-4 },
  ];
  let seed = 40;
  for (const cs of cases) {
    const s = seed++;
    test(cs.name, () => {
      const bound = windowBlockBound(cs.w, cs.L, cs.maxStep);
      const total = 1000;
      // A pool far smaller than 1,000 tokens: the bound plus 2 blocks.
      const h = new Harness({ blockLen: cs.L, nBlocks: bound + 3, window: cs.w, kDtype: cs.k, vDtype: cs.v, nTokens: total + cs.maxStep, seed: s });
      assert.ok((bound + 2) * cs.L < total / 4);
      const rng = mulberry32(s);
      let maxUsed = 0;
      while (h.next < total) {
        h.step(randInt(rng, 1, cs.maxStep + 1));
        maxUsed = Math.max(maxUsed, h.c.usedBlocks);
        assert.ok(h.c.usedBlocks <= bound, `used ${h.c.usedBlocks} > bound ${bound}`);
        const most = cs.w.sinks + Math.max(cs.w.size + (cs.w.minDiscard ?? 1) + cs.L - 2, cs.maxStep);
        assert.ok(h.c.nextPos(h.seq) <= most, 'positions stay inside the window');
        if (h.next % 7 === 0 || h.next >= total) h.check(cs.keyNmse);
      }
      h.check(cs.keyNmse);
      const orig = h.origs();
      assert.deepEqual(orig.slice(0, cs.w.sinks), range(0, cs.w.sinks), 'the sinks are the first S tokens');
      assert.deepEqual(orig.slice(orig.length - cs.w.size), range(h.next - cs.w.size, h.next), 'the last W tokens');
      assert.ok(maxUsed >= bound - 1, `the bound is nearly reached (max used ${maxUsed}, bound ${bound})`);
      h.dispose();
    });
  }
});

test('copy-on-write: false and nothing changed when the pool cannot supply copies; freed blocks count', () => {
  // 6 usable blocks. seq: 15 tokens in blocks 1..4; a fork shares them; `other` takes the last 2.
  const h = new Harness({ blockLen: 4, nBlocks: 7, window: { sinks: 4, size: 8 } });
  h.append(15);
  const fork = h.c.seqFork(h.seq);
  const other = h.c.seqAdd().seq;
  assert.ok(h.c.reserve(other, 8));
  for (let l = 0; l < NL; l++) h.c.write(l, other, new Float32Array(8 * TF), new Float32Array(8 * TF));
  h.c.commit(other);
  assert.equal(h.c.availableBlocks, 0);
  const before = [0, 1].map((l) => h.c.read(l, h.seq));
  const forkBefore = [0, 1].map((l) => h.c.read(l, fork));
  // Blocks 3, 4 (shifted) are shared: 2 copies; block 2 (removed) is shared too: frees nothing.
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 4, p0: 4, p1: 8, delta: -4, freedBlocks: 0, copies: 2 });
  assert.equal(applyWindow(h.c, h.seq, h.w, 1), false);
  for (let l = 0; l < NL; l++) {
    const r = h.c.read(l, h.seq);
    assert.deepEqual([...r.positions], [...before[l]!.positions]);
    assert.ok(sameBits(r.k, before[l]!.k) && sameBits(r.v, before[l]!.v), 'nothing changed');
  }
  assert.equal(h.c.usedBlocks, 6);
  // The fork drops tokens 4..11: block 2 and 3 are now the sequence's alone. Removing block 2 frees
  // one block, which pays for the one copy left (block 4, still shared).
  h.c.seqRemove(fork, 4, 12);
  assert.deepEqual(planWindow(h.c, h.seq, h.w, 1), { nDiscard: 4, p0: 4, p1: 8, delta: -4, freedBlocks: 1, copies: 1 });
  assert.equal(h.c.availableBlocks, 0);
  assert.equal(applyWindow(h.c, h.seq, h.w, 1), true);
  h.model.splice(4, 4);
  h.append(1);
  h.check();
  for (let l = 0; l < NL; l++) {
    const f = h.c.read(l, fork);
    const keep = [...forkBefore[l]!.positions].map((p, i) => [p, i] as const).filter(([p]) => p < 4 || p >= 12).map(([, i]) => i);
    assert.deepEqual([...f.positions], [0, 1, 2, 3, 12, 13, 14]);
    assert.ok(sameBits(f.k, Source.gather(forkBefore[l]!.k, keep)) && sameBits(f.v, Source.gather(forkBefore[l]!.v, keep)), 'the fork is untouched');
  }
  const [mine, theirs] = [[...h.c.blockTable(h.seq)], [...h.c.blockTable(fork)]];
  assert.equal(mine[0], theirs[0], 'the sink block is still shared');
  assert.ok(!theirs.includes(mine[mine.length - 1]!), 'the shifted shared block was copied');
  h.dispose();
});

test('the prefix index keeps only blocks whose bytes did not change', () => {
  const h = new Harness({ blockLen: 4, nBlocks: 12, window: { sinks: 4, size: 8 }, ids: true });
  const ids = range(100, 140);
  for (let t = 0; t < 15; t++) h.step(1);
  assert.equal(h.c.cachedPrefixTokens(ids), 12, 'blocks 1..3 full and indexed');
  h.step(1); // removes block 2 (stays indexed, bytes unchanged), rotates blocks 3, 4 (leave the index)
  assert.equal(h.c.cachedPrefixTokens(ids), 8);
  for (let t = 0; t < 20; t++) h.step(1);
  assert.equal(h.c.cachedPrefixTokens(ids), 8, 'an edited sequence registers nothing more');
  assert.equal(h.c.prefixIndex.size, 2);
  const hit = h.c.seqAdd(ids.slice(0, 13));
  assert.equal(hit.cachedTokens, 8);
  for (let l = 0; l < NL; l++) {
    const r = h.c.read(l, hit.seq);
    assert.ok(sameBits(r.k, ropeAt(Source.gather(h.src.raw[l]!, range(0, 8)), range(0, 8))), 'hit keys are the originals');
  }
  h.c.seqFree(hit.seq);
  h.check();
  h.dispose();
});

test('no-op cases, validation, bounds and hit limits', () => {
  const h = new Harness({ blockLen: 4, nBlocks: 8, window: { sinks: 4, size: 8 } });
  assert.equal(planWindow(h.c, h.seq, h.w, 1), null, 'empty');
  assert.equal(applyWindow(h.c, h.seq, h.w, 1), true);
  h.append(12);
  assert.equal(planWindow(h.c, h.seq, h.w, 0), null, 'S + W tokens and no step');
  assert.equal(planWindow(h.c, h.seq, h.w, 3), null, 'over by 3 < a block: wait');
  assert.equal(planWindow(h.c, h.seq, { sinks: 12, size: 1 }, 5), null, 'nothing past the sinks');
  assert.throws(() => planWindow(h.c, h.seq, { sinks: -1, size: 8 }), ConfigError);
  assert.throws(() => planWindow(h.c, h.seq, { sinks: 4, size: 0 }), ConfigError);
  assert.throws(() => planWindow(h.c, h.seq, { sinks: 1.5, size: 8 } as WindowOptions), ConfigError);
  assert.throws(() => planWindow(h.c, h.seq, null as unknown as WindowOptions), ConfigError);
  assert.throws(() => planWindow(h.c, h.seq, h.w, -1), ConfigError);
  // An open reservation: seqRemove refuses before anything changed.
  assert.ok(h.c.reserve(h.seq, 4));
  assert.throws(() => applyWindow(h.c, h.seq, h.w, 4), StateError);
  h.c.cancel(h.seq);
  assert.equal(h.c.seqLen(h.seq), 12);
  const noRope = new PagedKVCache({ arena, nLayers: 1, nKvHeads: 1, headDim: 32, nBlocks: 4, blockLen: 4, fingerprint: 'x' });
  assert.throws(() => applyWindow(noRope, noRope.seqAdd().seq, h.w), ConfigError);
  noRope.dispose();
  assert.equal(windowBlockBound({ sinks: 8, size: 32 }, 8, 1), 1 + 5);
  assert.equal(windowBlockBound({ sinks: 4, size: 8 }, 32, 64), 1 + 2);
  assert.equal(windowBlockBound({ sinks: 0, size: 6 }, 4, 9), 0 + 3);
  assert.equal(windowBlockBound({ sinks: 4, size: 64, minDiscard: 30 }, 4, 3), 1 + 24);
  assert.throws(() => planWindow(h.c, h.seq, { sinks: 4, size: 8, minDiscard: 0 }), ConfigError);
  assert.equal(windowHitLimit({ sinks: 8, size: 32 }, 40), 39, 'fits the window: every cached block');
  assert.equal(windowHitLimit({ sinks: 8, size: 32 }, 41), 8, 'longer: only the sinks');
  assert.equal(windowHitLimit({ sinks: 8, size: 32 }, 5), 4);
  h.dispose();
});
