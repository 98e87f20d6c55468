/**
 * safetensors files on Node: a reader that opens the header only and reads one tensor at a
 * time, and atomic writers (whole tensors, or streamed chunk by chunk).
 *
 * NOTE(1): Opening reads the 8-byte prefix and the JSON header, nothing else; tensor bytes
 *   are read on demand with positional reads, so a loader streams a multi-GB checkpoint
 *   into its arena one tensor at a time (`readInto`) without holding the file in memory.
 * NOTE(2): The reader keeps one file descriptor until `dispose()`; a disposed reader throws
 *   DisposedError. The file must not change while it is open (the header is read once).
 * NOTE(3): Writes are atomic (snapshot-file.ts NOTE(1)): readers see the old file or the
 *   complete new one. The streaming writer writes the header first (its size is known
 *   from the shapes), then each tensor's chunks as the producer emits them, and checks
 *   that every tensor got exactly its byte size.
 * NOTE(4): Typed-array views assume a little-endian host, like the rest of kvcache (every
 *   platform Node and browsers run on).
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { DTypeError, DisposedError, FormatError, ShapeError } from '../core/errors.js';
import { bf16BitsToF32, f16BitsToF32 } from '../core/half.js';
import { writeFileAtomicWith } from './snapshot-file.js';
import {
  SAFETENSORS_PREFIX_BYTES,
  parseSafetensorsHeader,
  planSafetensors,
  readHeaderLength,
  tensorSizeBytes,
  weightDTypeOf,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  type SafetensorsTensorSpec,
  type WeightDType,
} from './safetensors-format.js';

/** Largest single read: readSync takes at most 2^31 - 1 bytes. */
const READ_CHUNK_BYTES = 1 << 26;

/** Read exactly `length` bytes at `position` into dst[dstOffset..]; FormatError if the file ends first. */
function readExactly(fd: number, dst: Uint8Array, dstOffset: number, length: number, position: number, where: string): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, dst, dstOffset + done, Math.min(length - done, READ_CHUNK_BYTES), position + done);
    if (n === 0) throw new FormatError(`safetensors ${where}: read at offset ${position + done}`, `${length - done} more bytes`, 'end of file (truncated while open?)');
    done += n;
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** A safetensors file opened for reading (NOTE(1), NOTE(2)). */
export class SafetensorsFile {
  readonly path: string;
  readonly fileSizeBytes: number;
  readonly header: SafetensorsHeader;
  private fd: number | null;
  private readonly byName: Map<string, SafetensorsTensorInfo>;

  private constructor(path: string, fd: number, fileSizeBytes: number, header: SafetensorsHeader) {
    this.path = path;
    this.fd = fd;
    this.fileSizeBytes = fileSizeBytes;
    this.header = header;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Open and validate the header of `path`; FormatError naming the file (and tensor) if it is malformed. */
  static open(path: string): SafetensorsFile {
    const fd = openSync(path, 'r');
    try {
      const fileSizeBytes = fstatSync(fd).size;
      const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES);
      const got = readSync(fd, prefix, 0, SAFETENSORS_PREFIX_BYTES, 0);
      const n = readHeaderLength(prefix.subarray(0, got), fileSizeBytes, path);
      const json = new Uint8Array(n);
      readExactly(fd, json, 0, n, SAFETENSORS_PREFIX_BYTES, path);
      return new SafetensorsFile(path, fd, fileSizeBytes, parseSafetensorsHeader(json, fileSizeBytes, path));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensors in data order. */
  get tensors(): readonly SafetensorsTensorInfo[] {
    return this.header.tensors;
  }

  get metadata(): Readonly<Record<string, string>> | null {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The header entry of `name`; FormatError naming the file when it has no such tensor. */
  info(name: string): SafetensorsTensorInfo {
    const t = this.byName.get(name);
    if (t === undefined) throw new FormatError(`safetensors ${this.path}: tensor "${name}"`, `one of the file's ${this.byName.size} tensors`, 'a name not in the header');
    return t;
  }

  /** The weight dtype of `name`; DTypeError naming the tensor and file for I64, F64, F8 and the like. */
  weightDType(name: string): WeightDType {
    const t = this.info(name);
    const w = weightDTypeOf(t.dtype);
    if (w === null) throw new DTypeError(`safetensors ${this.path}: tensor "${name}" dtype`, 'F32, F16 or BF16 to load as weights', t.dtype);
    return w;
  }

  private handle(): number {
    if (this.fd === null) throw new DisposedError(`safetensors ${this.path}`, 'an open file', 'a disposed reader');
    return this.fd;
  }

  /** Copy the raw bytes of `name` into dst[dstOffset..] (e.g. straight into an arena). */
  readInto(name: string, dst: Uint8Array, dstOffset = 0): void {
    const t = this.info(name);
    if (dstOffset < 0 || dstOffset + t.sizeBytes > dst.length) {
      throw new ShapeError(`destination of tensor "${name}" (${t.sizeBytes} bytes at offset ${dstOffset})`, `a buffer of at least ${dstOffset + t.sizeBytes} bytes`, `${dst.length} bytes`);
    }
    readExactly(this.handle(), dst, dstOffset, t.sizeBytes, t.offsetBytes, this.path);
  }

  /** The raw little-endian bytes of `name`, in a fresh buffer. */
  readBytes(name: string): Uint8Array {
    const out = new Uint8Array(this.info(name).sizeBytes);
    this.readInto(name, out);
    return out;
  }

  /** `name` decoded to f32 (F32 copied, F16/BF16 widened exactly); DTypeError for other dtypes. */
  readF32(name: string): Float32Array {
    const dtype = this.weightDType(name);
    const t = this.info(name);
    const out = new Float32Array(t.nElements); // [prod(shape)]
    if (dtype === 'f32') {
      this.readInto(name, new Uint8Array(out.buffer));
      return out;
    }
    const halves = new Uint16Array(t.nElements); // [prod(shape)] bit patterns
    this.readInto(name, new Uint8Array(halves.buffer));
    if (dtype === 'bf16') {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
    } else {
      for (let i = 0; i < halves.length; i++) out[i] = f16BitsToF32(halves[i]!);
    }
    return out;
  }

  /**
   * Elements [elemStart, elemStart + out.length) of `name` (row-major) decoded to f32 into `out`,
   * reading only those bytes: lets a loader stream a big matrix through a small buffer.
   */
  readF32Range(name: string, elemStart: number, out: Float32Array): void {
    const dtype = this.weightDType(name);
    const t = this.info(name);
    const n = out.length;
    if (!Number.isSafeInteger(elemStart) || elemStart < 0 || elemStart + n > t.nElements) {
      throw new ShapeError(`element range of tensor "${name}"`, `[start, start + n) within its ${t.nElements} elements`, `[${elemStart}, ${elemStart + n})`);
    }
    const fd = this.handle();
    if (dtype === 'f32') {
      readExactly(fd, new Uint8Array(out.buffer, out.byteOffset, n * 4), 0, n * 4, t.offsetBytes + elemStart * 4, this.path);
      return;
    }
    // The 2-byte patterns land in the upper half of out's own bytes, then widen in place front to
    // back: element i's pattern (bytes 2n + 2i) is always read before element i's f32 overwrites it.
    const bytes = new Uint8Array(out.buffer, out.byteOffset, n * 4);
    readExactly(fd, bytes, n * 2, n * 2, t.offsetBytes + elemStart * 2, this.path);
    const halves = new Uint16Array(out.buffer, out.byteOffset + n * 2, n); // [n] bit patterns
    if (dtype === 'bf16') {
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
    } else {
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(halves[i]!);
    }
  }

  /** Close the file; later reads throw DisposedError. Idempotent. */
  dispose(): void {
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      closeSync(fd);
    }
  }
}

/** Sink of a streaming producer: call it with the tensor's bytes in order, in any chunk sizes. */
export type SafetensorsChunkSink = (chunk: Uint8Array) => void;

/** Writes tensor `index` (`spec`) by calling `write` with all of its bytes, in order. */
export type SafetensorsProducer = (index: number, spec: SafetensorsTensorSpec, write: SafetensorsChunkSink) => void;

/**
 * Write a safetensors file atomically, streaming each tensor's bytes from `produce`
 * (NOTE(3)); memory is bounded by the producer's chunk size. Tensors are stored in the
 * given order. ShapeError naming the tensor if a producer writes too few or too many bytes.
 */
export function writeSafetensorsStreaming(
  path: string,
  specs: readonly SafetensorsTensorSpec[],
  produce: SafetensorsProducer,
  metadata?: Readonly<Record<string, string>> | null,
): void {
  const plan = planSafetensors(specs, metadata);
  writeFileAtomicWith(path, (fd) => {
    writeAll(fd, plan.prefix, 0);
    specs.forEach((spec, i) => {
      const at = plan.offsets[i]!;
      const size = plan.sizes[i]!;
      let written = 0;
      produce(i, spec, (chunk) => {
        if (written + chunk.length > size) throw new ShapeError(`bytes of tensor "${spec.name}"`, size, `at least ${written + chunk.length}`);
        writeAll(fd, chunk, at + written);
        written += chunk.length;
      });
      if (written !== size) throw new ShapeError(`bytes of tensor "${spec.name}"`, size, written);
    });
  });
}

export interface SafetensorsTensorData extends SafetensorsTensorSpec {
  /** Little-endian bytes, exactly prod(shape) * itemsize of them. */
  readonly data: Uint8Array;
}

/** Write whole tensors to a safetensors file atomically, in the given order. */
export function writeSafetensors(path: string, tensors: readonly SafetensorsTensorData[], metadata?: Readonly<Record<string, string>> | null): void {
  for (const t of tensors) {
    const size = tensorSizeBytes(t.dtype, t.shape, `tensor "${t.name}"`);
    if (t.data.length !== size) throw new ShapeError(`bytes of tensor "${t.name}" (${t.dtype} [${t.shape.join(', ')}])`, size, t.data.length);
  }
  writeSafetensorsStreaming(path, tensors, (i, _spec, write) => write(tensors[i]!.data), metadata);
}
