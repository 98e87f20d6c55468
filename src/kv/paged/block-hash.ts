/**
 * Content addresses of full KV blocks (DESIGN decision 7): a chained SHA-256, computed by a
 * small synchronous SHA-256 (FIPS 180-4) so that the same code runs in Node and in browsers
 * (Web Crypto's digest is asynchronous, and `node:crypto` does not exist in browsers).
 *
 * Hash of block j of a sequence (all integers little-endian u32):
 *
 *   offset  bytes        field
 *   0       16           domain tag, the ASCII bytes of "kvcache/block/v1"
 *   16      32           parent: the hash of block j-1, or 32 zero bytes for block 0
 *   48      4 + |F|      model fingerprint F: byte length, then its UTF-8 bytes
 *   ..      4 + |K|      K dtype name (e.g. "q8_0"): byte length, then ASCII
 *   ..      4 + |V|      V dtype name: byte length, then ASCII
 *   ..      4 + |N|      namespace N: byte length, then UTF-8 ("" when none)
 *   ..      4            nTokens (the block length)
 *   ..      4 * nTokens  the block's token ids, each a u32
 *
 *   hash_j = SHA-256(those bytes), written as 64 lowercase hex characters.
 *
 * NOTE(1): Every variable-length field is length-prefixed, so no two different inputs encode to
 *   the same bytes. The parent hash makes a block's address depend on every token before it (a
 *   block is only reusable after the same prefix, at the same positions), and the fingerprint,
 *   dtypes and namespace keep models, storage formats and tenants apart. Nothing in the encoding
 *   depends on the process, the platform's endianness or the JS engine, so hashes are stable
 *   across processes and machines (a snapshot can carry them).
 * NOTE(2): Hashes are hex strings: they are Map keys of the prefix index and go into snapshots
 *   as text. Per block (not per token) one string is made, which is cheap next to the block's
 *   attention work.
 */
import { ConfigError } from '../../core/errors.js';

/** "kvcache/block/v1": the first 16 bytes of every block-hash input. */
export const BLOCK_HASH_DOMAIN = 'kvcache/block/v1';
/** The parent of a sequence's first block: 32 zero bytes, as hex. */
export const ROOT_PARENT_HASH = '0'.repeat(64);

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/** Message schedule scratch, [64] words: hashing is synchronous, so one is enough. */
const W = new Uint32Array(64);
/** The last one or two padded 64-byte chunks of a message. */
const tail = new Uint8Array(128);

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

/** One 64-byte chunk at data[off..] into the state h [8]. */
function compress(h: Uint32Array, data: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const o = off + 4 * i;
    W[i] = (data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = h[0]!, b = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + K[i]! + W[i]!) | 0;
    const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = h[0]! + a;
  h[1] = h[1]! + b;
  h[2] = h[2]! + c;
  h[3] = h[3]! + d;
  h[4] = h[4]! + e;
  h[5] = h[5]! + f;
  h[6] = h[6]! + g;
  h[7] = h[7]! + hh;
}

/** SHA-256 of `data[0, length)` (length defaults to all of it): 32 bytes, big-endian words. */
export function sha256(data: Uint8Array, length = data.length): Uint8Array {
  const h = Uint32Array.from(H0);
  const nFull = Math.floor(length / 64);
  for (let c = 0; c < nFull; c++) compress(h, data, c * 64);
  // Padding: 0x80, zeros, then the bit length as a 64-bit big-endian integer.
  const rest = length - nFull * 64;
  tail.fill(0);
  tail.set(data.subarray(nFull * 64, length));
  tail[rest] = 0x80;
  const tailBytes = rest + 9 <= 64 ? 64 : 128;
  const bits = length * 8;
  const hi = Math.floor(bits / 0x100000000);
  const lo = bits >>> 0;
  for (let i = 0; i < 4; i++) {
    tail[tailBytes - 8 + i] = (hi >>> (24 - 8 * i)) & 0xff;
    tail[tailBytes - 4 + i] = (lo >>> (24 - 8 * i)) & 0xff;
  }
  for (let o = 0; o < tailBytes; o += 64) compress(h, tail, o);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    out[4 * i] = h[i]! >>> 24;
    out[4 * i + 1] = (h[i]! >>> 16) & 0xff;
    out[4 * i + 2] = (h[i]! >>> 8) & 0xff;
    out[4 * i + 3] = h[i]! & 0xff;
  }
  return out;
}

const HEX = '0123456789abcdef';

export function bytesToHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]! >>> 4]! + HEX[b[i]! & 15]!;
  return s;
}

/** SHA-256 as 64 lowercase hex characters. */
export function sha256Hex(data: Uint8Array): string {
  return bytesToHex(sha256(data));
}

/** What every block hash of one cache (and namespace) shares: see the layout in the header. */
export interface BlockHashContext {
  /** Identifies the model (weights and config): blocks of different models never match. */
  readonly fingerprint: string;
  readonly kDtype: string;
  readonly vDtype: string;
  /** Tenant / cache salt: blocks of different namespaces never match. */
  readonly namespace: string;
}

const utf8 = new TextEncoder();

function putU32(buf: Uint8Array, off: number, v: number): number {
  buf[off] = v & 0xff;
  buf[off + 1] = (v >>> 8) & 0xff;
  buf[off + 2] = (v >>> 16) & 0xff;
  buf[off + 3] = v >>> 24;
  return off + 4;
}

/**
 * Hashes the blocks of one context. The context bytes are encoded once; each block hash then
 * fills a reused input buffer, so hashing allocates only the 32-byte digest and its hex string.
 */
export class BlockHasher {
  readonly blockLen: number;
  /** The context every hash of this hasher covers (snapshots record a sequence's namespace from it). */
  readonly context: Readonly<BlockHashContext>;
  /** [16 + 32 + context bytes + 4 + 4 * blockLen] the hash input; the parent is at 16..48. */
  private readonly input: Uint8Array;
  /** Offset of the nTokens field in `input`. */
  private readonly tokensAt: number;

  constructor(context: BlockHashContext, blockLen: number) {
    this.blockLen = blockLen;
    this.context = Object.freeze({ fingerprint: context.fingerprint, kDtype: context.kDtype, vDtype: context.vDtype, namespace: context.namespace });
    const fields = [context.fingerprint, context.kDtype, context.vDtype, context.namespace].map((s) => utf8.encode(s));
    const ctxBytes = fields.reduce((n, f) => n + 4 + f.length, 0);
    this.tokensAt = 16 + 32 + ctxBytes;
    this.input = new Uint8Array(this.tokensAt + 4 + 4 * blockLen);
    for (let i = 0; i < 16; i++) this.input[i] = BLOCK_HASH_DOMAIN.charCodeAt(i);
    let o = 48;
    for (const f of fields) {
      o = putU32(this.input, o, f.length);
      this.input.set(f, o);
      o += f.length;
    }
  }

  /**
   * Hash of the block holding tokens[off, off + blockLen) after the block hashed `parentHex`
   * (ROOT_PARENT_HASH for a sequence's first block). Token ids must be u32 (the caller checks).
   */
  hash(parentHex: string, tokens: ArrayLike<number>, off: number): string {
    const buf = this.input;
    for (let i = 0; i < 32; i++) buf[16 + i] = parseInt(parentHex.substr(2 * i, 2), 16);
    let o = putU32(buf, this.tokensAt, this.blockLen);
    for (let t = 0; t < this.blockLen; t++) o = putU32(buf, o, tokens[off + t]!);
    return sha256Hex(buf);
  }
}

/** Throws ConfigError unless every token id is an integer in [0, 2^32). */
export function checkTokenIds(what: string, tokens: ArrayLike<number>): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0xffffffff) {
      throw new ConfigError(`${what}[${i}]`, 'a token id: an integer in [0, 2^32)', t);
    }
  }
}
