/**
 * dump_kvcache / load_kvcache of the ktransformers KVCache facade, through the versioned,
 * checksummed snapshot container (io/snapshot.ts) instead of the original's headerless stream.
 *
 *   kind "kvcache.ktransformers"
 *   meta {formatVersion: 1, the 15 KVCacheConfig fields (enums by name: anchorType "QUEST",
 *         kvType "Q8_0", retrievalType "LAYER"), cacheTotalLen, nBlocks = ceil(cacheTotalLen / blockLen)}
 *   sections, l in [0, layerNum), file block i = logical block i of the dumped table:
 *     "layer.<l>.k"           [nBlocks, kvHeadNum, blockLen, rowBytes(kvType)] raw K bytes
 *     "layer.<l>.v"           [nBlocks, kvHeadNum, blockLen, rowBytes(kvType)] raw V bytes
 *     "layer.<l>.anchors"     [nBlocks, anchorNum, qHeadNum, headDim] f32 LE (zeros where not computed)
 *     "layer.<l>.importance"  [nBlocks, blockLen, qHeadNum] f32 LE
 *     "anchorValid"           [layerNum, nBlocks] u8: 1 = the block's anchors were computed (or set)
 *
 * NOTE(1): Raw stored bytes for every kv type (FP32, FP16, Q8_0, Q4_0): no re-quantization, so a
 *   load is bit-exact. (The original skipped Q8_0 K/V silently.) Anchors and importance are f32
 *   and exact too.
 * NOTE(2): Load checks everything before the cache changes: the container (FormatError,
 *   ChecksumError, VersionError), the meta and sections (FormatError, VersionError for a newer
 *   formatVersion), the identity (SnapshotMismatchError naming the first differing field among
 *   layerNum, kvHeadNum, qHeadNum, headDim, blockLen, kvType, anchorType, anchorNum: this cache's
 *   value expected, the file's given) and the room (CapacityError when nBlocks > maxBlockNum).
 *   retrievalType, layerStep, tokenStep, layerOffset, maxBatchSize and maxThreadNum only steer
 *   attention and may differ; maxBlockNum only needs to be large enough.
 * NOTE(3): Loaded blocks go to physical ids 0 .. nBlocks - 1 (identity-mapped, the "load a saved
 *   context, then query it" mode of attn without a table). Their anchors in every layer are
 *   replaced by the file's (forgotten where the file has none: recomputed when next needed),
 *   their importance by the file's; stored selections of every row are dropped. Other blocks
 *   keep their contents.
 * NOTE(4): The file is written atomically and streamed (snapshot-file.ts NOTE(1), NOTE(2)).
 */
import { CapacityError, FormatError, VersionError } from '../core/errors.js';
import { decodeSnapshot, encodeSnapshot, type DecodedSnapshot, type SnapshotSectionInput } from '../io/snapshot.js';
import { readSnapshotFile, writeSnapshotFile } from '../io/snapshot-file.js';
import type { BlockStorage } from '../kv/paged/block-storage.js';
import { SnapshotMismatchError, coalesce } from '../kv/paged/paged-snapshot-meta.js';
import type { SparseAttention } from '../kv/sparse/sparse-attention.js';
import { checkDumpArgs } from './ktransformers-checks.js';
import { parseGGMLType, parseKtAnchorType, parseKtRetrievalType, type KVCacheConfig } from './ktransformers-config.js';

export const KT_DUMP_KIND = 'kvcache.ktransformers';
export const KT_DUMP_FORMAT_VERSION = 1;
const WHAT = 'ktransformers KVCache dump';

/** What the dump reads and the load writes: the facade's config and core. */
export interface KtDumpTarget {
  readonly config: KVCacheConfig;
  readonly storage: BlockStorage;
  readonly sparse: SparseAttention;
}

const INT_FIELDS = ['layerNum', 'kvHeadNum', 'qHeadNum', 'headDim', 'blockLen', 'anchorNum', 'layerStep', 'tokenStep', 'layerOffset', 'maxBlockNum', 'maxBatchSize', 'maxThreadNum'] as const;
const ENUM_FIELDS = ['anchorType', 'kvType', 'retrievalType'] as const;
const META_KEYS = ['formatVersion', ...INT_FIELDS, ...ENUM_FIELDS, 'cacheTotalLen', 'nBlocks'].sort();
/** Compared with the loading cache, in this order (NOTE(2)). */
const MATCHED = ['layerNum', 'kvHeadNum', 'qHeadNum', 'headDim', 'blockLen', 'kvType', 'anchorType', 'anchorNum'] as const;

/** The parsed meta of a dump. */
export interface KtDumpMeta {
  formatVersion: number;
  /** The saving cache's config fields, enums by name. */
  config: Record<string, number | string>;
  cacheTotalLen: number;
  nBlocks: number;
}

function sectionNames(layer: number): { k: string; v: string; anchors: string; importance: string } {
  const p = `layer.${layer}.`;
  return { k: `${p}k`, v: `${p}v`, anchors: `${p}anchors`, importance: `${p}importance` };
}

/** f(id) for each id, produced lazily (one block's bytes at a time). */
function* each(ids: readonly number[], f: (id: number) => Uint8Array): Generator<Uint8Array> {
  for (const id of ids) yield f(id);
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The meta and streamed sections of a dump of logical blocks table[0 .. n) (the header's layout). */
export function dumpParts(t: KtDumpTarget, blockTable: Int32Array, cacheTotalLen: number): { meta: Record<string, unknown>; sections: SnapshotSectionInput[] } {
  const c = t.config;
  const n = checkDumpArgs(c, blockTable, cacheTotalLen);
  const ids = Array.from(blockTable.subarray(0, n), (id) => id + 1); // storage ids (block 0 is the pool's null block)
  const st = t.storage;
  const sp = t.sparse;
  const anchorFloats = c.anchorNum * c.qHeadNum * c.headDim;
  const zeros = new Float32Array(anchorFloats);
  const sections: SnapshotSectionInput[] = [];
  for (let l = 0; l < c.layerNum; l++) {
    const names = sectionNames(l);
    sections.push({ name: names.k, sizeBytes: n * st.kBlockBytes, chunks: () => coalesce(each(ids, (b) => st.blockView(l, 'k', b))) });
    sections.push({ name: names.v, sizeBytes: n * st.vBlockBytes, chunks: () => coalesce(each(ids, (b) => st.blockView(l, 'v', b))) });
    sections.push({
      name: names.anchors, sizeBytes: n * anchorFloats * 4,
      chunks: () => coalesce(each(ids, (b) => f32Bytes(sp.hasAnchors(l, b) ? sp.getAnchors(l, b) : zeros))),
    });
    sections.push({ name: names.importance, sizeBytes: n * c.blockLen * c.qHeadNum * 4, chunks: () => coalesce(each(ids, (b) => f32Bytes(sp.getImportance(l, b)))) });
  }
  const valid = new Uint8Array(c.layerNum * n);
  for (let l = 0; l < c.layerNum; l++) for (let i = 0; i < n; i++) valid[l * n + i] = sp.hasAnchors(l, ids[i]!) ? 1 : 0;
  sections.push({ name: 'anchorValid', bytes: valid });
  const meta = { formatVersion: KT_DUMP_FORMAT_VERSION, ...c.toJSON(), cacheTotalLen, nBlocks: n };
  return { meta, sections };
}

/** Write a dump file atomically (NOTE(4)). */
export function writeDumpFile(t: KtDumpTarget, blockTable: Int32Array, cacheTotalLen: number, path: string): void {
  const { meta, sections } = dumpParts(t, blockTable, cacheTotalLen);
  writeSnapshotFile(path, KT_DUMP_KIND, meta, sections);
}

/** A dump as bytes in memory (browser-safe). */
export function encodeDump(t: KtDumpTarget, blockTable: Int32Array, cacheTotalLen: number): Uint8Array {
  const { meta, sections } = dumpParts(t, blockTable, cacheTotalLen);
  return encodeSnapshot(KT_DUMP_KIND, meta, sections);
}

function metaInt(meta: Record<string, unknown>, key: string, min: number): number {
  const v = meta[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 0x7fffffff) {
    throw new FormatError(`${WHAT} meta.${key}`, `an integer in [${min}, 2147483647]`, typeof v === 'number' ? v : typeof v);
  }
  return v;
}

/** Meta fields and types (NOTE(2)); enums must be names this build knows. */
export function parseDumpMeta(meta: Record<string, unknown>): KtDumpMeta {
  const v = meta.formatVersion;
  if (typeof v === 'number' && Number.isInteger(v) && v > KT_DUMP_FORMAT_VERSION) throw new VersionError(`${WHAT} meta.formatVersion`, KT_DUMP_FORMAT_VERSION, v);
  const keys = Object.keys(meta).sort();
  if (keys.length !== META_KEYS.length || keys.some((k, i) => k !== META_KEYS[i])) {
    throw new FormatError(`${WHAT} meta fields`, META_KEYS.join(', '), keys.join(', ') || '(none)');
  }
  const formatVersion = metaInt(meta, 'formatVersion', 1);
  const config: Record<string, number | string> = {};
  for (const k of INT_FIELDS) config[k] = metaInt(meta, k, k === 'layerOffset' ? 0 : 1);
  const parsers = { anchorType: parseKtAnchorType, kvType: parseGGMLType, retrievalType: parseKtRetrievalType };
  for (const k of ENUM_FIELDS) {
    const x = meta[k];
    try {
      if (typeof x !== 'string') throw new Error();
      parsers[k](x);
    } catch {
      throw new FormatError(`${WHAT} meta.${k}`, 'a ktransformers enum name', typeof x === 'string' ? x : typeof x);
    }
    config[k] = (x as string).toUpperCase();
  }
  return { formatVersion, config, cacheTotalLen: metaInt(meta, 'cacheTotalLen', 0), nBlocks: metaInt(meta, 'nBlocks', 0) };
}

/** A checked dump ready to load (checkDump). */
export interface CheckedDump {
  readonly meta: KtDumpMeta;
  readonly snap: DecodedSnapshot;
}

/** Every check of NOTE(2) against the loading cache; throws a typed error, changes nothing. */
export function checkDump(t: KtDumpTarget, snap: DecodedSnapshot): CheckedDump {
  const c = t.config;
  if (snap.kind !== KT_DUMP_KIND) throw new FormatError('snapshot kind', KT_DUMP_KIND, snap.kind);
  const meta = parseDumpMeta(snap.meta);
  const mine = c.toJSON();
  for (const key of MATCHED) {
    if (meta.config[key] !== mine[key]) throw new SnapshotMismatchError(`${WHAT}: ${key} (this cache's value expected, the file's given)`, mine[key], meta.config[key]);
  }
  const { nBlocks: n, cacheTotalLen } = meta;
  if (n !== Math.ceil(cacheTotalLen / c.blockLen)) {
    throw new FormatError(`${WHAT} meta.nBlocks (cacheTotalLen ${cacheTotalLen} / blockLen ${c.blockLen}, rounded up)`, Math.ceil(cacheTotalLen / c.blockLen), n);
  }
  if (n > c.maxBlockNum) throw new CapacityError(`${WHAT}: blocks to load for maxBlockNum = ${c.maxBlockNum}`, `at most ${c.maxBlockNum}`, n);
  const st = t.storage;
  const want = new Map<string, number>();
  for (let l = 0; l < c.layerNum; l++) {
    const names = sectionNames(l);
    want.set(names.k, n * st.kBlockBytes);
    want.set(names.v, n * st.vBlockBytes);
    want.set(names.anchors, n * c.anchorNum * c.qHeadNum * c.headDim * 4);
    want.set(names.importance, n * c.blockLen * c.qHeadNum * 4);
  }
  want.set('anchorValid', c.layerNum * n);
  if (snap.sections.size !== want.size) throw new FormatError(`${WHAT} sections`, `${want.size} (K, V, anchors, importance for ${c.layerNum} layers, anchorValid)`, snap.sections.size);
  for (const [name, size] of want) {
    const data = snap.sections.get(name);
    if (data === undefined) throw new FormatError(`${WHAT} sections`, `a section named "${name}"`, 'none');
    if (data.length !== size) throw new FormatError(`${WHAT} section "${name}" size (implied by nBlocks = ${n})`, size, data.length);
  }
  const valid = snap.sections.get('anchorValid')!;
  for (let i = 0; i < valid.length; i++) if (valid[i]! > 1) throw new FormatError(`${WHAT} anchorValid[${i}]`, '0 or 1', valid[i]);
  return { meta, snap };
}

/** f32 values of bytes [at, at + 4n) (copied: a section may sit at any byte offset). */
function f32At(bytes: Uint8Array, at: number, n: number): Float32Array {
  return new Float32Array(bytes.slice(at, at + 4 * n).buffer);
}

/** Write a checked dump into the cache (NOTE(3)); returns the restored cacheTotalLen. */
export function applyDump(t: KtDumpTarget, d: CheckedDump): number {
  const c = t.config;
  const st = t.storage;
  const sp = t.sparse;
  const n = d.meta.nBlocks;
  const secs = d.snap.sections;
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  sp.invalidateBlocks(ids, true);
  for (let b = 0; b < c.maxBatchSize; b++) sp.forgetRow(b);
  const valid = secs.get('anchorValid')!;
  const aFloats = c.anchorNum * c.qHeadNum * c.headDim;
  const iFloats = c.blockLen * c.qHeadNum;
  for (let l = 0; l < c.layerNum; l++) {
    const names = sectionNames(l);
    const k = secs.get(names.k)!;
    const v = secs.get(names.v)!;
    const anchors = secs.get(names.anchors)!;
    const importance = secs.get(names.importance)!;
    for (let i = 0; i < n; i++) {
      st.blockView(l, 'k', i + 1).set(k.subarray(i * st.kBlockBytes, (i + 1) * st.kBlockBytes));
      st.blockView(l, 'v', i + 1).set(v.subarray(i * st.vBlockBytes, (i + 1) * st.vBlockBytes));
      sp.setImportance(l, i + 1, f32At(importance, i * iFloats * 4, iFloats));
      if (valid[l * n + i] === 1) sp.setAnchors(l, i + 1, f32At(anchors, i * aFloats * 4, aFloats));
    }
  }
  return d.meta.cacheTotalLen;
}

/** Read and check a dump file (changes nothing). */
export function readDumpFile(t: KtDumpTarget, path: string): CheckedDump {
  return checkDump(t, readSnapshotFile(path, KT_DUMP_KIND));
}

/** Decode and check dump bytes (changes nothing). */
export function decodeDump(t: KtDumpTarget, bytes: Uint8Array): CheckedDump {
  return checkDump(t, decodeSnapshot(bytes, KT_DUMP_KIND));
}
