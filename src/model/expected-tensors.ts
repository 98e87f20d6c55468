/**
 * The tensors a checkpoint of a ModelConfig must hold (Hugging Face names and shapes), and
 * the comparison a loader reports from: missing, extra and wrong-shape tensors.
 *
 * Shapes are PyTorch's nn.Linear layout, [outFeatures, inFeatures], row-major:
 *
 *   model.embed_tokens.weight                      [vocab, hidden]
 *   model.layers.{i}.input_layernorm.weight        [hidden]
 *   model.layers.{i}.self_attn.q_proj.weight       [nHeads * headDim, hidden]    (+ .bias [nHeads * headDim])
 *   model.layers.{i}.self_attn.k_proj.weight       [nKvHeads * headDim, hidden]  (+ .bias)
 *   model.layers.{i}.self_attn.v_proj.weight       [nKvHeads * headDim, hidden]  (+ .bias)
 *   model.layers.{i}.self_attn.o_proj.weight       [hidden, nHeads * headDim]    (+ .bias [hidden])
 *   model.layers.{i}.self_attn.q_norm.weight       [headDim]                     (Qwen3)
 *   model.layers.{i}.self_attn.k_norm.weight       [headDim]                     (Qwen3)
 *   model.layers.{i}.post_attention_layernorm.weight [hidden]
 *   model.layers.{i}.mlp.gate_proj.weight          [intermediate, hidden]        (+ .bias with mlp_bias)
 *   model.layers.{i}.mlp.up_proj.weight            [intermediate, hidden]        (+ .bias)
 *   model.layers.{i}.mlp.down_proj.weight          [hidden, intermediate]        (+ .bias [hidden])
 *   model.norm.weight                              [hidden]
 *   lm_head.weight                                 [vocab, hidden]               (unless tied)
 */
import { kvDim, qDim, type ModelConfig } from './config.js';

export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Name prefix of layer `i`'s tensors. */
export function layerPrefix(i: number): string {
  return `model.layers.${i}.`;
}

function layerTensors(c: ModelConfig, i: number): ExpectedTensor[] {
  const p = layerPrefix(i);
  const h = c.hiddenSize;
  const out: ExpectedTensor[] = [{ name: `${p}input_layernorm.weight`, shape: [h] }];
  const proj = (name: string, rows: number, cols: number, bias: boolean): void => {
    out.push({ name: `${p}${name}.weight`, shape: [rows, cols] });
    if (bias) out.push({ name: `${p}${name}.bias`, shape: [rows] });
  };
  proj('self_attn.q_proj', qDim(c), h, c.qkvBias);
  proj('self_attn.k_proj', kvDim(c), h, c.qkvBias);
  proj('self_attn.v_proj', kvDim(c), h, c.qkvBias);
  proj('self_attn.o_proj', h, qDim(c), c.oBias);
  if (c.qkNorm) {
    out.push({ name: `${p}self_attn.q_norm.weight`, shape: [c.headDim] });
    out.push({ name: `${p}self_attn.k_norm.weight`, shape: [c.headDim] });
  }
  out.push({ name: `${p}post_attention_layernorm.weight`, shape: [h] });
  proj('mlp.gate_proj', c.intermediateSize, h, c.mlpBias);
  proj('mlp.up_proj', c.intermediateSize, h, c.mlpBias);
  proj('mlp.down_proj', h, c.intermediateSize, c.mlpBias);
  return out;
}

/** Every tensor of the checkpoint, in module order (embeddings, layers, final norm, lm_head). */
export function expectedTensors(c: ModelConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize] }];
  for (let i = 0; i < c.nLayers; i++) out.push(...layerTensors(c, i));
  out.push({ name: 'model.norm.weight', shape: [c.hiddenSize] });
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize] });
  return out;
}

export interface TensorSetDiff {
  /** Expected names the checkpoint lacks. */
  readonly missing: readonly string[];
  /** Checkpoint names the model does not use. */
  readonly extra: readonly string[];
  readonly wrongShape: readonly { readonly name: string; readonly expected: readonly number[]; readonly given: readonly number[] }[];
  /** Present, harmless and not loaded: a tied model's lm_head copy, old rotary inv_freq buffers. */
  readonly ignored: readonly string[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Compare a checkpoint's tensors with what the config needs; empty lists mean it loads. */
export function diffTensors(c: ModelConfig, actual: Iterable<ExpectedTensor>): TensorSetDiff {
  const want = new Map(expectedTensors(c).map((t) => [t.name, t.shape]));
  const seen = new Set<string>();
  const extra: string[] = [];
  const ignored: string[] = [];
  const wrongShape: { name: string; expected: readonly number[]; given: readonly number[] }[] = [];
  for (const t of actual) {
    const shape = want.get(t.name);
    if (shape === undefined) {
      const tiedCopy = c.tieWordEmbeddings && t.name === 'lm_head.weight' && sameShape(t.shape, [c.vocabSize, c.hiddenSize]);
      if (tiedCopy || t.name.endsWith('.rotary_emb.inv_freq')) ignored.push(t.name);
      else extra.push(t.name);
      continue;
    }
    seen.add(t.name);
    if (!sameShape(shape, t.shape)) wrongShape.push({ name: t.name, expected: shape, given: [...t.shape] });
  }
  const missing = [...want.keys()].filter((n) => !seen.has(n));
  return { missing, extra, wrongShape, ignored };
}
