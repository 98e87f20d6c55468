/**
 * Which blocks a (layer, row) attends: the bounds of a selection, the schedule that decides when
 * one is made, the stored selections reused in between, and their expansion into block tables.
 *
 *   logical blocks  0 .. init-1 | init .. recentStart-1 | recentStart .. nBlocks-1
 *                   always      | scored: top `pick`    | always: last `local` full blocks,
 *                               |                       | the blocks of the query tokens, the tail
 *
 *   table of a group = init blocks (ascending), picked blocks (by score), then recentStart ..
 *   nBlocks-1 (ascending; the partial tail last). Attention length = the valid tokens of those.
 *
 * NOTE(1): recentStart = min(nFull - local, first query block), clamped to [init, nBlocks]: a query
 *   always sees its own block and those of the other query tokens of its chunk (causal prefill).
 *   For one decode token with local >= 1 this is exactly ktransformers' [init, nFull - local).
 * NOTE(2): A stored selection keeps (init + picked blocks, recentStart). Reused at a later length,
 *   every block from recentStart on is attended: all full blocks that appeared since the
 *   selection and the current tail. (The original rebuilt the table from the old length and, at
 *   an exact multiple of blockLen, dropped the newest full block.) A selection made by the dense
 *   fallback stays dense until the next selection (dense extended is dense).
 * NOTE(3): Slots: selecting layer l (l >= layerOffset, (l - layerOffset) % layerStep == 0) owns
 *   slot (l - layerOffset) / layerStep; the next layerStep - 1 layers reuse it. nSlots =
 *   ceil((nLayers - layerOffset) / layerStep) covers every layer >= layerOffset (the original
 *   allocated nLayers / layerStep: out of bounds for some layer offsets and steps).
 * NOTE(4): A stored selection is also replaced off schedule when there is none for the row yet, or
 *   when the row got shorter than it was (an edited row: its blocks may be gone).
 */
import { assert } from '../../core/errors.js';
import type { ResolvedSparseConfig } from './sparse-config.js';

/** The slot of `layer`, or -1 when it attends densely (denseLayers, below layerOffset, pick -1). */
export function slotOf(c: ResolvedSparseConfig, layer: number): number {
  if (c.pick < 0 || layer < c.denseLayers || layer < c.layerOffset) return -1;
  return Math.floor((layer - c.layerOffset) / c.layerStep);
}

/** Whether `layer` makes selections (on token steps) rather than reusing its slot's (NOTE(3)). */
export function isSelectingLayer(c: ResolvedSparseConfig, layer: number): boolean {
  return layer >= c.layerOffset && (layer - c.layerOffset) % c.layerStep === 0;
}

/** Where a selection's parts lie for a row of seqLen tokens (NOTE(1)). */
export interface SelectionBounds {
  nBlocks: number;
  nFull: number;
  /** First blocks attended unconditionally: [0, initN). */
  initN: number;
  /** Blocks [initN, recentStart) are scored; [recentStart, nBlocks) always attended. */
  recentStart: number;
}

export function selectionBounds(seqLen: number, blockLen: number, init: number, local: number, minQueryPos: number, out: SelectionBounds): SelectionBounds {
  const nBlocks = Math.ceil(seqLen / blockLen);
  const nFull = Math.floor(seqLen / blockLen);
  const hi = Math.min(nFull - local, Math.floor(minQueryPos / blockLen), nBlocks);
  out.nBlocks = nBlocks;
  out.nFull = nFull;
  out.initN = Math.min(init, Math.max(hi, 0));
  out.recentStart = Math.max(hi, out.initN);
  return out;
}

/** One stored selection of a (slot, row) (NOTE(2)). */
export class SelectionRecord {
  /** Made by the dense fallback: reuse attends densely too. */
  dense = false;
  /** Row length when made (NOTE(4)). */
  seqLenAt = 0;
  recentStart = 0;
  /** Init + picked blocks per group. */
  count = 0;
  /** [nGroups, capacity] logical block ids: init ascending, then picked in rank order. */
  chosen: Int32Array;

  constructor(readonly nGroups: number, public capacity: number) {
    this.chosen = new Int32Array(nGroups * capacity);
  }

  ensureCapacity(capacity: number): void {
    if (capacity <= this.capacity) return;
    this.capacity = capacity;
    this.chosen = new Int32Array(this.nGroups * capacity);
  }
}

/** The stored selections: per slot, a map from row id to its record. */
export class SelectionStore {
  private readonly slots: Map<number, SelectionRecord>[];

  constructor(readonly nSlots: number, readonly nGroups: number) {
    this.slots = Array.from({ length: nSlots }, () => new Map<number, SelectionRecord>());
  }

  get(slot: number, row: number): SelectionRecord | undefined {
    return this.slots[slot]!.get(row);
  }

  /** The record of (slot, row) with room for `capacity` blocks per group (created on first use). */
  obtain(slot: number, row: number, capacity: number): SelectionRecord {
    assert(slot >= 0 && slot < this.nSlots, `selection slot ${slot} of ${this.nSlots}`);
    let r = this.slots[slot]!.get(row);
    if (!r) {
      r = new SelectionRecord(this.nGroups, Math.max(1, capacity));
      this.slots[slot]!.set(row, r);
    }
    r.ensureCapacity(capacity);
    return r;
  }

  forgetRow(row: number): void {
    for (const m of this.slots) m.delete(row);
  }

  clear(): void {
    for (const m of this.slots) m.clear();
  }
}

/** Whether (layer, row) needs a new selection at tokenIdx (schedule and NOTE(4)). */
export function needsSelection(c: ResolvedSparseConfig, layer: number, tokenIdx: number, rec: SelectionRecord | undefined, seqLen: number): boolean {
  if (!rec || seqLen < rec.seqLenAt) return true;
  return tokenIdx % c.tokenStep === 0 && isSelectingLayer(c, layer);
}

/**
 * The blocks one attention call reads, per selection group: what attend() returns (and what the
 * `--sparse` statistics report). Owned by the SparseAttention and rewritten by its next call.
 */
export class SparseStep {
  /** Dense attention over every block of the row (one group). */
  dense = true;
  /** A new selection was made by this call (false: reused, or dense). */
  fresh = false;
  /** The selection slot used; -1 for a dense layer. */
  slot = -1;
  nGroups = 1;
  /** Row length and blocks of the call. */
  seqLen = 0;
  nBlocks = 0;
  /** Room per group in `tables`. */
  stride = 0;
  /** [nGroups, stride] logical block ids in attention order (counts[g] valid per group). */
  tables = new Int32Array(0);
  /** [nGroups] blocks attended per group. */
  counts = new Int32Array(0);
  /** [nGroups] tokens attended per group. */
  lengths = new Int32Array(0);

  /** A copy of group g's logical block list. */
  blocks(g: number): number[] {
    return Array.from(this.tables.subarray(g * this.stride, g * this.stride + this.counts[g]!));
  }

  /** Make room for nGroups groups of `stride` blocks (grows, never shrinks: no allocation once warm). */
  reserve(nGroups: number, stride: number): void {
    this.nGroups = nGroups;
    if (this.counts.length < nGroups) {
      this.counts = new Int32Array(nGroups);
      this.lengths = new Int32Array(nGroups);
    }
    if (this.stride < stride) this.stride = Math.max(stride, 2 * this.stride);
    if (this.tables.length < nGroups * this.stride) this.tables = new Int32Array(nGroups * this.stride);
  }
}

/**
 * Fill `step` from a stored selection at the current length (NOTE(2)): per group, the chosen
 * blocks below the current recent start, then every block from it to the tail.
 */
export function expandSelection(rec: SelectionRecord, seqLen: number, blockLen: number, minQueryPos: number, step: SparseStep): void {
  const nBlocks = Math.ceil(seqLen / blockLen);
  const recentNow = Math.max(0, Math.min(rec.recentStart, Math.floor(minQueryPos / blockLen), nBlocks));
  step.reserve(rec.nGroups, rec.count + nBlocks - recentNow);
  step.dense = false;
  step.seqLen = seqLen;
  step.nBlocks = nBlocks;
  for (let g = 0; g < rec.nGroups; g++) {
    let n = 0;
    let len = 0;
    const out = g * step.stride;
    for (let i = 0; i < rec.count; i++) {
      const b = rec.chosen[g * rec.capacity + i]!;
      if (b >= recentNow) continue; // now part of the recent range (a query moved back)
      step.tables[out + n++] = b;
      len += Math.min(blockLen, seqLen - b * blockLen);
    }
    for (let b = recentNow; b < nBlocks; b++) {
      step.tables[out + n++] = b;
      len += Math.min(blockLen, seqLen - b * blockLen);
    }
    step.counts[g] = n;
    step.lengths[g] = len;
  }
}
