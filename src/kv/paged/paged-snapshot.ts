/**
 * Save a paged cache's prefix cache to a snapshot (io/snapshot.ts container) and restore it into
 * a cache of the same model after a restart, so the restored process gets prefix hits. One
 * sequence (llama.cpp's per-sequence state) is seq-snapshot.ts, re-exported here.
 *
 *   kind "kvcache.paged-prefix"
 *   meta {formatVersion: 1, fingerprint, kDtype, vDtype, nLayers, nKvHeads, headDim, blockLen,
 *         namespace (the saving cache's default; each block hash covers its own), nBlocks}
 *   sections:
 *     "blocks"        [nBlocks] records of 68 bytes: hash (32 bytes), parent hash (32 bytes; zeros
 *                     for a first block), u32 LE token count (= blockLen)
 *     "layer.<l>.k"   [nBlocks][nKvHeads][blockLen][rowBytes(kDtype)] the blocks' raw K bytes
 *     "layer.<l>.v"   [nBlocks][nKvHeads][blockLen][rowBytes(vDtype)] the blocks' raw V bytes
 *                     (l in [0, nLayers), K and V of a layer adjacent)
 *
 * NOTE(1): Every block in the prefix index is saved (in use or cached-free), as its stored bytes:
 *   no re-quantization, so a restored block is bit-identical and its hash still names it.
 * NOTE(2): File order is a depth-first pre-order of the forest the parent hashes form, parents
 *   before children; siblings (and roots) go most valuable first: a subtree in use, then by the
 *   most recent release in it (LRU), then by block id. A child whose parent is not indexed any
 *   more (evicted or edited) starts a tree of its own: it loads only where its parent is indexed.
 * NOTE(3): Load validates everything before the pool changes: container (FormatError,
 *   ChecksumError, VersionError from snapshot.ts), meta and sections (FormatError), identity
 *   (SnapshotMismatchError, paged-snapshot-meta.ts NOTE(1)).
 * NOTE(4): Load takes free blocks only, never evicting the cache's own cached blocks (they may be
 *   the parents it attaches to). It walks the file in chains: maximal runs of records each the
 *   child of the previous one (in pre-order, the new part of one root-to-leaf path). A chain
 *   loads whole or not at all: when its parent is neither the root nor indexed, or its new blocks
 *   do not fit in the free blocks left, it is skipped (and so are chains below it). So every
 *   loaded block's parent is indexed. Hashes already indexed are not loaded again ("present").
 * NOTE(5): Loaded blocks are cached-free (refcount 0, in the LRU), released in reverse load
 *   order: leaves older than parents, and the file's first (most valuable) chains newest.
 * NOTE(6): Saving streams each section from the arena through one reused 1 MiB buffer and writes
 *   atomically (snapshot-file.ts NOTE(1)); a failed save leaves the old file and no temp file.
 */
import { FormatError, assert } from '../../core/errors.js';
import { decodeSnapshot, encodeSnapshot, type DecodedSnapshot, type SnapshotSectionInput } from '../../io/snapshot.js';
import { readSnapshotFile, writeSnapshotFile } from '../../io/snapshot-file.js';
import { ROOT_PARENT_HASH, bytesToHex } from './block-hash.js';
import type { PagedKVCache } from './paged-cache.js';
import { checkCacheLive, checkIdentity, coalesce, identityMeta, layerSectionName, metaInt, parseIdentityMeta, type PagedIdentityMeta } from './paged-snapshot-meta.js';
import { releaseTailFirst } from './seq-edit.js';

export { PAGED_SNAPSHOT_FORMAT_VERSION, SnapshotMismatchError, type PagedIdentityMeta } from './paged-snapshot-meta.js';
export { PAGED_SEQUENCE_SNAPSHOT_KIND, decodeSequence, encodeSequence, loadSequence, saveSequence, sequenceFromSnapshot, type SequenceSnapshotMeta } from './seq-snapshot.js';

export const PAGED_PREFIX_SNAPSHOT_KIND = 'kvcache.paged-prefix';
/** Bytes of one "blocks" record: hash, parent hash, u32 token count. */
export const PREFIX_RECORD_BYTES = 68;
const WHAT = 'paged prefix snapshot';

export interface PrefixSnapshotMeta extends PagedIdentityMeta {
  /** Blocks in the file. */
  nBlocks: number;
}

/** What loadPrefixCache did with the file's blocks: blocks + skipped + present = the file's nBlocks. */
export interface LoadPrefixResult {
  /** Loaded: now cached-free blocks of the cache, indexed. */
  blocks: number;
  /** Not loaded: no room in the free blocks, or their parent is not indexed (NOTE(4)). */
  skipped: number;
  /** Not loaded because their hash was already indexed in the cache. */
  present: number;
}

/** One indexed block as saved: its address, its parent's, and its id in the saving cache. */
export interface PrefixBlockEntry {
  hash: string;
  parent: string;
  block: number;
}

interface TreeNode extends PrefixBlockEntry {
  /** Own value, then the subtree's best (NOTE(2)). */
  rank: number;
  children: TreeNode[];
}

/** The cache's indexed blocks in file order (NOTE(2)). */
export function prefixSaveOrder(cache: PagedKVCache): PrefixBlockEntry[] {
  checkCacheLive(cache);
  const { prefixIndex: index, pool } = cache;
  const lru = pool.lruOrder(); // oldest first
  const lruRank = new Map<number, number>();
  lru.forEach((b, i) => lruRank.set(b, i));
  const nodes = new Map<string, TreeNode>();
  for (const [hash, block] of index.entries()) {
    const parent = index.parentOf(block);
    if (parent === null) continue; // registered from outside without a parent: not chainable
    const rank = pool.refCount(block) > 0 ? lru.length : lruRank.get(block)!;
    nodes.set(hash, { hash, parent, block, rank, children: [] });
  }
  const roots: TreeNode[] = [];
  for (const n of nodes.values()) {
    const p = nodes.get(n.parent);
    if (p !== undefined) p.children.push(n);
    else roots.push(n);
  }
  // Subtree ranks: in breadth-first order children follow parents, so a reverse sweep sees them first.
  const bfs = roots.slice();
  for (let i = 0; i < bfs.length; i++) for (const c of bfs[i]!.children) bfs.push(c);
  for (let i = bfs.length - 1; i >= 0; i--) {
    const p = nodes.get(bfs[i]!.parent);
    if (p !== undefined && bfs[i]!.rank > p.rank) p.rank = bfs[i]!.rank;
  }
  const better = (a: TreeNode, b: TreeNode): number => b.rank - a.rank || a.block - b.block;
  const out: PrefixBlockEntry[] = [];
  const stack = roots.sort(better).reverse();
  while (stack.length > 0) {
    const n = stack.pop()!;
    out.push({ hash: n.hash, parent: n.parent, block: n.block });
    n.children.sort(better);
    for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]!);
  }
  assert(out.length === nodes.size, `prefix save order covers ${out.length} of ${nodes.size} indexed blocks`);
  return out;
}

function hexInto(hex: string, out: Uint8Array, at: number): void {
  for (let i = 0; i < 32; i++) out[at + i] = parseInt(hex.substr(2 * i, 2), 16);
}

/** The "blocks" section: [nBlocks] 68-byte records. */
function recordsOf(entries: readonly PrefixBlockEntry[], blockLen: number): Uint8Array {
  const out = new Uint8Array(entries.length * PREFIX_RECORD_BYTES);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const at = i * PREFIX_RECORD_BYTES;
    hexInto(e.hash, out, at);
    hexInto(e.parent, out, at + 32);
    dv.setUint32(at + 64, blockLen, true);
  });
  return out;
}

function* blockPieces(cache: PagedKVCache, entries: readonly PrefixBlockEntry[], layer: number, which: 'k' | 'v'): Generator<Uint8Array> {
  for (const e of entries) yield cache.storage.blockView(layer, which, e.block);
}

/** The meta and sections of a prefix snapshot of `cache` (sections stream from its storage). */
export function prefixSnapshotParts(cache: PagedKVCache): { meta: PrefixSnapshotMeta; sections: SnapshotSectionInput[] } {
  const entries = prefixSaveOrder(cache);
  const meta: PrefixSnapshotMeta = { ...identityMeta(cache, cache.config.namespace), nBlocks: entries.length };
  const st = cache.storage;
  const sections: SnapshotSectionInput[] = [{ name: 'blocks', bytes: recordsOf(entries, cache.blockLen) }];
  for (let l = 0; l < cache.nLayers; l++) {
    for (const which of ['k', 'v'] as const) {
      const blockBytes = which === 'k' ? st.kBlockBytes : st.vBlockBytes;
      sections.push({ name: layerSectionName(l, which), sizeBytes: entries.length * blockBytes, chunks: () => coalesce(blockPieces(cache, entries, l, which)) });
    }
  }
  return { meta, sections };
}

/** The prefix cache as snapshot bytes in memory (browser-safe; files: savePrefixCache). */
export function encodePrefixCache(cache: PagedKVCache): Uint8Array {
  const { meta, sections } = prefixSnapshotParts(cache);
  return encodeSnapshot(PAGED_PREFIX_SNAPSHOT_KIND, { ...meta }, sections);
}

/** Save every indexed block of `cache` to `path`, atomically and streaming (NOTE(1), NOTE(6)). */
export function savePrefixCache(cache: PagedKVCache, path: string): void {
  const { meta, sections } = prefixSnapshotParts(cache);
  writeSnapshotFile(path, PAGED_PREFIX_SNAPSHOT_KIND, { ...meta }, sections);
}

/** Load prefix snapshot bytes into `cache` (NOTE(3)..NOTE(5)). */
export function decodePrefixCache(cache: PagedKVCache, bytes: Uint8Array): LoadPrefixResult {
  return prefixFromSnapshot(cache, decodeSnapshot(bytes, PAGED_PREFIX_SNAPSHOT_KIND));
}

/** Load a file written by savePrefixCache into `cache`, which may hold sequences and cached blocks. */
export function loadPrefixCache(cache: PagedKVCache, path: string): LoadPrefixResult {
  checkCacheLive(cache);
  return prefixFromSnapshot(cache, readSnapshotFile(path, PAGED_PREFIX_SNAPSHOT_KIND));
}

interface Rec {
  hash: string;
  parent: string;
}

/** Meta, identity, sections and records, all before the pool changes (NOTE(3)). */
function checkPrefixSnapshot(cache: PagedKVCache, snap: DecodedSnapshot): Rec[] {
  if (snap.kind !== PAGED_PREFIX_SNAPSHOT_KIND) throw new FormatError('snapshot kind', PAGED_PREFIX_SNAPSHOT_KIND, snap.kind);
  const m = parseIdentityMeta(WHAT, snap.meta, ['nBlocks']);
  const nBlocks = metaInt(WHAT, snap.meta, 'nBlocks', 0, Number.MAX_SAFE_INTEGER);
  checkIdentity(WHAT, m, cache);
  const st = cache.storage;
  const want = new Map<string, number>([['blocks', nBlocks * PREFIX_RECORD_BYTES]]);
  for (let l = 0; l < m.nLayers; l++) {
    want.set(layerSectionName(l, 'k'), nBlocks * st.kBlockBytes);
    want.set(layerSectionName(l, 'v'), nBlocks * st.vBlockBytes);
  }
  if (snap.sections.size !== want.size) throw new FormatError(`${WHAT} sections`, `${want.size} ("blocks", K and V for ${m.nLayers} layers)`, snap.sections.size);
  for (const [name, size] of want) {
    const data = snap.sections.get(name);
    if (data === undefined) throw new FormatError(`${WHAT} sections`, `a section named "${name}"`, 'none');
    if (data.length !== size) throw new FormatError(`${WHAT} section "${name}" size (implied by nBlocks = ${nBlocks})`, size, data.length);
  }
  const raw = snap.sections.get('blocks')!;
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const recs: Rec[] = [];
  for (let i = 0; i < nBlocks; i++) {
    const at = i * PREFIX_RECORD_BYTES;
    const nTokens = dv.getUint32(at + 64, true);
    if (nTokens !== m.blockLen) throw new FormatError(`${WHAT} block ${i} token count (a full block)`, m.blockLen, nTokens);
    const hash = bytesToHex(raw.subarray(at, at + 32));
    if (hash === ROOT_PARENT_HASH) throw new FormatError(`${WHAT} block ${i} hash`, 'a block hash (not the all-zero root)', hash);
    recs.push({ hash, parent: bytesToHex(raw.subarray(at + 32, at + 64)) });
  }
  return recs;
}

/** Load a decoded prefix snapshot into `cache` (NOTE(3)..NOTE(5)). */
export function prefixFromSnapshot(cache: PagedKVCache, snap: DecodedSnapshot): LoadPrefixResult {
  checkCacheLive(cache);
  const recs = checkPrefixSnapshot(cache, snap);
  const { pool, prefixIndex: index, storage: st } = cache;
  const indexed = (h: string): boolean => h === ROOT_PARENT_HASH || index.lookup(h) !== 0;
  const loaded: number[] = []; // block ids in load order
  let skipped = 0;
  let present = 0;
  for (let c0 = 0; c0 < recs.length; ) {
    let c1 = c0 + 1;
    while (c1 < recs.length && recs[c1]!.parent === recs[c1 - 1]!.hash) c1++;
    let cost = 0;
    for (let i = c0; i < c1; i++) if (!indexed(recs[i]!.hash)) cost++;
    present += c1 - c0 - cost;
    if (!indexed(recs[c0]!.parent) || cost > pool.freeBlocks) {
      skipped += cost;
      c0 = c1;
      continue;
    }
    for (let i = c0; i < c1; i++) {
      const r = recs[i]!;
      if (indexed(r.hash)) continue;
      const free = pool.freeBlocks;
      const b = pool.allocate();
      assert(b !== null && pool.freeBlocks === free - 1, 'prefix load took a block that was not free');
      for (let l = 0; l < cache.nLayers; l++) {
        const kb = st.kBlockBytes;
        const vb = st.vBlockBytes;
        st.blockView(l, 'k', b).set(snap.sections.get(layerSectionName(l, 'k'))!.subarray(i * kb, (i + 1) * kb));
        st.blockView(l, 'v', b).set(snap.sections.get(layerSectionName(l, 'v'))!.subarray(i * vb, (i + 1) * vb));
      }
      const ok = index.register(r.hash, b, r.parent);
      assert(ok, `prefix load: hash ${r.hash} registered twice`);
      pool.setCached(b, true);
      loaded.push(b);
    }
    c0 = c1;
  }
  releaseTailFirst(pool, loaded); // NOTE(5)
  return { blocks: loaded.length, skipped, present };
}
