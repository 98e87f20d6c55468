/**
 * Test fixture for sparse attention: one row of seqLen tokens written into a BlockStorage under a
 * shuffled block table (physical ids scattered through the pool), the row's dense view built here
 * independently of src/kv/sparse, and f32 buffers in the arena.
 */
import type { Arena } from '../../src/core/arena.js';
import type { DType } from '../../src/core/dtype.js';
import { BlockStorage } from '../../src/kv/paged/block-storage.js';
import type { KVSegment, KVView } from '../../src/kv/types.js';
import { mulberry32, normalArray, shuffle } from './rng.js';

export interface RowSpec {
  arena: Arena;
  nLayers?: number; // default 1
  nKvHeads: number;
  headDim: number;
  blockLen: number;
  kDtype?: DType; // default f32
  vDtype?: DType; // default kDtype
  seqLen: number;
  seed?: number;
  /** Spare blocks in the pool besides the row's (default 3). */
  spare?: number;
  /** Per layer [seqLen, nKvHeads, headDim]; default N(0, 1). */
  k?: Float32Array[];
  v?: Float32Array[];
}

export interface Row {
  storage: BlockStorage;
  /** [ceil(seqLen / blockLen)] logical -> physical. */
  table: Int32Array;
  seqLen: number;
  k: Float32Array[];
  v: Float32Array[];
}

export function buildRow(s: RowSpec): Row {
  const nLayers = s.nLayers ?? 1;
  const kDtype = s.kDtype ?? 'f32';
  const rng = mulberry32(s.seed ?? 1);
  const nRowBlocks = Math.ceil(s.seqLen / s.blockLen);
  const nBlocks = nRowBlocks + 1 + (s.spare ?? 3);
  const storage = new BlockStorage({
    arena: s.arena, nLayers, nKvHeads: s.nKvHeads, headDim: s.headDim, kDtype, vDtype: s.vDtype ?? kDtype, nBlocks, blockLen: s.blockLen,
  });
  const ids = shuffle(rng, Array.from({ length: nBlocks - 1 }, (_, i) => i + 1));
  const table = Int32Array.from(ids.slice(0, nRowBlocks));
  const tf = s.nKvHeads * s.headDim;
  const k = s.k ?? Array.from({ length: nLayers }, () => normalArray(rng, s.seqLen * tf));
  const v = s.v ?? Array.from({ length: nLayers }, () => normalArray(rng, s.seqLen * tf));
  for (let l = 0; l < nLayers; l++) {
    for (let b = 0; b < nRowBlocks; b++) {
      const n = Math.min(s.blockLen, s.seqLen - b * s.blockLen);
      storage.writeRows(l, table[b]!, 0, n, k[l]!, v[l]!, b * s.blockLen);
    }
  }
  return { storage, table, seqLen: s.seqLen, k, v };
}

/** The row's dense view: one segment per block, in logical order, all kv heads. */
export function denseView(st: BlockStorage, layer: number, table: Int32Array, seqLen: number): KVView {
  const segments: KVSegment[] = [];
  for (let b = 0; b * st.blockLen < seqLen; b++) {
    segments.push({
      kOffsetBytes: st.kOffset(layer, table[b]!, 0), vOffsetBytes: st.vOffset(layer, table[b]!, 0),
      nTokens: Math.min(st.blockLen, seqLen - b * st.blockLen), pos0: b * st.blockLen,
    });
  }
  return {
    bytes: st.arena.bytes, kDtype: st.kDtype, vDtype: st.vDtype, nKvHeads: st.nKvHeads, headDim: st.headDim,
    kTokenStrideBytes: st.kTokenStrideBytes, kHeadStrideBytes: st.kHeadStrideBytes,
    vTokenStrideBytes: st.vTokenStrideBytes, vHeadStrideBytes: st.vHeadStrideBytes, segments, nTokens: seqLen,
  };
}

/** A new f32 arena buffer holding `data`; returns its byte offset. */
export function putF32(arena: Arena, data: Float32Array): number {
  const off = arena.alloc(Math.max(4, data.length * 4));
  arena.f32.set(data, off >> 2);
  return off;
}

/** A new zeroed f32 arena buffer of n values; returns its byte offset. */
export function allocF32(arena: Arena, n: number): number {
  return arena.alloc(Math.max(4, n * 4));
}

/** A copy of n f32 values at a byte offset. */
export function readF32(arena: Arena, off: number, n: number): Float32Array {
  return arena.f32.slice(off >> 2, (off >> 2) + n);
}

/** Positions [seqLen - n, seqLen): the last n tokens of the row as queries. */
export function lastPositions(seqLen: number, n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => seqLen - n + i);
}
