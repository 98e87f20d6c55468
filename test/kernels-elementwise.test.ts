/**
 * Parity of the small forward-pass kernels (rmsnorm, rope, softmax, silu x up, residual add,
 * embedding, argmax / top-k): every wasm kernel against its reference twin on awkward sizes, on
 * every available build (plain SIMD; relaxed SIMD where the engine runs it) with 1 and 2 threads
 * (bit-identical), plus independent checks of the references and the typed errors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { DTYPE_NAMES, decodeRow, encodeArray, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import * as refEw from '../src/kernels/ref/elementwise.js';
import * as refEmb from '../src/kernels/ref/embedding.js';
import * as refNorm from '../src/kernels/ref/norm.js';
import * as refRope from '../src/kernels/ref/rope.js';
import * as refSel from '../src/kernels/ref/sampling.js';
import { nmse, parityBound } from '../src/kernels/tolerances.js';
import * as ew from '../src/kernels/wasm/elementwise.js';
import * as emb from '../src/kernels/wasm/embedding.js';
import { variantSupported } from '../src/kernels/wasm/load.js';
import * as rope from '../src/kernels/wasm/rope.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import * as sel from '../src/kernels/wasm/sampling.js';
import { mulberry32, normalArray, randInt } from './helpers/rng.js';

const arena = new Arena();
const variants = (['simd', 'relaxed'] as const).filter((v) => variantSupported(v));
/** Per build: [1-thread runtime, 2-thread runtime]. */
const runtimes = variants.map((variant) => [1, 2].map((nThreads) => new KernelRuntime(arena, { nThreads, variant })) as [KernelRuntime, KernelRuntime]);
after(() => {
  for (const pair of runtimes) for (const rt of pair) rt.dispose();
  arena.dispose();
});

const F32_BOUND = parityBound('elementwise', 'f32');
const worst = new Map<string, number>();

/** NMSE(got, want) <= the f32 elementwise bound; records the worst value per kernel. */
function checkParity(kernel: string, got: Float32Array, want: Float32Array, what: string): void {
  const e = nmse(got, want);
  worst.set(kernel, Math.max(worst.get(kernel) ?? 0, e));
  assert.ok(e <= F32_BOUND, `${kernel} ${what}: NMSE ${e} > ${F32_BOUND}`);
}

/** Bit equality of two f32 arrays (the 1 vs 2 thread check). */
function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} differs (${a[i]} vs ${b[i]})`);
}

/** Runs `f` on the 1- and 2-thread runtime of every build; checks bit identity; returns each build's result. */
function onAll(what: string, f: (rt: KernelRuntime) => Float32Array): Float32Array[] {
  return runtimes.map(([one, two]) => {
    const a = f(one);
    sameBits(a, f(two), `${what} (${one.variant}, 1 vs 2 threads)`);
    return a;
  });
}

const DIMS = [1, 3, 17, 64, 80, 128, 896, 4864];
const ROWS = [1, 2, 5, 16, 33];

test('rmsnorm: wasm matches the reference on awkward dims and row counts; in place and strided', () => {
  const rng = mulberry32(11);
  for (const dim of DIMS) {
    for (const nRows of ROWS) {
      if (dim * nRows > 40000 && nRows > 5) continue;
      const x = normalArray(rng, nRows * dim, 3);
      const w = normalArray(rng, dim);
      const want = refNorm.rmsnorm(x, w, 1e-6);
      for (const got of onAll(`rmsnorm ${nRows}x${dim}`, (rt) => ew.rmsnorm(rt, x, w, 1e-6))) checkParity('rmsnorm', got, want, `${nRows}x${dim}`);
    }
  }
  // Qwen3 q-norm inside a fused QKV row: rows = heads of q, stride = the whole row, out of place.
  const [nTokens, nHeads, headDim, rowLen] = [3, 4, 80, 6 * 80];
  const qkv = normalArray(rng, nTokens * rowLen);
  const w = normalArray(rng, headDim);
  for (const [rt] of runtimes) {
    const xo = rt.stage('test.a', qkv);
    const wo = rt.stage('test.b', w);
    const yo = rt.scratch('test.c', nTokens * nHeads * headDim * 4);
    for (let t = 0; t < nTokens; t++) {
      ew.rmsnormAt(rt, { x: xo + t * rowLen * 4, y: yo + t * nHeads * headDim * 4, weight: wo, nRows: nHeads, dim: headDim, eps: 1e-6 });
    }
    const q = new Float32Array(nTokens * nHeads * headDim);
    for (let t = 0; t < nTokens; t++) q.set(qkv.subarray(t * rowLen, t * rowLen + nHeads * headDim), t * nHeads * headDim);
    const got = arena.f32.slice(yo >> 2, (yo >> 2) + q.length);
    checkParity('rmsnorm', got, refNorm.rmsnorm(q, w, 1e-6), 'qk-norm strided');
    // xStride: every head of the fused row as one strided call over rows = tokens (dim = a head).
    ew.rmsnormAt(rt, { x: xo, weight: wo, nRows: nTokens, dim: headDim, eps: 1e-6, xStride: rowLen });
    const firstHeads = new Float32Array(nTokens * headDim);
    for (let t = 0; t < nTokens; t++) firstHeads.set(qkv.subarray(t * rowLen, t * rowLen + headDim), t * headDim);
    const inPlace = new Float32Array(nTokens * headDim);
    for (let t = 0; t < nTokens; t++) inPlace.set(arena.f32.subarray((xo >> 2) + t * rowLen, (xo >> 2) + t * rowLen + headDim), t * headDim);
    checkParity('rmsnorm', inPlace, refNorm.rmsnorm(firstHeads, w, 1e-6), 'in place, strided rows');
    assert.equal(arena.f32[(xo >> 2) + headDim], qkv[headDim], 'values past dim in a strided row are untouched');
  }
});

test('rmsnorm reference: a constant row normalises to sign * weight; zero row stays zero', () => {
  const y = refNorm.rmsnorm(new Float32Array([-2.5, -2.5, -2.5]), new Float32Array([1, 2, 3]), 0);
  assert.deepEqual([...y], [-1, -2, -3]);
  const z = refNorm.rmsnorm(new Float32Array(4), new Float32Array([1, 1, 1, 1]), 1e-5);
  assert.deepEqual([...z], [0, 0, 0, 0]);
  const e = refNorm.rmsnorm(new Float32Array([3, 4]), new Float32Array([1, 1]), 0.5); // mean sq 12.5, +0.5 -> sqrt 13
  assert.deepEqual([...e], [Math.fround(3 / Math.sqrt(13)), Math.fround(4 / Math.sqrt(13))]);
});

test('softmax: wasm matches the reference (scale, big rows); rows sum to 1; edge rows', () => {
  const rng = mulberry32(12);
  for (const n of [...DIMS, 151936]) {
    for (const nRows of n > 5000 ? [1, 2] : ROWS) {
      const x = normalArray(rng, nRows * n, 4);
      for (const scale of [1, 0.37]) {
        const want = refEw.softmax(x, n, scale);
        for (const got of onAll(`softmax ${nRows}x${n}`, (rt) => ew.softmax(rt, x, n, scale))) checkParity('softmax', got, want, `${nRows}x${n} scale ${scale}`);
      }
    }
  }
  const edge = new Float32Array([-Infinity, -Infinity, -Infinity, 1, NaN, 2, 0, Infinity, 1, 5, -Infinity, 5]);
  const want = refEw.softmax(edge, 3);
  assert.deepEqual([...want.subarray(0, 3)], [0, 0, 0], 'all masked -> zeros');
  assert.ok(want.subarray(3, 9).every(Number.isNaN), 'NaN or +Inf -> NaN row');
  assert.deepEqual([...want.subarray(9)], [0.5, 0, 0.5]);
  for (const got of onAll('softmax edge rows', (rt) => ew.softmax(rt, edge, 3))) {
    assert.deepEqual([...got.subarray(0, 3)], [0, 0, 0]);
    assert.ok(got.subarray(3, 9).every(Number.isNaN));
    assert.deepEqual([...got.subarray(9)], [0.5, 0, 0.5]);
  }
  const r = refEw.softmax(normalArray(rng, 1000, 10), 1000);
  assert.ok(Math.abs(r.reduce((s, v) => s + v, 0) - 1) < 1e-5, 'sums to 1');
  const twice = normalArray(rng, 17);
  assert.ok(nmse(refEw.softmax(twice, 17, 2), refEw.softmax(twice.map((v) => v * 2), 17)) < 1e-14, 'scale == multiplying x');
});

test('silu x up and residual add: wasm matches the reference; in place; any split', () => {
  const rng = mulberry32(13);
  for (const n of [...DIMS, 33 * 896, 40001]) {
    const gate = normalArray(rng, n, 4);
    gate[0] = n > 1 ? -120 : gate[0]!; // exp(120) overflows f32: silu -> -0
    const up = normalArray(rng, n);
    const wantS = refEw.siluMul(gate, up);
    for (const got of onAll(`silu ${n}`, (rt) => ew.siluMul(rt, gate, up))) checkParity('siluMul', got, wantS, `n ${n}`);
    const wantA = refEw.residualAdd(gate, up);
    for (const got of onAll(`add ${n}`, (rt) => ew.residualAdd(rt, gate, up))) {
      checkParity('residualAdd', got, wantA, `n ${n}`);
      sameBits(got, wantA, 'f32 add is exact');
    }
  }
  // gate and up as the two halves of one fused buffer, output over the gate half.
  const fused = normalArray(rng, 2 * 4864);
  const want = refEw.siluMul(fused.subarray(0, 4864), fused.subarray(4864));
  for (const [rt] of runtimes) {
    const o = rt.stage('test.a', fused);
    ew.siluMulAt(rt, { gate: o, up: o + 4864 * 4, out: o, n: 4864 });
    sameBits(arena.f32.slice(o >> 2, (o >> 2) + 4864), ew.siluMul(rt, fused.subarray(0, 4864), fused.subarray(4864)), 'fused halves');
    checkParity('siluMul', arena.f32.slice(o >> 2, (o >> 2) + 4864), want, 'fused halves');
  }
  assert.equal(refEw.silu(0), 0);
  assert.ok(Math.abs(refEw.silu(30) - 30) < 1e-9 && Math.abs(refEw.silu(-30)) < 1e-9);
  assert.equal(refEw.silu(1), 1 / (1 + Math.exp(-1)));
});

/** HF `apply_rotary_pos_emb` (rotate_half) or GPT-J's complex product, written independently. */
function ropeDirect(x: Float32Array, pos: number[], nHeads: number, headDim: number, rotaryDim: number, inv: Float32Array, mode: refRope.RopeMode): Float64Array {
  const y = Float64Array.from(x);
  const half = rotaryDim / 2;
  for (let t = 0; t < pos.length; t++) {
    for (let h = 0; h < nHeads; h++) {
      const o = (t * nHeads + h) * headDim;
      for (let d = 0; d < rotaryDim; d++) {
        const i = mode === 'neox' ? d % half : d >> 1;
        const ang = pos[t]! * inv[i]!;
        const partner = mode === 'neox' ? (d < half ? -x[o + d + half]! : x[o + d - half]!) : d % 2 === 0 ? -x[o + d + 1]! : x[o + d - 1]!;
        y[o + d] = x[o + d]! * Math.cos(ang) + partner * Math.sin(ang);
      }
    }
  }
  return y;
}

test('rope: wasm matches the reference for both pairings, head dims, partial rotary, big positions', () => {
  const rng = mulberry32(14);
  for (const mode of ['neox', 'interleaved'] as const) {
    for (const [headDim, rotaryDim] of [[64, 64], [80, 80], [128, 128], [128, 64], [80, 20], [64, 6], [2, 2]] as const) {
      for (const nTokens of [1, 3, 9]) {
        const nHeads = randInt(rng, 1, 15);
        const pos = Array.from({ length: nTokens }, () => randInt(rng, 0, 100001));
        pos[0] = nTokens > 1 ? 0 : 1_000_000;
        const x = normalArray(rng, nTokens * nHeads * headDim);
        const opts = { nHeads, headDim, rotaryDim, mode, theta: headDim === 80 ? 1e6 : 10000 };
        const want = refRope.rope(x, pos, opts);
        const what = `${mode} hd ${headDim} rd ${rotaryDim} tokens ${nTokens}`;
        for (const got of onAll(`rope ${what}`, (rt) => rope.rope(rt, x, pos, opts))) checkParity('rope', got, want, what);
      }
    }
  }
});

test('rope: q and k (GQA) in one call inside a fused QKV buffer; table and theta forms', () => {
  const rng = mulberry32(15);
  const [nTokens, nHeads, nKvHeads, headDim] = [5, 14, 2, 64];
  const rowLen = (nHeads + 2 * nKvHeads) * headDim;
  const qkv = normalArray(rng, nTokens * rowLen);
  const pos = [7, 99_999, 0, 31, 65_535];
  // A llama3-style table: the theta table with the low frequencies divided by 8.
  const inv = refRope.ropeInvFreq(500000, headDim).map((f, i) => (i > headDim / 4 ? f / 8 : f));
  const slice = (buf: Float32Array, from: number, len: number): Float32Array => {
    const out = new Float32Array(nTokens * len);
    for (let t = 0; t < nTokens; t++) out.set(buf.subarray(t * rowLen + from, t * rowLen + from + len), t * len);
    return out;
  };
  for (const mode of ['neox', 'interleaved'] as const) {
    for (const table of [true, false]) {
      const opts = table ? { invFreq: inv } : { theta: 1e6 };
      const wantQ = refRope.rope(slice(qkv, 0, nHeads * headDim), pos, { nHeads, headDim, mode, ...opts });
      const wantK = refRope.rope(slice(qkv, nHeads * headDim, nKvHeads * headDim), pos, { nHeads: nKvHeads, headDim, mode, ...opts });
      onAll(`rope fused ${mode}`, (rt) => {
        const xo = rt.stage('test.a', qkv);
        const po = rt.stage('test.b', Int32Array.from(pos));
        const fo = rt.stage('test.c', inv);
        const tables = table ? { invFreq: fo } : { theta: 1e6 };
        rope.ropeAt(rt, {
          q: { x: xo, nHeads, tokenStride: rowLen }, k: { x: xo + nHeads * headDim * 4, nHeads: nKvHeads, tokenStride: rowLen },
          nTokens, headDim, mode, positions: po, ...tables,
        });
        const all = arena.f32.slice(xo >> 2, (xo >> 2) + qkv.length);
        checkParity('rope', slice(all, 0, nHeads * headDim), wantQ, `fused q ${mode}`);
        checkParity('rope', slice(all, nHeads * headDim, nKvHeads * headDim), wantK, `fused k ${mode}`);
        const vFrom = (nHeads + nKvHeads) * headDim;
        sameBits(slice(all, vFrom, nKvHeads * headDim), slice(qkv, vFrom, nKvHeads * headDim), 'v untouched');
        return all;
      });
    }
  }
  // The theta table is cached per runtime: switching theta must rebuild it.
  const x = normalArray(rng, 2 * 64);
  for (const theta of [10000, 1e6, 10000]) {
    const want = refRope.rope(x, [5, 40000], { nHeads: 1, headDim: 64, theta });
    for (const got of onAll(`rope theta ${theta}`, (rt) => rope.rope(rt, x, [5, 40000], { nHeads: 1, headDim: 64, theta }))) checkParity('rope', got, want, `theta ${theta}`);
  }
});

test('rope reference: position 0 is identity, p then q is p + q, matches the HF / GPT-J formulas', () => {
  const rng = mulberry32(16);
  for (const mode of ['neox', 'interleaved'] as const) {
    const [nHeads, headDim, rotaryDim] = [3, 80, 64];
    const x = normalArray(rng, 2 * nHeads * headDim);
    sameBits(refRope.rope(x, [0, 0], { nHeads, headDim, rotaryDim, mode }), x, 'identity at 0');
    const p = [1234, 70000];
    const q = [4321, 29999];
    const twice = refRope.rope(refRope.rope(x, p, { nHeads, headDim, rotaryDim, mode }), q, { nHeads, headDim, rotaryDim, mode });
    const once = refRope.rope(x, [p[0]! + q[0]!, p[1]! + q[1]!], { nHeads, headDim, rotaryDim, mode });
    assert.ok(nmse(twice, once) < 1e-12, `composition ${mode}: ${nmse(twice, once)}`);
    const inv = refRope.ropeInvFreq(10000, rotaryDim);
    assert.ok(nmse(refRope.rope(x, p, { nHeads, headDim, rotaryDim, mode }), ropeDirect(x, p, nHeads, headDim, rotaryDim, inv, mode)) < 1e-13);
  }
  // headDim 2, invFreq 1: (1, 0) at position 1 becomes (cos 1, sin 1) (the rotation's direction).
  const y = refRope.rope(new Float32Array([1, 0]), [1], { nHeads: 1, headDim: 2, invFreq: new Float32Array([1]) });
  assert.deepEqual([...y], [Math.fround(Math.cos(1)), Math.fround(Math.sin(1))]);
  assert.deepEqual([...refRope.ropeInvFreq(100, 4)], [1, Math.fround(0.1)]);
});

/** A table of `vocab` rows of `dim` values of `dtype`: random bit patterns (NaN, Inf, subnormals) or N(0, 1) values. */
function makeTable(rng: () => number, dtype: DType, vocab: number, dim: number, rawBits: boolean): Uint8Array {
  if (!rawBits) return encodeArray(dtype, normalArray(rng, vocab * dim));
  const t = new Uint8Array(vocab * rowSizeBytes(dtype, dim));
  for (let i = 0; i < t.length; i++) t[i] = Math.floor(rng() * 256);
  return t;
}

test('embedding: every dtype decodes exactly like decodeRow (raw bit patterns included)', () => {
  const rng = mulberry32(17);
  for (const dtype of DTYPE_NAMES) {
    const dims = dtype === 'q8_0' || dtype === 'q4_0' ? [32, 64, 96, 896] : [1, 3, 17, 64, 80, 896];
    for (const dim of dims) {
      for (const rawBits of [false, true]) {
        const vocab = 37;
        const table = makeTable(rng, dtype, vocab, dim, rawBits);
        const ids = Array.from({ length: randInt(rng, 1, 34) }, () => randInt(rng, 0, vocab));
        ids[0] = vocab - 1;
        const want = refEmb.embedding(table, dtype, dim, ids);
        const direct = new Float32Array(dim);
        decodeRow(dtype, table, ids[0]! * rowSizeBytes(dtype, dim), dim, direct, 0);
        for (let i = 0; i < dim; i++) assert.ok(Object.is(want[i], direct[i]), 'reference = decodeRow');
        for (const got of onAll(`embedding ${dtype} ${dim}`, (rt) => emb.embedding(rt, table, dtype, dim, ids))) {
          for (let i = 0; i < want.length; i++) {
            if (!Object.is(got[i], want[i])) assert.fail(`embedding ${dtype} dim ${dim}: element ${i} is ${got[i]}, decodeRow gives ${want[i]}`);
          }
          if (!rawBits) {
            const e = nmse(got, want);
            worst.set(`embedding ${dtype}`, Math.max(worst.get(`embedding ${dtype}`) ?? 0, e));
            assert.ok(e <= parityBound('embedding', dtype));
          }
        }
      }
    }
  }
});

test('argmax / top-k: n = 151936 with ties and NaN, adversarial order, k up to n; refs', () => {
  const rng = mulberry32(18);
  const n = 151936;
  const tied = normalArray(rng, n).map((v) => Math.round(v * 4) / 4); // ~30 distinct values: many ties
  const withNan = Float32Array.from(tied);
  withNan[100_000] = NaN;
  withNan[140_000] = NaN;
  const ascending = Float32Array.from({ length: 40000 }, (_, i) => Math.floor(i / 3));
  const cases: Array<[string, Float32Array, number[]]> = [
    ['ties', tied, [1, 2, 50, 100]],
    ['nan', withNan, [1, 3, 100]],
    ['ascending', ascending, [1, 100, 40000]],
    ['small', new Float32Array([2, -0, 0, 2, -Infinity]), [1, 2, 5]],
    ['one', new Float32Array([-Infinity]), [1]],
  ];
  for (const [name, x, ks] of cases) {
    const wantArg = refSel.argmax(x);
    for (const [one, two] of runtimes) {
      assert.equal(sel.argmax(one, x), wantArg, `argmax ${name}`);
      assert.equal(sel.argmax(two, x), wantArg, `argmax ${name}, 2 threads`);
    }
    for (const k of ks) {
      const want = refSel.topK(x, k);
      assert.equal(want.indices[0], wantArg, 'argmax = top-1');
      for (const [one, two] of runtimes) {
        for (const rt of [one, two]) {
          const got = sel.topK(rt, x, k);
          assert.deepEqual([...got.indices], [...want.indices], `topK ${name} k ${k} (${rt.nThreads} threads)`);
          sameBits(got.values, want.values, `topK ${name} k ${k} values`);
        }
      }
    }
  }
  assert.equal(refSel.argmax([1, 3, 3, 2]), 1, 'first index on ties');
  assert.equal(refSel.argmax([1, NaN, 5, NaN]), 1, 'NaN is the largest');
  assert.equal(refSel.argmax([-0, 0]), 0, '-0 and +0 tie');
  assert.deepEqual([...refSel.topK(new Float32Array([1, 5, 5, NaN, 2]), 4).indices], [3, 1, 2, 4]);
});

test('typed errors for bad shapes, options, ids and offsets', () => {
  const [rt] = runtimes[0]!;
  const x = new Float32Array(8);
  assert.throws(() => ew.rmsnorm(rt, x, new Float32Array(3), 1e-6), ShapeError);
  assert.throws(() => ew.rmsnorm(rt, x, new Float32Array(4), -1), ConfigError);
  assert.throws(() => refNorm.rmsnorm(x, new Float32Array(4), NaN), ConfigError);
  assert.throws(() => ew.softmax(rt, x, 3), ShapeError);
  assert.throws(() => ew.softmax(rt, x, 4, 0), ConfigError);
  assert.throws(() => ew.siluMul(rt, x, new Float32Array(7)), ShapeError);
  assert.throws(() => ew.residualAdd(rt, x, new Float32Array(9)), ShapeError);
  assert.throws(() => rope.rope(rt, x, [0], { nHeads: 1, headDim: 8, rotaryDim: 5 }), ConfigError);
  assert.throws(() => rope.rope(rt, x, [0], { nHeads: 1, headDim: 8, rotaryDim: 10 }), ConfigError);
  assert.throws(() => rope.rope(rt, x, [0], { nHeads: 1, headDim: 8, theta: 0 }), ConfigError);
  assert.throws(() => rope.rope(rt, x, [0], { nHeads: 1, headDim: 8, invFreq: new Float32Array(3) }), ShapeError);
  assert.throws(() => rope.rope(rt, x, [0, 1], { nHeads: 1, headDim: 8 }), ShapeError);
  assert.throws(() => rope.rope(rt, x, [0.5], { nHeads: 1, headDim: 8 }), ConfigError);
  assert.throws(() => rope.rope(rt, x, [0], { nHeads: 1, headDim: 8, mode: 'gptj' as refRope.RopeMode }), ConfigError);
  const table = new Uint8Array(4 * 8);
  assert.throws(() => emb.embedding(rt, table, 'f32', 8, [0, 4]), OutOfRangeError);
  assert.throws(() => emb.embedding(rt, table, 'f32', 8, [-1]), OutOfRangeError);
  assert.throws(() => emb.embedding(rt, new Uint8Array(34), 'q8_0', 16, [0]), DTypeError);
  assert.throws(() => emb.embedding(rt, new Uint8Array(33), 'f32', 8, [0]), ShapeError);
  const ids = rt.stage('test.a', new Int32Array([0, 7]));
  const to = rt.stage('test.b', table);
  const out = rt.scratch('test.c', 64);
  assert.throws(() => emb.embeddingAt(rt, { table: to, dtype: 'f32', vocab: 4, dim: 2, ids, nTokens: 2, out }), OutOfRangeError);
  assert.throws(() => ew.residualAddAt(rt, { a: arena.mappedBytes - 8, b: out, y: out, n: 4 }), OutOfRangeError);
  assert.throws(() => ew.rmsnormAt(rt, { x: out + 2, weight: out, nRows: 1, dim: 1, eps: 0 }), ConfigError);
  assert.throws(() => sel.topK(rt, x, 0), ConfigError);
  assert.throws(() => sel.topK(rt, x, 9), ConfigError);
  assert.throws(() => sel.argmax(rt, new Float32Array(0)), ShapeError);
  assert.throws(() => refSel.topK(x, 2.5), ConfigError);
});

test('parity summary (worst NMSE per kernel, for tolerances.ts)', (t) => {
  for (const [k, v] of [...worst.entries()].sort()) t.diagnostic(`${k}: worst NMSE ${v.toExponential(2)} (builds: ${variants.join(', ')})`);
  assert.ok(worst.size >= 6);
});
