/**
 * Many sequences of one model over one paged KV cache: the engine side of batched generation.
 * A session owns a PagedKVCache sized for the model, a Workspace for `maxStepTokens` tokens and
 * `maxSeqs` logits rows, and a Forward over the model's weights (shared with the LanguageModel).
 *
 *   step([{seq, ids, logits}, ...])  one forward over every item's tokens (weights read once):
 *        reserve all ─▶ Forward.runBatch ─▶ commit all ─▶ logitsRow(i) for items that asked
 *
 * NOTE(1): A step is all-or-nothing for the pool: if any item cannot reserve its blocks, the
 *   reservations already made are cancelled and step() returns false (capacity is a value,
 *   DESIGN decision 6); the caller schedules fewer tokens or frees sequences.
 * NOTE(2): The prefix cache's blocks are keyed by the model fingerprint (fingerprint.ts), so
 *   another model, or these weights in another dtype, never reuses them.
 */
import type { DType } from '../core/dtype.js';
import { ConfigError, DisposedError, checkInt } from '../core/errors.js';
import type { KVView } from '../kv/types.js';
import { PagedKVCache } from '../kv/paged/paged-cache.js';
import { DEFAULT_BLOCK_LEN } from '../kv/paged/paged-config.js';
import { modelFingerprint } from './fingerprint.js';
import { Forward, Workspace, type BatchPart } from './forward.js';
import type { LanguageModel } from './language-model.js';
import { ropeInvFreq } from './rope-freqs.js';
import type { SequenceKV } from './sequence-kv.js';

export interface PagedSessionOptions {
  /** KV dtype of K and V unless kvK / kvV say otherwise. Default 'f32'. */
  kv?: DType;
  kvK?: DType;
  kvV?: DType;
  /** Token slots per block. Default 32. */
  blockLen?: number;
  /** Pool size in blocks (null block included). Default: room for maxSeqs x 1024 tokens. */
  nBlocks?: number;
  /** Tokens per step (decode tokens + prefill chunks). Default 64. */
  maxStepTokens?: number;
  /** Sequences that may ask for logits in one step. Default 16. */
  maxSeqs?: number;
  /** Default namespace of prefix-cache hashes. */
  namespace?: string;
}

export interface StepItem {
  readonly seq: number;
  /** Tokens to run, at the sequence's next positions. */
  readonly ids: ArrayLike<number>;
  /** Whether to compute logits of the last token. */
  readonly logits: boolean;
}

/** One sequence of the paged cache as the forward pass sees it; pos0 frozen while reserved. */
class PagedSequenceKV implements SequenceKV {
  pos0 = 0;
  constructor(
    private readonly cache: PagedKVCache,
    public seq: number,
  ) {}
  nextPos(): number {
    return this.pos0;
  }
  append(layer: number, k: Float32Array, v: Float32Array): void {
    this.cache.write(layer, this.seq, k, v);
  }
  view(layer: number): KVView {
    return this.cache.view(layer, this.seq);
  }
}

export class PagedSession {
  readonly cache: PagedKVCache;
  readonly maxStepTokens: number;
  readonly maxSeqs: number;
  private readonly ws: Workspace;
  private readonly forward: Forward;
  private readonly ids: Int32Array; // [maxStepTokens] the step's tokens
  private readonly logitRows: Float32Array; // [maxSeqs, vocab] copied out of the arena
  private readonly rowOfItem: Int32Array; // [maxSeqs] logits row of item i, -1 when none
  private lastItems = 0;
  private readonly kvs: PagedSequenceKV[] = [];
  private readonly parts: { start: number; n: number; pos0: number; kv: SequenceKV; nLogits: number }[] = [];
  private disposed = false;

  constructor(
    readonly lm: LanguageModel,
    opts: PagedSessionOptions = {},
  ) {
    const m = lm.model;
    const s = m.shape;
    this.maxStepTokens = checkInt('maxStepTokens', opts.maxStepTokens ?? 64, 1);
    this.maxSeqs = checkInt('maxSeqs', opts.maxSeqs ?? 16, 1, this.maxStepTokens);
    const blockLen = checkInt('blockLen', opts.blockLen ?? DEFAULT_BLOCK_LEN, 1);
    const kv = opts.kv ?? 'f32';
    this.cache = new PagedKVCache({
      arena: m.arena, nLayers: s.nLayers, nKvHeads: s.nKvHeads, headDim: s.headDim,
      kDtype: opts.kvK ?? kv, vDtype: opts.kvV ?? kv,
      nBlocks: opts.nBlocks ?? 1 + Math.ceil((this.maxSeqs * 1024) / blockLen), blockLen,
      fingerprint: modelFingerprint(m.dir, m.weights.embed.dtype), namespace: opts.namespace,
      rope: { invFreq: ropeInvFreq(m.config), rotaryDim: s.rotaryDim, pairing: s.ropePairing },
    });
    try {
      this.ws = new Workspace(lm.ks, s, this.maxStepTokens, this.maxSeqs);
    } catch (e) {
      this.cache.dispose();
      throw e;
    }
    this.forward = new Forward(lm.ks, s, m.weights, this.ws);
    this.ids = new Int32Array(this.maxStepTokens);
    this.logitRows = new Float32Array(this.maxSeqs * s.vocab);
    this.rowOfItem = new Int32Array(this.maxSeqs);
  }

  /** Run one step (NOTE(1)); false when the pool could not hold every item's new tokens. */
  step(items: readonly StepItem[]): boolean {
    if (this.disposed) throw new DisposedError('paged session', 'a live session', 'a disposed session');
    if (items.length > this.maxSeqs) throw new ConfigError('step items', `at most maxSeqs = ${this.maxSeqs}`, items.length);
    let T = 0;
    for (const it of items) T += it.ids.length;
    checkInt('tokens in the step', T, 1, this.maxStepTokens);
    const seen = new Set<number>();
    for (const it of items) {
      if (seen.has(it.seq)) throw new ConfigError('step items', 'each sequence at most once', `sequence ${it.seq} twice`);
      seen.add(it.seq);
      if (it.ids.length === 0) throw new ConfigError(`step item of sequence ${it.seq}`, 'at least one token', 0);
    }
    const parts = this.parts;
    parts.length = 0;
    this.lastItems = 0;
    let start = 0;
    let row = 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const kv = (this.kvs[i] ??= new PagedSequenceKV(this.cache, it.seq));
      kv.seq = it.seq;
      kv.pos0 = this.cache.nextPos(it.seq);
      if (!this.cache.reserve(it.seq, it.ids.length, it.ids)) {
        for (let j = 0; j < i; j++) this.cache.cancel(items[j]!.seq);
        return false;
      }
      for (let t = 0; t < it.ids.length; t++) this.ids[start + t] = it.ids[t]!;
      parts.push({ start, n: it.ids.length, pos0: kv.pos0, kv, nLogits: it.logits ? 1 : 0 });
      this.rowOfItem[i] = it.logits ? row++ : -1;
      start += it.ids.length;
    }
    try {
      this.forward.runBatch(this.ids.subarray(0, T), parts);
    } catch (e) {
      for (const it of items) this.cache.cancel(it.seq);
      throw e;
    }
    for (const it of items) this.cache.commit(it.seq);
    this.lastItems = items.length;
    const vocab = this.lm.model.shape.vocab;
    const off = this.ws.logits >> 2;
    this.logitRows.set(this.lm.ks.arena.f32.subarray(off, off + row * vocab));
    return true;
  }

  /** Logits of item i of the last step (it must have asked for them); valid until the next step. */
  logitsOf(i: number): Float32Array {
    const r = i >= 0 && i < this.lastItems ? this.rowOfItem[i]! : -1;
    if (r < 0) throw new ConfigError(`logits of step item ${i}`, 'an item that asked for logits', 'none');
    const vocab = this.lm.model.shape.vocab;
    return this.logitRows.subarray(r * vocab, (r + 1) * vocab);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.forward.dispose();
    this.ws.dispose();
    this.cache.dispose();
  }
}
