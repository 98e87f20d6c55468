/**
 * ggml q8_0 / q4_0 codecs. Expected bytes of the fixed blocks are derived by hand in the
 * comments (cross-checked offline with numpy float32), never by calling the code under test.
 * The random tests compare with a line-by-line mirror of ggml's C reference quantizers
 * (quantize_row_q8_0_ref / quantize_row_q4_0_ref) and check dequantization error bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { f16BitsToF32, f32ToF16Bits } from '../src/core/half.js';
import {
  QK, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0,
} from '../src/core/quant.js';

const fr = Math.fround;
const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
function fromBits(u: number): number {
  U[0] = u >>> 0;
  return F[0]!;
}

function q8(values: number[]): Uint8Array {
  const out = new Uint8Array((values.length / QK) * Q8_0_BLOCK_BYTES);
  quantizeQ8_0(values, 0, values.length, out, 0);
  return out;
}
function q4(values: number[]): Uint8Array {
  const out = new Uint8Array((values.length / QK) * Q4_0_BLOCK_BYTES);
  quantizeQ4_0(values, 0, values.length, out, 0);
  return out;
}
/** A 32-value block: zeros except the given (index, value) pairs. */
function block(entries: Array<[number, number]>): number[] {
  const b = new Array<number>(QK).fill(0);
  for (const [i, v] of entries) b[i] = v;
  return b;
}
const int8Bytes = (qs: number[]): number[] => qs.map((q) => q & 0xff);

// ------------------------------------------------------------------ q8_0 fixed blocks

test('q8_0: block k*0.25 for k = -16..15', () => {
  // amax = 4 (k = -16). d = fround(4/127): 4/127 = 2^-5 * 128/127 = 2^-5 * (1 + 2^-7 + 2^-14 + 2^-21 + 2^-28 ...),
  // so the f32 mantissa is 0x010204 (f32 bits 0x3d010204) and d = (4/127)(1 - 2^-28).
  // id = fround(1/d) = fround(31.75 (1 + 2^-28)) = 31.75 exactly. So x*id = k*0.25*31.75 = 8k - k/16 exactly.
  // f16(d): d = 2^-5 * 1.007874..., 10-bit mantissa 0.007874 * 1024 = 8.06 -> 8: bits (10 << 10) | 8 = 0x2808.
  // q = roundf(8k - k/16): |k| < 8 -> 8k; k = +-8 -> +-63.5 ties away from zero -> +-64 = 8k; |k| >= 9 -> 8k - sign(k).
  const xs = Array.from({ length: 32 }, (_, i) => (i - 16) * 0.25);
  const qs = [
    -127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48, -40, -32, -24, -16, -8,
    0, 8, 16, 24, 32, 40, 48, 56, 64, 71, 79, 87, 95, 103, 111, 119,
  ];
  const out = q8(xs);
  assert.equal(out.length, 34);
  assert.deepEqual([...out], [0x08, 0x28, ...int8Bytes(qs)]);
  // Dequantized with the stored f16 scale 0x2808 = 2^-5 * (1 + 8/1024) = 0.031494140625.
  const deq = new Float32Array(32);
  dequantizeQ8_0(out, 0, 32, deq, 0);
  for (let j = 0; j < 32; j++) assert.equal(deq[j], fr(qs[j]! * 0.031494140625));
});

test('q8_0: roundf ties go away from zero (d = 1)', () => {
  // amax = 127 -> d = 127/127 = 1 (f16 0x3c00, bytes 00 3c), id = 1, q = roundf(x).
  const xs = block([
    [0, 127], [1, 2.5], [2, -2.5], [3, 0.5], [4, -0.5], [5, 1.5], [6, -1.5], [7, 126.5], [8, -126.5],
    [9, fr(0.49999997)], [10, -fr(0.49999997)], [11, 3.5], [12, -0], [13, -127], [14, 100.49], [15, -100.51],
  ]);
  const qs = block([
    [0, 127], [1, 3], [2, -3], [3, 1], [4, -1], [5, 2], [6, -2], [7, 127], [8, -127],
    [9, 0], [10, 0], [11, 4], [12, 0], [13, -127], [14, 100], [15, -101],
  ]);
  assert.deepEqual([...q8(xs)], [0x00, 0x3c, ...int8Bytes(qs)]);
});

test('q8_0: all zeros -> scale 0 and quants 0; -0 inputs too', () => {
  assert.deepEqual([...q8(new Array(32).fill(0))], new Array(34).fill(0));
  assert.deepEqual([...q8(new Array(32).fill(-0))], new Array(34).fill(0));
});

test('q8_0: arithmetic is f32 like ggml (d = fround(amax/127), id = fround(1/d), q = roundf(fround(x*id)))', () => {
  // Found offline with numpy float32. amax = f32 0x3fa7ea18 (1.31183147...), x = f32 0x3f921949 (1.14139664...).
  // d = 0.0103293815 (f16 0x214a), id = fround(1/d); fround(x*id) = 110.5 exactly -> roundf -> 111,
  // while exact arithmetic x*127/amax = 110.4999966 would give 110.
  let out = q8(block([[0, fromBits(0x3fa7ea18)], [1, fromBits(0x3f921949)]]));
  assert.deepEqual([out[0], out[1], out[2], out[3]], [0x4a, 0x21, 127, 111]);
  // amax = f32 0x3fa6cf17, x = f32 0x3e22de5b: fround(x*id) = 15.499999046 -> 15 (exact: 15.50000001 -> 16);
  // fround(amax*id) = 126.99999237 -> 127; f16(d) = 0x2141.
  out = q8(block([[0, fromBits(0x3fa6cf17)], [1, fromBits(0x3e22de5b)]]));
  assert.deepEqual([out[0], out[1], out[2], out[3]], [0x41, 0x21, 127, 15]);
});

// ------------------------------------------------------------------ q4_0 fixed blocks

test('q4_0: block k*0.25 for k = -16..15 (largest magnitude negative -> d positive)', () => {
  // max = -4 (k = -16), d = -4 / -8 = 0.5 (f16 0x3800, bytes 00 38), id = 2, x*id = k/2.
  // q = min(15, trunc(k/2 + 8.5)) = min(15, floor((k + 17) / 2)).
  // low nibbles (j = 0..15, k = -16..-1):   0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8
  // high nibbles (j = 16..31, k = 0..15):   8 9 9 10 10 11 11 12 12 13 13 14 14 15 15 15(16 clamped)
  const xs = Array.from({ length: 32 }, (_, i) => (i - 16) * 0.25);
  const nib = [0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8];
  const out = q4(xs);
  assert.equal(out.length, 18);
  assert.deepEqual([...out], [0x00, 0x38, ...nib]);
  // Dequantized: (nibble - 8) * 0.5; k = -16 is exact (-4), k = 15 (3.75) clamps to 7 * 0.5 = 3.5.
  const deq = new Float32Array(32);
  dequantizeQ4_0(out, 0, 32, deq, 0);
  assert.equal(deq[0], -4);
  assert.equal(deq[1], -3.5); // k = -15: -3.75 -> nibble 1 -> -3.5
  assert.equal(deq[16], 0);
  assert.equal(deq[31], 3.5);
  // Negating the block: max = +4, d = -0.5 (f16 0xb800), id = -2, x*id = (-k/4)(-2) = k/2 again: same nibbles.
  assert.deepEqual([...q4(xs.map((v) => -v))], [0x00, 0xb8, ...nib]);
});

test('q4_0: first value of largest magnitude picks the sign of d', () => {
  // -4 at index 3 and +4 at index 5: the first one (-4) wins -> d = 0.5 (0x3800); index 3 -> 0, index 5 -> 16 -> 15.
  let out = q4(block([[3, -4], [5, 4]]));
  assert.deepEqual([out[0], out[1], out[2 + 3], out[2 + 5]], [0x00, 0x38, 0x80, 0x8f]);
  // Swapped: +4 first -> d = -0.5 (0xb800); index 3 (+4) -> 0, index 5 (-4) -> 15.
  out = q4(block([[3, 4], [5, -4]]));
  assert.deepEqual([out[0], out[1], out[2 + 3], out[2 + 5]], [0x00, 0xb8, 0x80, 0x8f]);
});

test('q4_0: nibble rounding (trunc of fround(x*id + 8.5)) and clamping, d = 1', () => {
  // max = -8 at index 0 -> d = 1 (0x3c00), id = 1, q = min(15, trunc(fround(x + 8.5))).
  //   x[0] = -8            -> 0.5 -> 0
  //   x[1] = 0.5 - 2^-25   -> 9 - 2^-25 rounds to 9.0 in f32 (ulp 2^-20 in [8,16)) -> 9 (exact math: 8)
  //   x[2] = -0.5 - 2^-24  -> 8 - 2^-24 rounds to 8.0 in f32 (ulp 2^-21 in [4,8))  -> 8 (exact math: 7)
  //   x[3] = 0.5 -> 9;  x[4] = -0.5 -> 8;  x[5] = 7.5 -> 16 -> 15;  x[6] = -7.5 -> 1;  x[7] = 3.25 -> 11.75 -> 11
  //   x[16] = -3.25 -> 5;  x[17] = 1 -> 9;  x[18] = -1 -> 7;  x[19] = 7.99 -> 16.49 -> 16 -> 15;  zeros -> 8
  // byte j = low(x[j]) | high(x[j + 16]) << 4
  const xs = block([
    [0, -8], [1, 0.5 - 2 ** -25], [2, -0.5 - 2 ** -24], [3, 0.5], [4, -0.5], [5, 7.5], [6, -7.5], [7, 3.25],
    [16, -3.25], [17, 1], [18, -1], [19, 7.99],
  ]);
  assert.deepEqual([...q4(xs)], [0x00, 0x3c, 0x50, 0x99, 0x78, 0xf9, 0x88, 0x8f, 0x81, 0x8b, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88]);
});

test('q4_0: all zeros -> nibbles 8 (0x88); scale is -0 (0x8000) exactly as ggml computes 0.0f / -8', () => {
  // ggml: max = 0, d = max / -8 = -0.0f, GGML_FP32_TO_FP16(-0.0f) = 0x8000; id = 0; q = trunc(0 + 8.5) = 8.
  const out = q4(new Array(32).fill(0));
  assert.deepEqual([...out], [0x00, 0x80, ...new Array(16).fill(0x88)]);
  const deq = new Float32Array(32).fill(99);
  dequantizeQ4_0(out, 0, 32, deq, 0);
  for (const v of deq) assert.ok(v === 0, `${v}`); // (nibble 8 - 8) * -0 = -0 compares equal to 0
});

// ------------------------------------------------------------------ mirror of ggml's C and properties

function roundAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}
/** quantize_row_q8_0_ref, one line per C line, in f32. */
function refQ8(x: number[]): number[] {
  const out: number[] = [];
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(fr(x[b * 32 + j]!)));
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out.push(h & 0xff, h >> 8);
    for (let j = 0; j < 32; j++) out.push(roundAway(fr(fr(x[b * 32 + j]!) * id)) & 0xff);
  }
  return out;
}
/** quantize_row_q4_0_ref in f32. */
function refQ4(x: number[]): number[] {
  const out: number[] = [];
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = fr(x[b * 32 + j]!);
      if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
    }
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out.push(h & 0xff, h >> 8);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(x[b * 32 + j]!) * id);
      const x1 = fr(fr(x[b * 32 + 16 + j]!) * id);
      const q0 = Math.min(15, Math.trunc(fr(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(x1 + 8.5)));
      out.push(q0 | (q1 << 4));
    }
  }
  return out;
}

/**
 * Random rows of 1..4 blocks; each block gets its own magnitude 2^e with e in [-40, 18]
 * (q8_0 needs amax/127 and q4_0 amax/8 below the f16 max 65504: 2^18 * 1 / 8 = 32768).
 */
const rowArb = fc
  .array(
    fc.tuple(
      fc.integer({ min: -40, max: 18 }),
      fc.array(fc.float({ min: -1, max: 1, noNaN: true }), { minLength: 32, maxLength: 32 }),
    ),
    { minLength: 1, maxLength: 4 },
  )
  .map((blocks) => blocks.flatMap(([e, vs]) => vs.map((v) => fr(v * 2 ** e))));

test('q8_0 / q4_0 are byte-identical to the ggml mirror on random multi-block rows', () => {
  fc.assert(
    fc.property(rowArb, (xs) => {
      assert.deepEqual([...q8(xs)], refQ8(xs));
      assert.deepEqual([...q4(xs)], refQ4(xs));
    }),
    { numRuns: 2000, seed: 1 },
  );
});

test('q8_0 dequantization error <= d/2 per element (+ f16 scale rounding)', () => {
  fc.assert(
    fc.property(rowArb, (xs) => {
      const bytes = q8(xs);
      assert.equal(bytes.length, (xs.length / 32) * 34);
      const deq = new Float64Array(xs.length);
      dequantizeQ8_0(bytes, 0, xs.length, deq, 0);
      for (let b = 0; b < xs.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(xs[b * 32 + j]!));
        const d = amax / 127; // exact scale (f64); the f32 d is within 2^-24 of it when normal
        const dh = f16BitsToF32(bytes[b * 34]! | (bytes[b * 34 + 1]! << 8));
        // |x - q*dh| <= |x - q*d| + |q| |d - dh|, |x - q*d| <= d/2 (+ f32 rounding of d and id), |q| <= 127.
        // When the scale underflows (dh = 0) every q*dh is 0 and the error is |x| <= amax = 127 |d - dh|.
        const bound = 0.5 * d * (1 + 1e-4) + 127 * Math.abs(d - dh);
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          const err = Math.abs(xs[i]! - deq[i]!);
          if (!(err <= bound)) assert.fail(`block ${b} j ${j}: x ${xs[i]} deq ${deq[i]} err ${err} > ${bound}`);
          const q = (bytes[b * 34 + 2 + j]! << 24) >> 24;
          assert.ok(q >= -127 && q <= 127, `q8 ${q} out of [-127, 127]`);
        }
      }
    }),
    { numRuns: 1000, seed: 2 },
  );
});

test('q4_0 dequantization error <= |d| per element (+ f16 scale rounding); argmax nibble is 0', () => {
  fc.assert(
    fc.property(rowArb, (xs) => {
      const bytes = q4(xs);
      assert.equal(bytes.length, (xs.length / 32) * 18);
      const deq = new Float32Array(xs.length);
      dequantizeQ4_0(bytes, 0, xs.length, deq, 0);
      for (let b = 0; b < xs.length / 32; b++) {
        let amax = 0;
        let arg = 0;
        for (let j = 0; j < 32; j++) if (Math.abs(xs[b * 32 + j]!) > amax) [amax, arg] = [Math.abs(xs[b * 32 + j]!), j];
        const d = amax / 8; // exact (power of two divisor) unless subnormal
        const dh = Math.abs(f16BitsToF32(bytes[b * 18]! | (bytes[b * 18 + 1]! << 8)));
        // |q - 8| <= 8; rounding error <= d/2 except the clamped -max (8d -> 7d): error d.
        const bound = d * (1 + 1e-5) + 8 * Math.abs(d - dh) + 1e-6 * d + 1e-44;
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          const err = Math.abs(xs[i]! - deq[i]!);
          if (!(err <= bound)) assert.fail(`block ${b} j ${j}: x ${xs[i]} deq ${deq[i]} err ${err} > ${bound}`);
          const byte = bytes[b * 18 + 2 + (j % 16)]!;
          const nibble = j < 16 ? byte & 0xf : byte >> 4;
          assert.ok(nibble >= 0 && nibble <= 15);
          if (j === arg && amax > 0 && dh > 0) assert.equal(nibble, 0, 'the value of largest magnitude maps to nibble 0');
        }
      }
    }),
    { numRuns: 1000, seed: 3 },
  );
});

test('multi-block rows: blocks are independent, offsets respected, nothing outside written', () => {
  const r = (i: number) => Math.sin(i * 12.9898) * 43758.5453 % 1;
  const xs = Array.from({ length: 96 }, (_, i) => r(i) * (i < 32 ? 1 : i < 64 ? 1000 : 1e-3));
  const src = [7, 7, 7, ...xs]; // srcOff = 3
  for (const [quant, deq, bb] of [
    [quantizeQ8_0, dequantizeQ8_0, 34],
    [quantizeQ4_0, dequantizeQ4_0, 18],
  ] as const) {
    const dst = new Uint8Array(5 + 3 * bb + 5).fill(0xaa);
    quant(src, 3, 96, dst, 5); // dstOff = 5 (odd, unaligned)
    assert.deepEqual([...dst.subarray(0, 5)], [0xaa, 0xaa, 0xaa, 0xaa, 0xaa]);
    assert.deepEqual([...dst.subarray(5 + 3 * bb)], [0xaa, 0xaa, 0xaa, 0xaa, 0xaa]);
    for (let b = 0; b < 3; b++) {
      const one = new Uint8Array(bb);
      quant(xs.slice(b * 32, b * 32 + 32), 0, 32, one, 0);
      assert.deepEqual([...dst.subarray(5 + b * bb, 5 + (b + 1) * bb)], [...one], `block ${b}`);
    }
    const out = new Float32Array(2 + 96).fill(-1);
    deq(dst, 5, 96, out, 2);
    assert.deepEqual([out[0], out[1]], [-1, -1]);
    const one = new Float32Array(32);
    deq(dst, 5 + 2 * bb, 32, one, 0);
    assert.deepEqual([...out.subarray(66, 98)], [...one]);
  }
});
