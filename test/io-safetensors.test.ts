/**
 * safetensors: bit-exact round trips in every weight dtype, the exact bytes of the header
 * the HF library writes, every rejection of a malformed file (a FormatError naming the file
 * and the tensor), streaming writes, sharded checkpoints and `inspect`. Crafted files are
 * built from a header object and a data section, so each rejection is due to the one
 * thing changed; the crafted valid file loads (the positive control).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DTypeError, DisposedError, FormatError, ShapeError } from '../src/core/errors.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/core/half.js';
import { parseSafetensorsBuffer, planSafetensors } from '../src/io/safetensors-format.js';
import { SafetensorsFile, writeSafetensors, writeSafetensorsStreaming } from '../src/io/safetensors.js';
import { SafetensorsCheckpoint } from '../src/io/safetensors-index.js';
import { inspectFile } from '../src/io/inspect.js';

function throwsExactly(fn: () => unknown, cls: Function, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.equal(e.constructor, cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-st-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Interesting f32 values: signed zeros, infinities, NaN, subnormals, extremes, ordinary numbers. */
const SPECIAL = [0, -0, 1, -1, 0.1, -2.5, 65504, 65520, 1e-8, 5.96e-8, 1.4e-45, -1.17e-38, 3.4e38, Infinity, -Infinity, NaN, 3.14159, 1e5];

function f32Bytes(values: readonly number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

function halfBytes(values: readonly number[], enc: (x: number) => number): Uint8Array {
  return new Uint8Array(Uint16Array.from(values, enc).buffer);
}

test('write -> read round trip is bit-exact for F32/F16/BF16 and raw for other dtypes', () => {
  withDir((dir) => {
    const path = join(dir, 'rt.safetensors');
    const tensors = [
      { name: 'w.f32', dtype: 'F32', shape: [3, 6], data: f32Bytes(SPECIAL) },
      { name: 'w.f16', dtype: 'f16', shape: [18], data: halfBytes(SPECIAL, f32ToF16Bits) },
      { name: 'w.bf16', dtype: 'BF16', shape: [2, 3, 3], data: halfBytes(SPECIAL, f32ToBf16Bits) },
      { name: 'ids.i64', dtype: 'I64', shape: [2], data: new Uint8Array(16).map((_, i) => i) },
      { name: 'scalar', dtype: 'F32', shape: [], data: f32Bytes([7]) },
      { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
      { name: 'mask', dtype: 'BOOL', shape: [3], data: Uint8Array.of(1, 0, 1) },
    ];
    writeSafetensors(path, tensors, { format: 'pt', note: 'ünïcode' });
    assert.deepEqual(readdirSync(dir), ['rt.safetensors'], 'no temp file left');
    const f = SafetensorsFile.open(path);
    try {
      assert.deepEqual(f.metadata, { format: 'pt', note: 'ünïcode' });
      assert.deepEqual(f.tensors.map((t) => t.name), tensors.map((t) => t.name), 'stored in the given order');
      for (const t of tensors) {
        assert.deepEqual(f.readBytes(t.name), t.data, t.name);
        assert.deepEqual(f.info(t.name).shape, t.shape);
      }
      const f32 = f.readF32('w.f32');
      const f16 = f.readF32('w.f16');
      const bf16 = f.readF32('w.bf16');
      SPECIAL.forEach((x, i) => {
        assert.ok(Object.is(f32[i], Math.fround(x)), `f32 ${x}`);
        assert.ok(Object.is(f16[i], f16BitsToF32(f32ToF16Bits(x))), `f16 ${x}`);
        assert.ok(Object.is(bf16[i], bf16BitsToF32(f32ToBf16Bits(x))), `bf16 ${x}`);
      });
      assert.equal(f.weightDType('w.bf16'), 'bf16');
      assert.deepEqual(Array.from(f.readF32('scalar')), [7]);
      assert.equal(f.readF32('empty').length, 0);
      throwsExactly(() => f.readF32('ids.i64'), DTypeError, /"ids\.i64".*F32, F16 or BF16.*I64/);
      throwsExactly(() => f.readBytes('nope'), FormatError, /rt\.safetensors.*"nope"/);
      const arena = new Uint8Array(100).fill(0xee);
      f.readInto('w.f16', arena, 10);
      assert.deepEqual(arena.subarray(10, 46), tensors[1]!.data);
      assert.equal(arena[9], 0xee);
      assert.equal(arena[46], 0xee);
      throwsExactly(() => f.readInto('w.f32', arena, 50), ShapeError);
    } finally {
      f.dispose();
    }
    throwsExactly(() => f.readBytes('w.f32'), DisposedError);
    f.dispose();
  });
});

test('header bytes are what the HF library writes: u64 length, compact JSON, __metadata__ first, space padding to 8', () => {
  const plan = planSafetensors([{ name: 'a', dtype: 'F32', shape: [2] }, { name: 'b', dtype: 'BF16', shape: [1, 3] }], { format: 'pt' });
  const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}}';
  const padded = Math.ceil(json.length / 8) * 8;
  assert.equal(plan.prefix.length, 8 + padded);
  const dv = new DataView(plan.prefix.buffer);
  assert.equal(dv.getUint32(0, true), padded);
  assert.equal(dv.getUint32(4, true), 0);
  assert.equal(new TextDecoder().decode(plan.prefix.subarray(8)), json.padEnd(padded, ' '));
  assert.deepEqual(plan.offsets, [8 + padded, 8 + padded + 8]);
  assert.equal(plan.fileSizeBytes, 8 + padded + 14);
  throwsExactly(() => planSafetensors([{ name: 'x', dtype: 'F32', shape: [1] }, { name: 'x', dtype: 'F32', shape: [1] }]), ConfigError, /"x" twice/);
  throwsExactly(() => planSafetensors([{ name: 'x', dtype: 'Q4', shape: [1] }]), ConfigError, /"x" dtype/);
  throwsExactly(() => planSafetensors([{ name: 'x', dtype: 'F32', shape: [-1] }]), ShapeError);
  throwsExactly(() => planSafetensors([{ name: '__metadata__', dtype: 'F32', shape: [1] }]), ConfigError);
  throwsExactly(() => writeSafetensors('/nonexistent-dir/x.safetensors', [{ name: 'x', dtype: 'F32', shape: [2], data: new Uint8Array(4) }]), ShapeError, /"x"/);
});

/** A file: u64 length, `header` JSON (object or raw text), then `data`. */
function craft(header: unknown, data: Uint8Array, lengthOverride?: number): Uint8Array {
  const text = header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, lengthOverride ?? text.length, true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

function validHeader(): Record<string, unknown> {
  return {
    __metadata__: { format: 'pt' },
    'model.a': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
    'model.b': { dtype: 'BF16', shape: [4], data_offsets: [16, 24] },
  };
}
const DATA = new Uint8Array(24).map((_, i) => i * 7);

test('crafted valid file loads (positive control) and tensors come back in offset order', () => {
  const h = validHeader();
  const reordered = { 'model.b': h['model.b'], 'model.a': h['model.a'] };
  const parsed = parseSafetensorsBuffer(craft(reordered, DATA), 'mem');
  assert.deepEqual(parsed.tensors.map((t) => t.name), ['model.a', 'model.b']);
  assert.equal(parsed.metadata, null);
  assert.equal(parseSafetensorsBuffer(craft(h, DATA)).tensors.length, 2);
  assert.equal(parseSafetensorsBuffer(craft({}, new Uint8Array(0))).tensors.length, 0, 'no tensors is valid');
});

test('malformed files are FormatErrors naming the file and the tensor', () => {
  withDir((dir) => {
    const cases: [string, Uint8Array, RegExp][] = [];
    const add = (label: string, bytes: Uint8Array, re: RegExp): void => {
      cases.push([label, bytes, re]);
    };
    const mutate = (tensor: string, field: string, value: unknown): Record<string, unknown> => {
      const h = validHeader();
      (h[tensor] as Record<string, unknown>)[field] = value;
      return h;
    };
    const full = craft(validHeader(), DATA);
    add('empty', new Uint8Array(0), /file size.*at least 8 bytes/);
    add('truncated in the data', full.subarray(0, full.length - 3), /tensor "model\.b" data_offsets \[16, 24\].*past it: truncated/);
    add('truncated in the header', full.subarray(0, 30), /header length.*truncated/);
    add('header length past the end', craft(validHeader(), DATA, 1000), /header length.*at most/);
    add('header length over 2^32', (() => {
      const b = craft(validHeader(), DATA);
      new DataView(b.buffer).setUint32(4, 1, true);
      return b;
    })(), /header length/);
    add('bad JSON', craft('{"model.a": {"dtype": "F32",', DATA), /header JSON.*valid JSON/);
    add('not an object', craft('[1, 2]', DATA), /header start.*'\{'/);
    add('JSON null after a brace', craft('{} null', DATA), /valid JSON/);
    add('invalid UTF-8', craft(Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d), DATA), /header encoding.*valid UTF-8/);
    add('lying offsets (size)', craft(mutate('model.a', 'data_offsets', [0, 12]), DATA), /"model\.a" byte size.*16 = 4 elements of F32/);
    add('lying shape', craft(mutate('model.b', 'shape', [5]), DATA), /"model\.b" byte size/);
    add('overlap', craft({ ...validHeader(), 'model.b': { dtype: 'BF16', shape: [4], data_offsets: [12, 20] } }, DATA.subarray(0, 20)), /"model\.b".*no overlap with tensor "model\.a"/);
    add('gap', craft({ ...validHeader(), 'model.b': { dtype: 'BF16', shape: [4], data_offsets: [20, 28] } }, new Uint8Array(28)), /"model\.b".*gap of 4 bytes/);
    add('trailing bytes', craft(validHeader(), new Uint8Array(30)), /data section size.*6 trailing bytes/);
    add('unknown dtype', craft(mutate('model.b', 'dtype', 'Q4_0'), DATA), /"model\.b" dtype.*Q4_0/);
    add('negative dim', craft(mutate('model.a', 'shape', [-2, -2]), DATA), /"model\.a" shape/);
    add('fractional offsets', craft(mutate('model.a', 'data_offsets', [0, 15.5]), DATA), /"model\.a" data_offsets/);
    add('reversed offsets', craft(mutate('model.a', 'data_offsets', [16, 0]), DATA), /"model\.a" data_offsets/);
    add('entry not an object', craft({ ...validHeader(), 'model.c': 3 }, DATA), /"model\.c" entry/);
    add('metadata not strings', craft({ ...validHeader(), __metadata__: { n: 1 } }, DATA), /"__metadata__"\."n".*a string/);
    add('sub-byte count', craft({ 'model.f4': { dtype: 'F4', shape: [3], data_offsets: [0, 1] } }, new Uint8Array(1)), /"model\.f4" element count of F4/);
    for (const [label, bytes, re] of cases) {
      const path = join(dir, `${label.replace(/[^a-z0-9]+/gi, '_')}.safetensors`);
      writeFileSync(path, bytes);
      throwsExactly(() => SafetensorsFile.open(path), FormatError, re);
      assert.match((() => {
        try {
          SafetensorsFile.open(path);
        } catch (e) {
          return (e as Error).message;
        }
        return '';
      })(), new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), `${label}: the message names the file`);
      throwsExactly(() => inspectFile(path), FormatError);
    }
  });
});

test('streaming writer: chunks land in order; a producer writing the wrong byte count leaves no file', () => {
  withDir((dir) => {
    const path = join(dir, 's.safetensors');
    const specs = [
      { name: 'x', dtype: 'F32', shape: [1000] },
      { name: 'y', dtype: 'U8', shape: [7] },
    ];
    const x = new Float32Array(1000).map((_, i) => i * 0.5 - 3);
    writeSafetensorsStreaming(path, specs, (i, _spec, write) => {
      if (i === 0) for (let k = 0; k < 1000; k += 300) write(new Uint8Array(x.buffer, k * 4, Math.min(300, 1000 - k) * 4));
      else write(Uint8Array.of(1, 2, 3, 4, 5, 6, 7));
    });
    const f = SafetensorsFile.open(path);
    assert.deepEqual(f.readF32('x'), x);
    assert.deepEqual(Array.from(f.readBytes('y')), [1, 2, 3, 4, 5, 6, 7]);
    f.dispose();
    const before = readFileSync(path);
    throwsExactly(() => writeSafetensorsStreaming(path, specs, (i, _s, write) => write(new Uint8Array(i === 0 ? 3999 : 7))), ShapeError, /"x".*4000.*3999/);
    throwsExactly(() => writeSafetensorsStreaming(path, specs, (i, _s, write) => write(new Uint8Array(i === 0 ? 4000 : 8))), ShapeError, /"y"/);
    assert.deepEqual(readFileSync(path), before, 'the old file is untouched');
    assert.deepEqual(readdirSync(dir), ['s.safetensors'], 'no temp files');
  });
});

function writeShards(dir: string, index: unknown): void {
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [
    { name: 'a', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) },
    { name: 'b', dtype: 'F32', shape: [1], data: f32Bytes([3]) },
  ]);
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [{ name: 'c', dtype: 'BF16', shape: [2], data: halfBytes([4, 5], f32ToBf16Bits) }]);
  writeFileSync(join(dir, 'model.safetensors.index.json'), typeof index === 'string' ? index : JSON.stringify(index));
}

const INDEX = { metadata: { total_size: 16 }, weight_map: { a: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors', b: 'model-00001-of-00002.safetensors' } };

test('sharded checkpoint: the index resolves each tensor to its shard; inconsistent indexes are rejected', () => {
  withDir((dir) => {
    writeShards(dir, INDEX);
    const ck = SafetensorsCheckpoint.open(dir);
    assert.deepEqual(ck.tensorNames(), ['a', 'c', 'b']);
    assert.deepEqual(Array.from(ck.readF32('c')), [4, 5]);
    assert.deepEqual(Array.from(ck.readF32('b')), [3]);
    assert.match(ck.info('c').file, /model-00002-of-00002/);
    assert.equal(ck.totalSizeBytes, 16);
    throwsExactly(() => ck.readF32('zz'), FormatError, /sharded checkpoint.*"zz"/);
    const report = inspectFile(join(dir, 'model.safetensors.index.json'));
    assert.match(report, /tensors: {2}3, 5 elements/);
    assert.match(report, /F32 x 2.*BF16 x 1/);
    ck.dispose();

    const bad = (index: unknown, re: RegExp): void => {
      writeShards(dir, index);
      throwsExactly(() => SafetensorsCheckpoint.open(dir), FormatError, re);
    };
    bad({ weight_map: { ...INDEX.weight_map, d: 'model-00001-of-00002.safetensors' } }, /tensor "d".*absent from it/);
    bad({ weight_map: { a: INDEX.weight_map.a, c: INDEX.weight_map.c } }, /tensor "b" of shard model-00001.*not in the weight_map/);
    bad({ weight_map: { ...INDEX.weight_map, b: 'model-00002-of-00002.safetensors' } }, /"b".*absent/);
    bad({ weight_map: { ...INDEX.weight_map, a: '../model-00001-of-00002.safetensors' } }, /shard of tensor "a".*same folder/);
    bad({ weight_map: {} }, /at least one tensor/);
    bad('{"weight_map": ', /valid JSON/);
    bad({ metadata: 3, weight_map: INDEX.weight_map }, /"metadata"/);
  });
  withDir((dir) => {
    throwsExactly(() => SafetensorsCheckpoint.open(dir), FormatError, /model\.safetensors or model\.safetensors\.index\.json/);
    writeSafetensors(join(dir, 'model.safetensors'), [{ name: 'w', dtype: 'F16', shape: [1], data: halfBytes([2], f32ToF16Bits) }]);
    const ck = SafetensorsCheckpoint.open(dir);
    assert.deepEqual(ck.tensorNames(), ['w']);
    assert.equal(ck.weightDType('w'), 'f16');
    ck.dispose();
    assert.ok(!existsSync(join(dir, 'model.safetensors.index.json')));
  });
});

test('inspect recognizes safetensors by content and by name, and lists the first tensors', () => {
  withDir((dir) => {
    const tensors = Array.from({ length: 25 }, (_, i) => ({ name: `t${i}`, dtype: i % 2 ? 'F16' : 'F32', shape: [i + 1], data: new Uint8Array((i + 1) * (i % 2 ? 2 : 4)) }));
    const path = join(dir, 'weights.bin');
    writeSafetensors(path, tensors, { format: 'pt' });
    const report = inspectFile(path);
    assert.match(report, /format: {3}safetensors/);
    assert.match(report, /tensors: {2}25, 325 elements/);
    assert.match(report, /F32 x 13.*F16 x 12/);
    assert.match(report, /metadata: \{"format":"pt"\}/);
    assert.match(report, /t19 .*\n {2}\.\.\. 5 more/);
    assert.doesNotMatch(report, /t20 /);
  });
});
