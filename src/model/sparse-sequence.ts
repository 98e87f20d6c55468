/**
 * One sequence of a model with block-sparse attention (kv/sparse, ktransformers' long-context
 * mode): its K/V in a PagedKVCache of `blockLen`-token blocks, a SparseAttention that keeps the
 * blocks' anchors and selections, and the SequenceKV adapter the forward pass runs over.
 *
 *   begin(n, lastOfPrompt) ─▶ reserve n positions, block table taken once for the step
 *   Forward: per layer  append (cache.write) ─▶ attend:
 *                         prompt chunk (n > 1): dense attention; last chunk: afterPrefill
 *                                                (importance of the last queries, anchors)
 *                         decode token (n = 1): SparseAttention.attend (select or reuse)
 *   end() ─▶ commit; anchors of the blocks that filled during decode
 *
 * NOTE(1): Prefill is dense, as in ktransformers: the sparse selection serves decoding, where
 *   one query reads the whole cache per token. The prompt's anchors and importance are computed
 *   once, after its last chunk, so DYNAMIC anchors see the importance of the prompt's last queries.
 * NOTE(2): Token i of the sequence sits at position i (the sparse core's row model): the sequence
 *   is only ever appended to or reset, never edited or shifted.
 * NOTE(3): Statistics (`stats`) count, over decode steps and sparse layers, the keys attended
 *   against the keys a dense step would read: what the CLI reports as the attended fraction.
 *   With `measureError` the dense attention of each decode query is also computed and the
 *   relative error of the sparse output accumulated (a benchmark / diagnostics mode: it costs a
 *   dense attention per layer and step).
 */
import type { Arena } from '../core/arena.js';
import type { DType } from '../core/dtype.js';
import { CapacityError, StateError, checkInt } from '../core/errors.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import type { AttentionOptions } from '../kernels/types.js';
import { PagedKVCache } from '../kv/paged/paged-cache.js';
import { SparseAttention, type SparseCallOptions } from '../kv/sparse/sparse-attention.js';
import type { SparseOptions } from '../kv/sparse/sparse-config.js';
import type { KVView } from '../kv/types.js';
import type { SequenceKV } from './sequence-kv.js';

/** Default block length of the sparse mode (ktransformers' 128: fewer, larger blocks to score). */
export const DEFAULT_SPARSE_BLOCK_LEN = 128;

export interface SparseSequenceOptions extends SparseOptions {
  /** Tokens per block (default 128). */
  blockLen?: number;
  /** Also run dense attention on decode steps and accumulate the sparse output's error (NOTE(3)). */
  measureError?: boolean;
}

export interface SparseSequenceShape {
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** Decode-time statistics (NOTE(3)). */
export interface SparseStats {
  /** Decode steps run. */
  steps: number;
  /** Keys read by sparse layers' decode attention, summed over layers, groups and steps (per group). */
  attendedKeys: number;
  /** Keys a dense decode attention would have read on the same layers and steps (per group). */
  denseKeys: number;
  /** New selections made (per layer slot). */
  selections: number;
  /** With measureError: sum of squared error and of squared dense output, over decode steps. */
  errSq: number;
  refSq: number;
}

export class SparseSequence implements SequenceKV {
  readonly cache: PagedKVCache;
  readonly sparse: SparseAttention;
  readonly blockLen: number;
  readonly maxSeqLen: number;
  readonly stats: SparseStats = { steps: 0, attendedKeys: 0, denseKeys: 0, selections: 0, errSq: 0, refSq: 0 };
  /** Also run dense attention per decode step and accumulate the sparse output's error (NOTE(3)). */
  measureError: boolean;
  /** Decode densely over the same blocks (pick -1): the dense baseline on the same cache. */
  forceDense = false;
  /** The per-call options of a forceDense step (reused: no allocation per layer and token). */
  private readonly denseCall: SparseCallOptions = { pick: -1 };
  private seq: number;
  /** Position of the step's first token (frozen while the step's positions are reserved). */
  private pos0 = 0;
  /** Tokens of the open step (0: none). */
  private stepN = 0;
  /** The open step is the last chunk of a prompt that started at promptFrom. */
  private lastOfPrompt = false;
  private promptFrom = 0;
  /** Decode tokens since the last prompt (the schedule's generate_token_idx). */
  private tokenIdx = 0;
  /** [blocks of the sequence] physical ids, taken once per step. */
  private table: Int32Array = new Int32Array(0);
  /** Arena scratch for measureError: dense out [nHeads, headDim] and lse [nHeads]. */
  private refOut = -1;
  private refLse = -1;

  constructor(arena: Arena, shape: SparseSequenceShape, kDtype: DType, vDtype: DType, maxSeqLen: number, opts: SparseSequenceOptions = {}) {
    this.blockLen = checkInt('sparse blockLen', opts.blockLen ?? DEFAULT_SPARSE_BLOCK_LEN, 1);
    this.maxSeqLen = checkInt('maxSeqLen', maxSeqLen, 1);
    const { blockLen: _b, measureError, ...sparseOpts } = opts;
    this.measureError = measureError === true;
    this.cache = new PagedKVCache({
      arena, nLayers: shape.nLayers, nKvHeads: shape.nKvHeads, headDim: shape.headDim, kDtype, vDtype,
      nBlocks: 1 + Math.ceil(this.maxSeqLen / this.blockLen), blockLen: this.blockLen, fingerprint: 'sparse-sequence',
    });
    try {
      this.sparse = new SparseAttention(this.cache.storage, shape.nHeads, sparseOpts);
    } catch (e) {
      this.cache.dispose();
      throw e;
    }
    this.seq = this.cache.seqAdd().seq;
  }

  /** Tokens held. */
  seqLen(): number {
    return this.cache.seqLen(this.seq);
  }

  /** Bytes of K/V storage per token (all layers). */
  get bytesPerToken(): number {
    return this.cache.storage.sizeBytes / (this.cache.totalBlocks * this.blockLen);
  }

  nextPos(): number {
    return this.stepN > 0 ? this.pos0 : this.cache.nextPos(this.seq);
  }

  /**
   * Open a step of n tokens (a prompt chunk, or one decode token when !prompt). `lastOfPrompt`
   * marks the prompt's last chunk; `promptFrom` is where the prompt started.
   */
  begin(n: number, prompt: boolean, lastOfPrompt: boolean, promptFrom: number): void {
    if (this.stepN > 0) throw new StateError('sparse sequence step', 'no open step', `${this.stepN} tokens open`);
    const pos0 = this.cache.nextPos(this.seq);
    if (pos0 + n > this.maxSeqLen) throw new CapacityError('sparse sequence', `at most ${this.maxSeqLen} positions (maxSeqLen)`, pos0 + n);
    if (!this.cache.reserve(this.seq, n)) throw new CapacityError('sparse sequence blocks', `room for ${n} more tokens`, `${this.cache.availableBlocks} free blocks`);
    this.pos0 = pos0;
    this.stepN = n;
    this.lastOfPrompt = lastOfPrompt;
    this.promptFrom = promptFrom;
    if (prompt) this.tokenIdx = 0;
    this.table = this.cache.blockTable(this.seq);
  }

  /** Close the step: commit, and anchor the blocks that decode filled. */
  end(): void {
    const n = this.stepN;
    if (n === 0) return;
    this.cache.commit(this.seq);
    this.stepN = 0;
    if (n === 1 && !this.lastOfPrompt) {
      // Anchors only when this token filled a block (the common token fills none).
      if ((this.pos0 + 1) % this.blockLen === 0) {
        for (let l = 0; l < this.cache.nLayers; l++) this.sparse.onBlocksFilled(l, this.table, this.pos0, this.pos0 + 1);
      }
      this.tokenIdx++;
      this.stats.steps++;
    }
  }

  /** Drop an open step (after an error): the reserved positions are released. */
  cancel(): void {
    if (this.stepN === 0) return;
    this.cache.cancel(this.seq);
    this.stepN = 0;
  }

  append(layer: number, k: Float32Array, v: Float32Array): void {
    this.cache.write(layer, this.seq, k, v);
  }

  view(layer: number): KVView {
    return this.cache.view(layer, this.seq);
  }

  attend(ks: KernelSet, layer: number, qOffset: number, outOffset: number, lseOffset: number, positions: Int32Array, nHeads: number, opts: AttentionOptions): void {
    const len = this.pos0 + positions.length;
    if (positions.length > 1 || this.lastOfPrompt) {
      ks.attention(qOffset, outOffset, lseOffset, positions, nHeads, this.cache.view(layer, this.seq), opts);
      if (this.lastOfPrompt) this.sparse.afterPrefill(ks, layer, this.table, this.promptFrom, len, qOffset, positions, lseOffset, opts);
      else this.sparse.onBlocksFilled(layer, this.table, this.pos0, len);
      return;
    }
    const step = this.sparse.attend(ks, layer, 0, this.table, len, qOffset, outOffset, lseOffset, positions, this.tokenIdx, this.forceDense ? this.denseOptions(opts) : opts);
    if (step.slot >= 0) {
      for (let g = 0; g < step.nGroups; g++) this.stats.attendedKeys += step.dense ? len : step.lengths[g]!;
      this.stats.denseKeys += step.nGroups * len;
      if (step.fresh) this.stats.selections++;
      if (this.measureError) this.accumulateError(ks, layer, qOffset, outOffset, positions, nHeads, opts);
    }
  }

  private denseOptions(opts: AttentionOptions): SparseCallOptions {
    this.denseCall.scale = opts.scale;
    this.denseCall.window = opts.window;
    return this.denseCall;
  }

  /** Dense attention of the same query into scratch; add its squared error against the sparse out. */
  private accumulateError(ks: KernelSet, layer: number, qOffset: number, outOffset: number, positions: Int32Array, nHeads: number, opts: AttentionOptions): void {
    if (this.refOut < 0) {
      this.refOut = ks.arena.alloc(nHeads * this.cache.headDim * 4); // [nHeads, headDim] dense out of one query
      this.refLse = ks.arena.alloc(nHeads * 4); // [nHeads]
    }
    ks.attention(qOffset, this.refOut, this.refLse, positions, nHeads, this.cache.view(layer, this.seq), opts);
    const f32 = ks.arena.f32;
    const n = nHeads * this.cache.headDim;
    const a = outOffset >> 2;
    const r = this.refOut >> 2;
    for (let i = 0; i < n; i++) {
      const d = f32[a + i]! - f32[r + i]!;
      this.stats.errSq += d * d;
      this.stats.refSq += f32[r + i]! * f32[r + i]!;
    }
  }

  /** Forget the sequence (storage kept): a new empty sequence, no anchors, selections or statistics. */
  reset(): void {
    this.cancel();
    this.cache.seqFree(this.seq);
    this.cache.clearPrefixCache();
    this.sparse.reset();
    this.seq = this.cache.seqAdd().seq;
    this.tokenIdx = 0;
    Object.assign(this.stats, { steps: 0, attendedKeys: 0, denseKeys: 0, selections: 0, errSq: 0, refSq: 0 });
  }

  dispose(): void {
    this.sparse.dispose();
    if (this.refOut >= 0) {
      this.cache.arena.free(this.refOut);
      this.cache.arena.free(this.refLse);
    }
    this.cache.dispose();
  }
}
