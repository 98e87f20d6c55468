/**
 * Property test of PagedKVCache against a naive model: per sequence a plain array of
 * (position, K row, V row) per layer. fast-check generates random programs of add (with prefix
 * hits), reserve + write + commit, reserve + cancel, remove, keep, fork, free, shift and
 * clearPrefixCache; after EVERY operation:
 *
 *   - free + cached-free + used = total blocks;
 *   - each block's refcount = the number of sequences whose block table holds it;
 *   - no block is both free (free stack or LRU) and referenced; the LRU holds exactly the
 *     unreferenced indexed blocks; index and pool agree on which blocks are indexed;
 *   - every sequence reads back exactly the positions and K/V the model holds, and its view's
 *     segments are in strictly increasing position order and sum to its length;
 *   - every indexed block holds exactly the K/V of the block its hash names: the model hashes its
 *     own pristine sequences' full blocks (BlockHasher, tested in kv-paged-hash) and remembers their
 *     K/V per hash, so a block indexed under a wrong chain, or edited after indexing, fails;
 *   - a refused reserve / seqShift (out of blocks) or a rejected shift (OutOfRangeError) changed nothing.
 *
 * The model never looks at the cache's bytes. Like a real model's, K/V of a token depend on the
 * whole prefix: while a model sequence is pristine (ids known from position 0, no edit but tail
 * truncations) a token's K/V are a formula of (rolling hash of every token id up to it, position,
 * layer, head, dim), so a prefix hit is predictable and a hit on a wrong chain shows up as wrong
 * data; other tokens get random K/V. A shift rotates the model's K rows with RoPE written out
 * here, then rounds them through the storage dtype. f32 KV must match bit for bit (>= 100,000 operations); a smaller q8_0 run compares
 * against the quantize-dequantize round trip, also exactly.
 *
 * KVCACHE_FC_SEED=n reproduces a run (fast-check prints the seed and path of a failure).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Arena } from '../src/core/arena.js';
import { decodeRow, encodeRow, type DType } from '../src/core/dtype.js';
import { OutOfRangeError } from '../src/core/errors.js';
import { ropeInvFreq } from '../src/kernels/ref/rope.js';
import { BlockHasher, ROOT_PARENT_HASH } from '../src/kv/paged/block-hash.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import { mulberry32 } from './helpers/rng.js';

const MAX_SEQS = 5;
const MAX_TOKENS = 40; // per sequence
const MAX_POS = 400;
const PROMPT_LEN = 30;

interface RunConfig {
  dtype: DType;
  nLayers: number;
  H: number;
  D: number;
  blockLen: number;
  nBlocks: number;
  rotaryDim: number;
  pairing: 'neox' | 'interleaved';
}

/** One token of the model: its position and K/V over all layers, [nLayers, H, D] each. Never mutated. */
interface Entry {
  readonly pos: number;
  /** Token id, null when reserved without one. */
  readonly tok: number | null;
  /** Rolling hash of the token ids at positions 0..pos while the sequence is pristine, else null. */
  readonly ctx: number | null;
  readonly k: Float32Array;
  readonly v: Float32Array;
}

/** A model sequence: its tokens in position order, and whether it is still pristine (see header). */
interface ModelSeq {
  entries: Entry[];
  pristine: boolean;
  namespace: string;
  /** While pristine: chained hashes of its full blocks. */
  hashes: string[];
}

/** FNV-1a style mix of a prefix hash with the next token id. */
function mix(ctx: number, tok: number): number {
  return Math.imul((ctx ^ tok) >>> 0, 16777619) >>> 0;
}
const CTX0 = 2166136261;

type Op =
  | { kind: 'add'; f1: number; f2: number; cut: number; len: number; maxHit: number | null; ns: number }
  | { kind: 'append'; pick: number; n: number; withIds: boolean; family: number; vocab: number; seed: number }
  | { kind: 'cancel'; pick: number; n: number; layers: number }
  | { kind: 'remove'; pick: number; a: number; b: number; toEnd: boolean }
  | { kind: 'keep'; pick: number }
  | { kind: 'fork'; pick: number }
  | { kind: 'free'; pick: number }
  | { kind: 'shift'; pick: number; mode: number; a: number; b: number }
  | { kind: 'clear' };

const pick = fc.nat(1000);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      kind: fc.constant('add' as const), f1: fc.nat(2), f2: fc.nat(2), cut: fc.nat(PROMPT_LEN), len: fc.nat(PROMPT_LEN),
      maxHit: fc.option(fc.nat(PROMPT_LEN)), ns: fc.nat(3),
    }),
  },
  {
    weight: 34,
    arbitrary: fc.record({
      kind: fc.constant('append' as const), pick, n: fc.integer({ min: 1, max: 9 }), withIds: fc.boolean(),
      family: fc.nat(5), vocab: fc.integer({ min: 1, max: 50 }), seed: fc.nat(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick, n: fc.integer({ min: 1, max: 9 }), layers: fc.nat(3) }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick, a: fc.nat(60), b: fc.nat(20), toEnd: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('keep' as const), pick }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('fork' as const), pick }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('free' as const), pick }) },
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('shift' as const), pick, mode: fc.nat(2), a: fc.nat(100), b: fc.nat(100) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

/**
 * Token id of "family" f (0..2) at position p: prompts and appends mostly follow a family and may
 * switch family at a cut, so sequences share prefixes, diverge, and meet other chains again.
 */
function famTok(f: number, p: number): number {
  return (f * 7 + p * 3) % 11;
}

class Harness {
  readonly cache: PagedKVCache;
  readonly model = new Map<number, ModelSeq>();
  private readonly invFreq: Float32Array;
  /** The K/V every block hash a model sequence produced stands for (its blockLen entries). */
  private readonly expectedByHash = new Map<string, Entry[]>();
  /** Index entries already checked against expectedByHash (hash -> block). */
  private verified = new Map<string, number>();
  private nChecks = 0;
  private readonly rowF: Float32Array;
  private readonly rowB: Uint8Array;

  constructor(
    readonly cfg: RunConfig,
    arena: Arena,
  ) {
    this.cache = new PagedKVCache({
      arena, nLayers: cfg.nLayers, nKvHeads: cfg.H, headDim: cfg.D, dtype: cfg.dtype, nBlocks: cfg.nBlocks, blockLen: cfg.blockLen,
      fingerprint: 'property', rope: { theta: 100, rotaryDim: cfg.rotaryDim, pairing: cfg.pairing },
    });
    this.invFreq = ropeInvFreq(100, cfg.rotaryDim);
    this.rowF = new Float32Array(cfg.D);
    this.rowB = new Uint8Array(4 * cfg.D);
  }

  /** What storage of `dtype` gives back for row x[off, off + D) (in place). */
  private roundTrip(x: Float32Array, off: number): void {
    const { dtype, D } = this.cfg;
    encodeRow(dtype, x, off, D, this.rowB, 0);
    decodeRow(dtype, this.rowB, 0, D, x, off);
  }

  /** Model K/V of a token: a formula of (prefix hash, pos) when ctx is known, else random; rounded through the dtype. */
  private entry(pos: number, tok: number | null, ctx: number | null, rng: () => number): Entry {
    const { nLayers, H, D } = this.cfg;
    const k = new Float32Array(nLayers * H * D); // [nLayers, H, D]
    const v = new Float32Array(nLayers * H * D); // [nLayers, H, D]
    const c = ctx === null ? 0 : (ctx % 100003) * 0.001;
    for (let i = 0; i < k.length; i++) {
      k[i] = ctx === null ? 4 * rng() - 2 : Math.sin(c * 1.7 + pos * 0.31 + i * 0.93);
      v[i] = ctx === null ? 4 * rng() - 2 : Math.cos(c * 0.9 + pos * 0.57 + i * 1.31);
    }
    for (let r = 0; r < nLayers * H; r++) {
      this.roundTrip(k, r * D);
      this.roundTrip(v, r * D);
    }
    return { pos, tok, ctx, k, v };
  }

  /** Entries for tokens appended to `ms` at pos0.. (ctx chained while pristine with ids). */
  private newEntries(ms: ModelSeq, pos0: number, toks: (number | null)[], rng: () => number): Entry[] {
    const last = ms.entries[ms.entries.length - 1];
    let ctx: number | null = ms.pristine ? (last?.ctx ?? CTX0) : null;
    return toks.map((t, i) => {
      ctx = ctx === null || t === null ? null : mix(ctx, t);
      return this.entry(pos0 + i, t, ctx, rng);
    });
  }

  /** k or v rows of `entries` for one layer: [nTokens, H, D]. */
  private layerRows(entries: Entry[], layer: number, which: 'k' | 'v'): Float32Array {
    const { H, D } = this.cfg;
    const out = new Float32Array(entries.length * H * D);
    entries.forEach((e, t) => out.set(e[which].subarray(layer * H * D, (layer + 1) * H * D), t * H * D));
    return out;
  }

  /** reserve + write + commit; appends to the model, or returns false when refused (then nothing changed). */
  private appendTokens(seq: number, ms: ModelSeq, toks: (number | null)[], rng: () => number): boolean {
    const pos0 = this.cache.nextPos(seq);
    const ids = toks.every((t) => t !== null) ? (toks as number[]) : undefined;
    const before = bookkeeping(this.cache);
    if (!this.cache.reserve(seq, toks.length, ids)) {
      assert.equal(bookkeeping(this.cache), before, 'a refused reserve changes nothing');
      assert.ok(this.cache.availableBlocks < Math.ceil(toks.length / this.cfg.blockLen) + 1);
      return false;
    }
    const entries = this.newEntries(ms, pos0, toks, rng);
    for (let l = 0; l < this.cfg.nLayers; l++) this.cache.write(l, seq, this.layerRows(entries, l, 'k'), this.layerRows(entries, l, 'v'));
    this.cache.commit(seq);
    ms.entries.push(...entries);
    if (ids === undefined) ms.pristine = false;
    this.extendChain(ms);
    return true;
  }

  /** Hash a pristine model sequence's new full blocks; remember what each hash stands for. */
  private extendChain(ms: ModelSeq): void {
    if (!ms.pristine) return;
    const L = this.cfg.blockLen;
    const nFull = Math.floor(ms.entries.length / L);
    if (ms.hashes.length >= nFull) return;
    const toks = ms.entries.map((e) => e.tok!);
    const hasher = new BlockHasher({ fingerprint: 'property', kDtype: this.cfg.dtype, vDtype: this.cfg.dtype, namespace: ms.namespace }, L);
    for (let j = ms.hashes.length; j < nFull; j++) {
      const h = hasher.hash(j === 0 ? ROOT_PARENT_HASH : ms.hashes[j - 1]!, toks, j * L);
      const block = ms.entries.slice(j * L, (j + 1) * L);
      const known = this.expectedByHash.get(h);
      if (known) assert.ok(known.every((e, t) => e.pos === block[t]!.pos && e.k.every((x, i) => Object.is(x, block[t]!.k[i]))), 'model: one hash, one content');
      else this.expectedByHash.set(h, block);
      ms.hashes.push(h);
    }
  }

  /** Indexed blocks hold what their hash stands for: new entries every op, all of them every 25 ops. */
  private checkIndex(): void {
    const c = this.cache;
    const { nLayers, H, D, blockLen: L } = this.cfg;
    const all = ++this.nChecks % 25 === 0;
    if (all) this.verified = new Map();
    const k = new Float32Array(L * H * D); // [blockLen, H, D]
    const v = new Float32Array(L * H * D);
    for (const [h, b] of c.prefixIndex.entries()) {
      if (this.verified.get(h) === b) continue;
      const want = this.expectedByHash.get(h);
      if (!want) assert.fail(`block ${b} is indexed under a hash no pristine model sequence produced`);
      for (let l = 0; l < nLayers; l++) {
        c.storage.readRows(l, b, 0, L, k, v, 0);
        for (let t = 0; t < L; t++) {
          for (let i = 0; i < H * D; i++) {
            if (!Object.is(k[t * H * D + i], want[t]!.k[l * H * D + i]) || !Object.is(v[t * H * D + i], want[t]!.v[l * H * D + i])) {
              assert.fail(`indexed block ${b}, layer ${l}, slot ${t}: K/V differ from the block its hash names`);
            }
          }
        }
      }
      this.verified.set(h, b);
    }
  }

  private pickSeq(p: number): number | null {
    const ids = [...this.model.keys()].sort((a, b) => a - b);
    return ids.length === 0 ? null : ids[p % ids.length]!;
  }

  run(op: Op): void {
    const c = this.cache;
    if (op.kind === 'add') {
      if (this.model.size >= MAX_SEQS) return;
      const prompt = Array.from({ length: op.len }, (_, p) => famTok(p < op.cut ? op.f1 : op.f2, p));
      const { seq, cachedTokens } = c.seqAdd(prompt, { maxHitTokens: op.maxHit ?? undefined, namespace: op.ns === 3 ? 'other' : undefined });
      const maxHit = op.maxHit ?? Math.max(0, prompt.length - 1);
      assert.ok(cachedTokens % this.cfg.blockLen === 0 && cachedTokens <= Math.min(maxHit, prompt.length), `cachedTokens ${cachedTokens}`);
      const ms: ModelSeq = { entries: [], pristine: true, namespace: op.ns === 3 ? 'other' : '', hashes: [] };
      ms.entries = this.newEntries(ms, 0, prompt.slice(0, cachedTokens), Math.random);
      this.extendChain(ms);
      this.model.set(seq, ms);
      if (cachedTokens < prompt.length) this.appendTokens(seq, ms, prompt.slice(cachedTokens), Math.random);
      return;
    }
    if (op.kind === 'clear') {
      c.clearPrefixCache();
      assert.deepEqual([c.cachedBlocks, c.prefixIndex.size], [0, 0]);
      return;
    }
    const seq = this.pickSeq(op.pick);
    if (seq === null) return;
    const ms = this.model.get(seq)!;
    const m = ms.entries;
    const nextPos = m.length === 0 ? 0 : m[m.length - 1]!.pos + 1;
    assert.equal(c.nextPos(seq), nextPos, 'nextPos');
    switch (op.kind) {
      case 'append': {
        if (m.length + op.n > MAX_TOKENS || nextPos + op.n > MAX_POS) return;
        const rng = mulberry32(op.seed);
        // Families 0..2: that family at these positions; 3: ids from a small vocabulary; 4, 5: the
        // family of the last token (so long runs of one family, and chains that meet prompts again).
        const last = m[m.length - 1];
        const lastFamily = [0, 1, 2].find((f) => last !== undefined && last.tok === famTok(f, last.pos)) ?? 0;
        const family = op.family >= 4 ? lastFamily : op.family;
        const toks = Array.from({ length: op.n }, (_, i) => {
          if (!op.withIds) return null;
          return family < 3 ? famTok(family, nextPos + i) : Math.floor(rng() * op.vocab);
        });
        this.appendTokens(seq, ms, toks, rng);
        return;
      }
      case 'cancel': {
        // Junk written into reserved slots must never show up in any sequence.
        if (!c.reserve(seq, op.n)) return;
        const junk = new Float32Array(op.n * this.cfg.H * this.cfg.D).fill(9);
        for (let l = 0; l < Math.min(op.layers, this.cfg.nLayers); l++) c.write(l, seq, junk, junk);
        c.cancel(seq);
        return;
      }
      case 'remove': {
        const p0 = op.a % (nextPos + 2);
        const p1 = op.toEnd ? Infinity : p0 + op.b;
        c.seqRemove(seq, p0, p1);
        const kept = m.filter((e) => e.pos < p0 || e.pos >= p1);
        // Only a tail truncation keeps a sequence pristine.
        if (kept.length < m.length && kept.some((e) => e.pos >= p1)) ms.pristine = false;
        ms.entries = kept;
        ms.hashes.length = Math.min(ms.hashes.length, Math.floor(kept.length / this.cfg.blockLen));
        return;
      }
      case 'keep':
        c.seqKeep(seq);
        for (const id of [...this.model.keys()]) if (id !== seq) this.model.delete(id);
        return;
      case 'fork':
        if (this.model.size >= MAX_SEQS) return;
        this.model.set(c.seqFork(seq), { ...ms, entries: m.slice(), hashes: ms.hashes.slice() });
        return;
      case 'free':
        c.seqFree(seq);
        this.model.delete(seq);
        return;
      case 'shift':
        this.shift(seq, ms, op);
        return;
    }
  }

  private shift(seq: number, ms: ModelSeq, op: Extract<Op, { kind: 'shift' }>): void {
    const m = ms.entries;
    if (m.length === 0) return;
    let p0: number, p1: number, delta: number;
    const gaps = m.flatMap((e, i) => (i > 0 && e.pos - m[i - 1]!.pos > 1 ? [i] : []));
    if (op.mode === 0 && gaps.length > 0) {
      // Close (part of) a gap: move everything after it back.
      const i = gaps[op.a % gaps.length]!;
      const gap = m[i]!.pos - m[i - 1]!.pos - 1;
      [p0, p1, delta] = [m[i]!.pos, Infinity, -(1 + (op.b % gap))];
    } else if (op.mode === 1) {
      [p0, p1, delta] = [m[op.a % m.length]!.pos, Infinity, 1 + (op.b % 4)];
    } else {
      p0 = op.a % (m[m.length - 1]!.pos + 2);
      [p1, delta] = [p0 + (op.b % 12), ((op.a + op.b) % 11) - 5];
    }
    const inside = m.filter((e) => e.pos >= p0 && e.pos < p1);
    const before = bookkeeping(this.cache);
    if (inside.length === 0 || delta === 0) {
      assert.equal(this.cache.seqShift(seq, p0, p1, delta), true);
      assert.equal(bookkeeping(this.cache), before);
      return;
    }
    const lo = inside[0]!.pos + delta;
    const hi = inside[inside.length - 1]!.pos + delta;
    const prevMax = Math.max(-1, ...m.filter((e) => e.pos < p0).map((e) => e.pos));
    const nextMin = Math.min(Infinity, ...m.filter((e) => e.pos >= p1).map((e) => e.pos));
    if (lo < 0 || lo <= prevMax || hi >= nextMin || hi > MAX_POS) {
      if (hi > MAX_POS) return;
      assert.throws(() => this.cache.seqShift(seq, p0, p1, delta), OutOfRangeError);
      assert.equal(bookkeeping(this.cache), before, 'a rejected shift changes nothing');
      return;
    }
    if (!this.cache.seqShift(seq, p0, p1, delta)) {
      assert.equal(bookkeeping(this.cache), before, 'a refused shift changes nothing');
      return;
    }
    ms.entries = m.map((e) => (e.pos >= p0 && e.pos < p1 ? this.rotated(e, delta) : e));
    ms.pristine = false;
  }

  /** The entry moved by delta: K rotated by delta * invFreq per pair, rounded through the dtype; V unchanged. */
  private rotated(e: Entry, delta: number): Entry {
    const { D, rotaryDim, pairing } = this.cfg;
    const k = new Float32Array(e.k);
    const half = rotaryDim / 2;
    for (let r = 0; r < k.length / D; r++) {
      const o = r * D;
      const x = this.rowF;
      x.set(k.subarray(o, o + D));
      for (let i = 0; i < half; i++) {
        const [a, b] = pairing === 'neox' ? [i, i + half] : [2 * i, 2 * i + 1];
        const th = delta * this.invFreq[i]!;
        const xa = x[a]!;
        const xb = x[b]!;
        x[a] = xa * Math.cos(th) - xb * Math.sin(th);
        x[b] = xb * Math.cos(th) + xa * Math.sin(th);
      }
      this.roundTrip(x, 0);
      k.set(x, o);
    }
    return { pos: e.pos + delta, tok: e.tok, ctx: null, k, v: e.v };
  }

  /** The invariants of the file header. */
  check(): void {
    const c = this.cache;
    const pool = c.pool;
    assert.equal(pool.freeBlocks + pool.cachedBlocks + pool.usedBlocks, pool.totalBlocks, 'free + cached + used = total');
    const expectedRefs = new Int32Array(pool.nBlocks);
    for (const s of c.seqIds()) for (const b of c.blockTable(s)) expectedRefs[b]!++;
    const free = new Set(pool.freeList());
    const lru = new Set(pool.lruOrder());
    assert.equal(free.size + lru.size, pool.freeBlocks + pool.cachedBlocks, 'no block twice on the free stack or LRU');
    for (let b = 1; b < pool.nBlocks; b++) {
      const r = pool.refCount(b);
      if (r !== expectedRefs[b]) assert.fail(`block ${b}: refcount ${r}, referenced by ${expectedRefs[b]} block tables`);
      const cached = pool.isCached(b);
      if ((r === 0) !== (free.has(b) || lru.has(b))) assert.fail(`block ${b}: refcount ${r}, free ${free.has(b)}, lru ${lru.has(b)}`);
      if (free.has(b) && (lru.has(b) || cached)) assert.fail(`block ${b} free but cached or on the LRU`);
      if (lru.has(b) && !cached) assert.fail(`block ${b} on the LRU but not indexed`);
      if (cached !== (c.prefixIndex.hashOf(b) !== null)) assert.fail(`block ${b}: pool cached ${cached}, index ${c.prefixIndex.hashOf(b)}`);
    }
    for (const [h, b] of c.prefixIndex.entries()) if (c.prefixIndex.hashOf(b) !== h) assert.fail(`index entry ${h} -> ${b} not mirrored`);
    assert.deepEqual(c.seqIds(), [...this.model.keys()].sort((a, b) => a - b), 'live sequences');
    for (const [seq, ms] of this.model) this.checkSeq(seq, ms.entries);
    this.checkIndex();
  }

  private checkSeq(seq: number, m: Entry[]): void {
    const c = this.cache;
    const { nLayers, H, D } = this.cfg;
    assert.equal(c.seqLen(seq), m.length, `seq ${seq} length`);
    const view = c.view(0, seq);
    let total = 0;
    let last = -1;
    for (const s of view.segments) {
      if (s.nTokens < 1 || s.pos0 <= last) assert.fail(`seq ${seq}: segment at ${s.pos0} of ${s.nTokens} after position ${last}`);
      last = s.pos0 + s.nTokens - 1;
      total += s.nTokens;
    }
    assert.equal(total, m.length);
    for (let l = 0; l < nLayers; l++) {
      const r = c.read(l, seq);
      for (let t = 0; t < m.length; t++) {
        const e = m[t]!;
        if (r.positions[t] !== e.pos) assert.fail(`seq ${seq} token ${t}: position ${r.positions[t]}, model ${e.pos}`);
        for (let i = 0; i < H * D; i++) {
          const [k, v] = [r.k[t * H * D + i]!, r.v[t * H * D + i]!];
          if (!Object.is(k, e.k[l * H * D + i]) || !Object.is(v, e.v[l * H * D + i])) {
            assert.fail(`seq ${seq} layer ${l} token ${t} (pos ${e.pos}) elem ${i}: K ${k} V ${v}, model K ${e.k[l * H * D + i]} V ${e.v[l * H * D + i]}`);
          }
        }
      }
    }
  }
}

/** Everything the bookkeeping holds, as a string (for "nothing changed"). */
function bookkeeping(c: PagedKVCache): string {
  const p = c.pool;
  const parts: (number | string | null)[] = [p.freeList().join(' '), p.lruOrder().join(' ')];
  for (let b = 1; b < p.nBlocks; b++) parts.push(p.refCount(b), c.prefixIndex.hashOf(b));
  for (const s of c.seqIds()) parts.push(s, c.seqLen(s), c.nextPos(s), c.blockTable(s).join(' '));
  return parts.join(',');
}

const configArb = (dtype: DType, D: number, nLayers: number, H: number) =>
  fc.record({
    dtype: fc.constant(dtype),
    nLayers: fc.constant(nLayers),
    H: fc.constant(H),
    D: fc.constant(D),
    blockLen: fc.integer({ min: 1, max: 6 }),
    nBlocks: fc.integer({ min: 4, max: 40 }),
    rotaryDim: fc.constantFrom(D, D / 2),
    pairing: fc.constantFrom('neox' as const, 'interleaved' as const),
  });

/** Runs `numRuns` programs of 1..maxOps operations (short ones shrink well); returns the operations run. */
function runProperty(label: string, cfgArb: fc.Arbitrary<RunConfig>, maxOps: number, numRuns: number): number {
  const arena = new Arena({ initialBytes: 4 << 20, maximumBytes: 64 << 20 });
  let ops = 0;
  const seed = process.env.KVCACHE_FC_SEED === undefined ? undefined : Number(process.env.KVCACHE_FC_SEED);
  fc.assert(
    fc.property(cfgArb, fc.array(opArb, { minLength: 1, maxLength: maxOps, size: 'max' }), (cfg, program) => {
      const h = new Harness(cfg, arena);
      try {
        for (const op of program) {
          h.run(op);
          h.check();
          ops++;
        }
      } finally {
        h.cache.dispose();
      }
      assert.equal(arena.liveAllocations, 0, `${label}: dispose frees the storage`);
    }),
    { numRuns, seed },
  );
  arena.dispose();
  return ops;
}

test('paged cache vs naive model, f32 KV: >= 100,000 random operations, exact read-back', (t) => {
  // Program lengths average ~280 of at most 600: ~118,000 operations (the bound is ~5 sd below).
  const ops = runProperty('f32', configArb('f32', 4, 2, 2), 600, 420);
  t.diagnostic(`${ops} operations`);
  assert.ok(ops >= 100_000, `${ops} operations`);
});

test('paged cache vs naive model, q8_0 K and V: exact against the quantize-dequantize round trip', (t) => {
  const ops = runProperty('q8_0', configArb('q8_0', 32, 1, 1), 300, 60);
  t.diagnostic(`${ops} operations`);
  assert.ok(ops >= 5_000, `${ops} operations`);
});
