/**
 * What every attention kernel (reference TS and WASM, dense and sparse) takes and returns.
 *
 * NOTE(1): Outputs carry the log-sum-exp of the scores (natural log) next to the weighted sum,
 *   so two partial attentions over disjoint key sets merge exactly (see ref/merge.ts). This is
 *   the ktransformers contract (its `lse`), with an explicit -Infinity for "no key visible"
 *   instead of its |lse| < 1e-6 heuristic, which misreads a true lse near 0 as empty.
 * NOTE(2): The mask is by position, not by index: a key at position kp is visible to a query at
 *   position qp iff  qp - window < kp <= qp. New tokens are written to the cache before attention
 *   runs, so this one rule gives causal masking among several new tokens as well.
 */
import { ConfigError } from '../core/errors.js';
import type { KVView } from '../kv/types.js';

export interface AttentionOptions {
  /** Score multiplier applied to q.k; default 1 / sqrt(headDim). Must be finite. */
  scale?: number;
  /**
   * Sliding window in positions: a key is visible iff qPos - window < kPos <= qPos.
   * An integer >= 1, or Infinity (the default: plain causal attention).
   */
  window?: number;
}

/** Result for one sequence. Rows with no visible key have out = 0 and lse = -Infinity. */
export interface AttentionResult {
  /** [nTokens, nHeads, headDim] */
  out: Float32Array;
  /** [nTokens, nHeads], natural log of sum(exp(score)); -Infinity when no key is visible */
  lse: Float32Array;
}

/** Result for a batch of sequences; same rules as AttentionResult, one more leading axis. */
export interface BatchAttentionResult {
  /** [batch, nTokens, nHeads, headDim] */
  out: Float32Array;
  /** [batch, nTokens, nHeads] */
  lse: Float32Array;
}

/**
 * One call of a many-call attention (KernelSet.attentionMany, wasm wasmAttentionManyAt): the
 * queries of one sequence over its own view, on f32 arena buffers at byte offsets. Calls of one
 * batch share nHeads and the options; their views may differ in length, segments, dtypes,
 * layout (and nKvHeads / headDim). A call's out may be its own q; no other overlap is allowed
 * between the buffers of the calls of one batch.
 */
export interface AttentionCall {
  /** q [nTokens, nHeads, headDim] f32. */
  readonly qOffset: number;
  /** out [nTokens, nHeads, headDim] f32. */
  readonly outOffset: number;
  /** lse [nTokens, nHeads] f32. */
  readonly lseOffset: number;
  /** [nTokens] query positions. */
  readonly positions: ArrayLike<number>;
  readonly view: KVView;
}

/** AttentionOptions with defaults filled in and values checked. */
export interface ResolvedAttentionOptions {
  readonly scale: number;
  readonly window: number;
}

/**
 * Fill in defaults and validate; every kernel calls this so that they all agree on
 * what is accepted. Throws ConfigError for a non-finite scale or a window that is not
 * a positive integer (or Infinity).
 */
export function resolveAttentionOptions(opts: AttentionOptions | undefined, headDim: number): ResolvedAttentionOptions {
  const scale = opts?.scale ?? 1 / Math.sqrt(headDim);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new ConfigError('attention scale', 'a finite number', scale);
  }
  const window = opts?.window ?? Infinity;
  const windowOk = window === Infinity || (typeof window === 'number' && Number.isInteger(window) && window >= 1);
  if (!windowOk) throw new ConfigError('attention window', 'an integer >= 1 or Infinity', window);
  return { scale, window };
}
