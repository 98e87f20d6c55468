/**
 * PagedKVCache: many sequences over one pool of fixed-size blocks (vLLM's PagedAttention memory
 * model), with copy-on-write forks, llama.cpp-style sequence editing and automatic prefix caching.
 *
 *   seqAdd(tokens) ─▶ longest cached prefix (PrefixIndex) ─▶ Sequence runs ─▶ view(layer, seq): KVView
 *   reserve(seq, n, ids) ─▶ blocks (BlockPool) ─▶ write(layer, seq, k, v) (BlockStorage) ─▶ commit(seq)
 *
 *   One forward step:  reserve -> for each layer { write; attention over view } -> commit.
 *
 * NOTE(1): Bookkeeping (BlockPool, PrefixIndex, Sequence) never touches bytes; BlockStorage owns
 *   them (DESIGN decision 2). A view is one KVSegment per run (sequence.ts NOTE(1)).
 * NOTE(2): Capacity is a value (DESIGN decision 6): reserve and seqShift return false when the pool
 *   cannot supply blocks, and then nothing changed. Bad input throws a typed KVCacheError.
 * NOTE(3): Copy-on-write is lazy: a fork shares every block, partial tail included; the first
 *   sequence to write into a shared block (reserve appending into it, or seqShift rotating it)
 *   copies it, and the other one then owns the original alone and writes in place.
 * NOTE(4): A reservation is visible at once: view() includes the reserved tokens, so a layer's
 *   attention sees the keys it just wrote (causal prefill). commit() requires every layer written,
 *   then hashes the blocks that filled (sequence.ts NOTE(4)). cancel() drops a reservation.
 *   Edits (seqRemove, seqShift, seqFork) of a sequence with an open reservation throw StateError.
 * NOTE(5): A view is rebuilt in place on every view(layer, seq) call (no allocation per token): it
 *   stays valid until the sequence changes or that (layer, seq) is viewed again.
 * NOTE(6): The prefix index names only blocks whose bytes match their hash. seqRemove changes no
 *   bytes, so indexed blocks stay indexed (released ones wait in the LRU); any byte edit (an append
 *   into a truncated block, a seqShift rotation) first copies a shared block or un-indexes an
 *   exclusively owned one (seq-edit.ts NOTE(1)). Evicting a block removes its index entry.
 */
import { defaultArena, type Arena } from '../../core/arena.js';
import type { DType } from '../../core/dtype.js';
import { ConfigError, DisposedError, OutOfRangeError, ShapeError, StateError, assert, checkIndex, checkInt } from '../../core/errors.js';
import type { KVView } from '../types.js';
import { BlockHasher, ROOT_PARENT_HASH, checkTokenIds } from './block-hash.js';
import { BlockPool } from './block-pool.js';
import { BlockStorage } from './block-storage.js';
import { resolvePagedConfig, type PagedKVCacheConfig, type ResolvedPagedConfig } from './paged-config.js';
import { PrefixIndex } from './prefix-index.js';
import { checkShift, makeWritable, releaseTailFirst, removeRange, shiftRange, shiftSpan, unregister, type PagedParts } from './seq-edit.js';
import { Sequence, type MutableView } from './sequence.js';

/** Largest key position (the WASM kernels compare positions as i32). */
export const MAX_PAGED_POSITION = 2 ** 31 - 2;

export interface SeqAddOptions {
  /** Most tokens a prefix hit may cover; default tokens.length - 1 (leave one to compute for logits). */
  maxHitTokens?: number;
  /** Namespace of this sequence's block hashes; default the cache's. */
  namespace?: string;
}

export interface SeqAddResult {
  seq: number;
  /** Leading tokens whose K/V came from the prefix cache (a multiple of blockLen). */
  cachedTokens: number;
}

/** Positions and decoded K/V of one (layer, sequence): see PagedKVCache.read. */
export interface PagedRows {
  positions: Int32Array; // [nTokens]
  k: Float32Array; // [nTokens, nKvHeads, headDim]
  v: Float32Array; // [nTokens, nKvHeads, headDim]
}

export class PagedKVCache {
  readonly config: ResolvedPagedConfig;
  readonly arena: Arena;
  readonly pool: BlockPool;
  readonly storage: BlockStorage;
  readonly prefixIndex: PrefixIndex;
  private readonly parts: PagedParts;
  private readonly seqs = new Map<number, Sequence>();
  private readonly hashers = new Map<string, BlockHasher>();
  private nextSeqId = 0;
  /** Block ids handed out by reserve: one array reused by every call (no allocation per step). */
  private allocScratch: number[] = [];
  private disposed = false;

  constructor(config: PagedKVCacheConfig) {
    this.config = resolvePagedConfig(config);
    this.arena = config.arena ?? defaultArena();
    const c = this.config;
    this.storage = new BlockStorage({ ...c, arena: this.arena });
    this.prefixIndex = new PrefixIndex(c.nBlocks);
    const index = this.prefixIndex;
    this.pool = new BlockPool({ nBlocks: c.nBlocks, onEvict: (b) => index.removeBlock(b) });
    this.parts = { pool: this.pool, storage: this.storage, index, blockLen: c.blockLen };
  }

  get nLayers(): number { return this.config.nLayers; }
  get nKvHeads(): number { return this.config.nKvHeads; }
  get headDim(): number { return this.config.headDim; }
  get kDtype(): DType { return this.config.kDtype; }
  get vDtype(): DType { return this.config.vDtype; }
  get blockLen(): number { return this.config.blockLen; }
  /** Blocks that can hold tokens (the null block excluded). */
  get totalBlocks(): number { return this.pool.totalBlocks; }
  /** Blocks neither used nor cached. */
  get freeBlocks(): number { return this.pool.freeBlocks; }
  /** Unused blocks kept for prefix hits (evicted LRU-first when needed). */
  get cachedBlocks(): number { return this.pool.cachedBlocks; }
  get usedBlocks(): number { return this.pool.usedBlocks; }
  /** free + cached: what reserve can take. */
  get availableBlocks(): number { return this.pool.availableBlocks; }
  /** Live sequence ids, ascending. */
  seqIds(): number[] { return [...this.seqs.keys()].sort((a, b) => a - b); }

  /**
   * A new sequence. With `tokens`, it starts from their longest cached prefix (full blocks only,
   * at most opts.maxHitTokens tokens): the caller then reserves and computes tokens[cachedTokens..].
   */
  seqAdd(tokens?: ArrayLike<number>, opts: SeqAddOptions = {}): SeqAddResult {
    this.checkLive();
    const s = new Sequence(this.nextSeqId, this.hasherFor(opts.namespace), this.config.nLayers);
    if (tokens !== undefined) {
      checkTokenIds('seqAdd tokens', tokens);
      const maxHit = checkInt('seqAdd maxHitTokens', opts.maxHitTokens ?? Math.max(0, tokens.length - 1), 0);
      const m = this.prefixIndex.match(s.hasher, tokens, maxHit);
      const L = this.config.blockLen;
      for (let j = 0; j < m.blocks.length; j++) {
        this.pool.acquireCached(m.blocks[j]!);
        s.pushRun(m.blocks[j]!, 0, L, j * L);
      }
      s.nTokens = m.blocks.length * L;
      s.chainHashes = m.hashes;
      s.putIds(0, tokens); // ids past nIds are scratch until reserved
      s.nIds = s.nTokens;
    }
    this.seqs.set(this.nextSeqId++, s);
    return { seq: s.id, cachedTokens: s.nTokens };
  }

  /** Cached prefix length seqAdd(tokens, opts) would get, without taking anything. */
  cachedPrefixTokens(tokens: ArrayLike<number>, opts: SeqAddOptions = {}): number {
    this.checkLive();
    checkTokenIds('cachedPrefixTokens tokens', tokens);
    const maxHit = checkInt('maxHitTokens', opts.maxHitTokens ?? Math.max(0, tokens.length - 1), 0);
    return this.prefixIndex.match(this.hasherFor(opts.namespace), tokens, maxHit).blocks.length * this.config.blockLen;
  }

  /**
   * Room for the next n positions of `seq` (positions nextPos .. nextPos + n - 1), with their
   * token ids when known (they make full blocks hashable). Copies a shared partial tail first
   * (NOTE(3)). Returns false, changing nothing, when the pool cannot supply the blocks.
   */
  reserve(seq: number, nTokens: number, tokenIds?: ArrayLike<number>): boolean {
    const s = this.seq(seq);
    checkInt('reserve nTokens', nTokens, 1);
    if (s.pendingN > 0) throw new StateError(`reserve on sequence ${seq}`, 'no open reservation (commit or cancel it first)', `${s.pendingN} reserved tokens`);
    if (tokenIds !== undefined) {
      if (tokenIds.length !== nTokens) throw new ShapeError('reserve tokenIds length (nTokens)', nTokens, tokenIds.length);
      checkTokenIds('reserve tokenIds', tokenIds);
    }
    const pos0 = s.nextPos;
    if (pos0 + nTokens - 1 > MAX_PAGED_POSITION) throw new OutOfRangeError(`reserve of ${nTokens} tokens at position ${pos0}`, `last position <= ${MAX_PAGED_POSITION}`, pos0 + nTokens - 1);
    const L = this.config.blockLen;
    const last = s.nRuns - 1;
    const tail = last >= 0 ? s.runBlock[last]! : 0;
    const tailEnd = last >= 0 ? s.runSlot[last]! + s.runLen[last]! : L;
    const inTail = Math.min(L - tailEnd, nTokens);
    const copyTail = inTail > 0 && this.pool.refCount(tail) > 1;
    const nNew = Math.ceil((nTokens - inTail) / L) + (copyTail ? 1 : 0);
    const got = this.allocScratch;
    if (!this.pool.allocateMany(nNew, got)) return false;
    let next = 0;
    if (inTail > 0) {
      makeWritable(this.parts, s, tail, copyTail ? got[next++]! : 0);
      s.runLen[last] = s.runLen[last]! + inTail;
    }
    s.pendingRun = inTail > 0 ? last : s.nRuns;
    s.pendingSlot = inTail > 0 ? tailEnd : 0;
    for (let pos = pos0 + inTail; pos < pos0 + nTokens; pos += L) s.pushRun(got[next++]!, 0, Math.min(L, pos0 + nTokens - pos), pos);
    s.nTokens += nTokens;
    s.pendingN = nTokens;
    s.pendingPos0 = pos0;
    s.pendingWritten.fill(0);
    s.pendingHasIds = tokenIds !== undefined && s.chainOk;
    if (s.pendingHasIds) s.putIds(pos0, tokenIds!);
    return true;
  }

  /** Write the reserved tokens' K and V of one layer: k, v are [nTokens, nKvHeads, headDim] f32. */
  write(layer: number, seq: number, k: Float32Array, v: Float32Array): void {
    const s = this.seq(seq);
    checkIndex('layer', layer, this.config.nLayers);
    if (s.pendingN === 0) throw new StateError(`write to sequence ${seq}`, 'reserved tokens (call reserve first)', 'no open reservation');
    const n = s.pendingN * this.config.nKvHeads * this.config.headDim;
    if (!(k instanceof Float32Array) || !(v instanceof Float32Array) || k.length !== n || v.length !== n) this.badRows(s, k, v);
    let t = 0;
    for (let r = s.pendingRun; r < s.nRuns; r++) {
      const slot0 = r === s.pendingRun ? s.pendingSlot : s.runSlot[r]!;
      const m = s.runSlot[r]! + s.runLen[r]! - slot0;
      this.storage.writeRows(layer, s.runBlock[r]!, slot0, m, k, v, t);
      t += m;
    }
    assert(t === s.pendingN, `sequence ${seq}: reservation covers ${t} slots, expected ${s.pendingN}`);
    s.pendingWritten[layer] = 1;
  }

  /** The reserved tokens join the sequence; blocks that filled are hashed and indexed (NOTE(4)). */
  commit(seq: number): void {
    const s = this.seq(seq);
    if (s.pendingN === 0) return;
    const missing = s.pendingWritten.indexOf(0);
    if (missing >= 0) throw new StateError(`commit of sequence ${seq}`, 'every layer written since reserve', `layer ${missing} not written`);
    if (s.chainOk && !s.pendingHasIds) s.chainOk = false;
    if (s.chainOk) {
      s.nIds = s.nTokens;
      this.hashFullBlocks(s);
    }
    s.pendingN = 0;
  }

  /** Drop an open reservation (its new blocks go back to the pool). No-op when none is open. */
  cancel(seq: number): void {
    const s = this.seq(seq);
    if (s.pendingN === 0) return;
    s.pendingN = 0;
    // A tail truncation: the chain (if intact) stays intact, the reservation's new blocks go back.
    removeRange(this.parts, s, s.pendingPos0, Infinity);
  }

  /** The attention view of (layer, seq): one segment per run, in position order (NOTE(5)). */
  view(layer: number, seq: number): KVView {
    const s = this.seq(seq);
    checkIndex('layer', layer, this.config.nLayers);
    const st = this.storage;
    let v = s.views[layer];
    if (!v) {
      v = {
        bytes: this.arena.bytes, kDtype: this.config.kDtype, vDtype: this.config.vDtype,
        nKvHeads: this.config.nKvHeads, headDim: this.config.headDim,
        kTokenStrideBytes: st.kTokenStrideBytes, kHeadStrideBytes: st.kHeadStrideBytes,
        vTokenStrideBytes: st.vTokenStrideBytes, vHeadStrideBytes: st.vHeadStrideBytes,
        segments: [], nTokens: 0,
      };
      s.views[layer] = v;
    }
    const segs = s.segmentsFor(v, s.nRuns);
    for (let r = 0; r < s.nRuns; r++) {
      const seg = segs[r]!;
      seg.kOffsetBytes = st.kOffset(layer, s.runBlock[r]!, s.runSlot[r]!);
      seg.vOffsetBytes = st.vOffset(layer, s.runBlock[r]!, s.runSlot[r]!);
      seg.nTokens = s.runLen[r]!;
      seg.pos0 = s.runPos[r]!;
    }
    v.bytes = this.arena.bytes;
    v.nTokens = s.nTokens;
    return v;
  }

  /** Positions and K/V of (layer, seq) decoded to f32, in position order (a copy). */
  read(layer: number, seq: number): PagedRows {
    const s = this.seq(seq);
    checkIndex('layer', layer, this.config.nLayers);
    const tokenFloats = this.config.nKvHeads * this.config.headDim;
    const out: PagedRows = {
      positions: new Int32Array(s.nTokens),
      k: new Float32Array(s.nTokens * tokenFloats),
      v: new Float32Array(s.nTokens * tokenFloats),
    };
    let t = 0;
    for (let r = 0; r < s.nRuns; r++) {
      const n = s.runLen[r]!;
      this.storage.readRows(layer, s.runBlock[r]!, s.runSlot[r]!, n, out.k, out.v, t);
      for (let i = 0; i < n; i++) out.positions[t + i] = s.runPos[r]! + i;
      t += n;
    }
    return out;
  }

  /** Tokens of seq (an open reservation included). */
  seqLen(seq: number): number {
    return this.seq(seq).nTokens;
  }

  /** Position the next reserved token gets (last position + 1; 0 when empty). */
  nextPos(seq: number): number {
    return this.seq(seq).nextPos;
  }

  /** Distinct block ids of seq in storage order (a copy). */
  blockTable(seq: number): Int32Array {
    return this.seq(seq).blockTable();
  }

  /** Remove positions [p0, p1) of seq (p1 = Infinity: to the end). Later positions keep their values. */
  seqRemove(seq: number, p0 = 0, p1 = Infinity): void {
    const s = this.seq(seq);
    this.checkRange('seqRemove', p0, p1);
    this.checkNoReservation(s, 'seqRemove');
    removeRange(this.parts, s, p0, p1);
  }

  /**
   * Move positions [p0, p1) of seq by delta, re-rotating their keys with the cache's RoPE. The
   * shifted tokens may not cross other tokens nor go below 0 (OutOfRangeError). Returns false,
   * changing nothing, when shared blocks cannot be copied for lack of blocks.
   */
  seqShift(seq: number, p0: number, p1: number, delta: number): boolean {
    const s = this.seq(seq);
    this.checkRange('seqShift', p0, p1);
    if (typeof delta !== 'number' || !Number.isInteger(delta)) throw new ConfigError('seqShift delta', 'an integer', delta);
    this.checkNoReservation(s, 'seqShift');
    const rope = this.config.rope;
    if (rope === null) throw new ConfigError('seqShift: the cache config rope', 'rope parameters (keys must be re-rotated)', 'none');
    const span = shiftSpan(s, p0, p1);
    if (delta === 0 || span.lo > span.hi) return true;
    checkShift(span, delta, MAX_PAGED_POSITION);
    return shiftRange(this.parts, s, p0, p1, delta, rope, span);
  }

  /** A new sequence sharing all of seq's blocks (copy-on-write, NOTE(3)); never needs a block. */
  seqFork(seq: number): number {
    const s = this.seq(seq);
    this.checkNoReservation(s, 'seqFork');
    const f = s.cloneAs(this.nextSeqId++);
    const table = f.blockTable();
    for (let i = 0; i < table.length; i++) this.pool.retain(table[i]!);
    this.seqs.set(f.id, f);
    return f.id;
  }

  /** Free seq: its blocks are released tail first (cached ones stay for prefix hits). */
  seqFree(seq: number): void {
    const s = this.seq(seq);
    releaseTailFirst(this.pool, s.blockTable());
    this.seqs.delete(seq);
  }

  /** Free every sequence but seq. */
  seqKeep(seq: number): void {
    this.seq(seq);
    for (const id of this.seqIds()) if (id !== seq) this.seqFree(id);
  }

  /** Forget every cached block (cached-free blocks become free; used ones stay, unindexed). */
  clearPrefixCache(): void {
    this.checkLive();
    for (const [, b] of this.prefixIndex.entries()) unregister(this.parts, b);
  }

  get isDisposed(): boolean { return this.disposed; }

  /** Snapshot support (seq-snapshot.ts): a live sequence's bookkeeping, to read only; no open reservation. */
  sequenceState(seq: number): Sequence {
    const s = this.seq(seq);
    this.checkNoReservation(s, 'saving');
    return s;
  }

  /**
   * Snapshot support: a new sequence whose runs `fill` sets on blocks the caller allocated (one
   * pool reference per distinct block). With chainOk and tokenIds left set by fill (a pristine
   * chain), its full blocks are hashed and indexed as commit does. Returns the new id.
   */
  adoptSequence(namespace: string, fill: (s: Sequence) => void): number {
    this.checkLive();
    const s = new Sequence(this.nextSeqId, this.hasherFor(namespace), this.config.nLayers);
    fill(s);
    if (s.chainOk) this.hashFullBlocks(s);
    this.seqs.set(this.nextSeqId++, s);
    return s.id;
  }

  /** Frees the storage; every later call throws DisposedError. */
  dispose(): void {
    if (this.disposed) return;
    this.storage.dispose();
    this.seqs.clear();
    this.disposed = true;
  }

  /** The ShapeError for k / v of write() (kept off the hot path: the message is built only here). */
  private badRows(s: Sequence, k: unknown, v: unknown): never {
    const n = s.pendingN * this.config.nKvHeads * this.config.headDim;
    const shape = `[${s.pendingN}, ${this.config.nKvHeads}, ${this.config.headDim}] ([nTokens, nKvHeads, headDim])`;
    for (const [name, x] of [['k', k], ['v', v]] as const) {
      if (!(x instanceof Float32Array)) throw new ShapeError(name, `a Float32Array ${shape}`, x);
      if (x.length !== n) throw new ShapeError(`${name} length for ${shape}`, n, x.length);
    }
    throw new ShapeError('k, v', shape, 'unknown');
  }

  /** Hash and index the blocks that are full in the pristine prefix of s. */
  private hashFullBlocks(s: Sequence): void {
    const L = this.config.blockLen;
    for (let j = s.chainHashes.length; (j + 1) * L <= s.nTokens; j++) {
      assert(s.runSlot[j] === 0 && s.runLen[j] === L && s.runPos[j] === j * L, `sequence ${s.id}: run ${j} is not block ${j} of a pristine chain`);
      const parent = j === 0 ? ROOT_PARENT_HASH : s.chainHashes[j - 1]!;
      const h = s.hasher.hash(parent, s.tokenIds, j * L);
      const block = s.runBlock[j]!;
      if (this.prefixIndex.register(h, block, parent)) this.pool.setCached(block, true);
      s.chainHashes.push(h);
    }
  }

  private hasherFor(namespace: string | undefined): BlockHasher {
    const ns = namespace ?? this.config.namespace;
    if (typeof ns !== 'string') throw new ConfigError('namespace', 'a string', ns);
    let h = this.hashers.get(ns);
    if (!h) {
      const { fingerprint, kDtype, vDtype, blockLen } = this.config;
      h = new BlockHasher({ fingerprint, kDtype, vDtype, namespace: ns }, blockLen);
      this.hashers.set(ns, h);
    }
    return h;
  }

  private seq(seq: number): Sequence {
    this.checkLive();
    const s = this.seqs.get(seq);
    if (s === undefined) throw new OutOfRangeError('seq', `a live sequence id (${this.seqs.size} live)`, seq);
    return s;
  }

  private checkRange(what: string, p0: number, p1: number): void {
    if (typeof p0 !== 'number' || !Number.isInteger(p0) || p0 < 0) throw new OutOfRangeError(`${what} p0`, 'an integer >= 0', p0);
    if (typeof p1 !== 'number' || !(Number.isInteger(p1) || p1 === Infinity) || p1 < 0) throw new OutOfRangeError(`${what} p1`, 'an integer >= 0 or Infinity', p1);
    if (p0 > p1) throw new OutOfRangeError(`${what} range [p0, p1)`, `p0 <= p1 = ${p1}`, p0);
  }

  private checkNoReservation(s: Sequence, what: string): void {
    if (s.pendingN > 0) throw new StateError(`${what} of sequence ${s.id}`, 'no open reservation (commit or cancel it first)', `${s.pendingN} reserved tokens`);
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('paged KV cache', 'a live cache', 'a disposed cache');
  }
}
