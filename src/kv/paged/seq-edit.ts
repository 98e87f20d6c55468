/**
 * Sequence editing of a paged cache: remove positions, shift positions (re-rotating keys), and
 * the copy-on-write step every byte edit goes through. PagedKVCache validates the arguments and
 * calls these with its parts.
 *
 * NOTE(1): A block's bytes may change only while exactly one sequence uses it and the prefix
 *   index does not name it. `makeWritable` enforces that: a shared block is copied (the copy
 *   replaces it in this sequence only), an exclusively owned but indexed block leaves the index.
 * NOTE(2): seqRemove edits bookkeeping only: blocks keep their bytes and, when indexed, their
 *   index entries (what the hash describes is still there); blocks the sequence no longer uses are
 *   released tail first, so an LRU evicts a prefix's leaves before its parents.
 * NOTE(3): seqShift changes key bytes, so its blocks go through makeWritable first; it counts the
 *   copies it needs and returns false (nothing changed) when the pool cannot supply them.
 */
import { OutOfRangeError, assert } from '../../core/errors.js';
import type { BlockPool } from './block-pool.js';
import type { BlockStorage, KeyRotation } from './block-storage.js';
import type { PrefixIndex } from './prefix-index.js';
import type { ResolvedRopeConfig } from './paged-config.js';
import type { Sequence } from './sequence.js';

/** The parts of a paged cache the edits work on. */
export interface PagedParts {
  readonly pool: BlockPool;
  readonly storage: BlockStorage;
  readonly index: PrefixIndex;
  readonly blockLen: number;
}

/** Take `block` out of the prefix index (its bytes are about to change). */
export function unregister(parts: PagedParts, block: number): void {
  parts.index.removeBlock(block);
  parts.pool.setCached(block, false);
}

/**
 * NOTE(1). `spare` is a block already allocated for a copy (refcount 1), used only when the
 * block is shared. Returns the block the sequence now uses in place of `block`.
 */
export function makeWritable(parts: PagedParts, seq: Sequence, block: number, spare: number): number {
  if (parts.pool.refCount(block) > 1) {
    assert(spare > 0, `copy-on-write of shared block ${block} without a spare block`);
    parts.storage.copyBlock(block, spare);
    seq.replaceBlock(block, spare);
    parts.pool.release(block);
    return spare;
  }
  if (parts.pool.isCached(block)) unregister(parts, block);
  return block;
}

/** Release blocks in reverse order of the array (tail first, NOTE(2)). */
export function releaseTailFirst(pool: BlockPool, blocks: ArrayLike<number>): void {
  for (let i = blocks.length - 1; i >= 0; i--) pool.release(blocks[i]!);
}

/** Remove the tokens at positions [p0, p1) (NOTE(2)). Returns the number removed. */
export function removeRange(parts: PagedParts, seq: Sequence, p0: number, p1: number): number {
  const tailTruncation = p1 >= seq.nextPos;
  const r0 = seq.splitAt(p0);
  const r1 = seq.splitAt(p1);
  if (r0 === r1) {
    seq.mergeRuns();
    return 0;
  }
  // Blocks of the removed runs, minus the ones still used by the runs on either side.
  const before = r0 > 0 ? seq.runBlock[r0 - 1]! : 0;
  const after = r1 < seq.nRuns ? seq.runBlock[r1]! : 0;
  const freed: number[] = [];
  let removed = 0;
  for (let r = r0; r < r1; r++) {
    removed += seq.runLen[r]!;
    const b = seq.runBlock[r]!;
    if (b !== before && b !== after && freed[freed.length - 1] !== b) freed.push(b);
  }
  seq.deleteRuns(r0, r1);
  seq.nTokens -= removed;
  seq.mergeRuns();
  releaseTailFirst(parts.pool, freed);
  if (!seq.chainOk) return removed;
  if (tailTruncation) {
    // Still pristine (sequence.ts NOTE(4)): drop the hashes of blocks that are no longer full.
    seq.nIds = seq.nTokens;
    seq.chainHashes.length = Math.min(seq.chainHashes.length, Math.floor(seq.nTokens / parts.blockLen));
  } else {
    seq.chainOk = false;
  }
  return removed;
}

/** Positions of the tokens around and inside [p0, p1): what seqShift validates. */
export interface ShiftSpan {
  /** First and last position inside [p0, p1); lo > hi when the range holds no token. */
  lo: number;
  hi: number;
  /** Last position before p0 (-1 when none), first position at or after p1 (Infinity when none). */
  prevMax: number;
  nextMin: number;
  /** Distinct blocks holding tokens inside [p0, p1), in storage order. */
  blocks: number[];
}

export function shiftSpan(seq: Sequence, p0: number, p1: number): ShiftSpan {
  const span: ShiftSpan = { lo: Infinity, hi: -Infinity, prevMax: -1, nextMin: Infinity, blocks: [] };
  for (let r = 0; r < seq.nRuns; r++) {
    const a = seq.runPos[r]!;
    const e = a + seq.runLen[r]!; // one past the run's last position
    if (a < p0) span.prevMax = Math.min(e, p0) - 1;
    if (e > p1 && span.nextMin === Infinity) span.nextMin = Math.max(a, p1);
    const lo = Math.max(a, p0);
    const hi = Math.min(e, p1) - 1;
    if (lo > hi) continue;
    span.lo = Math.min(span.lo, lo);
    span.hi = hi;
    const b = seq.runBlock[r]!;
    if (span.blocks[span.blocks.length - 1] !== b) span.blocks.push(b);
  }
  return span;
}

/** cos / sin of delta * invFreq[i]: the rotation from position p to p + delta. */
export function rotationFor(rope: ResolvedRopeConfig, delta: number): KeyRotation {
  const half = rope.rotaryDim / 2;
  const cos = new Float64Array(half); // [rotaryDim / 2]
  const sin = new Float64Array(half); // [rotaryDim / 2]
  for (let i = 0; i < half; i++) {
    const angle = delta * rope.invFreq[i]!;
    cos[i] = Math.cos(angle);
    sin[i] = Math.sin(angle);
  }
  return { cos, sin, rotaryDim: rope.rotaryDim, pairing: rope.pairing };
}

/**
 * Move the tokens at positions [p0, p1) by delta and re-rotate their keys (NOTE(3)). The caller
 * has validated the span (no crossing, no negative position). Returns false, changing nothing,
 * when the copies for shared blocks cannot be allocated.
 */
export function shiftRange(parts: PagedParts, seq: Sequence, p0: number, p1: number, delta: number, rope: ResolvedRopeConfig, span: ShiftSpan): boolean {
  let nCopies = 0;
  for (const b of span.blocks) if (parts.pool.refCount(b) > 1) nCopies++;
  const spares: number[] = [];
  if (!parts.pool.allocateMany(nCopies, spares)) return false;
  let next = 0;
  for (const b of span.blocks) makeWritable(parts, seq, b, parts.pool.refCount(b) > 1 ? spares[next++]! : 0);
  const r0 = seq.splitAt(p0);
  const r1 = seq.splitAt(p1);
  const rot = rotationFor(rope, delta);
  for (let r = r0; r < r1; r++) {
    parts.storage.rotateKeys(seq.runBlock[r]!, seq.runSlot[r]!, seq.runLen[r]!, rot);
    seq.runPos[r] = seq.runPos[r]! + delta;
  }
  seq.mergeRuns();
  seq.chainOk = false;
  return true;
}

/** Throws OutOfRangeError when shifting the span by delta would cross a neighbour or go below 0. */
export function checkShift(span: ShiftSpan, delta: number, maxPosition: number): void {
  if (span.lo + delta < 0) {
    throw new OutOfRangeError(`seqShift: first shifted position ${span.lo} + delta ${delta}`, 'a position >= 0', span.lo + delta);
  }
  if (span.hi + delta > maxPosition) {
    throw new OutOfRangeError(`seqShift: last shifted position ${span.hi} + delta ${delta}`, `a position <= ${maxPosition}`, span.hi + delta);
  }
  if (span.lo + delta <= span.prevMax || span.hi + delta >= span.nextMin) {
    const free = `(${span.prevMax}, ${span.nextMin === Infinity ? 'inf' : span.nextMin})`;
    throw new OutOfRangeError(
      `seqShift: shifted positions [${span.lo}, ${span.hi}] + delta ${delta}`,
      `positions strictly inside ${free}, between the unshifted tokens (close gaps, never cross tokens)`,
      `[${span.lo + delta}, ${span.hi + delta}]`,
    );
  }
}
