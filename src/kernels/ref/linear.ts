/**
 * Reference linear layers: the oracle the WASM matvec / matmul kernels are checked against.
 *
 *   W is stored row-major [nOut, nIn] in its dtype (each row rowSizeBytes(wDtype, nIn) bytes,
 *   rows back to back: the layout of a safetensors / GGUF weight):
 *
 *     matvec:  y[o]    = sum_i W[o, i] * x[i]                 x [nIn]          -> y [nOut]
 *     matmul:  Y[t, o] = sum_i W[o, i] * X[t, i]   (Y = X W^T) X [nTokens, nIn] -> Y [nTokens, nOut]
 *
 * NOTE(1): All arithmetic is float64 on the f32 inputs; only y is rounded to f32. The input is
 *   NOT quantized (the WASM kernels quantize x to int8 for q8_0 / q4_0 weights as ggml does):
 *   the parity table (tolerances.ts) covers that rounding.
 * NOTE(2): Weights are decoded ONE row at a time into an [nIn] float64 scratch (decodeRow); the
 *   matrix is never expanded as a whole. matmul decodes each row once and uses it for every
 *   token, which is also the access order of the fast kernels.
 */
import { checkRowLength, decodeRow, parseDType, rowSizeBytes, type DType } from '../../core/dtype.js';
import { ShapeError, checkInt } from '../../core/errors.js';

/** Validates a linear layer's shapes and bytes; returns the bytes of one weight row. */
export function checkLinear(w: { length: number }, wDtype: DType, nOut: number, nIn: number, what: string): number {
  parseDType(wDtype, `${what} weight dtype`);
  checkInt(`${what} nOut`, nOut, 1);
  checkInt(`${what} nIn`, nIn, 1);
  checkRowLength(wDtype, nIn, `${what} nIn`);
  const rowBytes = rowSizeBytes(wDtype, nIn);
  const need = nOut * rowBytes;
  if (w.length !== need) {
    throw new ShapeError(`${what} weight bytes ([nOut, nIn] = [${nOut}, ${nIn}] of ${wDtype})`, need, w.length);
  }
  return rowBytes;
}

/** y = W x. w: the stored weight bytes [nOut, rowBytes]; x: [nIn]. Returns y [nOut]. */
export function matvec(w: Uint8Array, wDtype: DType, nOut: number, nIn: number, x: Float32Array): Float32Array {
  return matmul(w, wDtype, nOut, nIn, x, 1, 'matvec');
}

/**
 * Y = X W^T. w: the stored weight bytes [nOut, rowBytes]; x: [nTokens, nIn].
 * Returns Y [nTokens, nOut].
 */
export function matmul(
  w: Uint8Array,
  wDtype: DType,
  nOut: number,
  nIn: number,
  x: Float32Array,
  nTokens: number,
  what = 'matmul',
): Float32Array {
  const rowBytes = checkLinear(w, wDtype, nOut, nIn, what);
  checkInt(`${what} nTokens`, nTokens, 1);
  if (x.length !== nTokens * nIn) {
    throw new ShapeError(`${what} x length ([nTokens, nIn] = [${nTokens}, ${nIn}])`, nTokens * nIn, x.length);
  }
  const row = new Float64Array(nIn); // [nIn] one decoded weight row
  const y = new Float32Array(nTokens * nOut); // [nTokens, nOut]
  for (let o = 0; o < nOut; o++) {
    decodeRow(wDtype, w, o * rowBytes, nIn, row, 0);
    for (let t = 0; t < nTokens; t++) {
      const xOff = t * nIn;
      let acc = 0;
      for (let i = 0; i < nIn; i++) acc += row[i]! * x[xOff + i]!;
      y[t * nOut + o] = acc;
    }
  }
  return y;
}
