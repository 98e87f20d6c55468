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

let qSum = new Float64Array(64); // [nqHeads * headDim] NOTE(1)

/**
 * Scores of logical blocks [b0, b1) of a row into out[group * (b1 - b0) + (i - b0)] (out is
 * [nGroups, b1 - b0] float64, overwritten). anchors: the layer's [nBlocks, anchorNum, nqHeads,
 * headDim]; table: logical -> physical; q: nTokens query rows [nqHeads, headDim] from element qAt.
 */
export function scoreBlocks(
  anchors: Float32Array, s: ScoreShape, retrieval: RetrievalType, table: ArrayLike<number>, b0: number, b1: number,
  q: Float32Array, qAt: number, nTokens: number, out: Float64Array,
): void {
  const { nqHeads: H, headDim: D } = s;
  const nGroups = retrieval === 'layer' ? 1 : retrieval === 'kvhead' ? s.nKvHeads : H;
  out.fill(0, 0, nGroups * (b1 - b0));
  if (s.anchorNum === 1 && nTokens > 1) {
    if (qSum.length < H * D) qSum = new Float64Array(H * D);
    qSum.fill(0, 0, H * D);
    for (let t = 0; t < nTokens; t++) for (let e = 0; e < H * D; e++) qSum[e] += q[qAt + t * H * D + e]!;
    addScores(anchors, s, retrieval, table, b0, b1, qSum, 0, out);
    return;
  }
  for (let t = 0; t < nTokens; t++) addScores(anchors, s, retrieval, table, b0, b1, q, qAt + t * H * D, out);
}

/** out[group, i] += score of block b0 + i for one query row q[qAt ..] ([nqHeads, headDim]). */
function addScores(
  anchors: Float32Array, s: ScoreShape, retrieval: RetrievalType, table: ArrayLike<number>, b0: number, b1: number,
  q: Float32Array | Float64Array, qAt: number, out: Float64Array,
): void {
  const { anchorNum: A, nqHeads: H, headDim: D, nKvHeads } = s;
  const n = b1 - b0;
  const blockFloats = A * H * D;
  for (let i = 0; i < n; i++) {
    const base = table[b0 + i]! * blockFloats;
    for (let h = 0; h < H; h++) {
      const hb = base + h * D;
      const qb = qAt + h * D;
      let sum = 0;
      for (let d = 0; d < D; d++) {
        const qd = q[qb + d]!;
        let m = anchors[hb + d]! * qd;
        for (let a = 1; a < A; a++) {
          const v = anchors[hb + a * H * D + d]! * qd;
          if (v > m) m = v;
        }
        sum += m;
      }
      out[groupOfHead(retrieval, h, H, nKvHeads) * n + i] += sum;
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
