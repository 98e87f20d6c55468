/**
 * Export a Hugging Face checkpoint folder as GGUF for llama.cpp: architecture metadata, the
 * BPE tokenizer (tokens, types, merges), and every tensor under llama.cpp's names, in F32, F16,
 * Q8_0 or Q4_0 (norms and biases stay F32, as llama.cpp's converter keeps them).
 *
 * NOTE(1): llama.cpp's `llama` architecture rotates interleaved pairs (GPT-J style) while HF
 *   Llama rotates halves; its converter therefore permutes the rows of q_proj and k_proj within
 *   each head: new row 2j + s <- old row s * headDim/2 + j. Qwen2/Qwen3 use llama.cpp's
 *   half-rotation ("neox") rope and need no permutation.
 * NOTE(2): llama3 rope scaling is carried by a `rope_freqs.weight` tensor of per-frequency
 *   divisors (base inv_freq / scaled inv_freq), as llama.cpp's converter writes it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeArray, type DType } from '../core/dtype.js';
import { ConfigError } from '../core/errors.js';
import { gguf, writeGgufFile, type GgufTensorInput, type GgufValue } from '../io/gguf.js';
import { SafetensorsCheckpoint } from '../io/safetensors-index.js';
import { parseModelConfigText, type ModelConfig } from './config.js';
import { layerPrefix } from './expected-tensors.js';
import { ropeInvFreq } from './rope-freqs.js';

const ARCH: Record<string, string> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };

/** HF tensor name -> GGUF name, for one layer's tensors. */
const LAYER_NAMES: readonly [string, string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'], ['self_attn.q_proj.bias', 'attn_q.bias'],
  ['self_attn.k_proj.weight', 'attn_k.weight'], ['self_attn.k_proj.bias', 'attn_k.bias'],
  ['self_attn.v_proj.weight', 'attn_v.weight'], ['self_attn.v_proj.bias', 'attn_v.bias'],
  ['self_attn.o_proj.weight', 'attn_output.weight'], ['self_attn.o_proj.bias', 'attn_output.bias'],
  ['self_attn.q_norm.weight', 'attn_q_norm.weight'], ['self_attn.k_norm.weight', 'attn_k_norm.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'], ['mlp.up_proj.weight', 'ffn_up.weight'], ['mlp.down_proj.weight', 'ffn_down.weight'],
];

/** Rows of a [nHeads * headDim, cols] matrix reordered for interleaved rope (NOTE(1)). */
function permuteHeads(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < half; j++) {
        const src = (h * headDim + s * half + j) * cols;
        out.set(w.subarray(src, src + cols), (h * headDim + 2 * j + s) * cols);
      }
    }
  }
  return out;
}

function tokenizerMetadata(dir: string, c: ModelConfig, arch: string): [string, GgufValue][] {
  const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  if (tj?.model?.type !== 'BPE') throw new ConfigError(`${dir}/tokenizer.json model.type`, 'BPE (byte-level, GPT-2 style)', tj?.model?.type);
  const tokens: string[] = new Array(c.vocabSize);
  const types: number[] = new Array(c.vocabSize).fill(1); // 1 = normal
  for (const [tok, id] of Object.entries(tj.model.vocab as Record<string, number>)) if (id < c.vocabSize) tokens[id] = tok;
  for (const a of tj.added_tokens as { id: number; content: string; special: boolean }[]) {
    if (a.id >= c.vocabSize) continue;
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4; // 3 = control, 4 = user-defined
  }
  for (let i = 0; i < c.vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = 5; // unused
    }
  }
  const merges = (tj.model.merges as (string | [string, string])[]).map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  const meta: [string, GgufValue][] = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(arch === 'llama' ? 'llama-bpe' : 'qwen2')],
    ['tokenizer.ggml.tokens', gguf.strings(tokens)],
    ['tokenizer.ggml.token_type', gguf.i32s(types)],
    ['tokenizer.ggml.merges', gguf.strings(merges)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(false)],
  ];
  if (c.bosTokenId !== null) meta.push(['tokenizer.ggml.bos_token_id', gguf.u32(c.bosTokenId)]);
  if (c.eosTokenIds.length > 0) meta.push(['tokenizer.ggml.eos_token_id', gguf.u32(c.eosTokenIds[0]!)]);
  return meta;
}

export interface GgufExportOptions {
  /** dtype of the weight matrices. Default 'f32'. */
  weights?: Exclude<DType, 'bf16'>;
}

/** Write `dir` (a checkpoint folder) as a GGUF file at `outPath`. */
export function exportGguf(dir: string, outPath: string, opts: GgufExportOptions = {}): void {
  const c = parseModelConfigText(readFileSync(join(dir, 'config.json'), 'utf8'), join(dir, 'config.json'));
  const arch = ARCH[c.architecture];
  if (!arch) throw new ConfigError('architecture', Object.keys(ARCH).join(', '), c.architecture);
  const wDtype = opts.weights ?? 'f32';
  const k = (key: string) => `${arch}.${key}`;
  const meta: [string, GgufValue][] = [
    ['general.architecture', gguf.str(arch)],
    ['general.name', gguf.str(`kvcache export of ${dir}`)],
    [k('context_length'), gguf.u32(c.maxPositionEmbeddings)],
    [k('embedding_length'), gguf.u32(c.hiddenSize)],
    [k('block_count'), gguf.u32(c.nLayers)],
    [k('feed_forward_length'), gguf.u32(c.intermediateSize)],
    [k('attention.head_count'), gguf.u32(c.nHeads)],
    [k('attention.head_count_kv'), gguf.u32(c.nKvHeads)],
    [k('attention.key_length'), gguf.u32(c.headDim)],
    [k('attention.value_length'), gguf.u32(c.headDim)],
    [k('rope.dimension_count'), gguf.u32(c.headDim)],
    [k('rope.freq_base'), gguf.f32(c.ropeTheta)],
    [k('attention.layer_norm_rms_epsilon'), gguf.f32(c.rmsNormEps)],
    [k('vocab_size'), gguf.u32(c.vocabSize)],
    ...tokenizerMetadata(dir, c, arch),
  ];
  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    const tensors: GgufTensorInput[] = [];
    const add = (hfName: string, name: string, transform?: (w: Float32Array) => Float32Array) => {
      const info = ckpt.info(hfName);
      const shape = [...info.shape];
      const matrix = shape.length === 2;
      const dtype: DType = matrix && (shape[1]! % 32 === 0 || wDtype === 'f32' || wDtype === 'f16') ? wDtype : 'f32';
      tensors.push({ name, dtype, shape, data: () => [encodeArray(dtype, transform ? transform(ckpt.readF32(hfName)) : ckpt.readF32(hfName))] });
    };
    add('model.embed_tokens.weight', 'token_embd.weight');
    for (let l = 0; l < c.nLayers; l++) {
      for (const [hf, g] of LAYER_NAMES) {
        const name = `${layerPrefix(l)}${hf}`;
        if (!ckpt.has(name)) continue;
        let t: ((w: Float32Array) => Float32Array) | undefined;
        if (arch === 'llama' && hf === 'self_attn.q_proj.weight') t = (w) => permuteHeads(w, c.nHeads, c.headDim, c.hiddenSize);
        if (arch === 'llama' && hf === 'self_attn.k_proj.weight') t = (w) => permuteHeads(w, c.nKvHeads, c.headDim, c.hiddenSize);
        if (arch === 'llama' && hf === 'self_attn.q_proj.bias') t = (w) => permuteHeads(w, c.nHeads, c.headDim, 1);
        if (arch === 'llama' && hf === 'self_attn.k_proj.bias') t = (w) => permuteHeads(w, c.nKvHeads, c.headDim, 1);
        add(name, `blk.${l}.${g}`, t);
      }
    }
    add('model.norm.weight', 'output_norm.weight');
    if (!c.tieWordEmbeddings) add('lm_head.weight', 'output.weight');
    if (c.ropeScaling.type === 'llama3') {
      const base = ropeInvFreq({ headDim: c.headDim, ropeTheta: c.ropeTheta, ropeScaling: { type: 'default' } });
      const scaled = ropeInvFreq(c);
      const factors = base.map((b, i) => b / scaled[i]!);
      tensors.push({ name: 'rope_freqs.weight', dtype: 'f32', shape: [factors.length], data: new Uint8Array(factors.buffer) });
    }
    writeGgufFile(outPath, meta, tensors);
  } finally {
    ckpt.dispose();
  }
}
