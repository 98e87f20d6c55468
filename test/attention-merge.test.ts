/**
 * mergeAttention: two partial attentions over disjoint key sets merge into the full attention
 * (exact LSE merge), whatever the split (by segments, interleaved, empty side), commutatively,
 * with -Infinity (fully masked) sides handled without NaN.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ShapeError } from '../src/core/errors.js';
import { attention, attentionBatch } from '../src/kernels/ref/attention.js';
import { mergeAttention } from '../src/kernels/ref/merge.js';
import { nmse } from '../src/kernels/tolerances.js';
import type { AttentionOptions, AttentionResult } from '../src/kernels/types.js';
import type { KVView } from '../src/kv/types.js';
import { buildKV, randomSegments, subView } from './helpers/kv-fixture.js';
import { mulberry32, normalArray, randInt, type Rng } from './helpers/rng.js';

/**
 * lse is stored as f32, so the merged and the directly computed lse can differ by rounding of
 * their own f32 inputs: allow a few f32 ulps (2^-22 relative), far below any real error.
 */
const LSE_REL = 2 ** -22;

function assertMergedEqualsFull(merged: AttentionResult, full: AttentionResult): void {
  assert.ok(merged.out.every(Number.isFinite), 'merged out has no NaN / Infinity');
  const e = nmse(merged.out, full.out);
  assert.ok(e <= 1e-12, `out NMSE ${e} > 1e-12`);
  for (let i = 0; i < full.lse.length; i++) {
    const a = merged.lse[i]!;
    const b = full.lse[i]!;
    if (b === -Infinity) {
      assert.equal(a, -Infinity, `lse[${i}]`);
      continue;
    }
    assert.ok(Math.abs(a - b) <= LSE_REL * Math.max(1, Math.abs(b)), `lse[${i}]: ${a} vs ${b}`);
  }
}

/**
 * Segment sizes for a random interleaved split: each key gets side 0 or 1 at random; runs of
 * equal sides become segments. Returns the sizes and each segment's side.
 */
function interleavedRuns(rng: Rng, nKeys: number): { sizes: number[]; side: number[] } {
  const sizes: number[] = [];
  const side: number[] = [];
  for (let k = 0; k < nKeys; k++) {
    const s = rng() < 0.5 ? 0 : 1;
    if (side.length > 0 && side[side.length - 1] === s) sizes[sizes.length - 1]!++;
    else {
      sizes.push(1);
      side.push(s);
    }
  }
  return { sizes, side };
}

function indicesWhere(side: number[], s: number): number[] {
  return side.flatMap((x, i) => (x === s ? [i] : []));
}

interface Split {
  full: KVView;
  a: KVView;
  b: KVView;
}

function check(split: Split, q: Float32Array, pos: number[], nHeads: number, headDim: number, opts: AttentionOptions = {}): void {
  const full = attention(q, pos, nHeads, split.full, opts);
  const pa = attention(q, pos, nHeads, split.a, opts);
  const pb = attention(q, pos, nHeads, split.b, opts);
  const ab = mergeAttention(pa, pb, headDim);
  assertMergedEqualsFull(ab, full);
  assert.deepEqual(mergeAttention(pb, pa, headDim), ab, 'merge is commutative (bit for bit)');
}

describe('mergeAttention of two disjoint key sets equals full attention', () => {
  it('split by segments (first half / second half of the blocks), GQA 2, causal new tokens', () => {
    const rng = mulberry32(1);
    const fx = buildKV({ nKeys: 90, nKvHeads: 2, headDim: 64, seed: 1, segments: randomSegments(rng, 90, 6) });
    const split = { full: fx.view, a: subView(fx.view, [0, 1, 2]), b: subView(fx.view, [3, 4, 5]) };
    const pos = [85, 86, 87, 88, 89, 40];
    check(split, normalArray(rng, pos.length * 4 * 64), pos, 4, 64);
  });

  it('interleaved random split, with causal and windowed masks (one side often fully masked)', () => {
    const rng = mulberry32(2);
    const { sizes, side } = interleavedRuns(rng, 70);
    const fx = buildKV({ nKeys: 70, nKvHeads: 1, headDim: 32, seed: 2, layout: 'bshd', segments: sizes });
    const split = { full: fx.view, a: subView(fx.view, indicesWhere(side, 0)), b: subView(fx.view, indicesWhere(side, 1)) };
    const pos = [65, 66, 67, 68, 69, 0, 3, 30];
    const q = normalArray(rng, pos.length * 7 * 32);
    for (const window of [Infinity, 1, 2, 9]) check(split, q, pos, 7, 32, { window });
  });

  it('three-way split merged in either association equals full attention (quantized K, f16 V)', () => {
    const rng = mulberry32(3);
    const fx = buildKV({ nKeys: 64, nKvHeads: 2, headDim: 32, kDtype: 'q8_0', vDtype: 'f16', seed: 3, segments: [20, 24, 20] });
    const pos = [60, 61, 62, 63];
    const q = normalArray(rng, pos.length * 2 * 32);
    const part = (i: number) => attention(q, pos, 2, subView(fx.view, [i]));
    const full = attention(q, pos, 2, fx.view);
    assertMergedEqualsFull(mergeAttention(mergeAttention(part(0), part(1), 32), part(2), 32), full);
    assertMergedEqualsFull(mergeAttention(part(0), mergeAttention(part(1), part(2), 32), 32), full);
  });

  it('batched results merge the same way (rows of different lengths, one empty)', () => {
    const rng = mulberry32(4);
    const lens = [0, 9, 33];
    const fxs = lens.map((n, b) => buildKV({ nKeys: n, nKvHeads: 2, headDim: 32, seed: 40 + b, segments: randomSegments(rng, n, 4) }));
    const positions = lens.flatMap((n) => [Math.max(n - 2, 0), Math.max(n - 1, 1)]);
    const q = normalArray(rng, lens.length * 2 * 4 * 32);
    const full = attentionBatch(q, positions, 4, fxs.map((f) => f.view));
    const a = attentionBatch(q, positions, 4, fxs.map((f) => subView(f.view, [0, 2])));
    const b = attentionBatch(q, positions, 4, fxs.map((f) => subView(f.view, [1, 3])));
    assertMergedEqualsFull(mergeAttention(a, b, 32), full);
  });
});

describe('mergeAttention: masked sides, numerics and shapes', () => {
  it('an empty side (no segments) is the identity, bit for bit, on either side', () => {
    const rng = mulberry32(5);
    const fx = buildKV({ nKeys: 25, nKvHeads: 2, headDim: 32, seed: 5 });
    const pos = [20, 21, 22, 23, 24];
    const q = normalArray(rng, pos.length * 4 * 32);
    const full = attention(q, pos, 4, fx.view);
    const none = attention(q, pos, 4, subView(fx.view, []));
    assert.ok(none.lse.every((x) => x === -Infinity));
    assert.deepEqual(mergeAttention(full, none, 32), full);
    assert.deepEqual(mergeAttention(none, full, 32), full);
  });

  it('an all-masked side is ignored even if its out holds garbage; both masked -> 0 / -Infinity', () => {
    const masked: AttentionResult = { out: new Float32Array([NaN, Infinity, 5, -7]), lse: new Float32Array([-Infinity, -Infinity]) };
    const live: AttentionResult = { out: new Float32Array([1, 2, 3, 4]), lse: new Float32Array([0.5, -Infinity]) };
    const r = mergeAttention(live, masked, 2);
    assert.deepEqual([...r.out], [1, 2, 0, 0]);
    assert.deepEqual([...r.lse], [0.5, -Infinity]);
    assert.deepEqual(mergeAttention(masked, live, 2), r);
    const both = mergeAttention(masked, masked, 2);
    assert.deepEqual([...both.out], [0, 0, 0, 0]);
    assert.deepEqual([...both.lse], [-Infinity, -Infinity]);
  });

  it('hand-computed weights: lse = log(1 + 3), out = 1/4 oa + 3/4 ob', () => {
    const a: AttentionResult = { out: new Float32Array([4, -8]), lse: new Float32Array([Math.log(1)]) };
    const b: AttentionResult = { out: new Float32Array([8, 4]), lse: new Float32Array([Math.log(3)]) };
    const r = mergeAttention(a, b, 2);
    assert.ok(Math.abs(r.lse[0]! - Math.log(4)) <= 1e-7);
    assert.ok(Math.abs(r.out[0]! - 7) <= 1e-6);
    assert.ok(Math.abs(r.out[1]! - 1) <= 1e-6);
  });

  it('large and very different lse values do not overflow or underflow to NaN', () => {
    const a: AttentionResult = { out: new Float32Array([1, 1]), lse: new Float32Array([1000, -1000]) };
    const b: AttentionResult = { out: new Float32Array([3, 3]), lse: new Float32Array([999, 80]) };
    const r = mergeAttention(a, b, 1);
    assert.ok(Math.abs(r.lse[0]! - (1000 + Math.log1p(Math.exp(-1)))) <= 1e-4);
    assert.ok(Math.abs(r.out[0]! - (1 + 2 * Math.exp(-1) / (1 + Math.exp(-1)))) <= 1e-6);
    assert.equal(r.lse[1], 80);
    assert.equal(r.out[1], 3);
  });

  it('random partial results: commutative and matching the closed form', () => {
    const rng = mulberry32(6);
    const rows = 50;
    const mk = (): AttentionResult => ({
      out: normalArray(rng, rows * 8),
      lse: Float32Array.from({ length: rows }, () => (randInt(rng, 0, 6) === 0 ? -Infinity : (rng() - 0.5) * 40)),
    });
    const a = mk();
    const b = mk();
    const r = mergeAttention(a, b, 8);
    assert.deepEqual(mergeAttention(b, a, 8), r);
    for (let i = 0; i < rows; i++) {
      const la = a.lse[i]!;
      const lb = b.lse[i]!;
      const want = Math.max(la, lb) === -Infinity ? -Infinity : Math.log(Math.exp(la) + Math.exp(lb));
      assert.ok(want === r.lse[i] || Math.abs(r.lse[i]! - want) <= 1e-5, `row ${i}`);
    }
    assert.ok(r.out.every(Number.isFinite));
  });

  it('mismatched shapes -> ShapeError', () => {
    const a: AttentionResult = { out: new Float32Array(8), lse: new Float32Array(2) };
    assert.throws(() => mergeAttention(a, { out: new Float32Array(8), lse: new Float32Array(3) }, 4), ShapeError);
    assert.throws(() => mergeAttention(a, { out: new Float32Array(12), lse: new Float32Array(2) }, 4), ShapeError);
    assert.throws(() => mergeAttention(a, a, 3), ShapeError);
  });
});
