/**
 * Hugging Face `config.json` -> a typed, validated ModelConfig for the four supported
 * decoder architectures.
 *
 *   architecture        q/k/v bias          o bias          q/k norm   sliding window
 *   LlamaForCausalLM    attention_bias      attention_bias  no         no
 *   Qwen2ForCausalLM    always              never           no         use_sliding_window, layers >= max_window_layers
 *   Qwen3ForCausalLM    attention_bias      attention_bias  per head   use_sliding_window, layers >= max_window_layers
 *   MistralForCausalLM  never               never           no         sliding_window (default 4096), every layer
 *
 * NOTE(1): Field names and defaults are transformers' (LlamaConfig, Qwen2Config, Qwen3Config,
 *   MistralConfig): num_key_value_heads defaults to num_attention_heads, head_dim to
 *   hidden_size / num_attention_heads, rope_theta to 10000, rms_norm_eps to 1e-6,
 *   tie_word_embeddings to false. The shape fields (vocab, hidden, intermediate, layers,
 *   heads) are required: a config without them is not a checkpoint config.
 * NOTE(2): A sliding window W means a query at position p sees keys at positions in
 *   (p - W, p]: W keys including itself, transformers' mask and kernels/types.ts's `window`.
 * NOTE(3): Pure (no file access) so browsers use it too; every error is a ConfigError whose
 *   message names the file (`where`) and field, what was expected and what was given.
 */
import { ConfigError } from '../core/errors.js';
import type { WeightDType } from '../io/safetensors-format.js';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'MistralForCausalLM'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];
export type ModelType = 'llama' | 'qwen2' | 'qwen3' | 'mistral';

const MODEL_TYPES: Readonly<Record<Architecture, ModelType>> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  MistralForCausalLM: 'mistral',
};

export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'llama3'] as const;

export type RopeScaling =
  | { readonly type: 'default' }
  /** Positions divided by `factor` (inv_freq / factor). */
  | { readonly type: 'linear'; readonly factor: number }
  /** Llama 3.1's wavelength-dependent interpolation (rope-freqs.ts). */
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

export interface ModelConfig {
  readonly architecture: Architecture;
  readonly modelType: ModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
  readonly maxPositionEmbeddings: number;
  /** lm_head shares model.embed_tokens.weight (no lm_head.weight tensor). */
  readonly tieWordEmbeddings: boolean;
  /** q_proj, k_proj, v_proj have biases. */
  readonly qkvBias: boolean;
  readonly oBias: boolean;
  /** gate/up/down projections have biases (Llama `mlp_bias`). */
  readonly mlpBias: boolean;
  /** Per-head RMSNorm of q and k before rope (Qwen3), weights [headDim]. */
  readonly qkNorm: boolean;
  /** Per layer: the sliding window (NOTE(2)), or null for full causal attention. */
  readonly layerWindows: readonly (number | null)[];
  readonly bosTokenId: number | null;
  /** eos_token_id as a list (a config may give one id or several). */
  readonly eosTokenIds: readonly number[];
  /** torch_dtype / dtype of the checkpoint, when the config says. */
  readonly torchDtype: WeightDType | null;
}

export type Json = Record<string, unknown>;

/** Typed reads of one JSON object's fields; errors name the file and key. */
export class Fields {
  constructor(
    readonly obj: Json,
    readonly where: string,
  ) {}

  fail(key: string, expected: unknown, given: unknown): never {
    throw new ConfigError(`${this.where}: ${key}`, expected, given);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  /** A positive integer; `fallback` when the key is absent or null (required when no fallback). */
  posInt(key: string, fallback?: number): number {
    const v = this.has(key) ? this.obj[key] : fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) this.fail(key, 'a positive integer', this.obj[key]);
    return v;
  }

  posNumber(key: string, fallback?: number): number {
    const v = this.has(key) ? this.obj[key] : fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a finite number > 0', this.obj[key]);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.has(key) ? this.obj[key] : fallback;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }

  /** A token id or list of token ids, as a list (empty when absent or null). */
  tokenIds(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.obj[key];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) this.fail(key, 'a token id or a list of token ids (integers >= 0)', v);
    return list as number[];
  }
}

function pickArchitecture(f: Fields): Architecture {
  const supported = SUPPORTED_ARCHITECTURES.join(', ');
  const archs = f.obj['architectures'];
  if (archs === undefined || archs === null) {
    const mt = f.obj['model_type'];
    const arch = SUPPORTED_ARCHITECTURES.find((a) => MODEL_TYPES[a] === mt);
    if (arch === undefined) f.fail('architectures', `one of ${supported} (or a model_type of ${Object.values(MODEL_TYPES).join(', ')})`, `none, model_type ${JSON.stringify(mt)}`);
    return arch;
  }
  if (!Array.isArray(archs) || archs.length === 0) f.fail('architectures', `a list naming one of ${supported}`, archs);
  const arch = (archs as unknown[]).find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly unknown[]).includes(a));
  if (arch === undefined) f.fail('architectures', `one of ${supported}`, archs);
  return arch;
}

/** The rope parameters: `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x). */
function parseRope(f: Fields): { ropeTheta: number; ropeScaling: RopeScaling } {
  const raw = f.has('rope_parameters') ? f.obj['rope_parameters'] : f.obj['rope_scaling'];
  const key = f.has('rope_parameters') ? 'rope_parameters' : 'rope_scaling';
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) f.fail(key, 'an object or null', raw);
  const rs = new Fields((raw as Json | null | undefined) ?? {}, `${f.where}: ${key}`);
  const ropeTheta = rs.has('rope_theta') ? rs.posNumber('rope_theta') : f.posNumber('rope_theta', 10000);
  const type = rs.obj['rope_type'] ?? rs.obj['type'] ?? 'default';
  switch (type) {
    case 'default':
      return { ropeTheta, ropeScaling: { type: 'default' } };
    case 'linear':
      return { ropeTheta, ropeScaling: { type: 'linear', factor: rs.posNumber('factor') } };
    case 'llama3': {
      const lowFreqFactor = rs.posNumber('low_freq_factor');
      const highFreqFactor = rs.posNumber('high_freq_factor');
      if (highFreqFactor <= lowFreqFactor) rs.fail('high_freq_factor', `a number > low_freq_factor (${lowFreqFactor})`, highFreqFactor);
      const ropeScaling = {
        type: 'llama3' as const,
        factor: rs.posNumber('factor'),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings: rs.posInt('original_max_position_embeddings'),
      };
      return { ropeTheta, ropeScaling };
    }
    default:
      return f.fail(`${key}.rope_type`, `one of ${SUPPORTED_ROPE_TYPES.join(', ')}`, type);
  }
}

/** Per-layer windows (NOTE(2)); transformers' layer_types rule for Qwen2/Qwen3, every layer for Mistral. */
function parseWindows(f: Fields, modelType: ModelType, nLayers: number): (number | null)[] {
  if (modelType === 'llama') return new Array<number | null>(nLayers).fill(null);
  if (modelType === 'mistral') {
    // MistralConfig's default is 4096 when the key is absent; an explicit null turns it off.
    const w = f.obj['sliding_window'] === undefined ? 4096 : f.has('sliding_window') ? f.posInt('sliding_window') : null;
    return new Array<number | null>(nLayers).fill(w);
  }
  const window = f.bool('use_sliding_window', false) && f.has('sliding_window') ? f.posInt('sliding_window') : null;
  const types = f.obj['layer_types'];
  if (Array.isArray(types)) {
    if (types.length !== nLayers || !types.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
      f.fail('layer_types', `${nLayers} entries of "full_attention" | "sliding_attention"`, types);
    }
    if (types.includes('sliding_attention') && window === null) f.fail('sliding_window', 'a window for the "sliding_attention" layers (and use_sliding_window true)', f.obj['sliding_window']);
    return types.map((t) => (t === 'sliding_attention' ? window : null));
  }
  const maxWindowLayers = f.has('max_window_layers') ? f.posInt('max_window_layers') : 28;
  return Array.from({ length: nLayers }, (_, i) => (window !== null && i >= maxWindowLayers ? window : null));
}

const TORCH_DTYPES: Readonly<Record<string, WeightDType>> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' };

function parseTorchDtype(f: Fields): WeightDType | null {
  const key = f.has('torch_dtype') ? 'torch_dtype' : 'dtype';
  if (!f.has(key)) return null;
  const v = f.obj[key];
  if (typeof v !== 'string' || !Object.prototype.hasOwnProperty.call(TORCH_DTYPES, v)) f.fail(key, `one of ${Object.keys(TORCH_DTYPES).join(', ')}`, v);
  return TORCH_DTYPES[v]!;
}

/** Parse a config.json object (NOTE(1)); `where` names the file in errors. */
export function parseModelConfig(json: unknown, where = 'config.json'): ModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(where, 'a JSON object', json);
  const f = new Fields(json as Json, where);
  const architecture = pickArchitecture(f);
  const modelType = MODEL_TYPES[architecture];
  const act = f.obj['hidden_act'] ?? 'silu';
  if (act !== 'silu' && act !== 'swish') f.fail('hidden_act', '"silu" (SwiGLU MLP)', act);
  const hiddenSize = f.posInt('hidden_size');
  const nHeads = f.posInt('num_attention_heads');
  const nKvHeads = f.posInt('num_key_value_heads', nHeads);
  if (nHeads % nKvHeads !== 0) f.fail('num_attention_heads', `a multiple of num_key_value_heads (${nKvHeads})`, nHeads);
  if (!f.has('head_dim') && hiddenSize % nHeads !== 0) f.fail('hidden_size', `a multiple of num_attention_heads (${nHeads}), or an explicit head_dim`, hiddenSize);
  const headDim = f.posInt('head_dim', hiddenSize / nHeads);
  if (headDim % 2 !== 0) f.fail('head_dim', 'an even number (rope rotates pairs)', headDim);
  const nLayers = f.posInt('num_hidden_layers');
  const attentionBias = f.bool('attention_bias', false);
  const { ropeTheta, ropeScaling } = parseRope(f);
  const bos = f.tokenIds('bos_token_id');
  if (bos.length > 1) f.fail('bos_token_id', 'one token id or null', f.obj['bos_token_id']);
  return {
    architecture,
    modelType,
    vocabSize: f.posInt('vocab_size'),
    hiddenSize,
    intermediateSize: f.posInt('intermediate_size'),
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    rmsNormEps: f.posNumber('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: f.posInt('max_position_embeddings', modelType === 'llama' ? 2048 : modelType === 'mistral' ? 131072 : 32768),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    qkvBias: modelType === 'qwen2' || ((modelType === 'llama' || modelType === 'qwen3') && attentionBias),
    oBias: (modelType === 'llama' || modelType === 'qwen3') && attentionBias,
    mlpBias: modelType === 'llama' && f.bool('mlp_bias', false),
    qkNorm: modelType === 'qwen3',
    layerWindows: parseWindows(f, modelType, nLayers),
    bosTokenId: bos.length === 1 ? bos[0]! : null,
    eosTokenIds: f.tokenIds('eos_token_id'),
    torchDtype: parseTorchDtype(f),
  };
}

/** Parse config.json text; a JSON syntax error is a ConfigError naming the file. */
export function parseModelConfigText(text: string, where = 'config.json'): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(where, 'valid JSON', (e as Error).message);
  }
  return parseModelConfig(json, where);
}

/** The attention's q width (nHeads * headDim), which may differ from hiddenSize (Qwen3). */
export function qDim(c: ModelConfig): number {
  return c.nHeads * c.headDim;
}

/** The width of k and v (nKvHeads * headDim). */
export function kvDim(c: ModelConfig): number {
  return c.nKvHeads * c.headDim;
}
