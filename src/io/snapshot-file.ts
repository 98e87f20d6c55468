/**
 * Snapshot files on Node: an atomic, durable writer and a verifying reader.
 * The format itself (and all validation) is snapshot.ts; this file only moves bytes.
 *
 * NOTE(1): Atomic replace: write a temp file in the target's own directory (a rename is
 *   only atomic within one file system), fsync it, rename it over the target, then fsync
 *   the directory so the rename itself survives a crash. Readers see the old file or the
 *   whole new one, never a torn one. On any failure the temp file is removed and an
 *   existing target is left untouched.
 * NOTE(2): Streaming: sections are written one chunk at a time with positional writes, so
 *   a cache of hundreds of MB is never concatenated in memory. The header is known in
 *   length before the checksums (snapshot.ts NOTE(2)), so it is written last, at offset 0.
 * NOTE(3): Everything is synchronous: a cache cannot change between two of its sections
 *   while it is being saved, and failure cleanup is plain try/catch.
 * NOTE(4): File system failures (missing directory, permissions, disk full) surface as
 *   Node's own errors (with `code`); malformed contents surface as FormatError and
 *   subclasses from decodeSnapshot.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import {
  SNAPSHOT_ALIGN_BYTES,
  decodeSnapshot,
  forEachSectionChunk,
  planSnapshot,
  sectionSizeBytes,
  type DecodedSnapshot,
  type SnapshotSectionInput,
} from './snapshot.js';

/** Write all of `bytes` at `position` (writeSync may write less than asked). */
function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, bytes.length - done, position + done);
  }
}

/** fsync a directory so a rename in it is durable; some platforms cannot (Windows), which is not an error. */
function syncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    closeSync(fd);
  }
}

/**
 * Create or replace `path` atomically (NOTE(1)); `fill` writes the contents through `fd`.
 * If `fill` throws, the error propagates, the temp file is removed and `path` is untouched.
 */
export function writeFileAtomicWith(path: string, fill: (fd: number) => void): void {
  const target = resolve(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | null = openSync(tmp, 'wx', 0o644);
  try {
    fill(fd);
    fsyncSync(fd);
    const f = fd;
    fd = null;
    closeSync(f);
    renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // The original error is the one worth reporting.
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // Already gone or never fully created: nothing left to clean.
    }
    throw e;
  }
  syncDir(dir);
}

/** Create or replace `path` with `bytes` atomically (NOTE(1)). */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  writeFileAtomicWith(path, (fd) => writeAll(fd, bytes, 0));
}

/**
 * Write a snapshot file atomically, streaming each section (NOTE(2)). The bytes on disk
 * equal encodeSnapshot(kind, meta, sections).
 */
export function writeSnapshotFile(path: string, kind: string, meta: Record<string, unknown>, sections: readonly SnapshotSectionInput[]): void {
  const plan = planSnapshot(
    kind,
    meta,
    sections.map((s) => ({ name: s.name, sizeBytes: sectionSizeBytes(s) })),
  );
  const zeros = new Uint8Array(SNAPSHOT_ALIGN_BYTES);
  writeFileAtomicWith(path, (fd) => {
    // Placeholder for the prefix + header, overwritten once the section CRCs are known.
    writeAll(fd, new Uint8Array(plan.prefixSizeBytes), 0);
    let cursor = plan.prefixSizeBytes;
    const crcs = sections.map((s, i) => {
      const at = plan.offsets[i]!;
      writeAll(fd, zeros.subarray(0, at - cursor), cursor);
      const crc = forEachSectionChunk(s, (chunk, offsetInSection) => writeAll(fd, chunk, at + offsetInSection));
      cursor = at + plan.sizes[i]!;
      return crc;
    });
    writeAll(fd, plan.encodePrefix(crcs), 0);
  });
}

/**
 * Read and fully verify a snapshot file. The whole file is read into memory and the
 * returned sections are views into that one buffer.
 */
export function readSnapshotFile(path: string, expectedKind?: string): DecodedSnapshot {
  const buf = readFileSync(path);
  return decodeSnapshot(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), expectedKind);
}
