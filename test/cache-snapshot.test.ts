/**
 * Saving and loading StaticCache / DynamicCache: bit-exact round trips over every dtype,
 * both layouts, mixed K/V dtypes and ragged batch rows; meta validation; no leaks on failure.
 * Stored bytes are read back here row by row from storageOf() strides (independently of the
 * packing code under test) and compared with the dequantised keys()/values() bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import type { DType } from '../src/core/dtype.js';
import { ConfigError, DisposedError, FormatError, KVCacheError, MemoryLimitError } from '../src/core/errors.js';
import { decodeSnapshot, encodeSnapshot } from '../src/io/snapshot.js';
import { inspectFile } from '../src/io/inspect.js';
import { DENSE_CACHE_SNAPSHOT_KIND, decodeCache, encodeCache, loadCache, saveCache } from '../src/kv/cache-snapshot.js';
import type { DenseCache } from '../src/kv/dense-cache.js';
import { DynamicCache } from '../src/kv/dynamic-cache.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { SubCache } from '../src/kv/sub-cache.js';
import type { KVLayout } from '../src/kv/types.js';

const newArena = (): Arena => new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });

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

const SPECIALS = [NaN, Infinity, -Infinity, -0, 0, 1e-40, -5.9e-8, 65504, 3.4e38];

interface Spec {
  type: 'static' | 'dynamic';
  kDtype: DType;
  vDtype: DType;
  layout: KVLayout;
}

const NL = 2;
const B = 3;
const H = 2;
const D = 32;
const MAX = 16;
const LENS = [
  [5, 0, 16],
  [3, 7, 1],
];

function makeCache(s: Spec, arena: Arena): StaticCache | DynamicCache {
  const cfg = { nLayers: NL, batchSize: B, nKvHeads: H, nHeads: 2 * H, headDim: D, maxSeqLen: MAX, kDtype: s.kDtype, vDtype: s.vDtype, layout: s.layout, arena };
  return s.type === 'static' ? new StaticCache(cfg) : new DynamicCache({ ...cfg, initialCapacity: 2 });
}

/** Fill rows to LENS with appendRow (several appends per row, so a DynamicCache grows). */
function fillByAppend(c: DenseCache, seed: number, lens = LENS): void {
  const next = rng(seed);
  const quantized = c.kDtype.startsWith('q') || c.vDtype.startsWith('q');
  const value = (): number => (!quantized && next() % 13 === 0 ? SPECIALS[next() % SPECIALS.length]! : (next() / 2 ** 32 - 0.5) * 8);
  for (let l = 0; l < c.nLayers; l++) {
    for (let b = 0; b < c.batchSize; b++) {
      let left = lens[l]![b]!;
      while (left > 0) {
        const n = Math.min(left, 1 + (next() % 5));
        const k = Float32Array.from({ length: n * H * D }, value);
        const v = Float32Array.from({ length: n * H * D }, value);
        c.appendRow(l, b, k, v);
        left -= n;
      }
    }
  }
}

/** Fill valid rows with random raw bytes (every bit pattern: NaN payloads, odd q scales). */
function fillRaw(c: DenseCache, seed: number): void {
  const next = rng(seed);
  for (let l = 0; l < c.nLayers; l++) {
    c.setSeqLen(l, 0, Math.max(...LENS[l]!));
    const s = c.storageOf(l);
    const bytes = c.arena.bytes;
    for (const [base, st] of [
      [s.kOffsetBytes, s.k],
      [s.vOffsetBytes, s.v],
    ] as const) {
      for (let i = 0; i < st.sizeBytes; i++) bytes[base + i] = next() & 0xff;
    }
    for (let b = 0; b < c.batchSize; b++) c.setSeqLen(l, b, LENS[l]![b]!);
  }
}

/** Valid stored bytes of (layer, K|V), row by row in [b][h][t] order, from the strides. */
function storedRows(c: DenseCache, l: number, which: 'k' | 'v'): Uint8Array {
  const s = c.storageOf(l);
  const base = which === 'k' ? s.kOffsetBytes : s.vOffsetBytes;
  const st = which === 'k' ? s.k : s.v;
  const parts: number[] = [];
  const bytes = c.arena.bytes;
  for (let b = 0; b < c.batchSize; b++) {
    for (let h = 0; h < c.nKvHeads; h++) {
      for (let t = 0; t < c.seqLen(l, b); t++) {
        const at = base + b * st.batchStrideBytes + h * st.headStrideBytes + t * st.tokenStrideBytes;
        for (let i = 0; i < st.rowBytes; i++) parts.push(bytes[at + i]!);
      }
    }
  }
  return Uint8Array.from(parts);
}

/**
 * Decoded values equal bit for bit, except that any NaN equals any NaN: a signalling NaN read
 * through a JS number may come back quieted or not depending on the JIT tier, so decoded NaN
 * payloads are not stable even for one cache. The stored bytes, compared exactly, are.
 */
function assertSameFloats(b: Float32Array, a: Float32Array, what: string): void {
  assert.equal(b.length, a.length, `${what} length`);
  const ab = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const bb = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ab[i] !== bb[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) assert.fail(`${what}[${i}]: 0x${bb[i]!.toString(16)} != 0x${ab[i]!.toString(16)}`);
  }
}

/** Config, lengths, stored bytes and decoded K/V of `b` equal those of `a`, bit for bit. */
function assertSameCache(a: DenseCache, b: DenseCache): void {
  assert.equal(b.constructor, a.constructor);
  for (const key of ['nLayers', 'batchSize', 'nKvHeads', 'nHeads', 'headDim', 'maxSeqLen', 'kDtype', 'vDtype', 'layout'] as const) {
    assert.equal(b[key], a[key], key);
  }
  for (let l = 0; l < a.nLayers; l++) {
    for (let r = 0; r < a.batchSize; r++) {
      assert.equal(b.seqLen(l, r), a.seqLen(l, r), `seqLen(${l}, ${r})`);
      assertSameFloats(b.keys(l, r), a.keys(l, r), `keys(${l}, ${r})`);
      assertSameFloats(b.values(l, r), a.values(l, r), `values(${l}, ${r})`);
    }
    assert.deepEqual(storedRows(b, l, 'k'), storedRows(a, l, 'k'), `stored K of layer ${l}`);
    assert.deepEqual(storedRows(b, l, 'v'), storedRows(a, l, 'v'), `stored V of layer ${l}`);
  }
}

const DTYPES: DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
const SPECS: Spec[] = [];
for (const type of ['static', 'dynamic'] as const) {
  for (const layout of ['bhsd', 'bshd'] as const) {
    for (const d of DTYPES) SPECS.push({ type, layout, kDtype: d, vDtype: d });
    for (const [k, v] of [
      ['q4_0', 'f16'],
      ['f32', 'q8_0'],
      ['bf16', 'q4_0'],
      ['q8_0', 'f32'],
    ] as const) {
      SPECS.push({ type, layout, kDtype: k, vDtype: v });
    }
  }
}

test(`in-memory round trip is bit-exact for ${SPECS.length} (type, layout, kDtype, vDtype) combinations`, () => {
  const arena = newArena();
  for (const [i, s] of SPECS.entries()) {
    const label = `${s.type} ${s.layout} K=${s.kDtype} V=${s.vDtype}`;
    for (const fill of [fillByAppend, fillRaw]) {
      const a = makeCache(s, arena);
      fill(a, 100 + i);
      const file = encodeCache(a);
      const b = decodeCache(file, { arena });
      try {
        assertSameCache(a, b);
        assert.deepEqual(encodeCache(b), file, `${label}: re-encoding a loaded cache gives the same bytes`);
      } catch (e) {
        throw new Error(`${label} (${fill.name}): ${(e as Error).message}`);
      }
      a.dispose();
      b.dispose();
    }
  }
  assert.equal(arena.liveAllocations, 0);
});

test('the file holds only valid rows: its payload follows the lengths, not the capacity', () => {
  const arena = newArena();
  const a = makeCache({ type: 'static', layout: 'bshd', kDtype: 'q4_0', vDtype: 'f16' }, arena);
  fillByAppend(a, 7);
  const snap = decodeSnapshot(encodeCache(a), DENSE_CACHE_SNAPSHOT_KIND);
  assert.deepEqual(snap.meta.lens, LENS);
  assert.equal(snap.meta.cacheType, 'static');
  assert.equal(snap.sections.get('layer.0.k')!.length, (5 + 0 + 16) * H * 18);
  assert.equal(snap.sections.get('layer.1.v')!.length, (3 + 7 + 1) * H * D * 2);
  a.dispose();
});

test('empty caches and a cache loaded then appended to', () => {
  const arena = newArena();
  for (const type of ['static', 'dynamic'] as const) {
    const empty = makeCache({ type, layout: 'bhsd', kDtype: 'f16', vDtype: 'f16' }, arena);
    const loaded = decodeCache(encodeCache(empty), { arena });
    assertSameCache(empty, loaded);
    // Append after load: the loaded cache is a working cache (a DynamicCache grows from it).
    const src = makeCache({ type, layout: 'bshd', kDtype: 'f32', vDtype: 'bf16' }, arena);
    fillByAppend(src, 9);
    const back = decodeCache(encodeCache(src), { arena, initialCapacity: 1 });
    const k = Float32Array.from({ length: H * D }, (_, i) => i);
    src.appendRow(1, 0, k, k);
    back.appendRow(1, 0, k, k);
    assertSameCache(src, back);
    for (const c of [empty, loaded, src, back]) c.dispose();
  }
  assert.equal(arena.liveAllocations, 0);
});

test('saveCache / loadCache through a file; atomic (no temp file left); inspect shows the meta', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-cache-snapshot-'));
  const arena = newArena();
  try {
    for (const [i, s] of SPECS.filter((_, j) => j % 5 === 0).entries()) {
      const a = makeCache(s, arena);
      fillByAppend(a, 300 + i);
      const path = join(dir, 'cache.kvsnap');
      saveCache(a, path);
      assert.deepEqual(readdirSync(dir), ['cache.kvsnap']);
      const b = loadCache(path, { arena });
      assertSameCache(a, b);
      const report = inspectFile(path);
      assert.match(report, /kvcache\.dense-cache/);
      assert.match(report, new RegExp(`"cacheType": "${s.type}"`));
      assert.match(report, /"lens": \[\n\s+\[5,0,16\],\n\s+\[3,7,1\]\n\s+\]/);
      a.dispose();
      b.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(arena.liveAllocations, 0);
});

test('saving rejects what is not a StaticCache or DynamicCache, and disposed caches', () => {
  const arena = newArena();
  const parent = new StaticCache({ nLayers: 1, nKvHeads: 1, headDim: 4, maxSeqLen: 8, arena });
  const sub = new SubCache(parent, 2, 4);
  assert.throws(() => encodeCache(sub as unknown as StaticCache), ConfigError);
  assert.throws(() => encodeCache({} as StaticCache), ConfigError);
  parent.dispose();
  assert.throws(() => encodeCache(parent), DisposedError);
});

/** Re-encode `a`'s snapshot with its meta / sections changed (all checksums valid). */
function tampered(file: Uint8Array, edit: (meta: Record<string, unknown>, sections: Map<string, Uint8Array>) => void, kind = DENSE_CACHE_SNAPSHOT_KIND): Uint8Array {
  const snap = decodeSnapshot(file);
  const meta = structuredClone(snap.meta);
  const sections = new Map(snap.sections);
  edit(meta, sections);
  return encodeSnapshot(kind, meta, [...sections].map(([name, bytes]) => ({ name, bytes })));
}

test('inconsistent meta or sections are FormatErrors and allocate nothing', () => {
  const arena = newArena();
  const a = makeCache({ type: 'dynamic', layout: 'bhsd', kDtype: 'q8_0', vDtype: 'f16' }, arena);
  fillByAppend(a, 11);
  const file = encodeCache(a);
  const live = arena.liveAllocations;
  const cases: [string, (m: Record<string, unknown>, s: Map<string, Uint8Array>) => void][] = [
    ['unknown dtype', (m) => (m.kDtype = 'q5_1')],
    ['unknown layout', (m) => (m.layout = 'sbhd')],
    ['unknown cacheType', (m) => (m.cacheType = 'sub')],
    ['missing field', (m) => delete m.nHeads],
    ['extra field', (m) => (m.extra = 1)],
    ['nLayers zero', (m) => (m.nLayers = 0)],
    ['headDim fractional', (m) => (m.headDim = 32.5)],
    ['batchSize a string', (m) => (m.batchSize = '3')],
    ['maxSeqLen huge', (m) => (m.maxSeqLen = 2 ** 40)],
    ['len past maxSeqLen', (m) => ((m.lens as number[][])[0]![2] = MAX + 1)],
    ['len negative', (m) => ((m.lens as number[][])[0]![0] = -1)],
    ['lens rows != nLayers', (m) => (m.lens = [[5, 0, 16]])],
    ['lens row != batchSize', (m) => ((m.lens as number[][])[1] = [3, 7])],
    ['lens not an array', (m) => (m.lens = 'none')],
    ['GQA heads', (m) => (m.nHeads = 3)],
    ['headDim vs q8_0 block', (m) => (m.headDim = 16)],
    ['section size vs lens', (m) => ((m.lens as number[][])[1]![0] = 2)],
    ['missing section', (_, s) => s.delete('layer.1.v')],
    ['extra section', (_, s) => s.set('layer.2.k', new Uint8Array(0))],
    ['renamed section', (_, s) => (s.set('layer.1.x', s.get('layer.1.v')!), s.delete('layer.1.v'))],
    ['section one byte short', (_, s) => s.set('layer.0.k', s.get('layer.0.k')!.subarray(1))],
  ];
  for (const [why, edit] of cases) {
    assert.throws(() => decodeCache(tampered(file, edit), { arena }), (e: unknown) => e instanceof FormatError && e.constructor === FormatError, why);
    assert.equal(arena.liveAllocations, live, `${why}: nothing allocated`);
  }
  assert.throws(() => decodeCache(tampered(file, () => {}, 'other.kind'), { arena }), FormatError);
  a.dispose();
});

test('running out of arena while loading throws MemoryLimitError and frees the half-built cache', () => {
  const big = newArena();
  const cfg = { nLayers: 2, nKvHeads: 2, headDim: 32, maxSeqLen: 4096, arena: big, initialCapacity: 1 };
  const a = new DynamicCache(cfg);
  const row = (n: number): Float32Array => new Float32Array(n * 2 * 32).fill(1.5);
  a.appendRow(0, 0, row(1), row(1));
  a.appendRow(1, 0, row(3000), row(3000));
  const file = encodeCache(a);
  const small = new Arena({ maximumBytes: 2 << 20, initialBytes: 1 << 20 });
  assert.throws(
    () => decodeCache(file, { arena: small, initialCapacity: 1 }),
    (e: unknown) => e instanceof MemoryLimitError && e instanceof KVCacheError,
  );
  assert.equal(small.liveAllocations, 0);
  assert.equal(small.usedBytes, 0);
  a.dispose();
});
