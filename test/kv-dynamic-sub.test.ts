import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { CapacityError, MemoryLimitError, OutOfRangeError, StateError } from '../src/core/errors.js';
import { DynamicCache } from '../src/kv/dynamic-cache.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { SubCache } from '../src/kv/sub-cache.js';

const smallArena = () => new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });

function seq(n: number, from: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => from + i);
}

for (const layout of ['bhsd', 'bshd'] as const) {
  test(`DynamicCache ${layout}: doubles up to maxSeqLen and keeps every row's contents`, () => {
    const H = 2, D = 2, B = 2;
    const cache = new DynamicCache({ nLayers: 1, batchSize: B, nKvHeads: H, headDim: D, maxSeqLen: 12, initialCapacity: 4, layout, arena: smallArena() });
    assert.equal(cache.capacity(0), 4);
    const rows: number[][][] = [[], []]; // per row: appended tokens, each [H*D] in [h][d] order
    let next = 0;
    const caps: number[] = [];
    const appendRow = (b: number, n: number) => {
      const k = new Float32Array(H * n * D);
      for (let t = 0; t < n; t++) {
        const tok: number[] = [];
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < D; d++) {
            const val = next++;
            tok.push(val);
            k[layout === 'bhsd' ? (h * n + t) * D + d : (t * H + h) * D + d] = val;
          }
        }
        rows[b]!.push(tok);
      }
      cache.appendRow(0, b, k, k.map((x) => -x));
      caps.push(cache.capacity(0));
    };
    appendRow(0, 3);
    appendRow(1, 1);
    appendRow(0, 2); // 5 > 4: grows to 8
    appendRow(1, 4);
    appendRow(0, 4); // 9 > 8: grows to 16, capped at 12
    assert.deepEqual(caps, [4, 4, 8, 8, 12]);
    assert.equal(cache.generation(0), 2);
    for (let b = 0; b < B; b++) {
      const K = cache.keys(0, b), V = cache.values(0, b);
      const len = rows[b]!.length;
      assert.equal(cache.seqLen(0, b), len);
      for (let t = 0; t < len; t++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < D; d++) {
            assert.equal(K[(h * len + t) * D + d], rows[b]![t]![h * D + d]);
            assert.equal(V[(h * len + t) * D + d], -rows[b]![t]![h * D + d]!);
          }
        }
      }
    }
    assert.throws(() => appendRow(0, 4), CapacityError, '9 + 4 > 12');
    assert.equal(cache.seqLen(0, 0), 9);
  });
}

test('DynamicCache: raw buffers are stable between growths and move on growth', () => {
  const cache = new DynamicCache({ nLayers: 2, nKvHeads: 1, headDim: 4, maxSeqLen: 64, initialCapacity: 2, arena: smallArena() });
  cache.append(0, seq(4, 0), seq(4, 0));
  const raw1 = cache.rawK(0);
  cache.append(0, seq(4, 4), seq(4, 4));
  const raw2 = cache.rawK(0);
  assert.equal(raw2.byteOffset, raw1.byteOffset, 'no growth, same storage');
  assert.equal(cache.generation(0), 0);
  cache.append(0, seq(4, 8), seq(4, 8));
  assert.equal(cache.generation(0), 1);
  assert.equal(cache.capacity(0), 4);
  assert.notEqual(cache.rawK(0).byteOffset, raw1.byteOffset, 'growth moved it');
  assert.equal(cache.capacity(1), 2, 'layers grow independently');
  assert.deepEqual(Array.from(new Float32Array(cache.rawK(0).slice().buffer, 0, 12)), Array.from(seq(12, 0)));
});

test('DynamicCache: a growth the arena cannot supply fails and leaves the cache unchanged', () => {
  const arena = new Arena({ maximumBytes: 1 << 20, initialBytes: 1 << 20, reservedBytes: 0 });
  const cache = new DynamicCache({ nLayers: 1, nKvHeads: 1, headDim: 1024, maxSeqLen: 1024, initialCapacity: 64, arena });
  const tok = seq(1024 * 64, 0);
  cache.append(0, tok, tok);
  const used = arena.usedBytes;
  assert.throws(() => cache.append(0, seq(1024, 1), seq(1024, 1)), MemoryLimitError);
  assert.equal(cache.seqLen(0), 64);
  assert.equal(cache.capacity(0), 64);
  assert.equal(arena.usedBytes, used);
  assert.deepEqual(cache.keys(0), tok);
});

for (const layout of ['bhsd', 'bshd'] as const) {
  test(`SubCache ${layout}: a window shares the parent's memory in both directions`, () => {
    const H = 2, D = 2;
    const parent = new StaticCache({ nLayers: 1, batchSize: 1, nKvHeads: H, headDim: D, maxSeqLen: 10, layout, arena: smallArena() });
    parent.append(0, seq(6 * H * D, 0), seq(6 * H * D, 100));
    const sub = new SubCache(parent, 4, 4);
    assert.equal(sub.seqLen(0), 2, 'starts at what the parent holds in the window');
    assert.equal(sub.capacity(0), 4);
    // Parent positions 4 and 5 are the sub-view's 0 and 1.
    const pk = parent.keys(0), sk = sub.keys(0);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < 2; t++) {
        for (let d = 0; d < D; d++) assert.equal(sk[(h * 2 + t) * D + d], pk[(h * 6 + 4 + t) * D + d]);
      }
    }
    sub.append(0, seq(2 * H * D, 500), seq(2 * H * D, 600));
    assert.equal(sub.seqLen(0), 4);
    assert.equal(parent.seqLen(0), 8, 'the write continued the parent, so the parent sees it');
    const pk2 = parent.keys(0);
    const newK = seq(2 * H * D, 500);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < 2; t++) {
        for (let d = 0; d < D; d++) {
          const src = layout === 'bhsd' ? newK[(h * 2 + t) * D + d] : newK[(t * H + h) * D + d];
          assert.equal(pk2[(h * 8 + 6 + t) * D + d], src);
        }
      }
    }
    assert.throws(() => sub.append(0, seq(H * D, 0), seq(H * D, 0)), CapacityError, 'window is full');
    assert.equal(parent.seqLen(0), 8);
  });
}

test('SubCache: a write past a gap does not extend the parent; windows are checked', () => {
  const parent = new StaticCache({ nLayers: 1, nKvHeads: 1, headDim: 2, maxSeqLen: 10, arena: smallArena() });
  parent.append(0, seq(4, 0), seq(4, 0)); // 2 positions
  const sub = new SubCache(parent, 5, 3);
  assert.equal(sub.seqLen(0), 0);
  sub.append(0, seq(4, 9), seq(4, 9));
  assert.equal(parent.seqLen(0), 2);
  assert.deepEqual(sub.keys(0), seq(4, 9));
  assert.throws(() => new SubCache(parent, 8, 3), OutOfRangeError);
  assert.throws(() => new SubCache(parent, -1, 3));
  sub.dispose();
  assert.equal(parent.seqLen(0), 2, 'disposing the view leaves the parent alive');
});

test('SubCache: refuses to overwrite positions the parent appended after the view was made', () => {
  const parent = new StaticCache({ nLayers: 1, nKvHeads: 1, headDim: 2, maxSeqLen: 10, arena: smallArena() });
  parent.append(0, seq(8, 0), seq(8, 0)); // 4 positions
  const sub = new SubCache(parent, 2, 6);
  assert.equal(sub.seqLen(0), 2);
  parent.append(0, seq(6, 100), seq(6, 100)); // parent now holds 7
  const before = parent.keys(0).slice();
  assert.throws(() => sub.append(0, seq(2, 50), seq(2, 50)), StateError);
  assert.deepEqual(parent.keys(0), before);
  assert.equal(sub.seqLen(0), 2);
  assert.throws(() => parent.storageOf(3), OutOfRangeError);
  assert.throws(() => parent.setSeqLen(0, 0, 11), CapacityError);
});
