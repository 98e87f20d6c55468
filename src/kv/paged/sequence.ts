/**
 * The bookkeeping of one sequence of a paged cache: its runs (where its tokens are), its
 * prefix-hash chain, and an open reservation. No bytes here (DESIGN decision 2).
 *
 *   run r = (block, slot0, n, pos0): tokens at slots [slot0, slot0 + n) of `block`, whose
 *           positions are pos0 .. pos0 + n - 1.
 *
 *   runs:      [b7: slots 0..31 | pos 0..31] [b2: slots 0..9 | pos 32..41] [b2: slots 14..31 | pos 46..63] ...
 *   block table (distinct blocks in order): b7 b2 ...
 *
 * NOTE(1): Runs are in position order and in storage order, and each run is one KVSegment of a
 *   view. A seqRemove in the middle of a block splits its run in two (a hole of unused slots);
 *   positions keep their values (llama.cpp semantics) until a seqShift moves them.
 * NOTE(2): All runs of one block are adjacent, so "does the sequence still use block b" is a look
 *   at the neighbours, and the sequence holds one pool reference per distinct block.
 * NOTE(3): The last run is the storage tail: slots after it in its block are not used by this
 *   sequence, so appends extend it (after a copy-on-write when the block is shared).
 * NOTE(4): The prefix chain. While `chainOk`, the sequence is "pristine": run j is block j, its
 *   tokens are at positions j * blockLen + slot, and every token id is known (`tokenIds`). Then a
 *   block that fills gets its chained hash (`chainHashes[j]`) and may enter the prefix index. A
 *   token reserved without its id, a removal that is not a tail truncation, or a shift ends the
 *   chain for good (the blocks registered so far stay valid: their bytes did not change).
 */
import type { KVView } from '../types.js';
import type { BlockHasher } from './block-hash.js';

/** A KVSegment whose fields a view rebuild overwrites in place (no allocation per call). */
export interface MutableSegment {
  kOffsetBytes: number;
  vOffsetBytes: number;
  nTokens: number;
  pos0: number;
}

/** The KVView object a sequence keeps per layer and refreshes on every view() call. */
export type MutableView = { -readonly [K in keyof KVView]: KVView[K] } & { segments: MutableSegment[] };

function grown(a: Int32Array<ArrayBuffer>, need: number): Int32Array<ArrayBuffer> {
  if (need <= a.length) return a;
  const b = new Int32Array(Math.max(need, 2 * a.length));
  b.set(a);
  return b;
}

export class Sequence {
  readonly id: number;
  readonly hasher: BlockHasher;
  /** [capacity] run fields; nRuns are valid. */
  runBlock: Int32Array<ArrayBuffer> = new Int32Array(8);
  runSlot: Int32Array<ArrayBuffer> = new Int32Array(8);
  runLen: Int32Array<ArrayBuffer> = new Int32Array(8);
  runPos: Int32Array<ArrayBuffer> = new Int32Array(8);
  nRuns = 0;
  /** Tokens in the runs (committed and reserved). */
  nTokens = 0;

  /** NOTE(4). */
  chainOk = true;
  /** [number of hashed leading blocks] chained hashes. */
  chainHashes: string[] = [];
  /** [capacity] token id of position p, valid for p < nIds (and for a reservation's ids). */
  tokenIds: Uint32Array<ArrayBuffer> = new Uint32Array(64);
  nIds = 0;

  /** Open reservation: tokens [pendingPos0, pendingPos0 + pendingN) at the end of the runs. */
  pendingN = 0;
  pendingPos0 = 0;
  /** Run index and slot where the reservation starts. */
  pendingRun = 0;
  pendingSlot = 0;
  /** Whether the reservation came with token ids (stored in tokenIds[pendingPos0..]). */
  pendingHasIds = false;
  /** [nLayers] 1 once write() filled that layer's reserved rows. */
  readonly pendingWritten: Uint8Array;

  /** [nLayers] view objects reused by view() (NOTE: valid until the next view of that layer). */
  readonly views: (MutableView | null)[];

  constructor(id: number, hasher: BlockHasher, nLayers: number) {
    this.id = id;
    this.hasher = hasher;
    this.pendingWritten = new Uint8Array(nLayers);
    this.views = new Array<MutableView | null>(nLayers).fill(null);
  }

  /** The position the next reserved token gets: one past the last token, 0 when empty. */
  get nextPos(): number {
    const r = this.nRuns - 1;
    return r < 0 ? 0 : this.runPos[r]! + this.runLen[r]!;
  }

  pushRun(block: number, slot0: number, n: number, pos0: number): void {
    const i = this.nRuns;
    this.runBlock = grown(this.runBlock, i + 1);
    this.runSlot = grown(this.runSlot, i + 1);
    this.runLen = grown(this.runLen, i + 1);
    this.runPos = grown(this.runPos, i + 1);
    this.runBlock[i] = block;
    this.runSlot[i] = slot0;
    this.runLen[i] = n;
    this.runPos[i] = pos0;
    this.nRuns = i + 1;
  }

  /** Store ids for positions [pos0, pos0 + ids.length) (growing the buffer). */
  putIds(pos0: number, ids: ArrayLike<number>): void {
    const need = pos0 + ids.length;
    if (need > this.tokenIds.length) {
      const b = new Uint32Array(Math.max(need, 2 * this.tokenIds.length));
      b.set(this.tokenIds.subarray(0, this.nIds));
      this.tokenIds = b;
    }
    for (let i = 0; i < ids.length; i++) this.tokenIds[pos0 + i] = ids[i]!;
  }

  /**
   * Make `pos` a run boundary: split the run that holds both pos - 1 and pos. Returns the index
   * of the first run whose tokens are all at positions >= pos (nRuns when none).
   */
  splitAt(pos: number): number {
    for (let r = 0; r < this.nRuns; r++) {
      const p0 = this.runPos[r]!;
      const n = this.runLen[r]!;
      if (pos <= p0) return r;
      if (pos >= p0 + n) continue;
      const head = pos - p0;
      this.insertRun(r + 1, this.runBlock[r]!, this.runSlot[r]! + head, n - head, pos);
      this.runLen[r] = head;
      return r + 1;
    }
    return this.nRuns;
  }

  /** Delete runs [r0, r1). */
  deleteRuns(r0: number, r1: number): void {
    const d = r1 - r0;
    if (d <= 0) return;
    for (let r = r1; r < this.nRuns; r++) {
      this.runBlock[r - d] = this.runBlock[r]!;
      this.runSlot[r - d] = this.runSlot[r]!;
      this.runLen[r - d] = this.runLen[r]!;
      this.runPos[r - d] = this.runPos[r]!;
    }
    this.nRuns -= d;
  }

  /** Merge neighbouring runs that continue each other in the same block (slots and positions). */
  mergeRuns(): void {
    let w = 0;
    for (let r = 0; r < this.nRuns; r++) {
      if (w > 0) {
        const p = w - 1;
        const same = this.runBlock[p] === this.runBlock[r] && this.runSlot[p]! + this.runLen[p]! === this.runSlot[r] && this.runPos[p]! + this.runLen[p]! === this.runPos[r];
        if (same) {
          this.runLen[p] = this.runLen[p]! + this.runLen[r]!;
          continue;
        }
      }
      this.runBlock[w] = this.runBlock[r]!;
      this.runSlot[w] = this.runSlot[r]!;
      this.runLen[w] = this.runLen[r]!;
      this.runPos[w] = this.runPos[r]!;
      w++;
    }
    this.nRuns = w;
  }

  /** Point every run on block `from` (they are adjacent, NOTE(2)) to block `to`. */
  replaceBlock(from: number, to: number): void {
    for (let r = 0; r < this.nRuns; r++) if (this.runBlock[r] === from) this.runBlock[r] = to;
  }

  /** Distinct blocks in storage order (the block table). */
  blockTable(): Int32Array {
    let n = 0;
    for (let r = 0; r < this.nRuns; r++) if (r === 0 || this.runBlock[r] !== this.runBlock[r - 1]) n++;
    const out = new Int32Array(n);
    n = 0;
    for (let r = 0; r < this.nRuns; r++) if (r === 0 || this.runBlock[r] !== this.runBlock[r - 1]) out[n++] = this.runBlock[r]!;
    return out;
  }

  /** A copy with the same runs, chain and ids (no reservation): the bookkeeping half of a fork. */
  cloneAs(id: number): Sequence {
    const s = new Sequence(id, this.hasher, this.pendingWritten.length);
    s.runBlock = this.runBlock.slice();
    s.runSlot = this.runSlot.slice();
    s.runLen = this.runLen.slice();
    s.runPos = this.runPos.slice();
    s.nRuns = this.nRuns;
    s.nTokens = this.nTokens;
    s.chainOk = this.chainOk;
    s.chainHashes = this.chainHashes.slice();
    s.tokenIds = this.tokenIds.slice();
    s.nIds = this.nIds;
    return s;
  }

  /** Ensure the per-layer view has `n` segment objects and return its segment array. */
  segmentsFor(view: MutableView, n: number): MutableSegment[] {
    const segs = view.segments;
    while (segs.length < n) segs.push({ kOffsetBytes: 0, vOffsetBytes: 0, nTokens: 0, pos0: 0 });
    segs.length = n;
    return segs;
  }

  private insertRun(at: number, block: number, slot0: number, n: number, pos0: number): void {
    this.pushRun(0, 0, 0, 0);
    for (let r = this.nRuns - 1; r > at; r--) {
      this.runBlock[r] = this.runBlock[r - 1]!;
      this.runSlot[r] = this.runSlot[r - 1]!;
      this.runLen[r] = this.runLen[r - 1]!;
      this.runPos[r] = this.runPos[r - 1]!;
    }
    this.runBlock[at] = block;
    this.runSlot[at] = slot0;
    this.runLen[at] = n;
    this.runPos[at] = pos0;
  }
}
