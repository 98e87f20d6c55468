/**
 * The dtype table, row sizes, parsing errors and the row codecs (encodeRow / decodeRow,
 * encodeArray / decodeArray). The f16 / bf16 / quant codecs themselves are tested in
 * core-half and core-quant; here the row layer must agree with them byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DTYPES, DTYPE_NAMES, type DType, checkRowLength, decodeArray, decodeRow, encodeArray, encodeRow, isDType, parseDType, rowSizeBytes,
} from '../src/core/dtype.js';
import { DTypeError, KVCacheError, ShapeError } from '../src/core/errors.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/core/half.js';
import { quantizeQ4_0, quantizeQ8_0 } from '../src/core/quant.js';

const sample = (n: number, seed = 1): number[] =>
  Array.from({ length: n }, (_, i) => Math.fround(Math.sin((i + 1) * 12.9898 * seed) * 7.5));

test('dtype table and names', () => {
  assert.deepEqual([...DTYPE_NAMES].sort(), ['bf16', 'f16', 'f32', 'q4_0', 'q8_0']);
  assert.deepEqual(DTYPES.f32, { blockValues: 1, blockBytes: 4, quantized: false });
  assert.deepEqual(DTYPES.f16, { blockValues: 1, blockBytes: 2, quantized: false });
  assert.deepEqual(DTYPES.bf16, { blockValues: 1, blockBytes: 2, quantized: false });
  assert.deepEqual(DTYPES.q8_0, { blockValues: 32, blockBytes: 34, quantized: true });
  assert.deepEqual(DTYPES.q4_0, { blockValues: 32, blockBytes: 18, quantized: true });
  assert.equal(isDType('q8_0'), true);
  assert.equal(isDType('Q8_0'), false);
  assert.equal(isDType('toString'), false); // not fooled by Object.prototype
  assert.equal(isDType(undefined), false);
  assert.equal(isDType(16), false);
});

test('rowSizeBytes for each dtype', () => {
  assert.equal(rowSizeBytes('f32', 64), 256);
  assert.equal(rowSizeBytes('f16', 64), 128);
  assert.equal(rowSizeBytes('bf16', 64), 128);
  assert.equal(rowSizeBytes('q8_0', 64), 68);
  assert.equal(rowSizeBytes('q4_0', 64), 36);
  assert.equal(rowSizeBytes('q8_0', 128), 136);
  assert.equal(rowSizeBytes('q4_0', 32), 18);
  assert.equal(rowSizeBytes('f16', 7), 14); // plain floats take any length
  assert.equal(rowSizeBytes('f32', 0), 0);
  assert.equal(rowSizeBytes('q8_0', 0), 0);
});

test('row lengths that are not a multiple of 32 are rejected for q8_0 / q4_0 with DTypeError', () => {
  for (const dt of ['q8_0', 'q4_0'] as const) {
    assert.throws(
      () => rowSizeBytes(dt, 48),
      (e: unknown) => {
        assert.ok(e instanceof DTypeError);
        assert.ok(e instanceof KVCacheError);
        assert.equal(e.given, 48);
        assert.match(e.message, /48/);
        assert.match(e.message, /multiple of 32/);
        assert.match(e.message, new RegExp(dt));
        return true;
      },
    );
    assert.throws(() => checkRowLength(dt, 33), DTypeError);
  }
  checkRowLength('q8_0', 96); // no throw
  checkRowLength('f32', 33);
});

test('parseDType accepts the names and rejects f64 naming the valid ones', () => {
  for (const n of DTYPE_NAMES) assert.equal(parseDType(n), n);
  assert.throws(
    () => parseDType('f64', '--kv'),
    (e: unknown) => {
      assert.ok(e instanceof DTypeError);
      assert.equal(e.name, 'DTypeError');
      assert.equal(e.given, 'f64');
      for (const s of ['f64', 'f32', 'f16', 'bf16', 'q8_0', 'q4_0', '--kv']) assert.ok(e.message.includes(s), `message has ${s}: ${e.message}`);
      return true;
    },
  );
  assert.throws(() => parseDType(undefined), DTypeError);
  assert.throws(() => parseDType(42), DTypeError);
});

test('f32 rows round trip exactly, bytes little-endian', () => {
  const src = [1, -2, 0.1, -0, Infinity, -Infinity, 3.4028234663852886e38, 1.401298464324817e-45];
  const bytes = new Uint8Array(rowSizeBytes('f32', src.length));
  encodeRow('f32', src, 0, src.length, bytes, 0);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]); // 1.0f, -2.0f
  assert.deepEqual([...bytes.subarray(12, 16)], [0x00, 0x00, 0x00, 0x80]); // -0
  const out = new Float32Array(src.length);
  decodeRow('f32', bytes, 0, src.length, out, 0);
  for (let i = 0; i < src.length; i++) assert.ok(Object.is(out[i], Math.fround(src[i]!)), `index ${i}: ${out[i]}`);
  const nan = new Uint8Array(4);
  encodeRow('f32', [NaN], 0, 1, nan, 0);
  const back = new Float32Array(1);
  decodeRow('f32', nan, 0, 1, back, 0);
  assert.ok(Number.isNaN(back[0]));
});

test('f16 / bf16 rows equal the scalar conversions, LE bytes', () => {
  const src = [...sample(40), 0, -0, 65504, 65520, 1e-8, -Infinity, NaN, 2 ** -24, 2 ** -25];
  for (const [dt, enc, dec] of [
    ['f16', f32ToF16Bits, f16BitsToF32],
    ['bf16', f32ToBf16Bits, bf16BitsToF32],
  ] as const) {
    const bytes = new Uint8Array(rowSizeBytes(dt, src.length));
    encodeRow(dt, src, 0, src.length, bytes, 0);
    const out = new Float32Array(src.length);
    decodeRow(dt, bytes, 0, src.length, out, 0);
    for (let i = 0; i < src.length; i++) {
      const h = enc(src[i]!);
      assert.equal(bytes[2 * i]! | (bytes[2 * i + 1]! << 8), h, `${dt} bits at ${i}`);
      const want = dec(h);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(out[i]));
      else assert.ok(Object.is(out[i], want), `${dt} value at ${i}: ${out[i]} vs ${want}`);
    }
  }
  // Hand-checked constants: 1.0 -> f16 0x3c00 (bytes 00 3c), bf16 0x3f80 (bytes 80 3f).
  const one = new Uint8Array(2);
  encodeRow('f16', [1], 0, 1, one, 0);
  assert.deepEqual([...one], [0x00, 0x3c]);
  encodeRow('bf16', [1], 0, 1, one, 0);
  assert.deepEqual([...one], [0x80, 0x3f]);
});

test('q8_0 / q4_0 rows are the quantizer bytes; all dtypes agree on odd, unaligned offsets', () => {
  const n = 64;
  const src = [9, 9, 9, ...sample(n, 3)]; // srcOff = 3
  const q8 = new Uint8Array(68);
  quantizeQ8_0(src, 3, n, q8, 0);
  const q4 = new Uint8Array(36);
  quantizeQ4_0(src, 3, n, q4, 0);
  for (const dt of DTYPE_NAMES) {
    const size = rowSizeBytes(dt, n);
    const aligned = new Uint8Array(size);
    encodeRow(dt, src, 3, n, aligned, 0);
    if (dt === 'q8_0') assert.deepEqual([...aligned], [...q8]);
    if (dt === 'q4_0') assert.deepEqual([...aligned], [...q4]);
    // dstOff odd: the same bytes shifted, nothing around them written.
    const buf = new Uint8Array(size + 10).fill(0xee);
    encodeRow(dt, src, 3, n, buf, 7);
    assert.deepEqual([...buf.subarray(7, 7 + size)], [...aligned], dt);
    assert.ok(buf.subarray(0, 7).every((b) => b === 0xee), `${dt} wrote before dstOff`);
    assert.ok(buf.subarray(7 + size).every((b) => b === 0xee), `${dt} wrote past the row`);
    // Decode from the odd offset into an offset destination (Float32 and Float64).
    const ref = new Float32Array(n);
    decodeRow(dt, aligned, 0, n, ref, 0);
    const out32 = new Float32Array(n + 5).fill(-7);
    decodeRow(dt, buf, 7, n, out32, 5);
    assert.deepEqual([...out32.subarray(0, 5)], [-7, -7, -7, -7, -7]);
    assert.deepEqual([...out32.subarray(5)], [...ref], dt);
    const out64 = new Float64Array(n);
    decodeRow(dt, buf, 7, n, out64, 0);
    assert.deepEqual([...out64], [...ref], `${dt} f64 destination`);
  }
});

test('decoded rows are close to the input for every dtype', () => {
  const src = sample(96, 5);
  const tol: Record<DType, number> = { f32: 0, f16: 2 ** -11, bf16: 2 ** -8, q8_0: 0.6 / 127, q4_0: 1.1 / 8 };
  for (const dt of DTYPE_NAMES) {
    const out = decodeArray(dt, encodeArray(dt, src), src.length);
    assert.equal(out.length, src.length);
    let amax = 0;
    for (const v of src) amax = Math.max(amax, Math.abs(v));
    for (let i = 0; i < src.length; i++) {
      const bound = dt === 'q8_0' || dt === 'q4_0' ? tol[dt] * amax : tol[dt] * Math.abs(src[i]!);
      assert.ok(Math.abs(out[i]! - src[i]!) <= bound, `${dt} [${i}]: ${out[i]} vs ${src[i]}`);
    }
  }
});

test('encodeArray / decodeArray sizes and errors', () => {
  assert.equal(encodeArray('f32', [1, 2, 3]).length, 12);
  assert.equal(encodeArray('f16', [1, 2, 3]).length, 6);
  assert.equal(encodeArray('q8_0', sample(64)).length, 68);
  assert.equal(encodeArray('q4_0', sample(96)).length, 54);
  assert.deepEqual([...decodeArray('f32', encodeArray('f32', [1.5, -3]), 2)], [1.5, -3]);
  assert.deepEqual([...decodeArray('f16', new Uint8Array([0x00, 0x3c, 0x00, 0xc0]), 2)], [1, -2]);
  assert.throws(() => encodeArray('q8_0', sample(48)), ShapeError);
  assert.throws(() => encodeArray('q4_0', sample(33)), ShapeError);
  assert.throws(
    () => decodeArray('f16', new Uint8Array(5), 3),
    (e: unknown) => e instanceof ShapeError && e.expected === 6 && e.given === 5,
  );
  assert.throws(() => decodeArray('q8_0', new Uint8Array(68), 48), DTypeError);
  // A longer buffer is fine: only the needed bytes are read.
  assert.deepEqual([...decodeArray('bf16', new Uint8Array([0x80, 0x3f, 0xff, 0xff]), 1)], [1]);
});

test('f32 / f16 / bf16 round trips (fast-check)', () => {
  fc.assert(
    fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 70 }), fc.integer({ min: 0, max: 9 }), (xs, off) => {
      for (const dt of ['f32', 'f16', 'bf16'] as const) {
        const buf = new Uint8Array(off + rowSizeBytes(dt, xs.length));
        encodeRow(dt, xs, 0, xs.length, buf, off);
        const out = new Float32Array(xs.length);
        decodeRow(dt, buf, off, xs.length, out, 0);
        for (let i = 0; i < xs.length; i++) {
          const want = dt === 'f32' ? xs[i]! : dt === 'f16' ? f16BitsToF32(f32ToF16Bits(xs[i]!)) : bf16BitsToF32(f32ToBf16Bits(xs[i]!));
          if (!Object.is(out[i], want)) assert.fail(`${dt} off ${off} [${i}]: ${xs[i]} -> ${out[i]}, expected ${want}`);
        }
      }
    }),
    { numRuns: 500, seed: 11 },
  );
});
