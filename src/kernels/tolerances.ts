/**
 * The one table of accuracy thresholds for attention kernels (DESIGN decision 4).
 *
 * Metric: NMSE(out, ref) = sum((out - ref)^2) / sum(ref^2), where `ref` is a float64 naive
 * softmax(Q K^T * scale) V computed from the UNQUANTIZED f32 K/V, with the same mask. So the
 * bound covers the storage dtype's rounding plus the kernel's own arithmetic.
 *
 * NOTE(1): Values measured with the reference kernel (ref/attention.ts) on seeded N(0, 1) q, K, V,
 *   scale 1/sqrt(headDim), headDim 32/64 (and 80 for float dtypes), GQA 1/2/7, 1/5/37/300 keys in
 *   3 random segments, 6 query tokens (the last 5 positions + 1 random), window Inf/16/3, both
 *   layouts. Each bound is ~10x the worst measured value, rounded: room for a faster kernel's f32
 *   arithmetic, while gross errors (rows mis-decoded, mis-addressed or dropped: NMSE ~ 1) fail.
 * NOTE(2): A K/V pair uses the worse (larger) of its two entries: the two errors add roughly,
 *   and the worse one dominates.
 */
import type { DType } from '../core/dtype.js';
import { ShapeError } from '../core/errors.js';

export interface AttentionTolerance {
  /** Bound on NMSE of `out` against the f64 naive reference on f32 inputs. */
  readonly outNmse: number;
  /** Bound on |lse - lseRef| (natural log units; K's dtype matters, V's does not). */
  readonly lseAbs: number;
}

/**
 * Measured (NOTE(1); 2,808 runs per float K/V pair, 1,872 per pair with a quantized dtype; each
 * dtype with itself, and the mixes q8_0/f16, f16/q4_0, bf16/q8_0, f32/q4_0, q4_0/f32, which all
 * stayed under the worse of their two entries' worst values):
 *
 *   dtype   worst out NMSE   mean out NMSE   worst |lse err|   ->  outNmse   lseAbs
 *   f32        8.6e-16          4.3e-16         2.4e-7              1e-10     5e-6
 *   f16        1.8e-7           6.1e-8          9.8e-4              2e-6      1e-2
 *   bf16       9.0e-6           3.9e-6          9.6e-3              1e-4      1e-1
 *   q8_0       8.1e-5           4.0e-5          3.2e-2              1e-3      3e-1
 *   q4_0       3.5e-2           1.0e-2          4.0e-1              3e-1      4
 *
 * f32's bound is the project-wide 1e-10 (its error is only the final f32 rounding of out; its
 * lse bound covers f32 rounding of |lse| up to ~80). q4_0's bounds are wide by nature (4-bit
 * storage); kernels are also checked against a naive reference on the DEQUANTIZED K/V at the
 * f32 bound, which is what catches a decoding bug at any dtype.
 */
export const ATTENTION_TOLERANCES: Readonly<Record<DType, AttentionTolerance>> = {
  f32: { outNmse: 1e-10, lseAbs: 5e-6 },
  f16: { outNmse: 2e-6, lseAbs: 1e-2 },
  bf16: { outNmse: 1e-4, lseAbs: 1e-1 },
  q8_0: { outNmse: 1e-3, lseAbs: 3e-1 },
  q4_0: { outNmse: 3e-1, lseAbs: 4 },
};

/** NMSE bound for attention `out` with K stored as kDtype and V as vDtype. */
export function thresholdFor(kDtype: DType, vDtype: DType): number {
  return Math.max(ATTENTION_TOLERANCES[kDtype].outNmse, ATTENTION_TOLERANCES[vDtype].outNmse);
}

/** Bound on |lse - lseRef| when K is stored as kDtype (lse does not depend on V). */
export function lseToleranceFor(kDtype: DType): number {
  return ATTENTION_TOLERANCES[kDtype].lseAbs;
}

/**
 * Normalized mean squared error sum((a - b)^2) / sum(b^2), accumulated in float64; `b` is the
 * reference (ShapeError if the lengths differ). 0 when both are all zeros, Infinity when only the reference is; NaN anywhere in
 * the inputs gives NaN, which fails every `<=` comparison (as it should).
 */
export function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new ShapeError('nmse: length of a (must equal the reference length)', b.length, a.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return num / den;
}

/**
 * Parity of the fast (WASM) kernels with their reference twins: NMSE(wasm, ref) where both read
 * the same stored bytes, by kernel family and by the dtype of the stored operand (weights for
 * matvec / matmul / embedding, K and V for attention: a pair uses the worse entry). Elementwise
 * kernels (rmsnorm, rope, softmax, silu x up, add) have only f32 operands: their row is `f32`.
 *
 * Here the stored data are identical, so the bound covers only the kernel's own arithmetic: f32
 * accumulation instead of float64, fused multiply-add in the relaxed build, and, where a kernel
 * quantizes its f32 input per 32-block to int8 as ggml does (q8_0 / q4_0 weights or KV), that
 * rounding. Each value is ~10x the worst NMSE measured by the parity suite (test/kernels-*.test.ts);
 * a mis-addressed or mis-decoded row gives NMSE ~ 1 and fails every entry.
 */
export const PARITY_TOLERANCES: Readonly<Record<'attention' | 'matvec' | 'matmul' | 'embedding' | 'elementwise', Readonly<Record<DType, number>>>> = {
  attention: { f32: 5e-12, f16: 5e-12, bf16: 5e-12, q8_0: 6e-8, q4_0: 6e-8 },
  matvec: { f32: 4e-12, f16: 4e-12, bf16: 4e-12, q8_0: 1e-3, q4_0: 1e-3 },
  matmul: { f32: 4e-12, f16: 4e-12, bf16: 4e-12, q8_0: 1e-3, q4_0: 1e-3 },
  embedding: { f32: 0, f16: 0, bf16: 0, q8_0: 0, q4_0: 0 },
  elementwise: { f32: 2e-13, f16: 2e-13, bf16: 2e-13, q8_0: 2e-13, q4_0: 2e-13 },
};

/** Parity bound for a kernel family given the stored operands' dtypes (the worse entry). */
export function parityBound(family: keyof typeof PARITY_TOLERANCES, ...dtypes: DType[]): number {
  return Math.max(...dtypes.map((d) => PARITY_TOLERANCES[family][d]));
}

/**
 * End-to-end: NMSE of a model's logits when its KV cache is stored in `dtype`, against the same
 * model with f32 KV, both fed the same tokens (teacher-forced, so one early flip of a greedy token
 * cannot make later positions incomparable). `f32` is the bound between cached and uncached
 * generation (the same arithmetic in a different order: chunked prefill vs one token per step).
 * Worst values measured on the tiny, tiny-llama and tiny-qwen3 presets over 64 positions
 * (2026-11-23): f32 cached/uncached 6e-14, f16 3e-7, bf16 2.3e-5, q8_0 2.5e-4, q4_0 5.5e-2;
 * each bound is ~4-10x that. test/generate-logits.test.ts asserts them.
 */
export const LOGITS_TOLERANCES: Readonly<Record<DType, number>> = { f32: 1e-10, f16: 2e-6, bf16: 2e-4, q8_0: 2e-3, q4_0: 0.25 };
