/**
 * Prefix-cache and sequence snapshots of the paged cache (kv/paged/paged-snapshot.ts,
 * seq-snapshot.ts): restored prefixes give the same hits with bit-identical K/V (every dtype,
 * mixed K/V, and in a separate process), identity mismatches and damaged files are typed errors
 * that leave the cache unchanged, a short pool loads whole chains only, saves are atomic, and a
 * sequence round trip is bit-exact (gaps included) with capacity reported as null.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Arena } from '../src/core/arena.js';
import { rowSizeBytes, type DType } from '../src/core/dtype.js';
import { ChecksumError, ConfigError, DisposedError, FormatError, StateError, VersionError } from '../src/core/errors.js';
import { decodeSnapshot, encodeSnapshot } from '../src/io/snapshot.js';
import { inspectFile } from '../src/io/inspect.js';
import { ROOT_PARENT_HASH } from '../src/kv/paged/block-hash.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import type { PagedKVCacheConfig } from '../src/kv/paged/paged-config.js';
import {
  PAGED_PREFIX_SNAPSHOT_KIND, PAGED_SEQUENCE_SNAPSHOT_KIND, SnapshotMismatchError, decodePrefixCache, decodeSequence, encodePrefixCache,
  encodeSequence, loadPrefixCache, loadSequence, prefixSaveOrder, savePrefixCache, saveSequence,
} from '../src/kv/paged/paged-snapshot.js';
import { mulberry32, normalArray, type Rng } from './helpers/rng.js';

const NL = 2;
const H = 2;
const D = 32; // quantized dtypes need headDim % 32 == 0
const L = 4;

interface Spec {
  kDtype: DType;
  vDtype: DType;
}

function mk(spec: Spec, nBlocks: number, extra: Partial<PagedKVCacheConfig> = {}): PagedKVCache {
  return new PagedKVCache({
    arena: new Arena({ initialBytes: 1 << 20, maximumBytes: 64 << 20 }),
    nLayers: NL, nKvHeads: H, headDim: D, nBlocks, blockLen: L, fingerprint: 'model-A', ...spec, ...extra,
  });
}

/** reserve + write random K/V in every layer + commit; asserts the pool had room. */
function append(c: PagedKVCache, seq: number, toks: number[], rng: Rng, withIds = true): void {
  assert.ok(c.reserve(seq, toks.length, withIds ? toks : undefined), 'reserve');
  for (let l = 0; l < c.nLayers; l++) c.write(l, seq, normalArray(rng, toks.length * c.nKvHeads * c.headDim), normalArray(rng, toks.length * c.nKvHeads * c.headDim));
  c.commit(seq);
}

/** A new sequence of `toks` (from its cached prefix on), returned live. */
function run(c: PagedKVCache, toks: number[], rng: Rng): number {
  const { seq, cachedTokens } = c.seqAdd(toks, { maxHitTokens: toks.length });
  if (cachedTokens < toks.length) append(c, seq, toks.slice(cachedTokens), rng);
  return seq;
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
const BASE = range(0, 14);
const PROMPTS: number[][] = [
  BASE, // 3 full blocks + 2
  [...BASE.slice(0, 8), ...range(100, 107)], // shares 2 blocks with BASE
  range(200, 211), // its own chain
  [...BASE, ...range(300, 306)], // a fork of BASE, extended: shares 3 blocks, then 2 of its own
  [...BASE.slice(0, 4), 999, 998, 997, 996, 995], // shares 1 block
];

/** Sequences sharing prefixes: some live (used blocks), some freed (cached-free blocks). */
function fillShared(c: PagedKVCache, seed: number): void {
  const rng = mulberry32(seed);
  const s0 = run(c, PROMPTS[0]!, rng);
  c.seqFree(run(c, PROMPTS[1]!, rng));
  c.seqFree(run(c, PROMPTS[2]!, rng));
  const f = c.seqFork(s0);
  append(c, f, PROMPTS[3]!.slice(BASE.length), rng);
}

/** Everything observable about the bookkeeping, for "nothing changed" checks. */
function state(c: PagedKVCache): string {
  const blocks = range(1, c.pool.nBlocks).map((b) => [b, c.pool.refCount(b), c.pool.isCached(b), c.prefixIndex.hashOf(b), c.prefixIndex.parentOf(b)]);
  const seqs = c.seqIds().map((s) => [s, [...c.blockTable(s)], c.seqLen(s), c.nextPos(s)]);
  return JSON.stringify({ blocks, seqs, free: c.pool.freeList(), lru: c.pool.lruOrder(), n: [c.freeBlocks, c.cachedBlocks, c.usedBlocks] });
}

function bits(a: Float32Array | Int32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Positions and decoded K/V of (every layer, seq) in a and b equal bit for bit. */
function assertSameRows(a: PagedKVCache, sa: number, b: PagedKVCache, sb: number, what: string): void {
  for (let l = 0; l < NL; l++) {
    const ra = a.read(l, sa);
    const rb = b.read(l, sb);
    assert.deepEqual([...rb.positions], [...ra.positions], `${what}: positions of layer ${l}`);
    assert.deepEqual(bits(rb.k), bits(ra.k), `${what}: K of layer ${l}`);
    assert.deepEqual(bits(rb.v), bits(ra.v), `${what}: V of layer ${l}`);
  }
}

/** The stored bytes of (layer, seq) via its attention view: [token][head][rowBytes], K then V. */
function storedRows(c: PagedKVCache, layer: number, seq: number): Uint8Array {
  const v = c.view(layer, seq);
  const out: number[] = [];
  for (const which of ['k', 'v'] as const) {
    const R = rowSizeBytes(which === 'k' ? v.kDtype : v.vDtype, D);
    for (const seg of v.segments) {
      for (let t = 0; t < seg.nTokens; t++) {
        for (let h = 0; h < H; h++) {
          const at = which === 'k' ? seg.kOffsetBytes + h * v.kHeadStrideBytes + t * v.kTokenStrideBytes : seg.vOffsetBytes + h * v.vHeadStrideBytes + t * v.vTokenStrideBytes;
          out.push(...v.bytes.subarray(at, at + R));
        }
      }
    }
  }
  return Uint8Array.from(out);
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'kvcache-paged-snapshot-'));
}

/** Re-encode a snapshot with its meta / sections edited (all checksums valid). */
function tampered(file: Uint8Array, edit: (meta: Record<string, unknown>, sections: Map<string, Uint8Array>) => void): Uint8Array {
  const snap = decodeSnapshot(file);
  const meta = structuredClone(snap.meta);
  const sections = new Map([...snap.sections].map(([n, b]) => [n, b.slice()]));
  edit(meta, sections);
  return encodeSnapshot(snap.kind, meta, [...sections].map(([name, bytes]) => ({ name, bytes })));
}

const SPECS: Spec[] = [
  { kDtype: 'f32', vDtype: 'f32' },
  { kDtype: 'f16', vDtype: 'f16' },
  { kDtype: 'bf16', vDtype: 'bf16' },
  { kDtype: 'q8_0', vDtype: 'q8_0' },
  { kDtype: 'q4_0', vDtype: 'q4_0' },
  { kDtype: 'q8_0', vDtype: 'f16' },
  { kDtype: 'f32', vDtype: 'q4_0' },
  { kDtype: 'q4_0', vDtype: 'bf16' },
];

test(`prefix cache round trip through a file: same hits, bit-identical K/V, for ${SPECS.length} K/V dtype pairs`, () => {
  const dir = tmp();
  try {
    for (const [i, spec] of SPECS.entries()) {
      const label = `K=${spec.kDtype} V=${spec.vDtype}`;
      const a = mk(spec, 40);
      fillShared(a, 10 + i);
      const path = join(dir, `prefix-${i}.kvsnap`);
      savePrefixCache(a, path);
      const b = mk(spec, 40);
      const r = loadPrefixCache(b, path);
      const nIndexed = a.prefixIndex.size;
      assert.deepEqual(r, { blocks: nIndexed, skipped: 0, present: 0 }, label);
      assert.deepEqual([b.freeBlocks, b.cachedBlocks, b.usedBlocks], [39 - nIndexed, nIndexed, 0], `${label}: loaded blocks are cached-free`);
      // Same addresses, and every block's raw bytes equal (no re-quantization).
      for (const [hash, blockA] of a.prefixIndex.entries()) {
        const blockB = b.prefixIndex.lookup(hash);
        assert.notEqual(blockB, 0, `${label}: ${hash} restored`);
        assert.equal(b.pool.refCount(blockB), 0);
        assert.equal(b.prefixIndex.parentOf(blockB), a.prefixIndex.parentOf(blockA), `${label}: parent of ${hash}`);
        for (let l = 0; l < NL; l++) {
          for (const which of ['k', 'v'] as const) assert.deepEqual(b.storage.blockView(l, which, blockB), a.storage.blockView(l, which, blockA), `${label}: bytes of ${hash}`);
        }
      }
      // Leaves are older in the LRU than their parents (evicted first).
      const lru = b.pool.lruOrder();
      for (const blk of lru) {
        const parent = b.prefixIndex.parentOf(blk)!;
        if (parent !== ROOT_PARENT_HASH) assert.ok(lru.indexOf(blk) < lru.indexOf(b.prefixIndex.lookup(parent)), `${label}: block ${blk} older than its parent`);
      }
      for (const toks of PROMPTS) {
        const ra = a.seqAdd(toks);
        const rb = b.seqAdd(toks);
        assert.equal(rb.cachedTokens, ra.cachedTokens, `${label}: cachedTokens of [${toks.slice(0, 3)}...]`);
        assert.ok(rb.cachedTokens >= L, `${label}: a hit`);
        assertSameRows(a, ra.seq, b, rb.seq, label);
        a.seqFree(ra.seq);
        b.seqFree(rb.seq);
      }
      // Re-saving the restored cache gives the same blocks (hashes, parents, bytes).
      const again = decodeSnapshot(encodePrefixCache(b));
      const first = decodeSnapshot(readFileSync(path));
      assert.equal(again.meta.nBlocks, first.meta.nBlocks);
      const recs = (s: typeof first) => {
        const raw = s.sections.get('blocks')!;
        return new Set(range(0, raw.length / 68).map((j) => Buffer.from(raw.subarray(j * 68, j * 68 + 68)).toString('hex')));
      };
      assert.deepEqual(recs(again), recs(first), `${label}: re-saved records`);
      a.dispose();
      b.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file order: depth-first, parents first, the most valuable subtree first', () => {
  const a = mk({ kDtype: 'f32', vDtype: 'f32' }, 40);
  fillShared(a, 3);
  const order = prefixSaveOrder(a);
  assert.equal(order.length, a.prefixIndex.size);
  const seen = new Set<string>([ROOT_PARENT_HASH]);
  for (const e of order) {
    assert.ok(seen.has(e.parent), 'parent before child');
    seen.add(e.hash);
  }
  // The in-use chain (BASE and its fork) comes first, before the freed PROMPTS[2] chain.
  assert.equal(a.pool.refCount(order[0]!.block) > 0, true);
  assert.equal(a.pool.refCount(order[order.length - 1]!.block), 0);
  a.dispose();
});

/** X (3 full blocks), Y (X's first 2 + 1), Z (3): freed in that order. See the small-pool test. */
function fillChains(c: PagedKVCache, seed: number): Record<'X' | 'Y' | 'Z', number[]> {
  const rng = mulberry32(seed);
  const toks = { X: range(0, 13), Y: [...range(0, 8), ...range(50, 56)], Z: range(70, 83) };
  for (const k of ['X', 'Y', 'Z'] as const) c.seqFree(run(c, toks[k], rng));
  return toks;
}

test('a pool too small loads whole chains only, parents first, and reports the rest', () => {
  const a = mk({ kDtype: 'f16', vDtype: 'f16' }, 30);
  const toks = fillChains(a, 5);
  assert.equal(a.prefixIndex.size, 7);
  const file = encodePrefixCache(a);
  // LRU oldest..newest: X3 Y3 X2 X1 Z3 Z2 Z1 -> file order Z1 Z2 Z3 | X1 X2 Y3 | X3 (three chains).
  const cases: [number, { blocks: number; skipped: number; present: number }, { X: number; Y: number; Z: number }][] = [
    [7 + 1, { blocks: 7, skipped: 0, present: 0 }, { X: 12, Y: 12, Z: 12 }],
    [6 + 1, { blocks: 6, skipped: 1, present: 0 }, { X: 8, Y: 12, Z: 12 }],
    [5 + 1, { blocks: 3, skipped: 4, present: 0 }, { X: 0, Y: 0, Z: 12 }],
    [2 + 1, { blocks: 0, skipped: 7, present: 0 }, { X: 0, Y: 0, Z: 0 }],
  ];
  for (const [nBlocks, want, hits] of cases) {
    const b = mk({ kDtype: 'f16', vDtype: 'f16' }, nBlocks);
    assert.deepEqual(decodePrefixCache(b, file), want, `nBlocks ${nBlocks}`);
    assert.equal(b.cachedBlocks, want.blocks);
    assert.equal(b.prefixIndex.size, want.blocks);
    for (const [hash, blk] of b.prefixIndex.entries()) {
      const parent = b.prefixIndex.parentOf(blk)!;
      assert.ok(parent === ROOT_PARENT_HASH || b.prefixIndex.lookup(parent) !== 0, `nBlocks ${nBlocks}: parent of ${hash} loaded`);
    }
    for (const k of ['X', 'Y', 'Z'] as const) assert.equal(b.cachedPrefixTokens(toks[k]), hits[k], `nBlocks ${nBlocks}: hit of ${k}`);
    b.dispose();
  }
  a.dispose();
});

test('loading into a non-empty cache: indexed hashes are present (not duplicated), its own cached blocks are not evicted', () => {
  const a = mk({ kDtype: 'q8_0', vDtype: 'q8_0' }, 30);
  const toks = fillChains(a, 6);
  const file = encodePrefixCache(a);
  // b computed X itself (other numbers, same addresses), holds a live sequence, and has 3 free blocks left.
  const b = mk({ kDtype: 'q8_0', vDtype: 'q8_0' }, 1 + 4 + 3 + 3);
  const rng = mulberry32(99);
  b.seqFree(run(b, toks.X, rng)); // X1..X3 cached-free, the partial block free
  const live = run(b, range(500, 516), rng); // 4 used blocks
  assert.deepEqual([b.freeBlocks, b.cachedBlocks, b.usedBlocks], [3, 3, 4]);
  const ownX = b.pool.lruOrder();
  // Z fits (3 free); X1 X2 Y3 needs 1 new block: none left, so the chain is skipped; X3 is present.
  assert.deepEqual(decodePrefixCache(b, file), { blocks: 3, skipped: 1, present: 3 });
  assert.deepEqual([b.freeBlocks, b.cachedBlocks, b.usedBlocks], [0, 6, 4]);
  for (const blk of ownX) assert.ok(b.pool.isCached(blk), `own cached block ${blk} kept`);
  assert.equal(b.cachedPrefixTokens(toks.Z), 12);
  assert.equal(b.cachedPrefixTokens(toks.Y), 8);
  // With room, a second load adds only what is missing.
  const c = mk({ kDtype: 'q8_0', vDtype: 'q8_0' }, 30);
  c.seqFree(run(c, toks.X, rng));
  assert.deepEqual(decodePrefixCache(c, file), { blocks: 4, skipped: 0, present: 3 });
  assert.deepEqual(decodePrefixCache(c, file), { blocks: 0, skipped: 0, present: 7 });
  assert.equal(c.prefixIndex.size, 7);
  b.seqFree(live);
  for (const x of [a, b, c]) x.dispose();
});

test('restore in a separate process ("after a restart") gets the prefix hits, bit-identical', () => {
  const dir = tmp();
  try {
    const spec: Spec = { kDtype: 'q4_0', vDtype: 'f16' };
    const a = mk(spec, 40);
    fillShared(a, 21);
    const path = join(dir, 'prefix.kvsnap');
    savePrefixCache(a, path);
    const digest = (r: { positions: Int32Array; k: Float32Array; v: Float32Array }): string =>
      createHash('sha256').update(Buffer.from(r.positions.buffer)).update(Buffer.from(r.k.buffer)).update(Buffer.from(r.v.buffer)).digest('hex');
    const expected = PROMPTS.map((toks) => {
      const { seq, cachedTokens } = a.seqAdd(toks);
      const layers = range(0, NL).map((l) => digest(a.read(l, seq)));
      a.seqFree(seq);
      return { cachedTokens, layers };
    });
    const srcUrl = new URL('../src/index.js', import.meta.url).href;
    const script = join(dir, 'restore.mjs');
    writeFileSync(script, `
import { createHash } from 'node:crypto';
import { Arena, PagedKVCache, loadPrefixCache } from ${JSON.stringify(srcUrl)};
const [path, prompts] = [process.argv[2], JSON.parse(process.argv[3])];
const cache = new PagedKVCache({ arena: new Arena({ initialBytes: 1 << 20, maximumBytes: 64 << 20 }), nLayers: ${NL}, nKvHeads: ${H}, headDim: ${D},
  nBlocks: 40, blockLen: ${L}, fingerprint: 'model-A', kDtype: '${spec.kDtype}', vDtype: '${spec.vDtype}' });
const loaded = loadPrefixCache(cache, path);
const digest = (r) => createHash('sha256').update(Buffer.from(r.positions.buffer)).update(Buffer.from(r.k.buffer)).update(Buffer.from(r.v.buffer)).digest('hex');
const hits = prompts.map((toks) => {
  const { seq, cachedTokens } = cache.seqAdd(toks);
  const layers = [];
  for (let l = 0; l < cache.nLayers; l++) layers.push(digest(cache.read(l, seq)));
  cache.seqFree(seq);
  return { cachedTokens, layers };
});
process.stdout.write(JSON.stringify({ loaded, hits }));
`);
    const r = spawnSync(process.execPath, [script, path, JSON.stringify(PROMPTS)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { loaded: { blocks: number }; hits: typeof expected };
    assert.equal(out.loaded.blocks, a.prefixIndex.size);
    assert.deepEqual(out.hits, expected);
    assert.ok(out.hits.every((h) => h.cachedTokens > 0));
    a.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A cache with sequences and cached blocks, to load into. */
function busy(spec: Spec, extra: Partial<PagedKVCacheConfig>): PagedKVCache {
  const c = mk(spec, 30, extra);
  const rng = mulberry32(7);
  c.seqFree(run(c, range(0, 9), rng));
  run(c, range(40, 47), rng);
  return c;
}

const MISMATCHES: [string, Partial<PagedKVCacheConfig>, string, string][] = [
  ['fingerprint', { fingerprint: 'model-B' }, 'model-B', 'model-A'],
  ['kDtype', { kDtype: 'f32' }, 'f32', 'f16'],
  ['vDtype', { vDtype: 'q8_0' }, 'q8_0', 'f16'],
  ['blockLen', { blockLen: 8 }, '8', '4'],
  ['headDim', { headDim: 64 }, '64', '32'],
  ['nLayers', { nLayers: 3 }, '3', '2'],
  ['nKvHeads', { nKvHeads: 1 }, '1', '2'],
];

test('wrong fingerprint, dtype or shape is a SnapshotMismatchError naming both values; the cache is unchanged', () => {
  const dir = tmp();
  try {
    const spec: Spec = { kDtype: 'f16', vDtype: 'f16' };
    const a = mk(spec, 40);
    fillShared(a, 1);
    const prefix = join(dir, 'prefix.kvsnap');
    const seqFile = join(dir, 'seq.kvsnap');
    savePrefixCache(a, prefix);
    saveSequence(a, a.seqIds()[0]!, seqFile);
    for (const [field, cfg, mine, theirs] of MISMATCHES) {
      const b = busy(spec, cfg);
      const before = state(b);
      for (const load of [() => loadPrefixCache(b, prefix), () => loadSequence(b, seqFile)]) {
        assert.throws(load, (e: unknown) => {
          assert.ok(e instanceof SnapshotMismatchError && e instanceof ConfigError, `${field}: ${String(e)}`);
          assert.match(e.message, new RegExp(`${field}.*expected ${mine}, given ${theirs}`), field);
          return true;
        });
        assert.equal(state(b), before, `${field}: cache unchanged`);
      }
      b.dispose();
    }
    a.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('truncated, corrupted, tampered or foreign files are typed errors from the snapshot layer; the cache is unchanged', () => {
  const dir = tmp();
  try {
    const spec: Spec = { kDtype: 'q8_0', vDtype: 'f32' };
    const a = mk(spec, 40);
    fillShared(a, 2);
    const file = encodePrefixCache(a);
    const snap = decodeSnapshot(file);
    const k0 = snap.entries.find((e) => e.name === 'layer.0.k')!;
    const b = busy(spec, {});
    const before = state(b);
    const path = join(dir, 'bad.kvsnap');
    const flip = (at: number): Uint8Array => {
      const x = file.slice();
      x[at]! ^= 0x10;
      return x;
    };
    const cases: [string, Uint8Array, (e: unknown) => boolean][] = [
      ['truncated', file.subarray(0, file.length - 100), (e) => e instanceof FormatError && !(e instanceof ChecksumError)],
      ['truncated header', file.subarray(0, 30), (e) => e instanceof FormatError],
      ['section byte flipped', flip(k0.offsetBytes + 5), (e) => e instanceof ChecksumError],
      ['header byte flipped', flip(40), (e) => e instanceof ChecksumError],
      ['container version', (() => { const x = file.slice(); x[8] = 9; return x; })(), (e) => e instanceof VersionError],
      ['meta formatVersion', tampered(file, (m) => (m.formatVersion = 2)), (e) => e instanceof VersionError],
      ['meta extra field', tampered(file, (m) => (m.extra = 1)), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['meta missing field', tampered(file, (m) => delete m.blockLen), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['meta dtype unknown', tampered(file, (m) => (m.kDtype = 'q5_1')), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['meta nBlocks', tampered(file, (m) => (m.nBlocks = (m.nBlocks as number) + 1)), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['section missing', tampered(file, (_, s) => s.delete('layer.1.v')), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['section short', tampered(file, (_, s) => s.set('layer.0.k', s.get('layer.0.k')!.subarray(1))), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['record token count', tampered(file, (_, s) => (s.get('blocks')![64] = 3)), (e) => e instanceof FormatError && e.constructor === FormatError],
      ['a sequence file', encodeSequence(a, a.seqIds()[0]!), (e) => e instanceof FormatError],
    ];
    for (const [why, bytes, ok] of cases) {
      writeFileSync(path, bytes);
      assert.throws(() => loadPrefixCache(b, path), ok, why);
      assert.equal(state(b), before, `${why}: cache unchanged`);
    }
    assert.throws(() => loadSequence(b, join(dir, 'missing.kvsnap')), /ENOENT/);
    b.dispose();
    assert.throws(() => loadPrefixCache(b, path), DisposedError);
    a.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failed save leaves no temp file and the old file intact', () => {
  const dir = tmp();
  try {
    const a = mk({ kDtype: 'f16', vDtype: 'q4_0' }, 40);
    fillShared(a, 4);
    const path = join(dir, 'prefix.kvsnap');
    savePrefixCache(a, path);
    const old = readFileSync(path);
    // Mid-stream failure (as a full disk would be): the third block read throws.
    const real = a.storage.blockView.bind(a.storage);
    let calls = 0;
    a.storage.blockView = (...args) => {
      if (++calls === 3) throw new Error('disk full (simulated)');
      return real(...args);
    };
    assert.throws(() => savePrefixCache(a, path), /disk full/);
    a.storage.blockView = real;
    assert.deepEqual(readdirSync(dir), ['prefix.kvsnap']);
    assert.deepEqual(readFileSync(path), old);
    // Failure at the rename: the target is a directory.
    const asDir = join(dir, 'taken');
    mkdirSync(join(asDir, 'inner'), { recursive: true });
    assert.throws(() => savePrefixCache(a, asDir));
    assert.throws(() => saveSequence(a, a.seqIds()[0]!, asDir));
    assert.deepEqual(readdirSync(dir).sort(), ['prefix.kvsnap', 'taken']);
    // A missing directory.
    assert.throws(() => savePrefixCache(a, join(dir, 'no', 'such.kvsnap')), /ENOENT/);
    assert.deepEqual(readdirSync(dir).sort(), ['prefix.kvsnap', 'taken']);
    // An unwritable directory (root writes anyway, so only checked as another user).
    if (process.getuid?.() !== 0) {
      const ro = join(dir, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o500);
      try {
        assert.throws(() => savePrefixCache(a, join(ro, 'x.kvsnap')), /EACCES|EPERM/);
        assert.deepEqual(readdirSync(ro), []);
      } finally {
        chmodSync(ro, 0o700);
      }
    }
    a.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A sequence with gaps (seqRemove in the middle of blocks), appended to after them. */
function gappySequence(c: PagedKVCache, rng: Rng): number {
  const { seq } = c.seqAdd();
  append(c, seq, range(0, 10), rng);
  append(c, seq, range(10, 23), rng);
  c.seqRemove(seq, 5, 9); // a hole inside block 1 and 2
  c.seqRemove(seq, 14, 15);
  append(c, seq, range(23, 26), rng, false);
  return seq;
}

test(`saveSequence / loadSequence: bit-exact, gaps kept, for ${SPECS.length} K/V dtype pairs`, () => {
  const dir = tmp();
  try {
    for (const [i, spec] of SPECS.entries()) {
      const label = `K=${spec.kDtype} V=${spec.vDtype}`;
      const a = mk(spec, 40);
      fillShared(a, 30 + i); // other sequences share the pool
      const seq = gappySequence(a, mulberry32(i));
      const path = join(dir, `seq-${i}.kvsnap`);
      saveSequence(a, seq, path);
      const b = mk(spec, 40);
      const got = loadSequence(b, path);
      assert.equal(typeof got, 'number', label);
      const sb = got!;
      assert.equal(b.seqLen(sb), a.seqLen(seq));
      assert.equal(b.nextPos(sb), a.nextPos(seq));
      assert.deepEqual([...b.read(0, sb).positions], [...range(0, 5), ...range(9, 14), ...range(15, 26)], label);
      assertSameRows(a, seq, b, sb, label);
      for (let l = 0; l < NL; l++) assert.deepEqual(storedRows(b, l, sb), storedRows(a, l, seq), `${label}: stored bytes of layer ${l}`);
      assert.equal(b.usedBlocks, Math.ceil(a.seqLen(seq) / L), `${label}: tokens packed into new blocks`);
      assert.equal(b.prefixIndex.size, 0, `${label}: not pristine, nothing indexed`);
      // Both go on the same way.
      const k = normalArray(mulberry32(5), 3 * H * D);
      for (const [c, s] of [[a, seq], [b, sb]] as const) {
        assert.ok(c.reserve(s, 3));
        for (let l = 0; l < NL; l++) c.write(l, s, k, k);
        c.commit(s);
      }
      assertSameRows(a, seq, b, sb, `${label} after appending`);
      a.dispose();
      b.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pristine sequence keeps its token ids: its full blocks are indexed again and give hits', () => {
  const spec: Spec = { kDtype: 'q8_0', vDtype: 'q4_0' };
  const a = mk(spec, 40);
  fillShared(a, 8);
  const fork = a.seqIds()[1]!; // the fork of BASE, extended: pristine, 20 tokens
  const toks = PROMPTS[3]!;
  const file = encodeSequence(a, fork);
  const meta = decodeSnapshot(file, PAGED_SEQUENCE_SNAPSHOT_KIND).meta;
  assert.equal(meta.hasTokenIds, true);
  assert.equal(meta.namespace, '');
  const b = mk(spec, 40);
  const sb = decodeSequence(b, file)!;
  assertSameRows(a, fork, b, sb, 'pristine');
  assert.equal(b.prefixIndex.size, Math.floor(toks.length / L));
  for (const [h] of b.prefixIndex.entries()) assert.notEqual(a.prefixIndex.lookup(h), 0, 'same addresses as in the original');
  const hit = b.seqAdd(toks);
  assert.equal(hit.cachedTokens, a.cachedPrefixTokens(toks));
  // The chain goes on: appending with ids indexes the next full block.
  const rng = mulberry32(1);
  append(b, sb, [7, 7, 7, 7], rng);
  assert.equal(b.prefixIndex.size, Math.floor((toks.length + 4) / L));
  // A namespace travels with the sequence.
  const ns = a.seqAdd(range(0, 9), { namespace: 'tenant-1' }).seq;
  append(a, ns, range(0, 9), rng);
  const c = mk(spec, 40);
  const sc = decodeSequence(c, encodeSequence(a, ns))!;
  assert.equal(c.cachedPrefixTokens(range(0, 9), { namespace: 'tenant-1' }), 8);
  assert.equal(c.cachedPrefixTokens(range(0, 9)), 0);
  assertSameRows(a, ns, c, sc, 'namespace');
  for (const x of [a, b, c]) x.dispose();
});

test('loadSequence: a pool too small returns null and changes nothing; empty sequences; open reservations', () => {
  const spec: Spec = { kDtype: 'f16', vDtype: 'f16' };
  const a = mk(spec, 40);
  const seq = gappySequence(a, mulberry32(3)); // 21 tokens -> 6 blocks when packed
  const file = encodeSequence(a, seq);
  const b = mk(spec, 1 + 5);
  const rng = mulberry32(4);
  b.seqFree(run(b, range(0, 9), rng)); // 2 cached-free + 1 free
  run(b, range(60, 64), rng); // 1 used
  const before = state(b);
  assert.equal(decodeSequence(b, file), null);
  assert.equal(state(b), before);
  // Exactly enough (evicting cached-free blocks, as reserve does).
  const c = mk(spec, 1 + 6);
  c.seqFree(run(c, range(0, 9), rng));
  const sc = decodeSequence(c, file);
  assert.notEqual(sc, null);
  assertSameRows(a, seq, c, sc!, 'exact fit');
  assert.equal(c.prefixIndex.size, 0, 'the evicted blocks left the index');
  // Empty sequences round trip.
  const empty = a.seqAdd().seq;
  const se = decodeSequence(c, encodeSequence(a, empty))!;
  assert.equal(c.seqLen(se), 0);
  // An open reservation cannot be saved.
  assert.ok(a.reserve(seq, 2));
  assert.throws(() => encodeSequence(a, seq), StateError);
  a.cancel(seq);
  for (const x of [a, b, c]) x.dispose();
});

test('kvcache inspect describes both snapshot kinds', () => {
  const dir = tmp();
  try {
    const a = mk({ kDtype: 'q4_0', vDtype: 'f16' }, 40);
    fillShared(a, 9);
    const p = join(dir, 'prefix.kvsnap');
    const s = join(dir, 'seq.kvsnap');
    savePrefixCache(a, p);
    saveSequence(a, a.seqIds()[0]!, s);
    const rp = inspectFile(p);
    assert.match(rp, new RegExp(`kind:\\s+${PAGED_PREFIX_SNAPSHOT_KIND.replace('.', '\\.')}`));
    assert.match(rp, /"fingerprint": "model-A"/);
    assert.match(rp, new RegExp(`"nBlocks": ${a.prefixIndex.size}`));
    assert.match(rp, /blocks\s+\d+\s+\d+\s+0x/);
    assert.match(rp, /layer\.1\.v/);
    const rs = inspectFile(s);
    assert.match(rs, /kvcache\.paged-sequence/);
    assert.match(rs, /"hasTokenIds": true/);
    assert.ok(existsSync(p));
    a.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
