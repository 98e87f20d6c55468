/**
 * A minimal dense f32 tensor for the compat facades: a shape plus row-major data.
 * The engine itself works on flat typed arrays and strides; this type exists only so
 * that facades can speak the seed systems' tensor vocabulary (`update(k, v)` with
 * [B, H, S, D] tensors) and check shapes with typed errors.
 *
 * NOTE(1): `tensor()` wraps a Float32Array without copying; a number[] is copied once.
 * NOTE(2): Head-major read-outs (`[nHeads, len, headDim]` per batch row, what the dense
 *   caches' `keys()` / `values()` return) are assembled into [B, H, S, D] or [B, S, H, D]
 *   by `stackHeadMajor`, which can also repeat each head (GQA `repeat_kv`).
 */
import { ShapeError } from './errors.js';

export interface Tensor {
  readonly shape: readonly number[];
  /** Row-major values: the last dimension is contiguous. */
  readonly data: Float32Array;
}

/** `bhsd` = [batch, heads, seq, headDim]; `bshd` = [batch, seq, heads, headDim]. */
export type TensorLayout = 'bhsd' | 'bshd';

/** Number of elements of a shape (1 for the scalar shape []). Throws ShapeError on a bad dimension. */
export function numel(shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new ShapeError('shape', 'an array of non-negative integers', shape);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) throw new ShapeError('shape dimension', 'a non-negative integer', shape);
    n *= d;
  }
  return n;
}

/** A tensor over `data` (not copied when it is a Float32Array); product(shape) must equal data.length. */
export function tensor(data: Float32Array | readonly number[], shape: readonly number[]): Tensor {
  const n = numel(shape);
  const arr = data instanceof Float32Array ? data : Float32Array.from(data as readonly number[]);
  if (arr.length !== n) throw new ShapeError(`data length for shape [${shape.join(', ')}]`, n, arr.length);
  return Object.freeze({ shape: Object.freeze(shape.slice()), data: arr });
}

/** A zero-filled tensor. */
export function zeros(shape: readonly number[]): Tensor {
  return tensor(new Float32Array(numel(shape)), shape);
}

/** True when `t` looks like a Tensor whose data length matches its shape. */
export function isTensor(t: unknown): t is Tensor {
  if (typeof t !== 'object' || t === null) return false;
  const x = t as { shape?: unknown; data?: unknown };
  if (!Array.isArray(x.shape) || !(x.data instanceof Float32Array)) return false;
  try {
    return numel(x.shape as number[]) === x.data.length;
  } catch {
    return false;
  }
}

/**
 * Check `t` against `expected`, where a number must match exactly and a string names a
 * free dimension (e.g. 'S'); returns the shape. Throws ShapeError saying both shapes.
 */
export function checkShape(name: string, t: unknown, expected: readonly (number | string)[]): readonly number[] {
  const want = `[${expected.join(', ')}]`;
  if (!isTensor(t)) throw new ShapeError(name, `a Tensor ${want} (shape + Float32Array data of matching length)`, t);
  const shape = t.shape;
  let ok = shape.length === expected.length;
  for (let i = 0; ok && i < expected.length; i++) {
    const e = expected[i]!;
    if (typeof e === 'number' && shape[i] !== e) ok = false;
  }
  if (!ok) throw new ShapeError(`${name} shape`, want, `[${shape.join(', ')}]`);
  return shape;
}

/** Throws ShapeError unless `b` has exactly the shape of `a`. */
export function checkSameShape(nameA: string, a: Tensor, nameB: string, b: Tensor): void {
  const sa = a.shape;
  const sb = isTensor(b) ? b.shape : null;
  if (!sb || sb.length !== sa.length || sb.some((d, i) => d !== sa[i])) {
    throw new ShapeError(`${nameB} shape (must equal ${nameA} shape)`, `[${sa.join(', ')}]`, sb ? `[${sb.join(', ')}]` : b);
  }
}

/**
 * Assemble per-batch-row head-major read-outs into one tensor.
 *   rows[b]: [nHeads, len, headDim]
 *   result:  [B, nHeads*repeat, len, headDim] (bhsd) or [B, len, nHeads*repeat, headDim] (bshd)
 * Output head j reads input head floor(j / repeat): each head appears `repeat` times in a
 * row, like HF's `repeat_kv` and MLLM's `h * repeat_times + r` copies.
 */
export function stackHeadMajor(rows: readonly Float32Array[], nHeads: number, len: number, headDim: number, layout: TensorLayout = 'bhsd', repeat = 1): Tensor {
  const B = rows.length;
  const H = nHeads * repeat;
  const D = headDim;
  const out = new Float32Array(B * H * len * D);
  for (let b = 0; b < B; b++) {
    const row = rows[b]!;
    if (row.length !== nHeads * len * D) throw new ShapeError(`row ${b} read-out length`, nHeads * len * D, row.length);
    for (let j = 0; j < H; j++) {
      const h = Math.floor(j / repeat);
      if (layout === 'bhsd') {
        // One head's positions are contiguous in both source and destination.
        out.set(row.subarray(h * len * D, (h + 1) * len * D), (b * H + j) * len * D);
        continue;
      }
      for (let t = 0; t < len; t++) out.set(row.subarray((h * len + t) * D, (h * len + t + 1) * D), ((b * len + t) * H + j) * D);
    }
  }
  return tensor(out, layout === 'bhsd' ? [B, H, len, D] : [B, len, H, D]);
}
