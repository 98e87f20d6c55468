#!/usr/bin/env node
/**
 * The `kvcache` command. Each subcommand lives in its own module; this file only wires
 * them to commander and turns typed errors into one clear line and exit code 1.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { KVCacheError } from '../core/errors.js';
import { runBench, type BenchCliOptions } from './bench.js';
import { runCacheDemo } from './cache-demo.js';
import { DEMO_MODEL_DIR, runDemo } from './demo.js';
import { runGenerate, type GenerateCliOptions } from './generate.js';
import { inspectFile } from '../io/inspect.js';
import { parseSeed, runMakeModel } from './make-model.js';
import { addSparseOptions } from './sparse-options.js';
import { PRESET_NAMES } from '../model/presets.js';
import type { WeightDType } from '../io/safetensors-format.js';

function positiveInt(name: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, given "${s}"`);
    return n;
  };
}

function nonNegNumber(name: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number >= 0, given "${s}"`);
    return n;
  };
}

function nonNegInt(name: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer >= 0, given "${s}"`);
    return n;
  };
}

const DTYPE_CHOICES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

const program = new Command();
program.name('kvcache').description('KV-cache engine for LLM inference').showHelpAfterError();

program
  .command('demo')
  .description('the main job: make the demo model if missing, stream a generation over the KV cache, and measure the speed-up over no cache')
  .option('--model <dir>', 'checkpoint folder (made with preset small when it has no config.json)', DEMO_MODEL_DIR)
  .option('--prompt <text>', 'prompt text', 'The key to fast inference on a CPU is')
  .option('--max-tokens <n>', 'tokens to generate', positiveInt('--max-tokens'), 128)
  .addOption(new Option('--weights <dtype>', 'weight dtype in memory').choices(DTYPE_CHOICES).default('f32'))
  .addOption(new Option('--kv <dtype>', 'KV cache dtype').choices(DTYPE_CHOICES).default('f16'))
  .option('--repetition-penalty <r>', 'penalty on tokens already seen (1 = off)', nonNegNumber('--repetition-penalty'), 1.3)
  .option('--threads <n>', 'kernel threads (default: all cores)', positiveInt('--threads'))
  .option('--json', 'print one JSON object (the report) instead of the stream and table')
  .action(async (opts: { model: string; prompt: string; maxTokens: number; weights: string; kv: string; repetitionPenalty: number; threads?: number; json?: boolean }) => {
    await runDemo({ ...opts, json: opts.json === true });
  });

program
  .command('cache-demo')
  .description('fill caches of a real model shape in every KV dtype, attend over them, snapshot them, and report the figures')
  .option('--ctx <n>', 'context length (positions cached per layer)', positiveInt('--ctx'), 2048)
  .option('--layers <n>', 'layers (the Qwen2.5-0.5B shape has 24)', positiveInt('--layers'), 24)
  .option('--kv <list>', 'comma-separated KV dtypes', 'f32,f16,bf16,q8_0,q4_0')
  .option('--seed <n>', 'seed of the synthetic K/V/Q', positiveInt('--seed'), 1)
  .option('--json', 'print one JSON object instead of the table')
  .action(async (opts: { ctx: number; layers: number; kv: string; seed: number; json?: boolean }) => {
    await runCacheDemo({ ctx: opts.ctx, layers: opts.layers, dtypes: opts.kv.split(','), seed: opts.seed, json: opts.json === true });
  });

program
  .command('make-model')
  .description('write a Hugging Face checkpoint folder with deterministic random weights and a real tokenizer')
  .addOption(new Option('--preset <name>', 'model preset').choices(PRESET_NAMES).makeOptionMandatory())
  .requiredOption('--out <dir>', 'output folder (created if missing)')
  .option('--seed <n>', 'seed of the random weights', parseSeed, 0)
  .addOption(new Option('--dtype <dtype>', 'weight dtype').choices(['bf16', 'f16', 'f32']).default('bf16'))
  .action((opts: { preset: string; out: string; seed: number; dtype: WeightDType }) => {
    runMakeModel(opts);
  });


const generateCmd = program
  .command('generate')
  .description('generate text with a Hugging Face checkpoint folder (Llama, Qwen2, Qwen3, Mistral)')
  .requiredOption('--model <dir>', 'checkpoint folder (config.json, *.safetensors, tokenizer.json)')
  .option('--prompt <text>', 'prompt text (tokenized with the model\'s tokenizer)')
  .option('--prompt-ids <ids>', 'comma-separated token ids, used exactly (no BOS added)')
  .option('--max-tokens <n>', 'tokens to generate', positiveInt('--max-tokens'), 64)
  .option('--temperature <t>', 'sampling temperature, 0 = greedy (default: generation_config.json, else greedy)', nonNegNumber('--temperature'))
  .option('--top-k <k>', 'keep the k most likely tokens, 0 = off (default: generation_config.json)', nonNegNumber('--top-k'))
  .option('--top-p <p>', 'nucleus mass, 1 = off (default: generation_config.json)', nonNegNumber('--top-p'))
  .option('--min-p <p>', 'drop tokens below p * p(best), 0 = off (default: generation_config.json)', nonNegNumber('--min-p'))
  .option('--repetition-penalty <r>', 'penalty on tokens already seen, 1 = off (default: generation_config.json)', nonNegNumber('--repetition-penalty'))
  .option('--seed <s>', 'sampling seed', parseSeed, 0)
  .addOption(new Option('--weights <dtype>', 'weight dtype in memory').choices(DTYPE_CHOICES).default('f32'))
  .addOption(new Option('--kv <dtype>', 'KV cache dtype (K and V)').choices(DTYPE_CHOICES).default('f32'))
  .addOption(new Option('--kv-k <dtype>', 'K dtype (overrides --kv)').choices(DTYPE_CHOICES))
  .addOption(new Option('--kv-v <dtype>', 'V dtype (overrides --kv)').choices(DTYPE_CHOICES))
  .option('--threads <n>', 'kernel threads (default: all cores)', positiveInt('--threads'))
  .option('--no-cache', 'recompute the whole sequence every step (the uncached baseline)')
  .option('--chat', 'apply the chat template to --prompt')
  .option('--max-seq-len <n>', 'cache positions (default: the model\'s, at most 4096)', positiveInt('--max-seq-len'))
  .option('--json', 'print one JSON object: tokens, text, promptTokens, prefillMs, decodeTokensPerS, kvBytes');
addSparseOptions(generateCmd).action(async (opts: GenerateCliOptions) => {
  await runGenerate(opts);
});

program
  .command('bench')
  .description('end-to-end benchmark: prefill and decode tokens/s per KV dtype and context, time to first token, KV bytes per token, speed-up over no cache')
  .option('--model <dir>', 'checkpoint folder to benchmark')
  .addOption(new Option('--preset <name>', 'or a preset, made into .kvcache/bench-NAME when missing (default small)').choices(PRESET_NAMES))
  .option('--ctx <list>', 'prompt lengths', '16,2048,8192')
  .addOption(new Option('--weights <dtype>', 'weight dtype in memory').choices(DTYPE_CHOICES).default('q8_0'))
  .option('--kv <list>', 'KV dtypes timed (comma-separated)', 'f16,q8_0')
  .option('--decode-tokens <n>', 'tokens decoded after each prompt', positiveInt('--decode-tokens'), 32)
  .option('--speedup-tokens <n>', 'tokens generated with and without the cache (0 = skip)', nonNegInt('--speedup-tokens'), 512)
  .option('--chunk <n>', 'prefill chunk (tokens per forward)', positiveInt('--chunk'), 256)
  .option('--threads <n>', 'kernel threads (default: all cores)', positiveInt('--threads'))
  .option('--json', 'print one JSON object instead of the tables')
  .option('--out <dir>', 'also write DIR/e2e.json')
  .action(async (opts: BenchCliOptions) => {
    await runBench(opts);
  });

program
  .command('inspect')
  .description('print the header and sizes of a snapshot, a safetensors file, a model.safetensors.index.json or a GGUF file')
  .argument('<file>')
  .action((file: string) => {
    process.stdout.write(inspectFile(file) + '\n');
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof KVCacheError) {
    process.stderr.write(`kvcache: ${e.name}: ${e.message}\n`);
  } else if (typeof code === 'string' && code.startsWith('E')) {
    // A file-system error (ENOENT, EACCES, ...): its message already names the path.
    process.stderr.write(`kvcache: ${(e as Error).message}\n`);
  } else {
    process.stderr.write(`kvcache: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  process.exit(1);
});
