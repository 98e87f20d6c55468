/**
 * Sparse attention equals dense attention when the selection covers every block, and is dense
 * attention bit for bit when it falls back to dense.
 *
 *   - every anchor type x retrieval type, f32 and f16 storage, GQA 1, 2 and 7, one decode token and
 *     a 3-token chunk (the gather / scatter path of KVHEAD / QHEAD): the selection path (denseFallback
 *     false, pick = every scorable block) visits the blocks in score order, so out / lse equal the
 *     dense kernel's within float rounding of the sum order;
 *   - the dense fallback runs the same kernel on the same segments as the dense view: bit-exact;
 *   - a PagedKVCache sequence decoded token by token (the runtime's use): anchors on block fill,
 *     new blocks attended between selections, and out / lse equal to dense attention over the
 *     chosen blocks (the kernel on a view of exactly those blocks).
 * The suite runs on the default kernels and again under KVCACHE_KERNELS=ref (kernelsFor).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { kernelsFor } from '../src/kernels/registry.js';
import { nmse } from '../src/kernels/tolerances.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import { SparseAttention } from '../src/kv/sparse/sparse-attention.js';
import { ANCHOR_TYPES, RETRIEVAL_TYPES } from '../src/kv/sparse/sparse-config.js';
import type { KVView } from '../src/kv/types.js';
import { mulberry32, normalArray } from './helpers/rng.js';
import { allocF32, buildRow, denseView, lastPositions, putF32, readF32 } from './helpers/sparse-fixture.js';

const arena = new Arena({ initialBytes: 32 << 20, maximumBytes: 1 << 30 });
const ks = kernelsFor(arena, 1);
after(() => arena.dispose());

/** Sum-order rounding only: f32 results of the same keys in another order. */
const OUT_NMSE = 1e-11;
const LSE_ABS = 2e-5;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** ks.attention over a view; returns copies of out / lse. */
function attendDense(q: Float32Array, positions: Int32Array, nHeads: number, view: KVView): { out: Float32Array; lse: Float32Array } {
  const n = positions.length;
  const D = view.headDim;
  const qOff = putF32(arena, q);
  const outOff = allocF32(arena, n * nHeads * D);
  const lseOff = allocF32(arena, n * nHeads);
  ks.attention(qOff, outOff, lseOff, positions, nHeads, { ...view, bytes: arena.bytes });
  const r = { out: readF32(arena, outOff, n * nHeads * D), lse: readF32(arena, lseOff, n * nHeads) };
  for (const o of [qOff, outOff, lseOff]) arena.free(o);
  return r;
}

function attendSparse(sp: SparseAttention, layer: number, table: Int32Array, seqLen: number, q: Float32Array, positions: Int32Array, tokenIdx: number, row = 0) {
  const n = positions.length;
  const qOff = putF32(arena, q);
  const outOff = allocF32(arena, n * sp.nqHeads * sp.headDim);
  const lseOff = allocF32(arena, n * sp.nqHeads);
  const step = sp.attend(ks, layer, row, table, seqLen, qOff, outOff, lseOff, positions, tokenIdx);
  const r = {
    out: readF32(arena, outOff, n * sp.nqHeads * sp.headDim), lse: readF32(arena, lseOff, n * sp.nqHeads),
    dense: step.dense, fresh: step.fresh, groups: Array.from({ length: step.nGroups }, (_, g) => step.blocks(g)), lengths: Array.from(step.lengths.subarray(0, step.nGroups)),
  };
  for (const o of [qOff, outOff, lseOff]) arena.free(o);
  return r;
}

function assertClose(got: { out: Float32Array; lse: Float32Array }, want: { out: Float32Array; lse: Float32Array }, label: string): void {
  const e = nmse(got.out, want.out);
  assert.ok(e <= OUT_NMSE, `${label}: out NMSE ${e}`);
  for (let i = 0; i < want.lse.length; i++) {
    assert.ok(Math.abs(got.lse[i]! - want.lse[i]!) <= LSE_ABS, `${label}: lse[${i}] ${got.lse[i]} vs ${want.lse[i]}`);
  }
}

const GQA: [number, number][] = [[2, 2], [4, 2], [7, 1]]; // [nqHeads, nKvHeads]

describe('selection covering every block equals dense attention', () => {
  let seed = 10;
  for (const kDtype of ['f32', 'f16'] as DType[]) {
    for (const [nqHeads, nKvHeads] of GQA) {
      test(`${kDtype}, ${nqHeads} q heads / ${nKvHeads} kv heads: every anchor x retrieval type, 1 and 3 query tokens`, () => {
        const s = seed++;
        const rng = mulberry32(s);
        const blockLen = 16;
        const seqLen = 16 * 11 + 5; // 11 full blocks + a tail of 5
        const row = buildRow({ arena, nKvHeads, headDim: 32, blockLen, kDtype, seqLen, seed: s, nLayers: 2 });
        const nFull = Math.floor(seqLen / blockLen);
        for (const nq of [1, 3]) {
          const q = normalArray(rng, nq * nqHeads * 32);
          const pos = lastPositions(seqLen, nq);
          const want = attendDense(q, pos, nqHeads, denseView(row.storage, 1, row.table, seqLen));
          for (const anchorType of ANCHOR_TYPES) {
            for (const retrievalType of RETRIEVAL_TYPES) {
              // Two covering selections: all scored (init 0, local 0), and init 1 + picks + local 2.
              for (const [init, local] of [[0, 0], [1, 2]] as const) {
                const sp = new SparseAttention(row.storage, nqHeads, {
                  anchorType, retrievalType, init, local, pick: nFull - init - local, denseFallback: false, denseLayers: 0,
                });
                sp.afterPrefill(ks, 1, row.table, 0, seqLen, putF32(arena, q), pos);
                const got = attendSparse(sp, 1, row.table, seqLen, q, pos, 0);
                const label = `${anchorType}/${retrievalType}, init ${init} local ${local}, ${nq} tokens`;
                assert.equal(got.dense, false, `${label}: the selection path ran`);
                assert.equal(got.groups.length, retrievalType === 'layer' ? 1 : retrievalType === 'kvhead' ? nKvHeads : nqHeads);
                for (const g of got.groups) assert.deepEqual([...g].sort((a, b) => a - b), Array.from({ length: nFull + 1 }, (_, i) => i), `${label}: every block`);
                assert.deepEqual(got.lengths, got.groups.map(() => seqLen));
                assertClose(got, want, label);
                sp.dispose();
              }
            }
          }
        }
        row.storage.dispose();
      });
    }
  }
});

test('the dense fallback is dense attention bit for bit (short rows, dense layers, pick -1)', () => {
  const rng = mulberry32(3);
  for (const [nqHeads, nKvHeads] of GQA) {
    const row = buildRow({ arena, nKvHeads, headDim: 32, blockLen: 8, kDtype: 'f16', seqLen: 77, seed: 4, nLayers: 3 });
    const cases = [
      { opts: { pick: 4, init: 1, local: 4, denseLayers: 0 }, layer: 1 }, // nFull 9 <= 1 + 4 + 4
      { opts: { pick: 2, init: 1, local: 1, denseLayers: 2 }, layer: 1 }, // a dense layer
      { opts: { pick: -1, denseLayers: 0 }, layer: 2 }, // pick -1
    ];
    for (const { opts, layer } of cases) {
      for (const retrievalType of RETRIEVAL_TYPES) {
        const sp = new SparseAttention(row.storage, nqHeads, { ...opts, retrievalType, anchorType: 'quest' });
        for (const nq of [1, 4]) {
          const q = normalArray(rng, nq * nqHeads * 32);
          const pos = lastPositions(77, nq);
          const got = attendSparse(sp, layer, row.table, 77, q, pos, 0);
          const want = attendDense(q, pos, nqHeads, denseView(row.storage, layer, row.table, 77));
          assert.equal(got.dense, true);
          assert.deepEqual(got.groups, [Array.from({ length: 10 }, (_, i) => i)]);
          assert.ok(sameBits(got.out, want.out) && sameBits(got.lse, want.lse), `${JSON.stringify(opts)} ${retrievalType}: bit-exact`);
        }
        sp.dispose();
      }
    }
    row.storage.dispose();
  }
});

test('a PagedKVCache sequence decoded token by token: anchors on block fill, new blocks attended, output = attention over the chosen blocks', () => {
  const rng = mulberry32(9);
  const [nqHeads, nKvHeads, D, L] = [4, 2, 32, 8];
  const cache = new PagedKVCache({ arena, nLayers: 2, nKvHeads, headDim: D, kDtype: 'f16', vDtype: 'f16', nBlocks: 40, blockLen: L, fingerprint: 'sparse-test' });
  const sp = new SparseAttention(cache.storage, nqHeads, { anchorType: 'block_max', retrievalType: 'kvhead', pick: 2, init: 1, local: 1, tokenStep: 5, denseLayers: 1 });
  const seq = cache.seqAdd().seq;
  const tf = nKvHeads * D;
  const put = (n: number) => {
    assert.ok(cache.reserve(seq, n));
    for (let l = 0; l < 2; l++) cache.write(l, seq, normalArray(rng, n * tf), normalArray(rng, n * tf));
  };
  put(45); // prefill
  const q0 = normalArray(rng, 45 * nqHeads * D);
  for (let l = 0; l < 2; l++) sp.afterPrefill(ks, l, cache.blockTable(seq), 0, 45, putF32(arena, q0), lastPositions(45, 45));
  cache.commit(seq);
  for (let t = 0; t < 12; t++) {
    const before = cache.seqLen(seq);
    put(1);
    const len = before + 1;
    const table = cache.blockTable(seq);
    const q = normalArray(rng, nqHeads * D);
    const pos = lastPositions(len, 1);
    for (let l = 0; l < 2; l++) {
      const got = attendSparse(sp, l, table, len, q, pos, t, seq);
      if (l === 0) {
        assert.equal(got.dense, true, 'layer 0 is a dense layer');
        const want = attendDense(q, pos, nqHeads, cache.view(0, seq));
        assert.ok(sameBits(got.out, want.out) && sameBits(got.lse, want.lse), 'dense layer == the paged view, bit for bit');
        continue;
      }
      assert.equal(got.dense, false);
      assert.equal(got.fresh, t % 5 === 0, `step ${t}: selections on token steps only`);
      const nBlocks = Math.ceil(len / L);
      for (let g = 0; g < nKvHeads; g++) {
        const blocks = got.groups[g]!;
        assert.equal(blocks[0], 0, 'init block first');
        // Every block from the selection's recent start on: the newest full blocks and the tail.
        const sel = sp.selection(1, seq)!;
        assert.deepEqual(blocks.slice(3), Array.from({ length: nBlocks - sel.recentStart }, (_, i) => sel.recentStart + i));
        // out / lse of this kv head's q heads = the kernel on a view of exactly these blocks.
        const full = cache.view(1, seq);
        const view: KVView = { ...full, nKvHeads: 1, segments: blocks.map((b) => ({ ...full.segments[b]!, kOffsetBytes: full.segments[b]!.kOffsetBytes + g * full.kHeadStrideBytes, vOffsetBytes: full.segments[b]!.vOffsetBytes + g * full.vHeadStrideBytes })), nTokens: got.lengths[g]! };
        const want = attendDense(q.slice(g * 2 * D, (g + 1) * 2 * D), pos, 2, view);
        assert.ok(sameBits(got.out.slice(g * 2 * D, (g + 1) * 2 * D), want.out), `step ${t}, kv head ${g}: out`);
        assert.ok(sameBits(got.lse.slice(g * 2, (g + 1) * 2), want.lse), `step ${t}, kv head ${g}: lse`);
      }
      assert.equal(sp.onBlocksFilled(l, table, before, len), len % L === 0 ? 1 : 0, 'one block anchored when it fills');
    }
    cache.commit(seq);
  }
  sp.dispose();
  cache.dispose();
});
