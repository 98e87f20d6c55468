/**
 * BlockPool: the bookkeeping of a paged KV cache's blocks (ids, reference counts, free list,
 * LRU of cached blocks). It never touches K/V bytes (DESIGN decision 2): BlockStorage does.
 *
 *   block 0      the null block: never allocated, never freed (a block table's "no block")
 *   free         refcount 0, not cached                     -> on the free stack
 *   used         refcount > 0 (cached or not)               -> in some sequence's block table
 *   cached-free  refcount 0, registered in the prefix index -> on the LRU list (reusable on a hit)
 *
 *   LRU list (doubly linked through lruPrev / lruNext, slot 0 is the sentinel):
 *     0 <-> oldest (evicted first) <-> ... <-> newest <-> 0
 *
 * NOTE(1): Allocation takes from the free stack first and evicts the least recently released
 *   cached block only when the stack is empty, so cached prefixes live as long as memory allows.
 *   An eviction calls `onEvict(block)` so that the prefix index forgets the block's hash.
 * NOTE(2): Capacity is a value (DESIGN decision 6): `allocate()` returns null and `allocateMany`
 *   false when the pool cannot supply the blocks, and then nothing has changed.
 * NOTE(3): Every operation is O(1) over Int32Arrays: the hot path (a block per blockLen decoded
 *   tokens) does no Map or object work. Misuse (releasing a free block, caching a free block) is
 *   a bug in the caller and fails an assert.
 * NOTE(4): Release order is the caller's: a sequence releases its blocks tail first, so a
 *   prefix's leaves are older in the LRU than their parents and are evicted before them.
 * NOTE(5): The free stack starts as [nBlocks-1 .. 1] so blocks are handed out 1, 2, 3, ... and a
 *   freed block is the next one handed out (LIFO): deterministic ids that tests can assert.
 */
import { ConfigError, assert, checkInt } from '../../core/errors.js';

export interface BlockPoolConfig {
  /** Blocks in the pool, the null block 0 included (so nBlocks - 1 can be allocated); >= 2. */
  nBlocks: number;
  /** Called when a cached-free block is taken for a new owner (its content is about to be replaced). */
  onEvict?: (block: number) => void;
}

/** The null block: never allocated; stands for "no block". */
export const NULL_BLOCK = 0;

export class BlockPool {
  readonly nBlocks: number;
  /** [nBlocks] references from block tables. */
  private readonly refs: Int32Array;
  /** [nBlocks] 1 while the block is registered in the prefix index. */
  private readonly cached: Uint8Array;
  /** [nBlocks] the free stack; freeTop entries are valid. */
  private readonly freeStack: Int32Array;
  private freeTop: number;
  /** [nBlocks] LRU links; index 0 is the sentinel (block 0 is never on the list). */
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruLen = 0;
  private readonly onEvict: ((block: number) => void) | undefined;

  constructor(config: BlockPoolConfig) {
    if (typeof config !== 'object' || config === null) throw new ConfigError('block pool config', 'an object', config);
    this.nBlocks = checkInt('nBlocks (blocks in the pool, the null block included)', config.nBlocks, 2, 0x7fffffff);
    this.onEvict = config.onEvict;
    const n = this.nBlocks;
    this.refs = new Int32Array(n);
    this.cached = new Uint8Array(n);
    this.freeStack = new Int32Array(n);
    this.lruPrev = new Int32Array(n);
    this.lruNext = new Int32Array(n);
    this.freeTop = 0;
    for (let b = n - 1; b >= 1; b--) this.freeStack[this.freeTop++] = b;
  }

  /** Blocks that can ever be allocated (all but the null block). */
  get totalBlocks(): number {
    return this.nBlocks - 1;
  }

  /** Blocks on the free stack (refcount 0, not cached). */
  get freeBlocks(): number {
    return this.freeTop;
  }

  /** Blocks with refcount 0 kept for prefix hits (evictable). */
  get cachedBlocks(): number {
    return this.lruLen;
  }

  /** Blocks referenced by at least one block table. */
  get usedBlocks(): number {
    return this.nBlocks - 1 - this.freeTop - this.lruLen;
  }

  /** Blocks an allocation can take right now: free + cached-free. */
  get availableBlocks(): number {
    return this.freeTop + this.lruLen;
  }

  refCount(block: number): number {
    this.checkBlock(block);
    return this.refs[block]!;
  }

  isCached(block: number): boolean {
    this.checkBlock(block);
    return this.cached[block] === 1;
  }

  /**
   * A block for a new owner (refcount 1, not cached), or null when none is left (NOTE(2)).
   * Takes from the free stack, else evicts the least recently used cached block (NOTE(1)).
   */
  allocate(): number | null {
    let block: number;
    if (this.freeTop > 0) {
      block = this.freeStack[--this.freeTop]!;
    } else if (this.lruLen > 0) {
      block = this.lruNext[0]!;
      this.lruUnlink(block);
      this.cached[block] = 0;
      this.onEvict?.(block);
    } else {
      return null;
    }
    assert(this.refs[block] === 0, `allocated block ${block} has refcount ${this.refs[block]}`);
    this.refs[block] = 1;
    return block;
  }

  /** Allocate n blocks into out[0, n), or none (returns false, pool unchanged) when fewer are available. */
  allocateMany(n: number, out: Int32Array | number[]): boolean {
    if (n > this.availableBlocks) return false;
    for (let i = 0; i < n; i++) out[i] = this.allocate()!;
    return true;
  }

  /** One more reference to a used block (a fork shares it). */
  retain(block: number): void {
    this.checkBlock(block);
    assert(this.refs[block]! > 0, `retain of block ${block}, which is not in use`);
    this.refs[block]!++;
  }

  /**
   * A reference to a cached block found by a prefix hit: a cached-free block leaves the LRU
   * list (it is in use again), a used one just gains a reference.
   */
  acquireCached(block: number): void {
    this.checkBlock(block);
    assert(this.cached[block] === 1, `prefix hit on block ${block}, which is not cached`);
    if (this.refs[block] === 0) this.lruUnlink(block);
    this.refs[block]!++;
  }

  /** Drop one reference; at 0 the block becomes cached-free (newest in the LRU) or free. */
  release(block: number): void {
    this.checkBlock(block);
    assert(this.refs[block]! > 0, `release of block ${block}, which is not in use`);
    if (--this.refs[block]! > 0) return;
    if (this.cached[block] === 1) this.lruPushNewest(block);
    else this.freeStack[this.freeTop++] = block;
  }

  /**
   * Mark a used block as registered in the prefix index (true) or not (false). Un-caching a
   * cached-free block moves it to the free stack.
   */
  setCached(block: number, cached: boolean): void {
    this.checkBlock(block);
    if (cached) {
      assert(this.refs[block]! > 0, `caching block ${block}, which is not in use`);
      this.cached[block] = 1;
      return;
    }
    if (this.cached[block] === 0) return;
    this.cached[block] = 0;
    if (this.refs[block] === 0) {
      this.lruUnlink(block);
      this.freeStack[this.freeTop++] = block;
    }
  }

  /** Cached-free blocks from least to most recently released (the eviction order). */
  lruOrder(): number[] {
    const out: number[] = [];
    for (let b = this.lruNext[0]!; b !== 0; b = this.lruNext[b]!) out.push(b);
    return out;
  }

  /** The free stack, next to be allocated first. */
  freeList(): number[] {
    const out: number[] = [];
    for (let i = this.freeTop - 1; i >= 0; i--) out.push(this.freeStack[i]!);
    return out;
  }

  private checkBlock(block: number): void {
    assert(Number.isInteger(block) && block >= 1 && block < this.nBlocks, `block id ${block} outside [1, ${this.nBlocks})`);
  }

  private lruPushNewest(block: number): void {
    const last = this.lruPrev[0]!;
    this.lruNext[last] = block;
    this.lruPrev[block] = last;
    this.lruNext[block] = 0;
    this.lruPrev[0] = block;
    this.lruLen++;
  }

  private lruUnlink(block: number): void {
    const p = this.lruPrev[block]!;
    const n = this.lruNext[block]!;
    this.lruNext[p] = n;
    this.lruPrev[n] = p;
    this.lruPrev[block] = 0;
    this.lruNext[block] = 0;
    this.lruLen--;
  }
}
