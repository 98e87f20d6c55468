/**
 * Reference greedy (argmax) and top-k selection over logits, the oracles of the wasm kernels
 * argmax_chunks_f32 / topk_chunks_f32 / topk_merge_f32.
 *
 * NOTE(1): One strict total order on (value, index), as torch.argmax / torch.topk and numpy.argmax:
 *   a larger value is better; NaN counts as larger than every number (a NaN logit is a bug upstream,
 *   and selecting it makes that visible rather than hiding it); equal values (including -0 and +0,
 *   or two NaNs) are ordered by the lower index first. argmax is the first element of topK(x, 1).
 */
import { ConfigError, ShapeError } from '../../core/errors.js';

export interface TopK {
  /** [k] best first */
  values: Float32Array;
  /** [k] indices of the values */
  indices: Int32Array;
}

/** Whether (av, ai) comes before (bv, bi) in the order of NOTE(1). */
export function better(av: number, ai: number, bv: number, bi: number): boolean {
  if (av !== av) return bv !== bv ? ai < bi : true;
  if (bv !== bv) return false;
  if (av !== bv) return av > bv;
  return ai < bi;
}

/** ShapeError for an empty input. */
export function checkNonEmpty(what: string, n: number): void {
  if (n < 1) throw new ShapeError(`${what} length`, 'at least 1', n);
}

/** ConfigError unless k is an integer in [1, n]. */
export function checkK(k: unknown, n: number): number {
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > n) throw new ConfigError('topK k', `an integer in [1, ${n}]`, k);
  return k;
}

/** Index of the best value (NOTE(1)). */
export function argmax(x: ArrayLike<number>): number {
  checkNonEmpty('argmax x', x.length);
  let best = 0;
  for (let i = 1; i < x.length; i++) if (better(x[i]!, i, x[best]!, best)) best = i;
  return best;
}

/** The k best (value, index) pairs, best first (NOTE(1)); a full sort, plainly correct. */
export function topK(x: Float32Array, k: number): TopK {
  checkNonEmpty('topK x', x.length);
  checkK(k, x.length);
  const order = Array.from({ length: x.length }, (_, i) => i);
  order.sort((a, b) => (better(x[a]!, a, x[b]!, b) ? -1 : 1));
  const values = new Float32Array(k); // [k]
  const indices = new Int32Array(k); // [k]
  for (let r = 0; r < k; r++) {
    indices[r] = order[r]!;
    values[r] = x[order[r]!]!;
  }
  return { values, indices };
}
