/**
 * f16 / bf16 bit conversions checked against independent reference implementations
 * written here from the IEEE 754 definitions (bit fields + Math.pow, nearest-value search),
 * never against the code under test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundToF16 } from '../src/core/half.js';

// Our own f32 bit access (independent of half.ts's scratch buffers).
const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
function bitsOf(x: number): number {
  F[0] = x;
  return U[0]!;
}
function fromBits(u: number): number {
  U[0] = u >>> 0;
  return F[0]!;
}
/** Next f32 towards +Inf / -Inf (for finite x). */
function nextUp(x: number): number {
  const u = bitsOf(x);
  if (Object.is(x, -0) || x === 0) return fromBits(1);
  return fromBits(x > 0 ? u + 1 : u - 1);
}
function nextDown(x: number): number {
  return -nextUp(-x);
}

/** Deterministic PRNG (mulberry32) for the seeded loops. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

// ---------------------------------------------------------------- f16 reference

/** binary16 decoder from the definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormal 2^-14 * m/1024. */
function refF16Decode(h: number): number {
  const s = (h >> 15) & 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const sign = s ? -1 : 1;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * Math.pow(2, -14) * (m / 1024); // sign * 0 gives -0 for s = 1
  return sign * Math.pow(2, e - 15) * (1 + m / 1024);
}

/** All finite non-negative halves in increasing order: index i is the bit pattern i (0..0x7bff). */
const HALF_VALUES: number[] = [];
for (let h = 0; h <= 0x7bff; h++) HALF_VALUES.push(refF16Decode(h));

/**
 * Reference f32 -> f16: nearest half by binary search, ties to the even pattern,
 * |x| >= 65520 (the midpoint between 65504 and the would-be 65536) -> Inf.
 */
function refF32ToF16(x: number): number {
  const xf = Math.fround(x);
  const signBit = bitsOf(xf) >>> 31 ? 0x8000 : 0;
  if (Number.isNaN(xf)) return -1; // callers check NaN separately
  const a = Math.abs(xf);
  if (a >= 65520) return signBit | 0x7c00;
  let lo = 0;
  let hi = HALF_VALUES.length - 1; // find largest i with HALF_VALUES[i] <= a
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (HALF_VALUES[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === HALF_VALUES.length - 1) return signBit | lo; // 65504 <= a < 65520
  const midpoint = (HALF_VALUES[lo]! + HALF_VALUES[lo + 1]!) / 2; // exact in f64
  let r: number;
  if (a < midpoint) r = lo;
  else if (a > midpoint) r = lo + 1;
  else r = lo % 2 === 0 ? lo : lo + 1;
  return signBit | r;
}

function checkF16(x: number): void {
  const got = f32ToF16Bits(x);
  if (Number.isNaN(x)) {
    assert.equal(got & 0x7c00, 0x7c00, `NaN exponent for ${x}`);
    assert.notEqual(got & 0x3ff, 0, 'NaN mantissa must be non-zero');
    assert.equal(got & 0x8000, bitsOf(x) >>> 31 ? 0x8000 : 0, 'NaN sign');
    return;
  }
  const want = refF32ToF16(x);
  if (got !== want) {
    assert.fail(`f32ToF16Bits(${x} = 0x${bitsOf(x).toString(16)}) = 0x${got.toString(16)}, expected 0x${want.toString(16)}`);
  }
}

test('reference f16 decoder sanity (known constants)', () => {
  assert.equal(refF16Decode(0x3c00), 1);
  assert.equal(refF16Decode(0x7bff), 65504);
  assert.equal(refF16Decode(0x0001), 2 ** -24);
  assert.equal(refF16Decode(0x0400), 2 ** -14);
  assert.equal(refF16Decode(0xc000), -2);
  assert.equal(refF16Decode(0x3555), 0.333251953125);
});

test('f16BitsToF32 equals the reference decoder on all 65,536 patterns', () => {
  let nans = 0;
  for (let h = 0; h < 65536; h++) {
    const got = f16BitsToF32(h);
    const want = refF16Decode(h);
    if (Number.isNaN(want)) {
      nans++;
      if (!Number.isNaN(got)) assert.fail(`0x${h.toString(16)} should decode to NaN, got ${got}`);
    } else if (!Object.is(got, want)) {
      assert.fail(`f16BitsToF32(0x${h.toString(16)}) = ${got}, expected ${want}`);
    }
  }
  assert.equal(nans, 2 * 1023);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  assert.ok(Object.is(f16BitsToF32(0x0000), 0));
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
  assert.equal(f16BitsToF32(0x03ff), 1023 * 2 ** -24); // max subnormal
});

test('f32ToF16Bits(f16BitsToF32(h)) === h for every non-NaN h; NaN keeps NaN and its sign', () => {
  for (let h = 0; h < 65536; h++) {
    const r = f32ToF16Bits(f16BitsToF32(h));
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (!isNaN) {
      if (r !== h) assert.fail(`round trip 0x${h.toString(16)} -> 0x${r.toString(16)}`);
    } else {
      assert.equal(r & 0x7c00, 0x7c00, `NaN 0x${h.toString(16)} -> 0x${r.toString(16)}`);
      assert.notEqual(r & 0x3ff, 0, `NaN 0x${h.toString(16)} -> 0x${r.toString(16)}`);
      assert.equal(r & 0x8000, h & 0x8000, `NaN sign of 0x${h.toString(16)} -> 0x${r.toString(16)}`);
    }
  }
});

test('f32ToF16Bits on named edge values', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [Math.fround(65519.99), 0x7bff], // below the overflow midpoint
    [65520, 0x7c00], // exactly the midpoint: ties to even -> Inf
    [-65520, 0xfc00],
    [65536, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [3.4028234663852886e38, 0x7c00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: tie, rounds to even (0)
    [-(2 ** -25), 0x8000],
    [nextUp(2 ** -25), 0x0001],
    [3 * 2 ** -26, 0x0001], // 0.75 * 2^-24 rounds up
    [3 * 2 ** -25, 0x0002], // 1.5 * 2^-24: tie between 1 and 2 -> 2 (even)
    [5 * 2 ** -25, 0x0002], // 2.5 * 2^-24: tie between 2 and 3 -> 2 (even)
    [2 ** -26, 0x0000],
    [1023 * 2 ** -24, 0x03ff], // max subnormal
    [1023.5 * 2 ** -24, 0x0400], // tie between max subnormal (odd) and min normal -> min normal
    [2 ** -14, 0x0400], // min normal
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10 -> 1 (even)
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02 -> 0x3c02
    [1e-10, 0x0000],
    [Number.MIN_VALUE, 0x0000], // rounds to f32 0 first
    [fromBits(1), 0x0000], // smallest f32 subnormal
  ];
  for (const [x, want] of cases) {
    assert.equal(f32ToF16Bits(x), want, `f32ToF16Bits(${x})`);
    assert.equal(refF32ToF16(x), want, `reference disagrees on ${x}`); // keeps the reference honest
  }
  for (const nanBits of [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff]) checkF16(fromBits(nanBits));
  assert.ok(Number.isNaN(roundToF16(NaN)));
  assert.ok(Object.is(roundToF16(-0), -0));
});

test('f32ToF16Bits at every midpoint between adjacent halves and its f32 neighbours', () => {
  for (let h = 0; h < 0x7bff; h++) {
    const m = (HALF_VALUES[h]! + HALF_VALUES[h + 1]!) / 2;
    assert.equal(Math.fround(m), m, 'midpoint is an f32');
    for (const x of [m, nextUp(m), nextDown(m), -m, -nextUp(m), -nextDown(m)]) checkF16(x);
  }
  for (const x of [65520, nextDown(65520), nextUp(65520), -nextDown(65520)]) checkF16(x);
});

test('f32ToF16Bits vs reference on 200,000 seeded random f32 bit patterns', () => {
  const r = rng(0x5eed);
  for (let i = 0; i < 100_000; i++) checkF16(fromBits(r())); // the whole f32 range
  for (let i = 0; i < 100_000; i++) {
    // biased to the exponents where f16 results are interesting: [2^-26, 2^17)
    const exp = 101 + (r() % 43);
    const u = ((r() & 1) << 31) | (exp << 23) | (r() & 0x7fffff);
    checkF16(fromBits(u));
  }
});

test('f32ToF16Bits vs reference (fast-check, any f32 including NaN/Inf/-0)', () => {
  fc.assert(
    fc.property(fc.float(), (x) => {
      checkF16(x);
    }),
    { numRuns: 20_000, seed: 42 },
  );
});

// ---------------------------------------------------------------- bf16 reference

/** bfloat16 decoder from the definition: 8-bit exponent (bias 127), 7-bit mantissa. */
function refBf16Decode(h: number): number {
  const s = (h >> 15) & 1;
  const e = (h >> 7) & 255;
  const m = h & 127;
  const sign = s ? -1 : 1;
  if (e === 255) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * Math.pow(2, -126) * (m / 128);
  return sign * Math.pow(2, e - 127) * (1 + m / 128);
}

/**
 * Reference f32 -> bf16 by integer RNE on the bit pattern with BigInt: keep the upper 16 bits,
 * round up when the dropped 16 bits exceed half, or equal half with an odd kept part.
 * The magnitude patterns of finite floats are ordered, so a carry moves to the next value
 * (and from the largest finite bf16 into +Inf).
 */
function refF32ToBf16(u: number): number {
  const b = BigInt(u >>> 0);
  const upper = b >> 16n;
  const lower = b & 0xffffn;
  let r = upper;
  if (lower > 0x8000n || (lower === 0x8000n && (upper & 1n) === 1n)) r += 1n;
  return Number(r & 0xffffn);
}

function checkBf16(u: number): void {
  const x = fromBits(u);
  const got = f32ToBf16Bits(x);
  if (Number.isNaN(x)) {
    assert.equal(got & 0x7f80, 0x7f80, `NaN exponent for 0x${u.toString(16)}`);
    assert.notEqual(got & 0x7f, 0, 'NaN mantissa must be non-zero');
    assert.equal(got & 0x40, 0x40, 'NaN must be quiet');
    assert.equal(got & 0x8000, (u >>> 16) & 0x8000, 'NaN sign');
    return;
  }
  const want = refF32ToBf16(u);
  if (got !== want) assert.fail(`f32ToBf16Bits(0x${u.toString(16)}) = 0x${got.toString(16)}, expected 0x${want.toString(16)}`);
}

test('bf16BitsToF32 equals the reference decoder on all 65,536 patterns; round trip is identity', () => {
  for (let h = 0; h < 65536; h++) {
    const got = bf16BitsToF32(h);
    const want = refBf16Decode(h);
    if (Number.isNaN(want)) {
      if (!Number.isNaN(got)) assert.fail(`bf16 0x${h.toString(16)} should be NaN`);
      const r = f32ToBf16Bits(got);
      assert.equal(r & 0x7f80, 0x7f80);
      assert.notEqual(r & 0x7f, 0);
      continue;
    }
    if (!Object.is(got, want)) assert.fail(`bf16BitsToF32(0x${h.toString(16)}) = ${got}, expected ${want}`);
    const back = f32ToBf16Bits(got);
    if (back !== h) assert.fail(`bf16 round trip 0x${h.toString(16)} -> 0x${back.toString(16)}`);
  }
  assert.ok(Object.is(bf16BitsToF32(0x8000), -0));
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0x7f7f), 3.3895313892515355e38);
});

test('f32ToBf16Bits ties, overflow and NaN', () => {
  // Ties (low 16 bits exactly 0x8000): even upper stays, odd upper rounds up.
  assert.equal(f32ToBf16Bits(fromBits(0x3f808000)), 0x3f80); // 1 + 2^-8: tie, 0x3f80 even
  assert.equal(f32ToBf16Bits(fromBits(0x3f818000)), 0x3f82); // odd 0x3f81 -> 0x3f82
  assert.equal(f32ToBf16Bits(fromBits(0xbf818000)), 0xbf82); // negative mirrors
  assert.equal(f32ToBf16Bits(fromBits(0x3f808001)), 0x3f81); // just above the tie
  assert.equal(f32ToBf16Bits(fromBits(0x3f807fff)), 0x3f80); // just below
  assert.equal(f32ToBf16Bits(fromBits(0x3f81ffff)), 0x3f82);
  // Overflow near the top: 0x7f7f8000 is a tie with odd 0x7f7f -> carries into +Inf.
  assert.equal(f32ToBf16Bits(fromBits(0x7f7f7fff)), 0x7f7f);
  assert.equal(f32ToBf16Bits(fromBits(0x7f7f8000)), 0x7f80);
  assert.equal(f32ToBf16Bits(fromBits(0x7f7fffff)), 0x7f80); // f32 max -> +Inf
  assert.equal(f32ToBf16Bits(fromBits(0xff7fffff)), 0xff80);
  assert.equal(f32ToBf16Bits(Infinity), 0x7f80);
  assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
  assert.equal(f32ToBf16Bits(0), 0);
  assert.equal(f32ToBf16Bits(-0), 0x8000);
  // Subnormals: 0x00008000 ties to 0, 0x00018000 ties up to 0x0002.
  assert.equal(f32ToBf16Bits(fromBits(0x00008000)), 0x0000);
  assert.equal(f32ToBf16Bits(fromBits(0x00018000)), 0x0002);
  assert.equal(f32ToBf16Bits(fromBits(0x007fffff)), 0x0080); // max f32 subnormal -> min normal
  // NaN: quiet, sign kept, never turned into Inf even when the payload sits only in the low bits.
  assert.equal(f32ToBf16Bits(fromBits(0x7f800001)) & 0xffc0, 0x7fc0);
  assert.equal(f32ToBf16Bits(fromBits(0xff800001)) & 0xffc0, 0xffc0);
  assert.equal(f32ToBf16Bits(fromBits(0x7fc00000)), 0x7fc0);
  assert.equal(f32ToBf16Bits(fromBits(0xffc00000)), 0xffc0);
  for (const u of [0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fc00000, 0xffc00000, 0x7f80ffff]) checkBf16(u);
  // The reference on the same tie cases (keeps it honest).
  assert.equal(refF32ToBf16(0x3f808000), 0x3f80);
  assert.equal(refF32ToBf16(0x3f818000), 0x3f82);
  assert.equal(refF32ToBf16(0x7f7f8000), 0x7f80);
});

test('f32ToBf16Bits vs BigInt RNE reference on 200,000 seeded random f32 patterns', () => {
  const r = rng(0xbf16);
  for (let i = 0; i < 150_000; i++) checkBf16(r());
  for (let i = 0; i < 50_000; i++) {
    // force ties / near-ties in the dropped half
    const upper = r() >>> 16;
    const lower = [0x8000, 0x7fff, 0x8001, 0x0000, 0xffff][i % 5]!;
    checkBf16(((upper << 16) | lower) >>> 0);
  }
});

test('f32ToBf16Bits vs reference (fast-check)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), (u) => {
      checkBf16(u);
    }),
    { numRuns: 20_000, seed: 7 },
  );
});
