/**
 * dumpKVCache / loadKVCache of the ktransformers KVCache facade through the snapshot container:
 *   - bit-exact round trip for FP16, Q8_0, Q4_0 and FP32 (raw block bytes, importance, anchors and
 *     their computed flags, cacheTotalLen) into a fresh KVCache, identity-mapped; attention over
 *     the loaded context (no table) equals attention over the original (scattered table) bit for bit;
 *   - a file for another config (each shape field, kvType, anchorType, anchorNum) is rejected
 *     with SnapshotMismatchError naming the field, expected (this cache) vs given (the file), and
 *     the cache is unchanged; too few blocks is a CapacityError; steering fields may differ;
 *   - a corrupted or truncated file is rejected (ChecksumError / FormatError), cache unchanged;
 *   - the file is written atomically (no temp file left) and deterministically.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AnchorType, GGMLType, RetrievalType, ggmlTypeName, type KVCacheConfigInit } from '../src/compat/ktransformers-config.js';
import type { KVCache } from '../src/compat/ktransformers-kvcache.js';
import { KT_DUMP_KIND } from '../src/compat/ktransformers-dump.js';
import { Arena } from '../src/core/arena.js';
import { CapacityError, ChecksumError, FormatError } from '../src/core/errors.js';
import { decodeSnapshot } from '../src/io/snapshot.js';
import { SnapshotMismatchError } from '../src/kv/paged/paged-snapshot-meta.js';
import { mulberry32, normalArray, shuffle, type Rng } from './helpers/rng.js';
import { fillBlocks, makeCache, sameBytes } from './helpers/kt-fixture.js';

const arena = new Arena({ initialBytes: 32 << 20, maximumBytes: 1 << 30 });
const dir = mkdtempSync(join(tmpdir(), 'kt-dump-'));
after(() => {
  arena.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const SEQ = 100; // 7 blocks of 16, the last with 4 tokens

/** A cache holding a SEQ-token context under a scattered table in both layers, with importance and anchors. */
function source(rng: Rng, over: Partial<KVCacheConfigInit>): { kv: KVCache; table: Int32Array } {
  const kv = makeCache(arena, { maxBlockNum: 16, ...over }, { denseFallback: false });
  const c = kv.config;
  const n = Math.ceil(SEQ / c.blockLen);
  const table = Int32Array.from(shuffle(rng, Array.from({ length: c.maxBlockNum }, (_, i) => i)).slice(0, n));
  for (let l = 0; l < c.layerNum; l++) {
    fillBlocks(kv, rng, l, table);
    for (const id of table) kv.updateImportanceOneBlock(Float32Array.from(normalArray(rng, c.blockLen * c.qHeadNum), Math.abs), l, id);
  }
  kv.calcAnchorAllLayers(table, Int32Array.from([SEQ]));
  kv.updateAnchorOneBlock(normalArray(rng, c.anchorNum * c.qHeadNum * c.headDim), 1, table[2]!); // a hand-set anchor
  return { kv, table };
}

/** Everything a load may change, copied: raw K/V bytes of every block, importance, anchor flags, cacheTotalLen. */
function state(kv: KVCache): unknown[] {
  const c = kv.config;
  const s: unknown[] = [kv.getCacheTotalLen()];
  for (let l = 0; l < c.layerNum; l++) {
    for (let b = 0; b < c.maxBlockNum; b++) {
      s.push(Buffer.from(kv.storage.blockView(l, 'k', b + 1)), Buffer.from(kv.storage.blockView(l, 'v', b + 1)));
      s.push(kv.sparse.getImportance(l, b + 1), kv.sparse.hasAnchors(l, b + 1));
    }
  }
  return s;
}

/** out and lse of every layer, concatenated. */
function attend(kv: KVCache, q: Float32Array, table?: Int32Array): { out: Float32Array; lse: Float32Array } {
  const { qHeadNum: H, headDim: D, layerNum } = kv.config;
  const qLen = q.length / (H * D);
  const out = new Float32Array(layerNum * q.length);
  const lse = new Float32Array(layerNum * qLen * H);
  for (let l = 0; l < layerNum; l++) {
    const o = out.subarray(l * q.length, (l + 1) * q.length);
    const s = lse.subarray(l * qLen * H, (l + 1) * qLen * H);
    if (table) kv.attn(q, o, s, l, 0, table, Int32Array.from([SEQ]), 2, 1, 1);
    else kv.attn(q, o, s, l, 0, undefined, undefined, 2, 1, 1);
  }
  return { out, lse };
}

describe('dump -> load round trip is bit-exact', () => {
  const anchorOf: Record<number, [AnchorType, number]> = {
    [GGMLType.FP16]: [AnchorType.DYNAMIC, 1],
    [GGMLType.Q8_0]: [AnchorType.QUEST, 2],
    [GGMLType.Q4_0]: [AnchorType.BLOCK_MEAN, 1],
    [GGMLType.FP32]: [AnchorType.FIXED, 2],
  };
  for (const kvType of [GGMLType.FP16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.FP32]) {
    test(ggmlTypeName(kvType), () => {
      const rng = mulberry32(300 + kvType);
      const [anchorType, anchorNum] = anchorOf[kvType]!;
      const over = { kvType, anchorType, anchorNum, retrievalType: RetrievalType.KVHEAD };
      const { kv: a, table } = source(rng, over);
      const b = makeCache(arena, { maxBlockNum: 20, ...over }, { denseFallback: false }); // more room is fine
      try {
        const path = join(dir, `ctx-${ggmlTypeName(kvType)}.kvc`);
        a.dumpKVCache(table, SEQ, path);
        assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith(`ctx-${ggmlTypeName(kvType)}`)), [`ctx-${ggmlTypeName(kvType)}.kvc`], 'no temp file left');
        const bytes = readFileSync(path);
        assert.ok(sameBytes(bytes, a.dumpKVCacheBytes(table, SEQ)), 'file = in-memory dump (deterministic)');
        const snap = decodeSnapshot(new Uint8Array(bytes), KT_DUMP_KIND);
        assert.equal(snap.meta.kvType, ggmlTypeName(kvType));
        assert.equal(snap.meta.nBlocks, table.length);
        // b had content of its own: anchors on physical 6 (the file's tail block, which has none) and selections.
        fillBlocks(b, rng, 0, [5, 6]);
        b.getAnchorOneBlock(new Float32Array(anchorNum * b.config.qHeadNum * b.config.headDim), 0, 6);
        b.updateCacheTotalLen(7 * 16);
        attend(b, normalArray(rng, b.config.qHeadNum * b.config.headDim));
        assert.ok(b.sparse.hasAnchors(0, 7) && b.sparse.selection(1, 0) !== null);
        b.loadKVCache(path);
        assert.equal(b.getCacheTotalLen(), SEQ);
        assert.equal(b.sparse.selection(0, 0), null, 'stored selections dropped');
        assert.equal(b.sparse.selection(1, 0), null);
        const c = a.config;
        let flagged = 0;
        for (let l = 0; l < c.layerNum; l++) {
          for (let i = 0; i < table.length; i++) {
            const [pa, pb] = [table[i]! + 1, i + 1]; // storage ids: physical table[i] in a, i in b
            assert.ok(sameBytes(a.storage.blockView(l, 'k', pa), b.storage.blockView(l, 'k', pb)), `K layer ${l} block ${i}`);
            assert.ok(sameBytes(a.storage.blockView(l, 'v', pa), b.storage.blockView(l, 'v', pb)), `V layer ${l} block ${i}`);
            assert.ok(sameBytes(a.sparse.getImportance(l, pa), b.sparse.getImportance(l, pb)), `importance layer ${l} block ${i}`);
            assert.equal(b.sparse.hasAnchors(l, pb), a.sparse.hasAnchors(l, pa), `anchor flag layer ${l} block ${i}`);
            if (a.sparse.hasAnchors(l, pa)) {
              flagged++;
              assert.ok(sameBytes(a.sparse.getAnchors(l, pa), b.sparse.getAnchors(l, pb)), `anchors layer ${l} block ${i}`);
            }
          }
        }
        assert.equal(flagged, c.layerNum * Math.floor(SEQ / c.blockLen), 'full blocks have anchors, the tail block none');
        const q = normalArray(rng, 2 * c.qHeadNum * c.headDim);
        const before = attend(a, q, table);
        const loaded = attend(b, q);
        assert.ok(sameBytes(loaded.out, before.out), 'out bit-exact');
        assert.ok(sameBytes(loaded.lse, before.lse), 'lse bit-exact');
        assert.equal(b.sparse.selection(1, 0)!.dense, false, 'through block selection (anchors used)');
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  }

  test('steering fields (retrievalType, tokenStep, layerStep, layerOffset, maxBatchSize, maxThreadNum) may differ', () => {
    const rng = mulberry32(310);
    const { kv: a, table } = source(rng, {});
    const b = makeCache(arena, { maxBlockNum: 7, retrievalType: RetrievalType.QHEAD, tokenStep: 5, layerStep: 2, layerOffset: 1, maxBatchSize: 1, maxThreadNum: 2 });
    try {
      b.loadKVCacheBytes(a.dumpKVCacheBytes(table, SEQ));
      assert.equal(b.getCacheTotalLen(), SEQ);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('loading into another config is rejected, the cache unchanged', () => {
  const rng = mulberry32(320);
  const base: Partial<KVCacheConfigInit> = { kvType: GGMLType.FP16, anchorType: AnchorType.BLOCK_MEAN, anchorNum: 1 };
  const { kv: src, table } = source(rng, base);
  const file = join(dir, 'mismatch.kvc');
  src.dumpKVCache(table, SEQ, file);
  src.dispose();
  const cases: [keyof KVCacheConfigInit, Partial<KVCacheConfigInit>, unknown, unknown][] = [
    ['layerNum', { layerNum: 3 }, 3, 2],
    ['kvHeadNum', { kvHeadNum: 1 }, 1, 2],
    ['qHeadNum', { qHeadNum: 8 }, 8, 4],
    ['headDim', { headDim: 64 }, 64, 32],
    ['blockLen', { blockLen: 32 }, 32, 16],
    ['kvType', { kvType: GGMLType.Q8_0 }, 'Q8_0', 'FP16'],
    ['anchorType', { anchorType: AnchorType.DYNAMIC }, 'DYNAMIC', 'BLOCK_MEAN'],
    ['anchorNum', { anchorNum: 2 }, 2, 1],
  ];
  for (const [field, over, expected, given] of cases) {
    test(field, () => {
      const kv = makeCache(arena, { maxBlockNum: 16, ...base, ...over });
      try {
        fillBlocks(kv, mulberry32(1), 0, [0, 1, 2]);
        kv.updateCacheTotalLen(40);
        const before = state(kv);
        assert.throws(() => kv.loadKVCache(file), (e: unknown) => {
          assert.ok(e instanceof SnapshotMismatchError, String(e));
          assert.ok(e.message.includes(field), e.message);
          assert.equal(e.expected, expected);
          assert.equal(e.given, given);
          return true;
        });
        assert.deepEqual(state(kv), before);
      } finally {
        kv.dispose();
      }
    });
  }

  test('maxBlockNum smaller than the file\'s blocks: CapacityError', () => {
    const kv = makeCache(arena, { maxBlockNum: 6, ...base });
    try {
      fillBlocks(kv, mulberry32(2), 1, [5]);
      const before = state(kv);
      assert.throws(() => kv.loadKVCache(file), CapacityError);
      assert.deepEqual(state(kv), before);
    } finally {
      kv.dispose();
    }
  });
});

test('a corrupted or truncated file is rejected, the cache unchanged', () => {
  const rng = mulberry32(330);
  const { kv: src, table } = source(rng, { kvType: GGMLType.Q4_0 });
  const good = src.dumpKVCacheBytes(table, SEQ);
  src.dispose();
  const kv = makeCache(arena, { maxBlockNum: 16, kvType: GGMLType.Q4_0 });
  try {
    fillBlocks(kv, rng, 0, [1, 2]);
    kv.updateCacheTotalLen(20);
    const before = state(kv);
    const flipped = good.slice();
    flipped[good.length - 100] ^= 0x10; // inside the last sections' data
    const path = join(dir, 'corrupt.kvc');
    writeFileSync(path, flipped);
    assert.throws(() => kv.loadKVCache(path), ChecksumError);
    writeFileSync(path, good.subarray(0, good.length - 1));
    assert.throws(() => kv.loadKVCache(path), FormatError);
    assert.throws(() => kv.loadKVCacheBytes(new Uint8Array(64)), FormatError);
    assert.deepEqual(state(kv), before);
    kv.loadKVCacheBytes(good); // the intact bytes load
    assert.equal(kv.getCacheTotalLen(), SEQ);
  } finally {
    kv.dispose();
  }
});

test('dump argument errors: table too short, ids out of range, bad length', () => {
  const kv = makeCache(arena, {});
  try {
    assert.throws(() => kv.dumpKVCacheBytes(Int32Array.from([0, 1]), 40), { name: 'ShapeError' });
    assert.throws(() => kv.dumpKVCacheBytes(Int32Array.from([0, 24]), 20), { name: 'OutOfRangeError' });
    assert.throws(() => kv.dumpKVCacheBytes(Int32Array.from([0]), -1), { name: 'OutOfRangeError' });
    assert.throws(() => kv.dumpKVCacheBytes([0] as never, 1), { name: 'ConfigError' });
    const empty = kv.dumpKVCacheBytes(new Int32Array(0), 0);
    const other = makeCache(arena, {});
    other.updateCacheTotalLen(5);
    other.loadKVCacheBytes(empty);
    assert.equal(other.getCacheTotalLen(), 0);
    other.dispose();
  } finally {
    kv.dispose();
  }
});
