/**
 * The one attention contract (DESIGN decision 3): every cache describes, for one
 * (layer, sequence), where its K/V rows are, and every attention kernel reads that.
 *
 *   row address of (segment s, token t, kv head h):
 *     K: s.kOffsetBytes + t * kTokenStrideBytes + h * kHeadStrideBytes   (rowSizeBytes(kDtype, headDim) bytes)
 *     V: s.vOffsetBytes + t * vTokenStrideBytes + h * vHeadStrideBytes
 *
 * A dense cache is one segment per sequence; a paged cache is one segment per block.
 */
import type { DType } from '../core/dtype.js';

/** A run of consecutive positions stored with uniform strides. */
export interface KVSegment {
  /** Byte offset of (token 0, head 0) of K in `KVView.bytes`. */
  readonly kOffsetBytes: number;
  /** Byte offset of (token 0, head 0) of V in `KVView.bytes`. */
  readonly vOffsetBytes: number;
  /** Valid tokens in this segment. */
  readonly nTokens: number;
  /** Position of token 0; token t is at position pos0 + t (keys are stored after RoPE). */
  readonly pos0: number;
}

export interface KVView {
  /** The bytes the offsets point into: the arena's byte view, valid until the arena next grows. */
  readonly bytes: Uint8Array;
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kTokenStrideBytes: number;
  readonly kHeadStrideBytes: number;
  readonly vTokenStrideBytes: number;
  readonly vHeadStrideBytes: number;
  /** In position order; their nTokens sum to `nTokens`. */
  readonly segments: readonly KVSegment[];
  /** Total valid tokens. */
  readonly nTokens: number;
}

/** `bhsd` = [batch, nKvHeads, seq, headDim] (heads outer); `bshd` = [batch, seq, nKvHeads, headDim]. */
export type KVLayout = 'bhsd' | 'bshd';

/** What every dense multi-layer cache (static, dynamic, sub-view) offers. */
export interface LayeredKVCache {
  readonly nLayers: number;
  readonly batchSize: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly layout: KVLayout;
  readonly maxSeqLen: number;
  seqLen(layer?: number, row?: number): number;
  append(layer: number, k: Float32Array, v: Float32Array): void;
  appendRow(layer: number, row: number, k: Float32Array, v: Float32Array): void;
  keys(layer: number, row?: number): Float32Array;
  values(layer: number, row?: number): Float32Array;
  view(layer: number, row?: number): KVView;
  crop(len: number): void;
  reset(): void;
  dispose(): void;
}
