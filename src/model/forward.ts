/**
 * The decoder forward pass of Llama / Qwen2 / Qwen3 / Mistral over a KV cache, on a KernelSet
 * (fast WASM kernels or the reference, registry.ts). One call runs a chunk of new tokens of one
 * sequence (a batch row of the cache) and leaves logits for the last `nLogits` of them.
 *
 *   x = embed(ids)                                           [T, hidden]
 *   per layer:  xn = rmsnorm(x)
 *               q, k, v = xn Wq^T (+b), xn Wk^T (+b), xn Wv^T (+b)
 *               (Qwen3) q, k = rmsnorm per head
 *               q, k = rope(q, k, positions)
 *               cache[layer] += k, v          (written before attention: causal by position)
 *               x += attention(q, cache[layer]) Wo^T (+b)   (all sequences of a step in one call)
 *               xn = rmsnorm(x);  x += (silu(xn Wg^T) * (xn Wu^T)) Wd^T
 *   logits = rmsnorm(x[last nLogits]) Wlm^T                  [nLogits, vocab]
 *
 * NOTE(1): Every activation lives in one Workspace allocated once for `maxChunk` tokens, so the
 *   decode path allocates nothing per token (the positions array is reused too).
 * NOTE(2): K/V are appended through a SequenceKV (sequence-kv.ts) from an f32 view of the arena
 *   (no copy): the cache encodes them to its dtype. Dense caches and paged caches both adapt.
 * NOTE(3): runBatch runs several sequences in one step: the matmuls, norms and rope run over all
 *   the step's tokens at once (every weight matrix read once per step, whatever the batch). Per
 *   layer, every sequence appends its K/V first; then the sequences with one view attend in ONE
 *   KernelSet.attentionMany call (each over its own view and positions; views of any lengths,
 *   one parallel dispatch on the WASM kernels, results bit-identical to one call per sequence).
 *   Views are taken after all the appends. Prefill chunks of one sequence may sit beside decode
 *   tokens of others.
 * NOTE(4): A SequenceKV may expose several views (views(layer), e.g. KIVI: a quantized history
 *   and a full-precision recent window, each one dtype): such a sequence is left out of the
 *   attentionMany call; attention runs per view and the parts merge exactly through their LSE
 *   (kernels/ref/merge.ts; O(tokens x heads x headDim), cheap).
 * NOTE(5): A SequenceKV with its own attend() (sparse attention: which blocks to read depends on
 *   the queries) is left out of the attentionMany call too and attends itself, after its append.
 */
import { DisposedError, ShapeError, checkInt } from '../core/errors.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import type { AttentionCall } from '../kernels/types.js';
import type { KVView, LayeredKVCache } from '../kv/types.js';
import { mergeAttentionInto } from '../kernels/ref/merge.js';
import { DenseRowKV, type SequenceKV } from './sequence-kv.js';
import type { ForwardShape, LayerWeights, LinearWeight, ModelWeights } from './weights-layout.js';

/** Marks a part whose SequenceKV attends by itself (SequenceKV.attend, e.g. sparse attention). */
const SELF: readonly KVView[] = [];

/** Activation buffers (arena offsets, f32) for chunks of up to maxChunk tokens. */
export class Workspace {
  readonly maxChunk: number;
  readonly maxLogits: number;
  readonly x: number; // [maxChunk, hidden] residual stream
  readonly xn: number; // [maxChunk, max(hidden, nHeads * headDim)] normed input / projection output
  readonly q: number; // [maxChunk, nHeads * headDim]
  readonly k: number; // [maxChunk, nKvHeads * headDim]
  readonly v: number; // [maxChunk, nKvHeads * headDim]
  readonly attn: number; // [maxChunk, nHeads * headDim]
  readonly lse: number; // [maxChunk, nHeads]
  readonly attnPart: number; // [maxChunk, nHeads * headDim] attention over a sequence's second view (merged into attn)
  readonly lsePart: number; // [maxChunk, nHeads]
  readonly gate: number; // [maxChunk, intermediate]
  readonly up: number; // [maxChunk, intermediate]
  readonly logits: number; // [maxLogits, vocab]
  readonly positions: Int32Array; // [maxChunk]
  private readonly allocations: number[] = [];

  constructor(
    private readonly ks: KernelSet,
    s: ForwardShape,
    maxChunk: number,
    maxLogits = 1,
  ) {
    this.maxChunk = checkInt('maxChunk', maxChunk, 1);
    this.maxLogits = checkInt('maxLogits', maxLogits, 1, maxChunk);
    const qDim = s.nHeads * s.headDim;
    const kvDim = s.nKvHeads * s.headDim;
    const f = (n: number) => {
      const off = ks.arena.alloc(n * 4);
      this.allocations.push(off);
      return off;
    };
    this.x = f(maxChunk * s.hidden);
    this.xn = f(maxChunk * Math.max(s.hidden, qDim));
    this.q = f(maxChunk * qDim);
    this.k = f(maxChunk * kvDim);
    this.v = f(maxChunk * kvDim);
    this.attn = f(maxChunk * qDim);
    this.lse = f(maxChunk * s.nHeads);
    this.attnPart = f(maxChunk * qDim);
    this.lsePart = f(maxChunk * s.nHeads);
    this.gate = f(maxChunk * s.intermediate);
    this.up = f(maxChunk * s.intermediate);
    this.logits = f(this.maxLogits * s.vocab);
    this.positions = new Int32Array(maxChunk);
  }

  dispose(): void {
    if (this.ks.arena.isDisposed) return;
    for (const off of this.allocations.splice(0)) this.ks.arena.free(off);
  }
}

/** One sequence's share of a batched step: tokens [start, start + n) of the step's ids. */
export interface BatchPart {
  readonly start: number;
  readonly n: number;
  /** Position of the part's first token (must equal kv.nextPos()). */
  readonly pos0: number;
  readonly kv: SequenceKV;
  /** Logits wanted for the part's last nLogits tokens (0..n). */
  readonly nLogits: number;
}

export class Forward {
  private disposed = false;
  /** The one part of run(), reused (no allocation per decode step); kv set before each use. */
  private readonly single: { -readonly [K in keyof BatchPart]: BatchPart[K] }[] = [];
  /** The attentionMany calls of a layer, and the call objects they reuse (no allocation per step once warm). */
  private readonly calls: AttentionCall[] = [];
  private readonly callPool: { -readonly [K in keyof AttentionCall]: AttentionCall[K] }[] = [];
  /** Per part of the layer being run: its views when it has several (attended view by view), else null. */
  private readonly splitViews: (readonly KVView[] | null)[] = [];
  /** Adapters of run()'s (cache, row) pairs; weak so a replaced cache is not kept alive. */
  private readonly rowKV = new WeakMap<LayeredKVCache, DenseRowKV[]>();

  constructor(
    readonly ks: KernelSet,
    readonly shape: ForwardShape,
    readonly weights: ModelWeights,
    readonly ws: Workspace,
  ) {}

  /**
   * Run `ids` (at most ws.maxChunk) at positions pos0.. of `row` in `cache`, appending their
   * K/V; logits of the last `nLogits` tokens land in ws.logits ([nLogits, vocab]).
   */
  run(ids: Int32Array, pos0: number, cache: LayeredKVCache, row: number, nLogits: number): void {
    let rows = this.rowKV.get(cache);
    if (rows === undefined) this.rowKV.set(cache, (rows = []));
    this.runSequence(ids, pos0, (rows[row] ??= new DenseRowKV(cache, row)), nLogits);
  }

  /** run() over any SequenceKV (a paged or sparse sequence): one part, logits of the last nLogits tokens. */
  runSequence(ids: Int32Array, pos0: number, kv: SequenceKV, nLogits: number): void {
    const part = (this.single[0] ??= { start: 0, n: 0, pos0: 0, kv, nLogits: 0 });
    part.n = ids.length;
    part.pos0 = pos0;
    part.kv = kv;
    part.nLogits = nLogits;
    this.runBatch(ids, this.single);
  }

  /**
   * One step over several sequences (NOTE(3)): `ids` holds every part's tokens back to back; each
   * weight matrix is read once for all of them. Logits rows land in ws.logits in part order
   * ([sum of nLogits, vocab]).
   */
  runBatch(ids: Int32Array, parts: readonly BatchPart[]): void {
    if (this.disposed) throw new DisposedError('model forward', 'a live model', 'a disposed model');
    const T = ids.length;
    checkInt('step length', T, 1, this.ws.maxChunk);
    const s = this.shape;
    const ws = this.ws;
    let covered = 0;
    let nLogits = 0;
    for (const p of parts) {
      if (p.start !== covered) throw new ShapeError('batch parts (back to back from token 0)', `start ${covered}`, p.start);
      checkInt('batch part length', p.n, 1, T - covered);
      checkInt('nLogits', p.nLogits, 0, p.n);
      if (p.kv.nextPos() !== p.pos0) throw new ShapeError('batch part pos0 (must equal the sequence\'s next position)', p.kv.nextPos(), p.pos0);
      for (let i = 0; i < p.n; i++) ws.positions[p.start + i] = p.pos0 + i;
      covered += p.n;
      nLogits += p.nLogits;
    }
    if (covered !== T) throw new ShapeError('tokens covered by the batch parts', T, covered);
    checkInt('logits rows of the step', nLogits, 0, ws.maxLogits);
    const pos = ws.positions.subarray(0, T);
    const e = this.weights.embed;
    this.ks.embedding(e.offsetBytes, e.dtype, e.nOut, e.nIn, ids, ws.x);
    for (let l = 0; l < s.nLayers; l++) this.layer(l, this.weights.layers[l]!, T, pos, parts);
    if (nLogits > 0) this.logits(parts, nLogits);
  }

  /** Gather the rows that want logits into xn, then final norm and lm_head over them. */
  private logits(parts: readonly BatchPart[], nLogits: number): void {
    const { ws, shape: s } = this;
    const f32 = this.ks.arena.f32;
    let r = 0;
    for (const p of parts) {
      if (p.nLogits === 0) continue;
      const from = (ws.x >> 2) + (p.start + p.n - p.nLogits) * s.hidden;
      f32.copyWithin((ws.xn >> 2) + r * s.hidden, from, from + p.nLogits * s.hidden);
      r += p.nLogits;
    }
    this.ks.rmsnorm(ws.xn, this.weights.norm, ws.xn, nLogits, s.hidden, s.rmsEps);
    this.linear(this.weights.lmHead, ws.xn, nLogits, ws.logits, null);
  }

  private layer(l: number, w: LayerWeights, T: number, pos: Int32Array, parts: readonly BatchPart[]): void {
    const { ks, ws, shape: s } = this;
    ks.rmsnorm(ws.x, w.attnNorm, ws.xn, T, s.hidden, s.rmsEps);
    this.linear(w.q, ws.xn, T, ws.q, w.qBias);
    this.linear(w.k, ws.xn, T, ws.k, w.kBias);
    this.linear(w.v, ws.xn, T, ws.v, w.vBias);
    if (w.qNorm !== null) ks.rmsnorm(ws.q, w.qNorm, ws.q, T * s.nHeads, s.headDim, s.rmsEps);
    if (w.kNorm !== null) ks.rmsnorm(ws.k, w.kNorm, ws.k, T * s.nKvHeads, s.headDim, s.rmsEps);
    ks.rope(ws.q, s.nHeads, ws.k, s.nKvHeads, T, s.headDim, pos, this.weights.invFreq, s.rotaryDim, s.ropePairing);
    const qDim = s.nHeads * s.headDim;
    const kvDim = s.nKvHeads * s.headDim;
    const f32 = ks.arena.f32;
    for (const p of parts) {
      // K/V are written before attention: a chunk's queries see their own keys (causal by position).
      const k = f32.subarray((ws.k >> 2) + p.start * kvDim, (ws.k >> 2) + (p.start + p.n) * kvDim); // [n, nKvHeads, headDim]
      const v = f32.subarray((ws.v >> 2) + p.start * kvDim, (ws.v >> 2) + (p.start + p.n) * kvDim);
      p.kv.append(l, k, v, p.n);
    }
    this.attendAll(l, parts, pos);
    this.linear(w.o, ws.attn, T, ws.xn, w.oBias);
    ks.add(ws.x, ws.xn, ws.x, T * s.hidden);
    ks.rmsnorm(ws.x, w.ffnNorm, ws.xn, T, s.hidden, s.rmsEps);
    this.linear(w.gate, ws.xn, T, ws.gate, null);
    this.linear(w.up, ws.xn, T, ws.up, null);
    ks.siluMul(ws.gate, ws.up, ws.gate, T * s.intermediate);
    this.linear(w.down, ws.gate, T, ws.xn, null);
    ks.add(ws.x, ws.xn, ws.x, T * s.hidden);
  }

  /**
   * Attention of every part over its sequence's K/V, views taken after every append (NOTE(3)):
   * the parts with one view in one attentionMany (one dispatch on the WASM kernels), the others
   * view by view with a merge (attend).
   */
  private attendAll(l: number, parts: readonly BatchPart[], pos: Int32Array): void {
    const { ks, ws, shape: s } = this;
    const qDim = s.nHeads * s.headDim;
    const calls = this.calls;
    const split = this.splitViews;
    calls.length = 0;
    split.length = 0;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (p.kv.attend !== undefined) {
        split[i] = SELF;
        continue;
      }
      const views = p.kv.views?.(l);
      if (views !== undefined && views.length > 1) {
        split[i] = views;
        continue;
      }
      split[i] = null;
      const view = views !== undefined && views.length === 1 ? views[0]! : p.kv.view(l);
      const call = (this.callPool[calls.length] ??= { qOffset: 0, outOffset: 0, lseOffset: 0, positions: pos, view });
      call.qOffset = ws.q + p.start * qDim * 4;
      call.outOffset = ws.attn + p.start * qDim * 4;
      call.lseOffset = ws.lse + p.start * s.nHeads * 4;
      call.positions = pos.subarray(p.start, p.start + p.n);
      call.view = view;
      calls.push(call);
    }
    if (calls.length > 0) ks.attentionMany(calls, s.nHeads, { window: s.layerWindows[l]! });
    for (let i = 0; i < parts.length; i++) {
      const views = split[i];
      if (!views) continue;
      const p = parts[i]!;
      const ppos = pos.subarray(p.start, p.start + p.n);
      if (views === SELF) p.kv.attend!(ks, l, ws.q + p.start * qDim * 4, ws.attn + p.start * qDim * 4, ws.lse + p.start * s.nHeads * 4, ppos, s.nHeads, { window: s.layerWindows[l]! });
      else this.attend(l, p, ppos, views);
    }
    split.length = 0; // drop the views: nothing held past the step
  }

  /**
   * Attention of one part's queries over its sequence's K/V. A sequence stored in several views
   * (a quantized history beside a full-precision recent window) is attended view by view and the
   * partial results merged exactly by their log-sum-exp (NOTE(4)).
   */
  private attend(l: number, p: BatchPart, pos: Int32Array, views: readonly KVView[]): void {
    const { ks, ws, shape: s } = this;
    const qDim = s.nHeads * s.headDim;
    const q = ws.q + p.start * qDim * 4;
    const out = ws.attn + p.start * qDim * 4;
    const lse = ws.lse + p.start * s.nHeads * 4;
    const opts = { window: s.layerWindows[l]! };
    ks.attention(q, out, lse, pos, s.nHeads, views[0]!, opts);
    const f32 = ks.arena.f32;
    const nOut = p.n * qDim;
    const nLse = p.n * s.nHeads;
    for (let i = 1; i < views.length; i++) {
      ks.attention(q, ws.attnPart, ws.lsePart, pos, s.nHeads, views[i]!, opts);
      mergeAttentionInto(f32.subarray(out >> 2, (out >> 2) + nOut), f32.subarray(lse >> 2, (lse >> 2) + nLse),
        f32.subarray(ws.attnPart >> 2, (ws.attnPart >> 2) + nOut), f32.subarray(ws.lsePart >> 2, (ws.lsePart >> 2) + nLse), s.headDim);
    }
  }

  private linear(w: LinearWeight, xOff: number, T: number, yOff: number, bias: number | null): void {
    this.ks.matmul(w.offsetBytes, w.dtype, w.nOut, w.nIn, xOff, T, yOff);
    if (bias !== null) this.ks.addBias(yOff, bias, T, w.nOut);
  }

  dispose(): void {
    this.disposed = true;
  }
}
