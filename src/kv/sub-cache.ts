/**
 * SubCache: a window [start, start + len) of a StaticCache's positions that shares its
 * memory (MLLM's SubStaticCache). The sub-view numbers its own positions from 0.
 *
 * NOTE(1): Its lengths start at what the parent already holds inside the window.
 * NOTE(2): Writes go to the parent's memory. When a write continues the parent's valid
 *   prefix (the parent's length reaches at least the write's first position) the parent's
 *   length is extended to cover it, so the parent reads what the sub-view wrote; a write
 *   past a gap leaves the parent's length alone (those bytes are not valid for the parent).
 * NOTE(3): A write that would land on positions the parent already holds beyond the sub-view's
 *   own length (the parent appended after the view was made) is refused with StateError: two
 *   owners silently overwriting each other's positions would corrupt the cache.
 * NOTE(4): Only a StaticCache can be a parent: its storage never moves.
 */
import { CapacityError, OutOfRangeError, StateError, checkInt } from '../core/errors.js';
import { DenseCache, type LayerStorage } from './dense-cache.js';
import type { StaticCache } from './static-cache.js';

export class SubCache extends DenseCache {
  readonly parent: StaticCache;
  readonly start: number;

  constructor(parent: StaticCache, start: number, len: number) {
    checkInt('sub-cache start', start, 0);
    checkInt('sub-cache length', len, 1);
    if (start + len > parent.maxSeqLen) {
      throw new OutOfRangeError('sub-cache window [start, start + len)', `within [0, ${parent.maxSeqLen})`, `[${start}, ${start + len})`);
    }
    super(
      {
        nLayers: parent.nLayers,
        batchSize: parent.batchSize,
        nKvHeads: parent.nKvHeads,
        nHeads: parent.nHeads,
        headDim: parent.headDim,
        maxSeqLen: len,
        kDtype: parent.kDtype,
        vDtype: parent.vDtype,
        layout: parent.layout,
      },
      parent.arena,
      start,
    );
    this.parent = parent;
    this.start = start;
    for (let l = 0; l < this.nLayers; l++) {
      for (let b = 0; b < this.batchSize; b++) this.lens[l * this.batchSize + b] = Math.min(len, Math.max(0, parent.seqLen(l, b) - start));
    }
  }

  storageOf(layer: number): LayerStorage {
    this.checkLayer(layer);
    return this.parent.storageOf(layer);
  }

  override capacity(layer = 0): number {
    this.checkLayer(layer);
    return this.maxSeqLen;
  }

  protected ensureCapacity(layer: number, needed: number): void {
    if (needed > this.maxSeqLen) throw new CapacityError(`sub-cache layer ${layer}`, `at most ${this.maxSeqLen} positions (window length)`, needed);
  }

  protected override beforeWrite(layer: number, row: number, p0: number, _p1: number): void {
    const parentLen = this.parent.seqLen(layer, row);
    if (parentLen > this.start + p0) {
      throw new StateError(
        `sub-cache [${this.start}, ${this.start + this.maxSeqLen}) layer ${layer} row ${row}: write at parent position ${this.start + p0}`,
        `a position at or past the parent's length ${parentLen} (the parent holds it)`,
        this.start + p0,
      );
    }
  }

  protected override onWritten(layer: number, row: number, p0: number, p1: number): void {
    const parentLen = this.parent.seqLen(layer, row);
    if (parentLen >= this.start + p0 && parentLen < this.start + p1) this.parent.setSeqLen(layer, row, this.start + p1);
  }

  /** The parent owns the memory: disposing a sub-view only stops its use. */
  dispose(): void {
    this.disposed = true;
  }
}
