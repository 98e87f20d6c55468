/**
 * Snapshot fuzz: thousands of seeded random corruptions of saved small caches. Every one must
 * either be rejected with a KVCacheError subclass, or load to a cache whose config, lengths
 * and valid K/V bytes equal the original's; never another exception, a hang, a leak of arena
 * memory, or a silently different cache. Decoding is in memory (fast); a few cases go
 * through files and loadCache.
 *
 * A second, structure-aware pass edits the header JSON and then fixes the header CRC, so the
 * mutations get past the checksum into the field validation. Such a file is a valid file of
 * its own, so there the oracle is: rejected with a typed error, or the loaded cache is exactly
 * what the file describes (it re-encodes to the file's canonical bytes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { crc32 } from '../src/core/crc32.js';
import { KVCacheError } from '../src/core/errors.js';
import { decodeSnapshot, encodeSnapshot } from '../src/io/snapshot.js';
import { decodeCache, encodeCache, loadCache, saveCache } from '../src/kv/cache-snapshot.js';
import type { DenseCache } from '../src/kv/dense-cache.js';
import { DynamicCache } from '../src/kv/dynamic-cache.js';
import { StaticCache } from '../src/kv/static-cache.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const LENS = [
  [3, 5],
  [4, 0],
];

function smallCaches(arena: Arena): (StaticCache | DynamicCache)[] {
  const base = { nLayers: 2, batchSize: 2, nKvHeads: 2, nHeads: 4, headDim: 32, maxSeqLen: 8, arena };
  const caches: (StaticCache | DynamicCache)[] = [
    new StaticCache({ ...base, kDtype: 'q8_0', vDtype: 'f16', layout: 'bshd' }),
    new DynamicCache({ ...base, kDtype: 'f32', vDtype: 'q4_0', layout: 'bhsd', initialCapacity: 2 }),
  ];
  const next = rng(42);
  for (const c of caches) {
    for (let l = 0; l < 2; l++) {
      for (let b = 0; b < 2; b++) {
        const n = LENS[l]![b]!;
        if (n === 0) continue;
        const k = Float32Array.from({ length: n * 2 * 32 }, () => (next() / 2 ** 32 - 0.5) * 4);
        c.appendRow(l, b, k, k.map((x) => -x));
      }
    }
  }
  return caches;
}

function validBytes(c: DenseCache, l: number, which: 'k' | 'v'): Uint8Array {
  const s = c.storageOf(l);
  const base = which === 'k' ? s.kOffsetBytes : s.vOffsetBytes;
  const st = which === 'k' ? s.k : s.v;
  const out: number[] = [];
  for (let b = 0; b < c.batchSize; b++) {
    for (let h = 0; h < c.nKvHeads; h++) {
      for (let t = 0; t < c.seqLen(l, b); t++) {
        const at = base + b * st.batchStrideBytes + h * st.headStrideBytes + t * st.tokenStrideBytes;
        out.push(...c.arena.bytes.subarray(at, at + st.rowBytes));
      }
    }
  }
  return Uint8Array.from(out);
}

function assertSame(a: DenseCache, b: DenseCache): void {
  assert.equal(b.constructor, a.constructor);
  for (const key of ['nLayers', 'batchSize', 'nKvHeads', 'nHeads', 'headDim', 'maxSeqLen', 'kDtype', 'vDtype', 'layout'] as const) {
    assert.equal(b[key], a[key], key);
  }
  for (let l = 0; l < a.nLayers; l++) {
    for (let r = 0; r < a.batchSize; r++) {
      assert.equal(b.seqLen(l, r), a.seqLen(l, r));
      // The originals hold finite values only, so decoded floats compare bit for bit.
      assert.deepEqual(new Uint32Array(b.keys(l, r).buffer), new Uint32Array(a.keys(l, r).buffer));
      assert.deepEqual(new Uint32Array(b.values(l, r).buffer), new Uint32Array(a.values(l, r).buffer));
    }
    assert.deepEqual(validBytes(b, l, 'k'), validBytes(a, l, 'k'));
    assert.deepEqual(validBytes(b, l, 'v'), validBytes(a, l, 'v'));
  }
}

type Mutator = (f: Uint8Array, next: () => number) => Uint8Array;

const MUTATORS: Record<string, Mutator> = {
  'flip one byte': (f, next) => {
    const m = f.slice();
    m[next() % m.length]! ^= 1 + (next() % 255);
    return m;
  },
  'flip one bit': (f, next) => {
    const m = f.slice();
    m[next() % m.length]! ^= 1 << next() % 8;
    return m;
  },
  'flip 2-8 bytes': (f, next) => {
    const m = f.slice();
    for (let i = 2 + (next() % 7); i > 0; i--) m[next() % m.length]! ^= 1 + (next() % 255);
    return m;
  },
  'set one byte (maybe a no-op)': (f, next) => {
    const m = f.slice();
    m[next() % m.length] = next() & 0xff;
    return m;
  },
  'flip in the prefix/header': (f, next) => {
    const m = f.slice();
    const headerEnd = 20 + new DataView(f.buffer, f.byteOffset).getUint32(12, true);
    m[next() % headerEnd]! ^= 1 + (next() % 255);
    return m;
  },
  'overwrite a burst': (f, next) => {
    const m = f.slice();
    const at = next() % m.length;
    const end = Math.min(m.length, at + 1 + (next() % 64));
    for (let i = at; i < end; i++) m[i] = next() & 0xff;
    return m;
  },
  truncate: (f, next) => f.slice(0, next() % f.length),
  'append garbage': (f, next) => {
    const extra = 1 + (next() % 64);
    const m = new Uint8Array(f.length + extra);
    m.set(f);
    if (next() % 2) for (let i = f.length; i < m.length; i++) m[i] = next() & 0xff; // else zeros
    return m;
  },
  'truncate and flip': (f, next) => {
    const m = f.slice(0, 1 + (next() % (f.length - 1)));
    m[next() % m.length]! ^= 1 + (next() % 255);
    return m;
  },
};

test('2,700 random corruptions: each rejected with a typed error or loaded identical', { timeout: 120_000 }, (t) => {
  const arena = new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });
  const originals = smallCaches(arena);
  const files = originals.map((c) => encodeCache(c));
  const live = arena.liveAllocations;
  const next = rng(20240607);
  const names = Object.keys(MUTATORS);
  const perMutator = 150;
  const byClass = new Map<string, number>();
  let rejected = 0;
  let identical = 0;
  for (const [i, file] of files.entries()) {
    for (const name of names) {
      for (let n = 0; n < perMutator; n++) {
        const mutated = MUTATORS[name]!(file, next);
        let loaded: DenseCache;
        try {
          loaded = decodeCache(mutated, { arena });
        } catch (e) {
          if (!(e instanceof KVCacheError)) throw new Error(`${name} #${n} on file ${i}: untyped ${String(e)}`);
          byClass.set(e.constructor.name, (byClass.get(e.constructor.name) ?? 0) + 1);
          rejected++;
          assert.equal(arena.liveAllocations, live, 'a rejected load leaves nothing allocated');
          continue;
        }
        assertSame(originals[i]!, loaded);
        loaded.dispose();
        identical++;
      }
    }
  }
  const total = files.length * names.length * perMutator;
  t.diagnostic(`mutations ${total}: rejected ${rejected}, loaded identical ${identical}; by class ${JSON.stringify(Object.fromEntries(byClass))}`);
  assert.equal(rejected + identical, total);
  assert.ok(total >= 1000);
  // Only no-op mutations (a byte set to its own value) can load; everything else is caught.
  assert.ok(rejected >= total * 0.95, `rejected ${rejected} of ${total}`);
  assert.equal(arena.liveAllocations, live);
  for (const c of originals) c.dispose();
});

test('structure-aware: header JSON edits with a fixed CRC are rejected or load exactly as described', { timeout: 60_000 }, (t) => {
  const arena = new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });
  const originals = smallCaches(arena);
  const live = arena.liveAllocations;
  const next = rng(7);
  const alphabet = '0123456789{}[]",: -.eE_abcdfhknqstvxyz';
  let rejected = 0;
  let accepted = 0;
  for (const c of originals) {
    const file = encodeCache(c);
    const H = new DataView(file.buffer).getUint32(12, true);
    for (let n = 0; n < 400; n++) {
      const m = file.slice();
      for (let j = 1 + (next() % 2); j > 0; j--) m[20 + (next() % H)] = alphabet.charCodeAt(next() % alphabet.length);
      new DataView(m.buffer).setUint32(16, crc32(m.subarray(20, 20 + H)), true);
      let loaded: StaticCache | DynamicCache;
      try {
        loaded = decodeCache(m, { arena });
      } catch (e) {
        if (!(e instanceof KVCacheError)) throw new Error(`untyped ${String(e)}`);
        rejected++;
        assert.equal(arena.liveAllocations, live);
        continue;
      }
      // A valid file of its own: the cache must be exactly what it says.
      const snap = decodeSnapshot(m);
      const canonical = encodeSnapshot(snap.kind, snap.meta, [...snap.sections].map(([name, bytes]) => ({ name, bytes })));
      assert.deepEqual(encodeCache(loaded), canonical);
      loaded.dispose();
      accepted++;
    }
  }
  t.diagnostic(`header edits 800: rejected ${rejected}, accepted as the file describes ${accepted}`);
  assert.equal(rejected + accepted, 800);
  assert.ok(rejected > accepted);
  for (const c of originals) c.dispose();
});

test('file-based corruptions through loadCache are rejected with typed errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-fuzz-'));
  const arena = new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });
  try {
    const [original] = smallCaches(arena);
    const path = join(dir, 'c.kvsnap');
    saveCache(original!, path);
    const good = new Uint8Array(readFileSync(path)); // a copy: Buffer.slice would alias
    const next = rng(99);
    const live = arena.liveAllocations;
    for (let n = 0; n < 30; n++) {
      writeFileSync(path, good);
      if (n % 3 === 0) truncateSync(path, next() % good.length);
      else if (n % 3 === 1) appendFileSync(path, Uint8Array.of(next() & 0xff));
      else writeFileSync(path, MUTATORS['flip one byte']!(good, next));
      assert.throws(() => loadCache(path, { arena }), KVCacheError, `case ${n}`);
      assert.equal(arena.liveAllocations, live);
    }
    writeFileSync(path, good);
    const back = loadCache(path, { arena });
    assertSame(original!, back);
    back.dispose();
    original!.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
