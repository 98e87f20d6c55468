/**
 * Save one sequence of a paged cache and load it back as a new sequence (llama.cpp's
 * per-sequence state: llama_state_seq_save_file / load_file).
 *
 *   kind "kvcache.paged-sequence"
 *   meta {formatVersion: 1, fingerprint, kDtype, vDtype, nLayers, nKvHeads, headDim, blockLen,
 *         namespace (the sequence's), nTokens, nRuns, hasTokenIds}
 *   sections:
 *     "runs"          [nRuns][2] u32 LE (pos0, nTokens): maximal runs of consecutive positions,
 *                     ascending, gaps between them (after seqRemove) kept
 *     "tokens"        [nTokens] u32 LE token ids; only with hasTokenIds (then one run at pos 0)
 *     "layer.<l>.k"   [nTokens][nKvHeads][rowBytes(kDtype)] raw K rows in position order
 *     "layer.<l>.v"   [nTokens][nKvHeads][rowBytes(vDtype)] raw V rows
 *
 * NOTE(1): Rows are the stored bytes (no re-quantization): a round trip is bit-exact. The file
 *   says nothing about blocks or slots: load packs the tokens into ceil(nTokens / blockLen) new
 *   blocks in order (a hole left by seqRemove inside a block is not kept; positions are).
 * NOTE(2): Token ids are saved when the sequence is pristine (sequence.ts NOTE(4)): the loaded
 *   sequence is pristine too, its full blocks are hashed and indexed (a later seqAdd of the same
 *   prompt hits them) and appends keep extending its chain. Otherwise the ids are not known for
 *   every position and the loaded sequence is not pristine.
 * NOTE(3): Validation as for the prefix cache (paged-snapshot.ts NOTE(3)), all before the pool
 *   changes. A pool that cannot supply the blocks is capacity, a value (DESIGN decision 6):
 *   loadSequence returns null and nothing changed. Allocation may evict cached-free blocks, as
 *   reserve does.
 * NOTE(4): A sequence with an open reservation cannot be saved (StateError): its reserved rows
 *   are not all written yet.
 */
import { FormatError } from '../../core/errors.js';
import { decodeSnapshot, encodeSnapshot, type DecodedSnapshot, type SnapshotSectionInput } from '../../io/snapshot.js';
import { readSnapshotFile, writeSnapshotFile } from '../../io/snapshot-file.js';
import { MAX_PAGED_POSITION, type PagedKVCache } from './paged-cache.js';
import { checkCacheLive, checkIdentity, coalesce, identityMeta, layerSectionName, metaInt, parseIdentityMeta, type PagedIdentityMeta } from './paged-snapshot-meta.js';
import type { Sequence } from './sequence.js';

export const PAGED_SEQUENCE_SNAPSHOT_KIND = 'kvcache.paged-sequence';
const WHAT = 'paged sequence snapshot';

export interface SequenceSnapshotMeta extends PagedIdentityMeta {
  nTokens: number;
  nRuns: number;
  hasTokenIds: boolean;
}

/** [nRuns][2] (pos0, n): the sequence's storage runs merged where positions continue. */
function positionRuns(s: Sequence): Uint32Array {
  const out: number[] = [];
  for (let r = 0; r < s.nRuns; r++) {
    const p = s.runPos[r]!;
    const n = s.runLen[r]!;
    const last = out.length - 2;
    if (last >= 0 && out[last]! + out[last + 1]! === p) out[last + 1]! += n;
    else out.push(p, n);
  }
  return Uint32Array.from(out);
}

function u32Bytes(a: Uint32Array): Uint8Array {
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) dv.setUint32(4 * i, a[i]!, true);
  return out;
}

/** One row per (token, head), in position order: views into the arena. */
function* rowPieces(cache: PagedKVCache, s: Sequence, layer: number, which: 'k' | 'v'): Generator<Uint8Array> {
  const H = cache.nKvHeads;
  const R = which === 'k' ? cache.storage.kRowBytes : cache.storage.vRowBytes;
  for (let r = 0; r < s.nRuns; r++) {
    const heads: Uint8Array[] = [];
    for (let h = 0; h < H; h++) heads.push(cache.storage.rowsView(layer, which, s.runBlock[r]!, h, s.runSlot[r]!, s.runLen[r]!));
    for (let t = 0; t < s.runLen[r]!; t++) for (let h = 0; h < H; h++) yield heads[h]!.subarray(t * R, (t + 1) * R);
  }
}

/** The meta and sections of a snapshot of sequence `seq` (rows stream from the arena). */
export function sequenceSnapshotParts(cache: PagedKVCache, seq: number): { meta: SequenceSnapshotMeta; sections: SnapshotSectionInput[] } {
  checkCacheLive(cache);
  const s = cache.sequenceState(seq);
  const runs = positionRuns(s);
  const hasTokenIds = s.chainOk;
  const meta: SequenceSnapshotMeta = {
    ...identityMeta(cache, s.hasher.context.namespace),
    nTokens: s.nTokens, nRuns: runs.length / 2, hasTokenIds,
  };
  const sections: SnapshotSectionInput[] = [{ name: 'runs', bytes: u32Bytes(runs) }];
  if (hasTokenIds) sections.push({ name: 'tokens', bytes: u32Bytes(s.tokenIds.subarray(0, s.nTokens)) });
  const H = cache.nKvHeads;
  for (let l = 0; l < cache.nLayers; l++) {
    for (const which of ['k', 'v'] as const) {
      const R = which === 'k' ? cache.storage.kRowBytes : cache.storage.vRowBytes;
      sections.push({ name: layerSectionName(l, which), sizeBytes: s.nTokens * H * R, chunks: () => coalesce(rowPieces(cache, s, l, which)) });
    }
  }
  return { meta, sections };
}

/** Sequence `seq` as snapshot bytes in memory (browser-safe; files: saveSequence). */
export function encodeSequence(cache: PagedKVCache, seq: number): Uint8Array {
  const { meta, sections } = sequenceSnapshotParts(cache, seq);
  return encodeSnapshot(PAGED_SEQUENCE_SNAPSHOT_KIND, { ...meta }, sections);
}

/** Save sequence `seq` to `path`, atomically and streaming (temp file, fsync, rename). */
export function saveSequence(cache: PagedKVCache, seq: number, path: string): void {
  const { meta, sections } = sequenceSnapshotParts(cache, seq);
  writeSnapshotFile(path, PAGED_SEQUENCE_SNAPSHOT_KIND, { ...meta }, sections);
}

/** Load sequence snapshot bytes as a new sequence: its id, or null when the pool is short (NOTE(3)). */
export function decodeSequence(cache: PagedKVCache, bytes: Uint8Array): number | null {
  return sequenceFromSnapshot(cache, decodeSnapshot(bytes, PAGED_SEQUENCE_SNAPSHOT_KIND));
}

/** Load a file written by saveSequence as a new sequence: its id, or null when the pool is short (NOTE(3)). */
export function loadSequence(cache: PagedKVCache, path: string): number | null {
  checkCacheLive(cache);
  return sequenceFromSnapshot(cache, readSnapshotFile(path, PAGED_SEQUENCE_SNAPSHOT_KIND));
}

function u32At(bytes: Uint8Array, i: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + 4 * i, 4).getUint32(0, true);
}

interface CheckedSequence {
  meta: SequenceSnapshotMeta;
  /** [nRuns][2] (pos0, n). */
  runs: Uint32Array;
  tokens: Uint32Array | null;
}

/** Meta, identity, sections and runs, all before the pool changes (NOTE(3)). */
function checkSequenceSnapshot(cache: PagedKVCache, snap: DecodedSnapshot): CheckedSequence {
  if (snap.kind !== PAGED_SEQUENCE_SNAPSHOT_KIND) throw new FormatError('snapshot kind', PAGED_SEQUENCE_SNAPSHOT_KIND, snap.kind);
  const id = parseIdentityMeta(WHAT, snap.meta, ['hasTokenIds', 'nRuns', 'nTokens']);
  const nTokens = metaInt(WHAT, snap.meta, 'nTokens', 0, MAX_PAGED_POSITION + 1);
  const nRuns = metaInt(WHAT, snap.meta, 'nRuns', 0, nTokens);
  const hasTokenIds = snap.meta.hasTokenIds;
  if (typeof hasTokenIds !== 'boolean') throw new FormatError(`${WHAT} meta.hasTokenIds`, 'a boolean', typeof hasTokenIds);
  checkIdentity(WHAT, id, cache);
  const rowBytes = { k: cache.storage.kRowBytes, v: cache.storage.vRowBytes };
  const want = new Map<string, number>([['runs', nRuns * 8]]);
  if (hasTokenIds) want.set('tokens', nTokens * 4);
  for (let l = 0; l < id.nLayers; l++) {
    for (const which of ['k', 'v'] as const) want.set(layerSectionName(l, which), nTokens * id.nKvHeads * rowBytes[which]);
  }
  if (snap.sections.size !== want.size) throw new FormatError(`${WHAT} sections`, `${want.size} (${[...want.keys()].join(', ')})`, snap.sections.size);
  for (const [name, size] of want) {
    const data = snap.sections.get(name);
    if (data === undefined) throw new FormatError(`${WHAT} sections`, `a section named "${name}"`, 'none');
    if (data.length !== size) throw new FormatError(`${WHAT} section "${name}" size (implied by the meta)`, size, data.length);
  }
  const rawRuns = snap.sections.get('runs')!;
  const runs = new Uint32Array(2 * nRuns);
  let end = 0; // one past the previous run's last position
  let total = 0;
  for (let r = 0; r < nRuns; r++) {
    const p = u32At(rawRuns, 2 * r);
    const n = u32At(rawRuns, 2 * r + 1);
    if (p < end || n < 1 || p + n - 1 > MAX_PAGED_POSITION) {
      throw new FormatError(`${WHAT} run ${r} (pos0, nTokens)`, `pos0 >= ${end}, nTokens >= 1, last position <= ${MAX_PAGED_POSITION}`, `(${p}, ${n})`);
    }
    runs[2 * r] = p;
    runs[2 * r + 1] = n;
    end = p + n;
    total += n;
  }
  if (total !== nTokens) throw new FormatError(`${WHAT} tokens in runs`, `meta.nTokens = ${nTokens}`, total);
  if (hasTokenIds && nRuns > 0 && (nRuns !== 1 || runs[0] !== 0)) {
    throw new FormatError(`${WHAT} runs of a sequence with token ids`, 'one run from position 0', `${nRuns} run(s) from position ${runs[0]}`);
  }
  let tokens: Uint32Array | null = null;
  if (hasTokenIds) {
    const raw = snap.sections.get('tokens')!;
    tokens = new Uint32Array(nTokens);
    for (let i = 0; i < nTokens; i++) tokens[i] = u32At(raw, i);
  }
  return { meta: { ...id, nTokens, nRuns, hasTokenIds }, runs, tokens };
}

/** A piece of the loaded layout: n tokens at slots [slot0, slot0 + n) of block, positions pos0... */
interface Piece {
  block: number;
  slot0: number;
  n: number;
  pos0: number;
}

/** Load a decoded sequence snapshot as a new sequence; null (nothing changed) when the pool is short. */
export function sequenceFromSnapshot(cache: PagedKVCache, snap: DecodedSnapshot): number | null {
  checkCacheLive(cache);
  const { meta, runs, tokens } = checkSequenceSnapshot(cache, snap);
  const L = cache.blockLen;
  const blocks: number[] = [];
  if (!cache.pool.allocateMany(Math.ceil(meta.nTokens / L), blocks)) return null;
  // Pack the tokens into the new blocks in order (NOTE(1)), cutting runs at block boundaries.
  const pieces: Piece[] = [];
  let t = 0;
  for (let r = 0; r < meta.nRuns; r++) {
    for (let done = 0, n = runs[2 * r + 1]!; done < n; ) {
      const slot0 = t % L;
      const m = Math.min(n - done, L - slot0);
      pieces.push({ block: blocks[Math.floor(t / L)]!, slot0, n: m, pos0: runs[2 * r]! + done });
      t += m;
      done += m;
    }
  }
  const H = cache.nKvHeads;
  for (let l = 0; l < cache.nLayers; l++) {
    for (const which of ['k', 'v'] as const) {
      const src = snap.sections.get(layerSectionName(l, which))!; // [nTokens][H][R]
      const R = which === 'k' ? cache.storage.kRowBytes : cache.storage.vRowBytes;
      let tok = 0;
      for (const p of pieces) {
        for (let h = 0; h < H; h++) {
          const dst = cache.storage.rowsView(l, which, p.block, h, p.slot0, p.n); // [n][R]
          for (let i = 0; i < p.n; i++) dst.set(src.subarray(((tok + i) * H + h) * R, ((tok + i) * H + h + 1) * R), i * R);
        }
        tok += p.n;
      }
    }
  }
  return cache.adoptSequence(meta.namespace, (s) => {
    for (const p of pieces) s.pushRun(p.block, p.slot0, p.n, p.pos0);
    s.mergeRuns();
    s.nTokens = meta.nTokens;
    s.chainOk = tokens !== null;
    if (tokens !== null) {
      s.putIds(0, tokens);
      s.nIds = meta.nTokens;
    }
  });
}
