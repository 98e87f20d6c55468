/**
 * GGUF (version 3), the llama.cpp file format: constants, metadata value types, and a
 * byte-level encoder / decoder for the header. Layout (all little-endian):
 *
 *   u32 magic "GGUF" | u32 version | u64 nTensors | u64 nKv
 *   nKv x  { string key | u32 valueType | value }
 *   nTensors x { string name | u32 nDims | u64 ne[nDims] | u32 ggmlType | u64 offset }
 *   zero padding to `general.alignment` (default 32)
 *   tensor data, each at dataStart + offset (offsets aligned to the alignment)
 *
 *   string = u64 byteLength + UTF-8 bytes; array = u32 elemType + u64 count + elements.
 *   ne[0] is the innermost (contiguous) dimension: a row-major [rows, cols] matrix has
 *   ne = [cols, rows].
 *
 * NOTE(1): Only the ggml types this engine stores are given names (F32, F16, BF16, Q8_0, Q4_0);
 *   their block layouts are byte-identical to core/ (DESIGN decision 5), so a tensor's bytes
 *   are copied as they are. Other types are still parsed (for `inspect`) by their numeric id.
 */
import type { DType } from '../core/dtype.js';
import { FormatError } from '../core/errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml_type ids of the dtypes this engine stores. */
export const GGML_TYPE: Readonly<Record<DType, number>> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, bf16: 30 };

export function dtypeOfGgmlType(t: number): DType | null {
  for (const [d, id] of Object.entries(GGML_TYPE)) if (id === t) return d as DType;
  return null;
}

/** A metadata value with its GGUF type (arrays carry their element type). */
export type GgufValue =
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: Exclude<GgufValueType, GgufValueType.STRING | GgufValueType.BOOL | GgufValueType.ARRAY>; value: number | bigint }
  | { type: GgufValueType.ARRAY; elemType: GgufValueType; value: readonly (string | number | bigint | boolean)[] };

/** Shorthands for building metadata. */
export const gguf = {
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  strings: (value: readonly string[]): GgufValue => ({ type: GgufValueType.ARRAY, elemType: GgufValueType.STRING, value }),
  i32s: (value: readonly number[]): GgufValue => ({ type: GgufValueType.ARRAY, elemType: GgufValueType.INT32, value }),
  f32s: (value: readonly number[]): GgufValue => ({ type: GgufValueType.ARRAY, elemType: GgufValueType.FLOAT32, value }),
};

const SCALAR_BYTES: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

/** Growable little-endian byte writer for the header. */
export class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void { this.ensure(1); this.view.setUint8(this.length, v); this.length += 1; }
  u32(v: number): void { this.ensure(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  u64(v: number | bigint): void { this.ensure(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array): void { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  scalar(type: GgufValueType, v: string | number | bigint | boolean): void {
    const n = SCALAR_BYTES[type];
    if (type === GgufValueType.STRING) return this.string(String(v));
    if (n === undefined) throw new FormatError('GGUF value type', 'a scalar or string type', type);
    this.ensure(n);
    const at = this.length;
    const d = this.view;
    switch (type) {
      case GgufValueType.UINT8: d.setUint8(at, Number(v)); break;
      case GgufValueType.INT8: d.setInt8(at, Number(v)); break;
      case GgufValueType.BOOL: d.setUint8(at, v ? 1 : 0); break;
      case GgufValueType.UINT16: d.setUint16(at, Number(v), true); break;
      case GgufValueType.INT16: d.setInt16(at, Number(v), true); break;
      case GgufValueType.UINT32: d.setUint32(at, Number(v), true); break;
      case GgufValueType.INT32: d.setInt32(at, Number(v), true); break;
      case GgufValueType.FLOAT32: d.setFloat32(at, Number(v), true); break;
      case GgufValueType.UINT64: d.setBigUint64(at, BigInt(v), true); break;
      case GgufValueType.INT64: d.setBigInt64(at, BigInt(v), true); break;
      case GgufValueType.FLOAT64: d.setFloat64(at, Number(v), true); break;
    }
    this.length += n;
  }
  value(v: GgufValue): void {
    this.u32(v.type);
    if (v.type !== GgufValueType.ARRAY) return this.scalar(v.type, v.value);
    this.u32(v.elemType);
    this.u64(v.value.length);
    for (const e of v.value) this.scalar(v.elemType, e);
  }
  pad(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Little-endian reader over a header buffer; every overrun is a FormatError naming `file`. */
export class ByteReader {
  private readonly view: DataView;
  pos = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number, what: string): void {
    if (this.pos + n > this.bytes.length) {
      throw new FormatError(`${this.file}: ${what} at byte ${this.pos}`, `${n} more bytes`, `${this.bytes.length - this.pos} (truncated header)`);
    }
  }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${this.file}: ${what}`, 'a count below 2^53', v.toString());
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`${what} length`);
    this.need(n, what);
    const s = new TextDecoder('utf-8', { fatal: false }).decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  scalar(type: GgufValueType, what: string): string | number | bigint | boolean {
    if (type === GgufValueType.STRING) return this.string(what);
    const n = SCALAR_BYTES[type];
    if (n === undefined) throw new FormatError(`${this.file}: ${what} type`, 'a GGUF value type 0..12 (no nested arrays)', type);
    this.need(n, what);
    const d = this.view;
    const at = this.pos;
    this.pos += n;
    switch (type) {
      case GgufValueType.UINT8: return d.getUint8(at);
      case GgufValueType.INT8: return d.getInt8(at);
      case GgufValueType.BOOL: return d.getUint8(at) !== 0;
      case GgufValueType.UINT16: return d.getUint16(at, true);
      case GgufValueType.INT16: return d.getInt16(at, true);
      case GgufValueType.UINT32: return d.getUint32(at, true);
      case GgufValueType.INT32: return d.getInt32(at, true);
      case GgufValueType.FLOAT32: return d.getFloat32(at, true);
      case GgufValueType.UINT64: return d.getBigUint64(at, true);
      case GgufValueType.INT64: return d.getBigInt64(at, true);
      default: return d.getFloat64(at, true);
    }
  }
  value(what: string): GgufValue {
    const type = this.u32(`${what} type`) as GgufValueType;
    if (type !== GgufValueType.ARRAY) return { type, value: this.scalar(type, what) } as GgufValue;
    const elemType = this.u32(`${what} element type`) as GgufValueType;
    const n = this.u64(`${what} count`);
    const minBytes = elemType === GgufValueType.STRING ? 8 : (SCALAR_BYTES[elemType] ?? 1);
    this.need(n * minBytes, `${what} elements`);
    const value: (string | number | bigint | boolean)[] = new Array(n);
    for (let i = 0; i < n; i++) value[i] = this.scalar(elemType, `${what}[${i}]`);
    return { type: GgufValueType.ARRAY, elemType, value };
  }
}
