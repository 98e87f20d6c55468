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
  const out = new Float32Array(rows * headDim); // [rows, headDim]
  const lse = new Float32Array(rows); // [rows]
  for (let r = 0; r < rows; r++) {
    const la = a.lse[r]!;
    const lb = b.lse[r]!;
    const m = Math.max(la, lb);
    if (m === -Infinity) {
      lse[r] = -Infinity; // out row stays 0
      continue;
    }
    const wa = Math.exp(la - m); // 0 exactly when la = -Infinity
    const wb = Math.exp(lb - m);
    const sum = wa + wb;
    lse[r] = m + Math.log(sum);
    const ca = wa / sum;
    const cb = wb / sum;
    const o = r * headDim;
    for (let d = 0; d < headDim; d++) {
      const va = ca === 0 ? 0 : a.out[o + d]! * ca;
      const vb = cb === 0 ? 0 : b.out[o + d]! * cb;
      out[o + d] = va + vb;
    }
  }
  return { out, lse };
}
