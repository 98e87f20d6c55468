/**
 * Exact merge of two partial attentions over disjoint key sets A and B (same queries, same heads):
 *
 *   m   = max(la, lb)
 *   lse = m + log(exp(la - m) + exp(lb - m))          = log(sum over A u B of exp(score))
 *   out = oa * exp(la - lse) + ob * exp(lb - lse)      = softmax over A u B, times V
 *
 * NOTE(1): Shifting by m keeps exp() in range for any lse magnitude (ktransformers writes
 *   la + ln(1 + e^(lb - la)), which overflows when lb >> la). Math is float64, stored as f32.
 * NOTE(2): A side with lse = -Infinity (no visible key) has weight exactly 0 and its `out` is
 *   not read at all, so merging with an all-masked part returns the other part bit for bit,
 *   and both sides masked gives out 0, lse -Infinity, never NaN.
 * NOTE(3): Works row by row on flat arrays, so batched results ([batch, nTokens, nHeads, ...])
 *   merge the same way as single-sequence ones.
 */
import { ShapeError, checkInt } from '../../core/errors.js';
import type { AttentionResult } from '../types.js';

/** Merge two partial results: a.out/b.out [rows, headDim], a.lse/b.lse [rows]. Returns new arrays. */
export function mergeAttention(a: AttentionResult, b: AttentionResult, headDim: number): AttentionResult {
  checkInt('mergeAttention headDim', headDim, 1);
  if (a.lse.length !== b.lse.length) throw new ShapeError('mergeAttention b.lse length (must equal a.lse length)', a.lse.length, b.lse.length);
  if (a.out.length !== b.out.length) throw new ShapeError('mergeAttention b.out length (must equal a.out length)', a.out.length, b.out.length);
  const rows = a.lse.length;
  if (a.out.length !== rows * headDim) {
    throw new ShapeError(`mergeAttention out length ([rows, headDim] = [${rows}, ${headDim}])`, rows * headDim, a.out.length);
  }
  const out = Float32Array.from(a.out); // [rows, headDim]
  const lse = Float32Array.from(a.lse); // [rows]
  mergeAttentionInto(out, lse, b.out, b.lse, headDim);
  return { out, lse };
}

/**
 * The same merge in place: (outA, lseA) becomes the merge of A and B. The arrays may be views of
 * the arena (the forward pass merges a quantized history with a full-precision recent window).
 * outA/outB [rows, headDim], lseA/lseB [rows]; shapes are the caller's contract (no checks: hot).
 */
export function mergeAttentionInto(outA: Float32Array, lseA: Float32Array, outB: Float32Array, lseB: Float32Array, headDim: number): void {
  const rows = lseA.length;
  for (let r = 0; r < rows; r++) {
    const la = lseA[r]!;
    const lb = lseB[r]!;
    const m = Math.max(la, lb);
    const o = r * headDim;
    if (m === -Infinity) {
      lseA[r] = -Infinity;
      for (let d = 0; d < headDim; d++) outA[o + d] = 0;
      continue;
    }
    const wa = Math.exp(la - m); // 0 exactly when la = -Infinity
    const wb = Math.exp(lb - m);
    const sum = wa + wb;
    lseA[r] = m + Math.log(sum);
    const ca = wa / sum;
    const cb = wb / sum;
    for (let d = 0; d < headDim; d++) {
      const va = ca === 0 ? 0 : outA[o + d]! * ca;
      const vb = cb === 0 ? 0 : outB[o + d]! * cb;
      outA[o + d] = va + vb;
    }
  }
}
