/**
 * Read and write GGUF files (format: gguf-format.ts).
 *
 * NOTE(1): Writing streams: the header is built in memory (metadata + tensor infos, a few MB at
 *   most with a tokenizer), tensors are written one by one from their producers, through the
 *   same atomic temp-file + rename path as snapshots, so a failed export leaves nothing behind.
 * NOTE(2): Reading parses only the header (reading more of the file only while the header needs
 *   it); tensor bytes are read on demand by name, so a loader can stream them into the arena.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { rowSizeBytes, type DType } from '../core/dtype.js';
import { FormatError, ShapeError, VersionError } from '../core/errors.js';
import {
  ByteReader, ByteWriter, GGML_TYPE, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufValueType, dtypeOfGgmlType,
  gguf, type GgufValue,
} from './gguf-format.js';
import { writeFileAtomicWith } from './snapshot-file.js';

export interface GgufTensorInput {
  readonly name: string;
  readonly dtype: DType;
  /** Row-major shape, outermost first (as in safetensors / PyTorch); GGUF stores it reversed. */
  readonly shape: readonly number[];
  /** The tensor's bytes, in one piece or in chunks (streamed in order). */
  readonly data: Uint8Array | (() => Iterable<Uint8Array>);
}

/** Bytes of a tensor of `dtype` and row-major `shape` (rows of the innermost dimension). */
export function tensorSizeBytes(dtype: DType, shape: readonly number[]): number {
  if (shape.length === 0) return rowSizeBytes(dtype, 1);
  const inner = shape[shape.length - 1]!;
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return rows * rowSizeBytes(dtype, inner);
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/**
 * Write a GGUF v3 file atomically. `metadata` order is kept; `general.alignment` is added when
 * `alignment` differs from the default 32.
 */
export function writeGgufFile(path: string, metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensorInput[], alignment = GGUF_DEFAULT_ALIGNMENT): void {
  const kv = [...metadata];
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !kv.some(([k]) => k === 'general.alignment')) kv.push(['general.alignment', gguf.u32(alignment)]);
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [key, value] of kv) {
    w.string(key);
    w.value(value);
  }
  const offsets: number[] = [];
  let cursor = 0;
  for (const t of tensors) {
    const size = tensorSizeBytes(t.dtype, t.shape);
    w.string(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!);
    w.u32(GGML_TYPE[t.dtype]);
    w.u64(cursor);
    offsets.push(cursor);
    cursor = alignUp(cursor + size, alignment);
  }
  w.pad(alignment);
  const header = w.result();
  writeFileAtomicWith(path, (fd) => {
    writeAt(fd, header, 0);
    tensors.forEach((t, i) => {
      const size = tensorSizeBytes(t.dtype, t.shape);
      let at = header.length + offsets[i]!;
      let written = 0;
      const chunks = typeof t.data === 'function' ? t.data() : [t.data];
      for (const c of chunks) {
        if (written + c.length > size) throw new ShapeError(`GGUF tensor ${t.name} bytes`, size, `more than ${written + c.length}`);
        writeAt(fd, c, at);
        at += c.length;
        written += c.length;
      }
      if (written !== size) throw new ShapeError(`GGUF tensor ${t.name} bytes (${t.dtype} ${JSON.stringify(t.shape)})`, size, written);
    });
    // Pad the file to the alignment after the last tensor, as llama.cpp's writer does.
    const lastEnd = tensors.length ? offsets[offsets.length - 1]! + tensorSizeBytes(tensors[tensors.length - 1]!.dtype, tensors[tensors.length - 1]!.shape) : 0;
    if (cursor > lastEnd) writeAt(fd, new Uint8Array(cursor - lastEnd), header.length + lastEnd);
  });
}

function writeAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

export interface GgufTensorInfo {
  readonly name: string;
  readonly ggmlType: number;
  /** null for ggml types this engine does not store (still listed by inspect). */
  readonly dtype: DType | null;
  /** Row-major shape, outermost first. */
  readonly shape: readonly number[];
  /** Absolute byte offset in the file. */
  readonly offsetBytes: number;
  /** null when the dtype is unknown. */
  readonly sizeBytes: number | null;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  readonly dataOffset: number;
  readonly fileSizeBytes: number;
}

/** Parse a GGUF file's header (NOTE(2)); FormatError / VersionError on anything malformed. */
export function readGgufHeader(path: string): GgufFile {
  const fd = openSync(path, 'r');
  try {
    const fileSizeBytes = fstatSync(fd).size;
    let want = Math.min(fileSizeBytes, 1 << 20);
    for (;;) {
      const buf = new Uint8Array(want);
      readFully(fd, buf, 0);
      try {
        return parseHeader(path, buf, fileSizeBytes);
      } catch (e) {
        const truncated = e instanceof FormatError && /truncated header/.test(e.message);
        if (!truncated || want >= fileSizeBytes) throw e;
        want = Math.min(fileSizeBytes, want * 4);
      }
    }
  } finally {
    closeSync(fd);
  }
}

function parseHeader(path: string, buf: Uint8Array, fileSizeBytes: number): GgufFile {
  const r = new ByteReader(buf, path);
  const magic = r.u32('magic');
  if (magic !== GGUF_MAGIC) throw new FormatError(`${path}: magic`, '"GGUF"', `0x${magic.toString(16)}`);
  const version = r.u32('version');
  if (version !== 2 && version !== 3) throw new VersionError(`${path}: GGUF version`, '2 or 3', version);
  const nTensors = r.u64('tensor count');
  const nKv = r.u64('metadata count');
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`metadata key ${i}`);
    metadata.set(key, r.value(`metadata ${key}`));
  }
  const alignValue = metadata.get('general.alignment')?.value;
  const alignment = alignValue === undefined ? GGUF_DEFAULT_ALIGNMENT : Number(alignValue);
  if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    throw new FormatError(`${path}: general.alignment`, 'a power of two', alignValue);
  }
  const raw: { name: string; ggmlType: number; shape: number[]; rel: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.string(`tensor ${i} name`);
    const nDims = r.u32(`tensor ${name} dims`);
    if (nDims > 8) throw new FormatError(`${path}: tensor ${name} dimension count`, 'at most 8', nDims);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.u64(`tensor ${name} ne[${d}]`));
    const ggmlType = r.u32(`tensor ${name} type`);
    raw.push({ name, ggmlType, shape: ne.reverse(), rel: r.u64(`tensor ${name} offset`) });
  }
  const dataOffset = alignUp(r.pos, alignment);
  const tensors = raw.map((t) => checkTensor(path, t, dataOffset, alignment, fileSizeBytes));
  checkOverlaps(path, tensors);
  return { path, version, metadata, tensors, alignment, dataOffset, fileSizeBytes };
}

function checkTensor(path: string, t: { name: string; ggmlType: number; shape: number[]; rel: number }, dataOffset: number, alignment: number, fileSize: number): GgufTensorInfo {
  if (t.rel % alignment !== 0) throw new FormatError(`${path}: tensor ${t.name} offset`, `a multiple of ${alignment}`, t.rel);
  const dtype = dtypeOfGgmlType(t.ggmlType);
  let sizeBytes: number | null = null;
  if (dtype) {
    const inner = t.shape[t.shape.length - 1] ?? 1;
    if ((dtype === 'q8_0' || dtype === 'q4_0') && inner % 32 !== 0) {
      throw new FormatError(`${path}: tensor ${t.name} row length`, `a multiple of 32 for ${dtype}`, inner);
    }
    sizeBytes = tensorSizeBytes(dtype, t.shape);
    if (dataOffset + t.rel + sizeBytes > fileSize) {
      throw new FormatError(`${path}: tensor ${t.name} data [${dataOffset + t.rel}, ${dataOffset + t.rel + sizeBytes})`, `within the ${fileSize}-byte file`, 'past the end (truncated file?)');
    }
  }
  return { name: t.name, ggmlType: t.ggmlType, dtype, shape: t.shape, offsetBytes: dataOffset + t.rel, sizeBytes };
}

function checkOverlaps(path: string, tensors: readonly GgufTensorInfo[]): void {
  const known = tensors.filter((t) => t.sizeBytes !== null).sort((a, b) => a.offsetBytes - b.offsetBytes);
  for (let i = 1; i < known.length; i++) {
    const prev = known[i - 1]!;
    if (prev.offsetBytes + prev.sizeBytes! > known[i]!.offsetBytes) {
      throw new FormatError(`${path}: tensors ${prev.name} and ${known[i]!.name}`, 'disjoint data ranges', 'overlapping ranges');
    }
  }
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new FormatError(`${path}: tensor name`, 'unique names', `${t.name} twice`);
    names.add(t.name);
  }
}

/** The bytes of one tensor (read from the file now). */
export function readGgufTensor(file: GgufFile, name: string): Uint8Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new FormatError(`${file.path}: tensor`, `one of ${file.tensors.length} tensors in the file`, name);
  if (t.sizeBytes === null) throw new FormatError(`${file.path}: tensor ${name} type`, 'F32, F16, BF16, Q8_0 or Q4_0', `ggml type ${t.ggmlType}`);
  const out = new Uint8Array(t.sizeBytes);
  const fd = openSync(file.path, 'r');
  try {
    readFully(fd, out, t.offsetBytes);
  } finally {
    closeSync(fd);
  }
  return out;
}

function readFully(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new FormatError('GGUF read', `${buf.length} bytes at ${position}`, `${done} (file shorter than its header says)`);
    done += n;
  }
}

/** A metadata value as plain JS (arrays as arrays), or undefined. */
export function ggufMeta(file: GgufFile, key: string): unknown {
  return file.metadata.get(key)?.value;
}

export { GgufValueType, gguf, type GgufValue };
