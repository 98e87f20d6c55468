/**
 * `kvcache bench [--model DIR | --preset NAME] [--ctx 16,2048,8192] [--json] [--out DIR]`: the
 * end-to-end benchmark (generate/e2e-bench.ts) on a checkpoint folder, or on a preset made into
 * .kvcache/bench-NAME when missing. Prints markdown tables (or one JSON object with --json) and
 * writes DIR/e2e.json with --out. The side-by-side with llama.cpp lives in the repository's own
 * `npm run bench -- e2e --llama-cpp` (it installs node-llama-cpp on demand).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseDType, type DType } from '../core/dtype.js';
import { ConfigError } from '../core/errors.js';
import { e2eTables, runE2EBench, type E2EResult } from '../generate/e2e-bench.js';
import { ensurePresetModel, loadWithProgress } from './with-progress.js';

export interface BenchCliOptions {
  model?: string;
  preset?: string;
  ctx: string;
  weights: string;
  kv: string;
  decodeTokens: number;
  speedupTokens: number;
  chunk: number;
  threads?: number;
  json?: boolean;
  out?: string;
}

export interface E2EReport extends E2EResult {
  model: string;
  weights: DType;
  chunk: number;
  date: string;
  machine: { cpu: string; cores: number; node: string };
}

function parseList<T>(s: string, what: string, parse: (x: string) => T): T[] {
  const items = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (items.length === 0) throw new ConfigError(what, 'a comma-separated list', s);
  return items.map(parse);
}

/** The checkpoint folder to benchmark: --model, or the preset made on first use. */
export function benchModelDir(o: { model?: string; preset?: string }, log: (s: string) => void): string {
  if (o.model !== undefined && o.preset !== undefined) throw new ConfigError('bench model', 'one of --model DIR or --preset NAME', 'both');
  if (o.model !== undefined) return o.model;
  const preset = o.preset ?? 'small';
  const dir = join('.kvcache', `bench-${preset}`);
  ensurePresetModel(dir, preset, log);
  return dir;
}

/** Load, run the benchmark, return the report (shared by the CLI and bench/main.ts). */
export async function runBenchReport(o: BenchCliOptions, log: (s: string) => void): Promise<E2EReport> {
  const ctxs = parseList(o.ctx, '--ctx', (x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 1) throw new ConfigError('--ctx', 'positive integers', x);
    return n;
  });
  const kvDtypes = parseList(o.kv, '--kv', (x) => parseDType(x, '--kv'));
  const weights = parseDType(o.weights, '--weights');
  const dir = benchModelDir(o, log);
  const lm = await loadWithProgress(dir, { weights, threads: o.threads, chunk: o.chunk, maxSeqLen: 128 });
  try {
    const c = lm.config;
    log(`bench ${dir}: ${c.architecture} ${c.nLayers} layers, hidden ${c.hiddenSize}, heads ${c.nHeads}/${c.nKvHeads}; weights ${weights}, kernels ${lm.ks.name} x${lm.ks.nThreads}, prefill chunk ${o.chunk}`);
    const r = await runE2EBench(lm, { kvDtypes, ctxs, decodeTokens: o.decodeTokens, speedupTokens: o.speedupTokens, log });
    const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
    return { model: dir, weights, chunk: o.chunk, date: new Date().toISOString(), machine, ...r };
  } finally {
    lm.dispose();
  }
}

export async function runBench(o: BenchCliOptions): Promise<void> {
  const log = (s: string) => (o.json ? undefined : process.stderr.write(s + '\n'));
  const report = await runBenchReport(o, log);
  if (o.out !== undefined) {
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, 'e2e.json'), JSON.stringify(report, null, 2) + '\n');
  }
  if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write('\n' + e2eTables(report) + (o.out !== undefined ? `\nwritten: ${join(o.out, 'e2e.json')}\n` : ''));
}
