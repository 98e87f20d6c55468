/**
 * boostr KvCache facade: the seed's own tests (create, update+get, grow, overflow, reset,
 * get-when-empty, fused update) ported with real values read back element by element,
 * plus growth/raw-buffer stability, incrementSeqLen, dtypes, batch and shape errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { CapacityError, ConfigError, DTypeError, DisposedError, ShapeError, StateError } from '../src/core/errors.js';
import { tensor, type Tensor } from '../src/core/tensor.js';
import { KvCache } from '../src/compat/boostr.js';

function newArena(): Arena {
  return new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });
}

/** [B, H, S, D] tensor whose element (b, h, s, d) is f(b, h, s, d). */
function make(shape: [number, number, number, number], f: (b: number, h: number, s: number, d: number) => number): Tensor {
  const [B, H, S, D] = shape;
  const data = new Float32Array(B * H * S * D);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) data[((b * H + h) * S + s) * D + d] = f(b, h, s, d);
  return tensor(data, shape);
}

/** Element (b, h, s, d) of a [B, H, S, D] tensor. */
function at(t: Tensor, b: number, h: number, s: number, d: number): number {
  const [, H, S, D] = t.shape as [number, number, number, number];
  return t.data[((b * H + h) * S + s) * D + d]!;
}

/** Assert a [B, H, S, D] tensor equals f element by element (f32-rounded). */
function expectTensor(t: Tensor, shape: number[], f: (b: number, h: number, s: number, d: number) => number): void {
  assert.deepEqual([...t.shape], shape);
  const [B, H, S, D] = shape as [number, number, number, number];
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
    assert.equal(at(t, b, h, s, d), Math.fround(f(b, h, s, d)), `element [${b}, ${h}, ${s}, ${d}]`);
  }
}

/** f32 element (b, h, pos, d) of a raw [B, H, capacity, D] buffer. */
function rawF32(raw: Uint8Array, H: number, cap: number, D: number, b: number, h: number, pos: number, d: number): number {
  return new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getFloat32((((b * H + h) * cap + pos) * D + d) * 4, true);
}

// The seed's test data: k_data = i * 0.1, v_data = i * 0.2 for i in 0..24, shape [1, 2, 3, 4].
const K24 = make([1, 2, 3, 4], (_b, h, s, d) => ((h * 3 + s) * 4 + d) * 0.1);
const V24 = make([1, 2, 3, 4], (_b, h, s, d) => ((h * 3 + s) * 4 + d) * 0.2);
const kSeed = (_b: number, h: number, s: number, d: number) => ((h * 3 + s) * 4 + d) * 0.1;
const vSeed = (_b: number, h: number, s: number, d: number) => ((h * 3 + s) * 4 + d) * 0.2;

test('create (seed test_kv_cache_create)', () => {
  const arena = newArena();
  const cache = KvCache.new(1, 4, 64, 2048, 32, 'f32', { arena });
  assert.equal(cache.seqLen(), 0);
  assert.equal(cache.capacity(), 64);
  assert.equal(cache.maxSeqLen(), 2048);
  assert.ok(cache.isEmpty());
  assert.equal(cache.batchSize(), 1);
  assert.equal(cache.numKvHeads(), 4);
  assert.equal(cache.headDim(), 32);
  assert.equal(cache.dtype(), 'f32');
  assert.equal(cache.kCacheRaw().byteLength, 1 * 4 * 64 * 32 * 4);
  assert.equal(cache.vCacheRaw().byteLength, 1 * 4 * 64 * 32 * 4);
  // capacity = min(initialCapacity, maxSeqLen); boostr's DType::F32 spelling is accepted.
  const small = KvCache.new(1, 2, 64, 10, 4, 'F32', { arena });
  assert.equal(small.capacity(), 10);
  assert.throws(() => KvCache.new(1, 2, 0, 10, 4, 'f32', { arena }), ConfigError);
  assert.throws(() => KvCache.new(1, 2, 4, 10, 4, 'f64' as never, { arena }), DTypeError);
  cache.dispose();
  small.dispose();
  assert.equal(arena.liveAllocations, 0);
});

test('update and get (seed test_kv_cache_update_and_get) with real values', () => {
  const cache = KvCache.new(1, 2, 64, 2048, 4, 'f32', { arena: newArena() });
  cache.update(K24, V24);
  assert.equal(cache.seqLen(), 3);
  assert.ok(!cache.isEmpty());
  const [k, v] = cache.getKV();
  expectTensor(k, [1, 2, 3, 4], kSeed);
  expectTensor(v, [1, 2, 3, 4], vSeed);
  assert.deepEqual(k.data, K24.data);
  assert.deepEqual(v.data, V24.data);
  // A second update appends along the sequence axis.
  cache.update(make([1, 2, 2, 4], (_b, h, s, d) => 100 + h * 10 + s + d / 8), make([1, 2, 2, 4], (_b, h, s, d) => -(h * 10 + s + d / 8)));
  const [k2, v2] = cache.getKV();
  expectTensor(k2, [1, 2, 5, 4], (b, h, s, d) => (s < 3 ? kSeed(b, h, s, d) : 100 + h * 10 + (s - 3) + d / 8));
  expectTensor(v2, [1, 2, 5, 4], (b, h, s, d) => (s < 3 ? vSeed(b, h, s, d) : -(h * 10 + (s - 3) + d / 8)));
});

test('grow (seed test_kv_cache_grow): 4 -> 8 -> 16, contents kept, raw address moves only on growth', () => {
  const arena = newArena();
  const cache = KvCache.new(1, 2, 4, 2048, 4, 'f32', { arena });
  assert.equal(cache.capacity(), 4);
  const val = (h: number, pos: number, d: number) => h * 1000 + pos * 10 + d;
  let pos = 0;
  const add = (n: number) => {
    const p0 = pos;
    cache.update(make([1, 2, n, 4], (_b, h, s, d) => val(h, p0 + s, d)), make([1, 2, n, 4], (_b, h, s, d) => -val(h, p0 + s, d)));
    pos += n;
  };
  const addr0 = cache.kCacheRaw().byteOffset;
  const vaddr0 = cache.vCacheRaw().byteOffset;
  add(3);
  assert.equal(cache.capacity(), 4);
  assert.equal(cache.kCacheRaw().byteOffset, addr0, 'no growth, same address');
  assert.equal(cache.generation(), 0);
  add(2); // 5 > 4: the seed's test (5 tokens into capacity 4)
  assert.equal(cache.seqLen(), 5);
  assert.equal(cache.capacity(), 8);
  assert.equal(cache.generation(), 1);
  const addr1 = cache.kCacheRaw().byteOffset;
  assert.notEqual(addr1, addr0, 'growth moves K');
  assert.notEqual(cache.vCacheRaw().byteOffset, vaddr0, 'growth moves V');
  add(3); // 8: fits exactly
  assert.equal(cache.capacity(), 8);
  assert.equal(cache.kCacheRaw().byteOffset, addr1);
  add(1); // 9 > 8
  assert.equal(cache.capacity(), 16);
  assert.equal(cache.generation(), 2);
  assert.notEqual(cache.kCacheRaw().byteOffset, addr1);
  const [k, v] = cache.getKV();
  expectTensor(k, [1, 2, 9, 4], (_b, h, s, d) => val(h, s, d));
  expectTensor(v, [1, 2, 9, 4], (_b, h, s, d) => -val(h, s, d));
  // The raw buffer is the whole [1, 2, capacity, 4] f32 storage.
  const raw = cache.kCacheRaw();
  assert.equal(raw.byteLength, 1 * 2 * 16 * 4 * 4);
  for (let h = 0; h < 2; h++) for (let p = 0; p < 16; p++) for (let d = 0; d < 4; d++) {
    assert.equal(rawF32(raw, 2, 16, 4, 0, h, p, d), p < 9 ? val(h, p, d) : 0);
  }
  // One update needing several doublings: 9 + 20 = 29 -> 32; then capped at maxSeqLen.
  add(20);
  assert.equal(cache.capacity(), 32);
  const capped = KvCache.new(1, 2, 4, 6, 4, 'f32', { arena });
  capped.update(make([1, 2, 5, 4], () => 1), make([1, 2, 5, 4], () => 2));
  assert.equal(capped.capacity(), 6, 'doubling is capped at maxSeqLen');
  cache.dispose();
  capped.dispose();
  assert.equal(arena.liveAllocations, 0, 'old buffers were freed on growth');
});

test('overflow (seed test_kv_cache_overflow): CapacityError naming seqLen + new > maxSeqLen, cache unchanged', () => {
  const cache = KvCache.new(1, 2, 4, 8, 4, 'f32', { arena: newArena() });
  const ten = make([1, 2, 10, 4], (_b, h, s, d) => h + s + d);
  assert.throws(() => cache.update(ten, ten), (e: unknown) => e instanceof CapacityError && /cache overflow: 0 \+ 10 > maxSeqLen 8/.test(e.message));
  assert.equal(cache.seqLen(), 0);
  assert.equal(cache.capacity(), 4);
  assert.equal(cache.generation(), 0);
  const six = make([1, 2, 6, 4], (_b, h, s, d) => h * 100 + s * 10 + d);
  cache.update(six, six);
  const three = make([1, 2, 3, 4], () => 7);
  assert.throws(() => cache.updateFused(three, three), /cache overflow: 6 \+ 3 > maxSeqLen 8/);
  assert.equal(cache.seqLen(), 6);
  expectTensor(cache.getKV()[0], [1, 2, 6, 4], (_b, h, s, d) => h * 100 + s * 10 + d);
  cache.update(make([1, 2, 2, 4], () => 5), make([1, 2, 2, 4], () => 6)); // exactly maxSeqLen
  assert.equal(cache.seqLen(), 8);
  assert.equal(cache.capacity(), 8);
});

test('reset (seed test_kv_cache_reset): length 0, capacity kept, new values after reuse', () => {
  const cache = KvCache.new(1, 2, 64, 2048, 4, 'f32', { arena: newArena() });
  cache.update(K24, V24);
  assert.equal(cache.seqLen(), 3);
  const addr = cache.kCacheRaw().byteOffset;
  cache.reset();
  assert.equal(cache.seqLen(), 0);
  assert.ok(cache.isEmpty());
  assert.equal(cache.capacity(), 64);
  assert.equal(cache.kCacheRaw().byteOffset, addr);
  assert.throws(() => cache.getKV(), StateError);
  const k = make([1, 2, 1, 4], (_b, h, _s, d) => 9 + h + d);
  cache.update(k, k);
  expectTensor(cache.getKV()[1], [1, 2, 1, 4], (_b, h, _s, d) => 9 + h + d);
});

test('get when empty (seed test_get_kv_empty): StateError "cache is empty"', () => {
  const cache = KvCache.new(1, 2, 64, 2048, 4, 'f32', { arena: newArena() });
  assert.throws(() => cache.getKV(), (e: unknown) => e instanceof StateError && /cache is empty/.test(e.message));
});

test('fused update (seed test_update_fused): same values as update', () => {
  const arena = newArena();
  const fused = KvCache.new(1, 2, 64, 2048, 4, 'f32', { arena });
  const plain = KvCache.new(1, 2, 64, 2048, 4, 'f32', { arena });
  fused.updateFused(K24, V24);
  plain.update(K24, V24);
  assert.equal(fused.seqLen(), 3);
  const [k, v] = fused.getKV();
  expectTensor(k, [1, 2, 3, 4], kSeed);
  expectTensor(v, [1, 2, 3, 4], vSeed);
  assert.deepEqual(fused.getKV(), plain.getKV());
  assert.deepEqual(fused.kCacheRaw(), plain.kCacheRaw());
});

test('incrementSeqLen: graph-mode writes into the raw buffer, grows when needed, CapacityError at maxSeqLen', () => {
  const cache = KvCache.new(1, 2, 4, 6, 4, 'f32', { arena: newArena() });
  const k = make([1, 2, 3, 4], (_b, h, s, d) => h * 10 + s + d / 10);
  cache.update(k, k);
  // A "kernel" writes position 3 directly into the stable raw buffers, then the length advances.
  for (const raw of [cache.kCacheRaw(), cache.vCacheRaw()]) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let h = 0; h < 2; h++) for (let d = 0; d < 4; d++) dv.setFloat32(((h * 4 + 3) * 4 + d) * 4, 500 + h * 10 + d, true);
  }
  cache.incrementSeqLen();
  assert.equal(cache.seqLen(), 4);
  expectTensor(cache.getKV()[0], [1, 2, 4, 4], (_b, h, s, d) => (s < 3 ? h * 10 + s + d / 10 : 500 + h * 10 + d));
  expectTensor(cache.getKV()[1], [1, 2, 4, 4], (_b, h, s, d) => (s < 3 ? h * 10 + s + d / 10 : 500 + h * 10 + d));
  cache.incrementSeqLen(); // past capacity 4: grows (to min(8, 6)), keeping rows
  assert.equal(cache.capacity(), 6);
  assert.equal(cache.seqLen(), 5);
  expectTensor(cache.getKV()[0], [1, 2, 5, 4], (_b, h, s, d) => (s < 3 ? h * 10 + s + d / 10 : s === 3 ? 500 + h * 10 + d : 0));
  cache.incrementSeqLen();
  assert.equal(cache.seqLen(), 6);
  assert.throws(() => cache.incrementSeqLen(), CapacityError);
  assert.equal(cache.seqLen(), 6);
});

test('batch 2: each row keeps its own values', () => {
  const cache = KvCache.new(2, 2, 2, 16, 4, 'f32', { arena: newArena() });
  const f = (b: number, h: number, s: number, d: number) => b * 1000 + h * 100 + s * 10 + d;
  cache.update(make([2, 2, 3, 4], f), make([2, 2, 3, 4], (b, h, s, d) => -f(b, h, s, d)));
  cache.update(make([2, 2, 1, 4], (b, h, _s, d) => f(b, h, 3, d)), make([2, 2, 1, 4], (b, h, _s, d) => -f(b, h, 3, d)));
  assert.equal(cache.capacity(), 4);
  const [k, v] = cache.getKV();
  expectTensor(k, [2, 2, 4, 4], f);
  expectTensor(v, [2, 2, 4, 4], (b, h, s, d) => -f(b, h, s, d));
  cache.incrementSeqLen();
  assert.equal(cache.seqLen(), 5);
});

test('dtypes: f16 / bf16 exact on representable values, q8_0 within its quantization error', () => {
  const arena = newArena();
  const f = (_b: number, h: number, s: number, d: number) => (h * 12 + s * 4 + d) * 0.25 - 3;
  for (const dtype of ['f16', 'bf16'] as const) {
    const cache = KvCache.new(1, 2, 4, 16, 4, dtype, { arena });
    cache.update(make([1, 2, 3, 4], f), make([1, 2, 3, 4], f));
    expectTensor(cache.getKV()[0], [1, 2, 3, 4], f);
    assert.equal(cache.kCacheRaw().byteLength, 2 * 4 * 4 * 2, `${dtype} raw bytes`);
  }
  const q = KvCache.new(1, 2, 4, 16, 32, 'q8_0', { arena });
  const g = (_b: number, h: number, s: number, d: number) => Math.sin(h * 7 + s * 3 + d);
  q.update(make([1, 2, 3, 32], g), make([1, 2, 3, 32], g));
  const [k] = q.getKV();
  for (let h = 0; h < 2; h++) for (let s = 0; s < 3; s++) for (let d = 0; d < 32; d++) assert.ok(Math.abs(at(k, 0, h, s, d) - g(0, h, s, d)) <= 1 / 127 + 1e-6);
  assert.equal(q.kCacheRaw().byteLength, 2 * 4 * 34, 'one 34-byte q8_0 block per row');
  assert.throws(() => KvCache.new(1, 2, 4, 16, 4, 'q4_0', { arena }), DTypeError);
});

test('shape errors are typed and leave the cache unchanged', () => {
  const cache = KvCache.new(1, 2, 4, 16, 4, 'f32', { arena: newArena() });
  cache.update(K24, V24);
  const ok = make([1, 2, 1, 4], () => 1);
  assert.throws(() => cache.update(make([1, 3, 1, 4], () => 1), make([1, 3, 1, 4], () => 1)), ShapeError, 'numKvHeads');
  assert.throws(() => cache.update(make([2, 2, 1, 4], () => 1), make([2, 2, 1, 4], () => 1)), ShapeError, 'batch');
  assert.throws(() => cache.update(make([1, 2, 1, 8], () => 1), make([1, 2, 1, 8], () => 1)), ShapeError, 'headDim');
  assert.throws(() => cache.update(ok, make([1, 2, 2, 4], () => 1)), ShapeError, 'v differs from k');
  assert.throws(() => cache.update(tensor(new Float32Array(8), [2, 4]), ok), ShapeError, 'rank');
  assert.throws(() => cache.update({ shape: [1, 2, 1, 4], data: new Float32Array(3) }, ok), ShapeError, 'data length');
  assert.throws(() => cache.update([1, 2, 3] as never, ok), ShapeError, 'not a tensor');
  assert.equal(cache.seqLen(), 3);
  expectTensor(cache.getKV()[0], [1, 2, 3, 4], kSeed);
});

test('dispose returns the buffers; later use throws DisposedError', () => {
  const arena = newArena();
  const cache = KvCache.new(1, 2, 4, 16, 4, 'f32', { arena });
  cache.update(K24, V24);
  assert.equal(arena.liveAllocations, 2);
  cache.dispose();
  assert.equal(arena.liveAllocations, 0);
  assert.throws(() => cache.update(K24, V24), DisposedError);
  assert.throws(() => cache.seqLen(), DisposedError);
});
