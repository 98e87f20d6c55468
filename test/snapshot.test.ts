/**
 * The snapshot container: round trips, every rejection with its exact error class, atomic
 * file writes, and `inspect`. Hand-crafted files pad their header JSON with spaces to a
 * fixed 492 bytes, so data starts at 512 whatever the header says and a test can place
 * sections anywhere; a crafted valid file decodes (the positive control), so each rejection
 * is due to the one thing changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { crc32 } from '../src/core/crc32.js';
import { ChecksumError, ConfigError, FormatError, ShapeError, VersionError } from '../src/core/errors.js';
import { decodeSnapshot, encodeSnapshot, type SnapshotSectionInput } from '../src/io/snapshot.js';
import { readSnapshotFile, writeFileAtomic, writeSnapshotFile } from '../src/io/snapshot-file.js';
import { inspectFile } from '../src/io/inspect.js';

const MAGIC = [0x4b, 0x56, 0x43, 0x53, 0x4e, 0x41, 0x50, 0x00];

function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 17 + 7) & 0xff;
  return out;
}

const SECTIONS = [
  { name: 'empty', bytes: new Uint8Array(0) },
  { name: 'one', bytes: bytesOf(1, 1) },
  { name: 'sixty-three', bytes: bytesOf(63, 2) },
  { name: 'sixty-four', bytes: bytesOf(64, 3) },
  { name: 'sixty-five', bytes: bytesOf(65, 4) },
  { name: 'ünïcode ✓', bytes: bytesOf(300, 5) },
];
const META = { model: 'tiny', dims: [1, 2, 3], nested: { ok: true, none: null, x: -1.5, s: 'é"\\' } };

function sample(): Uint8Array {
  return encodeSnapshot('test.kind', META, SECTIONS);
}

/** Assert `fn` throws exactly class `cls` (not a subclass), optionally with `re` in the message. */
function throwsExactly(fn: () => unknown, cls: Function, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.equal(e.constructor, cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

/** A file with `header` (object or raw JSON text) padded to 492 bytes, then `body` at offset 512. */
function craft(header: unknown, body: Uint8Array = new Uint8Array(0), version = 1): Uint8Array {
  const raw = typeof header === 'string' ? header : JSON.stringify(header);
  const text = new TextEncoder().encode(raw);
  const H = Math.max(492, text.length);
  const hdr = new Uint8Array(H).fill(0x20);
  hdr.set(text, 0);
  const out = new Uint8Array(20 + H + body.length);
  out.set(MAGIC, 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, version, true);
  dv.setUint32(12, H, true);
  dv.setUint32(16, crc32(hdr), true);
  out.set(hdr, 20);
  out.set(body, 20 + H);
  return out;
}

const hex = (v: number): string => v.toString(16).padStart(8, '0');
const A = bytesOf(100, 9); // section "a" at 512, ends at 612
const B = bytesOf(10, 10); // section "b" at 640, ends at 650
function craftedBody(): Uint8Array {
  const body = new Uint8Array(650 - 512);
  body.set(A, 0);
  body.set(B, 640 - 512);
  return body;
}
function validHeader(): { kind: unknown; meta: unknown; sections: Record<string, unknown>[]; fileSizeBytes: unknown } {
  return {
    kind: 'k',
    meta: {},
    sections: [
      { name: 'a', offsetBytes: 512, sizeBytes: 100, crc32: hex(crc32(A)) },
      { name: 'b', offsetBytes: 640, sizeBytes: 10, crc32: hex(crc32(B)) },
    ],
    fileSizeBytes: 650,
  };
}

test('round trip: kind, meta, every section, aligned offsets, zero padding', () => {
  const file = sample();
  const snap = decodeSnapshot(file, 'test.kind');
  assert.equal(snap.version, 1);
  assert.equal(snap.kind, 'test.kind');
  assert.deepEqual(snap.meta, META);
  assert.equal(snap.fileSizeBytes, file.length);
  assert.deepEqual([...snap.sections.keys()], SECTIONS.map((s) => s.name));
  let covered = 20 + snap.headerSizeBytes;
  for (const [i, e] of snap.entries.entries()) {
    assert.deepEqual(snap.sections.get(e.name), SECTIONS[i]!.bytes);
    assert.equal(e.offsetBytes % 64, 0);
    assert.equal(e.crc32, crc32(SECTIONS[i]!.bytes));
    assert.ok(file.subarray(covered, e.offsetBytes).every((b) => b === 0), 'padding is zero');
    covered = e.offsetBytes + e.sizeBytes;
  }
  assert.equal(covered, file.length, 'no trailing bytes');
  assert.deepEqual(file.subarray(0, 8), new Uint8Array(MAGIC));
});

test('encoding is deterministic, and chunked sections encode like whole ones', () => {
  assert.deepEqual(sample(), sample());
  const chunked: SnapshotSectionInput[] = SECTIONS.map((s) => ({
    name: s.name,
    sizeBytes: s.bytes.length,
    chunks: function* () {
      const scratch = new Uint8Array(7); // reused: a chunk need only live until the next one
      for (let at = 0; at < s.bytes.length; at += 7) {
        const piece = s.bytes.subarray(at, at + 7);
        scratch.set(piece);
        yield scratch.subarray(0, piece.length);
      }
    },
  }));
  assert.deepEqual(encodeSnapshot('test.kind', META, chunked), sample());
});

test('no sections: the file ends right after the header', () => {
  const file = encodeSnapshot('k', {}, []);
  const snap = decodeSnapshot(file);
  assert.equal(file.length, 20 + snap.headerSizeBytes);
  assert.equal(snap.sections.size, 0);
});

test('decoded sections are views into the input; shared-memory input decodes', () => {
  const file = sample();
  const snap = decodeSnapshot(file);
  assert.equal(snap.sections.get('one')!.buffer, file.buffer);
  const shared = new Uint8Array(new SharedArrayBuffer(file.length));
  shared.set(file);
  assert.deepEqual(decodeSnapshot(shared).meta, META);
});

test('crafted positive control decodes', () => {
  const snap = decodeSnapshot(craft(validHeader(), craftedBody()));
  assert.deepEqual(snap.sections.get('a'), A);
  assert.deepEqual(snap.sections.get('b'), B);
});

test('wrong magic is a FormatError (also for short and empty input)', () => {
  const file = sample();
  for (let i = 0; i < 8; i++) {
    const bad = file.slice();
    bad[i]! ^= 0x20;
    throwsExactly(() => decodeSnapshot(bad), FormatError, /magic/);
  }
  throwsExactly(() => decodeSnapshot(new TextEncoder().encode('GGUF\x03\x00\x00\x00')), FormatError, /KVCSNAP/);
  throwsExactly(() => decodeSnapshot(new Uint8Array(0)), FormatError, /truncated/);
  throwsExactly(() => decodeSnapshot(file.slice(0, 5)), FormatError, /truncated/);
  throwsExactly(() => decodeSnapshot(new Uint8Array([0x00, 0x01])), FormatError, /magic/);
  throwsExactly(() => decodeSnapshot('KVCSNAP' as unknown as Uint8Array), FormatError, /Uint8Array/);
});

test('unknown version is a VersionError', () => {
  for (const v of [0, 2, 0xffffffff]) {
    const bad = sample();
    new DataView(bad.buffer).setUint32(8, v, true);
    throwsExactly(() => decodeSnapshot(bad), VersionError, new RegExp(`expected 1, given ${v}`));
  }
  throwsExactly(() => decodeSnapshot(craft(validHeader(), craftedBody(), 2)), VersionError);
});

test('header and section checksum mismatches are ChecksumErrors', () => {
  const file = sample();
  const snap = decodeSnapshot(file);
  const inHeader = file.slice();
  inHeader[20 + 5]! ^= 0x01;
  throwsExactly(() => decodeSnapshot(inHeader), ChecksumError, /header CRC-32/);
  const inCrcField = file.slice();
  inCrcField[17]! ^= 0x80;
  throwsExactly(() => decodeSnapshot(inCrcField), ChecksumError, /header CRC-32/);
  for (const e of snap.entries) {
    if (e.sizeBytes === 0) continue;
    const bad = file.slice();
    bad[e.offsetBytes + e.sizeBytes - 1]! ^= 0x40;
    throwsExactly(() => decodeSnapshot(bad), ChecksumError, new RegExp(`section "${e.name}" CRC-32`));
  }
  const wrongCrc = validHeader();
  wrongCrc.sections[1]!.crc32 = hex(crc32(B) ^ 1);
  throwsExactly(() => decodeSnapshot(craft(wrongCrc, craftedBody())), ChecksumError, /section "b"/);
});

test('every truncation and any trailing byte is a FormatError', () => {
  const file = sample();
  for (let n = 0; n < file.length; n++) throwsExactly(() => decodeSnapshot(file.subarray(0, n)), FormatError);
  for (const extra of [[0], [1], [0, 0, 0, 0]]) {
    const longer = new Uint8Array(file.length + extra.length);
    longer.set(file);
    longer.set(extra, file.length);
    throwsExactly(() => decodeSnapshot(longer), FormatError, /trailing/);
  }
});

test('non-zero padding is a FormatError', () => {
  const file = sample();
  const snap = decodeSnapshot(file);
  const e = snap.entries[1]!; // "one": 1 byte, followed by 63 padding bytes
  const bad = file.slice();
  bad[e.offsetBytes + 1]! = 1;
  throwsExactly(() => decodeSnapshot(bad), FormatError, /padding/);
  const afterHeader = file.slice();
  afterHeader[20 + snap.headerSizeBytes]! = 0xff; // assumes the header does not end on a boundary
  assert.notEqual((20 + snap.headerSizeBytes) % 64, 0);
  throwsExactly(() => decodeSnapshot(afterHeader), FormatError, /padding/);
});

test('header length past the end or beyond the cap is a FormatError', () => {
  for (const h of [0xffffffff, 1 << 20, 10_000]) {
    const bad = sample();
    new DataView(bad.buffer).setUint32(12, h, true);
    throwsExactly(() => decodeSnapshot(bad), FormatError, /header/);
  }
});

test('malformed header JSON is a FormatError (with a valid header CRC)', () => {
  const body = craftedBody();
  const cases: [string, unknown][] = [
    ['not JSON', '{"kind": "k", '],
    ['an array', '[1, 2]'],
    ['a string', '"hello"'],
    ['missing fileSizeBytes', { kind: 'k', meta: {}, sections: [] }],
    ['extra field', { ...validHeader(), extra: 1 }],
    ['kind a number', { ...validHeader(), kind: 3 }],
    ['kind empty', { ...validHeader(), kind: '' }],
    ['meta an array', { ...validHeader(), meta: [] }],
    ['meta null', { ...validHeader(), meta: null }],
    ['sections an object', { ...validHeader(), sections: {} }],
    ['fileSizeBytes a string', { ...validHeader(), fileSizeBytes: '650' }],
    ['fileSizeBytes fractional', { ...validHeader(), fileSizeBytes: 650.5 }],
    ['fileSizeBytes too large', { ...validHeader(), fileSizeBytes: 651 }],
    ['fileSizeBytes too small', { ...validHeader(), fileSizeBytes: 649 }],
  ];
  const section = (i: number, patch: Record<string, unknown>): unknown => {
    const h = validHeader();
    h.sections[i] = { ...h.sections[i], ...patch };
    return h;
  };
  const without = (key: string): unknown => {
    const h = validHeader();
    delete h.sections[0]![key];
    return h;
  };
  cases.push(
    ['section not an object', { ...validHeader(), sections: [1] }],
    ['section without crc32', without('crc32')],
    ['section without name', without('name')],
    ['section with extra field', section(0, { extra: true })],
    ['crc32 uppercase', section(0, { crc32: hex(crc32(A)).toUpperCase().replace(/^(.)/, 'A') })],
    ['crc32 a number', section(0, { crc32: crc32(A) })],
    ['crc32 too short', section(0, { crc32: 'abc' })],
    ['name empty', section(0, { name: '' })],
    ['name a number', section(0, { name: 7 })],
    ['duplicate names', section(1, { name: 'a' })],
    ['offset unaligned', section(1, { offsetBytes: 620 })],
    ['offset past the next boundary', section(1, { offsetBytes: 704 })],
    ['overlapping sections', section(1, { offsetBytes: 576 })],
    ['out of order', section(1, { offsetBytes: 0 })],
    ['size negative', section(1, { sizeBytes: -10 })],
    ['size fractional', section(1, { sizeBytes: 9.5 })],
    ['size past the end', section(1, { sizeBytes: 11 })],
    ['offset a string', section(0, { offsetBytes: '512' })],
  );
  for (const [why, header] of cases) {
    assert.throws(
      () => decodeSnapshot(craft(header, body)),
      (e: unknown) => e instanceof FormatError && e.constructor === FormatError,
      why,
    );
  }
  // Invalid UTF-8 inside a JSON string.
  const utf8 = craft('{"kind": "k\xff", "meta": {}, "sections": [], "fileSizeBytes": 512}');
  const at = utf8.indexOf(0xc3); // TextEncoder wrote U+00FF as c3 bf; make it a lone continuation byte
  utf8[at] = 0xbf;
  new DataView(utf8.buffer).setUint32(16, crc32(utf8.subarray(20, 512)), true);
  throwsExactly(() => decodeSnapshot(utf8), FormatError, /UTF-8 JSON/);
});

test('an unexpected kind is a FormatError', () => {
  throwsExactly(() => decodeSnapshot(sample(), 'other.kind'), FormatError, /kind: expected other.kind, given test.kind/);
});

test('encode rejects bad input with typed errors', () => {
  throwsExactly(() => encodeSnapshot('', {}, []), ConfigError);
  throwsExactly(() => encodeSnapshot('k', [] as unknown as Record<string, unknown>, []), ConfigError);
  throwsExactly(() => encodeSnapshot('k', { x: undefined }, []), ConfigError);
  throwsExactly(() => encodeSnapshot('k', { x: NaN }, []), ConfigError);
  throwsExactly(() => encodeSnapshot('k', { x: new Date(0) }, []), ConfigError);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  throwsExactly(() => encodeSnapshot('k', cyclic, []), ConfigError);
  const twice = [
    { name: 'a', bytes: new Uint8Array(1) },
    { name: 'a', bytes: new Uint8Array(1) },
  ];
  throwsExactly(() => encodeSnapshot('k', {}, twice), ConfigError, /unique/);
  const short: SnapshotSectionInput = { name: 's', sizeBytes: 10, chunks: () => [new Uint8Array(9)] };
  throwsExactly(() => encodeSnapshot('k', {}, [short]), ShapeError);
  const long: SnapshotSectionInput = { name: 's', sizeBytes: 10, chunks: () => [new Uint8Array(6), new Uint8Array(6)] };
  throwsExactly(() => encodeSnapshot('k', {}, [long]), ShapeError);
});

// ------------------------------------------------------------------ files

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'kvcache-snapshot-'));
}

test('writeSnapshotFile streams the same bytes encodeSnapshot makes; no temp file remains', () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'a.kvsnap');
    writeSnapshotFile(path, 'test.kind', META, SECTIONS);
    assert.deepEqual(readdirSync(dir), ['a.kvsnap']);
    assert.deepEqual(new Uint8Array(readFileSync(path)), sample());
    const snap = readSnapshotFile(path, 'test.kind');
    assert.deepEqual(snap.meta, META);
    assert.deepEqual(snap.sections.get('sixty-five'), SECTIONS[4]!.bytes);
    writeFileAtomic(path, new Uint8Array([1, 2, 3])); // replaces
    assert.deepEqual(new Uint8Array(readFileSync(path)), new Uint8Array([1, 2, 3]));
    assert.deepEqual(readdirSync(dir), ['a.kvsnap']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing write leaves the existing file untouched and no temp file', () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'keep.kvsnap');
    writeSnapshotFile(path, 'test.kind', META, SECTIONS);
    const before = readFileSync(path);
    const boom: SnapshotSectionInput = {
      name: 'boom',
      sizeBytes: 100,
      chunks: function* () {
        yield new Uint8Array(50);
        throw new Error('producer failed');
      },
    };
    assert.throws(() => writeSnapshotFile(path, 'k', {}, [SECTIONS[2]!, boom]), /producer failed/);
    const short: SnapshotSectionInput = { name: 's', sizeBytes: 10, chunks: () => [new Uint8Array(3)] };
    assert.throws(() => writeSnapshotFile(path, 'k', {}, [short]), ShapeError);
    assert.deepEqual(readFileSync(path), before);
    assert.deepEqual(readdirSync(dir), ['keep.kvsnap']);
    // Rename onto a directory fails after the temp file is complete: it must still be removed.
    const asDir = join(dir, 'is-a-dir');
    mkdirSync(asDir);
    assert.throws(() => writeFileAtomic(asDir, new Uint8Array(10)), (e: NodeJS.ErrnoException) => typeof e.code === 'string');
    assert.deepEqual(readdirSync(dir).sort(), ['is-a-dir', 'keep.kvsnap']);
    assert.deepEqual(readdirSync(asDir), []);
    // A missing directory: nothing is created anywhere.
    assert.throws(() => writeFileAtomic(join(dir, 'missing', 'x'), new Uint8Array(1)), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    assert.deepEqual(readdirSync(dir).sort(), ['is-a-dir', 'keep.kvsnap']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a target directory that is not writable: EACCES, old file kept, no temp file', () => {
  const dir = tempDir();
  const locked = join(dir, 'locked');
  mkdirSync(locked);
  writeFileSync(join(locked, 'old'), 'old');
  chmodSync(dir, 0o755);
  chmodSync(locked, 0o555);
  const target = join(locked, 'old');
  try {
    let code: string | undefined;
    if (process.getuid?.() === 0) {
      // Root ignores directory permissions: try the write as user "nobody" in a child process.
      // "nobody" may not be able to read this checkout (a 0700 temp clone): run a copy of the
      // compiled sources from a world-readable folder.
      const srcCopy = join(dir, 'src');
      cpSync(fileURLToPath(new URL('../src', import.meta.url)), srcCopy, { recursive: true });
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
      const moduleUrl = pathToFileURL(join(srcCopy, 'io', 'snapshot-file.js')).href;
      const script = `const m = await import(${JSON.stringify(moduleUrl)}); try { m.writeFileAtomic(${JSON.stringify(target)}, new Uint8Array(4)); console.log('written'); } catch (e) { console.log(e.code); }`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      code = r.stdout.trim();
    } else {
      try {
        writeFileAtomic(target, new Uint8Array(4));
      } catch (e) {
        code = (e as NodeJS.ErrnoException).code;
      }
    }
    assert.equal(code, 'EACCES');
    assert.equal(readFileSync(target, 'utf8'), 'old');
    assert.deepEqual(readdirSync(locked), ['old']);
  } finally {
    chmodSync(locked, 0o755);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inspectFile reports header, meta, sections and sizes; rejects unknown magics and corruption', () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'a.kvsnap');
    writeSnapshotFile(path, 'test.kind', META, SECTIONS);
    const report = inspectFile(path);
    const snap = readSnapshotFile(path);
    assert.match(report, /version 1/);
    assert.match(report, /kind: +test\.kind/);
    assert.match(report, new RegExp(`size: +${snap.fileSizeBytes} B`));
    assert.match(report, /"model": "tiny"/);
    assert.match(report, /"dims": \[1,2,3\]/);
    for (const e of snap.entries) {
      assert.match(report, new RegExp(`${e.name} +${e.offsetBytes} +${e.sizeBytes} +0x${hex(e.crc32)}`));
    }
    const other = join(dir, 'x.bin');
    writeFileSync(other, 'PK\x03\x04\x14\x00\x00\x00');
    throwsExactly(() => inspectFile(other), FormatError, /KVCSNAP.*GGUF.*given 50 4b 03 04/);
    writeFileSync(other, 'GGUF\x03\x00\x00\x00');
    throwsExactly(() => inspectFile(other), FormatError, /truncated header/);
    writeFileSync(other, '');
    throwsExactly(() => inspectFile(other), FormatError, /empty file/);
    const corrupt = sample();
    corrupt[corrupt.length - 1]! ^= 1;
    writeFileSync(other, corrupt);
    throwsExactly(() => inspectFile(other), ChecksumError);
    assert.ok(!existsSync(join(dir, 'missing')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
