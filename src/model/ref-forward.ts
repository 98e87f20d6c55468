/**
 * The reference forward pass: a naive float64 evaluation of a Llama / Qwen2 / Qwen3 /
 * Mistral decoder over a whole token sequence, with no cache. It is the oracle the fast
 * runtime is checked against, so it is written to be obviously correct, not fast.
 *
 *   x = embed[tokens]                                         [nTokens, hidden]
 *   per layer:
 *     a = rmsnorm(x) * input_layernorm
 *     q, k, v = a Wq^T (+bq), a Wk^T (+bk), a Wv^T (+bv)      [nTokens, heads * headDim]
 *     (Qwen3) q, k = rmsnorm per head * q_norm, k_norm
 *     q, k = rope(q, k) at positions 0..nTokens-1 (rotate half)
 *     o = causal GQA softmax(q k^T / sqrt(headDim)) v         (sliding window when set)
 *     x = x + o Wo^T (+bo)
 *     m = rmsnorm(x) * post_attention_layernorm
 *     x = x + (silu(m Wg^T) * (m Wu^T)) Wd^T                  (+ biases with mlp_bias)
 *   logits = rmsnorm(x) * norm  lm_head^T                     [nTokens, vocab] (tied: embed)
 *
 * NOTE(1): Weights come in through a lookup (e.g. SafetensorsCheckpoint.readF32), checked
 *   against expectedTensors' shapes; every sum is float64, so the only rounding relative to
 *   exact math is the stored weights' own and float64's.
 * NOTE(2): GQA follows transformers' repeat_kv: query head h reads kv head
 *   floor(h / (nHeads / nKvHeads)).
 */
import { OutOfRangeError, ShapeError } from '../core/errors.js';
import { kvDim, qDim, type ModelConfig } from './config.js';
import { expectedTensors, layerPrefix } from './expected-tensors.js';
import { ropeInvFreq } from './rope-freqs.js';

/** Returns the values of a tensor by its Hugging Face name (row-major, as stored). */
export type WeightLookup = (name: string) => ArrayLike<number>;

export interface RefForwardOptions {
  /** Positions whose logits are returned, in this order (default: every position). */
  readonly logitPositions?: readonly number[];
  /** The rope table to use (default: ropeInvFreq(config)). */
  readonly invFreq?: ArrayLike<number>;
}

/** Weights fetched once and size-checked (NOTE(1)). */
function checkedLookup(c: ModelConfig, lookup: WeightLookup): WeightLookup {
  const sizes = new Map(expectedTensors(c).map((t) => [t.name, t.shape.reduce((a, b) => a * b, 1)]));
  return (name) => {
    const w = lookup(name);
    const n = sizes.get(name);
    if (n !== undefined && w.length !== n) throw new ShapeError(`tensor "${name}" elements`, n, w.length);
    return w;
  };
}

/** out[t, r] = sum_c x[t, c] * w[r, c] + b[r]: x [n, cols], w [rows, cols], out [n, rows]. */
function linear(x: Float64Array, n: number, cols: number, w: ArrayLike<number>, rows: number, b: ArrayLike<number> | null): Float64Array {
  const out = new Float64Array(n * rows); // [n, rows]
  for (let t = 0; t < n; t++) {
    const xOff = t * cols;
    for (let r = 0; r < rows; r++) {
      const wOff = r * cols;
      let s = b === null ? 0 : b[r]!;
      for (let col = 0; col < cols; col++) s += x[xOff + col]! * w[wOff + col]!;
      out[t * rows + r] = s;
    }
  }
  return out;
}

/** RMSNorm of each `width`-wide row of x [nRows, width], times weight [width]. */
function rmsNorm(x: Float64Array, width: number, weight: ArrayLike<number>, eps: number): Float64Array {
  const out = new Float64Array(x.length); // [nRows, width]
  for (let row = 0; row < x.length / width; row++) {
    let ss = 0;
    for (let i = 0; i < width; i++) ss += x[row * width + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / width + eps);
    for (let i = 0; i < width; i++) out[row * width + i] = x[row * width + i]! * inv * weight[i]!;
  }
  return out;
}

/** Rotate-half rope in place on x [n, nHeads, headDim] at positions 0..n-1. */
function rope(x: Float64Array, n: number, nHeads: number, headDim: number, invFreq: ArrayLike<number>): void {
  const half = headDim / 2;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = t * invFreq[i]!;
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const a = x[base + i]!;
        const b = x[base + half + i]!;
        x[base + i] = a * cos - b * sin;
        x[base + half + i] = b * cos + a * sin;
      }
    }
  }
}

/** Causal GQA attention (NOTE(2)): q [n, nHeads, hd], k/v [n, nKvHeads, hd] -> [n, nHeads, hd]. */
function attention(c: ModelConfig, q: Float64Array, k: Float64Array, v: Float64Array, n: number, window: number | null): Float64Array {
  const hd = c.headDim;
  const group = c.nHeads / c.nKvHeads;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(n * c.nHeads * hd); // [n, nHeads, headDim]
  const scores = new Float64Array(n); // [keys]
  for (let t = 0; t < n; t++) {
    const first = window === null ? 0 : Math.max(0, t - window + 1);
    for (let h = 0; h < c.nHeads; h++) {
      const kvh = Math.floor(h / group);
      const qOff = (t * c.nHeads + h) * hd;
      let max = -Infinity;
      for (let j = first; j <= t; j++) {
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[qOff + i]! * k[(j * c.nKvHeads + kvh) * hd + i]!;
        scores[j] = s * scale;
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = first; j <= t; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let j = first; j <= t; j++) {
        const p = scores[j]! / sum;
        for (let i = 0; i < hd; i++) out[qOff + i] = out[qOff + i]! + p * v[(j * c.nKvHeads + kvh) * hd + i]!;
      }
    }
  }
  return out;
}

function addInto(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
}

/** One decoder layer applied to the residual stream x [n, hidden] in place. */
function layer(c: ModelConfig, w: WeightLookup, x: Float64Array, n: number, l: number, invFreq: ArrayLike<number>): void {
  const p = layerPrefix(l);
  const h = c.hiddenSize;
  const bias = (name: string, has: boolean): ArrayLike<number> | null => (has ? w(`${p}${name}.bias`) : null);
  const a = rmsNorm(x, h, w(`${p}input_layernorm.weight`), c.rmsNormEps);
  let q = linear(a, n, h, w(`${p}self_attn.q_proj.weight`), qDim(c), bias('self_attn.q_proj', c.qkvBias)); // [n, nHeads * hd]
  let k = linear(a, n, h, w(`${p}self_attn.k_proj.weight`), kvDim(c), bias('self_attn.k_proj', c.qkvBias)); // [n, nKvHeads * hd]
  const v = linear(a, n, h, w(`${p}self_attn.v_proj.weight`), kvDim(c), bias('self_attn.v_proj', c.qkvBias)); // [n, nKvHeads * hd]
  if (c.qkNorm) {
    q = rmsNorm(q, c.headDim, w(`${p}self_attn.q_norm.weight`), c.rmsNormEps);
    k = rmsNorm(k, c.headDim, w(`${p}self_attn.k_norm.weight`), c.rmsNormEps);
  }
  rope(q, n, c.nHeads, c.headDim, invFreq);
  rope(k, n, c.nKvHeads, c.headDim, invFreq);
  const att = attention(c, q, k, v, n, c.layerWindows[l]!);
  addInto(x, linear(att, n, qDim(c), w(`${p}self_attn.o_proj.weight`), h, bias('self_attn.o_proj', c.oBias)));
  const m = rmsNorm(x, h, w(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
  const gate = linear(m, n, h, w(`${p}mlp.gate_proj.weight`), c.intermediateSize, bias('mlp.gate_proj', c.mlpBias)); // [n, intermediate]
  const up = linear(m, n, h, w(`${p}mlp.up_proj.weight`), c.intermediateSize, bias('mlp.up_proj', c.mlpBias)); // [n, intermediate]
  for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  addInto(x, linear(gate, n, c.intermediateSize, w(`${p}mlp.down_proj.weight`), h, bias('mlp.down_proj', c.mlpBias)));
}

/**
 * Logits [logitPositions.length, vocab] (default every position) of `tokens` at positions
 * 0..tokens.length-1. OutOfRangeError for a token id outside the vocabulary.
 */
export function refForward(c: ModelConfig, lookup: WeightLookup, tokens: readonly number[], opts: RefForwardOptions = {}): Float64Array {
  const n = tokens.length;
  const h = c.hiddenSize;
  const positions = opts.logitPositions ?? tokens.map((_, i) => i);
  for (const p of positions) {
    if (!Number.isInteger(p) || p < 0 || p >= n) throw new OutOfRangeError('logit position', `an integer in [0, ${n})`, p);
  }
  const w = checkedLookup(c, lookup);
  const invFreq = opts.invFreq ?? ropeInvFreq(c);
  const embed = w('model.embed_tokens.weight'); // [vocab, hidden]
  const x = new Float64Array(n * h); // [nTokens, hidden] residual stream
  tokens.forEach((tok, t) => {
    if (!Number.isInteger(tok) || tok < 0 || tok >= c.vocabSize) throw new OutOfRangeError(`token id at position ${t}`, `an integer in [0, ${c.vocabSize})`, tok);
    for (let i = 0; i < h; i++) x[t * h + i] = embed[tok * h + i]!;
  });
  for (let l = 0; l < c.nLayers; l++) layer(c, w, x, n, l, invFreq);
  const finalNorm = w('model.norm.weight');
  const head = c.tieWordEmbeddings ? embed : w('lm_head.weight'); // [vocab, hidden]
  const logits = new Float64Array(positions.length * c.vocabSize); // [positions, vocab]
  positions.forEach((pos, r) => {
    const row = rmsNorm(x.subarray(pos * h, (pos + 1) * h), h, finalNorm, c.rmsNormEps);
    for (let tok = 0; tok < c.vocabSize; tok++) {
      const off = tok * h;
      let s = 0;
      for (let i = 0; i < h; i++) s += row[i]! * head[off + i]!;
      logits[r * c.vocabSize + tok] = s;
    }
  });
  return logits;
}

/** Per row of logits [nRows, vocab]: the argmax and its margin over the runner-up. */
export function topMargins(logits: Float64Array, vocab: number): { argmax: number[]; margin: number[] } {
  const argmax: number[] = [];
  const margin: number[] = [];
  for (let r = 0; r < logits.length / vocab; r++) {
    let best = -Infinity;
    let second = -Infinity;
    let arg = -1;
    for (let t = 0; t < vocab; t++) {
      const v = logits[r * vocab + t]!;
      if (v > best) {
        second = best;
        best = v;
        arg = t;
      } else if (v > second) second = v;
    }
    argmax.push(arg);
    margin.push(best - second);
  }
  return { argmax, margin };
}
