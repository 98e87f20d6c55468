/**
 * Block selection, asserted exactly on hand-built cases: scores from anchors set through the block
 * accessors and a one-hot query, so every score is known.
 *
 *   - selection order (init, picks by score with ties to the lower block, local, tail) and the
 *     rewritten attention length;
 *   - reuse across token steps and layer steps, and the extension when new blocks start, including
 *     the exact multiple of blockLen (the original dropped the newest full block there);
 *   - KVHEAD / QHEAD: one selection per kv head / q head from their own heads' scores;
 *   - schedule slots (ceil((nLayers - layerOffset) / layerStep)), layers below layerOffset dense;
 *   - scoreBlocks against a naive score (every retrieval type, 1-3 anchor slots, several tokens),
 *     top-k ties and NaN.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { kernelsFor } from '../src/kernels/registry.js';
import { groupOfHead, scoreBlocks, topBlocks } from '../src/kv/sparse/block-select.js';
import { SparseAttention } from '../src/kv/sparse/sparse-attention.js';
import { RETRIEVAL_TYPES, resolveSparseConfig, type SparseOptions } from '../src/kv/sparse/sparse-config.js';
import { mulberry32, normalArray } from './helpers/rng.js';
import { allocF32, buildRow, lastPositions, putF32, type Row } from './helpers/sparse-fixture.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 256 << 20 });
const ks = kernelsFor(arena, 1);
after(() => arena.dispose());

const D = 32;
const L = 4;

/** Anchors giving logical block i of `row` the score scores[h][i] for a one-hot query e_0 on every q head. */
function setScores(sp: SparseAttention, row: Row, layer: number, scores: number[][]): void {
  const H = sp.nqHeads;
  for (let i = 0; i < scores[0]!.length; i++) {
    const a = new Float32Array(sp.config.anchorNum * H * D);
    for (let s = 0; s < sp.config.anchorNum; s++) for (let h = 0; h < H; h++) a[(s * H + h) * D] = scores[h]![i]!;
    sp.setAnchors(layer, row.table[i]!, a);
  }
}

/** attend with a one-hot query e_0 on every head at the last position; returns the step's groups. */
function step(sp: SparseAttention, row: Row, layer: number, seqLen: number, tokenIdx: number, rowId = 0) {
  const H = sp.nqHeads;
  const q = new Float32Array(H * D);
  for (let h = 0; h < H; h++) q[h * D] = 1;
  const qOff = putF32(arena, q);
  const outOff = allocF32(arena, H * D);
  const lseOff = allocF32(arena, H);
  const s = sp.attend(ks, layer, rowId, row.table, seqLen, qOff, outOff, lseOff, lastPositions(seqLen, 1), tokenIdx);
  const r = { dense: s.dense, fresh: s.fresh, slot: s.slot, groups: Array.from({ length: s.nGroups }, (_, g) => s.blocks(g)), lengths: Array.from(s.lengths.subarray(0, s.nGroups)) };
  for (const o of [qOff, outOff, lseOff]) arena.free(o);
  return r;
}

function newRow(seqLen: number, nKvHeads = 1, nLayers = 4): Row {
  return buildRow({ arena, nKvHeads, headDim: D, blockLen: L, seqLen, seed: 5, nLayers, spare: 4 });
}

const BASE: SparseOptions = { anchorType: 'block_mean', retrievalType: 'layer', init: 1, local: 2, pick: 3, tokenStep: 4, layerStep: 2, layerOffset: 0, denseLayers: 0 };

test('selection order and attention length, reuse across token and layer steps, extension at new blocks (exact multiple included)', () => {
  const row = newRow(46); // room for 12 blocks; the row grows from 42 to 46 tokens
  const sp = new SparseAttention(row.storage, 2, BASE);
  // Blocks 1..7 are scored (nFull 10, local 2): scores 5, 1, 7, 7, 3, 9, 2 (sum of two heads).
  const half = [0, 2.5, 0.5, 3.5, 3.5, 1.5, 4.5, 1, 0, 0, 0];
  setScores(sp, row, 0, [half, half]);
  const a = step(sp, row, 0, 42, 0);
  assert.deepEqual(a, { dense: false, fresh: true, slot: 0, groups: [[0, 6, 3, 4, 8, 9, 10]], lengths: [6 * 4 + 2] });
  assert.deepEqual(sp.selection(0, 0), { dense: false, seqLenAt: 42, recentStart: 8, chosen: [[0, 6, 3, 4]] });
  // New scores: a reused selection ignores them until the next token step.
  setScores(sp, row, 0, [[0, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0], [0, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0]]);
  assert.deepEqual(step(sp, row, 0, 43, 1), { dense: false, fresh: false, slot: 0, groups: [[0, 6, 3, 4, 8, 9, 10]], lengths: [27] });
  // 44 = 11 * blockLen: block 10 is now full and still attended.
  assert.deepEqual(step(sp, row, 0, 44, 2), { dense: false, fresh: false, slot: 0, groups: [[0, 6, 3, 4, 8, 9, 10]], lengths: [28] });
  assert.deepEqual(step(sp, row, 0, 45, 3), { dense: false, fresh: false, slot: 0, groups: [[0, 6, 3, 4, 8, 9, 10, 11]], lengths: [29] });
  // Layer 1 shares slot 0 with layer 0 (layerStep 2): reused, extended the same way.
  assert.deepEqual(step(sp, row, 1, 45, 3), { dense: false, fresh: false, slot: 0, groups: [[0, 6, 3, 4, 8, 9, 10, 11]], lengths: [29] });
  // Token step 4: layer 0 selects again (scores 18 for blocks 1, 2, 3; nFull 11 so blocks 1..8 scored).
  assert.deepEqual(step(sp, row, 0, 46, 4), { dense: false, fresh: true, slot: 0, groups: [[0, 1, 2, 3, 9, 10, 11]], lengths: [26] });
  assert.deepEqual(step(sp, row, 1, 46, 4), { dense: false, fresh: false, slot: 0, groups: [[0, 1, 2, 3, 9, 10, 11]], lengths: [26] });
  // Layer 2 (slot 1) at a non-step token has no selection yet: it makes one.
  setScores(sp, row, 2, [half, half]);
  assert.deepEqual(step(sp, row, 2, 46, 5), { dense: false, fresh: true, slot: 1, groups: [[0, 6, 3, 4, 9, 10, 11]], lengths: [26] });
  // Another row id keeps its own selections; forgetRow drops them.
  assert.equal(step(sp, row, 1, 42, 1, 7).fresh, true);
  assert.equal(step(sp, row, 1, 42, 2, 7).fresh, false);
  sp.forgetRow(7);
  assert.equal(sp.selection(1, 7), null);
  // A row that got shorter than its selection re-selects (its blocks may be gone).
  assert.equal(step(sp, row, 0, 41, 5).fresh, true);
  sp.dispose();
  row.storage.dispose();
});

test('a reused selection at exact multiples: from 40 to 48 tokens every new full block is attended', () => {
  const row = newRow(48);
  const sp = new SparseAttention(row.storage, 2, { ...BASE, tokenStep: 100 });
  const s = [0, 1, 5, 2, 6, 3, 0, 0, 0, 0, 0, 0];
  setScores(sp, row, 0, [s, s]);
  const first = step(sp, row, 0, 40, 0); // nFull 10, no tail: scored 1..7, local 8, 9
  assert.deepEqual(first.groups, [[0, 4, 2, 5, 8, 9]]);
  assert.deepEqual(first.lengths, [24]);
  for (let len = 41; len <= 48; len++) {
    const r = step(sp, row, 0, len, len - 40);
    const nBlocks = Math.ceil(len / L);
    assert.deepEqual(r.groups, [[0, 4, 2, 5, ...Array.from({ length: nBlocks - 8 }, (_, i) => 8 + i)]], `length ${len}`);
    assert.deepEqual(r.lengths, [16 + len - 32], `length ${len}`);
  }
  sp.dispose();
  row.storage.dispose();
});

test('KVHEAD and QHEAD: one selection per kv head / q head, from their own heads', () => {
  const row = newRow(42, 2);
  // q heads 0, 1 -> kv head 0; q heads 2, 3 -> kv head 1. Per-head scores of blocks 0..10:
  const sc = [
    [0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    [0, 0, 8, 0, 0, 1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 7, 6, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0],
  ];
  const kv = new SparseAttention(row.storage, 4, { ...BASE, retrievalType: 'kvhead', pick: 2 });
  setScores(kv, row, 0, sc);
  const a = step(kv, row, 0, 42, 0);
  assert.deepEqual(a.groups, [[0, 1, 2, 8, 9, 10], [0, 7, 6, 8, 9, 10]]);
  assert.deepEqual(a.lengths, [22, 22]);
  const qh = new SparseAttention(row.storage, 4, { ...BASE, retrievalType: 'qhead', pick: 1 });
  setScores(qh, row, 0, sc);
  const b = step(qh, row, 0, 42, 0);
  // Head 3 scores only block 7; ties (all 0) elsewhere would go to the lower block.
  assert.deepEqual(b.groups, [[0, 1, 8, 9, 10], [0, 2, 8, 9, 10], [0, 6, 8, 9, 10], [0, 7, 8, 9, 10]]);
  const lay = new SparseAttention(row.storage, 4, { ...BASE, retrievalType: 'layer', pick: 2 });
  setScores(lay, row, 0, sc);
  assert.deepEqual(step(lay, row, 0, 42, 0).groups, [[0, 7, 1, 8, 9, 10]]); // sums: 1: 9, 2: 8, 5: 2, 6: 7, 7: 12
  for (const sp of [kv, qh, lay]) sp.dispose();
  row.storage.dispose();
});

test('schedule: slots cover every layer (ceil((nLayers - layerOffset) / layerStep)), layers below layerOffset attend densely', () => {
  const shape = { nLayers: 8, nqHeads: 2, nKvHeads: 1, headDim: D, blockLen: L };
  assert.equal(resolveSparseConfig({ layerStep: 3 }, shape).nSlots, 3); // the original allocated 8 / 3 = 2
  assert.equal(resolveSparseConfig({ layerStep: 3, layerOffset: 2 }, shape).nSlots, 2);
  assert.equal(resolveSparseConfig({ layerStep: 1, layerOffset: 7 }, shape).nSlots, 1);
  const row = newRow(42, 1, 8);
  const sp = new SparseAttention(row.storage, 2, { ...BASE, layerStep: 3, layerOffset: 2, tokenStep: 2 });
  const expectSlot = [-1, -1, 0, 0, 0, 1, 1, 1];
  const expectFresh = [false, false, true, false, false, true, false, false];
  for (let l = 0; l < 8; l++) {
    setScores(sp, row, l, [[0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]);
    const r = step(sp, row, l, 42, 0);
    assert.equal(r.slot, expectSlot[l], `layer ${l} slot`);
    assert.equal(r.dense, l < 2, `layer ${l} dense`);
    assert.equal(r.fresh, expectFresh[l], `layer ${l} fresh`);
    assert.equal(sp.isDenseLayer(l), l < 2);
  }
  // Token 1 is not a token step: everything reused; token 2 is: layers 2 and 5 select again.
  for (let l = 2; l < 8; l++) assert.equal(step(sp, row, l, 42, 1).fresh, false);
  for (let l = 2; l < 8; l++) assert.equal(step(sp, row, l, 42, 2).fresh, l === 2 || l === 5);
  sp.dispose();
  row.storage.dispose();
});

test('a chunk of query tokens: the blocks of the queries are always attended, scores summed over the tokens', () => {
  const row = newRow(42);
  const sp = new SparseAttention(row.storage, 2, { ...BASE, local: 0, pick: 2 });
  const s = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
  setScores(sp, row, 0, [s, s]);
  const H = 2;
  const n = 11; // positions 31..41: blocks 7..10
  const q = new Float32Array(n * H * D);
  for (let t = 0; t < n; t++) for (let h = 0; h < H; h++) q[(t * H + h) * D] = 1;
  const qOff = putF32(arena, q);
  const outOff = allocF32(arena, n * H * D);
  const lseOff = allocF32(arena, n * H);
  const r = sp.attend(ks, 0, 0, row.table, 42, qOff, outOff, lseOff, lastPositions(42, n), 0);
  // Scored: [1, 7) (block 7 holds query 31); picks 6, 5; then 7, 8, 9 and the tail 10.
  assert.deepEqual(r.blocks(0), [0, 6, 5, 7, 8, 9, 10]);
  assert.equal(r.lengths[0], 6 * 4 + 2);
  sp.dispose();
  row.storage.dispose();
});

test('scoreBlocks equals the naive score; topBlocks ranks by score, ties to the lower block, NaN last', () => {
  const rng = mulberry32(77);
  const [H, KV, Dm, nBlocks] = [6, 2, 8, 9];
  for (const A of [1, 2, 3]) {
    const anchors = normalArray(rng, nBlocks * A * H * Dm);
    const table = Int32Array.of(4, 0, 7, 2, 8, 1, 3);
    for (const nTok of [1, 3]) {
      const q = normalArray(rng, 5 + nTok * H * Dm);
      for (const retrieval of RETRIEVAL_TYPES) {
        const nG = retrieval === 'layer' ? 1 : retrieval === 'kvhead' ? KV : H;
        const out = new Float64Array(nG * 5);
        scoreBlocks(anchors, { anchorNum: A, nqHeads: H, nKvHeads: KV, headDim: Dm }, retrieval, table, 1, 6, q, 5, nTok, out);
        for (let i = 1; i < 6; i++) {
          const want = new Float64Array(nG);
          for (let t = 0; t < nTok; t++) {
            for (let h = 0; h < H; h++) {
              let s = 0;
              for (let d = 0; d < Dm; d++) {
                let m = -Infinity;
                for (let a = 0; a < A; a++) m = Math.max(m, anchors[((table[i]! * A + a) * H + h) * Dm + d]! * q[5 + (t * H + h) * Dm + d]!);
                s += m;
              }
              want[groupOfHead(retrieval, h, H, KV)] += s;
            }
          }
          for (let g = 0; g < nG; g++) assert.ok(Math.abs(out[g * 5 + i - 1]! - want[g]!) < 1e-9, `A ${A}, ${nTok} tokens, ${retrieval}, block ${i}, group ${g}`);
        }
      }
    }
  }
  const scores = Float64Array.from([1, NaN, 3, 3, -Infinity, 3, 0.5]);
  const out = new Int32Array(8);
  assert.equal(topBlocks(scores, 0, 7, 10, 100, new Int32Array(7), out, 1), 7);
  assert.deepEqual([...out.subarray(1)], [102, 103, 105, 100, 106, 101, 104]);
  assert.equal(topBlocks(scores, 2, 4, 2, 0, new Int32Array(7), out, 0), 2);
  assert.deepEqual([...out.subarray(0, 2)], [0, 1]);
});
