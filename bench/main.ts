#!/usr/bin/env node
/**
 * Benchmark programs (never timed unit tests).
 * `npm run bench -- [suite...] [--ctx 1024,8192] [--threads 2] [--out DIR] [--json]`.
 * Every run measures its own baselines (bench/probes.ts, bench/wasm-probes.ts), prints markdown
 * tables (what BENCHMARKS.md holds) and writes one JSON file per suite under --out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { benchCache, cacheTables } from './cache.js';
import { benchKernels, kernelTables } from './kernels.js';
import { runProbes } from './probes.js';

export interface SuiteOptions {
  ctxs: number[] | null;
  threads: number;
  log: (s: string) => void;
}

interface Suite {
  run(opts: SuiteOptions): object;
  tables(result: never): string;
}

const SUITES: Record<string, Suite> = {
  cache: {
    run: (o) => benchCache(runProbes(), o.ctxs ?? [1024, 8192], o.log),
    tables: cacheTables,
  },
  kernels: {
    run: (o) => benchKernels({ ...o, ctxs: o.ctxs ?? [1024, 8192, 32768] }),
    tables: kernelTables,
  },
};

function parseCtx(s: string | undefined): number[] | null {
  if (s === undefined) return null;
  const ctxs = s.split(',').map(Number);
  if (ctxs.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--ctx expects positive integers, given "${s}"`);
  return ctxs;
}

const program = new Command()
  .name('bench')
  .argument('[suites...]', `suites to run (${Object.keys(SUITES).join(', ')})`, ['cache'])
  .option('--ctx <list>', 'context lengths (default per suite)')
  .option('--threads <n>', 'threads for the kernels suite', String(Math.min(2, cpus().length)))
  .option('--out <dir>', 'where JSON results go', 'bench-results')
  .option('--json', 'print the JSON instead of tables')
  .action((suites: string[], opts: { ctx?: string; threads: string; out: string; json?: boolean }) => {
    for (const s of suites) if (!(s in SUITES)) throw new Error(`unknown suite "${s}": expected one of ${Object.keys(SUITES).join(', ')}`);
    const threads = Number(opts.threads);
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads expects a positive integer, given "${opts.threads}"`);
    const log = (s: string) => (opts.json ? undefined : process.stderr.write(s + '\n'));
    const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
    log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`);
    mkdirSync(opts.out, { recursive: true });
    for (const name of suites) {
      const suite = SUITES[name]!;
      const result = { suite: name, date: new Date().toISOString(), machine, ...suite.run({ ctxs: parseCtx(opts.ctx), threads, log }) };
      const file = join(opts.out, `${name}.json`);
      writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
      if (opts.json) process.stdout.write(JSON.stringify(result) + '\n');
      else process.stdout.write(`\n## ${name}\n\n${suite.tables(result as never)}\nwritten: ${file}\n`);
    }
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
