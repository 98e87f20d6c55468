/**
 * The two long steps every command may take, each with a progress bar on a terminal: writing a
 * preset checkpoint and loading a checkpoint into the arena. (One place, so demo, bench, generate
 * and make-model draw the same bars.)
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LanguageModel, type LanguageModelOptions } from '../model/language-model.js';
import { makeModel, type MakeModelOptions, type MakeModelResult } from '../model/make-model.js';
import { progressBar } from './progress.js';

const MIB = 1024 * 1024;

/** makeModel with a bar counting MiB written. */
export function makeModelWithProgress(opts: Omit<MakeModelOptions, 'onProgress'>): MakeModelResult {
  const bar = progressBar('writing weights', 'MiB');
  try {
    return makeModel({ ...opts, onProgress: (p) => bar.update(Math.floor(p.doneBytes / MIB), Math.ceil(p.totalBytes / MIB), p.tensor) });
  } finally {
    bar.stop();
  }
}

/** Make preset `preset` (bf16, seed 0) in `dir` unless it already holds a config.json; true when made. */
export function ensurePresetModel(dir: string, preset: string, log: (s: string) => void): boolean {
  if (existsSync(join(dir, 'config.json'))) return false;
  log(`making ${dir} (preset ${preset}, bf16, random weights) ...`);
  const r = makeModelWithProgress({ preset, outDir: dir, seed: 0, dtype: 'bf16' });
  log(`  ${r.nParams.toLocaleString('en-US')} parameters, ${(r.weightBytes / MIB).toFixed(1)} MiB, ${(r.elapsedMs / 1000).toFixed(1)} s`);
  return true;
}

/** LanguageModel.load with a bar counting tensors placed. */
export async function loadWithProgress(dir: string, opts: Omit<LanguageModelOptions, 'onProgress'>): Promise<LanguageModel> {
  const bar = progressBar('loading weights', 'tensors');
  try {
    return await LanguageModel.load(dir, { ...opts, onProgress: (done, total, tensor) => bar.update(done, total, tensor) });
  } finally {
    bar.stop();
  }
}
