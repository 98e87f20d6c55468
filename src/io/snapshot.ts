/**
 * The snapshot container: a versioned, checksummed file of named byte sections plus a JSON
 * header. It knows nothing about caches: a writer picks a `kind` and free JSON `meta`
 * (dense caches today; paged caches, prefix caches and the ktransformers dump later).
 * This module is browser-safe (Uint8Array in, Uint8Array out); files are snapshot-file.ts.
 *
 * Format v1 (all integers little-endian):
 *
 *   offset      size  field
 *   0           8     magic "KVCSNAP\0"
 *   8           4     u32 format version (1)
 *   12          4     u32 H = header byte length
 *   16          4     u32 CRC-32 of the H header bytes
 *   20          H     header, UTF-8 JSON:
 *                       {"kind": string, "meta": {...free JSON...},
 *                        "sections": [{"name", "offsetBytes", "sizeBytes", "crc32": "8 hex digits"}],
 *                        "fileSizeBytes": int}
 *   20+H        ..    zero padding up to o0
 *   o0          s0    section 0 bytes      o0 = alignUp(20 + H, 64)
 *   o0+s0       ..    zero padding up to o1
 *   o1          s1    section 1 bytes      o1 = alignUp(o0 + s0, 64)
 *   ...
 *   end                                     end = o_last + s_last (20 + H with no sections)
 *                                           = fileSizeBytes = file length (no trailing bytes)
 *
 * NOTE(1): The layout is canonical: every offset follows from H and the sizes before it, and
 *   decode demands exactly that. So every byte of a file is a checked fixed field (magic,
 *   version), covered by a CRC (header, sections), or checked zero padding: a flipped byte
 *   anywhere is rejected (up to CRC-32 collisions), never decoded to different data.
 * NOTE(2): A section's crc32 is fixed-width hex, so the header's size does not depend on the
 *   checksums: a writer can plan the layout from names and sizes alone, stream the sections
 *   while checksumming them, and fill the header in last (see snapshot-file.ts).
 * NOTE(3): Sections start on 64-byte boundaries so a reader can copy them straight into
 *   cache-line / SIMD aligned arena memory, or map them.
 * NOTE(4): decodeSnapshot throws only KVCacheError subclasses (FormatError, VersionError,
 *   ChecksumError) and does work bounded by the input length: no allocation sized by a field
 *   before that field is checked against the bytes actually present.
 * NOTE(5): Decoded sections are views into the input (zero copy): copy them to keep them
 *   past the input's lifetime.
 */
import { crc32 } from '../core/crc32.js';
import { ChecksumError, ConfigError, FormatError, KVCacheError, ShapeError, VersionError, assert } from '../core/errors.js';

export const SNAPSHOT_MAGIC: Uint8Array = new Uint8Array([0x4b, 0x56, 0x43, 0x53, 0x4e, 0x41, 0x50, 0x00]); // "KVCSNAP\0"
export const SNAPSHOT_VERSION = 1;
/** Bytes before the header JSON: magic, version, header length, header CRC. */
export const SNAPSHOT_PREFIX_BYTES = 20;
export const SNAPSHOT_ALIGN_BYTES = 64;
/** Cap on the header (a cache's header is a few KB); larger values are treated as corruption. */
const MAX_HEADER_BYTES = 64 << 20;
const MAX_NAME_CHARS = 256;
const MAX_META_DEPTH = 64;

/**
 * One section to write: its bytes, or its size plus a producer of its bytes in pieces.
 * A chunk only needs to stay valid until the next one is requested (a producer may reuse
 * one scratch buffer); the chunks' lengths must sum to sizeBytes.
 */
export type SnapshotSectionInput =
  | { readonly name: string; readonly bytes: Uint8Array }
  | { readonly name: string; readonly sizeBytes: number; readonly chunks: () => Iterable<Uint8Array> };

export interface SnapshotSectionEntry {
  readonly name: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  readonly crc32: number;
}

export interface DecodedSnapshot {
  readonly version: number;
  readonly kind: string;
  readonly meta: Record<string, unknown>;
  /** Section bytes by name: views into the decoded input (NOTE(5)). */
  readonly sections: Map<string, Uint8Array>;
  /** The header's section table, in file order. */
  readonly entries: readonly SnapshotSectionEntry[];
  readonly headerSizeBytes: number;
  readonly headerCrc32: number;
  readonly fileSizeBytes: number;
}

/** Where everything goes; `encodePrefix` renders the first `prefixSizeBytes` once CRCs are known. */
export interface SnapshotPlan {
  readonly offsets: readonly number[];
  readonly sizes: readonly number[];
  /** 20 + H: the fixed prefix plus the header JSON. */
  readonly prefixSizeBytes: number;
  readonly fileSizeBytes: number;
  encodePrefix(sectionCrcs: readonly number[]): Uint8Array;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function hex8(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/** A short description of a JSON value for error messages (never the whole value). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws ConfigError unless `v` survives JSON round trip unchanged (no undefined, NaN, class instances, cycles). */
function checkJsonValue(v: unknown, path: string, depth: number): void {
  if (depth > MAX_META_DEPTH) throw new ConfigError(`snapshot meta${path}`, `JSON nested at most ${MAX_META_DEPTH} deep`, 'deeper nesting');
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ConfigError(`snapshot meta${path}`, 'a finite number', v);
    return;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkJsonValue(v[i], `${path}[${i}]`, depth + 1);
    return;
  }
  if (typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
    for (const [k, x] of Object.entries(v)) checkJsonValue(x, `${path}.${k}`, depth + 1);
    return;
  }
  throw new ConfigError(`snapshot meta${path}`, 'JSON data (null, boolean, finite number, string, array, plain object)', describe(v));
}

type ErrorClass = new (what: string, expected: unknown, given: unknown) => KVCacheError;

function checkName(name: unknown, seen: Set<string>, err: ErrorClass): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS) {
    throw new err('snapshot section name', `a string of 1 to ${MAX_NAME_CHARS} characters`, describe(name));
  }
  if (seen.has(name)) throw new err('snapshot section names', 'unique names', `"${name}" twice`);
  seen.add(name);
  return name;
}

export function sectionSizeBytes(s: SnapshotSectionInput): number {
  return 'bytes' in s ? s.bytes.length : s.sizeBytes;
}

/**
 * Plan a file: validate kind, meta and names, and place every section (NOTE(1)).
 * The header's length depends on the offsets it lists and the offsets on its length, so
 * iterate; both only grow, so this settles in a few rounds.
 */
export function planSnapshot(kind: string, meta: Record<string, unknown>, sections: readonly { name: string; sizeBytes: number }[]): SnapshotPlan {
  if (typeof kind !== 'string' || kind.length === 0 || kind.length > MAX_NAME_CHARS) {
    throw new ConfigError('snapshot kind', `a string of 1 to ${MAX_NAME_CHARS} characters`, describe(kind));
  }
  if (!isPlainObject(meta)) throw new ConfigError('snapshot meta', 'a plain JSON object', describe(meta));
  checkJsonValue(meta, '', 0);
  const seen = new Set<string>();
  const names = sections.map((s) => checkName(s.name, seen, ConfigError));
  const sizes = sections.map((s) => {
    if (!Number.isSafeInteger(s.sizeBytes) || s.sizeBytes < 0) throw new ConfigError(`snapshot section "${s.name}" sizeBytes`, 'an integer >= 0', s.sizeBytes);
    return s.sizeBytes;
  });
  const encoder = new TextEncoder();
  const render = (offsets: number[], end: number, crcs: readonly number[]): Uint8Array => {
    const table = names.map((name, i) => ({ name, offsetBytes: offsets[i]!, sizeBytes: sizes[i]!, crc32: hex8(crcs[i] ?? 0) }));
    return encoder.encode(JSON.stringify({ kind, meta, sections: table, fileSizeBytes: end }));
  };
  const place = (headerBytes: number): { offsets: number[]; end: number } => {
    let cursor = SNAPSHOT_PREFIX_BYTES + headerBytes;
    const offsets = sizes.map((size) => {
      const at = alignUp(cursor, SNAPSHOT_ALIGN_BYTES);
      cursor = at + size;
      return at;
    });
    return { offsets, end: cursor };
  };
  let headerBytes = 0;
  let layout = place(headerBytes);
  for (let round = 0; ; round++) {
    assert(round < 32, 'snapshot header length did not settle');
    const next = render(layout.offsets, layout.end, []).length;
    if (next === headerBytes) break;
    headerBytes = next;
    layout = place(headerBytes);
  }
  if (headerBytes > MAX_HEADER_BYTES) throw new ConfigError('snapshot header size', `at most ${MAX_HEADER_BYTES} bytes`, headerBytes);
  const { offsets, end } = layout;
  return {
    offsets,
    sizes,
    prefixSizeBytes: SNAPSHOT_PREFIX_BYTES + headerBytes,
    fileSizeBytes: end,
    encodePrefix(crcs: readonly number[]): Uint8Array {
      const header = render(offsets, end, crcs);
      assert(header.length === headerBytes, 'snapshot header length changed with the checksums');
      const out = new Uint8Array(SNAPSHOT_PREFIX_BYTES + headerBytes);
      const dv = new DataView(out.buffer);
      out.set(SNAPSHOT_MAGIC, 0);
      dv.setUint32(8, SNAPSHOT_VERSION, true);
      dv.setUint32(12, headerBytes, true);
      dv.setUint32(16, crc32(header), true);
      out.set(header, SNAPSHOT_PREFIX_BYTES);
      return out;
    },
  };
}

/**
 * Feed a section's bytes to `sink` in order and return their CRC-32; throws ShapeError
 * if a chunked producer yields a different number of bytes than it declared.
 */
export function forEachSectionChunk(s: SnapshotSectionInput, sink: (chunk: Uint8Array, offsetInSection: number) => void): number {
  if ('bytes' in s) {
    sink(s.bytes, 0);
    return crc32(s.bytes);
  }
  let done = 0;
  let crc = 0;
  for (const chunk of s.chunks()) {
    if (done + chunk.length > s.sizeBytes) break;
    sink(chunk, done);
    crc = crc32(chunk, crc);
    done += chunk.length;
  }
  if (done !== s.sizeBytes) throw new ShapeError(`bytes produced for snapshot section "${s.name}"`, `exactly sizeBytes = ${s.sizeBytes}`, done < s.sizeBytes ? done : 'more');
  return crc;
}

/** Encode a whole snapshot in memory. */
export function encodeSnapshot(kind: string, meta: Record<string, unknown>, sections: readonly SnapshotSectionInput[]): Uint8Array {
  const plan = planSnapshot(
    kind,
    meta,
    sections.map((s) => ({ name: s.name, sizeBytes: sectionSizeBytes(s) })),
  );
  const out = new Uint8Array(plan.fileSizeBytes); // zero-filled: padding is already zero
  const crcs = sections.map((s, i) => forEachSectionChunk(s, (chunk, at) => out.set(chunk, plan.offsets[i]! + at)));
  out.set(plan.encodePrefix(crcs), 0);
  return out;
}

/** True if `bytes` starts with the snapshot magic (for format dispatch). */
export function hasSnapshotMagic(bytes: Uint8Array): boolean {
  if (bytes.length < SNAPSHOT_MAGIC.length) return false;
  for (let i = 0; i < SNAPSHOT_MAGIC.length; i++) if (bytes[i] !== SNAPSHOT_MAGIC[i]) return false;
  return true;
}

/** Decode and verify a snapshot (NOTE(1), NOTE(4)); `expectedKind` rejects other kinds. */
export function decodeSnapshot(bytes: Uint8Array, expectedKind?: string): DecodedSnapshot {
  try {
    return decodeChecked(bytes, expectedKind);
  } catch (e) {
    if (e instanceof KVCacheError) throw e;
    // Unreachable by design; keeps the "typed errors only" promise even if a check is missed.
    throw new FormatError('snapshot', 'a well-formed snapshot', `bytes that failed to decode (${e instanceof Error ? e.message : String(e)})`);
  }
}

function decodeChecked(bytes: Uint8Array, expectedKind: string | undefined): DecodedSnapshot {
  if (!(bytes instanceof Uint8Array)) throw new FormatError('snapshot input', 'a Uint8Array', describe(bytes));
  const magicLen = Math.min(bytes.length, SNAPSHOT_MAGIC.length);
  for (let i = 0; i < magicLen; i++) {
    if (bytes[i] !== SNAPSHOT_MAGIC[i]) {
      throw new FormatError('snapshot magic', '"KVCSNAP\\0" (4b 56 43 53 4e 41 50 00)', hexBytes(bytes.subarray(0, SNAPSHOT_MAGIC.length)));
    }
  }
  if (bytes.length < SNAPSHOT_PREFIX_BYTES) {
    throw new FormatError('snapshot length (truncated prefix)', `at least ${SNAPSHOT_PREFIX_BYTES} bytes`, bytes.length);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, SNAPSHOT_PREFIX_BYTES);
  const version = dv.getUint32(8, true);
  if (version !== SNAPSHOT_VERSION) throw new VersionError('snapshot format version', SNAPSHOT_VERSION, version);
  const headerBytes = dv.getUint32(12, true);
  if (headerBytes > MAX_HEADER_BYTES) throw new FormatError('snapshot header length', `at most ${MAX_HEADER_BYTES} bytes`, headerBytes);
  if (SNAPSHOT_PREFIX_BYTES + headerBytes > bytes.length) {
    throw new FormatError('snapshot length (truncated header)', `at least ${SNAPSHOT_PREFIX_BYTES + headerBytes} bytes`, bytes.length);
  }
  // slice(): a copy, so the header can be decoded even when the input lives in shared memory.
  const headerRaw = bytes.slice(SNAPSHOT_PREFIX_BYTES, SNAPSHOT_PREFIX_BYTES + headerBytes);
  const headerCrc32 = dv.getUint32(16, true);
  const actualCrc = crc32(headerRaw);
  if (actualCrc !== headerCrc32) throw new ChecksumError('snapshot header CRC-32', `0x${hex8(headerCrc32)}`, `0x${hex8(actualCrc)}`);
  const header = parseHeaderJson(headerRaw);
  if (expectedKind !== undefined && header.kind !== expectedKind) throw new FormatError('snapshot kind', expectedKind, header.kind);
  if (header.fileSizeBytes !== bytes.length) {
    const what = header.fileSizeBytes > bytes.length ? 'snapshot length (truncated)' : 'snapshot length (trailing bytes)';
    throw new FormatError(what, `fileSizeBytes = ${header.fileSizeBytes}`, bytes.length);
  }
  const sections = new Map<string, Uint8Array>();
  let cursor = SNAPSHOT_PREFIX_BYTES + headerBytes;
  for (const e of header.entries) {
    const at = alignUp(cursor, SNAPSHOT_ALIGN_BYTES);
    if (e.offsetBytes !== at) {
      const why = e.offsetBytes < cursor ? 'overlapping or out of order' : 'not at the next 64-byte boundary';
      throw new FormatError(`snapshot section "${e.name}" offsetBytes (${why})`, at, e.offsetBytes);
    }
    if (at + e.sizeBytes > bytes.length) throw new FormatError(`snapshot section "${e.name}" end`, `at most the file length ${bytes.length}`, at + e.sizeBytes);
    checkZeroPadding(bytes, cursor, at);
    const data = bytes.subarray(at, at + e.sizeBytes);
    const c = crc32(data);
    if (c !== e.crc32) throw new ChecksumError(`snapshot section "${e.name}" CRC-32`, `0x${hex8(e.crc32)}`, `0x${hex8(c)}`);
    sections.set(e.name, data);
    cursor = at + e.sizeBytes;
  }
  if (cursor !== bytes.length) throw new FormatError('snapshot length (bytes after the last section)', cursor, bytes.length);
  return {
    version,
    kind: header.kind,
    meta: header.meta,
    sections,
    entries: header.entries,
    headerSizeBytes: headerBytes,
    headerCrc32,
    fileSizeBytes: bytes.length,
  };
}

function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ') || '(no bytes)';
}

function checkZeroPadding(bytes: Uint8Array, p0: number, p1: number): void {
  for (let p = p0; p < p1; p++) {
    if (bytes[p] !== 0) throw new FormatError(`snapshot padding byte at offset ${p}`, 0, bytes[p]);
  }
}

interface ParsedHeader {
  kind: string;
  meta: Record<string, unknown>;
  entries: SnapshotSectionEntry[];
  fileSizeBytes: number;
}

const HEADER_KEYS = ['fileSizeBytes', 'kind', 'meta', 'sections'];
const ENTRY_KEYS = ['crc32', 'name', 'offsetBytes', 'sizeBytes'];

function checkKeys(obj: Record<string, unknown>, keys: readonly string[], what: string): void {
  const have = Object.keys(obj).sort();
  if (have.length !== keys.length || have.some((k, i) => k !== keys[i])) {
    throw new FormatError(`${what} fields`, keys.join(', '), have.join(', ') || '(none)');
  }
}

function fileInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new FormatError(what, 'an integer >= 0', describe(v));
  return v;
}

function parseHeaderJson(raw: Uint8Array): ParsedHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw));
  } catch (e) {
    throw new FormatError('snapshot header', 'UTF-8 JSON', `unparsable bytes (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!isPlainObject(json)) throw new FormatError('snapshot header', 'a JSON object', describe(json));
  checkKeys(json, HEADER_KEYS, 'snapshot header');
  const { kind, meta, sections } = json;
  if (typeof kind !== 'string' || kind.length === 0) throw new FormatError('snapshot header kind', 'a non-empty string', describe(kind));
  if (!isPlainObject(meta)) throw new FormatError('snapshot header meta', 'a JSON object', describe(meta));
  if (!Array.isArray(sections)) throw new FormatError('snapshot header sections', 'an array', describe(sections));
  const fileSizeBytes = fileInt(json.fileSizeBytes, 'snapshot header fileSizeBytes');
  const seen = new Set<string>();
  const entries = sections.map((s: unknown, i): SnapshotSectionEntry => {
    if (!isPlainObject(s)) throw new FormatError(`snapshot section ${i}`, 'a JSON object', describe(s));
    checkKeys(s, ENTRY_KEYS, `snapshot section ${i}`);
    const name = checkName(s.name, seen, FormatError);
    const crc = s.crc32;
    if (typeof crc !== 'string' || !/^[0-9a-f]{8}$/.test(crc)) throw new FormatError(`snapshot section "${name}" crc32`, '8 lowercase hex digits', describe(crc));
    return {
      name,
      offsetBytes: fileInt(s.offsetBytes, `snapshot section "${name}" offsetBytes`),
      sizeBytes: fileInt(s.sizeBytes, `snapshot section "${name}" sizeBytes`),
      crc32: parseInt(crc, 16),
    };
  });
  return { kind, meta, entries, fileSizeBytes };
}
