/**
 * Anchors and importance hold the values their definitions give, at the right (layer, block,
 * slot, q head), read and written through the one-block accessors.
 *
 *   - every anchor type against a naive float64 computation from the stored (decoded) keys, GQA 4/2,
 *     f32 / f16 / q8_0 / q4_0 keys, several anchorNum; key-derived anchors replicated to each q head
 *     of the kv head's group (QUEST under GQA), one-vector types replicated into every slot;
 *   - importance = sum over queries of exp(scale q.k - lse), against a naive computation, with the
 *     lse given or computed; each query adds exactly probability 1 per head over the keys it sees;
 *   - afterPrefill uses the last importanceQueries queries; decode importance ('tail' / 'selected')
 *     adds one query's probabilities, and a block that starts afresh is cleared first;
 *   - accessors copy, touch one block only, and reject bad shapes / indices with typed errors.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { OutOfRangeError, ShapeError } from '../src/core/errors.js';
import { kernelsFor } from '../src/kernels/registry.js';
import type { BlockStorage } from '../src/kv/paged/block-storage.js';
import { SparseAttention } from '../src/kv/sparse/sparse-attention.js';
import type { AnchorType } from '../src/kv/sparse/sparse-config.js';
import { mulberry32, normalArray } from './helpers/rng.js';
import { allocF32, buildRow, denseView, lastPositions, putF32, readF32 } from './helpers/sparse-fixture.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 256 << 20 });
const ks = kernelsFor(arena, 1);
after(() => arena.dispose());

const [H, KV, D, L] = [4, 2, 32, 16];
const GROUP = H / KV;

/** Decoded keys of one block: [KV][L][D] as stored. */
function blockKeys(st: BlockStorage, layer: number, phys: number): Float32Array {
  const k = new Float32Array(L * KV * D);
  const v = new Float32Array(L * KV * D);
  st.readRows(layer, phys, 0, L, k, v, 0); // [L, KV, D]
  return k;
}

/** Naive anchors [A, H, D] of one block from its keys k [L, KV, D] and importance [L, H]. */
function naiveAnchors(type: AnchorType, A: number, k: Float32Array, imp: Float32Array): Float64Array {
  const out = new Float64Array(A * H * D);
  const key = (t: number, g: number, d: number) => k[(t * KV + g) * D + d]!;
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / GROUP);
    const slots: number[][] = [];
    if (type === 'quest') {
      slots.push(Array.from({ length: D }, (_, d) => Math.max(...Array.from({ length: L }, (_, t) => key(t, g, d)))));
      slots.push(Array.from({ length: D }, (_, d) => Math.min(...Array.from({ length: L }, (_, t) => key(t, g, d)))));
    } else {
      let v: number[];
      if (type === 'block_max') v = Array.from({ length: D }, (_, d) => Math.max(...Array.from({ length: L }, (_, t) => key(t, g, d))));
      else if (type === 'block_mean') v = Array.from({ length: D }, (_, d) => Array.from({ length: L }, (_, t) => key(t, g, d)).reduce((a, b) => a + b) / L);
      else if (type === 'fixed') v = Array.from({ length: D }, (_, d) => Array.from({ length: A }, (_, a) => key(a * Math.floor(L / A), g, d)).reduce((x, y) => x + y) / A);
      else {
        const top = Array.from({ length: L }, (_, t) => t).sort((x, y) => imp[y * H + h]! - imp[x * H + h]! || x - y).slice(0, A);
        v = Array.from({ length: D }, (_, d) => top.reduce((s, t) => s + key(t, g, d), 0));
      }
      for (let a = 0; a < A; a++) slots.push(v);
    }
    slots.forEach((v, a) => v.forEach((x, d) => (out[(a * H + h) * D + d] = x)));
  }
  return out;
}

test('anchors of every type equal their definition on the stored keys (GQA 4/2, f32 / f16 / q8_0 / q4_0 keys)', () => {
  const rng = mulberry32(1);
  const cases: [AnchorType, number][] = [['fixed', 1], ['fixed', 4], ['dynamic', 1], ['dynamic', 3], ['quest', 2], ['block_mean', 1], ['block_mean', 2], ['block_max', 1]];
  for (const kDtype of ['f32', 'f16', 'q8_0', 'q4_0'] as DType[]) {
    const row = buildRow({ arena, nKvHeads: KV, headDim: D, blockLen: L, kDtype, seqLen: 3 * L + 5, seed: 2, nLayers: 2 });
    for (const [type, A] of cases) {
      const sp = new SparseAttention(row.storage, H, { anchorType: type, anchorNum: A, denseLayers: 0 });
      const imp = normalArray(rng, L * H); // distinct values: no ties
      sp.setImportance(1, row.table[1]!, imp);
      assert.equal(sp.onBlocksFilled(1, row.table, 0, row.seqLen), 3, 'three full blocks');
      for (let b = 0; b < 3; b++) {
        const phys = row.table[b]!;
        const want = naiveAnchors(type, A, blockKeys(row.storage, 1, phys), b === 1 ? imp : new Float32Array(L * H));
        const got = sp.getAnchors(1, phys);
        assert.equal(got.length, A * H * D);
        for (let i = 0; i < got.length; i++) {
          assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `${kDtype} ${type}/${A} block ${b} [${Math.floor(i / (H * D))}, ${Math.floor(i / D) % H}, ${i % D}]: ${got[i]} vs ${want[i]}`);
        }
        assert.ok(sp.getAnchors(0, phys).every((x) => x === 0), 'layer 0 untouched');
      }
      // The partial tail has no anchors; the spare blocks neither.
      assert.ok(sp.getAnchors(1, row.table[3]!).every((x) => x === 0));
      sp.dispose();
    }
    row.storage.dispose();
  }
});

test('anchor and importance accessors: copies, one block only, typed errors', () => {
  const row = buildRow({ arena, nKvHeads: KV, headDim: D, blockLen: L, seqLen: 2 * L, seed: 3, nLayers: 2 });
  const sp = new SparseAttention(row.storage, H, { anchorType: 'quest', denseLayers: 0 });
  const a = Float32Array.from({ length: 2 * H * D }, (_, i) => i - 7.5);
  sp.setAnchors(1, 2, a);
  assert.deepEqual(sp.getAnchors(1, 2), a);
  for (const [l, b] of [[1, 1], [1, 3], [0, 2]] as const) assert.ok(sp.getAnchors(l, b).every((x) => x === 0), `layer ${l} block ${b} untouched`);
  sp.getAnchors(1, 2).fill(99);
  assert.deepEqual(sp.getAnchors(1, 2), a, 'get returns a copy');
  const imp = Float32Array.from({ length: L * H }, (_, i) => i / 10);
  sp.setImportance(0, 3, imp);
  assert.deepEqual(sp.getImportance(0, 3), imp);
  assert.ok(sp.getImportance(0, 2).every((x) => x === 0) && sp.getImportance(1, 3).every((x) => x === 0));
  assert.throws(() => sp.setAnchors(1, 2, new Float32Array(H * D)), ShapeError);
  assert.throws(() => sp.setImportance(1, 2, new Float32Array(L * H + 1)), ShapeError);
  assert.throws(() => sp.getAnchors(2, 0), OutOfRangeError);
  assert.throws(() => sp.getImportance(0, row.storage.nBlocks), OutOfRangeError);
  assert.throws(() => sp.setAnchors(0, -1, a), OutOfRangeError);
  assert.deepEqual(sp.getAnchors(1, 2), a, 'a rejected set changes nothing');
  // invalidateBlocks: anchors recomputed from the keys when next needed; importance cleared unless kept.
  assert.equal(sp.hasAnchors(1, 2), true);
  assert.equal(sp.hasAnchors(1, 1), false);
  sp.invalidateBlocks([3], false);
  assert.deepEqual(sp.getImportance(0, 3), imp);
  sp.invalidateBlocks([2, 3]);
  assert.equal(sp.hasAnchors(1, 2), false);
  assert.ok(sp.getImportance(0, 3).every((x) => x === 0));
  const table = Int32Array.of(2, 1);
  assert.equal(sp.onBlocksFilled(1, table, 0, 2 * L), 2);
  assert.equal(sp.hasAnchors(1, 2), true);
  assert.notDeepEqual(sp.getAnchors(1, 2), a, 'recomputed from the keys');
  assert.throws(() => sp.hasAnchors(1, row.storage.nBlocks), OutOfRangeError);
  sp.dispose();
  row.storage.dispose();
});

/** Naive importance of the row's keys for queries q at positions, with lse from float64 softmax. */
function naiveImportance(row: ReturnType<typeof buildRow>, q: Float32Array, pos: Int32Array, scale: number): Float64Array {
  const imp = new Float64Array(row.seqLen * H); // [token, head]
  const k = row.k[0]!;
  for (let t = 0; t < pos.length; t++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / GROUP);
      const s: number[] = [];
      for (let j = 0; j <= Math.min(pos[t]!, row.seqLen - 1); j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(t * H + h) * D + d]! * k[(j * KV + g) * D + d]!;
        s.push(dot * scale);
      }
      const m = Math.max(...s);
      const lse = m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0));
      s.forEach((x, j) => (imp[j * H + h] += Math.exp(x - lse)));
    }
  }
  return imp;
}

/** The row's importance [token, head] read through the block accessor. */
function rowImportance(sp: SparseAttention, layer: number, row: ReturnType<typeof buildRow>): Float32Array {
  const out = new Float32Array(row.seqLen * H);
  for (let b = 0; b * L < row.seqLen; b++) {
    const blk = sp.getImportance(layer, row.table[b]!);
    out.set(blk.subarray(0, Math.min(L, row.seqLen - b * L) * H), b * L * H);
  }
  return out;
}

test('importance = sum of exp(scale q.k - lse) over the queries, with the lse given or computed', () => {
  const rng = mulberry32(11);
  const row = buildRow({ arena, nKvHeads: KV, headDim: D, blockLen: L, seqLen: 5 * L + 3, seed: 12 });
  const n = 6;
  const pos = Int32Array.from([2, 17, 40, 63, 80, 82]); // causal: early queries see few keys
  const q = normalArray(rng, n * H * D);
  const scale = 0.3;
  const want = naiveImportance(row, q, pos, scale);
  for (const withLse of [true, false]) {
    const sp = new SparseAttention(row.storage, H, { denseLayers: 0 });
    const qOff = putF32(arena, q);
    let lseOff = -1;
    if (withLse) {
      lseOff = allocF32(arena, n * H);
      const outOff = allocF32(arena, n * H * D);
      ks.attention(qOff, outOff, lseOff, pos, H, denseView(row.storage, 0, row.table, row.seqLen), { scale });
    }
    sp.accumulateImportance(ks, 0, row.table, row.seqLen, qOff, pos, lseOff, { scale });
    const got = rowImportance(sp, 0, row);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5, `lse ${withLse ? 'given' : 'computed'}: token ${Math.floor(i / H)} head ${i % H}: ${got[i]} vs ${want[i]}`);
    for (let h = 0; h < H; h++) {
      let sum = 0;
      for (let j = 0; j < row.seqLen; j++) sum += got[j * H + h]!;
      assert.ok(Math.abs(sum - n) < 1e-4, `head ${h}: each query adds probability 1 (sum ${sum})`);
    }
    sp.dispose();
  }
  row.storage.dispose();
});

test('afterPrefill uses the last importanceQueries queries; decode importance adds one query, a fresh block starts from zero', () => {
  const rng = mulberry32(21);
  const row = buildRow({ arena, nKvHeads: KV, headDim: D, blockLen: L, seqLen: 4 * L + 1, seed: 22, spare: 2 });
  const n = 5;
  const prefillLen = 4 * L; // the decode token at position 4L starts block 4
  const q = normalArray(rng, n * H * D);
  const pos = lastPositions(prefillLen, n);
  const total = (sp: SparseAttention, nTok: number) => {
    const imp = rowImportance(sp, 0, { ...row, seqLen: nTok });
    return Array.from({ length: H }, (_, h) => Array.from({ length: nTok }, (_, j) => imp[j * H + h]!).reduce((a, b) => a + b));
  };
  for (const mode of ['tail', 'selected'] as const) {
    const sp = new SparseAttention(row.storage, H, { anchorType: 'dynamic', importanceQueries: 2, decodeImportance: mode, denseLayers: 0 });
    sp.setImportance(0, row.table[4]!, new Float32Array(L * H).fill(5)); // stale values of block 4's previous tokens
    sp.afterPrefill(ks, 0, row.table, 0, prefillLen, putF32(arena, q), pos);
    const want = naiveImportance({ ...row, seqLen: prefillLen }, q.slice(3 * H * D), pos.slice(3), 1 / Math.sqrt(D));
    const got = rowImportance(sp, 0, { ...row, seqLen: prefillLen });
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5, `${mode}: prefill importance [${Math.floor(i / H)}, ${i % H}]`);
    total(sp, prefillLen).forEach((s) => assert.ok(Math.abs(s - 2) < 1e-4, `${mode}: two queries' worth (${s})`));
    // One decode token at position 4L, the first of block 4.
    const q1 = normalArray(rng, H * D);
    const qOff = putF32(arena, q1);
    const outOff = allocF32(arena, H * D);
    const lseOff = allocF32(arena, H);
    sp.attend(ks, 0, 0, row.table, 4 * L + 1, qOff, outOff, lseOff, lastPositions(4 * L + 1, 1), 0, { pick: -1 });
    const lse = readF32(arena, lseOff, H);
    const blk4 = sp.getImportance(0, row.table[4]!);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / GROUP);
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q1[h * D + d]! * row.k[0]![((4 * L) * KV + g) * D + d]!;
      assert.ok(Math.abs(blk4[h]! - Math.exp(dot / Math.sqrt(D) - lse[h]!)) < 1e-5, `${mode}: the new block's first token, head ${h}`);
      for (let t = 1; t < L; t++) assert.equal(blk4[t * H + h], 0, `${mode}: stale importance cleared`);
    }
    const sums = total(sp, 4 * L + 1);
    sums.forEach((s) => assert.ok(mode === 'tail' ? s > 2 && s < 3 : Math.abs(s - 3) < 1e-4, `${mode}: head total ${s}`));
    sp.dispose();
  }
  row.storage.dispose();
});
