/**
 * `kvcache make-model --preset NAME --out DIR [--seed S] [--dtype bf16|f16|f32]`: write a
 * checkpoint folder with deterministic random weights (model/make-model.ts), with a
 * progress bar on stderr when it is a terminal, and a summary on stdout.
 */
import cliProgress from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { makeModel, type MakeModelProgress } from '../model/make-model.js';
import type { WeightDType } from '../io/safetensors-format.js';

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

/** A progress callback drawing a bar on a terminal, and the function that ends it. */
function progressBar(): { onProgress?: (p: MakeModelProgress) => void; stop: () => void } {
  if (process.stderr.isTTY !== true) return { stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'writing weights {bar} {percentage}% | {value}/{total} MiB | {tensor}', hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (p) => {
      if (!started) {
        bar.start(Math.ceil(p.totalBytes / MIB), 0, { tensor: p.tensor });
        started = true;
      }
      bar.update(Math.floor(p.doneBytes / MIB), { tensor: p.tensor });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

export function runMakeModel(opts: MakeModelCommandOptions): void {
  const progress = progressBar();
  let result;
  try {
    result = makeModel({ preset: opts.preset, outDir: opts.out, seed: opts.seed, dtype: opts.dtype, onProgress: progress.onProgress });
  } finally {
    progress.stop();
  }
  const c = result.config;
  const lines = [
    `wrote ${result.outDir}: preset ${opts.preset}, seed ${opts.seed}, ${opts.dtype}, ${(result.elapsedMs / 1000).toFixed(1)} s`,
    `model:   ${c.architecture}, ${c.nLayers} layers, hidden ${c.hiddenSize}, heads ${c.nHeads}/${c.nKvHeads} x ${c.headDim}, intermediate ${c.intermediateSize}, vocab ${c.vocabSize}${c.tieWordEmbeddings ? ', tied embeddings' : ''}`,
    `weights: ${result.nParams.toLocaleString('en-US')} parameters, ${(result.weightBytes / MIB).toFixed(1)} MiB in ${result.weightFiles.join(', ')}`,
    `files:   ${result.files.join(', ')}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
