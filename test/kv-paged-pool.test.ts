/**
 * Scenario tests of the paged cache's bookkeeping: exact block ids, reference counts, free list
 * and LRU (eviction) order for allocation, fork + copy-on-write, remove, keep, shift, eviction
 * under pressure, prefix hits (and misses across namespaces, fingerprints, dtypes), capacity
 * reported as a value with nothing changed, typed errors, and no leak.
 *
 * Values written for a token are a function of (layer, position, token id, head, dim), small
 * multiples of 1/8, so f32 storage reads them back exactly and every read is checked against the
 * formula, not against the cache.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { ConfigError, DTypeError, DisposedError, OutOfRangeError, ShapeError, StateError } from '../src/core/errors.js';
import { BlockHasher } from '../src/kv/paged/block-hash.js';
import { BlockPool } from '../src/kv/paged/block-pool.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import type { PagedKVCacheConfig } from '../src/kv/paged/paged-config.js';

const H = 2; // kv heads
const D = 4; // head dim
const L = 4; // block length

function newArena(): Arena {
  return new Arena({ initialBytes: 1 << 20, maximumBytes: 32 << 20 });
}

function mk(nBlocks: number, extra: Partial<PagedKVCacheConfig> = {}): PagedKVCache {
  return new PagedKVCache({
    arena: newArena(), nLayers: 2, nKvHeads: H, headDim: D, nBlocks, blockLen: L, fingerprint: 'test-model',
    rope: { theta: 10000 }, ...extra,
  });
}

/** The value stored for (layer, pos, token, head, dim): exact in f32. */
function val(layer: number, pos: number, tok: number, h: number, d: number, which: 0 | 1): number {
  return ((tok * 31 + pos * 7 + layer * 3 + h * 5 + which * 11) % 97) / 8 - 6 + d * 0.25;
}

function rows(layer: number, pos0: number, toks: number[], which: 0 | 1): Float32Array {
  const a = new Float32Array(toks.length * H * D); // [nTokens, nKvHeads, headDim]
  toks.forEach((tok, t) => {
    for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) a[(t * H + h) * D + d] = val(layer, pos0 + t, tok, h, d, which);
  });
  return a;
}

/** reserve + write every layer + commit; false when the pool is out of blocks. */
function append(c: PagedKVCache, seq: number, toks: number[], withIds = true): boolean {
  const pos0 = c.nextPos(seq);
  if (!c.reserve(seq, toks.length, withIds ? toks : undefined)) return false;
  for (let l = 0; l < c.nLayers; l++) c.write(l, seq, rows(l, pos0, toks, 0), rows(l, pos0, toks, 1));
  c.commit(seq);
  return true;
}

/** Assert seq holds exactly `toks` at `positions` (what `append` wrote there). */
function expectContent(c: PagedKVCache, seq: number, toks: number[], positions: number[], writtenAt = positions): void {
  for (let l = 0; l < c.nLayers; l++) {
    const r = c.read(l, seq);
    assert.deepEqual([...r.positions], positions, `seq ${seq} positions`);
    toks.forEach((tok, t) => {
      for (let h = 0; h < H; h++) {
        for (let d = 0; d < D; d++) {
          assert.equal(r.k[(t * H + h) * D + d], val(l, writtenAt[t]!, tok, h, d, 0), `seq ${seq} layer ${l} token ${t} K`);
          assert.equal(r.v[(t * H + h) * D + d], val(l, writtenAt[t]!, tok, h, d, 1), `seq ${seq} layer ${l} token ${t} V`);
        }
      }
    });
  }
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
const refs = (c: PagedKVCache, blocks: number[]) => blocks.map((b) => c.pool.refCount(b));

/** Everything observable about the bookkeeping, for "nothing changed" checks. */
function snapshot(c: PagedKVCache): string {
  const blocks = range(1, c.pool.nBlocks).map((b) => [b, c.pool.refCount(b), c.pool.isCached(b), c.prefixIndex.hashOf(b)]);
  const seqs = c.seqIds().map((s) => [s, [...c.blockTable(s)], c.seqLen(s), c.nextPos(s)]);
  return JSON.stringify({ blocks, seqs, free: c.pool.freeList(), lru: c.pool.lruOrder(), n: [c.freeBlocks, c.cachedBlocks, c.usedBlocks] });
}

describe('BlockPool alone', () => {
  test('hands out 1, 2, 3 ..., null block never; LIFO reuse; allocateMany all-or-nothing; null when exhausted', () => {
    const p = new BlockPool({ nBlocks: 5 });
    assert.equal(p.totalBlocks, 4);
    assert.deepEqual([p.allocate(), p.allocate()], [1, 2]);
    p.release(1);
    assert.deepEqual(p.freeList(), [1, 3, 4]);
    assert.equal(p.allocate(), 1);
    const out: number[] = [];
    assert.equal(p.allocateMany(3, out), false);
    assert.deepEqual(out, []);
    assert.deepEqual(p.freeList(), [3, 4]);
    assert.equal(p.allocateMany(2, out), true);
    assert.deepEqual(out, [3, 4]);
    assert.equal(p.allocate(), null);
    assert.deepEqual([p.freeBlocks, p.cachedBlocks, p.usedBlocks], [0, 0, 4]);
  });

  test('cached blocks go to the LRU at refcount 0, come back on a hit, are evicted oldest first with a callback', () => {
    const evicted: number[] = [];
    const p = new BlockPool({ nBlocks: 5, onEvict: (b) => evicted.push(b) });
    const b = [p.allocate()!, p.allocate()!, p.allocate()!, p.allocate()!];
    assert.deepEqual(b, [1, 2, 3, 4]);
    for (const x of [1, 2, 3]) p.setCached(x, true);
    p.retain(2);
    for (const x of [3, 2, 1]) p.release(x); // tail first
    assert.deepEqual(p.lruOrder(), [3, 1], 'block 2 still has a reference');
    p.release(2);
    assert.deepEqual(p.lruOrder(), [3, 1, 2]);
    p.acquireCached(1);
    assert.deepEqual(p.lruOrder(), [3, 2]);
    assert.equal(p.refCount(1), 1);
    p.release(4);
    assert.deepEqual([p.allocate(), p.allocate(), p.allocate()], [4, 3, 2], 'free stack first, then LRU oldest first');
    assert.deepEqual(evicted, [3, 2]);
    assert.equal(p.isCached(3), false);
    assert.equal(p.allocate(), null);
    p.release(1);
    p.setCached(1, false);
    assert.deepEqual([p.lruOrder(), p.freeList()], [[], [1]], 'un-caching a cached-free block frees it');
  });
});

describe('PagedKVCache scenarios', () => {
  test('allocation: blocks 1, 2, 3 in order; full blocks indexed, the partial tail not; view has one segment per block', () => {
    const c = mk(8);
    const { seq, cachedTokens } = c.seqAdd();
    assert.equal(cachedTokens, 0);
    const toks = range(100, 110);
    assert.ok(append(c, seq, toks));
    assert.deepEqual([...c.blockTable(seq)], [1, 2, 3]);
    assert.deepEqual(refs(c, [1, 2, 3]), [1, 1, 1]);
    assert.deepEqual([1, 2, 3].map((b) => c.pool.isCached(b)), [true, true, false]);
    assert.deepEqual([c.freeBlocks, c.cachedBlocks, c.usedBlocks, c.totalBlocks], [4, 0, 3, 7]);
    assert.deepEqual(c.pool.freeList(), [4, 5, 6, 7]);
    expectContent(c, seq, toks, range(0, 10));
    const v = c.view(1, seq);
    assert.deepEqual(v.segments.map((s) => [s.pos0, s.nTokens]), [[0, 4], [4, 4], [8, 2]]);
    assert.deepEqual(v.segments.map((s) => s.kOffsetBytes), [1, 2, 3].map((b) => c.storage.kOffset(1, b, 0)));
    assert.equal(v.kHeadStrideBytes, L * D * 4);
    assert.equal(v.kTokenStrideBytes, D * 4);
    assert.equal(c.view(1, seq), v, 'the view object is reused');
    c.dispose();
  });

  test('fork shares every block; the first write into the shared partial tail copies it; the other writes in place', () => {
    const c = mk(8);
    const a = c.seqAdd().seq;
    const base = range(0, 10);
    append(c, a, base);
    const b = c.seqFork(a);
    assert.deepEqual([...c.blockTable(b)], [1, 2, 3]);
    assert.deepEqual(refs(c, [1, 2, 3]), [2, 2, 2]);
    assert.ok(append(c, b, [50]));
    assert.deepEqual([...c.blockTable(b)], [1, 2, 4], 'copy-on-write of block 3 into block 4');
    assert.deepEqual(refs(c, [1, 2, 3, 4]), [2, 2, 1, 1]);
    assert.ok(append(c, a, [60, 61]));
    assert.deepEqual([...c.blockTable(a)], [1, 2, 3], 'a owns block 3 alone now: no copy');
    assert.deepEqual(c.pool.freeList(), [5, 6, 7]);
    expectContent(c, a, [...base, 60, 61], range(0, 12));
    expectContent(c, b, [...base, 50], range(0, 11));
    // Full shared tails need no copy: appending to a fork of a block-aligned sequence takes a new block.
    const d = c.seqFork(a);
    assert.ok(append(c, d, [70]));
    assert.deepEqual([...c.blockTable(d)], [1, 2, 3, 5]);
    assert.deepEqual(refs(c, [1, 2, 3, 4, 5]), [3, 3, 2, 1, 1]);
    c.seqFree(a);
    c.seqFree(b);
    c.seqFree(d);
    assert.deepEqual([c.usedBlocks, c.freeBlocks + c.cachedBlocks], [0, 7]);
    c.dispose();
  });

  test('seqRemove keeps later positions (a gap), splits runs, releases blocks no longer used (indexed ones to the LRU)', () => {
    const c = mk(8);
    const s = c.seqAdd().seq;
    const toks = range(0, 12);
    append(c, s, toks);
    c.seqRemove(s, 5, 7);
    assert.deepEqual([...c.blockTable(s)], [1, 2, 3], 'block 2 still holds positions 4 and 7');
    assert.deepEqual(c.view(0, s).segments.map((g) => [g.pos0, g.nTokens]), [[0, 4], [4, 1], [7, 1], [8, 4]]);
    assert.equal(c.view(0, s).segments[2]!.kOffsetBytes, c.storage.kOffset(0, 2, 3), 'a segment may start inside a block');
    const kept = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11];
    expectContent(c, s, kept.map((p) => toks[p]!), kept);
    c.seqRemove(s, 4, 8);
    assert.deepEqual([...c.blockTable(s)], [1, 3]);
    assert.deepEqual([c.pool.refCount(2), c.pool.isCached(2), c.pool.lruOrder()], [0, true, [2]]);
    assert.equal(c.seqLen(s), 8);
    assert.equal(c.nextPos(s), 12, 'positions keep their values');
    // A removal past the end or of an empty range changes nothing.
    const before = snapshot(c);
    c.seqRemove(s, 20, 30);
    c.seqRemove(s, 9, 9);
    assert.equal(snapshot(c), before);
    c.seqRemove(s, 0, Infinity);
    assert.deepEqual([c.seqLen(s), c.nextPos(s), c.usedBlocks, c.pool.lruOrder()], [0, 0, 0, [2, 3, 1]]);
    c.dispose();
  });

  test('a tail truncation keeps the prefix chain: the cut block leaves the index when rewritten, then is indexed again when full', () => {
    const c = mk(8);
    const s = c.seqAdd().seq;
    append(c, s, range(0, 12));
    const h2 = c.prefixIndex.hashOf(2);
    c.seqRemove(s, 6);
    assert.deepEqual([...c.blockTable(s)], [1, 2]);
    assert.deepEqual([c.pool.lruOrder(), c.prefixIndex.hashOf(2)], [[3], h2], 'block 2 bytes are unchanged: still indexed');
    append(c, s, [90]);
    assert.equal(c.prefixIndex.hashOf(2), null, 'writing into an indexed block takes it out of the index first');
    append(c, s, [91]);
    const h2new = c.prefixIndex.hashOf(2);
    assert.ok(h2new !== null && h2new !== h2, 'refilled with other tokens: indexed under a new hash');
    const hit = c.seqAdd([0, 1, 2, 3, 4, 5, 90, 91, 0], { maxHitTokens: 8 });
    assert.equal(hit.cachedTokens, 8);
    assert.deepEqual([...c.blockTable(hit.seq)], [1, 2]);
    c.dispose();
  });

  test('seqKeep frees every other sequence, tail first', () => {
    const c = mk(10);
    const a = c.seqAdd().seq;
    const b = c.seqAdd().seq;
    const d = c.seqAdd().seq;
    append(c, a, range(0, 8)); // blocks 1, 2
    append(c, b, range(20, 28)); // blocks 3, 4
    append(c, d, range(40, 46)); // blocks 5, 6 (6 partial)
    c.seqKeep(b);
    assert.deepEqual(c.seqIds(), [b]);
    assert.deepEqual(c.pool.lruOrder(), [2, 1, 5], 'indexed blocks to the LRU, leaves first');
    assert.deepEqual(c.pool.freeList(), [6, 7, 8, 9], 'the partial block 6 was never indexed');
    assert.throws(() => c.seqLen(a), OutOfRangeError);
    c.dispose();
  });

  test('seqShift closes a gap: positions move, keys re-rotate, edited indexed blocks leave the index, shared ones are copied', () => {
    const c = mk(10);
    const s = c.seqAdd().seq;
    append(c, s, range(0, 12));
    const f = c.seqFork(s); // shares blocks 1, 2, 3
    c.seqRemove(s, 2, 6);
    assert.deepEqual(refs(c, [1, 2, 3]), [2, 2, 2]);
    const kBefore = c.read(0, s).k;
    assert.equal(c.seqShift(s, 6, Infinity, -4), true);
    assert.deepEqual([...c.read(0, s).positions], range(0, 8));
    assert.deepEqual([...c.blockTable(s)], [1, 4, 5], 'blocks 2 and 3 were shared: copied to 4 and 5');
    assert.deepEqual(refs(c, [1, 2, 3, 4, 5]), [2, 1, 1, 1, 1]);
    assert.deepEqual([2, 3, 4, 5].map((b) => c.pool.isCached(b)), [true, true, false, false], 'originals stay indexed for the fork');
    // Untouched tokens keep their bytes; shifted keys changed, values did not.
    const r = c.read(0, s);
    assert.deepEqual([...r.k.subarray(0, 2 * H * D)], [...kBefore.subarray(0, 2 * H * D)]);
    assert.notDeepEqual([...r.k.subarray(2 * H * D)], [...kBefore.subarray(2 * H * D)]);
    expectContent(c, f, range(0, 12), range(0, 12));
    for (let l = 0; l < 2; l++) {
      const v = c.read(l, s).v;
      [0, 1, 6, 7, 8, 9, 10, 11].forEach((tok, t) => {
        for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) assert.equal(v[(t * H + h) * D + d], val(l, tok, tok, h, d, 1));
      });
    }
    // An exclusively owned indexed block is edited in place and leaves the index.
    const g = c.seqAdd().seq;
    append(c, g, range(200, 208)); // blocks 6, 7, both indexed
    c.seqRemove(g, 0, 4);
    c.seqShift(g, 4, 8, -4);
    assert.deepEqual([[...c.blockTable(g)], c.pool.isCached(7), c.prefixIndex.hashOf(7)], [[7], false, null]);
    assert.equal(c.pool.lruOrder().includes(6), true, 'the removed, unedited block 6 stays cached');
    c.dispose();
  });

  test('seqShift validation: crossing tokens or negative positions throw, an empty range or delta 0 is a no-op, no rope is a ConfigError', () => {
    const c = mk(8);
    const s = c.seqAdd().seq;
    append(c, s, range(0, 8));
    c.seqRemove(s, 2, 4);
    const before = snapshot(c);
    assert.throws(() => c.seqShift(s, 4, 8, -3), OutOfRangeError, 'would land on position 1');
    assert.throws(() => c.seqShift(s, 0, 2, -1), OutOfRangeError, 'negative position');
    assert.throws(() => c.seqShift(s, 0, 2, 3), OutOfRangeError, 'would cross position 4');
    assert.equal(c.seqShift(s, 2, 4, 5), true, 'no token in [2, 4)');
    assert.equal(c.seqShift(s, 4, 8, 0), true);
    assert.equal(snapshot(c), before);
    assert.equal(c.seqShift(s, 4, 8, -2), true);
    assert.deepEqual([...c.read(0, s).positions], range(0, 6));
    c.dispose();
    const noRope = mk(4, { rope: undefined });
    const t = noRope.seqAdd().seq;
    append(noRope, t, [1, 2]);
    assert.throws(() => noRope.seqShift(t, 0, 2, 1), ConfigError);
    noRope.dispose();
  });

  test('eviction under pressure: free blocks first, then cached ones least recently released first (leaves before parents)', () => {
    const c = mk(7); // 6 usable blocks
    const a = c.seqAdd().seq;
    const prompt = range(0, 12);
    append(c, a, prompt); // blocks 1, 2, 3 indexed
    c.seqFree(a);
    assert.deepEqual([c.pool.lruOrder(), c.pool.freeList()], [[3, 2, 1], [4, 5, 6]]);
    const b = c.seqAdd().seq;
    assert.ok(append(c, b, range(500, 516))); // 4 blocks
    assert.deepEqual([...c.blockTable(b)], [4, 5, 6, 3], 'took the free blocks, then evicted block 3 (the leaf)');
    assert.deepEqual(c.pool.lruOrder(), [2, 1]);
    assert.equal(c.prefixIndex.size, 2 + 4, "block 3's hash is gone; b's 4 full blocks are indexed");
    const hit = c.seqAdd(prompt);
    assert.equal(hit.cachedTokens, 8, 'the parents survived');
    assert.deepEqual([...c.blockTable(hit.seq)], [1, 2]);
    assert.deepEqual(refs(c, [1, 2]), [1, 1]);
    expectContent(c, hit.seq, prompt.slice(0, 8), range(0, 8));
    c.dispose();
  });

  test('prefix hit on a shared prefix: blocks shared by reference; the last partial block and the last token are never shared', () => {
    const c = mk(10);
    const a = c.seqAdd().seq;
    const prompt = range(300, 310);
    append(c, a, prompt);
    const b = c.seqAdd(prompt);
    assert.equal(b.cachedTokens, 8);
    assert.deepEqual([...c.blockTable(b.seq)], [1, 2]);
    assert.deepEqual(refs(c, [1, 2, 3]), [2, 2, 1]);
    assert.ok(append(c, b.seq, prompt.slice(8)));
    assert.deepEqual([...c.blockTable(b.seq)], [1, 2, 4]);
    expectContent(c, b.seq, prompt, range(0, 10));
    // An 8-token prompt: by default the block holding its last token is computed, not reused.
    assert.equal(c.seqAdd(prompt.slice(0, 8)).cachedTokens, 4);
    assert.equal(c.seqAdd(prompt.slice(0, 8), { maxHitTokens: 8 }).cachedTokens, 8);
    assert.equal(c.cachedPrefixTokens(prompt, { maxHitTokens: 100 }), 8);
    assert.equal(c.cachedPrefixTokens([300, 301, 302, 999, 304, 305, 306, 307, 308]), 0, 'a different token in block 0');
    c.dispose();
  });

  test('no prefix hit across namespaces, fingerprints, K dtypes or V dtypes', () => {
    const c = mk(10, { namespace: 'tenant-a' });
    const prompt = range(0, 9);
    append(c, c.seqAdd().seq, prompt);
    assert.equal(c.cachedPrefixTokens(prompt), 8);
    assert.equal(c.seqAdd(prompt, { namespace: 'tenant-b' }).cachedTokens, 0);
    assert.equal(c.seqAdd(prompt, { namespace: 'tenant-a' }).cachedTokens, 8);
    const own = { fingerprint: 'test-model', kDtype: 'f32', vDtype: 'f32', namespace: 'tenant-a' };
    assert.equal(c.prefixIndex.match(new BlockHasher(own, L), prompt, 100).blocks.length, 2, 'the control hits');
    for (const other of [{ fingerprint: 'other-model' }, { kDtype: 'f16' }, { vDtype: 'q8_0' }, { namespace: '' }]) {
      assert.equal(c.prefixIndex.match(new BlockHasher({ ...own, ...other }, L), prompt, 100).blocks.length, 0, JSON.stringify(other));
    }
    // A cache with another K dtype computes other addresses for the same tokens.
    const q = mk(10, { kDtype: 'f16', namespace: 'tenant-a' });
    append(q, q.seqAdd().seq, prompt);
    const hashes = (x: PagedKVCache) => new Set(x.prefixIndex.entries().map(([h]) => h));
    assert.equal([...hashes(q)].filter((h) => hashes(c).has(h)).length, 0);
    c.dispose();
    q.dispose();
  });

  test('two sequences computing the same blocks: the first registration wins, the duplicate stays private and is freed', () => {
    const c = mk(10);
    const a = c.seqAdd().seq;
    const b = c.seqAdd().seq;
    append(c, a, range(0, 4));
    append(c, b, range(0, 4));
    assert.deepEqual([c.prefixIndex.hashOf(1) !== null, c.prefixIndex.hashOf(2)], [true, null]);
    c.seqFree(b);
    c.seqFree(a);
    assert.deepEqual([c.pool.lruOrder(), c.pool.freeList().slice(0, 1)], [[1], [2]]);
    c.dispose();
  });

  test('out of blocks: reserve and seqShift return false and change nothing (copy-on-write included)', () => {
    const c = mk(5); // 4 usable
    const a = c.seqAdd().seq;
    append(c, a, range(0, 6)); // blocks 1, 2
    const f = c.seqFork(a);
    append(c, c.seqAdd().seq, range(50, 54)); // block 3, indexed
    const before = snapshot(c);
    assert.equal(c.reserve(a, 7), false, 'needs a copy of the shared tail + 1 block, 2 available');
    assert.equal(c.reserve(a, 11), false);
    assert.equal(snapshot(c), before);
    c.seqRemove(f, 1, 3);
    assert.ok(c.reserve(c.seqAdd().seq, 1)); // takes block 4, the last one
    const beforeShift = snapshot(c);
    assert.equal(c.seqShift(f, 3, Infinity, -2), false, 'blocks 1 and 2 are shared with a: two copies, none available');
    assert.equal(snapshot(c), beforeShift);
    assert.equal(c.reserve(a, 2, [6, 7]), false);
    c.dispose();
  });

  test('reserve evicts a cached block when nothing is free; cancel gives the new blocks back', () => {
    const c = mk(4); // 3 usable
    const a = c.seqAdd().seq;
    append(c, a, range(0, 8)); // blocks 1, 2 indexed
    c.seqFree(a);
    const b = c.seqAdd().seq;
    assert.ok(c.reserve(b, 9));
    assert.deepEqual([...c.blockTable(b)], [3, 2, 1]);
    assert.equal(c.prefixIndex.size, 0);
    c.cancel(b);
    assert.deepEqual([c.seqLen(b), c.pool.freeList()], [0, [3, 2, 1]]);
    assert.ok(append(c, b, [5, 6]));
    assert.deepEqual([...c.blockTable(b)], [3]);
    c.dispose();
  });

  test('tokens reserved without ids end the prefix chain for good', () => {
    const c = mk(8);
    const s = c.seqAdd().seq;
    append(c, s, range(0, 4));
    append(c, s, range(4, 8), false);
    append(c, s, range(8, 12));
    assert.deepEqual([1, 2, 3].map((b) => c.pool.isCached(b)), [true, false, false]);
    c.dispose();
  });

  test('typed errors for bad input; state errors for calls out of order', () => {
    const c = mk(8);
    const s = c.seqAdd().seq;
    assert.throws(() => c.seqLen(99), OutOfRangeError);
    assert.throws(() => c.seqRemove(s, 5, 2), OutOfRangeError);
    assert.throws(() => c.seqRemove(s, -1, 2), OutOfRangeError);
    assert.throws(() => c.reserve(s, 0), ConfigError);
    assert.throws(() => c.reserve(s, 2, [1]), ShapeError);
    assert.throws(() => c.reserve(s, 1, [-1]), ConfigError);
    assert.throws(() => c.seqAdd([1.5]), ConfigError);
    assert.throws(() => c.write(0, s, new Float32Array(H * D), new Float32Array(H * D)), StateError);
    assert.ok(c.reserve(s, 2));
    assert.throws(() => c.reserve(s, 1), StateError);
    assert.throws(() => c.write(0, s, new Float32Array(H * D), new Float32Array(2 * H * D)), ShapeError);
    assert.throws(() => c.write(2, s, new Float32Array(2 * H * D), new Float32Array(2 * H * D)), OutOfRangeError);
    c.write(0, s, new Float32Array(2 * H * D), new Float32Array(2 * H * D));
    assert.throws(() => c.commit(s), StateError, 'layer 1 not written');
    assert.throws(() => c.seqFork(s), StateError);
    assert.throws(() => c.seqRemove(s, 0, 1), StateError);
    c.cancel(s);
    assert.equal(c.seqLen(s), 0);
    const arena = newArena();
    const mkBad = (x: Partial<PagedKVCacheConfig>) => () => new PagedKVCache({ arena, nLayers: 1, nKvHeads: 1, headDim: 48, nBlocks: 4, fingerprint: 'm', ...x });
    assert.throws(mkBad({ kDtype: 'q8_0' }), DTypeError, 'headDim 48 is not a multiple of 32');
    assert.throws(mkBad({ vDtype: 'q4_0' }), DTypeError);
    assert.throws(mkBad({ dtype: 'f8' as never }), DTypeError);
    assert.throws(mkBad({ nBlocks: 1 }), ConfigError);
    assert.throws(mkBad({ fingerprint: undefined as never }), ConfigError);
    assert.throws(mkBad({ rope: { rotaryDim: 7 } }), ConfigError);
    assert.equal(arena.liveAllocations, 0, 'failed constructions allocate nothing');
    c.dispose();
    assert.throws(() => c.seqAdd(), DisposedError);
  });

  test('no leak: dispose frees every arena allocation; freeing every sequence returns every block', () => {
    const arena = newArena();
    const c = new PagedKVCache({ arena, nLayers: 3, nKvHeads: 1, headDim: 32, kDtype: 'q8_0', vDtype: 'q4_0', nBlocks: 9, blockLen: 16, fingerprint: 'm' });
    assert.equal(arena.liveAllocations, 6, 'one K and one V allocation per layer');
    assert.equal(c.storage.sizeBytes, 3 * 9 * 16 * (34 + 18));
    const ids = [c.seqAdd().seq, c.seqAdd().seq];
    for (const s of ids) assert.ok(c.reserve(s, 40));
    c.seqFree(ids[0]!);
    c.seqFree(ids[1]!);
    assert.deepEqual([c.usedBlocks, c.freeBlocks], [0, 8]);
    c.dispose();
    assert.equal(arena.liveAllocations, 0);
  });
});
