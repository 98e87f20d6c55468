/**
 * Save and load a StaticCache or DynamicCache as a snapshot (io/snapshot.ts container).
 *
 *   kind "kvcache.dense-cache"
 *   meta {cacheType: 'static'|'dynamic', nLayers, batchSize, nKvHeads, nHeads, headDim,
 *         maxSeqLen, kDtype, vDtype, layout: 'bhsd'|'bshd', lens: [nLayers][batchSize]}
 *   sections, for l in [0, nLayers):
 *     "layer.<l>.k"   valid K rows, packed [batchSize][nKvHeads][lens[l][b]][rowBytes(kDtype)]
 *     "layer.<l>.v"   valid V rows, packed [batchSize][nKvHeads][lens[l][b]][rowBytes(vDtype)]
 *
 * NOTE(1): Only valid rows are stored, packed in one order whatever the layout, as the raw
 *   stored bytes (quantized blocks, f16 bits, NaN payloads): a round trip is bit-exact and a
 *   file's size follows the cached tokens, not the capacity.
 * NOTE(2): Load checks everything before allocating (meta fields and types, lens within
 *   maxSeqLen, exactly the expected sections with exactly the implied sizes) and reports a
 *   bad file as FormatError; the only errors after allocation are arena limits, and then
 *   the half-built cache is disposed, so a failed load leaves nothing allocated.
 * NOTE(3): Saving is synchronous (snapshot-file.ts NOTE(3)) and streams rows straight from
 *   the arena: bhsd rows of one (row, head) are contiguous and go out as one arena view;
 *   bshd rows are gathered per (row, head) into one reused scratch buffer.
 * NOTE(4): A loaded DynamicCache starts at `initialCapacity` (default as for a new one)
 *   and grows to hold the saved lengths; capacity is not saved (it holds no data).
 * NOTE(5): saveCache/loadCache use node:fs; encodeCache/decodeCache are browser-safe.
 */
import { defaultArena, type Arena } from '../core/arena.js';
import { isDType, rowSizeBytes, type DType } from '../core/dtype.js';
import { ConfigError, FormatError, KVCacheError } from '../core/errors.js';
import { decodeSnapshot, encodeSnapshot, type DecodedSnapshot, type SnapshotSectionInput } from '../io/snapshot.js';
import { readSnapshotFile, writeSnapshotFile } from '../io/snapshot-file.js';
import { resolveDenseConfig, type DenseCache, type LayerStorage, type ResolvedDenseConfig } from './dense-cache.js';
import { DynamicCache } from './dynamic-cache.js';
import { StaticCache } from './static-cache.js';
import type { KVLayout } from './types.js';

export const DENSE_CACHE_SNAPSHOT_KIND = 'kvcache.dense-cache';

export interface DenseCacheSnapshotMeta {
  cacheType: 'static' | 'dynamic';
  nLayers: number;
  batchSize: number;
  nKvHeads: number;
  nHeads: number;
  headDim: number;
  maxSeqLen: number;
  kDtype: DType;
  vDtype: DType;
  layout: KVLayout;
  /** [nLayers][batchSize] valid positions. */
  lens: number[][];
}

export interface LoadCacheOptions {
  /** Where the loaded cache's storage lives. Default: the process-wide arena. */
  arena?: Arena;
  /** DynamicCache only: positions allocated per row at first (NOTE(4)). */
  initialCapacity?: number;
}

const META_KEYS = ['batchSize', 'cacheType', 'headDim', 'kDtype', 'layout', 'lens', 'maxSeqLen', 'nHeads', 'nKvHeads', 'nLayers', 'vDtype'];
const INT32_MAX = 0x7fffffff;

export function layerSectionName(layer: number, which: 'k' | 'v'): string {
  return `layer.${layer}.${which}`;
}

function cacheTypeOf(cache: unknown): 'static' | 'dynamic' {
  if (cache instanceof StaticCache) return 'static';
  if (cache instanceof DynamicCache) return 'dynamic';
  throw new ConfigError('cache to snapshot', 'a StaticCache or DynamicCache', cache === null ? 'null' : ((cache as object)?.constructor?.name ?? typeof cache));
}

/** The meta a snapshot of `cache` carries. */
export function cacheSnapshotMeta(cache: StaticCache | DynamicCache): DenseCacheSnapshotMeta {
  const cacheType = cacheTypeOf(cache);
  const lens: number[][] = [];
  for (let l = 0; l < cache.nLayers; l++) {
    const row: number[] = [];
    for (let b = 0; b < cache.batchSize; b++) row.push(cache.seqLen(l, b));
    lens.push(row);
  }
  const { nLayers, batchSize, nKvHeads, nHeads, headDim, maxSeqLen, kDtype, vDtype, layout } = cache;
  return { cacheType, nLayers, batchSize, nKvHeads, nHeads, headDim, maxSeqLen, kDtype, vDtype, layout, lens };
}

/** Base byte offset and strides of K or V of one layer. */
function part(s: LayerStorage, which: 'k' | 'v'): { base: number; st: LayerStorage['k'] } {
  return which === 'k' ? { base: s.kOffsetBytes, st: s.k } : { base: s.vOffsetBytes, st: s.v };
}

/** The valid rows of (layer, K or V) as chunks in packed order (NOTE(3)). */
function* validRowChunks(cache: DenseCache, layer: number, which: 'k' | 'v', lens: readonly number[]): Generator<Uint8Array> {
  const { base, st } = part(cache.storageOf(layer), which);
  const R = st.rowBytes;
  const contiguous = st.tokenStrideBytes === R;
  const scratch = contiguous ? null : new Uint8Array(maxOf(lens) * R); // [len][rowBytes]
  for (let b = 0; b < cache.batchSize; b++) {
    const len = lens[b]!;
    if (len === 0) continue;
    for (let h = 0; h < cache.nKvHeads; h++) {
      const start = base + b * st.batchStrideBytes + h * st.headStrideBytes;
      const bytes = cache.arena.bytes;
      if (scratch === null) {
        yield bytes.subarray(start, start + len * R);
        continue;
      }
      for (let t = 0; t < len; t++) {
        const from = start + t * st.tokenStrideBytes;
        scratch.set(bytes.subarray(from, from + R), t * R);
      }
      yield scratch.subarray(0, len * R);
    }
  }
}

/** Largest value (0 for none); a loop, since spreading a long array into Math.max overflows the stack. */
function maxOf(xs: readonly number[]): number {
  let m = 0;
  for (const x of xs) if (x > m) m = x;
  return m;
}

function packedSizeBytes(dtype: DType, nKvHeads: number, headDim: number, lens: readonly number[]): number {
  let rows = 0;
  for (const len of lens) rows += len;
  return rows * nKvHeads * rowSizeBytes(dtype, headDim);
}

/** The snapshot sections of `cache` (streamed from its storage, NOTE(3)). */
export function cacheSnapshotSections(cache: StaticCache | DynamicCache, meta = cacheSnapshotMeta(cache)): SnapshotSectionInput[] {
  const out: SnapshotSectionInput[] = [];
  for (let l = 0; l < cache.nLayers; l++) {
    const lens = meta.lens[l]!;
    for (const which of ['k', 'v'] as const) {
      const dtype = which === 'k' ? cache.kDtype : cache.vDtype;
      out.push({
        name: layerSectionName(l, which),
        sizeBytes: packedSizeBytes(dtype, cache.nKvHeads, cache.headDim, lens),
        chunks: () => validRowChunks(cache, l, which, lens),
      });
    }
  }
  return out;
}

/** Encode a cache as snapshot bytes in memory. */
export function encodeCache(cache: StaticCache | DynamicCache): Uint8Array {
  const meta = cacheSnapshotMeta(cache);
  return encodeSnapshot(DENSE_CACHE_SNAPSHOT_KIND, { ...meta }, cacheSnapshotSections(cache, meta));
}

/** Save a cache to `path` atomically (temp file, fsync, rename), synchronously (NOTE(3)). */
export function saveCache(cache: StaticCache | DynamicCache, path: string): void {
  const meta = cacheSnapshotMeta(cache);
  writeSnapshotFile(path, DENSE_CACHE_SNAPSHOT_KIND, { ...meta }, cacheSnapshotSections(cache, meta));
}

/** Decode snapshot bytes into a new cache of the saved type and config. */
export function decodeCache(bytes: Uint8Array, opts: LoadCacheOptions = {}): StaticCache | DynamicCache {
  return cacheFromSnapshot(decodeSnapshot(bytes, DENSE_CACHE_SNAPSHOT_KIND), opts);
}

/** Load a cache saved by saveCache. */
export function loadCache(path: string, opts: LoadCacheOptions = {}): StaticCache | DynamicCache {
  return cacheFromSnapshot(readSnapshotFile(path, DENSE_CACHE_SNAPSHOT_KIND), opts);
}

function metaInt(meta: Record<string, unknown>, key: string): number {
  const v = meta[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > INT32_MAX) {
    throw new FormatError(`cache snapshot meta.${key}`, `an integer in [1, ${INT32_MAX}]`, typeof v === 'number' ? v : typeof v);
  }
  return v;
}

/** Validate the meta of a decoded snapshot (NOTE(2)); every problem is a FormatError. */
export function parseCacheSnapshotMeta(meta: Record<string, unknown>): DenseCacheSnapshotMeta {
  const keys = Object.keys(meta).sort();
  if (keys.length !== META_KEYS.length || keys.some((k, i) => k !== META_KEYS[i])) {
    throw new FormatError('cache snapshot meta fields', META_KEYS.join(', '), keys.join(', ') || '(none)');
  }
  const cacheType = meta.cacheType;
  if (cacheType !== 'static' && cacheType !== 'dynamic') throw new FormatError('cache snapshot meta.cacheType', "'static' or 'dynamic'", String(cacheType));
  const nLayers = metaInt(meta, 'nLayers');
  const batchSize = metaInt(meta, 'batchSize');
  const maxSeqLen = metaInt(meta, 'maxSeqLen');
  const { kDtype, vDtype, layout, lens } = meta;
  if (!isDType(kDtype)) throw new FormatError('cache snapshot meta.kDtype', 'a known dtype', String(kDtype));
  if (!isDType(vDtype)) throw new FormatError('cache snapshot meta.vDtype', 'a known dtype', String(vDtype));
  if (layout !== 'bhsd' && layout !== 'bshd') throw new FormatError('cache snapshot meta.layout', "'bhsd' or 'bshd'", String(layout));
  if (!Array.isArray(lens) || lens.length !== nLayers) {
    throw new FormatError('cache snapshot meta.lens', `an array of nLayers = ${nLayers} rows`, Array.isArray(lens) ? lens.length : typeof lens);
  }
  const checked = lens.map((row: unknown, l) => {
    if (!Array.isArray(row) || row.length !== batchSize) {
      throw new FormatError(`cache snapshot meta.lens[${l}]`, `an array of batchSize = ${batchSize} lengths`, Array.isArray(row) ? row.length : typeof row);
    }
    return row.map((len: unknown, b) => {
      if (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > maxSeqLen) {
        throw new FormatError(`cache snapshot meta.lens[${l}][${b}]`, `an integer in [0, maxSeqLen = ${maxSeqLen}]`, typeof len === 'number' ? len : typeof len);
      }
      return len;
    });
  });
  const out: DenseCacheSnapshotMeta = {
    cacheType,
    nLayers,
    batchSize,
    nKvHeads: metaInt(meta, 'nKvHeads'),
    nHeads: metaInt(meta, 'nHeads'),
    headDim: metaInt(meta, 'headDim'),
    maxSeqLen,
    kDtype,
    vDtype,
    layout,
    lens: checked,
  };
  try {
    resolveDenseConfig(out); // GQA head counts, headDim vs block size of quantized dtypes
  } catch (e) {
    if (e instanceof KVCacheError) throw new FormatError(`cache snapshot meta (${e.message})`, 'a valid cache config', 'an invalid one');
    throw e;
  }
  return out;
}

/** Check the section table against the meta (NOTE(2)): exactly the expected names and sizes. */
function checkSections(snap: DecodedSnapshot, m: DenseCacheSnapshotMeta): void {
  const expected = 2 * m.nLayers;
  if (snap.sections.size !== expected) {
    throw new FormatError('cache snapshot sections', `${expected} (K and V for ${m.nLayers} layers)`, snap.sections.size);
  }
  for (let l = 0; l < m.nLayers; l++) {
    for (const which of ['k', 'v'] as const) {
      const name = layerSectionName(l, which);
      const data = snap.sections.get(name);
      if (data === undefined) throw new FormatError('cache snapshot sections', `a section named "${name}"`, 'none');
      const want = packedSizeBytes(which === 'k' ? m.kDtype : m.vDtype, m.nKvHeads, m.headDim, m.lens[l]!);
      if (data.length !== want) throw new FormatError(`cache snapshot section "${name}" size (implied by lens)`, want, data.length);
    }
  }
}

/** Copy packed rows of one (layer, K or V) into the cache's storage (inverse of validRowChunks). */
function scatterRows(cache: DenseCache, layer: number, which: 'k' | 'v', lens: readonly number[], src: Uint8Array): void {
  const { base, st } = part(cache.storageOf(layer), which);
  const R = st.rowBytes;
  const bytes = cache.arena.bytes;
  let at = 0;
  for (let b = 0; b < cache.batchSize; b++) {
    const len = lens[b]!;
    for (let h = 0; h < cache.nKvHeads && len > 0; h++) {
      const start = base + b * st.batchStrideBytes + h * st.headStrideBytes;
      if (st.tokenStrideBytes === R) {
        bytes.set(src.subarray(at, at + len * R), start);
        at += len * R;
        continue;
      }
      for (let t = 0; t < len; t++, at += R) bytes.set(src.subarray(at, at + R), start + t * st.tokenStrideBytes);
    }
  }
}

/** Build a cache from a decoded snapshot of kind DENSE_CACHE_SNAPSHOT_KIND. */
export function cacheFromSnapshot(snap: DecodedSnapshot, opts: LoadCacheOptions = {}): StaticCache | DynamicCache {
  if (snap.kind !== DENSE_CACHE_SNAPSHOT_KIND) throw new FormatError('snapshot kind', DENSE_CACHE_SNAPSHOT_KIND, snap.kind);
  const m = parseCacheSnapshotMeta(snap.meta);
  checkSections(snap, m);
  const arena = opts.arena ?? defaultArena();
  const { nLayers, batchSize, nKvHeads, nHeads, headDim, maxSeqLen, kDtype, vDtype, layout } = m;
  const cfg: ResolvedDenseConfig & { arena: Arena } = { nLayers, batchSize, nKvHeads, nHeads, headDim, maxSeqLen, kDtype, vDtype, layout, arena };
  const cache = m.cacheType === 'static' ? new StaticCache(cfg) : new DynamicCache({ ...cfg, initialCapacity: opts.initialCapacity });
  try {
    for (let l = 0; l < m.nLayers; l++) {
      const lens = m.lens[l]!;
      // Grow first (a DynamicCache copies only rows already valid), then write, then set lengths.
      cache.setSeqLen(l, 0, maxOf(lens));
      scatterRows(cache, l, 'k', lens, snap.sections.get(layerSectionName(l, 'k'))!);
      scatterRows(cache, l, 'v', lens, snap.sections.get(layerSectionName(l, 'v'))!);
      for (let b = 0; b < m.batchSize; b++) cache.setSeqLen(l, b, lens[b]!);
    }
  } catch (e) {
    cache.dispose();
    throw e;
  }
  return cache;
}
