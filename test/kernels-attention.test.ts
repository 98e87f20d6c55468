/**
 * WASM attention (src/kernels/wasm/attention.ts) against the reference (ref/attention.ts) on the
 * same stored bytes: every K/V dtype pair of interest, headDim 64 / 80 / 96 / 128 (and odd float
 * widths), GQA 1 / 2 / 7 / 8, contexts 1 .. 1100 (one and several key chunks), many segments,
 * decode and causal prefill, windows, scales, batches. Every case runs on 1 and 2 threads and
 * must be bit-identical across them; `out` must be within PARITY_TOLERANCES.attention (NMSE) and
 * lse within LSE_BOUND. Plus: fully masked rows, the zero-copy form, no arena growth once warm,
 * Inf / NaN in the cache, and the reference's typed errors.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import type { KVView } from '../src/kv/types.js';
import { attention, attentionBatch } from '../src/kernels/ref/attention.js';
import { nmse, parityBound } from '../src/kernels/tolerances.js';
import type { AttentionOptions, AttentionResult } from '../src/kernels/types.js';
import { planAttention, wasmAttention, wasmAttentionAt, wasmAttentionBatch } from '../src/kernels/wasm/attention.js';
import { variantSupported } from '../src/kernels/wasm/load.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { buildKV, randomSegments, type KVFixture, type KVFixtureSpec } from './helpers/kv-fixture.js';
import { mulberry32, normalArray, randInt } from './helpers/rng.js';

/**
 * |lse - lseRef| bound by K dtype (natural log units). Measured worst over a 150-case seeded sweep
 * (windows, scales, headDim 16..128): 3.8e-6 with float K (f32 rounding of scores and running
 * sums), 3.2e-4 with q8_0 / q4_0 K (the query quantized to int16 per 32-block for the integer
 * dot products); the bounds are ~10x those.
 */
const LSE_BOUND: Readonly<Record<DType, number>> = { f32: 4e-5, f16: 4e-5, bf16: 4e-5, q8_0: 3e-3, q4_0: 3e-3 };

const arena = new Arena({ initialBytes: 32 << 20, maximumBytes: 512 << 20 });
// The plain-SIMD build runs everywhere; the relaxed one has its own test below.
const rt1 = KernelRuntime.for(arena, { nThreads: 1, variant: 'simd' });
const rt2 = KernelRuntime.for(arena, { nThreads: 2, variant: 'simd' });
/** Worst NMSE / lse error seen per "kDtype/vDtype" (printed at the end, for the tolerance table). */
const worst = new Map<string, { nmse: number; lse: number }>();

after(() => {
  for (const [pair, w] of [...worst.entries()].sort()) console.log(`worst ${pair}: out NMSE ${w.nmse.toExponential(2)}, |lse err| ${w.lse.toExponential(2)}`);
  rt1.dispose();
  rt2.dispose();
  arena.dispose();
});

/** A fixture's K/V bytes copied into the shared arena (offsets shifted); free() gives them back. */
interface Placed {
  view: () => KVView; // taken fresh: the arena's byte view changes when it grows
  free: () => void;
}

function place(fx: KVFixture): Placed {
  const src = fx.arena.bytes;
  const base = arena.alloc(src.length);
  arena.bytes.set(src, base);
  const v = fx.view;
  const segments = v.segments.map((s) => ({ ...s, kOffsetBytes: s.kOffsetBytes + base, vOffsetBytes: s.vOffsetBytes + base }));
  return { view: () => ({ ...v, bytes: arena.bytes, segments }), free: () => arena.free(base) };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** The parity assertions of the header; returns the 1-thread result. */
function checkParity(r1: AttentionResult, r2: AttentionResult, ref: AttentionResult, kDtype: DType, vDtype: DType, label: string): void {
  assert.ok(sameBits(r1.out, r2.out) && sameBits(r1.lse, r2.lse), `${label}: 1 and 2 threads differ`);
  const e = nmse(r1.out, ref.out);
  const bound = parityBound('attention', kDtype, vDtype);
  assert.ok(e <= bound, `${label}: out NMSE ${e} > ${bound}`);
  let lseErr = 0;
  for (let i = 0; i < ref.lse.length; i++) {
    if (ref.lse[i] === -Infinity) {
      assert.equal(r1.lse[i], -Infinity, `${label}: lse[${i}] of a fully masked row`);
      continue;
    }
    lseErr = Math.max(lseErr, Math.abs(r1.lse[i]! - ref.lse[i]!));
  }
  assert.ok(lseErr <= LSE_BOUND[kDtype], `${label}: |lse err| ${lseErr} > ${LSE_BOUND[kDtype]}`);
  const key = `${kDtype}/${vDtype}`;
  const w = worst.get(key) ?? { nmse: 0, lse: 0 };
  worst.set(key, { nmse: Math.max(w.nmse, e), lse: Math.max(w.lse, lseErr) });
}

/** Run wasm (1 and 2 threads) and ref on one fixture and query set; assert parity. */
function compare(fx: KVFixture, q: Float32Array, pos: number[], nHeads: number, opts: AttentionOptions = {}, label = ''): AttentionResult {
  const p = place(fx);
  try {
    const ref = attention(q, pos, nHeads, fx.view, opts);
    const r1 = wasmAttention(rt1, q, pos, nHeads, p.view(), opts);
    const r2 = wasmAttention(rt2, q, pos, nHeads, p.view(), opts);
    checkParity(r1, r2, ref, fx.view.kDtype, fx.view.vDtype, label);
    return r1;
  } finally {
    p.free();
    fx.arena.dispose();
  }
}

/** The last n positions of a cache of len keys (new tokens already written: causal prefill). */
function lastPositions(len: number, n: number): number[] {
  const pos: number[] = [];
  for (let p = Math.max(0, len - n); p < len; p++) pos.push(p);
  return pos;
}

interface Case extends Omit<KVFixtureSpec, 'nKvHeads'> {
  group: number;
  nKvHeads?: number;
  nQuery: number;
  nSegments?: number;
  opts?: AttentionOptions;
}

function runCase(c: Case, seed: number): void {
  const rng = mulberry32(seed);
  const nKvHeads = c.nKvHeads ?? 2;
  const nHeads = nKvHeads * c.group;
  const segments = c.segments ?? randomSegments(rng, c.nKeys, c.nSegments ?? 3);
  const fx = buildKV({ ...c, nKvHeads, seed, segments });
  const pos = lastPositions(Math.max(c.nKeys, c.nQuery), c.nQuery);
  const q = normalArray(rng, pos.length * nHeads * c.headDim);
  const label = `K ${c.kDtype} / V ${c.vDtype}, headDim ${c.headDim}, GQA ${c.group}, ${c.nKeys} keys, ${c.nQuery} queries`;
  compare(fx, q, pos, nHeads, c.opts, label);
}

const PAIRS: [DType, DType][] = [
  ['f32', 'f32'], ['f16', 'f16'], ['bf16', 'bf16'], ['q8_0', 'q8_0'], ['q4_0', 'q4_0'],
  ['q8_0', 'f16'], ['f16', 'q4_0'], ['f32', 'q4_0'], ['bf16', 'q8_0'],
];
const quantized = (d: DType) => d === 'q8_0' || d === 'q4_0';

describe('wasm attention: every dtype pair, decode and prefill, 1 / 2 threads bit-identical, within the parity table', () => {
  let seed = 1000;
  for (const [kDtype, vDtype] of PAIRS) {
    const dims = quantized(kDtype) || quantized(vDtype) ? [64, 96, 128] : [64, 80, 128];
    dims.forEach((headDim, i) => {
      const group = [1, 2, 7, 8][(seed + i) % 4]!;
      for (const [nKeys, nQuery] of [[1, 1], [33, 1], [300, 1], [300, 5]] as const) {
        const s = seed++;
        test(`K ${kDtype} / V ${vDtype}, headDim ${headDim}, GQA ${group}, ${nKeys} keys, ${nQuery} queries`, () =>
          runCase({ kDtype, vDtype, headDim, group, nKeys, nQuery, layout: s % 2 ? 'bshd' : 'bhsd' }, s));
      }
    });
  }
});

describe('wasm attention: GQA ratios x contexts crossing key-chunk boundaries', () => {
  let seed = 2000;
  for (const [kDtype, vDtype] of [['f16', 'f16'], ['q8_0', 'q8_0']] as [DType, DType][]) {
    for (const group of [1, 2, 7, 8]) {
      for (const nKeys of [5, 31, 1100]) {
        for (const nQuery of [1, 6]) {
          const s = seed++;
          test(`K ${kDtype} / V ${vDtype}, GQA ${group}, ${nKeys} keys, ${nQuery} queries`, () =>
            runCase({ kDtype, vDtype, headDim: 64, group, nKeys, nQuery, nSegments: 4, layout: s % 2 ? 'bshd' : 'bhsd' }, s));
        }
      }
    }
  }

  test('the plan: decode contexts split into key chunks, by shape only (never by thread count)', () => {
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 200).nChunks, 1);
    assert.ok(planAttention(1, 14, 2, 64, 'f16', 300).nChunks > 1);
    assert.ok(planAttention(1, 14, 2, 64, 'f16', 8192).nItems >= 32);
    assert.equal(planAttention(1, 14, 2, 64, 'q8_0', 8192).intK, true);
    assert.equal(planAttention(512, 14, 2, 64, 'f16', 4096).nChunks, 1, 'prefill with many tiles: no key chunks');
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 8192).kvPerItem, 2, 'long decode: all kv heads of a token in one item');
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 1000).kvPerItem, 1, 'short decode: one kv head per item (more items)');
    assert.equal(planAttention(512, 14, 2, 64, 'f16', 4096).kvPerItem, 1, 'prefill: tiles are full already');
  });
});

describe('wasm attention: long decode, several kv heads per work item (both layouts)', () => {
  let seed = 2500;
  for (const [kDtype, vDtype] of PAIRS) {
    for (const [headDim, group, nKvHeads, nQuery] of [[64, 7, 2, 1], [quantized(kDtype) || quantized(vDtype) ? 96 : 80, 2, 4, 2]] as const) {
      for (const layout of ['bshd', 'bhsd'] as const) {
        const s = seed++;
        test(`K ${kDtype} / V ${vDtype}, headDim ${headDim}, ${nKvHeads} kv heads x GQA ${group}, 4200 keys, ${nQuery} queries, ${layout}`, () =>
          runCase({ kDtype, vDtype, headDim, group, nKvHeads, nKeys: 4200, nQuery, nSegments: 3, layout }, s));
      }
    }
  }
});

describe('wasm attention: segments, masks, windows, scales', () => {
  test('paged-like view: 1100 keys in 16-token segments with position gaps, decode and prefill', () => {
    const rng = mulberry32(31);
    const sizes: number[] = [];
    for (let n = 1100; n > 0; n -= 16) sizes.push(Math.min(16, n));
    const pos0: number[] = [];
    let p = 0;
    for (const n of sizes) {
      pos0.push(p);
      p += n + (rng() < 0.2 ? randInt(rng, 1, 5) : 0);
    }
    for (const [kDtype, vDtype] of [['f16', 'f16'], ['q4_0', 'bf16']] as [DType, DType][]) {
      const fx = buildKV({ nKeys: 1100, nKvHeads: 2, headDim: 64, kDtype, vDtype, layout: 'bshd', seed: 31, segments: sizes, segmentPos0: pos0 });
      const qPos = [p - 1, p - 3, 500, 17, p + 40];
      compare(fx, normalArray(rng, qPos.length * 14 * 64), qPos, 14, {}, `paged ${kDtype}/${vDtype}`);
    }
  });

  test('many random segments (some empty) and segments out of position order', () => {
    const rng = mulberry32(32);
    const fx = buildKV({ nKeys: 700, nKvHeads: 1, headDim: 128, kDtype: 'q8_0', vDtype: 'f16', seed: 32, segments: randomSegments(rng, 700, 40) });
    compare(fx, normalArray(rng, 5 * 8 * 128), lastPositions(700, 5), 8, {}, 'random segments');
    const sizes = [100, 200, 50];
    const shuffled = buildKV({ nKeys: 350, nKvHeads: 2, headDim: 64, kDtype: 'f32', vDtype: 'f32', seed: 33, segments: sizes, segmentPos0: [300, 0, 200] });
    compare(shuffled, normalArray(rng, 3 * 4 * 64), [349, 120, 260], 4, {}, 'segments out of order');
  });

  test('sliding windows 1, 4, 17, 300 in decode and prefill (window edges inside and across chunks)', () => {
    for (const window of [1, 4, 17, 300]) {
      runCase({ kDtype: 'f16', vDtype: 'f16', headDim: 64, group: 7, nKeys: 1100, nQuery: 1, opts: { window } }, 40 + window);
      runCase({ kDtype: 'q8_0', vDtype: 'q8_0', headDim: 64, group: 2, nKeys: 600, nQuery: 9, opts: { window } }, 50 + window);
    }
  });

  test('custom scales: 0.37, 0 and negative', () => {
    for (const scale of [0.37, 0, -0.2]) {
      runCase({ kDtype: 'f32', vDtype: 'f16', headDim: 64, group: 2, nKeys: 300, nQuery: 3, opts: { scale } }, 60);
      runCase({ kDtype: 'q4_0', vDtype: 'f32', headDim: 64, group: 2, nKeys: 300, nQuery: 3, opts: { scale } }, 61);
    }
  });

  test('long causal prefill: 70 tokens (several query tiles), GQA 7 and 1, headDim 128', () => {
    runCase({ kDtype: 'f16', vDtype: 'f16', headDim: 128, group: 7, nKeys: 400, nQuery: 70, nKvHeads: 1 }, 70);
    runCase({ kDtype: 'q8_0', vDtype: 'q4_0', headDim: 64, group: 1, nKeys: 200, nQuery: 70, nKvHeads: 2 }, 71);
  });

  test('float headDims that are not a multiple of 4 or 8 (6, 36, 44): the padded path', () => {
    for (const headDim of [6, 36, 44]) {
      runCase({ kDtype: 'f16', vDtype: 'bf16', headDim, group: 2, nKeys: 300, nQuery: 2 }, 80 + headDim);
      runCase({ kDtype: 'f32', vDtype: 'f32', headDim, group: 1, nKeys: 40, nQuery: 1 }, 90 + headDim);
    }
  });

  test('fully masked rows give out 0 and lse -Infinity; an empty cache and zero queries', () => {
    const rng = mulberry32(100);
    const fx = buildKV({ nKeys: 300, nKvHeads: 2, headDim: 64, kDtype: 'f16', vDtype: 'q8_0', seed: 100, segments: [150, 150], segmentPos0: [20, 400] });
    const pos = [3, 19, 25, 399, 1000, 0];
    const r = compare(fx, normalArray(rng, pos.length * 4 * 64), pos, 4, {}, 'masked rows');
    for (const i of [0, 1, 5]) {
      assert.ok(r.out.subarray(i * 4 * 64, (i + 1) * 4 * 64).every((x) => x === 0));
      assert.deepEqual([...r.lse.subarray(i * 4, (i + 1) * 4)], [-Infinity, -Infinity, -Infinity, -Infinity]);
    }
    const empty = buildKV({ nKeys: 0, nKvHeads: 2, headDim: 64, seed: 101 });
    const pe = place(empty);
    const e = wasmAttention(rt2, normalArray(rng, 2 * 4 * 64), [0, 7], 4, pe.view());
    assert.ok(e.out.every((x) => x === 0) && e.lse.every((x) => x === -Infinity));
    const z = wasmAttention(rt2, new Float32Array(0), [], 4, pe.view());
    assert.equal(z.out.length + z.lse.length, 0);
    pe.free();
    empty.arena.dispose();
  });
});

describe('wasm attention: edge values in the cache and the query', () => {
  test('f16 cache with subnormals, 65504 and an Inf / NaN row: exact like the reference', () => {
    const rng = mulberry32(110);
    const n = 40;
    const k = normalArray(rng, n * 64);
    const v = normalArray(rng, n * 64);
    for (let i = 0; i < 64; i++) k[5 * 64 + i] = 3e-6 * (i - 32); // f16 subnormals
    v[7 * 64 + 3] = 65504;
    const finite = buildKV({ nKeys: n, nKvHeads: 1, headDim: 64, kDtype: 'f16', vDtype: 'f16', seed: 110, k, v });
    compare(finite, normalArray(rng, 2 * 64), [n - 1], 2, {}, 'f16 subnormals');
    const vInf = v.slice();
    vInf[9 * 64 + 10] = Infinity;
    vInf[11 * 64 + 20] = NaN;
    const special = buildKV({ nKeys: n, nKvHeads: 1, headDim: 64, kDtype: 'f16', vDtype: 'f16', seed: 111, k, v: vInf });
    const ps = place(special);
    const q = normalArray(rng, 2 * 64);
    const ref = attention(q, [n - 1], 2, special.view);
    const got = wasmAttention(rt1, q, [n - 1], 2, ps.view());
    for (let i = 0; i < ref.out.length; i++) {
      assert.equal(Number.isFinite(got.out[i]), Number.isFinite(ref.out[i]), `out[${i}]: ${got.out[i]} vs ref ${ref.out[i]}`);
    }
    ps.free();
    special.arena.dispose();
  });

  test('a query large enough that q * scale * 2^112 would overflow (f16 K takes the exact path)', () => {
    // Scores ~1e5: f32 rounding of a score is ~1e-2 in absolute terms, so lse is checked relative.
    const rng = mulberry32(120);
    const q = normalArray(rng, 3 * 4 * 64, 1e4);
    const fx = buildKV({ nKeys: 50, nKvHeads: 2, headDim: 64, kDtype: 'f16', vDtype: 'f16', seed: 120 });
    const p = place(fx);
    const pos = lastPositions(50, 3);
    const ref = attention(q, pos, 4, fx.view, { scale: 2 });
    const r1 = wasmAttention(rt1, q, pos, 4, p.view(), { scale: 2 });
    const r2 = wasmAttention(rt2, q, pos, 4, p.view(), { scale: 2 });
    assert.ok(sameBits(r1.out, r2.out) && sameBits(r1.lse, r2.lse));
    assert.ok(nmse(r1.out, ref.out) <= parityBound('attention', 'f16'));
    ref.lse.forEach((x, i) => assert.ok(Math.abs(r1.lse[i]! - x) <= 1e-6 * Math.abs(x), `lse[${i}] ${r1.lse[i]} vs ${x}`));
    p.free();
    fx.arena.dispose();
  });
});

describe('wasm attention: the relaxed-SIMD build (fused multiply-add), where this engine runs it', () => {
  test('relaxed and plain builds both within the parity table; relaxed 1 / 2 threads bit-identical', { skip: !variantSupported('relaxed') }, () => {
    const rx1 = new KernelRuntime(arena, { nThreads: 1, variant: 'relaxed' });
    const rx2 = new KernelRuntime(arena, { nThreads: 2, variant: 'relaxed' });
    try {
      let seed = 170;
      for (const [kDtype, vDtype] of PAIRS) {
        const rng = mulberry32(seed);
        const fx = buildKV({ nKeys: 600, nKvHeads: 2, headDim: 64, kDtype, vDtype, seed: seed++, segments: randomSegments(rng, 600, 5) });
        const pos = lastPositions(600, 3);
        const q = normalArray(rng, pos.length * 14 * 64);
        const pl = place(fx);
        const ref = attention(q, pos, 14, fx.view);
        checkParity(wasmAttention(rx1, q, pos, 14, pl.view()), wasmAttention(rx2, q, pos, 14, pl.view()), ref, kDtype, vDtype, `relaxed ${kDtype}/${vDtype}`);
        pl.free();
        fx.arena.dispose();
      }
    } finally {
      rx1.dispose();
      rx2.dispose();
    }
  });
});

describe('wasm attention: zero-copy form, batches, no allocation once warm', () => {
  test('wasmAttentionAt equals wasmAttention bit for bit, and works in place (out = q)', () => {
    const rng = mulberry32(130);
    const fx = buildKV({ nKeys: 500, nKvHeads: 2, headDim: 64, kDtype: 'q8_0', vDtype: 'f16', seed: 130, layout: 'bshd' });
    const p = place(fx);
    for (const pos of [[499], lastPositions(500, 4)]) {
      const n = pos.length * 14 * 64;
      const q = normalArray(rng, n);
      const want = wasmAttention(rt2, q, pos, 14, p.view());
      const qOff = arena.alloc(n * 4);
      const outOff = arena.alloc(n * 4);
      const lseOff = arena.alloc(pos.length * 14 * 4);
      arena.f32.set(q, qOff >> 2);
      wasmAttentionAt(rt2, qOff, outOff, lseOff, pos, 14, p.view());
      assert.ok(sameBits(arena.f32.slice(outOff >> 2, (outOff >> 2) + n), want.out));
      assert.ok(sameBits(arena.f32.slice(lseOff >> 2, (lseOff >> 2) + pos.length * 14), want.lse));
      wasmAttentionAt(rt1, qOff, qOff, lseOff, pos, 14, p.view()); // in place
      assert.ok(sameBits(arena.f32.slice(qOff >> 2, (qOff >> 2) + n), want.out));
      for (const o of [qOff, outOff, lseOff]) arena.free(o);
    }
    p.free();
    fx.arena.dispose();
  });

  test('no arena allocation once warm (decode and prefill)', () => {
    const rng = mulberry32(140);
    const fx = buildKV({ nKeys: 2000, nKvHeads: 2, headDim: 64, kDtype: 'f16', vDtype: 'f16', seed: 140 });
    const p = place(fx);
    const n = 8 * 14 * 64;
    const qOff = arena.alloc(n * 4);
    const outOff = arena.alloc(n * 4);
    const lseOff = arena.alloc(8 * 14 * 4);
    arena.f32.set(normalArray(rng, n), qOff >> 2);
    const calls = [[1999], lastPositions(2000, 8)];
    for (const pos of calls) wasmAttentionAt(rt2, qOff, outOff, lseOff, pos, 14, p.view());
    const used = arena.usedBytes;
    const live = arena.liveAllocations;
    for (let i = 0; i < 3; i++) for (const pos of calls) wasmAttentionAt(rt2, qOff, outOff, lseOff, pos, 14, p.view());
    assert.equal(arena.usedBytes, used);
    assert.equal(arena.liveAllocations, live);
    for (const o of [qOff, outOff, lseOff]) arena.free(o);
    p.free();
    fx.arena.dispose();
  });

  test('wasmAttentionBatch: rows of lengths 0, 1, 17, 300 with mixed dtypes equal per-row calls and the reference', () => {
    const rng = mulberry32(150);
    const lens = [0, 1, 17, 300];
    const dts: DType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
    const fxs = lens.map((n, b) => buildKV({ nKeys: n, nKvHeads: 2, headDim: 64, kDtype: dts[b], vDtype: dts[(b + 1) % 4], seed: 150 + b, segments: randomSegments(rng, n, 2) }));
    const placed = fxs.map(place);
    const nTokens = 3;
    const positions = lens.flatMap((n) => lastPositions(Math.max(n, nTokens), nTokens));
    const rowElems = nTokens * 4 * 64;
    const q = normalArray(rng, lens.length * rowElems);
    const ref = attentionBatch(q, positions, 4, fxs.map((f) => f.view));
    const r1 = wasmAttentionBatch(rt1, q, positions, 4, placed.map((p) => p.view()));
    const r2 = wasmAttentionBatch(rt2, q, positions, 4, placed.map((p) => p.view()));
    assert.ok(sameBits(r1.out, r2.out) && sameBits(r1.lse, r2.lse));
    fxs.forEach((fx, b) => {
      const slice = (r: AttentionResult): AttentionResult => ({
        out: r.out.subarray(b * rowElems, (b + 1) * rowElems), lse: r.lse.subarray(b * nTokens * 4, (b + 1) * nTokens * 4),
      });
      const single = wasmAttention(rt1, q.subarray(b * rowElems, (b + 1) * rowElems), positions.slice(b * nTokens, (b + 1) * nTokens), 4, placed[b]!.view());
      assert.ok(sameBits(slice(r1).out, single.out) && sameBits(slice(r1).lse, single.lse), `row ${b}`);
      checkParity(slice(r1), slice(r2), slice(ref), fx.view.kDtype, fx.view.vDtype, `batch row ${b}`);
    });
    placed.forEach((p) => p.free());
    fxs.forEach((f) => f.arena.dispose());
  });
});

describe('wasm attention: the reference typed errors, and its own', () => {
  const fx = buildKV({ nKeys: 8, nKvHeads: 2, headDim: 32, seed: 160 });
  const p = place(fx);
  const q1 = normalArray(mulberry32(160), 4 * 32);
  after(() => {
    p.free();
    fx.arena.dispose();
  });

  /** Both kernels throw the same error class for the same bad input. */
  function sameError(call: (view: KVView, wasm: boolean) => unknown, cls: new (...a: never[]) => Error): void {
    assert.throws(() => call(fx.view, false), cls);
    assert.throws(() => call(p.view(), true), cls);
  }
  const run = (q: Float32Array, pos: number[], nHeads: number, opts?: AttentionOptions, patch: Partial<KVView> = {}) =>
    (view: KVView, wasm: boolean) => {
      const v = { ...view, ...patch };
      return wasm ? wasmAttention(rt1, q, pos, nHeads, v, opts) : attention(q, pos, nHeads, v, opts);
    };

  test('shape, config, position, window and scale errors match the reference', () => {
    sameError(run(q1.subarray(1), [5], 4), ShapeError);
    sameError(run(q1, [5, 6], 4), ShapeError);
    sameError(run(normalArray(mulberry32(1), 3 * 32), [5], 3), ConfigError);
    sameError(run(new Float32Array(0), [], 0), ConfigError);
    for (const bad of [-1, 1.5, NaN]) sameError(run(q1, [bad], 4), OutOfRangeError);
    for (const window of [0, -2, 2.5, NaN]) sameError(run(q1, [5], 4, { window }), ConfigError);
    for (const scale of [NaN, Infinity]) sameError(run(q1, [5], 4, { scale }), ConfigError);
    sameError(run(q1, [5], 4, {}, { nTokens: 9 }), ShapeError);
    sameError(run(new Float32Array(4 * 40), [5], 4, {}, { kDtype: 'q4_0', headDim: 40 }), DTypeError);
  });

  test('a segment past the bytes -> OutOfRangeError (checked before any byte is read)', () => {
    const seg = p.view().segments[0]!;
    const view = p.view();
    assert.throws(() => wasmAttention(rt1, q1, [5], 4, { ...view, segments: [{ ...seg, kOffsetBytes: view.bytes.length - 10 }] }), OutOfRangeError);
  });

  test('a view over other memory or not starting at arena offset 0 -> ConfigError', () => {
    assert.throws(() => wasmAttention(rt1, q1, [5], 4, fx.view), ConfigError);
    assert.throws(() => wasmAttention(rt1, q1, [5], 4, { ...p.view(), bytes: new Uint8Array(arena.bytes.length) }), ConfigError);
    assert.throws(() => wasmAttention(rt1, q1, [5], 4, { ...p.view(), bytes: arena.bytes.subarray(64) }), ConfigError);
  });

  test('a view held across calls stays usable after the arena grows (e.g. by the scratch of a call)', () => {
    const view = p.view();
    const first = wasmAttention(rt1, q1, [7], 4, view);
    const before = arena.mappedBytes;
    const filler = arena.alloc(before); // larger than any hole: the memory must grow
    assert.ok(arena.mappedBytes > before && view.bytes.buffer !== arena.bytes.buffer);
    const again = wasmAttention(rt1, q1, [7], 4, view);
    assert.ok(sameBits(again.out, first.out) && sameBits(again.lse, first.lse));
    arena.free(filler);
  });

  test('positions past the i32 limit and bad arena offsets -> OutOfRangeError', () => {
    assert.throws(() => wasmAttention(rt1, q1, [2 ** 31], 4, p.view()), OutOfRangeError);
    const view = p.view();
    const far = { ...view, segments: [{ ...view.segments[0]!, pos0: 2 ** 31 - 3 }] };
    assert.throws(() => wasmAttention(rt1, q1, [5], 4, far), OutOfRangeError);
    const off = arena.alloc(4 * 32 * 4);
    assert.throws(() => wasmAttentionAt(rt1, off + 2, off, off, [5], 4, p.view()), OutOfRangeError);
    assert.throws(() => wasmAttentionAt(rt1, off, arena.mappedBytes - 8, off, [5], 4, p.view()), OutOfRangeError);
    assert.throws(() => wasmAttentionAt(rt1, -4, off, off, [5], 4, p.view()), OutOfRangeError);
    arena.free(off);
  });

  test('batch errors match attentionBatch', () => {
    const other = buildKV({ nKeys: 4, nKvHeads: 2, headDim: 64, seed: 161 });
    const po = place(other);
    assert.throws(() => wasmAttentionBatch(rt1, new Float32Array(0), [], 4, []), ConfigError);
    assert.throws(() => wasmAttentionBatch(rt1, new Float32Array(3 * 4 * 32), [1, 2, 3], 4, [p.view(), p.view()]), ShapeError);
    assert.throws(() => wasmAttentionBatch(rt1, new Float32Array(2 * 4 * 32), [1, 2], 4, [p.view(), po.view()]), ShapeError);
    assert.throws(() => wasmAttentionBatch(rt1, new Float32Array(2 * 4 * 32 + 1), [1, 2], 4, [p.view(), p.view()]), ShapeError);
    po.free();
    other.arena.dispose();
  });
});
