/**
 * KVCacheConfig, the enums, and the typed errors of the ktransformers KVCache facade:
 *   - enum codes are ktransformers' (AnchorType / RetrievalType ordinals, ggml_type codes), names
 *     are accepted, kv types map to our dtypes;
 *   - every bad config field throws ConfigError naming the field, expected vs given;
 *   - bad shapes and ids of every call throw ShapeError / OutOfRangeError / ConfigError /
 *     CapacityError, and a rejected attn runs no row;
 *   - DisposedError after dispose; CPUInfer (re-exported) runs attn as a submitted task.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { AnchorType, CPUInfer, GGMLType, KVCache, KVCacheConfig, RetrievalType } from '../src/compat/ktransformers.js';
import type { KVCacheConfigInit } from '../src/compat/ktransformers-config.js';
import { Arena } from '../src/core/arena.js';
import { CapacityError, ConfigError, DisposedError, KVCacheError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import { mulberry32, normalArray } from './helpers/rng.js';
import { BASE, fillBlocks, makeCache } from './helpers/kt-fixture.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 256 << 20 });
after(() => arena.dispose());

test('enum codes and names', () => {
  assert.deepEqual({ ...AnchorType }, { FIXED: 0, DYNAMIC: 1, QUEST: 2, BLOCK_MEAN: 3, BLOCK_MAX: 4 });
  assert.deepEqual({ ...RetrievalType }, { LAYER: 0, KVHEAD: 1, QHEAD: 2 });
  assert.deepEqual({ ...GGMLType }, { FP32: 0, FP16: 1, Q4_0: 2, Q8_0: 8 });
  const c = new KVCacheConfig(4, 2, 8, 64, 128, 1, 'FIXED_ANCHOR', 'fp16', 'kvhead', 1, 100, 0, 64, 2, 4);
  assert.equal(c.anchorType, AnchorType.FIXED);
  assert.equal(c.kvType, GGMLType.FP16);
  assert.equal(c.retrievalType, RetrievalType.KVHEAD);
  assert.equal(c.dtype, 'f16');
  assert.equal(c.coreAnchorType, 'fixed');
  assert.equal(c.coreRetrievalType, 'kvhead');
  const dtypes = [GGMLType.FP32, GGMLType.FP16, GGMLType.Q4_0, GGMLType.Q8_0].map((t) => KVCacheConfig.from({ ...BASE, kvType: t }).dtype);
  assert.deepEqual(dtypes, ['f32', 'f16', 'q4_0', 'q8_0']);
  assert.equal(KVCacheConfig.from({ ...BASE, anchorType: 'block_max' }).anchorType, AnchorType.BLOCK_MAX);
  assert.equal(KVCacheConfig.from(c), c);
  assert.deepEqual(c.toJSON(), {
    layerNum: 4, kvHeadNum: 2, qHeadNum: 8, headDim: 64, blockLen: 128, anchorNum: 1, anchorType: 'FIXED', kvType: 'FP16',
    retrievalType: 'KVHEAD', layerStep: 1, tokenStep: 100, layerOffset: 0, maxBlockNum: 64, maxBatchSize: 2, maxThreadNum: 4,
  });
});

test('bad config fields: ConfigError naming the field, expected vs given', () => {
  const bad: [Partial<KVCacheConfigInit>, string, unknown][] = [
    [{ layerNum: 0 }, 'layerNum', 0],
    [{ kvHeadNum: 1.5 }, 'kvHeadNum', 1.5],
    [{ qHeadNum: 3 }, 'qHeadNum', 3], // not a multiple of kvHeadNum 2
    [{ headDim: 0 }, 'headDim', 0],
    [{ headDim: 48, kvType: GGMLType.Q8_0 }, 'headDim', 48],
    [{ headDim: 40, kvType: 'Q4_0' }, 'headDim', 40],
    [{ blockLen: -1 }, 'blockLen', -1],
    [{ anchorNum: 0 }, 'anchorNum', 0],
    [{ anchorNum: 17 }, 'anchorNum', 17],
    [{ anchorType: AnchorType.QUEST, anchorNum: 1 }, 'QUEST', 1],
    [{ anchorType: 7 as never }, 'anchorType', 7],
    [{ anchorType: 'MEDIAN' }, 'anchorType', 'MEDIAN'],
    [{ kvType: 3 as never }, 'kvType', 3],
    [{ kvType: 'bf16' }, 'kvType', 'bf16'],
    [{ retrievalType: 'TOKEN' }, 'retrievalType', 'TOKEN'],
    [{ layerStep: 0 }, 'layerStep', 0],
    [{ tokenStep: 0 }, 'tokenStep', 0],
    [{ layerOffset: 2 }, 'layerOffset', 2],
    [{ maxBlockNum: 0 }, 'maxBlockNum', 0],
    [{ maxBatchSize: 0 }, 'maxBatchSize', 0],
    [{ maxThreadNum: 0 }, 'maxThreadNum', 0],
  ];
  for (const [over, what, given] of bad) {
    assert.throws(() => KVCacheConfig.from({ ...BASE, ...over }), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${what}: ${String(e)}`);
      assert.ok(e.message.includes(what), e.message);
      assert.equal(e.given, given);
      return true;
    }, what);
  }
  // Float kv types take any headDim; quantized ones do not need blockLen % 32.
  assert.equal(KVCacheConfig.from({ ...BASE, headDim: 24, kvType: GGMLType.FP16 }).headDim, 24);
  assert.equal(KVCacheConfig.from({ ...BASE, blockLen: 20, kvType: GGMLType.Q4_0 }).blockLen, 20);
  assert.throws(() => new KVCache(null as never), ConfigError);
});

test('block accessor errors: bad ids, shapes and types', () => {
  const kv = makeCache(arena, {});
  try {
    const c = kv.config;
    const n = c.kvHeadNum * c.blockLen * c.headDim;
    const k = new Float32Array(n);
    assert.throws(() => kv.updateKVCacheOneBlock(k, k, 2, 0), OutOfRangeError);
    assert.throws(() => kv.updateKVCacheOneBlock(k, k, 0, c.maxBlockNum), OutOfRangeError);
    assert.throws(() => kv.updateKVCacheOneBlock(k, k, 0, -1), OutOfRangeError);
    assert.throws(() => kv.updateKVCacheOneBlock(k, new Float32Array(n - 1), 0, 0), (e: unknown) => e instanceof ShapeError && e.expected === n && e.given === n - 1);
    assert.throws(() => kv.updateKVCacheOneBlock(Array.from(k) as never, k, 0, 0), ConfigError);
    assert.throws(() => kv.getKVCacheOneBlock(k, new Float32Array(1), 0, 0), ShapeError);
    assert.throws(() => kv.updateImportanceOneBlock(new Float32Array(c.blockLen * c.qHeadNum + 1), 0, 0), ShapeError);
    assert.throws(() => kv.getImportanceOneBlock(new Float32Array(c.blockLen * c.qHeadNum), 0, 1.5), OutOfRangeError);
    assert.throws(() => kv.updateAnchorOneBlock(new Float32Array(3), 0, 0), ShapeError);
    assert.throws(() => kv.getAnchorOneBlock(new Float32Array(c.qHeadNum * c.headDim), 5, 0), OutOfRangeError);
    assert.throws(() => kv.calcAnchorAllLayers(Int32Array.from([0, 99]), Int32Array.from([32])), OutOfRangeError);
  } finally {
    kv.dispose();
  }
});

test('attn errors: typed, and a rejected call runs no row', () => {
  const rng = mulberry32(31);
  const kv = makeCache(arena, {});
  try {
    const { qHeadNum: H, headDim: D } = kv.config;
    fillBlocks(kv, rng, 0, [0, 1, 2, 3]);
    const q = normalArray(rng, 2 * H * D);
    const out = new Float32Array(q.length);
    const lse = new Float32Array(2 * H);
    const table = Int32Array.from([0, 1, 2, 3]); // [2, 2]
    const seqlens = Int32Array.from([20, 32]);
    const cases: [() => void, new (...a: never[]) => KVCacheError, string][] = [
      [() => kv.attn(q, out, lse, 2, 0, table, seqlens), OutOfRangeError, 'layerIdx'],
      [() => kv.attn(q, out, lse, 0, -1, table, seqlens), ConfigError, 'generateTokenIdx'],
      [() => kv.attn(q, out, lse, 0, 0, Int32Array.from([0, 1, 2, 24]), seqlens), OutOfRangeError, 'blockTable[1][1]'],
      [() => kv.attn(q, out, lse, 0, 0, table, Int32Array.from([20, 33])), OutOfRangeError, 'cacheSeqlens[1]'],
      [() => kv.attn(q, out, lse, 0, 0, table, Int32Array.from([20, -1])), OutOfRangeError, 'cacheSeqlens[1]'],
      [() => kv.attn(q, out, lse, 0, 0, Int32Array.from([0, 1, 2]), seqlens), ShapeError, 'blockTable length'],
      [() => kv.attn(q, out, lse, 0, 0, table, undefined), ConfigError, 'cacheSeqlens'],
      [() => kv.attn(q, out, lse, 0, 0, undefined, seqlens), ConfigError, 'cacheSeqlens without a blockTable'],
      [() => kv.attn(q, out, lse, 0, 0, [0, 1, 2, 3] as never, seqlens), ConfigError, 'blockTable'],
      [() => kv.attn(q, out, lse, 0, 0, new Int32Array(10), new Int32Array(5)), CapacityError, 'maxBatchSize'],
      [() => kv.attn(q.subarray(1), out, lse, 0, 0, table, seqlens), ShapeError, 'qIn length'],
      [() => kv.attn(q, out.subarray(1), lse, 0, 0, table, seqlens), ShapeError, 'output length'],
      [() => kv.attn(q, out, lse.subarray(1), 0, 0, table, seqlens), ShapeError, 'attnLse length'],
      [() => kv.attn(q, out, lse, 0, 0, table, seqlens, -2), ConfigError, 'pickBlockNum'],
      [() => kv.attn(q, out, lse, 0, 0, table, seqlens, 1, -1), ConfigError, 'initBlockNum'],
      [() => kv.attn(q, out, lse, 0, 0, table, seqlens, 1, 1, 0.5), ConfigError, 'localBlockNum'],
    ];
    for (const [call, cls, what] of cases) {
      assert.throws(call, (e: unknown) => {
        assert.ok(e instanceof cls, `${what}: ${String(e)}`);
        assert.ok((e as Error).message.includes(what), (e as Error).message);
        return true;
      }, what);
    }
    assert.ok(out.every((x) => x === 0) && lse.every((x) => x === 0), 'no row ran');
    assert.equal(kv.sparse.selection(0, 0), null, 'no selection was stored');
    kv.attn(q, out, lse, 0, 0, table, seqlens, 1, 0, 0); // the same call with good arguments runs
    assert.ok(lse.every((x) => Number.isFinite(x)));
  } finally {
    kv.dispose();
  }
});

test('DisposedError after dispose; CPUInfer runs attn as a submitted task', () => {
  const rng = mulberry32(32);
  const kv = makeCache(arena, {});
  const { qHeadNum: H, headDim: D } = kv.config;
  fillBlocks(kv, rng, 0, [0, 1]);
  kv.updateCacheTotalLen(20);
  const q = normalArray(rng, H * D);
  const direct = new Float32Array(H * D);
  const directLse = new Float32Array(H);
  kv.attn(q, direct, directLse, 0, 0);
  const cpu = new CPUInfer(1); // its own (default) arena: the task only calls kv.attn
  try {
    const out = new Float32Array(H * D);
    const lse = new Float32Array(H);
    cpu.submit(() => kv.attn(q, out, lse, 0, 0));
    assert.ok(out.every((x) => x === 0), 'submit does not run the task');
    cpu.sync();
    assert.deepEqual(out, direct);
    assert.deepEqual(lse, directLse);
  } finally {
    cpu.dispose();
  }
  kv.dispose();
  kv.dispose(); // idempotent
  assert.equal(kv.isDisposed, true);
  assert.throws(() => kv.attn(q, direct, directLse, 0, 0), DisposedError);
  assert.throws(() => kv.updateKVCacheOneBlock(q, q, 0, 0), DisposedError);
  assert.throws(() => kv.getCacheTotalLen() === 20 && kv.loadKVCache('/nonexistent'), DisposedError);
});
