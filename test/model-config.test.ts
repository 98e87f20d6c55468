/**
 * HF config.json parsing for the four architectures (real published configs verbatim),
 * transformers' defaults, every rejection, the expected tensor list per architecture, and
 * the rope inverse-frequency tables against hand-computed values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../src/core/errors.js';
import { parseModelConfig, parseModelConfigText, type ModelConfig } from '../src/model/config.js';
import { diffTensors, expectedTensors } from '../src/model/expected-tensors.js';
import { ropeInvFreq, ropeInvFreqF64 } from '../src/model/rope-freqs.js';

function throwsConfig(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

// Published configs, verbatim (Qwen/Qwen2.5-0.5B-Instruct, meta-llama/Llama-3.2-1B, Qwen/Qwen3-0.6B, mistralai/Mistral-7B-v0.1).
const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu', hidden_size: 896,
  initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 21, model_type: 'qwen2', num_attention_heads: 14,
  num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true,
  torch_dtype: 'bfloat16', transformers_version: '4.43.1', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const LLAMA32_1B = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000, eos_token_id: 128001, head_dim: 64,
  hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false,
  model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true, vocab_size: 128256,
};
const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, head_dim: 128,
  hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960, max_window_layers: 28,
  model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null,
  rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.51.0', use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};
const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
  intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32, num_hidden_layers: 32,
  num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  transformers_version: '4.34.0.dev0', use_cache: true, vocab_size: 32000,
};

test('Qwen2.5-0.5B config', () => {
  const c = parseModelConfig(QWEN25_05B);
  assert.equal(c.architecture, 'Qwen2ForCausalLM');
  assert.equal(c.modelType, 'qwen2');
  assert.deepEqual(
    [c.nLayers, c.hiddenSize, c.nHeads, c.nKvHeads, c.headDim, c.intermediateSize, c.vocabSize],
    [24, 896, 14, 2, 64, 4864, 151936],
  );
  assert.equal(c.ropeTheta, 1e6);
  assert.deepEqual(c.ropeScaling, { type: 'default' });
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.tieWordEmbeddings, true);
  assert.deepEqual([c.qkvBias, c.oBias, c.mlpBias, c.qkNorm], [true, false, false, false]);
  assert.deepEqual(c.layerWindows, new Array(24).fill(null), 'use_sliding_window false: full attention everywhere');
  assert.equal(c.bosTokenId, 151643);
  assert.deepEqual(c.eosTokenIds, [151645]);
  assert.equal(c.torchDtype, 'bf16');
  assert.equal(c.maxPositionEmbeddings, 32768);
});

test('Llama-3.2-1B config: llama3 rope scaling, tied, no biases', () => {
  const c = parseModelConfig(LLAMA32_1B);
  assert.equal(c.modelType, 'llama');
  assert.deepEqual([c.nLayers, c.hiddenSize, c.nHeads, c.nKvHeads, c.headDim, c.intermediateSize, c.vocabSize], [16, 2048, 32, 8, 64, 8192, 128256]);
  assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.equal(c.ropeTheta, 500000);
  assert.deepEqual([c.qkvBias, c.oBias, c.mlpBias, c.qkNorm], [false, false, false, false]);
  const biased = parseModelConfig({ ...LLAMA32_1B, attention_bias: true, mlp_bias: true });
  assert.deepEqual([biased.qkvBias, biased.oBias, biased.mlpBias], [true, true, true]);
  const linear = parseModelConfig({ ...LLAMA32_1B, rope_scaling: { type: 'linear', factor: 4 } });
  assert.deepEqual(linear.ropeScaling, { type: 'linear', factor: 4 });
  const v5 = parseModelConfig({ ...LLAMA32_1B, rope_scaling: undefined, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 1234 } });
  assert.deepEqual([v5.ropeTheta, v5.ropeScaling.type], [1234, 'default'], 'transformers 5 rope_parameters');
});

test('Qwen3-0.6B config: q/k norm, head_dim != hidden / heads', () => {
  const c = parseModelConfig(QWEN3_06B);
  assert.deepEqual([c.hiddenSize, c.nHeads, c.headDim], [1024, 16, 128]);
  assert.deepEqual([c.qkvBias, c.oBias, c.qkNorm], [false, false, true]);
  assert.deepEqual(c.layerWindows, new Array(28).fill(null));
  const names = expectedTensors(c).map((t) => t.name);
  assert.ok(names.includes('model.layers.27.self_attn.q_norm.weight'));
  const q = expectedTensors(c).find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
  assert.deepEqual(q.shape, [2048, 1024]);
  const o = expectedTensors(c).find((t) => t.name === 'model.layers.0.self_attn.o_proj.weight')!;
  assert.deepEqual(o.shape, [1024, 2048]);
});

test('Mistral-7B config: sliding window on every layer; default 4096 when absent, none when null', () => {
  const c = parseModelConfig(MISTRAL_7B);
  assert.deepEqual(c.layerWindows, new Array(32).fill(4096));
  assert.equal(c.headDim, 128);
  assert.deepEqual([c.qkvBias, c.oBias, c.qkNorm, c.tieWordEmbeddings], [false, false, false, false]);
  const { sliding_window: _drop, ...noKey } = MISTRAL_7B;
  assert.deepEqual(parseModelConfig(noKey).layerWindows, new Array(32).fill(4096));
  assert.deepEqual(parseModelConfig({ ...MISTRAL_7B, sliding_window: null }).layerWindows, new Array(32).fill(null));
  assert.equal(parseModelConfig({ ...MISTRAL_7B, head_dim: null }).headDim, 128, 'head_dim null -> hidden / heads');
});

test('defaults: kv heads, head_dim, eps, theta, tie; Qwen sliding layers; eos lists; model_type without architectures', () => {
  const minimal = { architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 3, num_attention_heads: 4, vocab_size: 100 };
  const c = parseModelConfig(minimal);
  assert.deepEqual([c.nKvHeads, c.headDim, c.rmsNormEps, c.ropeTheta, c.tieWordEmbeddings, c.maxPositionEmbeddings], [4, 16, 1e-6, 10000, false, 2048]);
  assert.equal(c.bosTokenId, null);
  assert.deepEqual(c.eosTokenIds, []);
  assert.equal(c.torchDtype, null);
  assert.equal(parseModelConfig({ ...minimal, architectures: undefined, model_type: 'qwen3' }).architecture, 'Qwen3ForCausalLM');
  assert.deepEqual(parseModelConfig({ ...minimal, eos_token_id: [128001, 128008, 128009] }).eosTokenIds, [128001, 128008, 128009]);
  assert.equal(parseModelConfig({ ...minimal, dtype: 'float16' }).torchDtype, 'f16');
  const q = { ...QWEN25_05B, use_sliding_window: true, sliding_window: 4096, max_window_layers: 20 };
  assert.deepEqual(parseModelConfig(q).layerWindows, [...new Array(20).fill(null), ...new Array(4).fill(4096)]);
  const types = Array.from({ length: 24 }, (_, i) => (i % 2 ? 'sliding_attention' : 'full_attention'));
  assert.deepEqual(parseModelConfig({ ...q, layer_types: types }).layerWindows, types.map((t) => (t === 'sliding_attention' ? 4096 : null)));
  assert.equal(parseModelConfigText(JSON.stringify(QWEN3_06B)).modelType, 'qwen3');
});

test('rejections name the file, the field, what was expected and what was given', () => {
  const where = 'ckpt/config.json';
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, architectures: ['GPT2LMHeadModel'] }, where), /ckpt\/config\.json: architectures: expected one of LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, given \[GPT2LMHeadModel\]/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, rope_scaling: { rope_type: 'yarn', factor: 4 } }, where), /rope_scaling\.rope_type: expected one of default, linear, llama3, given yarn/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, rope_scaling: { type: 'dynamic', factor: 2 } }), /given dynamic/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, rope_scaling: { rope_type: 'llama3', factor: 8 } }), /low_freq_factor: expected a finite number > 0, given undefined/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, rope_scaling: { ...LLAMA32_1B.rope_scaling, high_freq_factor: 1 } }), /high_freq_factor/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, num_key_value_heads: 5 }), /num_attention_heads: expected a multiple of num_key_value_heads \(5\), given 32/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, hidden_size: 0 }), /hidden_size: expected a positive integer, given 0/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, num_hidden_layers: 2.5 }), /num_hidden_layers/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, vocab_size: undefined }), /vocab_size: expected a positive integer, given undefined/);
  throwsConfig(() => parseModelConfig({ ...MISTRAL_7B, hidden_size: 4001 }), /hidden_size: expected a multiple of num_attention_heads \(32\), or an explicit head_dim/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, head_dim: 63 }), /head_dim: expected an even number/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, hidden_act: 'gelu' }), /hidden_act.*silu.*gelu/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, rms_norm_eps: -1 }), /rms_norm_eps/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, tie_word_embeddings: 'yes' }), /tie_word_embeddings: expected true or false/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, eos_token_id: [1, -2] }), /eos_token_id/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, bos_token_id: [1, 2] }), /bos_token_id: expected one token id/);
  throwsConfig(() => parseModelConfig({ ...LLAMA32_1B, torch_dtype: 'float64' }), /torch_dtype: expected one of float32, float16, bfloat16, given float64/);
  throwsConfig(() => parseModelConfig({ ...QWEN25_05B, layer_types: ['full_attention'] }), /layer_types/);
  throwsConfig(() => parseModelConfig([1, 2]), /expected a JSON object/);
  throwsConfig(() => parseModelConfigText('{"hidden_size": ', where), /ckpt\/config\.json: expected valid JSON/);
});

function names(c: ModelConfig): string[] {
  return expectedTensors(c).map((t) => t.name);
}

test('expectedTensors per architecture: biases, q/k norms, tied lm_head', () => {
  const qwen2 = parseModelConfig(QWEN25_05B);
  const n2 = names(qwen2);
  assert.equal(n2.length, 1 + 24 * 12 + 1, 'embed + 24 x (2 norms, 4 proj, 3 qkv biases, 3 mlp) + norm, no lm_head');
  assert.deepEqual(n2.slice(0, 14), [
    'model.embed_tokens.weight',
    'model.layers.0.input_layernorm.weight',
    'model.layers.0.self_attn.q_proj.weight',
    'model.layers.0.self_attn.q_proj.bias',
    'model.layers.0.self_attn.k_proj.weight',
    'model.layers.0.self_attn.k_proj.bias',
    'model.layers.0.self_attn.v_proj.weight',
    'model.layers.0.self_attn.v_proj.bias',
    'model.layers.0.self_attn.o_proj.weight',
    'model.layers.0.post_attention_layernorm.weight',
    'model.layers.0.mlp.gate_proj.weight',
    'model.layers.0.mlp.up_proj.weight',
    'model.layers.0.mlp.down_proj.weight',
    'model.layers.1.input_layernorm.weight',
  ]);
  assert.equal(n2.at(-1), 'model.norm.weight');
  const shapes = new Map(expectedTensors(qwen2).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.3.self_attn.k_proj.weight'), [128, 896]);
  assert.deepEqual(shapes.get('model.layers.3.self_attn.k_proj.bias'), [128]);
  assert.deepEqual(shapes.get('model.layers.3.mlp.down_proj.weight'), [896, 4864]);
  const total = expectedTensors(qwen2).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(total, 494032768, 'Qwen2.5-0.5B has 494,032,768 parameters');
  const llama = parseModelConfig(LLAMA32_1B);
  assert.equal(expectedTensors(llama).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0), 1235814400, 'Llama-3.2-1B: 1,235,814,400');
  const mistral = names(parseModelConfig(MISTRAL_7B));
  assert.equal(mistral.at(-1), 'lm_head.weight');
  assert.ok(!mistral.some((n) => n.endsWith('.bias')));
  const biased = names(parseModelConfig({ ...LLAMA32_1B, attention_bias: true, mlp_bias: true, num_hidden_layers: 1 }));
  assert.deepEqual(biased.filter((n) => n.endsWith('.bias')).map((n) => n.split('.').slice(-2, -1)[0]), ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
});

test('diffTensors reports missing, extra and wrong-shape tensors; ignores a tied lm_head copy and inv_freq buffers', () => {
  const c = parseModelConfig({ ...QWEN3_06B, num_hidden_layers: 1 });
  const exp = expectedTensors(c);
  assert.deepEqual(diffTensors(c, exp), { missing: [], extra: [], wrongShape: [], ignored: [] });
  const actual = [
    ...exp.filter((t) => t.name !== 'model.layers.0.self_attn.k_norm.weight').map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [7] } : t)),
    { name: 'lm_head.weight', shape: [151936, 1024] },
    { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [64] },
    { name: 'model.extra.weight', shape: [1] },
  ];
  assert.deepEqual(diffTensors(c, actual), {
    missing: ['model.layers.0.self_attn.k_norm.weight'],
    extra: ['model.extra.weight'],
    wrongShape: [{ name: 'model.norm.weight', expected: [1024], given: [7] }],
    ignored: ['lm_head.weight', 'model.layers.0.self_attn.rotary_emb.inv_freq'],
  });
});

test('rope default / linear: theta^(-2i/d), divided by the factor', () => {
  const d = ropeInvFreqF64({ headDim: 8, ropeTheta: 10000, ropeScaling: { type: 'default' } });
  assert.deepEqual(Array.from(d), [1, 0.1, 0.01, 0.001]);
  const f = ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: { type: 'default' } });
  assert.deepEqual(Array.from(f), [1, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513], 'rounded once to f32');
  const lin = ropeInvFreqF64({ headDim: 8, ropeTheta: 10000, ropeScaling: { type: 'linear', factor: 4 } });
  assert.deepEqual(Array.from(lin), [0.25, 0.025, 0.0025, 0.00025]);
  const big = ropeInvFreqF64({ headDim: 64, ropeTheta: 1e6, ropeScaling: { type: 'default' } });
  assert.equal(big.length, 32);
  assert.ok(Math.abs(big[31]! - 1e6 ** (-62 / 64)) < 1e-20);
  throwsConfig(() => ropeInvFreq({ headDim: 7, ropeTheta: 1e4, ropeScaling: { type: 'default' } }), /headDim/);
  throwsConfig(() => ropeInvFreq({ headDim: 8, ropeTheta: 0, ropeScaling: { type: 'default' } }), /rope_theta/);
});

test('rope llama3: high frequencies kept, low ones divided by factor, the band between interpolated', () => {
  // headDim 8, theta 1e4: inv_freq [1, 0.1, 0.01, 0.001], wavelengths 2 pi / f = [6.28, 62.8, 628.3, 6283].
  // L = 1024, low 1, high 4 -> keep below 256, divide above 1024, interpolate 628.3:
  //   s = (1024 / 628.3185 - 1) / (4 - 1) = 0.20991553908700275
  //   f = (1 - s) * 0.01 / 8 + s * 0.01    = 0.003086760967011274
  const p = { headDim: 8, ropeTheta: 10000, ropeScaling: { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024 } };
  const d = ropeInvFreqF64(p);
  assert.equal(d[0], 1);
  assert.equal(d[1], 0.1);
  assert.ok(Math.abs(d[2]! - 0.003086760967011274) < 1e-17, String(d[2]));
  assert.equal(d[3], 0.001 / 8);
  assert.deepEqual(Array.from(ropeInvFreq(p)), [1, 0.10000000149011612, 0.003086760872974992, 0.0001250000059371814]);
  // Llama 3.2's own parameters: every band is used at headDim 64, theta 5e5.
  const l = ropeInvFreqF64({ headDim: 64, ropeTheta: 500000, ropeScaling: parseModelConfig(LLAMA32_1B).ropeScaling });
  const base = ropeInvFreqF64({ headDim: 64, ropeTheta: 500000, ropeScaling: { type: 'default' } });
  let kept = 0;
  let scaled = 0;
  let mixed = 0;
  for (let i = 0; i < 32; i++) {
    const wavelen = (2 * Math.PI) / base[i]!;
    if (wavelen < 2048) {
      assert.equal(l[i], base[i]);
      kept++;
    } else if (wavelen > 8192) {
      assert.equal(l[i], base[i]! / 32);
      scaled++;
    } else {
      assert.ok(l[i]! < base[i]! && l[i]! > base[i]! / 32);
      mixed++;
    }
  }
  assert.deepEqual([kept, mixed, scaled], [15, 3, 14]);
});
