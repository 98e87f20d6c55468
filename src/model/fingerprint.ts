/**
 * A model fingerprint for the prefix cache's block hashes (DESIGN decision 7): cached K/V may
 * only be reused by the same weights in the same dtype, across processes and machines.
 *
 *   fingerprint = SHA-256( "kvcache/model/v1" | weights dtype | config.json bytes
 *                          | for each *.safetensors (sorted): name, size, first 1 MiB )
 *
 * NOTE(1): The first MiB of a safetensors file is its header (names, dtypes, shapes, offsets) and
 *   the start of its data: two checkpoints of one architecture with different weights differ
 *   there. Hashing whole multi-GB files at every start would cost seconds; the sample is a
 *   deliberate trade-off, documented here.
 */
import { closeSync, openSync, readFileSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../core/dtype.js';
import { sha256Hex } from '../kv/paged/block-hash.js';

const SAMPLE_BYTES = 1 << 20;

export function modelFingerprint(dir: string, weights: DType): string {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  parts.push(enc.encode(`kvcache/model/v1\0${weights}\0`), readFileSync(join(dir, 'config.json')));
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort()) {
    const path = join(dir, name);
    const size = statSync(path).size;
    const sample = new Uint8Array(Math.min(size, SAMPLE_BYTES));
    const fd = openSync(path, 'r');
    try {
      let done = 0;
      while (done < sample.length) {
        const n = readSync(fd, sample, done, sample.length - done, done);
        if (n === 0) break;
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    parts.push(enc.encode(`\0${name}\0${size}\0`), sample);
  }
  const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return sha256Hex(all);
}
