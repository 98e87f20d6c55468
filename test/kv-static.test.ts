import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { decodeArray, decodeRow, encodeArray, type DType } from '../src/core/dtype.js';
import { CapacityError, ConfigError, DTypeError, MemoryLimitError, OutOfRangeError, ShapeError, DisposedError } from '../src/core/errors.js';
import { StaticCache } from '../src/kv/static-cache.js';
import type { KVLayout } from '../src/kv/types.js';

const smallArena = () => new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });

/** Deterministic values: distinct per index and stream. */
function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.731 + seed * 1.37) * (1 + (i % 7));
  return a;
}

/** [batch, H, n, D] or [batch, n, H, D] value at (b, h, t, d). */
function at(a: Float32Array, layout: KVLayout, B: number, H: number, n: number, D: number, b: number, h: number, t: number, d: number): number {
  void B;
  return layout === 'bhsd' ? a[((b * H + h) * n + t) * D + d]! : a[((b * n + t) * H + h) * D + d]!;
}

/** What a cache of `dtype` stores for one row of the source. */
function roundTrip(dtype: DType, row: Float32Array): Float32Array {
  return decodeArray(dtype, encodeArray(dtype, row), row.length);
}

for (const layout of ['bhsd', 'bshd'] as const) {
  test(`StaticCache ${layout}: batched appends read back exactly per (layer, row, head, position)`, () => {
    const B = 2, H = 3, D = 4;
    const cache = new StaticCache({ nLayers: 2, batchSize: B, nKvHeads: H, headDim: D, maxSeqLen: 16, layout, arena: smallArena() });
    const k1 = fill(B * H * 3 * D, 1), v1 = fill(B * H * 3 * D, 2);
    const k2 = fill(B * H * 2 * D, 3), v2 = fill(B * H * 2 * D, 4);
    cache.append(1, k1, v1);
    cache.append(1, k2, v2);
    assert.equal(cache.seqLen(1, 0), 5);
    assert.equal(cache.seqLen(1, 1), 5);
    assert.equal(cache.seqLen(0, 0), 0, 'other layers untouched');
    for (let b = 0; b < B; b++) {
      const K = cache.keys(1, b); // [H, 5, D]
      const V = cache.values(1, b);
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < 5; t++) {
          for (let d = 0; d < D; d++) {
            const [src, srcV, n, tt] = t < 3 ? [k1, v1, 3, t] : [k2, v2, 2, t - 3];
            assert.equal(K[(h * 5 + t) * D + d], at(src, layout, B, H, n, D, b, h, tt, d));
            assert.equal(V[(h * 5 + t) * D + d], at(srcV, layout, B, H, n, D, b, h, tt, d));
          }
        }
      }
    }
  });

  test(`StaticCache ${layout}: view() addresses the same rows keys() reads, for every dtype`, () => {
    for (const dtype of ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const) {
      const H = 2, D = 64, n = 5;
      const cache = new StaticCache({ nLayers: 1, batchSize: 2, nKvHeads: H, headDim: D, maxSeqLen: 8, kDtype: dtype, vDtype: 'f16', layout, arena: smallArena() });
      const k = fill(H * n * D, 5), v = fill(H * n * D, 6);
      cache.appendRow(0, 1, k, v);
      const view = cache.view(0, 1);
      assert.equal(view.nTokens, n);
      assert.equal(view.segments.length, 1);
      const K = cache.keys(0, 1);
      const row = new Float32Array(D);
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < n; t++) {
          const seg = view.segments[0]!;
          decodeRow(dtype, view.bytes, seg.kOffsetBytes + t * view.kTokenStrideBytes + h * view.kHeadStrideBytes, D, row, 0);
          assert.deepEqual(row, K.subarray((h * n + t) * D, (h * n + t + 1) * D));
          const srcRow = layout === 'bhsd' ? k.subarray((h * n + t) * D, (h * n + t + 1) * D) : k.subarray((t * H + h) * D, (t * H + h + 1) * D);
          assert.deepEqual(row, roundTrip(dtype, srcRow), `${dtype} stores the codec's round trip`);
        }
      }
      assert.equal(cache.seqLen(0, 0), 0, 'row 0 untouched');
    }
  });
}

test('StaticCache: rows of one batch keep different lengths', () => {
  const cache = new StaticCache({ nLayers: 1, batchSize: 3, nKvHeads: 1, headDim: 2, maxSeqLen: 10, arena: smallArena() });
  cache.appendRow(0, 0, fill(2 * 4, 1), fill(2 * 4, 2));
  cache.appendRow(0, 2, fill(2 * 1, 3), fill(2 * 1, 4));
  cache.append(0, fill(3 * 2 * 2, 5), fill(3 * 2 * 2, 6));
  assert.deepEqual([0, 1, 2].map((r) => cache.seqLen(0, r)), [6, 2, 3]);
  assert.deepEqual(Array.from(cache.keys(0, 2).subarray(0, 2)), Array.from(fill(2, 3)));
});

test('StaticCache: overflow is a CapacityError naming capacity and request, and changes nothing', () => {
  const cache = new StaticCache({ nLayers: 1, batchSize: 2, nKvHeads: 1, headDim: 2, maxSeqLen: 4, arena: smallArena() });
  cache.appendRow(0, 1, fill(2 * 3, 1), fill(2 * 3, 2));
  const before = cache.keys(0, 0).slice();
  assert.throws(
    () => cache.append(0, fill(2 * 2 * 2, 3), fill(2 * 2 * 2, 4)),
    (e: unknown) => e instanceof CapacityError && /at most 4 positions/.test(e.message) && /given 5/.test(e.message),
  );
  assert.equal(cache.seqLen(0, 0), 0, 'row 0 not written although it had room');
  assert.equal(cache.seqLen(0, 1), 3);
  assert.deepEqual(cache.keys(0, 0), before);
});

test('StaticCache: crop and reset', () => {
  const cache = new StaticCache({ nLayers: 2, nKvHeads: 1, headDim: 2, maxSeqLen: 8, arena: smallArena() });
  const k = fill(12, 1);
  cache.append(0, k, k);
  cache.append(1, k.subarray(0, 6), k.subarray(0, 6));
  cache.crop(4);
  assert.equal(cache.seqLen(0), 4);
  assert.equal(cache.seqLen(1), 3);
  assert.deepEqual(cache.keys(0), k.subarray(0, 8));
  cache.append(0, fill(2, 9), fill(2, 9));
  assert.deepEqual(Array.from(cache.keys(0).subarray(8, 10)), Array.from(fill(2, 9)), 'append after crop writes at the cropped length');
  cache.reset();
  assert.equal(cache.seqLen(0), 0);
  assert.equal(cache.seqLen(1), 0);
  assert.equal(cache.keys(0).length, 0);
});

test('StaticCache: invalid inputs are typed errors', () => {
  const arena = smallArena();
  const base = { nLayers: 1, nKvHeads: 2, headDim: 64, maxSeqLen: 4, arena };
  assert.throws(() => new StaticCache({ ...base, nHeads: 5 }), ConfigError);
  assert.throws(() => new StaticCache({ ...base, headDim: 48, dtype: 'q8_0' }), DTypeError);
  assert.throws(() => new StaticCache({ ...base, headDim: 48, vDtype: 'q4_0' }), DTypeError);
  assert.throws(() => new StaticCache({ ...base, nLayers: 1.5 }), ConfigError);
  assert.throws(() => new StaticCache({ ...base, maxSeqLen: -1 }), ConfigError);
  assert.throws(() => new StaticCache({ ...base, dtype: 'f64' as DType }), DTypeError);
  assert.throws(() => new StaticCache({ ...base, layout: 'hsd' as KVLayout }), ConfigError);
  const cache = new StaticCache(base);
  assert.throws(() => cache.append(0, new Float32Array(100), new Float32Array(100)), ShapeError);
  assert.throws(() => cache.append(0, new Float32Array(128), new Float32Array(256)), ShapeError);
  assert.throws(() => cache.append(1, new Float32Array(128), new Float32Array(128)), OutOfRangeError);
  assert.throws(() => cache.seqLen(0, 1), OutOfRangeError);
  assert.throws(() => cache.append(0, [1, 2] as unknown as Float32Array, new Float32Array(2)), ShapeError);
  assert.throws(() => cache.crop(-1), ConfigError);
  assert.throws(
    () => new StaticCache({ ...base, nHeads: 5 }),
    (e: unknown) => e instanceof ConfigError && /multiple of nKvHeads = 2/.test(e.message) && /given 5/.test(e.message),
  );
});

test('StaticCache: dispose returns storage; allocation failure leaks nothing', () => {
  const arena = new Arena({ maximumBytes: 2 << 20, initialBytes: 1 << 20, reservedBytes: 0 });
  const cache = new StaticCache({ nLayers: 4, nKvHeads: 2, headDim: 64, maxSeqLen: 256, arena });
  assert.equal(arena.liveAllocations, 8);
  assert.equal(cache.kvBytes, 4 * 2 * 2 * 256 * 64 * 4);
  cache.dispose();
  assert.equal(arena.liveAllocations, 0);
  assert.throws(() => cache.seqLen(0), DisposedError);
  assert.throws(() => new StaticCache({ nLayers: 64, nKvHeads: 2, headDim: 64, maxSeqLen: 256, arena }), MemoryLimitError);
  assert.equal(arena.liveAllocations, 0);
  assert.equal(arena.usedBytes, 0);
});
