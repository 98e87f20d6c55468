/**
 * The one-block accessors of the ktransformers KVCache facade read and write the right memory:
 *   - K/V: [kvHeadNum, blockLen, headDim] f32 in, the kvType round trip out (FP32 exact, FP16 /
 *     Q8_0 / Q4_0 equal to encode-then-decode of the input), neighbours and other layers untouched;
 *   - importance [blockLen, qHeadNum] and anchors [anchorNum, qHeadNum, headDim] round trip, only
 *     their own (layer, block) changes (the original wrote importance to the wrong place and its
 *     anchor accessors did nothing), and anchors set by hand steer selection;
 *   - anchors follow keys (recomputed on a K/V update), DYNAMIC anchors follow importance, QUEST
 *     anchors are per q head under GQA (slot 0 the group's kv-head max, slot 1 its min);
 *   - cacheTotalLen starts at 0.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AnchorType, GGMLType, RetrievalType, ggmlTypeName } from '../src/compat/ktransformers-config.js';
import { Arena } from '../src/core/arena.js';
import { decodeArray, encodeArray } from '../src/core/dtype.js';
import { mulberry32, normalArray, shuffle } from './helpers/rng.js';
import { fillBlocks, makeCache } from './helpers/kt-fixture.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 512 << 20 });
after(() => arena.dispose());

describe('K/V block round trip per kv type', () => {
  for (const kvType of [GGMLType.FP32, GGMLType.FP16, GGMLType.Q8_0, GGMLType.Q4_0]) {
    test(ggmlTypeName(kvType), () => {
      const rng = mulberry32(kvType + 1);
      const kv = makeCache(arena, { kvType });
      try {
        const c = kv.config;
        const n = c.kvHeadNum * c.blockLen * c.headDim;
        const k = normalArray(rng, n);
        const v = normalArray(rng, n);
        kv.updateKVCacheOneBlock(k, v, 1, 7);
        const kOut = new Float32Array(n);
        const vOut = new Float32Array(n);
        kv.getKVCacheOneBlock(kOut, vOut, 1, 7);
        const dt = c.dtype;
        const wantK = kvType === GGMLType.FP32 ? k : decodeArray(dt, encodeArray(dt, k), n);
        const wantV = kvType === GGMLType.FP32 ? v : decodeArray(dt, encodeArray(dt, v), n);
        assert.deepEqual(kOut, wantK);
        assert.deepEqual(vOut, wantV);
        if (kvType !== GGMLType.FP32) assert.notDeepEqual(kOut, k, 'a lossy type does round');
        // Head-major layout: element (head 1, slot 3, dim 5) is where the input had it.
        const at = (1 * c.blockLen + 3) * c.headDim + 5;
        assert.ok(Math.abs(kOut[at]! - k[at]!) <= (kvType === GGMLType.Q4_0 ? 0.5 : 0.05));
        // Neighbouring blocks and the other layer are untouched (all zero).
        for (const [layer, block] of [[1, 6], [1, 8], [0, 7]] as const) {
          kv.getKVCacheOneBlock(kOut, vOut, layer, block);
          assert.ok(kOut.every((x) => x === 0) && vOut.every((x) => x === 0), `layer ${layer} block ${block} untouched`);
        }
        // Block 0 and the last block are usable (physical ids map past the pool's null block).
        kv.updateKVCacheOneBlock(k, v, 0, 0);
        kv.updateKVCacheOneBlock(v, k, 0, c.maxBlockNum - 1);
        kv.getKVCacheOneBlock(kOut, vOut, 0, 0);
        assert.deepEqual(kOut, wantK);
        kv.getKVCacheOneBlock(kOut, vOut, 0, c.maxBlockNum - 1);
        assert.deepEqual(kOut, wantV);
      } finally {
        kv.dispose();
      }
    });
  }
});

test('importance accessors: round trip, only that (layer, block) changes', () => {
  const rng = mulberry32(21);
  const kv = makeCache(arena, { anchorType: AnchorType.DYNAMIC });
  try {
    const { blockLen: L, qHeadNum: H } = kv.config;
    const imp = normalArray(rng, L * H);
    kv.updateImportanceOneBlock(imp, 1, 4);
    const got = new Float32Array(L * H);
    assert.equal(kv.getImportanceOneBlock(got, 1, 4), got);
    assert.deepEqual(got, imp);
    for (const [layer, block] of [[1, 3], [1, 5], [0, 4]] as const) {
      kv.getImportanceOneBlock(got, layer, block);
      assert.ok(got.every((x) => x === 0), `layer ${layer} block ${block} untouched`);
    }
  } finally {
    kv.dispose();
  }
});

test('anchor accessors: round trip, only that (layer, block) changes, and a set anchor wins selection', () => {
  const rng = mulberry32(22);
  const kv = makeCache(arena, { anchorType: AnchorType.BLOCK_MEAN, retrievalType: RetrievalType.LAYER });
  try {
    const { qHeadNum: H, headDim: D, blockLen: L, anchorNum: A } = kv.config;
    const nBlocks = 12;
    const table = Int32Array.from(shuffle(rng, Array.from({ length: nBlocks }, (_, i) => i)));
    fillBlocks(kv, rng, 0, table);
    fillBlocks(kv, rng, 1, table);
    kv.calcAnchorAllLayers(table, Int32Array.from([nBlocks * L]));
    const before1 = new Float32Array(A * H * D);
    kv.getAnchorOneBlock(before1, 1, table[6]!);
    const q = normalArray(rng, H * D);
    const anchor = new Float32Array(A * H * D);
    for (let i = 0; i < anchor.length; i++) anchor[i] = 50 * q[i % (H * D)]!; // aligned with q: the top score
    kv.updateAnchorOneBlock(anchor, 0, table[6]!);
    const got = new Float32Array(A * H * D);
    kv.getAnchorOneBlock(got, 0, table[6]!);
    assert.deepEqual(got, anchor);
    kv.getAnchorOneBlock(got, 1, table[6]!);
    assert.deepEqual(got, before1, 'layer 1 of that block keeps its computed anchors');
    const out = new Float32Array(H * D);
    const lse = new Float32Array(H);
    kv.attn(q, out, lse, 0, 0, table, Int32Array.from([nBlocks * L]), 1, 1, 1);
    assert.deepEqual(kv.sparse.selection(0, 0)!.chosen[0], [0, 6], 'init block 0, then the block whose anchor was set');
    // The opposite anchor makes it lose.
    kv.updateAnchorOneBlock(anchor.map((x) => -x), 0, table[6]!);
    kv.attn(q, out, lse, 0, 0, table, Int32Array.from([nBlocks * L]), 1, 1, 1);
    assert.notEqual(kv.sparse.selection(0, 0)!.chosen[0]![1], 6);
  } finally {
    kv.dispose();
  }
});

test('anchors follow keys: a K/V update recomputes them (a hand-set anchor included)', () => {
  const rng = mulberry32(23);
  const kv = makeCache(arena, { anchorType: AnchorType.BLOCK_MEAN, kvType: GGMLType.FP32 });
  try {
    const { kvHeadNum: KV, qHeadNum: H, headDim: D, blockLen: L } = kv.config;
    const group = H / KV;
    const n = KV * L * D;
    const mean = (k: Float32Array, g: number, d: number): number => {
      let s = 0;
      for (let t = 0; t < L; t++) s += k[(g * L + t) * D + d]!;
      return s / L;
    };
    const k1 = normalArray(rng, n);
    kv.updateKVCacheOneBlock(k1, normalArray(rng, n), 0, 2);
    const a = new Float32Array(H * D);
    kv.getAnchorOneBlock(a, 0, 2); // computed on first read
    for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) assert.ok(Math.abs(a[h * D + d]! - mean(k1, Math.floor(h / group), d)) < 1e-6);
    kv.updateAnchorOneBlock(new Float32Array(H * D).fill(9), 0, 2);
    const k2 = normalArray(rng, n);
    kv.updateKVCacheOneBlock(k2, normalArray(rng, n), 0, 2);
    kv.getAnchorOneBlock(a, 0, 2);
    for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) assert.ok(Math.abs(a[h * D + d]! - mean(k2, Math.floor(h / group), d)) < 1e-6, 'the new keys\' mean');
    // Importance is the caller's: a K/V update keeps it.
    const imp = normalArray(rng, L * H);
    kv.updateImportanceOneBlock(imp, 0, 2);
    kv.updateKVCacheOneBlock(k1, k1, 0, 2);
    assert.deepEqual(kv.getImportanceOneBlock(new Float32Array(L * H), 0, 2), imp);
  } finally {
    kv.dispose();
  }
});

test('DYNAMIC anchors follow importance: the key of the most important token, per q head', () => {
  const rng = mulberry32(24);
  const kv = makeCache(arena, { anchorType: AnchorType.DYNAMIC, kvType: GGMLType.FP16 });
  try {
    const { kvHeadNum: KV, qHeadNum: H, headDim: D, blockLen: L } = kv.config;
    const group = H / KV;
    const n = KV * L * D;
    kv.updateKVCacheOneBlock(normalArray(rng, n), normalArray(rng, n), 1, 3);
    const k = new Float32Array(n);
    kv.getKVCacheOneBlock(k, new Float32Array(n), 1, 3);
    const top = [5, 11, 2, 14]; // per q head
    const imp = new Float32Array(L * H);
    top.forEach((t, h) => (imp[t * H + h] = 1));
    kv.updateImportanceOneBlock(imp, 1, 3);
    const a = kv.getAnchorOneBlock(new Float32Array(H * D), 1, 3);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      assert.deepEqual(a.subarray(h * D, (h + 1) * D), k.subarray((g * L + top[h]!) * D, (g * L + top[h]! + 1) * D), `q head ${h}`);
    }
    // A new importance recomputes them.
    const imp2 = new Float32Array(L * H);
    for (let h = 0; h < H; h++) imp2[7 * H + h] = 1;
    kv.updateImportanceOneBlock(imp2, 1, 3);
    kv.getAnchorOneBlock(a, 1, 3);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      assert.deepEqual(a.subarray(h * D, (h + 1) * D), k.subarray((g * L + 7) * D, (g * L + 8) * D));
    }
  } finally {
    kv.dispose();
  }
});

test('QUEST anchors under GQA: each q head gets its kv head\'s per-dimension max (slot 0) and min (slot 1)', () => {
  const rng = mulberry32(25);
  const kv = makeCache(arena, { anchorType: AnchorType.QUEST, anchorNum: 2, kvHeadNum: 1, qHeadNum: 4 });
  try {
    const { qHeadNum: H, headDim: D, blockLen: L } = kv.config;
    const k = normalArray(rng, L * D);
    kv.updateKVCacheOneBlock(k, normalArray(rng, L * D), 0, 1);
    const a = kv.getAnchorOneBlock(new Float32Array(2 * H * D), 0, 1);
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) {
        let mx = -Infinity;
        let mn = Infinity;
        for (let t = 0; t < L; t++) {
          mx = Math.max(mx, k[t * D + d]!);
          mn = Math.min(mn, k[t * D + d]!);
        }
        assert.equal(a[h * D + d], mx, `max, q head ${h} dim ${d}`);
        assert.equal(a[H * D + h * D + d], mn, `min, q head ${h} dim ${d}`);
      }
    }
  } finally {
    kv.dispose();
  }
});

test('cacheTotalLen starts at 0 and is range-checked', () => {
  const kv = makeCache(arena, {});
  try {
    assert.equal(kv.getCacheTotalLen(), 0);
    assert.equal(kv.getCacheTotalBlockNum(), 0);
    kv.updateCacheTotalLen(33);
    assert.equal(kv.getCacheTotalLen(), 33);
    assert.equal(kv.getCacheTotalBlockNum(), 3);
    assert.throws(() => kv.updateCacheTotalLen(kv.config.maxBlockNum * kv.config.blockLen + 1), { name: 'OutOfRangeError' });
    assert.throws(() => kv.updateCacheTotalLen(-1), { name: 'OutOfRangeError' });
    assert.equal(kv.getCacheTotalLen(), 33);
  } finally {
    kv.dispose();
  }
});
