/**
 * Block scoring and top-k, as pure functions over the anchors (anchors.ts) and a query.
 *
 *   score(block) = sum over the group's q heads h, over dims d, of  max over slots a of  anchor[a][h][d] * q[h][d]
 *
 * No 1/sqrt(headDim) and no softmax (ktransformers): with one slot it is the dot product of the
 * anchor and the query; with QUEST's (max, min) slots it is Quest's upper bound on q . k over the
 * block's keys. Groups: 'layer' one (all q heads), 'kvhead' one per kv head (its q-head group),
 * 'qhead' one per q head.
 *
 * NOTE(1): Several query tokens (prefill chunks) score with the SUM of their per-token scores, so
 *   every token's preference counts. With anchorNum 1 the score is linear in q, and the sum is
 *   computed as one pass with the summed query (the same value up to rounding).
 * NOTE(2): Ranking is by score descending, ties to the lower logical index, NaN ranked as
 *   -Infinity: the selection is a deterministic function of the scores.
 * NOTE(3): Sums are float64. Cost: (blocks scored) * nqHeads * headDim * anchorNum multiply-adds.
 */
import type { RetrievalType } from './sparse-config.js';

export interface ScoreShape {
  readonly anchorNum: number;
  readonly nqHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** Selection group of q head h. */
export function groupOfHead(retrieval: RetrievalType, h: number, nqHeads: number, nKvHeads: number): number {
  return retrieval === 'layer' ? 0 : retrieval === 'kvhead' ? Math.floor(h / (nqHeads / nKvHeads)) : h;
}

let qRow = new Float64Array(64); // [nqHeads * headDim] one query row (or the summed rows, NOTE(1))
let headGroup = new Int32Array(8); // [nqHeads] selection group of each q head

/**
 * Scores of logical blocks [b0, b1) of a row into out[group * (b1 - b0) + (i - b0)] (out is
 * [nGroups, b1 - b0] float64, overwritten). anchors: the layer's [nBlocks, anchorNum, nqHeads,
 * headDim]; table: logical -> physical; q: nTokens query rows [nqHeads, headDim] from element qAt.
 */
export function scoreBlocks(
  anchors: Float32Array, s: ScoreShape, retrieval: RetrievalType, table: Int32Array, b0: number, b1: number,
  q: Float32Array, qAt: number, nTokens: number, out: Float64Array,
): void {
  const { nqHeads: H, headDim: D } = s;
  const nGroups = retrieval === 'layer' ? 1 : retrieval === 'kvhead' ? s.nKvHeads : H;
  out.fill(0, 0, nGroups * (b1 - b0));
  if (qRow.length < H * D) qRow = new Float64Array(H * D);
  if (headGroup.length < H) headGroup = new Int32Array(H);
  for (let h = 0; h < H; h++) headGroup[h] = groupOfHead(retrieval, h, H, s.nKvHeads);
  const summed = s.anchorNum === 1 && nTokens > 1;
  for (let t = 0; t < nTokens; t++) {
    if (summed && t > 0) for (let e = 0; e < H * D; e++) qRow[e] += q[qAt + t * H * D + e]!;
    else for (let e = 0; e < H * D; e++) qRow[e] = q[qAt + t * H * D + e]!;
    if (!summed || t === nTokens - 1) addScores(anchors, s, table, b0, b1, out);
  }
}

/**
 * out[group, i] += score of block b0 + i for the query row in qRow. Per dimension, max over slots
 * of anchor * q is taken as (max anchor) * q when q >= 0 and (min anchor) * q otherwise: equal
 * (rounding is monotonic), and the branch follows the sign of q, the same for every block.
 */
function addScores(anchors: Float32Array, s: ScoreShape, table: Int32Array, b0: number, b1: number, out: Float64Array): void {
  const { anchorNum: A, nqHeads: H, headDim: D } = s;
  const HD = H * D;
  const n = b1 - b0;
  const q = qRow;
  for (let i = 0; i < n; i++) {
    const base = table[b0 + i]! * A * HD;
    for (let h = 0; h < H; h++) {
      const hb = base + h * D;
      const qb = h * D;
      let sum = 0;
      if (A === 1) {
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        let d = 0;
        for (; d + 3 < D; d += 4) {
          sum += anchors[hb + d]! * q[qb + d]!;
          s1 += anchors[hb + d + 1]! * q[qb + d + 1]!;
          s2 += anchors[hb + d + 2]! * q[qb + d + 2]!;
          s3 += anchors[hb + d + 3]! * q[qb + d + 3]!;
        }
        for (; d < D; d++) sum += anchors[hb + d]! * q[qb + d]!;
        sum += s1 + s2 + s3;
      } else {
        for (let d = 0; d < D; d++) {
          const qd = q[qb + d]!;
          let m = anchors[hb + d]!;
          if (qd >= 0) {
            for (let a = 1; a < A; a++) {
              const v = anchors[hb + a * HD + d]!;
              if (v > m) m = v;
            }
          } else {
            for (let a = 1; a < A; a++) {
              const v = anchors[hb + a * HD + d]!;
              if (v < m) m = v;
            }
          }
          sum += m * qd;
        }
      }
      out[headGroup[h]! * n + i] += sum;
    }
  }
}

/**
 * The top min(k, n) of scores[off, off + n) in rank order (NOTE(2)), written as logical block ids
 * (base + index) to out[outOff ..]. idx: scratch of at least n entries. Returns the count written.
 */
export function topBlocks(scores: Float64Array, off: number, n: number, k: number, base: number, idx: Int32Array, out: Int32Array, outOff: number): number {
  const count = Math.max(0, Math.min(k, n));
  if (count === 0) return 0;
  for (let i = 0; i < n; i++) idx[i] = i;
  const key = (i: number): number => {
    const v = scores[off + i]!;
    return v === v ? v : -Infinity;
  };
  idx.subarray(0, n).sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return x > y ? -1 : x < y ? 1 : a - b;
  });
  for (let i = 0; i < count; i++) out[outOff + i] = base + idx[i]!;
  return count;
}
