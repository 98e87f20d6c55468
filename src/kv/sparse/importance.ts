/**
 * Token importance: per (layer, physical block, slot, q head) the attention probability the token
 * has received, summed over the queries that were accumulated. DYNAMIC anchors are built from it.
 *
 *   importance of layer l:  [nBlocks, blockLen, nqHeads] f32
 *
 *   for a query token t (position qPos) and q head h of kv head g, over a block's visible keys k:
 *     importance[block][slot(k)][h] += exp(scale * q[t, h] . K[g, k] - lse[t, h])
 *
 * NOTE(1): lse is the log-sum-exp of the attention the query really ran (dense after prefill,
 *   sparse during decode): p is then that attention's softmax weight, in (0, 1], with the max
 *   subtraction built in (p = exp(s - lse) never overflows). A query with lse = -Infinity saw no
 *   key and adds nothing.
 * NOTE(2): The dot products come from the fast kernels: a block's K rows of one kv head are
 *   contiguous ([blockLen, kRowBytes], block-storage.ts NOTE(1)), i.e. a weight matrix in the
 *   stored dtype, so ks.matmul(K, X) gives the scores of the gathered queries X [m * heads, headDim]
 *   at once. Only the exp and the sums are a TS loop: m * heads * keys exps per call.
 * NOTE(3): Per-layer arrays are allocated on first use.
 */
import { BlockFloats } from './block-floats.js';
import type { KernelSet } from '../../kernels/kernel-set.js';
import type { BlockStorage } from '../paged/block-storage.js';
import type { ArenaScratch } from './arena-scratch.js';

export class ImportanceStore extends BlockFloats {
  constructor(nLayers: number, nBlocks: number, readonly blockLen: number, readonly nqHeads: number) {
    super(nLayers, nBlocks, blockLen * nqHeads, 'importance', `[blockLen, nqHeads] = [${blockLen}, ${nqHeads}]`);
  }

  /** Zero one block in every layer. */
  clearBlockAllLayers(block: number): void {
    for (let l = 0; l < this.nLayers; l++) this.clearBlock(l, block);
  }
}

/** The queries whose attention is accumulated: tokens [t0, t0 + m) of q and lse. */
export interface ImportanceQueries {
  /** Arena byte offset of q [nTokens, nqHeads, headDim] f32. */
  qOff: number;
  /** Arena byte offset of lse [nTokens, nqHeads] f32 (NOTE(1)). */
  lseOff: number;
  /** [nTokens] query positions. */
  positions: Int32Array;
  t0: number;
  m: number;
  /** The attention's score scale. */
  scale: number;
}

/**
 * Add the attention probabilities of the queries to the importance of q heads [h0, h0 + hc) over
 * the keys of the logical blocks blocks[b0, b0 + nb) of a row (table, seqLen). imp: the layer's array.
 */
export function accumulateImportance(
  ks: KernelSet, st: BlockStorage, scratch: ArenaScratch, imp: Float32Array, nqHeads: number, layer: number,
  table: Int32Array, seqLen: number, blocks: Int32Array, b0: number, nb: number, qz: ImportanceQueries, h0: number, hc: number,
): void {
  const D = st.headDim;
  const L = st.blockLen;
  const group = nqHeads / st.nKvHeads;
  for (let g = Math.floor(h0 / group); g * group < h0 + hc; g++) {
    const ha = Math.max(h0, g * group);
    const hb = Math.min(h0 + hc, (g + 1) * group);
    const rows = qz.m * (hb - ha); // X rows: (token, head) pairs, token-major
    const xOff = scratch.get('importance.x', rows * D * 4); // [m, hb - ha, headDim]
    const yOff = scratch.get('importance.y', rows * L * 4); // [m * (hb - ha), blockLen]
    let f32 = ks.arena.f32;
    for (let t = 0; t < qz.m; t++) {
      const src = (qz.qOff >> 2) + ((qz.t0 + t) * nqHeads + ha) * D;
      f32.copyWithin((xOff >> 2) + t * (hb - ha) * D, src, src + (hb - ha) * D);
    }
    for (let i = 0; i < nb; i++) {
      const logical = blocks[b0 + i]!;
      const phys = table[logical]!;
      const n = Math.min(L, seqLen - logical * L);
      if (n <= 0) continue;
      ks.matmul(st.kOffset(layer, phys, 0) + g * st.kHeadStrideBytes, st.kDtype, n, D, xOff, rows, yOff);
      f32 = ks.arena.f32; // NOTE: a kernel's own scratch may have grown the memory
      addProbabilities(f32, yOff >> 2, n, qz, nqHeads, ha, hb, logical * L, imp, phys * L * nqHeads);
    }
  }
}

/** imp[(slot, h)] += exp(scale * y[r, slot] - lse[t, h]) for the visible slots (y [rows, n]). */
function addProbabilities(
  f32: Float32Array, y: number, n: number, qz: ImportanceQueries, H: number, ha: number, hb: number,
  pos0: number, imp: Float32Array, impOff: number,
): void {
  const lse0 = qz.lseOff >> 2;
  for (let t = 0; t < qz.m; t++) {
    const qPos = qz.positions[qz.t0 + t]!;
    const nVisible = Math.min(n, qPos - pos0 + 1); // key slot k is visible iff pos0 + k <= qPos
    for (let h = ha; h < hb; h++) {
      const lse = f32[lse0 + (qz.t0 + t) * H + h]!;
      if (!(lse > -Infinity)) continue; // NOTE(1): nothing visible (or NaN): no probability mass
      const r = y + (t * (hb - ha) + h - ha) * n;
      for (let k = 0; k < nVisible; k++) imp[impOff + k * H + h] += Math.exp(qz.scale * f32[r + k]! - lse);
    }
  }
}
