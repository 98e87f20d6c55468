/**
 * Reference embedding lookup, the oracle of the wasm kernels embedding_<dtype>:
 *
 *   out[t] = decodeRow(table row ids[t])        table: [vocab, rowSizeBytes(dtype, dim)] bytes
 *                                                out:   [nTokens, dim] f32
 *
 * Decoding is exact (core/dtype.ts decodeRow), so the wasm kernels must match bit for bit.
 */
import { decodeRow, rowSizeBytes, type DType } from '../../core/dtype.js';
import { ShapeError, checkIndex, checkInt } from '../../core/errors.js';

/** Rows of a table of `tableBytes` bytes with rows of `dim` values of `dtype` (ShapeError unless whole). */
export function vocabOf(dtype: DType, dim: number, tableBytes: number): number {
  checkInt('embedding dim', dim, 1);
  const rowBytes = rowSizeBytes(dtype, dim);
  if (tableBytes % rowBytes !== 0 || tableBytes === 0) {
    throw new ShapeError(`embedding table bytes (a multiple of ${rowBytes}, the ${dtype} row of ${dim})`, `a positive multiple of ${rowBytes}`, tableBytes);
  }
  return tableBytes / rowBytes;
}

/** Throws OutOfRangeError unless every id is an integer in [0, vocab). */
export function checkIds(ids: ArrayLike<number>, vocab: number): void {
  for (let t = 0; t < ids.length; t++) checkIndex(`embedding ids[${t}]`, ids[t], vocab);
}

/** The rows of `ids` decoded to f32; returns [ids.length, dim]. */
export function embedding(table: Uint8Array, dtype: DType, dim: number, ids: ArrayLike<number>): Float32Array {
  const vocab = vocabOf(dtype, dim, table.length);
  checkIds(ids, vocab);
  const rowBytes = rowSizeBytes(dtype, dim);
  const out = new Float32Array(ids.length * dim); // [nTokens, dim]
  for (let t = 0; t < ids.length; t++) decodeRow(dtype, table, ids[t]! * rowBytes, dim, out, t * dim);
  return out;
}
