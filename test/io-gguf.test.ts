/**
 * GGUF read/write: bit-exact round trip of metadata (every value type) and tensors (every
 * dtype), the documented byte layout, and typed errors on malformed files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeArray, DTYPE_NAMES } from '../src/core/dtype.js';
import { FormatError, ShapeError, VersionError } from '../src/core/errors.js';
import { mulberry32, normalArray } from '../src/core/rng.js';
import { inspectFile } from '../src/io/inspect.js';
import { GgufValueType, gguf, ggufMeta, readGgufHeader, readGgufTensor, tensorSizeBytes, writeGgufFile, type GgufTensorInput, type GgufValue } from '../src/io/gguf.js';

const META: [string, GgufValue][] = [
  ['general.architecture', gguf.str('llama')],
  ['general.name', gguf.str('tëst ✓')],
  ['llama.block_count', gguf.u32(2)],
  ['llama.rope.freq_base', gguf.f32(10000.5)],
  ['x.i32', gguf.i32(-7)],
  ['x.bool', gguf.bool(true)],
  ['x.u8', { type: GgufValueType.UINT8, value: 200 }],
  ['x.i16', { type: GgufValueType.INT16, value: -300 }],
  ['x.u64', { type: GgufValueType.UINT64, value: 1n << 40n }],
  ['x.f64', { type: GgufValueType.FLOAT64, value: Math.PI }],
  ['tokenizer.ggml.tokens', gguf.strings(['a', 'Ġb', '<|im_end|>', ''])],
  ['tokenizer.ggml.token_type', gguf.i32s([1, 1, 3, 5])],
  ['x.f32s', gguf.f32s([0.5, -2])],
];

function tensors(): GgufTensorInput[] {
  const rng = mulberry32(3);
  return DTYPE_NAMES.map((dtype, i) => {
    const shape = [3 + i, 64];
    return { name: `t.${dtype}`, dtype, shape, data: encodeArray(dtype, normalArray(rng, shape[0]! * 64)) };
  });
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-gguf-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('GGUF round trip: metadata of every type and tensors of every dtype, bit-exact', () => {
  withDir((dir) => {
    const path = join(dir, 'm.gguf');
    const ts = tensors();
    writeGgufFile(path, META, ts);
    const f = readGgufHeader(path);
    assert.equal(f.version, 3);
    assert.equal(f.alignment, 32);
    assert.equal(f.dataOffset % 32, 0);
    assert.deepEqual([...f.metadata.keys()], META.map(([k]) => k));
    for (const [k, v] of META) {
      const got = f.metadata.get(k)!;
      assert.equal(got.type, v.type, k);
      if (v.type === GgufValueType.FLOAT32) assert.equal(got.value, Math.fround(v.value as number));
      else assert.deepEqual(got.value, v.value, k);
    }
    assert.equal(ggufMeta(f, 'general.name'), 'tëst ✓');
    for (const t of ts) {
      const info = f.tensors.find((x) => x.name === t.name)!;
      assert.deepEqual(info.shape, t.shape);
      assert.equal(info.dtype, t.dtype);
      assert.equal(info.offsetBytes % 32, 0);
      assert.equal(info.sizeBytes, tensorSizeBytes(t.dtype, t.shape));
      assert.deepEqual(readGgufTensor(f, t.name), t.data);
    }
    // Byte layout: magic, version, counts; ne[0] is the innermost dimension.
    const bytes = new Uint8Array(readFileSync(path));
    const dv = new DataView(bytes.buffer);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), 'GGUF');
    assert.equal(dv.getUint32(4, true), 3);
    assert.equal(dv.getBigUint64(8, true), BigInt(ts.length));
    assert.equal(dv.getBigUint64(16, true), BigInt(META.length));
    assert.equal(bytes.length % 32, 0, 'file padded to the alignment');
    assert.deepEqual(readdirSync(dir), ['m.gguf']);
  });
});

test('GGUF write streams chunked tensors; a size mismatch fails and leaves no file', () => {
  withDir((dir) => {
    const path = join(dir, 'c.gguf');
    const data = encodeArray('f16', normalArray(mulberry32(1), 256));
    writeGgufFile(path, META.slice(0, 1), [{ name: 'w', dtype: 'f16', shape: [4, 64], data: () => [data.subarray(0, 100), data.subarray(100)] }], 64);
    const f = readGgufHeader(path);
    assert.equal(f.alignment, 64);
    assert.deepEqual(readGgufTensor(f, 'w'), data);
    const bad = join(dir, 'bad.gguf');
    assert.throws(() => writeGgufFile(bad, [], [{ name: 'w', dtype: 'f16', shape: [4, 64], data: data.subarray(1) }]), ShapeError);
    assert.deepEqual(readdirSync(dir), ['c.gguf']);
  });
});

test('GGUF read rejects bad magic, unknown version, truncation, overlapping or unaligned tensors', () => {
  withDir((dir) => {
    const path = join(dir, 'm.gguf');
    writeGgufFile(path, META, tensors());
    const good = new Uint8Array(readFileSync(path));
    const variant = (name: string, edit: (b: Uint8Array, dv: DataView) => Uint8Array | void) => {
      const b = good.slice();
      const out = edit(b, new DataView(b.buffer)) ?? b;
      const p = join(dir, name);
      writeFileSync(p, out);
      return p;
    };
    assert.throws(() => readGgufHeader(variant('magic', (b) => void (b[0] = 0x47 + 1))), FormatError);
    assert.throws(() => readGgufHeader(variant('version', (_b, dv) => dv.setUint32(4, 4, true))), VersionError);
    for (const cut of [3, 20, 200, good.length - 10]) {
      assert.throws(() => readGgufHeader(variant(`cut${cut}`, (b) => b.subarray(0, cut))), FormatError, `cut at ${cut}`);
    }
    // Point the second tensor's offset at the first one's data: overlap.
    const f = readGgufHeader(path);
    const second = f.tensors[1]!;
    const infoAt = findOffsetField(good, second.name);
    assert.throws(() => readGgufHeader(variant('overlap', (_b, dv) => dv.setBigUint64(infoAt, 0n, true))), /overlapping/);
    assert.throws(() => readGgufHeader(variant('unaligned', (_b, dv) => dv.setBigUint64(infoAt, 33n, true))), /multiple of 32/);
  });
});

/** Byte position of the u64 offset field of tensor `name` in the header. */
function findOffsetField(bytes: Uint8Array, name: string): number {
  const enc = new TextEncoder().encode(name);
  for (let i = 0; i < bytes.length - enc.length; i++) {
    if (enc.every((c, j) => bytes[i + j] === c) && new DataView(bytes.buffer).getBigUint64(i - 8, true) === BigInt(enc.length)) {
      const nDims = new DataView(bytes.buffer).getUint32(i + enc.length, true);
      return i + enc.length + 4 + nDims * 8 + 4;
    }
  }
  throw new Error(`tensor ${name} not found`);
}

test('inspect of a GGUF file: version, every metadata key, long arrays shortened, the tensor table', () => {
  withDir((dir) => {
    const path = join(dir, 'm.gguf');
    const many = Array.from({ length: 40 }, (_, i) => `tok${i}`);
    writeGgufFile(path, [...META, ['tokenizer.ggml.merges', gguf.strings(many)]], tensors());
    const report = inspectFile(path);
    assert.match(report, /^format: +GGUF version 3$/m);
    for (const [key] of META) assert.match(report, new RegExp(`^  ${key.replace(/\./g, '\\.')} +`, 'm'), key);
    assert.match(report, /tokenizer\.ggml\.merges +\[40 x STRING\] \["tok0", "tok1", "tok2", "tok3", "tok4", "tok5", \.\.\. 34 more\]/);
    assert.match(report, /x\.u64 +1099511627776/);
    const f = readGgufHeader(path);
    for (const t of f.tensors) {
      const type = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' }[t.dtype!];
      assert.match(report, new RegExp(`^  ${t.name.replace('.', '\\.')} +${type} +\\[${t.shape.join(', ')}\\] +${t.offsetBytes} +${t.sizeBytes}$`, 'm'), t.name);
    }
    assert.match(report, new RegExp(`^tensors: +${f.tensors.length}, `, 'm'));
    // A corrupt file is the same typed error as a read.
    writeFileSync(join(dir, 'bad.gguf'), readFileSync(path).subarray(0, 40));
    assert.throws(() => inspectFile(join(dir, 'bad.gguf')), FormatError);
  });
});
