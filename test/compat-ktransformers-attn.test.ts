/**
 * ktransformers KVCache.attn through the facade:
 *   - pick covering every block == dense causal attention (a naive float64 softmax over the
 *     decoded blocks), for every anchor x retrieval type, FP32 and FP16, a batch of 2 rows of
 *     different lengths under scattered block tables, qLen 1 and 3; through the selection path
 *     (denseFallback false, checked) and through the dense fallback;
 *   - no "empty" lse sentinel: a true lse of 0 is kept, a token that sees no key gets lse
 *     -Infinity and out 0 (an empty row, a row shorter than qLen);
 *   - a selection reused at an exact multiple of blockLen keeps the newest full block;
 *   - the identity-mapped mode (no table, cacheTotalLen);
 *   - planted needles selected through the facade, one case per retrieval type (QHEAD works);
 *   - scratch reuse: repeated calls allocate nothing in the arena.
 * Runs on the default kernels and again under KVCACHE_KERNELS=ref.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AnchorType, GGMLType, RetrievalType, anchorTypeName, retrievalTypeName } from '../src/compat/ktransformers-config.js';
import { Arena } from '../src/core/arena.js';
import { nmse } from '../src/kernels/tolerances.js';
import { mulberry32, normalArray, shuffle, type Rng } from './helpers/rng.js';
import { fillBlocks, makeCache, maxAbsDiff, naiveAttention } from './helpers/kt-fixture.js';

const arena = new Arena({ initialBytes: 32 << 20, maximumBytes: 1 << 30 });
after(() => arena.dispose());

const OUT_NMSE = 1e-10;
const LSE_ABS = 3e-5;

const ANCHORS = Object.values(AnchorType);
const RETRIEVALS = Object.values(RetrievalType);

/** Rows of lengths `lens` under disjoint scattered physical ids; table [batch, stride]. */
function scatteredRows(rng: Rng, lens: number[], blockLen: number, maxBlockNum: number): { table: Int32Array; seqlens: Int32Array; stride: number } {
  const ids = shuffle(rng, Array.from({ length: maxBlockNum }, (_, i) => i));
  const stride = Math.max(...lens.map((s) => Math.ceil(s / blockLen))) + 1; // one spare entry per row
  const table = new Int32Array(lens.length * stride).fill(-7); // unused entries are junk
  let next = 0;
  lens.forEach((s, b) => {
    for (let i = 0; i < Math.ceil(s / blockLen); i++) table[b * stride + i] = ids[next++]!;
  });
  return { table, seqlens: Int32Array.from(lens), stride };
}

function rowOf(table: Int32Array, stride: number, b: number): Int32Array {
  return table.subarray(b * stride, (b + 1) * stride);
}

function checkRow(label: string, out: Float32Array, lse: Float32Array, want: { out: Float64Array; lse: Float64Array }, b: number, qLen: number, H: number, D: number): void {
  const o = out.subarray(b * qLen * H * D, (b + 1) * qLen * H * D);
  const l = lse.subarray(b * qLen * H, (b + 1) * qLen * H);
  const e = nmse(o, want.out);
  assert.ok(e <= OUT_NMSE, `${label} row ${b}: out NMSE ${e}`);
  const dl = maxAbsDiff(l, want.lse);
  assert.ok(dl <= LSE_ABS, `${label} row ${b}: lse max diff ${dl}`);
}

describe('pick covering every block equals dense attention', () => {
  let seed = 100;
  for (const kvType of [GGMLType.FP32, GGMLType.FP16]) {
    for (const anchorType of ANCHORS) {
      for (const retrievalType of RETRIEVALS) {
        const label = `${kvType === GGMLType.FP32 ? 'FP32' : 'FP16'} ${anchorTypeName(anchorType)} ${retrievalTypeName(retrievalType)}`;
        test(label, () => {
          const rng = mulberry32(seed++);
          const anchorNum = anchorType === AnchorType.QUEST || anchorType === AnchorType.FIXED ? 2 : 1;
          const kv = makeCache(arena, { kvType, anchorType, anchorNum, retrievalType }, { denseFallback: false });
          try {
            const c = kv.config;
            const { qHeadNum: H, headDim: D, blockLen: L } = c;
            const layer = 1;
            const lens = [150, 93]; // 10 blocks (6-token tail) and 6 blocks (13-token tail)
            const { table, seqlens, stride } = scatteredRows(rng, lens, L, c.maxBlockNum);
            for (let b = 0; b < 2; b++) fillBlocks(kv, rng, layer, rowOf(table, stride, b).subarray(0, Math.ceil(lens[b]! / L)));
            if (anchorType === AnchorType.DYNAMIC) {
              for (const id of table) if (id >= 0) kv.updateImportanceOneBlock(Float32Array.from(normalArray(rng, L * H), Math.abs), layer, id);
            }
            for (const qLen of [1, 3]) {
              const q = normalArray(rng, 2 * qLen * H * D);
              const out = new Float32Array(q.length);
              const lse = new Float32Array(2 * qLen * H);
              kv.attn(q, out, lse, layer, 0, table, seqlens, 64, 1, 1);
              for (let b = 0; b < 2; b++) {
                const want = naiveAttention(kv, layer, rowOf(table, stride, b), lens[b]!, q.subarray(b * qLen * H * D, (b + 1) * qLen * H * D), qLen);
                checkRow(`${label} qLen ${qLen}`, out, lse, want, b, qLen, H, D);
                // The selection path ran (not the dense fallback), and picked every scorable block.
                const sel = kv.sparse.selection(layer, b)!;
                assert.equal(sel.dense, false, `${label}: selection path`);
                const nFull = Math.floor(lens[b]! / L);
                const firstQueryBlock = Math.floor((lens[b]! - qLen) / L);
                const scorable = Math.min(nFull - 1, firstQueryBlock) - 1; // [init, min(nFull - local, first query block))
                for (const g of sel.chosen) assert.equal(g.length, 1 + scorable, `${label}: init + every scorable block chosen`);
              }
            }
          } finally {
            kv.dispose();
          }
        });
      }
    }
  }

  test('dense fallback (default), qLen 3, FP16 QUEST QHEAD', () => {
    const rng = mulberry32(7);
    const kv = makeCache(arena, { kvType: GGMLType.FP16, anchorType: AnchorType.QUEST, anchorNum: 2, retrievalType: RetrievalType.QHEAD });
    try {
      const { qHeadNum: H, headDim: D, blockLen: L } = kv.config;
      const lens = [200, 17];
      const { table, seqlens, stride } = scatteredRows(rng, lens, L, kv.config.maxBlockNum);
      for (let b = 0; b < 2; b++) fillBlocks(kv, rng, 0, rowOf(table, stride, b).subarray(0, Math.ceil(lens[b]! / L)));
      const q = normalArray(rng, 2 * 3 * H * D);
      const out = new Float32Array(q.length);
      const lse = new Float32Array(2 * 3 * H);
      kv.attn(q, out, lse, 0, 0, table, seqlens, 32, 1, 2);
      for (let b = 0; b < 2; b++) {
        checkRow('dense fallback', out, lse, naiveAttention(kv, 0, rowOf(table, stride, b), lens[b]!, q.subarray(b * 3 * H * D, (b + 1) * 3 * H * D), 3), b, 3, H, D);
        assert.equal(kv.sparse.selection(0, b)!.dense, true);
      }
    } finally {
      kv.dispose();
    }
  });
});

test('a reused selection at an exact multiple of blockLen keeps the newest full block (no off by one)', () => {
  const rng = mulberry32(15);
  const kv = makeCache(arena, { tokenStep: 4, anchorType: AnchorType.BLOCK_MAX }, { denseFallback: false });
  try {
    const { qHeadNum: H, headDim: D, blockLen: L } = kv.config;
    const table = Int32Array.from(shuffle(rng, Array.from({ length: 8 }, (_, i) => i + 3)));
    fillBlocks(kv, rng, 0, table);
    // Decode steps 0, 1, 2 at lengths 81, 96 (= 6 x 16), 97: one selection at step 0 (pick covers
    // every scorable block), reused and extended at steps 1 and 2.
    for (const [step, seqLen] of [[0, 81], [1, 96], [2, 97]] as const) {
      const q = normalArray(rng, H * D);
      const out = new Float32Array(H * D);
      const lse = new Float32Array(H);
      kv.attn(q, out, lse, 0, step, table, Int32Array.from([seqLen]), 8, 1, 1);
      checkRow(`step ${step} (seqLen ${seqLen})`, out, lse, naiveAttention(kv, 0, table, seqLen, q, 1), 0, 1, H, D);
      assert.equal(kv.sparse.selection(0, 0)!.seqLenAt, 81, 'the step-0 selection is reused');
    }
  } finally {
    kv.dispose();
  }
});

test('identity-mapped mode: no table = one row of cacheTotalLen tokens over blocks 0, 1, ...', () => {
  const rng = mulberry32(11);
  const kv = makeCache(arena, { kvType: GGMLType.FP16 });
  try {
    const { qHeadNum: H, headDim: D } = kv.config;
    fillBlocks(kv, rng, 0, [0, 1, 2, 3, 4]);
    kv.updateCacheTotalLen(70); // blocks 0..4, 6 tokens in block 4
    const q = normalArray(rng, 2 * H * D);
    const out = new Float32Array(q.length);
    const lse = new Float32Array(2 * H);
    kv.attn(q, out, lse, 0, 0);
    const want = naiveAttention(kv, 0, [0, 1, 2, 3, 4], 70, q, 2);
    checkRow('identity', out, lse, want, 0, 2, H, D);
    // The same as an explicit identity table.
    const out2 = new Float32Array(q.length);
    const lse2 = new Float32Array(2 * H);
    kv.attn(q, out2, lse2, 0, 0, Int32Array.from([0, 1, 2, 3, 4]), Int32Array.from([70]));
    assert.deepEqual(out2, out);
    assert.deepEqual(lse2, lse);
  } finally {
    kv.dispose();
  }
});

describe('no empty-lse sentinel', () => {
  test('a true lse of 0 is kept: one key with score 0 in its own tail block', () => {
    const rng = mulberry32(12);
    const kv = makeCache(arena, {});
    try {
      const { kvHeadNum: KV, qHeadNum: H, headDim: D, blockLen: L } = kv.config;
      const n = KV * L * D;
      const v = normalArray(rng, n);
      kv.updateKVCacheOneBlock(new Float32Array(n), v, 0, 5); // keys 0: every score is exactly 0
      const q = normalArray(rng, H * D);
      const out = new Float32Array(H * D);
      const lse = new Float32Array(H);
      kv.attn(q, out, lse, 0, 0, Int32Array.from([5]), Int32Array.from([1]));
      for (let h = 0; h < H; h++) {
        // ln(exp(0)) = 0 (the fast kernels' log may be off by an ulp): inside the original's
        // |lse| < 1e-6 "empty" band, and still a real result.
        assert.ok(Math.abs(lse[h]!) <= 1e-6, `lse[${h}] = ${lse[h]}`);
        const g = Math.floor(h / (H / KV));
        for (let d = 0; d < D; d++) assert.ok(Math.abs(out[h * D + d]! - v[g * L * D + d]!) <= 1e-6, `out = the only value row (head ${h}, dim ${d})`);
      }
      // Two blocks: a random full block, then a tail whose only key scores 0 (block lse 0): merged, not dropped.
      fillBlocks(kv, rng, 0, [9]);
      const out2 = new Float32Array(H * D);
      const lse2 = new Float32Array(H);
      kv.attn(q, out2, lse2, 0, 0, Int32Array.from([9, 5]), Int32Array.from([L + 1]));
      checkRow('tail lse 0', out2, lse2, naiveAttention(kv, 0, [9, 5], L + 1, q, 1), 0, 1, H, D);
    } finally {
      kv.dispose();
    }
  });

  test('a token that sees no key: lse -Infinity and out 0 (empty row, row shorter than qLen)', () => {
    const rng = mulberry32(13);
    const kv = makeCache(arena, {});
    try {
      const { qHeadNum: H, headDim: D } = kv.config;
      fillBlocks(kv, rng, 0, [3]);
      const qLen = 3;
      const q = normalArray(rng, 2 * qLen * H * D);
      const out = new Float32Array(q.length).fill(NaN);
      const lse = new Float32Array(2 * qLen * H).fill(NaN);
      // Row 0: empty. Row 1: 2 tokens, so its first query token (position -1) sees nothing.
      kv.attn(q, out, lse, 0, 0, Int32Array.from([0, 3]), Int32Array.from([0, 2]));
      for (let i = 0; i < qLen * H; i++) assert.equal(lse[i], -Infinity, `row 0 lse[${i}]`);
      for (let i = 0; i < qLen * H * D; i++) assert.equal(out[i], 0, `row 0 out[${i}]`);
      for (let i = 0; i < H; i++) assert.equal(lse[qLen * H + i], -Infinity, `row 1 token 0 lse[${i}]`);
      for (let i = 0; i < H * D; i++) assert.equal(out[qLen * H * D + i], 0);
      checkRow('short row', out, lse, naiveAttention(kv, 0, [3], 2, q.subarray(qLen * H * D), qLen), 1, qLen, H, D);
      assert.ok(Number.isFinite(lse[qLen * H + H]!), 'token 1 of row 1 sees key 0');
    } finally {
      kv.dispose();
    }
  });
});

describe('planted needles are selected through the facade', () => {
  const cases: [RetrievalType, AnchorType, number][] = [
    [RetrievalType.LAYER, AnchorType.QUEST, 2],
    [RetrievalType.KVHEAD, AnchorType.BLOCK_MAX, 1],
    [RetrievalType.QHEAD, AnchorType.DYNAMIC, 1],
  ];
  for (const [retrievalType, anchorType, anchorNum] of cases) {
    test(`${retrievalTypeName(retrievalType)} with ${anchorTypeName(anchorType)} anchors`, () => {
      const rng = mulberry32(200 + retrievalType);
      const nBlocks = 64;
      const kv = makeCache(arena, { anchorType, anchorNum, retrievalType, maxBlockNum: nBlocks, kvType: GGMLType.FP16 });
      try {
        const { kvHeadNum: KV, qHeadNum: H, headDim: D, blockLen: L } = kv.config;
        const group = H / KV;
        const seqLen = nBlocks * L;
        const table = Int32Array.from(shuffle(rng, Array.from({ length: nBlocks }, (_, i) => i)));
        fillBlocks(kv, rng, 0, table);
        const needleBlock = [17, 41]; // logical blocks, per kv head
        const u = [0, 1].map(() => {
          const x = normalArray(rng, D);
          const norm = Math.hypot(...x);
          return x.map((v) => v / norm);
        });
        const n = KV * L * D;
        for (let g = 0; g < KV; g++) {
          const phys = table[needleBlock[g]!]!;
          const k = new Float32Array(n);
          const v = new Float32Array(n);
          kv.getKVCacheOneBlock(k, v, 0, phys);
          for (let d = 0; d < D; d++) k[(g * L + 8) * D + d] = 100 * u[g]![d]!;
          kv.updateKVCacheOneBlock(k, v, 0, phys);
          if (anchorType === AnchorType.DYNAMIC) {
            const imp = new Float32Array(L * H);
            for (let h = g * group; h < (g + 1) * group; h++) imp[8 * H + h] = 1; // the needle is the most attended token
            kv.updateImportanceOneBlock(imp, 0, phys);
          }
        }
        kv.calcAnchorAllLayers(table, Int32Array.from([seqLen]));
        const q = new Float32Array(H * D);
        for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) q[h * D + d] = 4 * u[Math.floor(h / group)]![d]!;
        const out = new Float32Array(H * D);
        const lse = new Float32Array(H);
        kv.attn(q, out, lse, 0, 0, table, Int32Array.from([seqLen]), 2, 1, 1);
        const sel = kv.sparse.selection(0, 0)!;
        assert.equal(sel.dense, false);
        if (retrievalType === RetrievalType.LAYER) {
          assert.deepEqual(sel.chosen[0]!.slice(1).sort((a, b) => a - b), needleBlock, 'both needle blocks are the two picks');
        } else {
          const nGroups = retrievalType === RetrievalType.KVHEAD ? KV : H;
          assert.equal(sel.chosen.length, nGroups);
          sel.chosen.forEach((g, i) => {
            const kvHead = retrievalType === RetrievalType.KVHEAD ? i : Math.floor(i / group);
            assert.equal(g[1], needleBlock[kvHead], `group ${i}: its needle block is the first pick`);
          });
        }
        // The needle dominates the softmax: sparse attention equals dense attention.
        const want = naiveAttention(kv, 0, table, seqLen, q, 1);
        assert.ok(nmse(out, want.out) < 1e-8, `out NMSE ${nmse(out, want.out)}`);
        assert.ok(maxAbsDiff(lse, want.lse) < 1e-3);
      } finally {
        kv.dispose();
      }
    });
  }
});

test('repeated attn calls allocate nothing in the arena once warm; output may be qIn', () => {
  const rng = mulberry32(14);
  const kv = makeCache(arena, { retrievalType: RetrievalType.KVHEAD });
  try {
    const { qHeadNum: H, headDim: D, blockLen: L } = kv.config;
    const { table, seqlens, stride } = scatteredRows(rng, [170, 120], L, kv.config.maxBlockNum);
    for (let b = 0; b < 2; b++) fillBlocks(kv, rng, 0, rowOf(table, stride, b).subarray(0, Math.ceil(seqlens[b]! / L)));
    const q = normalArray(rng, 2 * 3 * H * D);
    const out = new Float32Array(q.length);
    const lse = new Float32Array(2 * 3 * H);
    kv.attn(q, out, lse, 0, 0, table, seqlens, 3, 1, 1);
    const used = arena.usedBytes;
    for (let t = 1; t < 6; t++) kv.attn(q, out, lse, 0, t, table, seqlens, 3, 1, 1);
    assert.equal(arena.usedBytes, used);
    const inPlace = q.slice();
    const lse2 = new Float32Array(lse.length);
    kv.attn(inPlace, inPlace, lse2, 0, 0, table, seqlens, 3, 1, 1);
    assert.deepEqual(inPlace, out);
    assert.deepEqual(lse2, lse);
  } finally {
    kv.dispose();
  }
});
