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
 *               x += attention(q, cache[layer]) Wo^T (+b)
 *               xn = rmsnorm(x);  x += (silu(xn Wg^T) * (xn Wu^T)) Wd^T
 *   logits = rmsnorm(x[last nLogits]) Wlm^T                  [nLogits, vocab]
 *
 * NOTE(1): Every activation lives in one Workspace allocated once for `maxChunk` tokens, so the
 *   decode path allocates nothing per token (the positions array is reused too).
 * NOTE(2): K/V are appended through the cache's own appendRow from an f32 view of the arena
 *   (no copy): the cache encodes them to its dtype. For a 'bhsd' cache the chunk is transposed
 *   into a reused JS buffer first (append wants [nKvHeads, nNew, headDim] there).
 */
import { DisposedError, ShapeError, checkInt } from '../core/errors.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import type { LayeredKVCache } from '../kv/types.js';
import type { ForwardShape, LayerWeights, LinearWeight, ModelWeights } from './weights-layout.js';

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

export class Forward {
  private transposeK = new Float32Array(0);
  private transposeV = new Float32Array(0);
  private disposed = false;

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
    if (this.disposed) throw new DisposedError('model forward', 'a live model', 'a disposed model');
    const T = ids.length;
    checkInt('chunk length', T, 1, this.ws.maxChunk);
    checkInt('nLogits', nLogits, 0, Math.min(T, this.ws.maxLogits));
    if (cache.seqLen(0, row) !== pos0) throw new ShapeError(`cache length of row ${row} (must equal pos0)`, pos0, cache.seqLen(0, row));
    const s = this.shape;
    const ws = this.ws;
    const pos = ws.positions.subarray(0, T);
    for (let i = 0; i < T; i++) pos[i] = pos0 + i;
    const e = this.weights.embed;
    this.ks.embedding(e.offsetBytes, e.dtype, e.nOut, e.nIn, ids, ws.x);
    for (let l = 0; l < s.nLayers; l++) this.layer(l, this.weights.layers[l]!, T, pos, cache, row);
    if (nLogits > 0) {
      const first = ws.x + (T - nLogits) * s.hidden * 4;
      this.ks.rmsnorm(first, this.weights.norm, ws.xn, nLogits, s.hidden, s.rmsEps);
      this.linear(this.weights.lmHead, ws.xn, nLogits, ws.logits, null);
    }
  }

  private layer(l: number, w: LayerWeights, T: number, pos: Int32Array, cache: LayeredKVCache, row: number): void {
    const { ks, ws, shape: s } = this;
    ks.rmsnorm(ws.x, w.attnNorm, ws.xn, T, s.hidden, s.rmsEps);
    this.linear(w.q, ws.xn, T, ws.q, w.qBias);
    this.linear(w.k, ws.xn, T, ws.k, w.kBias);
    this.linear(w.v, ws.xn, T, ws.v, w.vBias);
    if (w.qNorm !== null) ks.rmsnorm(ws.q, w.qNorm, ws.q, T * s.nHeads, s.headDim, s.rmsEps);
    if (w.kNorm !== null) ks.rmsnorm(ws.k, w.kNorm, ws.k, T * s.nKvHeads, s.headDim, s.rmsEps);
    ks.rope(ws.q, s.nHeads, ws.k, s.nKvHeads, T, s.headDim, pos, this.weights.invFreq, s.rotaryDim, s.ropePairing);
    this.appendKV(l, T, cache, row);
    const view = cache.view(l, row);
    ks.attention(ws.q, ws.attn, ws.lse, pos, s.nHeads, view, { window: s.layerWindows[l]! });
    this.linear(w.o, ws.attn, T, ws.xn, w.oBias);
    ks.add(ws.x, ws.xn, ws.x, T * s.hidden);
    ks.rmsnorm(ws.x, w.ffnNorm, ws.xn, T, s.hidden, s.rmsEps);
    this.linear(w.gate, ws.xn, T, ws.gate, null);
    this.linear(w.up, ws.xn, T, ws.up, null);
    ks.siluMul(ws.gate, ws.up, ws.gate, T * s.intermediate);
    this.linear(w.down, ws.gate, T, ws.xn, null);
    ks.add(ws.x, ws.xn, ws.x, T * s.hidden);
  }

  private linear(w: LinearWeight, xOff: number, T: number, yOff: number, bias: number | null): void {
    this.ks.matmul(w.offsetBytes, w.dtype, w.nOut, w.nIn, xOff, T, yOff);
    if (bias !== null) this.ks.addBias(yOff, bias, T, w.nOut);
  }

  private appendKV(l: number, T: number, cache: LayeredKVCache, row: number): void {
    const s = this.shape;
    const n = T * s.nKvHeads * s.headDim;
    const f32 = this.ks.arena.f32;
    let k = f32.subarray(this.ws.k / 4, this.ws.k / 4 + n); // [T, nKvHeads, headDim]
    let v = f32.subarray(this.ws.v / 4, this.ws.v / 4 + n);
    if (cache.layout === 'bhsd' && T > 1) {
      if (this.transposeK.length < n) {
        this.transposeK = new Float32Array(n);
        this.transposeV = new Float32Array(n);
      }
      k = transposeTokensHeads(k, this.transposeK.subarray(0, n), T, s.nKvHeads, s.headDim);
      v = transposeTokensHeads(v, this.transposeV.subarray(0, n), T, s.nKvHeads, s.headDim);
    }
    cache.appendRow(l, row, k, v);
  }

  dispose(): void {
    this.disposed = true;
  }
}

/** [T, H, D] -> [H, T, D]. */
function transposeTokensHeads(src: Float32Array, dst: Float32Array, T: number, H: number, D: number): Float32Array {
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) dst.set(src.subarray((t * H + h) * D, (t * H + h + 1) * D), (h * T + t) * D);
  }
  return dst;
}
