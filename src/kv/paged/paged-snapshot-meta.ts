/**
 * What the two paged-cache snapshot kinds share (paged-snapshot.ts: the prefix cache;
 * seq-snapshot.ts: one sequence): the cache identity in their meta, its validation against the
 * cache a file is loaded into, and a chunk coalescer for streaming sections.
 *
 * NOTE(1): Identity = everything that makes stored bytes mean the same K/V: the model
 *   fingerprint, the K and V dtypes (raw bytes are copied, never re-quantized), nLayers,
 *   nKvHeads, headDim and blockLen. A file whose identity differs from the cache's is rejected
 *   with SnapshotMismatchError (a ConfigError: the file is well formed, it is for another
 *   cache), naming the field, the cache's value (expected) and the file's (given).
 * NOTE(2): A malformed meta (missing or extra field, wrong type) is a FormatError, a newer
 *   `formatVersion` a VersionError; both are checked before the identity and before anything in
 *   the cache changes.
 */
import { isDType, type DType } from '../../core/dtype.js';
import { ConfigError, DisposedError, FormatError, VersionError } from '../../core/errors.js';
import type { PagedKVCache } from './paged-cache.js';

/** Version of the paged snapshot kinds' meta and sections (the container has its own). */
export const PAGED_SNAPSHOT_FORMAT_VERSION = 1;

/** A snapshot for another model, dtype or shape than the cache it is loaded into (NOTE(1)). */
export class SnapshotMismatchError extends ConfigError {}

/** The meta fields both kinds carry. */
export interface PagedIdentityMeta {
  formatVersion: number;
  fingerprint: string;
  kDtype: DType;
  vDtype: DType;
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  blockLen: number;
  /** prefix: the saving cache's default namespace (each block hash covers its own); sequence: its namespace. */
  namespace: string;
}

const IDENTITY_KEYS = ['blockLen', 'fingerprint', 'formatVersion', 'headDim', 'kDtype', 'nKvHeads', 'nLayers', 'namespace', 'vDtype'];
/** The fields NOTE(1) compares, in the order they are checked. */
const MATCHED = ['fingerprint', 'kDtype', 'vDtype', 'nLayers', 'nKvHeads', 'headDim', 'blockLen'] as const;
const INT32_MAX = 0x7fffffff;

export function checkCacheLive(cache: PagedKVCache): void {
  if (cache.isDisposed) throw new DisposedError('paged KV cache', 'a live cache', 'a disposed cache');
}

export function identityMeta(cache: PagedKVCache, namespace: string): PagedIdentityMeta {
  const c = cache.config;
  return {
    formatVersion: PAGED_SNAPSHOT_FORMAT_VERSION,
    fingerprint: c.fingerprint, kDtype: c.kDtype, vDtype: c.vDtype,
    nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.headDim, blockLen: c.blockLen,
    namespace,
  };
}

export function metaInt(what: string, meta: Record<string, unknown>, key: string, min: number, max = INT32_MAX): number {
  const v = meta[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new FormatError(`${what} meta.${key}`, `an integer in [${min}, ${max}]`, typeof v === 'number' ? v : typeof v);
  }
  return v;
}

/**
 * The identity part of a decoded meta (NOTE(2)): exactly IDENTITY_KEYS + `extraKeys`, each of
 * its type. The extra fields are left for the caller to parse.
 */
export function parseIdentityMeta(what: string, meta: Record<string, unknown>, extraKeys: readonly string[]): PagedIdentityMeta {
  const v = meta.formatVersion;
  if (typeof v === 'number' && Number.isInteger(v) && v > PAGED_SNAPSHOT_FORMAT_VERSION) {
    throw new VersionError(`${what} meta.formatVersion`, PAGED_SNAPSHOT_FORMAT_VERSION, v);
  }
  const want = [...IDENTITY_KEYS, ...extraKeys].sort();
  const keys = Object.keys(meta).sort();
  if (keys.length !== want.length || keys.some((k, i) => k !== want[i])) {
    throw new FormatError(`${what} meta fields`, want.join(', '), keys.join(', ') || '(none)');
  }
  const formatVersion = metaInt(what, meta, 'formatVersion', 1, PAGED_SNAPSHOT_FORMAT_VERSION);
  const { fingerprint, namespace, kDtype, vDtype } = meta;
  if (typeof fingerprint !== 'string') throw new FormatError(`${what} meta.fingerprint`, 'a string', typeof fingerprint);
  if (typeof namespace !== 'string') throw new FormatError(`${what} meta.namespace`, 'a string', typeof namespace);
  if (!isDType(kDtype)) throw new FormatError(`${what} meta.kDtype`, 'a known dtype', String(kDtype));
  if (!isDType(vDtype)) throw new FormatError(`${what} meta.vDtype`, 'a known dtype', String(vDtype));
  return {
    formatVersion, fingerprint, kDtype, vDtype,
    nLayers: metaInt(what, meta, 'nLayers', 1),
    nKvHeads: metaInt(what, meta, 'nKvHeads', 1),
    headDim: metaInt(what, meta, 'headDim', 1),
    blockLen: metaInt(what, meta, 'blockLen', 1),
    namespace,
  };
}

/** Throws SnapshotMismatchError at the first identity field (NOTE(1)) where the file and the cache differ. */
export function checkIdentity(what: string, m: PagedIdentityMeta, cache: PagedKVCache): void {
  for (const key of MATCHED) {
    const mine = cache.config[key];
    if (m[key] !== mine) throw new SnapshotMismatchError(`${what}: ${key} (this cache's value expected, the file's given)`, mine, m[key]);
  }
}

export function layerSectionName(layer: number, which: 'k' | 'v'): string {
  return `layer.${layer}.${which}`;
}

/** Bytes of the scratch buffer that small pieces are gathered into before a write. */
export const CHUNK_BYTES = 1 << 20;

/**
 * Streams `pieces` as snapshot chunks: small pieces are copied into one reused scratch buffer
 * (fewer, larger writes), pieces of CHUNK_BYTES or more go out as they are. A yielded chunk is
 * valid until the next is requested, as SnapshotSectionInput allows.
 */
export function* coalesce(pieces: Iterable<Uint8Array>): Generator<Uint8Array> {
  let scratch: Uint8Array | null = null;
  let used = 0;
  for (const p of pieces) {
    if (p.length >= CHUNK_BYTES) {
      if (used > 0) yield scratch!.subarray(0, used);
      used = 0;
      yield p;
      continue;
    }
    scratch ??= new Uint8Array(CHUNK_BYTES);
    if (used + p.length > CHUNK_BYTES) {
      yield scratch.subarray(0, used);
      used = 0;
    }
    scratch.set(p, used);
    used += p.length;
  }
  if (used > 0) yield scratch!.subarray(0, used);
}
