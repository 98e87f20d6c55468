/**
 * `kvcache inspect FILE`: a human-readable report of a file's header and sizes.
 *
 * NOTE(1): Dispatch is on the file's leading bytes (or, for formats without a magic, its
 *   name) through the FORMATS table (one row per format); an unknown
 *   magic is a FormatError that names every magic this build knows.
 * NOTE(2): A snapshot is fully verified (header and section CRCs) before it is described:
 *   inspect doubles as an integrity check, and a corrupt file throws the same typed error
 *   a load would.
 */
import { openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { FormatError } from '../core/errors.js';
import { SNAPSHOT_MAGIC, decodeSnapshot, hasSnapshotMagic } from './snapshot.js';
import { SAFETENSORS_MAX_HEADER_BYTES, SAFETENSORS_PREFIX_BYTES } from './safetensors-format.js';
import { describeSafetensors, describeSafetensorsIndex } from './safetensors-inspect.js';
import { humanBytes } from './human-bytes.js';
import { describeGguf } from './gguf-inspect.js';
import { GGUF_MAGIC } from './gguf-format.js';

interface InspectFormat {
  /** How the magic is shown in errors. */
  readonly magic: string;
  readonly name: string;
  matches(head: Uint8Array, path: string): boolean;
  inspect(path: string): string;
}

/**
 * safetensors has no magic: a file named *.safetensors, or one whose first 8 bytes are a
 * plausible little-endian header length followed by '{'.
 */
function looksLikeSafetensors(head: Uint8Array, path: string): boolean {
  if (path.endsWith('.safetensors')) return true;
  if (head.length <= SAFETENSORS_PREFIX_BYTES || head[SAFETENSORS_PREFIX_BYTES] !== 0x7b) return false;
  const dv = new DataView(head.buffer, head.byteOffset, SAFETENSORS_PREFIX_BYTES);
  return dv.getUint32(4, true) === 0 && dv.getUint32(0, true) <= SAFETENSORS_MAX_HEADER_BYTES;
}

const FORMATS: readonly InspectFormat[] = [
  { magic: '"KVCSNAP\\0"', name: 'kvcache snapshot', matches: hasSnapshotMagic, inspect: inspectSnapshot },
  { magic: 'u64 header length + \'{\'', name: 'safetensors', matches: looksLikeSafetensors, inspect: (p) => describeSafetensors(p) },
  { magic: '*.safetensors.index.json', name: 'sharded safetensors index', matches: (_h, p) => p.endsWith('.safetensors.index.json'), inspect: (p) => describeSafetensorsIndex(p) },
  { magic: '"GGUF"', name: 'GGUF', matches: (h) => h.length >= 4 && new DataView(h.buffer, h.byteOffset, 4).getUint32(0, true) === GGUF_MAGIC, inspect: (p) => describeGguf(p) },
];

/** Bytes enough to recognise any known format. */
const HEAD_BYTES = Math.max(SNAPSHOT_MAGIC.length, SAFETENSORS_PREFIX_BYTES + 1);

function readHead(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(HEAD_BYTES);
    const n = readSync(fd, head, 0, HEAD_BYTES, 0);
    return head.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** A multi-line report of `path` (a kvcache snapshot, a safetensors file or index, a GGUF file). */
export function inspectFile(path: string): string {
  const head = readHead(path);
  const format = FORMATS.find((f) => f.matches(head, path));
  if (format === undefined) {
    const known = FORMATS.map((f) => `${f.magic} (${f.name})`).join(', ');
    const given = Array.from(head, (b) => b.toString(16).padStart(2, '0')).join(' ') || '(empty file)';
    throw new FormatError(`file magic of ${path}`, `one of ${known}`, given);
  }
  return format.inspect(path);
}


/** JSON with arrays of scalars kept on one line (lens tables stay readable). */
function pretty(v: unknown, indent: string): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== 'object')) return JSON.stringify(v);
    if (v.length === 0) return '[]';
    return `[\n${v.map((x) => inner + pretty(x, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(v);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${pretty(x, inner)}`).join(',\n')}\n${indent}}`;
}

function hex8(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

function inspectSnapshot(path: string): string {
  const buf = readFileSync(path);
  const snap = decodeSnapshot(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  const payload = snap.entries.reduce((s, e) => s + e.sizeBytes, 0);
  const lines = [
    `file:     ${path}`,
    `format:   kvcache snapshot (magic "KVCSNAP\\0"), version ${snap.version}`,
    `kind:     ${snap.kind}`,
    `size:     ${humanBytes(snap.fileSizeBytes)}`,
    `header:   ${snap.headerSizeBytes} B JSON, crc32 ${hex8(snap.headerCrc32)}`,
    `payload:  ${humanBytes(payload)} in ${snap.entries.length} section(s)`,
    `checks:   magic, version, header and section CRC-32, layout, padding: ok`,
    `meta:`,
    ...pretty(snap.meta, '').split('\n').map((l) => `  ${l}`),
    `sections:`,
  ];
  const nameWidth = snap.entries.reduce((w, e) => Math.max(w, e.name.length), 4);
  const numWidth = Math.max(6, String(snap.fileSizeBytes).length);
  lines.push(`  ${'name'.padEnd(nameWidth)}  ${'offset'.padStart(numWidth)}  ${'size'.padStart(numWidth)}  crc32`);
  for (const e of snap.entries) {
    lines.push(`  ${e.name.padEnd(nameWidth)}  ${String(e.offsetBytes).padStart(numWidth)}  ${String(e.sizeBytes).padStart(numWidth)}  ${hex8(e.crc32)}`);
  }
  return lines.join('\n');
}
