/**
 * Byte strides of a dense K or V buffer of one layer, for both layouts.
 *
 *   bhsd: [batch, nKvHeads, capacity, headDim]   token stride = R, head stride = C*R, batch stride = H*C*R
 *   bshd: [batch, capacity, nKvHeads, headDim]   token stride = H*R, head stride = R, batch stride = C*H*R
 *
 * with R = rowSizeBytes(dtype, headDim), C = capacity (positions), H = nKvHeads.
 */
import { rowSizeBytes, type DType } from '../core/dtype.js';
import type { KVLayout } from './types.js';

export interface DenseStrides {
  readonly rowBytes: number;
  readonly tokenStrideBytes: number;
  readonly headStrideBytes: number;
  readonly batchStrideBytes: number;
  /** Bytes of the whole buffer: batch * nKvHeads * capacity rows. */
  readonly sizeBytes: number;
}

export function denseStrides(layout: KVLayout, dtype: DType, batchSize: number, nKvHeads: number, capacity: number, headDim: number): DenseStrides {
  const rowBytes = rowSizeBytes(dtype, headDim);
  const batchStrideBytes = nKvHeads * capacity * rowBytes;
  const sizeBytes = batchSize * batchStrideBytes;
  if (layout === 'bhsd') {
    return { rowBytes, tokenStrideBytes: rowBytes, headStrideBytes: capacity * rowBytes, batchStrideBytes, sizeBytes };
  }
  return { rowBytes, tokenStrideBytes: nKvHeads * rowBytes, headStrideBytes: rowBytes, batchStrideBytes, sizeBytes };
}
