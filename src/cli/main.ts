#!/usr/bin/env node
/**
 * The `kvcache` command. Each subcommand lives in its own module; this file only wires
 * them to commander and turns typed errors into one clear line and exit code 1.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { KVCacheError } from '../core/errors.js';
import { runDemo } from './demo.js';
import { inspectFile } from '../io/inspect.js';
import { parseSeed, runMakeModel } from './make-model.js';
import { PRESET_NAMES } from '../model/presets.js';
import type { WeightDType } from '../io/safetensors-format.js';

function positiveInt(name: string) {
  return (s: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, given "${s}"`);
    return n;
  };
}

const program = new Command();
program.name('kvcache').description('KV-cache engine for LLM inference').showHelpAfterError();

program
  .command('demo')
  .description('fill caches of a real model shape in every KV dtype, attend over them, snapshot them, and report the figures')
  .option('--ctx <n>', 'context length (positions cached per layer)', positiveInt('--ctx'), 2048)
  .option('--layers <n>', 'layers (the Qwen2.5-0.5B shape has 24)', positiveInt('--layers'), 24)
  .option('--kv <list>', 'comma-separated KV dtypes', 'f32,f16,bf16,q8_0,q4_0')
  .option('--seed <n>', 'seed of the synthetic K/V/Q', positiveInt('--seed'), 1)
  .option('--json', 'print one JSON object instead of the table')
  .action(async (opts: { ctx: number; layers: number; kv: string; seed: number; json?: boolean }) => {
    await runDemo({ ctx: opts.ctx, layers: opts.layers, dtypes: opts.kv.split(','), seed: opts.seed, json: opts.json === true });
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

program
  .command('inspect')
  .description('print the header and sizes of a snapshot, a safetensors file or a model.safetensors.index.json')
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
