/**
 * Linear layers: the reference matvec / matmul against a naive float64 product of the decoded
 * weights, the WASM kernels against the reference (NMSE within the parity table, every output
 * within a per-element bound, 1 and 2 threads bit-identical, matmul rows equal to matvec),
 * dtype edge values, no arena allocation once warm, and the typed errors of both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { decodeArray, encodeArray, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import { matmul, matvec } from '../src/kernels/ref/linear.js';
import { nmse, parityBound } from '../src/kernels/tolerances.js';
import { matmulAt, matvecAt, uploadWeights, wasmMatmul, wasmMatvec } from '../src/kernels/wasm/linear.js';
import { variantSupported } from '../src/kernels/wasm/load.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { mulberry32, normalArray, type Rng } from './helpers/rng.js';

const DTYPES: DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
const QUANT_IN = [32, 64, 96, 896, 4864];
const FLOAT_IN = [17, 33, 100, ...QUANT_IN];
const OUTS = [1, 3, 17, 64, 130];
const TOKENS = [2, 5, 9, 33];
const VARIANTS = (['simd', 'relaxed'] as const).filter((v) => variantSupported(v));

/**
 * Per-element error bound: |y - yRef| * sqrt(nIn) / (|W_o| |x_t|), i.e. the error in units of a
 * typical dot of two random vectors of these norms. A wrong, dropped or mis-decoded row is off by
 * ~1 in these units; f32 rounding is ~1e-6 and the int8 activations of q8_0 / q4_0 ~3e-2.
 */
const ELEMENT_BOUND: Readonly<Record<DType, number>> = { f32: 1e-4, f16: 1e-4, bf16: 1e-4, q8_0: 0.15, q4_0: 0.15 };
/** NMSE is only meaningful over enough outputs: a single output near 0 has a huge relative error. */
const NMSE_MIN_OUTPUTS = 16;

const arena = new Arena({ initialBytes: 64 << 20 });
const runtimes = new Map<string, KernelRuntime>();
function runtime(nThreads: number, variant: (typeof VARIANTS)[number] = VARIANTS[0]!): KernelRuntime {
  const key = `${variant}/${nThreads}`;
  let rt = runtimes.get(key);
  if (!rt) runtimes.set(key, (rt = KernelRuntime.for(arena, { nThreads, variant })));
  return rt;
}

function weights(rng: Rng, dtype: DType, nOut: number, nIn: number): Uint8Array {
  return encodeArray(dtype, normalArray(rng, nOut * nIn));
}

/** The element-wise check of ELEMENT_BOUND over y [nTokens, nOut]. */
function checkElements(y: Float32Array, ref: Float32Array, w: Uint8Array, dtype: DType, nOut: number, nIn: number, x: Float32Array, label: string): void {
  const wf = decodeArray(dtype, w, nOut * nIn); // [nOut, nIn]
  const nTokens = x.length / nIn;
  const wNorm = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) for (let i = 0; i < nIn; i++) wNorm[o]! += wf[o * nIn + i]! ** 2;
  for (let t = 0; t < nTokens; t++) {
    let xNorm = 0;
    for (let i = 0; i < nIn; i++) xNorm += x[t * nIn + i]! ** 2;
    for (let o = 0; o < nOut; o++) {
      const e = (Math.abs(y[t * nOut + o]! - ref[t * nOut + o]!) * Math.sqrt(nIn)) / Math.sqrt(wNorm[o]! * xNorm);
      assert.ok(e <= ELEMENT_BOUND[dtype], `${label}: y[${t}, ${o}] = ${y[t * nOut + o]} vs ref ${ref[t * nOut + o]} (scaled error ${e})`);
    }
  }
}

function sameBits(a: Float32Array, b: Float32Array, label: string): void {
  assert.equal(a.length, b.length, label);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${label}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}

test('ref matvec / matmul equal a naive float64 product of the decoded weights', () => {
  const rng = mulberry32(11);
  for (const dtype of DTYPES) {
    const [nOut, nIn, nTokens] = [5, 64, 3];
    const w = weights(rng, dtype, nOut, nIn);
    const wf = decodeArray(dtype, w, nOut * nIn);
    const x = normalArray(rng, nTokens * nIn);
    const y = matmul(w, dtype, nOut, nIn, x, nTokens);
    for (let t = 0; t < nTokens; t++) {
      for (let o = 0; o < nOut; o++) {
        let s = 0;
        for (let i = 0; i < nIn; i++) s += wf[o * nIn + i]! * x[t * nIn + i]!;
        assert.equal(y[t * nOut + o], Math.fround(s), `${dtype} [${t}, ${o}]`);
      }
    }
    assert.deepEqual(matvec(w, dtype, nOut, nIn, x.subarray(0, nIn)), y.subarray(0, nOut));
  }
});

for (const variant of VARIANTS) {
  for (const dtype of DTYPES) {
    test(`wasm (${variant}) ${dtype}: parity with the reference, 1 vs 2 threads identical, matmul rows = matvec`, (t) => {
      const rng = mulberry32(1000 + DTYPES.indexOf(dtype));
      const rt1 = runtime(1, variant);
      const rt2 = runtime(2, variant);
      const family = (nTokens: number): 'matvec' | 'matmul' => (nTokens === 1 ? 'matvec' : 'matmul');
      const worst = { matvec: 0, matmul: 0 };
      for (const nIn of dtype.startsWith('q') ? QUANT_IN : FLOAT_IN) {
        for (const nOut of OUTS) {
          const w = weights(rng, dtype, nOut, nIn);
          const wOff = uploadWeights(arena, w);
          const x = normalArray(rng, TOKENS[TOKENS.length - 1]! * nIn);
          for (const nTokens of [1, ...TOKENS]) {
            const label = `${dtype} nOut ${nOut} nIn ${nIn} nTokens ${nTokens}`;
            const xt = x.subarray(0, nTokens * nIn);
            const ref = matmul(w, dtype, nOut, nIn, xt, nTokens);
            const y1 = wasmMatmul(rt1, wOff, dtype, nOut, nIn, xt, nTokens);
            const y2 = wasmMatmul(rt2, wOff, dtype, nOut, nIn, xt, nTokens);
            sameBits(y1, y2, `${label}: 1 vs 2 threads`);
            checkElements(y1, ref, w, dtype, nOut, nIn, xt, label);
            if (y1.length >= NMSE_MIN_OUTPUTS) {
              const e = nmse(y1, ref);
              worst[family(nTokens)] = Math.max(worst[family(nTokens)], e);
              assert.ok(e <= parityBound(family(nTokens), dtype), `${label}: NMSE ${e} > ${parityBound(family(nTokens), dtype)}`);
            }
            // Short rows (96, 100) take the one-row path of the matvec, long ones (4864) the tiles.
            if (nTokens > 1 && nTokens <= 9 && (nIn === 96 || nIn === 100 || nIn === 4864) && nOut >= 17) {
              for (let t = 0; t < nTokens; t++) {
                const v = wasmMatvec(rt2, wOff, dtype, nOut, nIn, xt.subarray(t * nIn, (t + 1) * nIn));
                sameBits(v, y1.subarray(t * nOut, (t + 1) * nOut), `${label}: matmul row ${t} vs matvec`);
              }
            }
          }
          arena.free(wOff);
        }
      }
      // The measured worst values, for the parity table (tolerances.ts).
      t.diagnostic(`${dtype} worst NMSE: matvec ${worst.matvec.toExponential(2)}, matmul ${worst.matmul.toExponential(2)}`);
    });
  }
}

test('the checks catch weight rows mis-addressed by one row (by NMSE and by the per-element bound)', () => {
  const rt = runtime(1);
  const rng = mulberry32(4);
  for (const dtype of DTYPES) {
    const [nOut, nIn] = [17, 96];
    const w = weights(rng, dtype, nOut + 1, nIn); // one spare row after the layer
    const wOff = uploadWeights(arena, w);
    const x = normalArray(rng, nIn);
    const layer = w.subarray(0, nOut * rowSizeBytes(dtype, nIn));
    const ref = matvec(layer, dtype, nOut, nIn, x);
    const shifted = wasmMatvec(rt, wOff + rowSizeBytes(dtype, nIn), dtype, nOut, nIn, x); // rows 1..nOut
    assert.ok(nmse(shifted, ref) > 100 * parityBound('matvec', dtype), `${dtype}: NMSE ${nmse(shifted, ref)}`);
    assert.throws(() => checkElements(shifted, ref, layer, dtype, nOut, nIn, x, dtype), assert.AssertionError);
    checkElements(wasmMatvec(rt, wOff, dtype, nOut, nIn, x), ref, layer, dtype, nOut, nIn, x, dtype);
    arena.free(wOff);
  }
});

test('wasm: f16 / bf16 Inf, NaN, subnormal and signed-zero weights read as the reference reads them', () => {
  const rt = runtime(2);
  const nOut = 8;
  const nIn = 46; // 5 groups of 8, then a 4-group and 2 scalars: special values in each part
  const rng = mulberry32(5);
  for (const dtype of ['f16', 'bf16'] as const) {
    const vals = normalArray(rng, nOut * nIn, 0.5);
    vals[1 * nIn + 3] = Infinity; // row 1: +Inf
    vals[2 * nIn + 10] = -Infinity; // row 2: -Inf
    vals[3 * nIn + 17] = NaN; // row 3: NaN
    vals[4 * nIn + 42] = Infinity; // row 4: +Inf in the 4-group tail
    vals[7 * nIn + 45] = NaN; // row 7: NaN in the scalar tail
    vals[5 * nIn + 0] = dtype === 'f16' ? 2 ** -24 : 2 ** -130; // row 5: the smallest subnormal
    vals[5 * nIn + 1] = -0;
    vals[6 * nIn + 6] = 65504; // row 6: the largest f16 (finite: must stay finite)
    const w = encodeArray(dtype, vals);
    const wOff = uploadWeights(arena, w);
    const x = new Float32Array(nIn).fill(1);
    const ref = matvec(w, dtype, nOut, nIn, x);
    for (const nTokens of [1, 5]) {
      const xs = new Float32Array(nTokens * nIn).fill(1);
      const y = wasmMatmul(rt, wOff, dtype, nOut, nIn, xs, nTokens);
      for (let t = 0; t < nTokens; t++) {
        for (let o = 0; o < nOut; o++) {
          const a = y[t * nOut + o]!;
          const b = ref[o]!;
          if (!Number.isFinite(b)) assert.ok(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)), `${dtype} row ${o}: ${a} vs ${b}`);
          else assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${dtype} row ${o}: ${a} vs ${b}`);
        }
      }
    }
    assert.equal(ref[1], Infinity);
    assert.ok(Number.isNaN(ref[3]!));
    arena.free(wOff);
  }
});

test('wasm: NaN in x gives NaN outputs for every weight dtype; zero x zeros; tiny x about zero', () => {
  const rt = runtime(1);
  const rng = mulberry32(6);
  for (const dtype of DTYPES) {
    const [nOut, nIn] = [5, 64];
    const wOff = uploadWeights(arena, weights(rng, dtype, nOut, nIn));
    const x = normalArray(rng, nIn);
    x[40] = NaN;
    for (const v of wasmMatvec(rt, wOff, dtype, nOut, nIn, x)) assert.ok(Number.isNaN(v), `${dtype}: ${v}`);
    assert.deepEqual([...wasmMatvec(rt, wOff, dtype, nOut, nIn, new Float32Array(nIn))], new Array(nOut).fill(0));
    // A block of |x| ~ 1e-39 (its q8_0 scale would be subnormal): finite, about zero.
    for (const v of wasmMatvec(rt, wOff, dtype, nOut, nIn, new Float32Array(nIn).fill(1e-39))) {
      assert.ok(Number.isFinite(v) && Math.abs(v) < 1e-30, `${dtype}: ${v}`);
    }
    arena.free(wOff);
  }
});

test('wasm: q8_0 / q4_0 scale edge cases (zero blocks, f16 subnormal scales) match the reference', () => {
  const rt = runtime(1);
  const rng = mulberry32(7);
  for (const dtype of ['q8_0', 'q4_0'] as const) {
    const [nOut, nIn] = [6, 160]; // 5 blocks per row: one whole group of 4 and a 1-block tail
    const vals = normalArray(rng, nOut * nIn);
    vals.fill(0, 0, 32); // row 0, block 0: all zero (d = 0)
    for (let i = nIn; i < 2 * nIn; i++) vals[i]! *= 1e-4; // row 1: scales are f16 subnormals
    const w = encodeArray(dtype, vals);
    const d1 = w[rowSizeBytes(dtype, nIn)]! | (w[rowSizeBytes(dtype, nIn) + 1]! << 8);
    assert.ok((d1 & 0x7c00) === 0 && d1 !== 0, `row 1 scale should be an f16 subnormal, got 0x${d1.toString(16)}`);
    const wOff = uploadWeights(arena, w);
    const x = normalArray(rng, 3 * nIn);
    const ref = matmul(w, dtype, nOut, nIn, x, 3);
    const y = wasmMatmul(rt, wOff, dtype, nOut, nIn, x, 3);
    checkElements(y, ref, w, dtype, nOut, nIn, x, `${dtype} edge scales`);
    arena.free(wOff);
  }
});

test('wasm: no arena allocation per call once warm', () => {
  const rt = runtime(2);
  const rng = mulberry32(8);
  for (const dtype of DTYPES) {
    const [nOut, nIn, nTokens] = [64, 256, 6];
    const wOff = uploadWeights(arena, weights(rng, dtype, nOut, nIn));
    const xOff = uploadWeights(arena, new Uint8Array(normalArray(rng, nTokens * nIn).buffer));
    const yOff = arena.alloc(nTokens * nOut * 4);
    matmulAt(rt, wOff, dtype, nOut, nIn, xOff, nTokens, yOff);
    matvecAt(rt, wOff, dtype, nOut, nIn, xOff, yOff);
    const live = arena.liveAllocations;
    const used = arena.usedBytes;
    for (let k = 0; k < 5; k++) {
      matmulAt(rt, wOff, dtype, nOut, nIn, xOff, nTokens, yOff);
      matvecAt(rt, wOff, dtype, nOut, nIn, xOff, yOff);
    }
    assert.equal(arena.liveAllocations, live, dtype);
    assert.equal(arena.usedBytes, used, dtype);
    for (const off of [wOff, xOff, yOff]) arena.free(off);
  }
});

test('wasm: touch-ahead stays inside the weights (a matrix ending at the last byte of memory)', () => {
  // The matvecs load bytes ahead of the row they compute (assembly/touch-ahead.ts); clamped to
  // the end of the thread's rows, a matrix at the very end of memory reads as one anywhere else,
  // where an unclamped touch would trap (out-of-bounds memory access) in the last thread.
  const rng = mulberry32(12);
  const [nOut, nIn] = [64, 896]; // 64 rows: whole 64-byte units for every dtype; several 4 KiB bursts
  for (const dtype of DTYPES) {
    const w = weights(rng, dtype, nOut, nIn);
    const small = new Arena({ initialBytes: 4 << 20, maximumBytes: 4 << 20 });
    const rt = KernelRuntime.for(small, { nThreads: 2 });
    try {
      const xOff = uploadWeights(small, new Uint8Array(normalArray(rng, nIn).buffer));
      const yOff = small.alloc(nOut * 4);
      matvecAt(rt, uploadWeights(small, w), dtype, nOut, nIn, xOff, yOff); // also sizes the runtime's scratch
      const expected = small.f32.slice(yOff / 4, yOff / 4 + nOut);
      small.alloc(small.freeBytes - w.byteLength); // padding: the next allocation ends at the arena's end
      const atEnd = uploadWeights(small, w);
      assert.equal(atEnd + w.byteLength, small.mappedBytes, `${dtype}: weights placed at the end of memory`);
      small.f32.fill(0, yOff / 4, yOff / 4 + nOut);
      matvecAt(rt, atEnd, dtype, nOut, nIn, xOff, yOff);
      assert.deepEqual(small.f32.slice(yOff / 4, yOff / 4 + nOut), expected, dtype);
    } finally {
      rt.dispose();
      small.dispose();
    }
  }
});

test('errors: ref validation is typed', () => {
  const w = encodeArray('q8_0', new Float32Array(64));
  const x = new Float32Array(32);
  assert.equal(matvec(w, 'q8_0', 2, 32, x).length, 2); // 64 values = 2 rows of 32
  assert.throws(() => matvec(w, 'q8_0', 3, 32, x), ShapeError); // weight bytes for 3 rows
  assert.throws(() => matvec(w, 'q8_0', 2, 32, new Float32Array(31)), ShapeError);
  assert.throws(() => matmul(w, 'q8_0', 2, 32, x, 2), ShapeError); // x holds 1 token, not 2
  assert.throws(() => matvec(w, 'q4_0', 4, 16, x), DTypeError); // nIn not a multiple of 32
  assert.throws(() => matvec(w, 'f8' as DType, 2, 32, x), DTypeError);
  assert.throws(() => matvec(w, 'q8_0', 0, 32, x), ConfigError);
  assert.throws(() => matvec(w, 'q8_0', 1.5, 32, x), ConfigError);
  assert.throws(() => matmul(w, 'q8_0', 2, 32, x, 0), ConfigError);
});

test('errors: wasm bindings validate dtype, shape, offsets and overlap', () => {
  const rt = runtime(1);
  const w = encodeArray('f32', new Float32Array(4 * 64));
  const wOff = uploadWeights(arena, w);
  const xOff = arena.alloc(64 * 4);
  const yOff = arena.alloc(4 * 4);
  matvecAt(rt, wOff, 'f32', 4, 64, xOff, yOff);
  assert.throws(() => matvecAt(rt, wOff, 'q4_0', 4, 48, xOff, yOff), DTypeError);
  assert.throws(() => matvecAt(rt, wOff, 'x' as DType, 4, 64, xOff, yOff), DTypeError);
  assert.throws(() => matvecAt(rt, wOff, 'f32', 0, 64, xOff, yOff), ConfigError);
  assert.throws(() => matmulAt(rt, wOff, 'f32', 4, 64, xOff, 0, yOff), ConfigError);
  assert.throws(() => matvecAt(rt, arena.mappedBytes - 16, 'f32', 4, 64, xOff, yOff), OutOfRangeError);
  assert.throws(() => matvecAt(rt, 0, 'f32', 4, 64, xOff, yOff), OutOfRangeError); // the module's reserved bytes
  assert.throws(() => matvecAt(rt, wOff, 'f32', 4, 64, xOff + 2, yOff), ConfigError); // misaligned f32
  assert.throws(() => matvecAt(rt, wOff, 'f32', 4, 64, xOff, xOff), ConfigError); // y overlaps x
  assert.throws(() => matvecAt(rt, wOff, 'f32', 4, 64, xOff, wOff + 16), ConfigError); // y overlaps W
  assert.throws(() => matmulAt(rt, wOff, 'f32', 4, 64, xOff, 1 << 20, yOff), OutOfRangeError); // x past the memory
  assert.throws(() => wasmMatvec(rt, wOff, 'f32', 4, 64, new Float32Array(63)), ShapeError);
  assert.throws(() => wasmMatmul(rt, wOff, 'f32', 4, 64, new Float32Array(64), 2), ShapeError);
  assert.throws(() => uploadWeights(arena, [1, 2, 3] as unknown as Uint8Array), ShapeError);
  for (const off of [wOff, xOff, yOff]) arena.free(off);
});

test('cleanup: dispose the runtimes and the arena', () => {
  for (const rt of runtimes.values()) rt.dispose();
  runtimes.clear();
  arena.dispose();
});
