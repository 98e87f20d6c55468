/**
 * PrefixIndex: content address (chained block hash, block-hash.ts) -> block id, for full blocks
 * whose bytes are exactly what their hash describes. Automatic prefix caching looks up a new
 * sequence's blocks here: a hit reuses the stored K/V instead of recomputing them.
 *
 *   tokens:   [ block 0 ][ block 1 ][ block 2 ][ partial ]
 *   hashes:     h0 ──────▶ h1 ──────▶ h2                     (h_j covers h_{j-1} and block j's tokens)
 *   lookup:     hit        hit        miss -> stop: 2 blocks (2 * blockLen tokens) cached
 *
 * NOTE(1): Only full blocks are indexed; the last partial block of a prompt is never shared.
 *   `maxHitTokens` caps a hit so the caller keeps tokens to compute (it needs logits of the last
 *   prompt token, so the block holding it must be computed, not reused).
 * NOTE(2): One block per hash: when two sequences compute the same block independently, the first
 *   registration wins and the second block stays private (register returns false). The maps are
 *   kept in both directions so that eviction and edits remove a block in O(1).
 * NOTE(3): The index holds no references: a cached block with no users is kept alive by the
 *   pool's LRU list, and the pool's eviction callback calls `removeBlock`.
 */
import { ROOT_PARENT_HASH, type BlockHasher } from './block-hash.js';

/** The result of a prefix lookup. */
export interface PrefixMatch {
  /** Block ids of the cached prefix, in order. */
  readonly blocks: number[];
  /** Their chained hashes (hashes[j] is the address of blocks[j]). */
  readonly hashes: string[];
}

export class PrefixIndex {
  private readonly byHash = new Map<string, number>();
  /** [nBlocks] the hash each block is registered under, or null. */
  private readonly hashOfBlock: (string | null)[];
  /**
   * [nBlocks] the parent hash each registered block was registered with (ROOT_PARENT_HASH for a
   * sequence's first block), or null when the registrar did not say. Snapshots use it to rebuild
   * chains (paged-snapshot.ts); lookups never read it.
   */
  private readonly parentOfBlock: (string | null)[];

  constructor(nBlocks: number) {
    this.hashOfBlock = new Array<string | null>(nBlocks).fill(null);
    this.parentOfBlock = new Array<string | null>(nBlocks).fill(null);
  }

  /** Number of registered blocks. */
  get size(): number {
    return this.byHash.size;
  }

  /** The block registered under `hash`, or 0 (the null block) when none. */
  lookup(hash: string): number {
    return this.byHash.get(hash) ?? 0;
  }

  /** The hash `block` is registered under, or null. */
  hashOf(block: number): string | null {
    return this.hashOfBlock[block] ?? null;
  }

  /** The parent hash `block` was registered with (snapshots), or null when unknown or not registered. */
  parentOf(block: number): string | null {
    return this.parentOfBlock[block] ?? null;
  }

  /**
   * Register a full block under its hash (and, for snapshots, the hash of its parent block).
   * Returns false (nothing changed) when the hash already names another block (NOTE(2)) or the
   * block is already registered.
   */
  register(hash: string, block: number, parent: string | null = null): boolean {
    if (this.byHash.has(hash) || this.hashOfBlock[block] !== null) return false;
    this.byHash.set(hash, block);
    this.hashOfBlock[block] = hash;
    this.parentOfBlock[block] = parent;
    return true;
  }

  /** Forget a block (evicted, or its bytes are about to change). No-op when not registered. */
  removeBlock(block: number): void {
    const h = this.hashOfBlock[block];
    if (h === null || h === undefined) return;
    this.byHash.delete(h);
    this.hashOfBlock[block] = null;
    this.parentOfBlock[block] = null;
  }

  /**
   * The longest cached prefix of `tokens` made of full blocks, at most `maxHitTokens` tokens
   * (NOTE(1)): hashes block by block and stops at the first miss.
   */
  match(hasher: BlockHasher, tokens: ArrayLike<number>, maxHitTokens: number): PrefixMatch {
    const L = hasher.blockLen;
    const nFull = Math.floor(Math.min(tokens.length, maxHitTokens) / L);
    const blocks: number[] = [];
    const hashes: string[] = [];
    let parent = ROOT_PARENT_HASH;
    for (let j = 0; j < nFull; j++) {
      const h = hasher.hash(parent, tokens, j * L);
      const b = this.lookup(h);
      if (b === 0) break;
      blocks.push(b);
      hashes.push(h);
      parent = h;
    }
    return { blocks, hashes };
  }

  /** Every (hash, block) entry, for snapshots and tests. */
  entries(): [string, number][] {
    return [...this.byHash.entries()];
  }
}
