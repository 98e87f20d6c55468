/**
 * The synchronous SHA-256 and the chained block hash of kv/paged/block-hash.ts:
 * FIPS 180-4 / NIST example vectors, random inputs against node:crypto (every padding boundary),
 * and the block-hash byte layout re-encoded here by hand (Buffer + node:crypto), with literal
 * hashes that must never change (snapshots and other processes rely on them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { BlockHasher, ROOT_PARENT_HASH, sha256, sha256Hex } from '../src/kv/paged/block-hash.js';
import { mulberry32, randInt } from './helpers/rng.js';

const nodeSha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const ascii = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

test('sha256: FIPS 180-4 / NIST example vectors', () => {
  const vectors: [string, string][] = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
    [
      'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
    ],
    ['a'.repeat(1_000_000), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0'],
  ];
  for (const [msg, hex] of vectors) {
    assert.equal(nodeSha(msg), hex, 'the literal itself (checked by node:crypto)');
    assert.equal(sha256Hex(ascii(msg)), hex, `sha256 of a ${msg.length}-byte message`);
  }
});

test('sha256: equals node:crypto on 600 random inputs of 0..300 bytes (every padding boundary) and some long ones', () => {
  const rng = mulberry32(5);
  const lengths: number[] = [];
  for (let n = 0; n <= 300; n++) lengths.push(n, randInt(rng, 0, 301));
  lengths.push(4095, 4096, 4097, 65599);
  for (const n of lengths) {
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = randInt(rng, 0, 256);
    assert.equal(sha256Hex(data), nodeSha(data), `${n} bytes`);
  }
  // A prefix of a larger buffer (the `length` argument) hashes like a copy of that prefix.
  const big = new Uint8Array(200).map((_, i) => (i * 37) & 0xff);
  assert.deepEqual(sha256(big, 77), new Uint8Array(createHash('sha256').update(big.subarray(0, 77)).digest()));
});

/** The documented block-hash input (block-hash.ts header), built independently with Buffer. */
function blockInput(parentHex: string, fingerprint: string, kDtype: string, vDtype: string, namespace: string, tokens: number[]): Buffer {
  const parts = [Buffer.from('kvcache/block/v1', 'ascii'), Buffer.from(parentHex, 'hex')];
  for (const s of [fingerprint, kDtype, vDtype, namespace]) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    parts.push(len, b);
  }
  const n = Buffer.alloc(4);
  n.writeUInt32LE(tokens.length);
  const t = Buffer.alloc(4 * tokens.length);
  tokens.forEach((x, i) => t.writeUInt32LE(x, 4 * i));
  parts.push(n, t);
  return Buffer.concat(parts);
}

test('block hash: the documented byte layout, and a fixed chain that never changes', () => {
  const ctx = { fingerprint: 'qwen2.5-0.5b/test', kDtype: 'q8_0', vDtype: 'f16', namespace: 'tenant-\u03b1' };
  const tokens = [0, 1, 151643, 4294967295, 7, 7, 65535, 65536]; // two blocks of 4
  // Literals computed once with node:crypto over blockInput(...) (re-checked on the next lines).
  const H0 = '50b45bdab997678069aefe9828a8b710866b3404e91a4d20c157fd7cb075e15d';
  const H1 = '0a855b80082204290aab64762482b495ec570ad402e798aa7b0da52d8402274c';
  assert.equal(nodeSha(blockInput(ROOT_PARENT_HASH, ctx.fingerprint, ctx.kDtype, ctx.vDtype, ctx.namespace, tokens.slice(0, 4))), H0);
  assert.equal(nodeSha(blockInput(H0, ctx.fingerprint, ctx.kDtype, ctx.vDtype, ctx.namespace, tokens.slice(4))), H1);
  const hasher = new BlockHasher(ctx, 4);
  const h0 = hasher.hash(ROOT_PARENT_HASH, tokens, 0);
  assert.equal(h0, H0);
  assert.equal(hasher.hash(h0, tokens, 4), H1);
  // Reusing the hasher's buffer leaves no trace: the same call gives the same hash again.
  assert.equal(hasher.hash(ROOT_PARENT_HASH, tokens, 0), H0);
});

test('block hash: random contexts and blocks equal node:crypto over the documented layout', () => {
  const rng = mulberry32(11);
  const words = ['', 'a', 'llama-3.2-1b@sha:1234', 'ns/\u00e9\u4e2d\ud83d\ude00', 'f32', 'q4_0'];
  for (let i = 0; i < 200; i++) {
    const pick = () => words[randInt(rng, 0, words.length)]!;
    const ctx = { fingerprint: pick(), kDtype: pick(), vDtype: pick(), namespace: pick() };
    const L = randInt(rng, 1, 40);
    const tokens = Array.from({ length: 2 * L }, () => (rng() < 0.1 ? 0xffffffff : randInt(rng, 0, 200000)));
    const hasher = new BlockHasher(ctx, L);
    const h0 = hasher.hash(ROOT_PARENT_HASH, tokens, 0);
    const h1 = hasher.hash(h0, tokens, L);
    assert.equal(h0, nodeSha(blockInput(ROOT_PARENT_HASH, ctx.fingerprint, ctx.kDtype, ctx.vDtype, ctx.namespace, tokens.slice(0, L))));
    assert.equal(h1, nodeSha(blockInput(h0, ctx.fingerprint, ctx.kDtype, ctx.vDtype, ctx.namespace, tokens.slice(L))));
  }
});

test('block hash: every field separates (parent, tokens, fingerprint, K dtype, V dtype, namespace), and the chain carries changes', () => {
  const base = { fingerprint: 'm', kDtype: 'f16', vDtype: 'f16', namespace: '' };
  const tokens = [1, 2, 3, 4, 5, 6, 7, 8];
  const h = (ctx: typeof base, t = tokens, parent = ROOT_PARENT_HASH) => new BlockHasher(ctx, 4).hash(parent, t, 0);
  const ref = h(base);
  const variants = [
    h({ ...base, fingerprint: 'm2' }),
    h({ ...base, kDtype: 'q8_0' }),
    h({ ...base, vDtype: 'q8_0' }),
    h({ ...base, namespace: 'x' }),
    h(base, [1, 2, 3, 5]),
    h(base, tokens, 'ff'.repeat(32)),
    // Length prefixes: moving a character between adjacent fields changes the hash.
    h({ ...base, fingerprint: 'mf', kDtype: '16' }),
  ];
  assert.equal(new Set([ref, ...variants]).size, variants.length + 1);
  const hasher = new BlockHasher(base, 4);
  const b1 = hasher.hash(hasher.hash(ROOT_PARENT_HASH, tokens, 0), tokens, 4);
  const changed = [9, ...tokens.slice(1)];
  const b1changed = hasher.hash(hasher.hash(ROOT_PARENT_HASH, changed, 0), changed, 4);
  assert.notEqual(b1, b1changed, 'a change in block 0 changes the hash of block 1 (same tokens)');
});
