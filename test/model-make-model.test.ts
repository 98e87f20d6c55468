/**
 * make-model on the tiny presets, through the API and the CLI (a checkpoint folder that parses, with exactly the expected
 * tensors; identical bytes for one seed, different for another; sharding that regroups the
 * same tensors), the random weight generator, and the float64 reference forward: a hand-
 * written two-token evaluation of a micro model, causality, the sliding window's reach, and
 * top-1 logit margins of every tiny preset.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, OutOfRangeError } from '../src/core/errors.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../src/core/half.js';
import { SafetensorsCheckpoint } from '../src/io/safetensors-index.js';
import { parseModelConfig, parseModelConfigText, type ModelConfig } from '../src/model/config.js';
import { diffTensors, expectedTensors } from '../src/model/expected-tensors.js';
import { makeModel, tokenizerFilePath, type MakeModelResult } from '../src/model/make-model.js';
import { PRESET_NAMES, getPreset } from '../src/model/presets.js';
import { WeightRng, generateWeights } from '../src/model/random-weights.js';
import { refForward, topMargins, type WeightLookup } from '../src/model/ref-forward.js';

let root = '';
let tiny: MakeModelResult;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-mm-'));
  tiny = makeModel({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 1 });
});

after(() => {
  rmSync(root, { recursive: true, force: true });
});

function lookup(ck: SafetensorsCheckpoint): WeightLookup {
  const cache = new Map<string, Float32Array>();
  return (name) => {
    let w = cache.get(name);
    if (w === undefined) cache.set(name, (w = ck.readF32(name)));
    return w;
  };
}

test('tiny: a complete checkpoint folder whose tensors are exactly the expected ones', () => {
  const dir = tiny.outDir;
  assert.deepEqual(readdirSync(dir).sort(), ['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const c = parseModelConfigText(readFileSync(join(dir, 'config.json'), 'utf8'));
  assert.deepEqual(c, tiny.config);
  assert.deepEqual([c.architecture, c.nLayers, c.hiddenSize, c.nHeads, c.nKvHeads, c.headDim, c.intermediateSize, c.vocabSize], ['Qwen2ForCausalLM', 2, 128, 4, 2, 32, 256, 151936]);
  assert.deepEqual([c.tieWordEmbeddings, c.qkvBias, c.torchDtype], [true, true, 'bf16']);
  const gen = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'));
  assert.deepEqual(gen, { bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643, do_sample: false });
  for (const f of ['tokenizer.json', 'tokenizer_config.json'] as const) {
    assert.ok(readFileSync(join(dir, f)).equals(readFileSync(tokenizerFilePath('qwen', f))), `${f} copied byte for byte`);
  }
  const ck = SafetensorsCheckpoint.open(dir);
  try {
    const actual = ck.tensorNames().map((n) => ({ name: n, shape: ck.info(n).shape }));
    assert.deepEqual(actual, expectedTensors(c).map((t) => ({ name: t.name, shape: t.shape })), 'same names, shapes and order');
    assert.deepEqual(diffTensors(c, actual), { missing: [], extra: [], wrongShape: [], ignored: [] });
    assert.ok(ck.tensorNames().every((n) => ck.info(n).dtype === 'BF16'));
    assert.equal(ck.totalSizeBytes, tiny.weightBytes);
    assert.equal(tiny.nParams, 19743872);
    const norm = ck.readF32('model.layers.0.input_layernorm.weight');
    assert.ok(norm.every((x) => x > 0.5 && x < 1.5) && norm.some((x) => x !== 1), 'norm weights near 1, not all 1');
    assert.deepEqual(ck.files[0]!.metadata, { format: 'pt', 'kvcache.preset': 'tiny', 'kvcache.seed': '1' });
  } finally {
    ck.dispose();
  }
});

test('same seed -> identical bytes; sharding regroups the same tensors; another seed -> other weights; stale files removed', () => {
  // The second run goes through the command line, which must be the same function.
  const again = join(root, 'again');
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const r = spawnSync(process.execPath, [cli, 'make-model', '--preset', 'tiny', '--out', again, '--seed', '1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote .*again: preset tiny, seed 1, bf16/);
  assert.match(r.stdout, /19,743,872 parameters, 37\.7 MiB in model\.safetensors/);
  for (const f of tiny.files) assert.ok(readFileSync(join(tiny.outDir, f)).equals(readFileSync(join(again, f))), `${f} identical`);
  const bad = spawnSync(process.execPath, [cli, 'make-model', '--preset', 'tiny', '--out', again, '--dtype', 'q4_0'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /Allowed choices are bf16, f16, f32/);

  const shardDir = join(root, 'sharded');
  const sharded = makeModel({ preset: 'tiny', outDir: shardDir, seed: 1, shardBytes: 100_000 });
  // The 38.9 MB embedding fills shard 1 alone; each layer's ~300 KB of tensors spreads over 100 KB shards.
  assert.ok(sharded.weightFiles.length > 3);
  assert.equal(sharded.weightFiles[0], `model-00001-of-${String(sharded.weightFiles.length).padStart(5, '0')}.safetensors`);
  assert.ok(existsSync(join(shardDir, 'model.safetensors.index.json')));
  assert.ok(!existsSync(join(shardDir, 'model.safetensors')));
  const a = SafetensorsCheckpoint.open(tiny.outDir);
  const b = SafetensorsCheckpoint.open(shardDir);
  try {
    assert.deepEqual(b.tensorNames(), a.tensorNames());
    assert.equal(b.files.length, sharded.weightFiles.length);
    assert.deepEqual(b.files[0]!.tensors.map((t) => t.name), ['model.embed_tokens.weight']);
    assert.ok(b.files.slice(1).every((f) => f.header.dataSizeBytes <= 100_000 || f.tensors.length === 1));
    for (const n of a.tensorNames()) assert.deepEqual(b.readBytes(n), a.readBytes(n), n);
    assert.deepEqual(b.index!.metadata, { total_size: tiny.weightBytes });
  } finally {
    a.dispose();
    b.dispose();
  }

  const other = makeModel({ preset: 'tiny', outDir: shardDir, seed: 2 });
  assert.deepEqual(readdirSync(shardDir).filter((f) => f.includes('safetensors')), ['model.safetensors'], 'old shards and index removed');
  assert.ok(readFileSync(join(shardDir, 'config.json')).equals(readFileSync(join(tiny.outDir, 'config.json'))));
  const x = SafetensorsCheckpoint.open(tiny.outDir);
  const y = SafetensorsCheckpoint.open(other.outDir);
  try {
    for (const n of x.tensorNames()) assert.notDeepEqual(y.readBytes(n), x.readBytes(n), n);
  } finally {
    x.dispose();
    y.dispose();
  }
});

test('options and presets are validated; every preset config parses with headDim a multiple of 32', () => {
  assert.throws(() => makeModel({ preset: 'gpt-9', outDir: join(root, 'x') }), (e: unknown) => e instanceof ConfigError && /tiny, tiny-qwen3, tiny-llama/.test(e.message));
  assert.throws(() => makeModel({ preset: 'tiny', outDir: join(root, 'x'), seed: -1 }), ConfigError);
  assert.throws(() => makeModel({ preset: 'tiny', outDir: join(root, 'x'), seed: 1.5 }), ConfigError);
  assert.throws(() => makeModel({ preset: 'tiny', outDir: join(root, 'x'), dtype: 'q8_0' as 'f32' }), ConfigError);
  assert.throws(() => makeModel({ preset: 'tiny', outDir: join(root, 'x'), shardBytes: 0 }), ConfigError);
  assert.ok(!existsSync(join(root, 'x')), 'nothing written on bad options');
  for (const name of PRESET_NAMES) {
    const c = parseModelConfig(getPreset(name).config, name);
    assert.equal(c.headDim % 32, 0, name);
  }
  const q = parseModelConfig(getPreset('qwen2.5-0.5b').config);
  assert.equal(expectedTensors(q).reduce((s, t) => s + t.shape.reduce((m, d) => m * d, 1), 0), 494032768);
  const l = parseModelConfig(getPreset('llama-3.2-1b').config);
  assert.equal(expectedTensors(l).reduce((s, t) => s + t.shape.reduce((m, d) => m * d, 1), 0), 1235814400);
});

test('random weights: one stream per (seed, name), unit variance, f16/bf16 are RNE of the f32 values', () => {
  const collect = (seed: number, name: string, n: number, dtype: 'f32' | 'f16' | 'bf16'): Uint8Array => {
    const parts: Uint8Array[] = [];
    generateWeights(seed, name, n, { mean: 0.5, std: 2 }, dtype, (c) => parts.push(c.slice()));
    return new Uint8Array(Buffer.concat(parts));
  };
  const n = (1 << 20) + 77; // crosses a chunk boundary
  const f32 = new Float32Array(collect(7, 'w', n, 'f32').buffer);
  assert.equal(f32.length, n);
  let sum = 0;
  let sq = 0;
  let maxAbs = 0;
  for (const v of f32) {
    const z = (v - 0.5) / 2;
    sum += z;
    sq += z * z;
    maxAbs = Math.max(maxAbs, Math.abs(z));
  }
  assert.ok(Math.abs(sum / n) < 0.005, `mean ${sum / n}`);
  assert.ok(Math.abs(Math.sqrt(sq / n) - 1) < 0.005, `std ${Math.sqrt(sq / n)}`);
  assert.ok(maxAbs > 3.5 && maxAbs < 4.6, `truncated tails, max |z| ${maxAbs}`);
  const bf16 = new Uint16Array(collect(7, 'w', n, 'bf16').buffer);
  const f16 = new Uint16Array(collect(7, 'w', n, 'f16').buffer);
  for (let i = 0; i < n; i += 997) {
    assert.equal(bf16[i], f32ToBf16Bits(f32[i]!));
    assert.equal(f16[i], f32ToF16Bits(f32[i]!));
  }
  assert.notDeepEqual(collect(8, 'w', 64, 'f32'), collect(7, 'w', 64, 'f32'));
  assert.notDeepEqual(collect(7, 'v', 64, 'f32'), collect(7, 'w', 64, 'f32'));
  assert.deepEqual(collect(7, 'w', 64, 'f32'), new Uint8Array(f32.buffer, 0, 256), 'a prefix of the same stream');
  const r = new WeightRng(0, '');
  assert.notEqual(r.nextU32(), r.nextU32());
});

/** A micro Llama (1 layer, GQA 2:1, headDim 2) evaluated by hand on two tokens, against refForward. */
test('refForward equals a hand-written evaluation of a micro model on two tokens', () => {
  const c = parseModelConfig({
    architectures: ['LlamaForCausalLM'], vocab_size: 5, hidden_size: 4, intermediate_size: 3, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, head_dim: 2, rms_norm_eps: 1e-5, rope_theta: 10000, attention_bias: true,
  });
  const rng = new WeightRng(3, 'micro');
  const W = new Map(expectedTensors(c).map((t) => [t.name, Float32Array.from({ length: t.shape.reduce((a, b) => a * b, 1) }, () => rng.normal())]));
  const w = (n: string): Float32Array => W.get(n)!;
  const mv = (m: Float32Array, rows: number, x: number[], b?: Float32Array): number[] =>
    Array.from({ length: rows }, (_, r) => x.reduce((s, xi, i) => s + xi * m[r * x.length + i]!, b ? b[r]! : 0));
  const rms = (x: number[], g: Float32Array): number[] => {
    const inv = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-5);
    return x.map((v, i) => v * inv * g[i]!);
  };
  const L = 'model.layers.0.';
  const tokens = [3, 1];
  const e = tokens.map((t) => Array.from(w('model.embed_tokens.weight').subarray(t * 4, t * 4 + 4)));
  const a = e.map((x) => rms(x, w(`${L}input_layernorm.weight`)));
  // headDim 2: one rotary pair with inv_freq 1, so position p rotates by p radians.
  const rot = (x: number[], p: number): number[] => [x[0]! * Math.cos(p) - x[1]! * Math.sin(p), x[1]! * Math.cos(p) + x[0]! * Math.sin(p)];
  const q = a.map((x, p) => {
    const full = mv(w(`${L}self_attn.q_proj.weight`), 4, x, w(`${L}self_attn.q_proj.bias`));
    return [rot(full.slice(0, 2), p), rot(full.slice(2, 4), p)];
  });
  const k = a.map((x, p) => rot(mv(w(`${L}self_attn.k_proj.weight`), 2, x, w(`${L}self_attn.k_proj.bias`)), p));
  const v = a.map((x) => mv(w(`${L}self_attn.v_proj.weight`), 2, x, w(`${L}self_attn.v_proj.bias`)));
  const expected: number[] = [];
  for (let t = 0; t < 2; t++) {
    const heads = q[t]!.map((qh) => {
      const s = k.slice(0, t + 1).map((kj) => (qh[0]! * kj[0]! + qh[1]! * kj[1]!) / Math.SQRT2);
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const z = p.reduce((x, y) => x + y, 0);
      return [0, 1].map((i) => p.reduce((acc, pj, j) => acc + (pj / z) * v[j]![i]!, 0));
    });
    const h1 = mv(w(`${L}self_attn.o_proj.weight`), 4, heads.flat(), w(`${L}self_attn.o_proj.bias`)).map((o, i) => o + e[t]![i]!);
    const m = rms(h1, w(`${L}post_attention_layernorm.weight`));
    const g = mv(w(`${L}mlp.gate_proj.weight`), 3, m);
    const u = mv(w(`${L}mlp.up_proj.weight`), 3, m);
    const act = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]!);
    const h2 = mv(w(`${L}mlp.down_proj.weight`), 4, act).map((d, i) => d + h1[i]!);
    expected.push(...mv(w('lm_head.weight'), 5, rms(h2, w('model.norm.weight'))));
  }
  const got = refForward(c, w, tokens);
  assert.equal(got.length, 10);
  got.forEach((x, i) => assert.ok(Math.abs(x - expected[i]!) < 1e-12, `logit ${i}: ${x} vs ${expected[i]}`));
  assert.throws(() => refForward(c, w, [5]), OutOfRangeError);
  assert.throws(() => refForward(c, w, [1], { logitPositions: [1] }), OutOfRangeError);
});

const PROMPT = [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13, 9646, 5193]; // Qwen tokenizer: "The quick brown fox jumps over the lazy dog. Once upon"

/**
 * Positions whose margins are checked: the last 8 (the lm_head over 150k tokens dominates the
 * cost). Logits spread ~11 (std) and the top-1 gap of ~150k near-Gaussian logits is about
 * std / sqrt(2 ln V) ~ 2 on average but exponentially distributed, so a few percent of
 * positions have a gap under 0.1: "clear" means most positions, with a median over 0.5.
 */
const CHECKED = [4, 5, 6, 7, 8, 9, 10, 11];

function marginsOf(c: ModelConfig, w: WeightLookup, tokens: readonly number[]): { argmax: number[]; margin: number[] } {
  return topMargins(refForward(c, w, tokens, { logitPositions: CHECKED }), c.vocabSize);
}

test('refForward on tiny: causal (a prefix gives bit-identical logits), and top-1 margins are clear', () => {
  const ck = SafetensorsCheckpoint.open(tiny.outDir);
  try {
    const w = lookup(ck);
    const full = refForward(tiny.config, w, PROMPT, { logitPositions: [5] });
    const prefix = refForward(tiny.config, w, PROMPT.slice(0, 6), { logitPositions: [5] });
    assert.deepEqual(full, prefix);
    const { argmax, margin } = marginsOf(tiny.config, w, PROMPT);
    assert.ok(margin.filter((m) => m > 0.1).length >= 7, `margins ${margin.map((m) => m.toFixed(2))}`);
    assert.ok(argmax.filter((t, i) => t === PROMPT[CHECKED[i]!]).length <= 1, 'a tied model does not just echo its input token');
  } finally {
    ck.dispose();
  }
});

for (const preset of ['tiny-qwen3', 'tiny-llama', 'tiny-mistral']) {
  test(`${preset}: tensors as expected, and refForward's top-1 margins are clear`, () => {
    const r = makeModel({ preset, outDir: join(root, preset), seed: 1 });
    const ck = SafetensorsCheckpoint.open(r.outDir);
    try {
      assert.deepEqual(diffTensors(r.config, ck.tensorNames().map((n) => ({ name: n, shape: ck.info(n).shape }))), { missing: [], extra: [], wrongShape: [], ignored: [] });
      const { margin } = marginsOf(r.config, lookup(ck), PROMPT);
      const clear = margin.filter((m) => m > 0.1).length;
      assert.ok(clear >= 5, `${preset}: ${clear}/8 margins > 0.1: ${margin.map((m) => m.toFixed(2))}`);
      margin.sort((x, y) => x - y);
      assert.ok(margin[4]! > 0.5, `${preset}: median margin ${margin[4]}`);
    } finally {
      ck.dispose();
    }
  });
}

test('sliding window (tiny-mistral, window 64, 2 layers): token 0 reaches position 126 but not 127', () => {
  const dir = join(root, 'tiny-mistral');
  if (!existsSync(dir)) makeModel({ preset: 'tiny-mistral', outDir: dir, seed: 1 });
  const c = parseModelConfig(getPreset('tiny-mistral').config);
  assert.deepEqual(c.layerWindows, [64, 64]);
  const ck = SafetensorsCheckpoint.open(dir);
  try {
    const w = lookup(ck);
    const seq = Array.from({ length: 128 }, (_, i) => (i * 7919 + 13) % 150000);
    const changed = [999, ...seq.slice(1)];
    const a = refForward(c, w, seq, { logitPositions: [126, 127] });
    const b = refForward(c, w, changed, { logitPositions: [126, 127] });
    const V = c.vocabSize;
    assert.notDeepEqual(a.subarray(0, V), b.subarray(0, V), 'two layers of window 64 reach back 126 positions');
    assert.deepEqual(a.subarray(V), b.subarray(V), 'position 127 cannot see token 0');
  } finally {
    ck.dispose();
  }
});
