/**
 * Planted needles: random keys, and for each kv head g one strong key M * u_g (u_g a random unit
 * vector) planted in its own block b_g; every q head of group g queries along u_g. The block of
 * each needle must be the top pick of the selections that see it, for every anchor type and
 * retrieval type, at 4k and 32k tokens (f16 storage at 32k); and since the needles dominate the
 * softmax, sparse attention must then equal dense attention.
 *
 *   LAYER: b_0 and b_1 are its two first picks; KVHEAD: group g picks b_g first; QHEAD: q head h
 *   picks b_{g(h)} first.
 *
 * NOTE(1): The needle sits at slot blockLen / 2, and FIXED uses anchorNum 2 (sampled slots 0 and
 *   blockLen / 2): a FIXED anchor only sees its sampled keys, so a needle elsewhere would be
 *   invisible to it by design. The other types see every key of a block.
 * NOTE(2): DYNAMIC anchors come from importance accumulated by afterPrefill from the last prompt
 *   queries (here along the needles' directions): the needle receives nearly all the attention,
 *   so its key becomes its block's anchor.
 * NOTE(3): M = 100 against N(0, 1) keys: BLOCK_MEAN dilutes a needle by blockLen (M / 128 per unit
 *   of |q|, against a block-mean noise of |q| / sqrt(128) per head), so the needle must be loud for
 *   the mean to find it; the other types have a far larger margin.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { kernelsFor } from '../src/kernels/registry.js';
import { nmse } from '../src/kernels/tolerances.js';
import { SparseAttention } from '../src/kv/sparse/sparse-attention.js';
import { ANCHOR_TYPES, RETRIEVAL_TYPES } from '../src/kv/sparse/sparse-config.js';
import { mulberry32, normalArray, type Rng } from './helpers/rng.js';
import { allocF32, buildRow, denseView, lastPositions, putF32, readF32 } from './helpers/sparse-fixture.js';

const arena = new Arena({ initialBytes: 64 << 20, maximumBytes: 1 << 30 });
const ks = kernelsFor(arena, 1);
after(() => arena.dispose());

const [H, KV, D] = [4, 2, 32];
const GROUP = H / KV;
const M = 100; // NOTE(3)

function unit(rng: Rng): Float32Array {
  const u = normalArray(rng, D);
  const n = Math.hypot(...u);
  return u.map((x) => x / n);
}

for (const [ctx, blockLen, kDtype] of [[4096, 64, 'f32'], [32768, 128, 'f16']] as [number, number, DType][]) {
  test(`needles in a ${ctx}-token row (blockLen ${blockLen}, ${kDtype}): every anchor type x retrieval type picks them first`, () => {
    const rng = mulberry32(ctx);
    const nBlocks = ctx / blockLen;
    const needleBlock = [Math.floor(nBlocks * 0.37), Math.floor(nBlocks * 0.71)]; // per kv head
    const slot = blockLen / 2; // NOTE(1)
    const u = [unit(rng), unit(rng)];
    const k = normalArray(rng, ctx * KV * D);
    for (let g = 0; g < KV; g++) {
      const t = needleBlock[g]! * blockLen + slot;
      for (let d = 0; d < D; d++) k[(t * KV + g) * D + d] = M * u[g]![d]!;
    }
    const row = buildRow({ arena, nKvHeads: KV, headDim: D, blockLen, kDtype, seqLen: ctx, seed: ctx + 1, k: [k] });
    // Queries along the needle direction of their kv head: 4 prompt queries (importance) and the decode query.
    const query = () => {
      const q = new Float32Array(H * D);
      for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) q[h * D + d] = 4 * u[Math.floor(h / GROUP)]![d]! + 0.25 * normalArray(rng, 1)[0]!;
      return q;
    };
    const prompt = new Float32Array(4 * H * D);
    for (let t = 0; t < 4; t++) prompt.set(query(), t * H * D);
    const promptOff = putF32(arena, prompt);
    const q = query();
    const qOff = putF32(arena, q);
    const outOff = allocF32(arena, H * D);
    const lseOff = allocF32(arena, H);
    const pos = lastPositions(ctx, 1);
    ks.attention(qOff, outOff, lseOff, pos, H, denseView(row.storage, 0, row.table, ctx));
    const dense = readF32(arena, outOff, H * D);
    for (const anchorType of ANCHOR_TYPES) {
      for (const retrievalType of RETRIEVAL_TYPES) {
        const label = `${anchorType}/${retrievalType}`;
        const sp = new SparseAttention(row.storage, H, {
          anchorType, retrievalType, anchorNum: anchorType === 'fixed' ? 2 : undefined, pick: 8, init: 1, local: 2, denseLayers: 0,
        });
        sp.afterPrefill(ks, 0, row.table, 0, ctx, promptOff, lastPositions(ctx, 4)); // NOTE(2)
        const step = sp.attend(ks, 0, 0, row.table, ctx, qOff, outOff, lseOff, pos, 0);
        assert.equal(step.dense, false, label);
        const picks = Array.from({ length: step.nGroups }, (_, g) => step.blocks(g).slice(1, 9));
        if (retrievalType === 'layer') {
          assert.deepEqual([...picks[0]!.slice(0, 2)].sort((a, b) => a - b), needleBlock, `${label}: first picks ${picks[0]}`);
        } else {
          picks.forEach((p, g) => {
            const kvHead = retrievalType === 'kvhead' ? g : Math.floor(g / GROUP);
            assert.equal(p[0], needleBlock[kvHead], `${label}: group ${g} picks ${p}`);
          });
        }
        const e = nmse(readF32(arena, outOff, H * D), dense);
        assert.ok(e < 1e-6, `${label}: sparse vs dense NMSE ${e}`);
        sp.dispose();
      }
    }
    row.storage.dispose();
    for (const o of [promptOff, qOff, outOff, lseOff]) arena.free(o);
  });
}
