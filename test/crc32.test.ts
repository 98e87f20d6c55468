/**
 * CRC-32 against published check values, an independent bit-by-bit implementation written
 * here from the definition, and Node's zlib.crc32 where this Node has it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { crc32 } from '../src/core/crc32.js';
import { ConfigError } from '../src/core/errors.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** CRC-32 one bit at a time, straight from the reflected-polynomial definition. */
function crcBitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

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

function randomBytes(next: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = next() & 0xff;
  return out;
}

test('crc32 check values', () => {
  assert.equal(crc32(ascii('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(ascii('a')), 0xe8b7be43);
  assert.equal(crc32(ascii('The quick brown fox jumps over the lazy dog')), 0x414fa339);
  assert.equal(crc32(new Uint8Array(32)), 0x190a55ad); // 32 zero bytes
  assert.equal(crc32(new Uint8Array(32).fill(0xff)), 0xff6cab0b); // 32 0xff bytes
});

test('crc32 equals a bitwise reference for every length 0..300 and random contents', () => {
  const next = rng(1);
  for (let n = 0; n <= 300; n++) {
    const b = randomBytes(next, n);
    assert.equal(crc32(b), crcBitwise(b), `length ${n}`);
  }
});

test('crc32 of unaligned subarray views matches the copied bytes', () => {
  const next = rng(2);
  const big = randomBytes(next, 1000);
  for (let i = 0; i < 50; i++) {
    const a = next() % 1000;
    const b = a + (next() % (1000 - a));
    const view = big.subarray(a, b);
    assert.equal(crc32(view), crcBitwise(view.slice()));
  }
});

test('crc32 with a seed continues a previous result (pieces = whole)', () => {
  const next = rng(3);
  for (let i = 0; i < 100; i++) {
    const whole = randomBytes(next, next() % 500);
    let crc = 0;
    let at = 0;
    while (at < whole.length) {
      const step = 1 + (next() % 37);
      crc = crc32(whole.subarray(at, at + step), crc);
      at += step;
    }
    assert.equal(crc, crc32(whole));
  }
  assert.equal(crc32(ascii('456789'), crc32(ascii('123'))), 0xcbf43926);
});

test('crc32 matches node zlib.crc32 when available', (t) => {
  const z = (zlib as unknown as { crc32?: (b: Uint8Array, v?: number) => number }).crc32;
  if (typeof z !== 'function') {
    t.skip('zlib.crc32 needs Node >= 20.15');
    return;
  }
  const next = rng(4);
  for (let i = 0; i < 50; i++) {
    const b = randomBytes(next, next() % 4096);
    assert.equal(crc32(b), z(b));
  }
  const big = randomBytes(next, 1 << 20);
  assert.equal(crc32(big), z(big));
});

test('crc32 rejects a seed that is not a uint32', () => {
  assert.throws(() => crc32(new Uint8Array(1), -1), ConfigError);
  assert.throws(() => crc32(new Uint8Array(1), 2 ** 32), ConfigError);
  assert.throws(() => crc32(new Uint8Array(1), 1.5), ConfigError);
});
