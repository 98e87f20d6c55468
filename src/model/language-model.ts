/**
 * A loaded model ready to run: weights in the arena, a KernelSet, one KV cache (a single
 * sequence), a workspace, and the tokenizer when the folder has one.
 *
 * NOTE(1): `feed` runs any number of tokens in workspace-sized chunks and returns the logits of
 *   the last one, copied into a buffer reused across calls (the arena may grow between calls,
 *   so handing out an arena view would be fragile); read it before the next feed.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Arena } from '../core/arena.js';
import { defaultArena } from '../core/arena.js';
import { parseDType, type DType } from '../core/dtype.js';
import { checkInt, ConfigError, DisposedError, StateError } from '../core/errors.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import { kernelsFor } from '../kernels/registry.js';
import { StaticCache } from '../kv/static-cache.js';
import type { ModelConfig } from './config.js';
import { Forward, Workspace } from './forward.js';
import { SparseSequence, type SparseSequenceOptions } from './sparse-sequence.js';
import { loadGenerationConfig, type GenerationDefaults } from './generation-config.js';
import { TextTokenizer } from './tokenizer.js';
import { loadModel, type LoadedModel } from './weights.js';

export interface LanguageModelOptions {
  /** Weight matrices dtype. Default 'f32'. */
  weights?: DType;
  /** KV dtype (both K and V unless kvK / kvV say otherwise). Default 'f32'. */
  kv?: DType;
  kvK?: DType;
  kvV?: DType;
  /** Cache positions. Default min(config max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /**
   * Block-sparse attention for decoding (kv/sparse, ktransformers' long-context mode): the
   * sequence lives in `blockLen`-token blocks and each decode step attends init + top-`pick` +
   * local blocks (model/sparse-sequence.ts). Absent: a dense static cache.
   */
  sparse?: SparseSequenceOptions;
  /** Tokens per prefill chunk. Default 64. */
  chunk?: number;
  threads?: number;
  arena?: Arena;
  /** Loading progress: tensors done, tensors in all, the tensor just placed. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

/** What setCache (and the constructor) take to make the sequence's cache. */
export type CacheOptions = Pick<LanguageModelOptions, 'kv' | 'kvK' | 'kvV' | 'maxSeqLen' | 'sparse'>;

export class LanguageModel {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer | null;
  /** generation_config.json defaults (greedy when the folder has none). */
  readonly generation: GenerationDefaults;
  readonly ks: KernelSet;
  /** The dense cache; null in sparse mode. */
  private kvCache: StaticCache | null;
  /** The sparse sequence; null in dense mode. */
  private sparseSeq: SparseSequence | null = null;
  private seqCapacity: number;
  /** The weights in the arena (shared by every cache and session of this model). */
  readonly model: LoadedModel;
  private readonly ws: Workspace;
  private readonly forward: Forward;
  private readonly logits: Float32Array; // [vocab]
  private readonly idsBuf: Int32Array; // [chunk] ids of the chunk being run
  private disposed = false;
  private cacheOptions: CacheOptions = {};
  private cacheOwner: object | null = null;

  private constructor(model: LoadedModel, tokenizer: TextTokenizer | null, generation: GenerationDefaults, opts: LanguageModelOptions) {
    this.model = model;
    this.generation = generation;
    this.config = model.config;
    this.tokenizer = tokenizer;
    const s = model.shape;
    this.ks = kernelsFor(model.arena, opts.threads);
    this.seqCapacity = 0;
    this.kvCache = this.makeCache(opts);
    this.ws = new Workspace(this.ks, s, checkInt('chunk', opts.chunk ?? 64, 1), 1);
    this.forward = new Forward(this.ks, s, model.weights, this.ws);
    this.logits = new Float32Array(s.vocab);
    this.idsBuf = new Int32Array(this.ws.maxChunk);
  }

  /** The dense KV cache of the sequence (replaced by setCache); StateError in sparse mode. */
  get cache(): StaticCache {
    if (this.kvCache === null) throw new StateError('LanguageModel.cache', 'a dense cache (no `sparse` option)', 'sparse mode: see `sparse`');
    return this.kvCache;
  }

  /** The sparse sequence (its paged cache, SparseAttention and statistics), or null in dense mode. */
  get sparse(): SparseSequence | null {
    return this.sparseSeq;
  }

  /** K and V dtypes of the cache. */
  get kvDtypes(): { readonly k: DType; readonly v: DType } {
    const c = this.kvCache ?? this.sparseSeq!.cache;
    return { k: c.kDtype, v: c.vDtype };
  }

  /** Positions the cache holds. */
  get maxSeqLen(): number {
    return this.seqCapacity;
  }

  /** A new cache for `opts` (dense, or the sparse sequence); returns the dense one or null. */
  private makeCache(opts: CacheOptions): StaticCache | null {
    const s = this.model.shape;
    const maxSeqLen = checkInt('maxSeqLen', opts.maxSeqLen ?? Math.min(this.model.config.maxPositionEmbeddings, 4096), 1);
    const kv = parseDType(opts.kv ?? 'f32', 'kv dtype');
    const k = parseDType(opts.kvK ?? kv, 'kv-k dtype');
    const v = parseDType(opts.kvV ?? kv, 'kv-v dtype');
    let cache: StaticCache | null = null;
    if (opts.sparse) {
      this.sparseSeq = new SparseSequence(this.model.arena, s, k, v, maxSeqLen, opts.sparse);
    } else {
      cache = new StaticCache({
        nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, maxSeqLen, kDtype: k, vDtype: v, layout: 'bshd', arena: this.model.arena,
      });
    }
    this.seqCapacity = maxSeqLen;
    this.cacheOptions = opts;
    return cache;
  }

  /** Free the current cache (dense or sparse). */
  private freeCache(): void {
    this.kvCache?.dispose();
    this.kvCache = null;
    this.sparseSeq?.dispose();
    this.sparseSeq = null;
  }

  /**
   * Replace the KV cache with an empty one of other dtypes or capacity, keeping the weights (no
   * reload). The old cache's storage is freed first so the arena can reuse it; when the new one
   * does not fit (or an option is bad), an empty cache of the old kind is put back and the error
   * is thrown.
   */
  setCache(opts: CacheOptions): void {
    if (this.disposed) throw new DisposedError('language model', 'a live model', 'a disposed model');
    const kv = parseDType(opts.kv ?? 'f32', 'kv dtype');
    parseDType(opts.kvK ?? kv, 'kv-k dtype');
    parseDType(opts.kvV ?? kv, 'kv-v dtype');
    checkInt('maxSeqLen', opts.maxSeqLen ?? 1, 1);
    const old = this.cacheOptions;
    this.freeCache();
    try {
      this.kvCache = this.makeCache(opts);
    } catch (e) {
      this.kvCache = this.makeCache(old); // fits: its storage was just freed
      throw e;
    }
  }

  /** Load a checkpoint folder (and its tokenizer, when tokenizer.json is there). */
  static async load(dir: string, opts: LanguageModelOptions = {}): Promise<LanguageModel> {
    const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? await TextTokenizer.load(dir) : null;
    const generation = loadGenerationConfig(dir);
    const model = loadModel(dir, { weights: opts.weights, arena: opts.arena ?? defaultArena(), onProgress: opts.onProgress });
    try {
      return new LanguageModel(model, tokenizer, generation, opts);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /** Token ids of `text` with the checkpoint's tokenizer; ConfigError when the folder has none. */
  encode(text: string): number[] {
    if (!this.tokenizer) throw new ConfigError(`${this.model.dir}/tokenizer.json`, 'a tokenizer to encode text (or pass token ids)', 'no tokenizer.json');
    return this.tokenizer.encode(text);
  }

  /** Forget the sequence (the cache's storage is kept). */
  resetCache(): void {
    this.kvCache?.reset();
    this.sparseSeq?.reset();
  }

  /** Run `ids` at positions pos0.. (the cache must hold exactly pos0 tokens); logits of the last id (NOTE(1)). */
  feed(ids: readonly number[], pos0: number): Float32Array {
    if (this.disposed) throw new DisposedError('language model', 'a live model', 'a disposed model');
    const chunk = this.ws.maxChunk;
    for (let p = 0; p < ids.length; p += chunk) {
      const n = Math.min(ids.length - p, chunk);
      const part = this.idsBuf.subarray(0, n); // reused: no per-token allocation of id arrays
      for (let i = 0; i < n; i++) part[i] = ids[p + i]!;
      const last = p + n === ids.length;
      if (this.sparseSeq) this.runSparse(part, pos0 + p, true, last, pos0);
      else this.forward.run(part, pos0 + p, this.kvCache!, 0, last ? 1 : 0);
    }
    return this.copyLogits();
  }

  /** One token at position `pos` (the decode step): feed([id], pos) without allocating. */
  feedToken(id: number, pos: number): Float32Array {
    if (this.disposed) throw new DisposedError('language model', 'a live model', 'a disposed model');
    const part = this.idsBuf.subarray(0, 1);
    part[0] = id;
    if (this.sparseSeq) this.runSparse(part, pos, false, false, pos);
    else this.forward.run(part, pos, this.kvCache!, 0, 1);
    return this.copyLogits();
  }

  /** One step of the sparse sequence: reserve, forward, commit (or release on error). */
  private runSparse(ids: Int32Array, pos0: number, prompt: boolean, lastOfPrompt: boolean, promptFrom: number): void {
    const sq = this.sparseSeq!;
    sq.begin(ids.length, prompt, lastOfPrompt, promptFrom);
    try {
      this.forward.runSequence(ids, pos0, sq, prompt && !lastOfPrompt ? 0 : 1);
    } catch (e) {
      sq.cancel();
      throw e;
    }
    sq.end();
  }

  /** The last run's logits row, out of the arena into the reused buffer (NOTE(1)). */
  private copyLogits(): Float32Array {
    const off = this.ws.logits / 4;
    this.logits.set(this.ks.arena.f32.subarray(off, off + this.logits.length));
    return this.logits;
  }

  /**
   * Take the single-sequence cache for a new generation: returns a token that `ownsCache`
   * recognises until someone claims the cache again. generate() checks it every step, so two
   * generations interleaved on one model fail loudly instead of mixing their K/V.
   */
  claimCache(): object {
    this.cacheOwner = {};
    return this.cacheOwner;
  }

  ownsCache(token: object): boolean {
    return this.cacheOwner === token;
  }

  /** Bytes of KV held for the current sequence. */
  get kvBytesUsed(): number {
    if (this.sparseSeq) return Math.round(this.sparseSeq.bytesPerToken * this.sparseSeq.seqLen());
    const perToken = this.kvCache!.kvBytes / this.seqCapacity;
    return Math.round(perToken * this.kvCache!.seqLen(0, 0));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ws.dispose();
    this.freeCache();
    this.model.dispose();
  }
}
