/**
 * `kvcache make-model --preset NAME --out DIR [--seed S] [--dtype bf16|f16|f32]`: write a
 * checkpoint folder with deterministic random weights (model/make-model.ts), with a
 * progress bar on stderr when it is a terminal, and a summary on stdout.
 */
import { InvalidArgumentError } from 'commander';
import type { WeightDType } from '../io/safetensors-format.js';
import { makeModelWithProgress } from './with-progress.js';

export interface MakeModelCommandOptions {
  readonly preset: string;
  readonly out: string;
  readonly seed: number;
  readonly dtype: WeightDType;
}

/** commander parser of --seed: an integer in [0, 2^32). */
export function parseSeed(s: string): number {
  const n = Number(s);
  if (s.trim() === '' || !Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], given "${s}"`);
  return n;
}

const MIB = 1024 * 1024;

export function runMakeModel(opts: MakeModelCommandOptions): void {
  const result = makeModelWithProgress({ preset: opts.preset, outDir: opts.out, seed: opts.seed, dtype: opts.dtype });
  const c = result.config;
  const lines = [
    `wrote ${result.outDir}: preset ${opts.preset}, seed ${opts.seed}, ${opts.dtype}, ${(result.elapsedMs / 1000).toFixed(1)} s`,
    `model:   ${c.architecture}, ${c.nLayers} layers, hidden ${c.hiddenSize}, heads ${c.nHeads}/${c.nKvHeads} x ${c.headDim}, intermediate ${c.intermediateSize}, vocab ${c.vocabSize}${c.tieWordEmbeddings ? ', tied embeddings' : ''}`,
    `weights: ${result.nParams.toLocaleString('en-US')} parameters, ${(result.weightBytes / MIB).toFixed(1)} MiB in ${result.weightFiles.join(', ')}`,
    `files:   ${result.files.join(', ')}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
