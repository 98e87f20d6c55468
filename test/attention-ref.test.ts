/**
 * The reference attention kernel against a float64 naive softmax(QK^T * scale)V computed from
 * the f32 source arrays (never from the cache bytes), over dtypes, layouts, GQA ratios,
 * segments, masks and batches; plus its input validation.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeArray, encodeArray, type DType } from '../src/core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import type { KVLayout } from '../src/kv/types.js';
import { attention, attentionBatch } from '../src/kernels/ref/attention.js';
import { lseToleranceFor, nmse, thresholdFor } from '../src/kernels/tolerances.js';
import type { AttentionOptions, AttentionResult } from '../src/kernels/types.js';
import { buildKV, naiveAttention, randomSegments, type KVFixture, type KVFixtureSpec, type NaiveResult } from './helpers/kv-fixture.js';
import { mulberry32, normalArray, randInt } from './helpers/rng.js';

const LAYOUTS: KVLayout[] = ['bhsd', 'bshd'];

/** The last `n` positions of a cache of `len` keys (new tokens already written), plus extras. */
function newTokenPositions(len: number, n: number, extra: number[] = []): number[] {
  const pos: number[] = [];
  for (let p = Math.max(0, len - n); p < len; p++) pos.push(p);
  return pos.concat(extra);
}

function checkLse(r: AttentionResult, n: NaiveResult, tol: number): void {
  for (let i = 0; i < n.lse.length; i++) {
    if (n.lse[i] === -Infinity) {
      assert.equal(r.lse[i], -Infinity, `lse[${i}] of a fully masked row`);
      continue;
    }
    const err = Math.abs(r.lse[i]! - n.lse[i]!);
    assert.ok(err <= tol, `lse[${i}]: |${r.lse[i]} - ${n.lse[i]}| = ${err} > ${tol}`);
  }
}

/** Run ref and naive on one fixture; assert out NMSE and lse against the table. */
function compare(fx: KVFixture, q: Float32Array, pos: number[], nHeads: number, opts: AttentionOptions = {}, outTol?: number): number {
  const r = attention(q, pos, nHeads, fx.view, opts);
  const n = naiveAttention(q, pos, nHeads, fx, opts);
  const e = nmse(r.out, n.out);
  const tol = outTol ?? thresholdFor(fx.view.kDtype, fx.view.vDtype);
  assert.ok(e <= tol, `${fx.view.kDtype}/${fx.view.vDtype} NMSE ${e} > ${tol}`);
  checkLse(r, n, lseToleranceFor(fx.view.kDtype));
  return e;
}

interface Case {
  kDtype: DType;
  vDtype: DType;
  headDim: number;
  group: number;
  layout: KVLayout;
  nKeys?: number;
}

function runCase(c: Case, seed: number): void {
  const rng = mulberry32(seed);
  const nKvHeads = 2;
  const nHeads = nKvHeads * c.group;
  const nKeys = c.nKeys ?? 45;
  const fx = buildKV({ ...c, nKeys, nKvHeads, seed, segments: randomSegments(rng, nKeys, 3) });
  const pos = newTokenPositions(nKeys, 5, [randInt(rng, 0, nKeys + 8)]);
  compare(fx, normalArray(rng, pos.length * nHeads * c.headDim), pos, nHeads);
}

describe('ref attention, f32 KV: NMSE <= 1e-10 against float64 naive', () => {
  let seed = 10;
  for (const headDim of [32, 64, 80]) {
    for (const group of [1, 2, 7]) {
      for (const layout of LAYOUTS) {
        const s = seed++;
        it(`headDim ${headDim}, GQA ${group}, ${layout}`, () => runCase({ kDtype: 'f32', vDtype: 'f32', headDim, group, layout }, s));
      }
    }
  }
});

describe('ref attention, quantized / half KV: per-dtype thresholds from the one table', () => {
  const pairs: [DType, DType][] = [
    ['f16', 'f16'], ['bf16', 'bf16'], ['q8_0', 'q8_0'], ['q4_0', 'q4_0'],
    ['q8_0', 'f16'], ['f16', 'q4_0'], ['bf16', 'q8_0'], ['f32', 'q4_0'],
  ];
  let seed = 100;
  for (const [kDtype, vDtype] of pairs) {
    const quantized = kDtype.startsWith('q') || vDtype.startsWith('q');
    for (const headDim of quantized ? [32, 64] : [32, 64, 80]) {
      for (const layout of LAYOUTS) {
        const s = seed++;
        const group = [1, 2, 7][s % 3]!;
        it(`K ${kDtype} / V ${vDtype}, headDim ${headDim}, GQA ${group}, ${layout}`, () => runCase({ kDtype, vDtype, headDim, group, layout, nKeys: 120 }, s));
      }
    }
  }

  it('matches naive on the DEQUANTIZED K/V at the f32 bound, for every dtype (decoding is exact)', () => {
    const dtypes: DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
    for (const kDtype of dtypes) {
      for (const vDtype of dtypes) {
        const rng = mulberry32(7);
        const fx = buildKV({ nKeys: 40, nKvHeads: 2, headDim: 64, kDtype, vDtype, layout: 'bshd', seed: 7, segments: [13, 0, 27] });
        const deq = (dt: DType, a: Float32Array) => decodeArray(dt, encodeArray(dt, a), a.length);
        const fxDeq = { ...fx, k: deq(kDtype, fx.k), v: deq(vDtype, fx.v) };
        const pos = newTokenPositions(40, 5);
        const q = normalArray(rng, pos.length * 4 * 64);
        const r = attention(q, pos, 4, fx.view);
        const n = naiveAttention(q, pos, 4, fxDeq);
        assert.ok(nmse(r.out, n.out) <= 1e-10, `${kDtype}/${vDtype}: ${nmse(r.out, n.out)}`);
        checkLse(r, n, lseToleranceFor('f32'));
      }
    }
  });
});

describe('ref attention: masks and positions', () => {
  it('causal among new tokens: query at p equals attention over keys [0, p] only (bit-identical)', () => {
    const rng = mulberry32(3);
    const nKeys = 30;
    const fx = buildKV({ nKeys, nKvHeads: 2, headDim: 32, seed: 3 });
    const pos = newTokenPositions(nKeys, 5);
    const q = normalArray(rng, pos.length * 4 * 32);
    const all = attention(q, pos, 4, fx.view);
    pos.forEach((p, i) => {
      const rows = (p + 1) * 2 * 32;
      const prefix = buildKV({ nKeys: p + 1, nKvHeads: 2, headDim: 32, k: fx.k.slice(0, rows), v: fx.v.slice(0, rows) });
      const one = attention(q.subarray(i * 4 * 32, (i + 1) * 4 * 32), [p], 4, prefix.view);
      assert.deepEqual(all.out.subarray(i * 4 * 32, (i + 1) * 4 * 32), one.out);
      assert.deepEqual(all.lse.subarray(i * 4, (i + 1) * 4), one.lse);
    });
    compare(fx, q, pos, 4);
  });

  it('arbitrary query positions and position gaps between segments; fully masked rows are 0 / -Infinity', () => {
    const rng = mulberry32(4);
    const fx = buildKV({ nKeys: 24, nKvHeads: 1, headDim: 64, seed: 4, segments: [5, 6, 3, 10], segmentPos0: [3, 20, 26, 50] });
    const pos = [0, 2, 3, 15, 60, 51, 25, 1000, 7, 21];
    const q = normalArray(rng, pos.length * 2 * 64);
    compare(fx, q, pos, 2);
    const r = attention(q, pos, 2, fx.view);
    for (const i of [0, 1]) {
      assert.ok(r.out.subarray(i * 2 * 64, (i + 1) * 2 * 64).every((x) => x === 0));
      assert.deepEqual([...r.lse.subarray(i * 2, i * 2 + 2)], [-Infinity, -Infinity]);
    }
  });

  it('sliding window: windows 1, 4, 17 against naive; window 1 sees exactly the key at qPos', () => {
    const rng = mulberry32(5);
    const fx = buildKV({ nKeys: 50, nKvHeads: 2, headDim: 32, seed: 5, layout: 'bshd', segments: randomSegments(rng, 50, 4) });
    const pos = newTokenPositions(50, 5, [0, 9, 33, 70]);
    const q = normalArray(rng, pos.length * 4 * 32);
    for (const window of [1, 4, 17]) compare(fx, q, pos, 4, { window });
    const q33 = q.subarray(0, 4 * 32);
    const r = attention(q33, [33], 4, fx.view, { window: 1 });
    for (let h = 0; h < 4; h++) {
      const kv = (33 * 2 + (h >> 1)) * 32; // key 33 is at position 33; kv head h >> 1 (GQA 2)
      assert.deepEqual(r.out.subarray(h * 32, (h + 1) * 32), fx.v.subarray(kv, kv + 32));
      let dot = 0;
      for (let d = 0; d < 32; d++) dot += q33[h * 32 + d]! * fx.k[kv + d]!;
      assert.ok(Math.abs(r.lse[h]! - dot / Math.sqrt(32)) <= 1e-6);
    }
    // A window longer than every query-key distance is no window at all.
    assert.deepEqual(attention(q, pos, 4, fx.view, { window: 1000 }), attention(q, pos, 4, fx.view));
  });

  it('custom scale', () => {
    const rng = mulberry32(6);
    const fx = buildKV({ nKeys: 20, nKvHeads: 2, headDim: 32, seed: 6 });
    const q = normalArray(rng, 3 * 2 * 32);
    compare(fx, q, [19, 5, 12], 2, { scale: 0.37 });
    compare(fx, q, [19, 5, 12], 2, { scale: 0 });
  });
});

describe('ref attention: layouts, segments, batches', () => {
  it('bhsd and bshd give bit-identical results (f32, f16, q8_0)', () => {
    for (const dt of ['f32', 'f16', 'q8_0'] as DType[]) {
      const spec: KVFixtureSpec = { nKeys: 33, nKvHeads: 3, headDim: 64, kDtype: dt, vDtype: dt, seed: 8 };
      const a = buildKV({ ...spec, layout: 'bhsd' });
      const b = buildKV({ ...spec, layout: 'bshd', segments: [10, 23] });
      const q = normalArray(mulberry32(8), 4 * 6 * 64);
      const pos = newTokenPositions(33, 4);
      assert.deepEqual(attention(q, pos, 6, a.view), attention(q, pos, 6, b.view));
    }
  });

  it('one segment and many scattered segments (some empty) give bit-identical results', () => {
    const rng = mulberry32(9);
    const spec: KVFixtureSpec = { nKeys: 64, nKvHeads: 2, headDim: 32, kDtype: 'q4_0', vDtype: 'bf16', seed: 9 };
    const one = buildKV(spec);
    const many = buildKV({ ...spec, segments: randomSegments(rng, 64, 9) });
    assert.ok(many.view.segments.length === 9);
    const pos = newTokenPositions(64, 5, [17]);
    const q = normalArray(rng, pos.length * 14 * 32);
    assert.deepEqual(attention(q, pos, 14, one.view), attention(q, pos, 14, many.view));
  });

  it('attentionBatch: rows of lengths 0, 1, 17, 40 (mixed dtypes) equal per-row attention and naive', () => {
    const rng = mulberry32(11);
    const lens = [0, 1, 17, 40];
    const dts: DType[] = ['f32', 'f16', 'q8_0', 'f32'];
    const fxs = lens.map((n, b) => buildKV({ nKeys: n, nKvHeads: 2, headDim: 32, kDtype: dts[b], vDtype: dts[b], seed: 20 + b, layout: LAYOUTS[b % 2], segments: randomSegments(rng, n, 2) }));
    const nTokens = 3;
    const positions = lens.flatMap((n) => newTokenPositions(Math.max(n, nTokens), nTokens));
    const rowElems = nTokens * 4 * 32;
    const q = normalArray(rng, lens.length * rowElems);
    const r = attentionBatch(q, positions, 4, fxs.map((f) => f.view));
    assert.equal(r.out.length, lens.length * rowElems);
    assert.equal(r.lse.length, lens.length * nTokens * 4);
    fxs.forEach((fx, b) => {
      const qb = q.subarray(b * rowElems, (b + 1) * rowElems);
      const pb = positions.slice(b * nTokens, (b + 1) * nTokens);
      const single = attention(qb, pb, 4, fx.view);
      assert.deepEqual(r.out.subarray(b * rowElems, (b + 1) * rowElems), single.out);
      assert.deepEqual(r.lse.subarray(b * nTokens * 4, (b + 1) * nTokens * 4), single.lse);
      compare(fx, qb, pb, 4);
    });
    assert.ok(r.lse.subarray(0, nTokens * 4).every((x) => x === -Infinity));
    assert.ok(r.out.subarray(0, rowElems).every((x) => x === 0));
  });
});

describe('ref attention: edge cases and errors', () => {
  const fx = buildKV({ nKeys: 8, nKvHeads: 2, headDim: 32, seed: 12 });
  const q1 = normalArray(mulberry32(12), 4 * 32); // one token, 4 heads

  it('zero query tokens and an empty cache', () => {
    const r = attention(new Float32Array(0), [], 4, fx.view);
    assert.equal(r.out.length, 0);
    assert.equal(r.lse.length, 0);
    const empty = attention(q1, [5], 4, { ...fx.view, segments: [], nTokens: 0 });
    assert.ok(empty.out.every((x) => x === 0));
    assert.ok(empty.lse.every((x) => x === -Infinity));
  });

  it('wrong q length -> ShapeError with expected and given', () => {
    assert.throws(() => attention(q1.subarray(1), [5], 4, fx.view), (e: unknown) => {
      assert.ok(e instanceof ShapeError);
      assert.equal(e.expected, 4 * 32);
      assert.equal(e.given, 4 * 32 - 1);
      return true;
    });
    assert.throws(() => attention(q1, [5, 6], 4, fx.view), ShapeError);
  });

  it('nHeads not a multiple of nKvHeads -> ConfigError; bad nHeads -> ConfigError', () => {
    assert.throws(() => attention(normalArray(mulberry32(1), 3 * 32), [5], 3, fx.view), ConfigError);
    assert.throws(() => attention(new Float32Array(0), [], 0, fx.view), ConfigError);
  });

  it('bad positions -> OutOfRangeError; bad window / scale -> ConfigError', () => {
    assert.throws(() => attention(q1, [-1], 4, fx.view), OutOfRangeError);
    assert.throws(() => attention(q1, [1.5], 4, fx.view), OutOfRangeError);
    assert.throws(() => attention(q1, [NaN], 4, fx.view), OutOfRangeError);
    for (const window of [0, -2, 2.5, NaN]) assert.throws(() => attention(q1, [5], 4, fx.view, { window }), ConfigError);
    for (const scale of [NaN, Infinity]) assert.throws(() => attention(q1, [5], 4, fx.view, { scale }), ConfigError);
  });

  it('malformed views: segment past the bytes, nTokens mismatch, q4_0 with headDim 80', () => {
    const seg = fx.view.segments[0]!;
    const past = { ...fx.view, segments: [{ ...seg, kOffsetBytes: fx.view.bytes.length - 10 }] };
    assert.throws(() => attention(q1, [5], 4, past), OutOfRangeError);
    assert.throws(() => attention(q1, [5], 4, { ...fx.view, nTokens: 9 }), ShapeError);
    const q80 = buildKV({ nKeys: 2, nKvHeads: 1, headDim: 80, seed: 1 });
    assert.throws(() => attention(new Float32Array(80), [1], 1, { ...q80.view, kDtype: 'q4_0' }), DTypeError);
  });

  it('attentionBatch errors: no views, positions not [batch, nTokens], headDim / nKvHeads mismatch', () => {
    const other = buildKV({ nKeys: 4, nKvHeads: 2, headDim: 64, seed: 2 });
    const kv1 = buildKV({ nKeys: 4, nKvHeads: 1, headDim: 32, seed: 2 });
    assert.throws(() => attentionBatch(new Float32Array(0), [], 4, []), ConfigError);
    assert.throws(() => attentionBatch(new Float32Array(3 * 4 * 32), [1, 2, 3], 4, [fx.view, fx.view]), ShapeError);
    assert.throws(() => attentionBatch(new Float32Array(2 * 4 * 32), [1, 2], 4, [fx.view, other.view]), ShapeError);
    assert.throws(() => attentionBatch(new Float32Array(2 * 4 * 32), [1, 2], 4, [fx.view, kv1.view]), ConfigError);
    assert.throws(() => attentionBatch(new Float32Array(2 * 4 * 32 + 1), [1, 2], 4, [fx.view, fx.view]), ShapeError);
  });
});

describe('tolerances: nmse and the table', () => {
  it('nmse definition and edge cases', () => {
    assert.equal(nmse([1, 2, 3], [1, 2, 3]), 0);
    assert.equal(nmse([1, 2], [2, 0]), (1 + 4) / 4);
    assert.equal(nmse([0, 0], [0, 0]), 0);
    assert.equal(nmse([1, 0], [0, 0]), Infinity);
    assert.ok(Number.isNaN(nmse([NaN], [1])));
    assert.throws(() => nmse([1], [1, 2]), ShapeError);
  });

  it('thresholds are ordered by precision and a pair takes the worse entry', () => {
    const order: DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
    for (let i = 1; i < order.length; i++) assert.ok(thresholdFor(order[i - 1]!, order[i - 1]!) < thresholdFor(order[i]!, order[i]!));
    assert.equal(thresholdFor('f32', 'f32'), 1e-10);
    assert.equal(thresholdFor('q8_0', 'f16'), thresholdFor('q8_0', 'q8_0'));
    assert.equal(thresholdFor('f16', 'q4_0'), thresholdFor('q4_0', 'f16'));
  });
});
