/**
 * The safetensors container, as bytes: dtype table, header parsing with strict validation,
 * header encoding. No file access here (safetensors.ts does that), so the same code checks
 * a file on disk and a buffer in a browser.
 *
 * Layout (https://github.com/huggingface/safetensors):
 *
 *   +---------+------------------------------+--------------------------------------+
 *   | u64 LE N| N bytes of UTF-8 JSON header | data: tensors back to back, no gaps  |
 *   +---------+------------------------------+--------------------------------------+
 *   0         8                              8 + N                       file end
 *
 *   header = { "__metadata__"?: {string: string},
 *              name: { "dtype": "BF16", "shape": [d0, d1], "data_offsets": [begin, end] }, ... }
 *   offsets are relative to the start of the data section; bytes are little-endian.
 *
 * NOTE(1): Validation follows the reference implementation (the Rust crate's `validate`):
 *   the header length is at most 100 MB and within the file, the header starts with '{',
 *   every tensor's byte size is prod(shape) * itemsize, and the tensors sorted by offset
 *   tile the data section exactly: first begin 0, each begin equal to the previous end,
 *   last end equal to the data size. So overlaps, gaps, trailing bytes and truncation are
 *   all rejected, each with a FormatError naming the file and the tensor.
 * NOTE(2): Every dtype of the format is *readable* as metadata (inspect lists I64, F64, F8
 *   tensors); only F32/F16/BF16 load as weights (`weightDTypeOf`), and asking for another
 *   one is the caller's DTypeError.
 * NOTE(3): The writer pads the JSON with spaces to a multiple of 8 bytes, as the Rust crate
 *   does, so the data section (and every f32 tensor whose offset is a multiple of 4) is
 *   aligned for typed-array views when the file is mapped whole.
 */
import { ConfigError, FormatError, ShapeError } from '../core/errors.js';

/** Largest header the reference implementation accepts. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** Bytes of the little-endian u64 header length. */
export const SAFETENSORS_PREFIX_BYTES = 8;
/** The reserved header key of the free-form string metadata. */
export const SAFETENSORS_METADATA_KEY = '__metadata__';

/** Bits per element of every dtype the format defines (F4/F6 are sub-byte, packed). */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32,
  I64: 64, U64: 64, F64: 64, C64: 64,
};

/** The float dtypes kvcache loads as weights, in its own names. */
export type WeightDType = 'f32' | 'f16' | 'bf16';

const TO_WEIGHT: Readonly<Record<string, WeightDType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const FROM_WEIGHT: Readonly<Record<WeightDType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** The weight dtype of a safetensors dtype name, or null when it does not load as weights (NOTE(2)). */
export function weightDTypeOf(dtype: string): WeightDType | null {
  return Object.prototype.hasOwnProperty.call(TO_WEIGHT, dtype) ? TO_WEIGHT[dtype]! : null;
}

/** A safetensors dtype name from either spelling ('BF16' or 'bf16'); ConfigError for anything else. */
export function safetensorsDType(dtype: string, what = 'safetensors dtype'): string {
  if (Object.prototype.hasOwnProperty.call(FROM_WEIGHT, dtype)) return FROM_WEIGHT[dtype as WeightDType];
  if (Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BITS, dtype)) return dtype;
  throw new ConfigError(what, `one of ${Object.keys(SAFETENSORS_DTYPE_BITS).join('|')} (or f32|f16|bf16)`, dtype);
}

export interface SafetensorsTensorInfo {
  readonly name: string;
  /** The safetensors dtype name, e.g. 'BF16'. */
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly nElements: number;
  /** [begin, end) relative to the data section, as written in the header. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute position of the first byte in the file. */
  readonly offsetBytes: number;
  readonly sizeBytes: number;
}

export interface SafetensorsHeader {
  /** N: bytes of the JSON header (padding included). */
  readonly headerSizeBytes: number;
  /** 8 + N: where the data section starts. */
  readonly dataOffsetBytes: number;
  readonly dataSizeBytes: number;
  readonly metadata: Readonly<Record<string, string>> | null;
  /** Sorted by offset (the order of the data). */
  readonly tensors: readonly SafetensorsTensorInfo[];
}

function isSafeCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Bytes of a tensor, or throws `makeError(expected, given)` when the shape is not a list of
 * non-negative integers, the element count overflows, or sub-byte elements do not fill whole bytes.
 */
function sizeOf(dtype: string, shape: unknown, fail: (what: string, expected: unknown, given: unknown) => never): { nElements: number; sizeBytes: number } {
  if (!Array.isArray(shape) || !shape.every(isSafeCount)) fail('shape', 'an array of non-negative integers', shape);
  let n = 1;
  for (const d of shape as number[]) {
    n *= d;
    if (!Number.isSafeInteger(n)) fail('element count', `at most ${Number.MAX_SAFE_INTEGER}`, shape);
  }
  const bits = n * SAFETENSORS_DTYPE_BITS[dtype]!;
  if (!Number.isSafeInteger(bits)) fail('size in bits', `at most ${Number.MAX_SAFE_INTEGER}`, `${n} x ${dtype}`);
  if (bits % 8 !== 0) fail(`element count of ${dtype} (packed ${SAFETENSORS_DTYPE_BITS[dtype]} bits each)`, 'a count filling whole bytes', n);
  return { nElements: n, sizeBytes: bits / 8 };
}

/** Bytes of a tensor of `shape` in safetensors `dtype`; ShapeError for a bad shape. */
export function tensorSizeBytes(dtype: string, shape: readonly number[], what = 'tensor'): number {
  const st = safetensorsDType(dtype, `${what} dtype`);
  return sizeOf(st, shape, (w, e, g) => {
    throw new ShapeError(`${what} ${w}`, e, g);
  }).sizeBytes;
}

/**
 * The header length N from the first 8 bytes, checked against the file size (NOTE(1)).
 * `where` names the file in errors.
 */
export function readHeaderLength(prefix: Uint8Array, fileSizeBytes: number, where: string): number {
  if (prefix.length < SAFETENSORS_PREFIX_BYTES || fileSizeBytes < SAFETENSORS_PREFIX_BYTES) {
    throw new FormatError(`safetensors ${where}: file size`, `at least ${SAFETENSORS_PREFIX_BYTES} bytes (the header length)`, `${fileSizeBytes} bytes`);
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, SAFETENSORS_PREFIX_BYTES);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (hi !== 0 || n > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new FormatError(`safetensors ${where}: header length`, `at most ${SAFETENSORS_MAX_HEADER_BYTES} bytes`, hi !== 0 ? `${hi} * 2^32 + ${lo} bytes` : `${n} bytes`);
  }
  if (SAFETENSORS_PREFIX_BYTES + n > fileSizeBytes) {
    throw new FormatError(`safetensors ${where}: header length`, `at most ${fileSizeBytes - SAFETENSORS_PREFIX_BYTES} bytes (the file is ${fileSizeBytes} bytes: truncated?)`, `${n} bytes`);
  }
  return n;
}

function parseJsonObject(headerBytes: Uint8Array, where: string): Record<string, unknown> {
  if (headerBytes.length === 0 || headerBytes[0] !== 0x7b) {
    const given = headerBytes.length === 0 ? '(empty header)' : JSON.stringify(String.fromCharCode(headerBytes[0]!));
    throw new FormatError(`safetensors ${where}: header start`, "'{' (a JSON object)", given);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new FormatError(`safetensors ${where}: header encoding`, 'valid UTF-8', 'invalid byte sequences');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`safetensors ${where}: header JSON`, 'valid JSON', (e as Error).message);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new FormatError(`safetensors ${where}: header JSON`, 'an object', Array.isArray(json) ? 'an array' : String(json));
  }
  return json as Record<string, unknown>;
}

function parseMetadata(v: unknown, where: string): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new FormatError(`safetensors ${where}: "${SAFETENSORS_METADATA_KEY}"`, 'an object of strings', v);
  }
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new FormatError(`safetensors ${where}: "${SAFETENSORS_METADATA_KEY}"."${k}"`, 'a string', x);
  }
  return { ...(v as Record<string, string>) };
}

/** One header entry, checked on its own (dtype, shape, offsets, size); the tiling check is later. */
function parseEntry(name: string, v: unknown, dataOffsetBytes: number, where: string): SafetensorsTensorInfo {
  const fail = (what: string, expected: unknown, given: unknown): never => {
    throw new FormatError(`safetensors ${where}: tensor "${name}" ${what}`, expected, given);
  };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('entry', 'an object {dtype, shape, data_offsets}', v);
  const e = v as Record<string, unknown>;
  const dtype = e['dtype'];
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BITS, dtype)) {
    fail('dtype', `one of ${Object.keys(SAFETENSORS_DTYPE_BITS).join('|')}`, dtype);
  }
  const { nElements, sizeBytes } = sizeOf(dtype as string, e['shape'], fail);
  const off = e['data_offsets'];
  if (!Array.isArray(off) || off.length !== 2 || !isSafeCount(off[0]) || !isSafeCount(off[1]) || off[1] < off[0]) {
    fail('data_offsets', '[begin, end] with integers 0 <= begin <= end', off);
  }
  const [begin, end] = off as [number, number];
  if (end - begin !== sizeBytes) {
    fail('byte size (data_offsets end - begin)', `${sizeBytes} = ${nElements} elements of ${dtype}, shape [${(e['shape'] as number[]).join(', ')}]`, `${end - begin} from [${begin}, ${end}]`);
  }
  return {
    name,
    dtype: dtype as string,
    shape: [...(e['shape'] as number[])],
    nElements,
    dataOffsets: [begin, end],
    offsetBytes: dataOffsetBytes + begin,
    sizeBytes,
  };
}

/**
 * Parse and validate the JSON header (NOTE(1)). `headerBytes` are the N bytes after the
 * length prefix; `fileSizeBytes` is the whole file's size; `where` names the file in errors.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSizeBytes: number, where: string): SafetensorsHeader {
  const headerSizeBytes = headerBytes.length;
  const dataOffsetBytes = SAFETENSORS_PREFIX_BYTES + headerSizeBytes;
  const dataSizeBytes = fileSizeBytes - dataOffsetBytes;
  if (dataSizeBytes < 0) throw new FormatError(`safetensors ${where}: file size`, `at least ${dataOffsetBytes} bytes (prefix + header)`, `${fileSizeBytes} bytes`);
  const json = parseJsonObject(headerBytes, where);
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === SAFETENSORS_METADATA_KEY) metadata = parseMetadata(v, where);
    else tensors.push(parseEntry(name, v, dataOffsetBytes, where));
  }
  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let prev: SafetensorsTensorInfo | null = null;
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (begin < cursor) {
      throw new FormatError(`safetensors ${where}: tensor "${t.name}" data_offsets [${begin}, ${end}]`, `no overlap with tensor "${prev!.name}" [${prev!.dataOffsets[0]}, ${cursor}]`, 'an overlap');
    }
    if (begin > cursor) {
      const after = prev === null ? 'the start of the data section (offset 0)' : `tensor "${prev.name}" (ends at ${cursor})`;
      throw new FormatError(`safetensors ${where}: tensor "${t.name}" data_offsets [${begin}, ${end}]`, `to start right after ${after}`, `a gap of ${begin - cursor} bytes`);
    }
    if (end > dataSizeBytes) {
      throw new FormatError(`safetensors ${where}: tensor "${t.name}" data_offsets [${begin}, ${end}]`, `within the data section of ${dataSizeBytes} bytes (file ${fileSizeBytes} bytes)`, `an end ${end - dataSizeBytes} bytes past it: truncated file or lying offsets`);
    }
    cursor = end;
    prev = t;
  }
  if (cursor !== dataSizeBytes) {
    const last = prev === null ? 'no tensor' : `tensor "${prev.name}" ending at ${cursor}`;
    throw new FormatError(`safetensors ${where}: data section size`, `${cursor} bytes (${last})`, `${dataSizeBytes} bytes: ${dataSizeBytes - cursor} trailing bytes`);
  }
  return { headerSizeBytes, dataOffsetBytes, dataSizeBytes, metadata, tensors };
}

export interface SafetensorsTensorSpec {
  readonly name: string;
  /** A safetensors dtype name ('BF16') or a weight dtype ('bf16'). */
  readonly dtype: string;
  readonly shape: readonly number[];
}

export interface SafetensorsLayout {
  /** The 8-byte length prefix, the JSON and its space padding: the first bytes of the file. */
  readonly prefix: Uint8Array;
  /** Absolute file offset of each tensor, in the order given. */
  readonly offsets: readonly number[];
  readonly sizes: readonly number[];
  readonly fileSizeBytes: number;
}

/**
 * Plan a file: tensors in the given order, back to back; the JSON compact, `__metadata__`
 * first, each entry's keys in the Rust crate's order; padded with spaces to 8 bytes (NOTE(3)).
 * Names must be unique and non-empty; ConfigError / ShapeError otherwise.
 */
export function planSafetensors(specs: readonly SafetensorsTensorSpec[], metadata?: Readonly<Record<string, string>> | null): SafetensorsLayout {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && metadata !== null) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ConfigError(`safetensors metadata "${k}"`, 'a string', v);
    }
    header[SAFETENSORS_METADATA_KEY] = { ...metadata };
  }
  const sizes: number[] = [];
  let cursor = 0;
  for (const s of specs) {
    if (typeof s.name !== 'string' || s.name.length === 0 || s.name === SAFETENSORS_METADATA_KEY) {
      throw new ConfigError('safetensors tensor name', `a non-empty string other than "${SAFETENSORS_METADATA_KEY}"`, s.name);
    }
    if (Object.prototype.hasOwnProperty.call(header, s.name)) throw new ConfigError('safetensors tensor names', 'unique names', `"${s.name}" twice`);
    const dtype = safetensorsDType(s.dtype, `tensor "${s.name}" dtype`);
    const size = tensorSizeBytes(dtype, s.shape, `tensor "${s.name}"`);
    header[s.name] = { dtype, shape: [...s.shape], data_offsets: [cursor, cursor + size] };
    sizes.push(size);
    cursor += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES + padded).fill(0x20, SAFETENSORS_PREFIX_BYTES);
  new DataView(prefix.buffer).setUint32(0, padded, true);
  prefix.set(json, SAFETENSORS_PREFIX_BYTES);
  const offsets: number[] = [];
  let at = prefix.length;
  for (const size of sizes) {
    offsets.push(at);
    at += size;
  }
  return { prefix, offsets, sizes, fileSizeBytes: at };
}

/** Parse and validate a whole safetensors file held in memory (browsers, tests); `where` names it in errors. */
export function parseSafetensorsBuffer(bytes: Uint8Array, where = 'buffer'): SafetensorsHeader {
  const n = readHeaderLength(bytes.subarray(0, SAFETENSORS_PREFIX_BYTES), bytes.length, where);
  return parseSafetensorsHeader(bytes.subarray(SAFETENSORS_PREFIX_BYTES, SAFETENSORS_PREFIX_BYTES + n), bytes.length, where);
}
