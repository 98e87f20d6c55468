/**
 * Test fixture: K/V data in f32 (the source of truth) written into an Arena in any dtype and
 * layout, described by a KVView; plus the naive float64 attention over the f32 source.
 *
 * NOTE(1): Each segment gets its own K and V allocation, allocated in shuffled order with
 *   random gaps and a random (unaligned) start byte, like blocks of a paged pool: the view's
 *   segments are in position order but their bytes are anywhere.
 * NOTE(2): Every allocation is filled with 0xFF bytes before the valid rows are written. 0xFF..
 *   decodes to NaN in every dtype (f32/f16/bf16 NaN, and q8_0/q4_0 blocks with a NaN f16 scale),
 *   so a kernel that reads a row outside the valid ones produces NaN and fails its test.
 * NOTE(3): `bhsd` segments have a fixed capacity (the largest segment + 2 spare rows) because the
 *   head stride is one per view: headStride = capacity * rowBytes, tokenStride = rowBytes.
 *   `bshd`: tokenStride = nKvHeads * rowBytes, headStride = rowBytes.
 */
import { Arena } from '../../src/core/arena.js';
import { encodeRow, rowSizeBytes, type DType } from '../../src/core/dtype.js';
import type { KVLayout, KVSegment, KVView } from '../../src/kv/types.js';
import { mulberry32, normalArray, randInt, shuffle, type Rng } from './rng.js';

export interface KVFixtureSpec {
  nKeys: number;
  nKvHeads: number;
  headDim: number;
  kDtype?: DType; // default f32
  vDtype?: DType; // default f32
  layout?: KVLayout; // default 'bhsd'
  /** Tokens per segment (sum = nKeys; zeros allowed). Default: one segment. */
  segments?: readonly number[];
  /** Position of each segment's token 0. Default: contiguous from `pos0`. */
  segmentPos0?: readonly number[];
  /** Position of key 0 when segmentPos0 is not given. Default 0. */
  pos0?: number;
  /** Seed for the data, gaps and allocation order. Default 1. */
  seed?: number;
  /** [nKeys, nKvHeads, headDim]; default N(0, 1). */
  k?: Float32Array;
  /** [nKeys, nKvHeads, headDim]; default N(0, 1). */
  v?: Float32Array;
}

export interface KVFixture {
  readonly arena: Arena;
  readonly view: KVView;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly k: Float32Array; // [nKeys, nKvHeads, headDim] f32 source
  readonly v: Float32Array; // [nKeys, nKvHeads, headDim] f32 source
  readonly keyPos: Float64Array; // [nKeys] position of each key
}

export function newTestArena(): Arena {
  return new Arena({ maximumBytes: 64 << 20, initialBytes: 4 << 20 });
}

/** `nSegments` sizes summing to nKeys, split at random cut points (some may be 0). */
export function randomSegments(rng: Rng, nKeys: number, nSegments: number): number[] {
  const cuts = [0, nKeys];
  for (let i = 1; i < nSegments; i++) cuts.push(randInt(rng, 0, nKeys + 1));
  cuts.sort((x, y) => x - y);
  const sizes: number[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) sizes.push(cuts[i + 1]! - cuts[i]!);
  return sizes;
}

interface Placement {
  kBase: number; // allocation start
  vBase: number;
  kOff: number; // row 0 of head 0
  vOff: number;
}

export function buildKV(spec: KVFixtureSpec): KVFixture {
  const { nKeys, nKvHeads, headDim } = spec;
  const kDtype = spec.kDtype ?? 'f32';
  const vDtype = spec.vDtype ?? 'f32';
  const layout = spec.layout ?? 'bhsd';
  const rng = mulberry32(spec.seed ?? 1);
  const sizes = spec.segments ?? [nKeys];
  if (sizes.reduce((x, y) => x + y, 0) !== nKeys) throw new Error('fixture: segment sizes must sum to nKeys');
  const k = spec.k ?? normalArray(rng, nKeys * nKvHeads * headDim);
  const v = spec.v ?? normalArray(rng, nKeys * nKvHeads * headDim);
  const kRow = rowSizeBytes(kDtype, headDim);
  const vRow = rowSizeBytes(vDtype, headDim);
  const capacity = Math.max(1, ...sizes) + 2;
  const kAllocBytes = capacity * nKvHeads * kRow + 64;
  const vAllocBytes = capacity * nKvHeads * vRow + 64;
  const arena = newTestArena();

  // NOTE(1): shuffled allocation order, random gaps, unaligned starts.
  const placements: Placement[] = new Array(sizes.length);
  for (const s of shuffle(rng, sizes.map((_, i) => i))) {
    arena.alloc(randInt(rng, 1, 300));
    const kBase = arena.alloc(kAllocBytes);
    arena.alloc(randInt(rng, 1, 300));
    const vBase = arena.alloc(vAllocBytes);
    placements[s] = { kBase, vBase, kOff: kBase + randInt(rng, 0, 40), vOff: vBase + randInt(rng, 0, 40) };
  }

  const bytes = arena.bytes; // taken after the last allocation: no growth from here on
  const kTS = layout === 'bhsd' ? kRow : nKvHeads * kRow;
  const kHS = layout === 'bhsd' ? capacity * kRow : kRow;
  const vTS = layout === 'bhsd' ? vRow : nKvHeads * vRow;
  const vHS = layout === 'bhsd' ? capacity * vRow : vRow;
  const keyPos = new Float64Array(nKeys);
  const segments: KVSegment[] = [];
  let key = 0;
  let nextPos = spec.pos0 ?? 0;
  sizes.forEach((n, s) => {
    const p = placements[s]!;
    bytes.fill(0xff, p.kBase, p.kBase + kAllocBytes); // NOTE(2): poison
    bytes.fill(0xff, p.vBase, p.vBase + vAllocBytes);
    const pos0 = spec.segmentPos0?.[s] ?? nextPos;
    for (let t = 0; t < n; t++, key++) {
      keyPos[key] = pos0 + t;
      for (let h = 0; h < nKvHeads; h++) {
        const src = (key * nKvHeads + h) * headDim;
        encodeRow(kDtype, k, src, headDim, bytes, p.kOff + t * kTS + h * kHS);
        encodeRow(vDtype, v, src, headDim, bytes, p.vOff + t * vTS + h * vHS);
      }
    }
    segments.push({ kOffsetBytes: p.kOff, vOffsetBytes: p.vOff, nTokens: n, pos0 });
    nextPos = pos0 + n;
  });
  const view: KVView = {
    bytes, kDtype, vDtype, nKvHeads, headDim,
    kTokenStrideBytes: kTS, kHeadStrideBytes: kHS, vTokenStrideBytes: vTS, vHeadStrideBytes: vHS,
    segments, nTokens: nKeys,
  };
  return { arena, view, nKvHeads, headDim, k, v, keyPos };
}

/** The same storage restricted to some of its segments (a disjoint key subset). */
export function subView(view: KVView, segmentIndices: readonly number[]): KVView {
  const segments = segmentIndices.map((i) => view.segments[i]!);
  return { ...view, segments, nTokens: segments.reduce((n, s) => n + s.nTokens, 0) };
}

export interface NaiveResult {
  out: Float64Array; // [nTokens, nHeads, headDim]
  lse: Float64Array; // [nTokens, nHeads]
}

/**
 * softmax(q K^T * scale) V in float64 straight from the fixture's f32 source arrays (never
 * from the cache bytes), with the kernels' mask: visible iff qPos - window < kPos <= qPos.
 */
export function naiveAttention(
  q: Float32Array, // [nTokens, nHeads, headDim]
  qPos: ArrayLike<number>, // [nTokens]
  nHeads: number,
  fx: Pick<KVFixture, 'k' | 'v' | 'keyPos' | 'nKvHeads' | 'headDim'>,
  opts: { scale?: number; window?: number } = {},
): NaiveResult {
  const { headDim, nKvHeads, keyPos } = fx;
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  const window = opts.window ?? Infinity;
  const nTokens = qPos.length;
  const nKeys = keyPos.length;
  const out = new Float64Array(nTokens * nHeads * headDim);
  const lse = new Float64Array(nTokens * nHeads).fill(-Infinity);
  const s = new Float64Array(nKeys);
  for (let i = 0; i < nTokens; i++) {
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / (nHeads / nKvHeads));
      const qo = (i * nHeads + h) * headDim;
      let m = -Infinity;
      for (let j = 0; j < nKeys; j++) {
        const ok = keyPos[j]! <= qPos[i]! && qPos[i]! - keyPos[j]! < window;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[qo + d]! * fx.k[(j * nKvHeads + g) * headDim + d]!;
        s[j] = ok ? dot * scale : -Infinity;
        m = Math.max(m, s[j]!);
      }
      if (m === -Infinity) continue;
      let sum = 0;
      for (let j = 0; j < nKeys; j++) {
        const p = Math.exp(s[j]! - m);
        sum += p;
        for (let d = 0; d < headDim; d++) out[qo + d] += p * fx.v[(j * nKvHeads + g) * headDim + d]!;
      }
      for (let d = 0; d < headDim; d++) out[qo + d] /= sum;
      lse[i * nHeads + h] = m + Math.log(sum);
    }
  }
  return { out, lse };
}
