/**
 * SparseAttention: block-sparse attention over a paged BlockStorage (ktransformers' long-context
 * KVCache, with its defects fixed). A row is (block table, seqLen): token i sits in block
 * table[floor(i / blockLen)], slot i % blockLen, at position i, keys stored after RoPE.
 *
 *   onBlocksFilled / afterPrefill ──▶ anchors (anchors.ts), importance (importance.ts)
 *   attend(ks, layer, row, table, seqLen, q, out, lse, positions, tokenIdx)
 *     ├─ dense layer / pick -1 / short row ──▶ one view over every block ──▶ ks.attention
 *     └─ schedule (selection-store.ts): new selection (block-select.ts) or reuse, extended
 *          ──▶ per group a view over its blocks (block-view.ts) ──▶ ks.attention per group
 *   ──▶ out [nTokens, nqHeads, headDim], lse [nTokens, nqHeads]: exactly dense attention's
 *       contract over the chosen keys, so callers merge it with other partial attention by LSE.
 *
 * NOTE(1): Two consumers: the model runtime (one row per PagedKVCache sequence: its blockTable and
 *   storage; one decode token per call, or a prefill chunk) and the ktransformers facade (batch
 *   rows with explicit physical ids and per-call pick / init / local). `row` only keys the stored
 *   selections; forgetRow(row) drops them when the row is reused for other content.
 * NOTE(2): KVHEAD / QHEAD run one kernel call per group on a single-kv-head view, in place for one
 *   query token, through gathered arena scratch for several (group-attention.ts).
 * NOTE(3): Anchors are per physical block and valid while the block's keys are unchanged. Call
 *   onBlocksFilled after each step that fills blocks (or afterPrefill after a prompt); a block never
 *   anchored is anchored lazily when first scored. A caller that rewrites a block's keys in place
 *   (rotation by seqShift, reuse of a freed block before it fills again) calls invalidateBlocks.
 * NOTE(4): Every input is checked before anything changes: bad input throws a typed error and
 *   leaves selections, anchors and importance as they were.
 * NOTE(5): With decodeImportance on, importance is computed after the attention from q and the
 *   returned lse: `out` must not overlap `q` then (ConfigError).
 */
import { ConfigError, DisposedError, checkIndex, checkInt } from '../../core/errors.js';
import type { KernelSet } from '../../kernels/kernel-set.js';
import { resolveAttentionOptions, type AttentionOptions } from '../../kernels/types.js';
import type { BlockStorage } from '../paged/block-storage.js';
import { AnchorStore, computeAnchors, decodeBlockKeys } from './anchors.js';
import { ArenaScratch } from './arena-scratch.js';
import { fillBlockView, newBlockView, type BlockView } from './block-view.js';
import { scoreBlocks, topBlocks } from './block-select.js';
import { GroupAttention } from './group-attention.js';
import { ImportanceStore, accumulateImportance, type ImportanceQueries } from './importance.js';
import { SelectionStore, SparseStep, expandSelection, needsSelection, selectionBounds, slotOf, type SelectionBounds, type SelectionRecord } from './selection-store.js';
import { checkQueries, checkRow, checkSpan } from './sparse-checks.js';
import { groupCount, resolveSparseConfig, type ResolvedSparseConfig, type SparseOptions } from './sparse-config.js';

/** Per-call options: the attention's scale / window, and overrides used when a selection is made. */
export interface SparseCallOptions extends AttentionOptions {
  pick?: number;
  init?: number;
  local?: number;
}

/** A stored selection (a copy), for tests and statistics. */
export interface StoredSelection {
  dense: boolean;
  seqLenAt: number;
  recentStart: number;
  /** [nGroups][init + picked] logical block ids in attention order. */
  chosen: number[][];
}

export class SparseAttention {
  readonly config: ResolvedSparseConfig;
  readonly nLayers: number;
  readonly nqHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly blockLen: number;
  /** Selection groups: 1 (layer), nKvHeads (kvhead), nqHeads (qhead). */
  readonly nGroups: number;
  private readonly anchors: AnchorStore;
  private readonly importance: ImportanceStore;
  private readonly selections: SelectionStore;
  private readonly scratch: ArenaScratch;
  private readonly step = new SparseStep();
  private readonly groups: GroupAttention;
  /** The row's dense view, for the lse of importance queries. */
  private readonly lseView: BlockView;
  private readonly bounds: SelectionBounds = { nBlocks: 0, nFull: 0, initN: 0, recentStart: 0 };
  private readonly qz: ImportanceQueries = { qOff: 0, lseOff: 0, positions: new Int32Array(0), t0: 0, m: 0, scale: 1 };
  /** [nKvHeads, blockLen, headDim] one block's decoded keys. */
  private readonly keys: Float32Array;
  /** [nGroups, scorable] block scores of a selection. */
  private scores = new Float64Array(0);
  /** [scorable] ranking scratch. */
  private rank = new Int32Array(0);
  /** [n] 0, 1, ..., n - 1: the block list of a dense row. */
  private iota = new Int32Array(0);
  private disposed = false;

  constructor(readonly storage: BlockStorage, nqHeads: number, options: SparseOptions = {}) {
    const shape = { nLayers: storage.nLayers, nqHeads, nKvHeads: storage.nKvHeads, headDim: storage.headDim, blockLen: storage.blockLen };
    this.config = resolveSparseConfig(options, shape);
    this.nLayers = shape.nLayers;
    this.nqHeads = nqHeads;
    this.nKvHeads = shape.nKvHeads;
    this.headDim = shape.headDim;
    this.blockLen = shape.blockLen;
    this.nGroups = groupCount(this.config.retrievalType, nqHeads, this.nKvHeads);
    const anchorShape = { ...shape, anchorNum: this.config.anchorNum };
    this.anchors = new AnchorStore(this.nLayers, storage.nBlocks, anchorShape);
    this.importance = new ImportanceStore(this.nLayers, storage.nBlocks, this.blockLen, nqHeads);
    this.selections = new SelectionStore(this.config.nSlots, this.nGroups);
    this.scratch = new ArenaScratch(storage.arena);
    this.groups = new GroupAttention(storage, nqHeads, this.config.retrievalType, this.nGroups, this.scratch);
    this.lseView = newBlockView(storage);
    this.keys = new Float32Array(this.nKvHeads * this.blockLen * this.headDim);
  }

  /** Whether `layer` always attends densely (its anchors are never needed). */
  isDenseLayer(layer: number): boolean {
    return slotOf(this.config, layer) < 0;
  }

  /** Anchors of the blocks that became full between lengths fromLen and toLen; returns how many. */
  onBlocksFilled(layer: number, table: Int32Array, fromLen: number, toLen: number): number {
    checkIndex('layer', layer, this.nLayers);
    checkInt('fromLen', fromLen, 0);
    checkInt(`toLen (fromLen = ${fromLen})`, toLen, fromLen);
    checkRow(this.storage, table, toLen);
    if (this.isDenseLayer(layer)) return 0;
    const b1 = Math.floor(toLen / this.blockLen);
    let n = 0;
    for (let b = Math.floor(fromLen / this.blockLen); b < b1; b++, n++) this.computeBlockAnchors(layer, table[b]!);
    return n;
  }

  /**
   * After a prompt (tokens [fromLen, seqLen) new): importance from the last `importanceQueries`
   * queries (q [nTokens, nqHeads, headDim], positions [nTokens]; lse [nTokens, nqHeads] of their
   * dense attention, or lseOff < 0 to compute it), then anchors: of every full block when
   * importance was added (DYNAMIC anchors follow it), else of the blocks that filled or have none.
   */
  afterPrefill(ks: KernelSet, layer: number, table: Int32Array, fromLen: number, seqLen: number, qOff: number, positions: Int32Array, lseOff = -1, opts?: AttentionOptions): void {
    this.checkLive();
    checkIndex('layer', layer, this.nLayers);
    checkRow(this.storage, table, seqLen);
    checkInt(`fromLen (seqLen = ${seqLen})`, fromLen, 0, seqLen);
    const n = positions.length;
    checkQueries(this.storage.arena, this.nqHeads, this.headDim, qOff, lseOff, positions, false);
    const { scale } = resolveAttentionOptions(opts, this.headDim);
    if (this.isDenseLayer(layer)) return;
    const m = Math.min(this.config.importanceQueries, n);
    if (m > 0) {
      // Blocks that hold only new tokens start from zero (their slots held other tokens before).
      for (let b = Math.ceil(fromLen / this.blockLen); b * this.blockLen < seqLen; b++) this.importance.clearBlock(layer, table[b]!);
      const t0 = n - m;
      const pos = positions.subarray(t0);
      const q = qOff + t0 * this.nqHeads * this.headDim * 4;
      const lse = lseOff >= 0 ? lseOff + t0 * this.nqHeads * 4 : this.denseLse(ks, layer, table, seqLen, q, pos, opts);
      this.addImportance(ks, layer, table, seqLen, q, lse, pos, scale, this.allBlocks(seqLen), 0, Math.ceil(seqLen / this.blockLen), 0, this.nqHeads);
    }
    for (let b = 0; b < Math.floor(seqLen / this.blockLen); b++) {
      if (m > 0 || (b + 1) * this.blockLen > fromLen || !this.anchors.isValid(layer, table[b]!)) this.computeBlockAnchors(layer, table[b]!);
    }
  }

  /** Add the attention probabilities of the given queries (their lse, or lseOff < 0) over every key of the row. */
  accumulateImportance(ks: KernelSet, layer: number, table: Int32Array, seqLen: number, qOff: number, positions: Int32Array, lseOff = -1, opts?: AttentionOptions): void {
    this.checkLive();
    checkIndex('layer', layer, this.nLayers);
    checkRow(this.storage, table, seqLen);
    checkQueries(this.storage.arena, this.nqHeads, this.headDim, qOff, lseOff, positions, false);
    const { scale } = resolveAttentionOptions(opts, this.headDim);
    if (positions.length === 0) return;
    const lse = lseOff >= 0 ? lseOff : this.denseLse(ks, layer, table, seqLen, qOff, positions, opts);
    this.addImportance(ks, layer, table, seqLen, qOff, lse, positions, scale, this.allBlocks(seqLen), 0, Math.ceil(seqLen / this.blockLen), 0, this.nqHeads);
  }

  /**
   * Sparse attention of positions.length query tokens of `row` (q, out [nTokens, nqHeads,
   * headDim] and lse [nTokens, nqHeads] at arena byte offsets) at generation step tokenIdx.
   * Returns what was attended (owned by this object, rewritten by the next call).
   */
  attend(
    ks: KernelSet, layer: number, row: number, table: Int32Array, seqLen: number,
    qOff: number, outOff: number, lseOff: number, positions: Int32Array, tokenIdx: number, call: SparseCallOptions = {},
  ): SparseStep {
    this.checkLive();
    checkIndex('layer', layer, this.nLayers);
    checkInt('row', row, 0);
    checkInt('tokenIdx', tokenIdx, 0);
    checkRow(this.storage, table, seqLen);
    checkQueries(this.storage.arena, this.nqHeads, this.headDim, qOff, lseOff, positions, true);
    checkSpan(this.storage.arena, 'out', outOff, positions.length * this.nqHeads * this.headDim);
    const { scale } = resolveAttentionOptions(call, this.headDim);
    const pick = checkInt('pick (-1 = dense)', call.pick ?? this.config.pick, -1);
    const init = checkInt('init', call.init ?? this.config.init, 0);
    const local = checkInt('local', call.local ?? this.config.local, 0);
    const importance = this.config.decodeImportance !== 'off' && !this.isDenseLayer(layer);
    const qBytes = positions.length * this.nqHeads * this.headDim * 4;
    if (importance && outOff < qOff + qBytes && qOff < outOff + qBytes) {
      throw new ConfigError('out (decodeImportance reads q after the attention)', 'a buffer disjoint from q', `out at ${outOff}, q at ${qOff}`);
    }
    const step = this.step;
    const n = positions.length;
    if (n === 0) return this.denseStep(seqLen, -1);
    let minPos = positions[0]!;
    for (let i = 1; i < n; i++) minPos = Math.min(minPos, positions[i]!);
    const slot = slotOf(this.config, layer);
    if (slot < 0 || pick < 0) {
      this.denseStep(seqLen, slot);
    } else {
      let rec = this.selections.get(slot, row);
      const fresh = needsSelection(this.config, layer, tokenIdx, rec, seqLen);
      if (fresh) rec = this.select(layer, slot, row, table, seqLen, minPos, qOff, n, pick, init, local);
      if (rec!.dense) this.denseStep(seqLen, slot);
      else expandSelection(rec!, seqLen, this.blockLen, minPos, step);
      step.fresh = fresh;
      step.slot = slot;
    }
    this.groups.run(ks, step, layer, table, seqLen, qOff, outOff, lseOff, positions, call);
    if (importance) this.decodeImportance(ks, layer, table, seqLen, qOff, lseOff, positions, scale);
    return step;
  }

  /** A copy of the selection stored for (layer's slot, row), or null (dense layer, none yet). */
  selection(layer: number, row: number): StoredSelection | null {
    checkIndex('layer', layer, this.nLayers);
    const slot = slotOf(this.config, layer);
    const r = slot < 0 ? undefined : this.selections.get(slot, row);
    if (!r) return null;
    const chosen = Array.from({ length: r.nGroups }, (_, g) => Array.from(r.chosen.subarray(g * r.capacity, g * r.capacity + r.count)));
    return { dense: r.dense, seqLenAt: r.seqLenAt, recentStart: r.recentStart, chosen };
  }

  /** A copy of one physical block's anchors [anchorNum, nqHeads, headDim]. */
  getAnchors(layer: number, block: number): Float32Array {
    return this.anchors.get(layer, block);
  }

  /** Overwrite one physical block's anchors [anchorNum, nqHeads, headDim] (kept until recomputed). */
  setAnchors(layer: number, block: number, data: ArrayLike<number>): void {
    this.anchors.set(layer, block, data);
  }

  /** A copy of one physical block's importance [blockLen, nqHeads]. */
  getImportance(layer: number, block: number): Float32Array {
    return this.importance.get(layer, block);
  }

  /** Overwrite one physical block's importance [blockLen, nqHeads]. */
  setImportance(layer: number, block: number, data: ArrayLike<number>): void {
    this.importance.set(layer, block, data);
  }

  /** Whether one physical block's anchors are computed (or set) for its current keys. */
  hasAnchors(layer: number, block: number): boolean {
    checkIndex('layer', layer, this.nLayers);
    checkIndex('block (physical id)', block, this.storage.nBlocks);
    return this.anchors.isValid(layer, block);
  }

  /**
   * Forget the anchors (recomputed when next scored) and, unless clearImportance is false, the
   * importance of physical blocks whose keys changed, in every layer (NOTE(3)).
   */
  invalidateBlocks(blocks: ArrayLike<number>, clearImportance = true): void {
    for (let i = 0; i < blocks.length; i++) checkIndex(`blocks[${i}] (physical id)`, blocks[i], this.storage.nBlocks);
    for (let i = 0; i < blocks.length; i++) {
      this.anchors.invalidate(blocks[i]!);
      if (clearImportance) this.importance.clearBlockAllLayers(blocks[i]!);
    }
  }

  /** Drop the stored selections of a row (NOTE(1)). */
  forgetRow(row: number): void {
    this.selections.forgetRow(row);
  }

  /** Drop every selection, anchor and importance value. */
  reset(): void {
    this.selections.clear();
    this.anchors.invalidateAll();
    this.importance.clearAll();
  }

  /** Free the arena scratch; later attend / afterPrefill / accumulateImportance throw DisposedError. */
  dispose(): void {
    this.scratch.dispose();
    this.disposed = true;
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('sparse attention', 'a live SparseAttention', 'a disposed one');
  }

  private computeBlockAnchors(layer: number, phys: number): void {
    const c = this.config;
    decodeBlockKeys(this.storage, layer, phys, this.blockLen, this.keys);
    const imp = c.anchorType === 'dynamic' ? this.importance.layer(layer) : null;
    computeAnchors(c.anchorType, this.anchors.shape, this.keys, this.blockLen, imp, phys * this.importance.blockFloats, this.anchors.layer(layer), phys * this.anchors.blockFloats);
    this.anchors.markValid(layer, phys);
  }

  /** A new selection for (slot, row) from the query (selection-store.ts NOTE(1), block-select.ts). */
  private select(layer: number, slot: number, row: number, table: Int32Array, seqLen: number, minPos: number, qOff: number, nTokens: number, pick: number, init: number, local: number): SelectionRecord {
    const b = selectionBounds(seqLen, this.blockLen, init, local, minPos, this.bounds);
    const scorable = b.recentStart - b.initN;
    const nPicked = Math.min(pick, scorable);
    const rec = this.selections.obtain(slot, row, b.initN + nPicked);
    rec.seqLenAt = seqLen;
    rec.recentStart = b.recentStart;
    rec.dense = this.config.denseFallback && scorable <= pick;
    rec.count = rec.dense ? 0 : b.initN + nPicked;
    if (rec.dense) return rec;
    for (let i = b.initN; i < b.recentStart; i++) if (!this.anchors.isValid(layer, table[i]!)) this.computeBlockAnchors(layer, table[i]!);
    if (this.scores.length < this.nGroups * scorable) this.scores = new Float64Array(this.nGroups * scorable);
    if (this.rank.length < scorable) this.rank = new Int32Array(scorable);
    const s = { anchorNum: this.config.anchorNum, nqHeads: this.nqHeads, nKvHeads: this.nKvHeads, headDim: this.headDim };
    scoreBlocks(this.anchors.layer(layer), s, this.config.retrievalType, table, b.initN, b.recentStart, this.storage.arena.f32, qOff >> 2, nTokens, this.scores);
    for (let g = 0; g < this.nGroups; g++) {
      const at = g * rec.capacity;
      for (let i = 0; i < b.initN; i++) rec.chosen[at + i] = i;
      topBlocks(this.scores, g * scorable, scorable, pick, b.initN, this.rank, rec.chosen, at + b.initN);
    }
    return rec;
  }

  /** Fill the step as dense attention over every block of the row. */
  private denseStep(seqLen: number, slot: number): SparseStep {
    const step = this.step;
    const nBlocks = Math.ceil(seqLen / this.blockLen);
    step.reserve(1, nBlocks);
    step.tables.set(this.allBlocks(seqLen).subarray(0, nBlocks));
    step.dense = true;
    step.fresh = false;
    step.slot = slot;
    step.seqLen = seqLen;
    step.nBlocks = nBlocks;
    step.counts[0] = nBlocks;
    step.lengths[0] = seqLen;
    return step;
  }

  /** Decode-time importance (sparse-config.ts NOTE(3)) from this call's q and lse. */
  private decodeImportance(ks: KernelSet, layer: number, table: Int32Array, seqLen: number, qOff: number, lseOff: number, positions: Int32Array, scale: number): void {
    if (seqLen === 0) return;
    const step = this.step;
    const open = Math.floor((seqLen - 1) / this.blockLen); // the block holding the newest token
    if (open * this.blockLen >= seqLen - positions.length) this.importance.clearBlock(layer, table[open]!);
    if (this.config.decodeImportance === 'tail' || step.dense) {
      const from = this.config.decodeImportance === 'tail' ? open : 0;
      this.addImportance(ks, layer, table, seqLen, qOff, lseOff, positions, scale, this.allBlocks(seqLen), from, open + 1 - from, 0, this.nqHeads);
      return;
    }
    const perGroup = this.nqHeads / step.nGroups;
    for (let g = 0; g < step.nGroups; g++) {
      this.addImportance(ks, layer, table, seqLen, qOff, lseOff, positions, scale, step.tables, g * step.stride, step.counts[g]!, g * perGroup, perGroup);
    }
  }

  private addImportance(ks: KernelSet, layer: number, table: Int32Array, seqLen: number, qOff: number, lseOff: number, positions: Int32Array, scale: number, blocks: Int32Array, b0: number, nb: number, h0: number, hc: number): void {
    const qz = this.qz;
    qz.qOff = qOff;
    qz.lseOff = lseOff;
    qz.positions = positions;
    qz.t0 = 0;
    qz.m = positions.length;
    qz.scale = scale;
    accumulateImportance(ks, this.storage, this.scratch, this.importance.layer(layer), this.nqHeads, layer, table, seqLen, blocks, b0, nb, qz, h0, hc);
  }

  /** lse [nTokens, nqHeads] of dense attention of the queries over the row, in scratch; returns its offset. */
  private denseLse(ks: KernelSet, layer: number, table: Int32Array, seqLen: number, qOff: number, positions: Int32Array, opts?: AttentionOptions): number {
    const n = positions.length;
    const outS = this.scratch.get('importance.out', n * this.nqHeads * this.headDim * 4); // [n, nqHeads, headDim]
    const lseS = this.scratch.get('importance.lse', n * this.nqHeads * 4); // [n, nqHeads]
    const view = this.lseView;
    const nBlocks = Math.ceil(seqLen / this.blockLen);
    fillBlockView(view, this.storage, layer, table, seqLen, this.allBlocks(seqLen), 0, nBlocks, -1);
    ks.attention(qOff, outS, lseS, positions, this.nqHeads, view, opts);
    return lseS;
  }

  /** [>= nBlocks of the row] 0, 1, 2, ... */
  private allBlocks(seqLen: number): Int32Array {
    const n = Math.ceil(seqLen / this.blockLen);
    if (this.iota.length < n) {
      this.iota = new Int32Array(Math.max(n, 2 * this.iota.length));
      for (let i = 0; i < this.iota.length; i++) this.iota[i] = i;
    }
    return this.iota;
  }
}
