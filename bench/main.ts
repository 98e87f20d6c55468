#!/usr/bin/env node
/**
 * Benchmark programs (never timed unit tests).
 * `npm run bench -- [suite...] [--ctx 1024,8192] [--threads 2] [--out DIR] [--json]`; suites cache,
 * kernels (`--only many` etc.: some of its parts, bench/kernels.ts; `--rounds 5`: interleaved
 * kernel / probe rounds per matvec and decode attention row), e2e (see bench/e2e.ts for its
 * options, --llama-cpp among them), paged (bench/paged.ts: batched generation on the paged cache vs
 * one prompt after another; uses the e2e model options), prefix-ttft (bench/prefix-ttft.ts),
 * batch-decode (bench/batch-decode.ts: B sequences vs their roofline), kv-memory
 * (bench/kv-memory.ts: bytes per token and attention error per KV dtype), sparse (bench/sparse.ts:
 * sparse vs dense decode at long context, and vs llama.cpp with --llama-cpp).
 * Every run measures its own baselines (bench/probes.ts, bench/wasm-probes.ts), prints markdown
 * tables (what BENCHMARKS.md holds) and writes one JSON file per suite under --out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { benchCache, cacheTables } from './cache.js';
import { benchE2E, e2eSuiteTables, type E2ESuiteOptions } from './e2e.js';
import { benchKernels, kernelTables } from './kernels.js';
import { batchDecodeTables, benchBatchDecode } from './batch-decode.js';
import { benchKvMemory, kvMemoryTables } from './kv-memory.js';
import { benchPaged, pagedTables } from './paged.js';
import { benchPrefixTtft, prefixTtftTables } from './prefix-ttft.js';
import { benchSparse, sparseTables } from './sparse.js';
import { runProbes } from './probes.js';

export interface SuiteOptions {
  ctxs: number[] | null;
  threads: number;
  log: (s: string) => void;
  /** kernels suite only: the parts to run (bench/kernels.ts KERNEL_PARTS); null = all. */
  only: string[] | null;
  /** kernels suite only: interleaved kernel / probe rounds per matvec and decode attention row. */
  rounds: number;
  /** e2e suite only. */
  e2e: Omit<E2ESuiteOptions, 'ctxs' | 'threads' | 'log'>;
}

interface Suite {
  run(opts: SuiteOptions): object | Promise<object>;
  tables(result: never): string;
}

const SUITES: Record<string, Suite> = {
  cache: {
    run: (o) => benchCache(runProbes(), o.ctxs ?? [1024, 8192], o.log),
    tables: cacheTables,
  },
  kernels: {
    run: (o) => benchKernels({ ...o, ctxs: o.ctxs ?? [1024, 8192, 32768], rounds: o.rounds }),
    tables: kernelTables,
  },
  e2e: {
    run: (o) => benchE2E({ ...o.e2e, ctxs: o.ctxs, threads: o.threads, log: o.log }),
    tables: e2eSuiteTables,
  },
  paged: {
    run: (o) => benchPaged({ ...o.e2e, tokens: o.e2e.decodeTokens, threads: o.threads, log: o.log }),
    tables: pagedTables,
  },
  'prefix-ttft': {
    run: (o) => benchPrefixTtft({ ...o.e2e, threads: o.threads, log: o.log }),
    tables: prefixTtftTables,
  },
  'batch-decode': {
    run: (o) => benchBatchDecode({ ...o.e2e, tokens: o.e2e.decodeTokens, threads: o.threads, log: o.log }),
    tables: batchDecodeTables,
  },
  sparse: {
    run: (o) => benchSparse({ ...o.e2e, ctxs: o.ctxs, threads: o.threads, log: o.log }),
    tables: sparseTables,
  },
  'kv-memory': {
    run: (o) => benchKvMemory({ ctx: o.ctxs?.[0], log: o.log }),
    tables: kvMemoryTables,
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
  .option('--only <parts>', 'kernels: run only these parts (probes, linear, attention, many)')
  .option('--rounds <n>', 'kernels: interleaved kernel / probe rounds per matvec and decode attention row', '5')
  .option('--out <dir>', 'where JSON results go', 'bench-results')
  .option('--json', 'print the JSON instead of tables')
  .option('--preset <name>', 'e2e: model preset (made into .kvcache/bench-NAME when missing)')
  .option('--model <dir>', 'e2e: checkpoint folder instead of a preset')
  .option('--kv <list>', 'e2e: KV dtypes', 'f16,q8_0')
  .option('--weights <dtype>', 'e2e: weight dtype', 'q8_0')
  .option('--decode-tokens <n>', 'e2e: tokens decoded per context', '32')
  .option('--speedup-tokens <n>', 'e2e: tokens generated with and without the cache (0 = skip)', '512')
  .option('--llama-cpp', 'e2e: the same prompts through llama.cpp (node-llama-cpp) side by side')
  .action(async (suites: string[], opts: {
    ctx?: string; threads: string; only?: string; rounds: string; out: string; json?: boolean; preset?: string; model?: string; kv: string; weights: string;
    decodeTokens: string; speedupTokens: string; llamaCpp?: boolean;
  }) => {
    for (const s of suites) if (!(s in SUITES)) throw new Error(`unknown suite "${s}": expected one of ${Object.keys(SUITES).join(', ')}`);
    const threads = Number(opts.threads);
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads expects a positive integer, given "${opts.threads}"`);
    const rounds = Number(opts.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds expects a positive integer, given "${opts.rounds}"`);
    const log = (s: string) => (opts.json ? undefined : process.stderr.write(s + '\n'));
    const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
    log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`);
    const e2e = {
      preset: opts.preset, model: opts.model, kv: opts.kv, weights: opts.weights,
      decodeTokens: Number(opts.decodeTokens), speedupTokens: Number(opts.speedupTokens), llamaCpp: opts.llamaCpp === true,
    };
    mkdirSync(opts.out, { recursive: true });
    for (const name of suites) {
      const suite = SUITES[name]!;
      const result = { suite: name, date: new Date().toISOString(), machine, ...(await suite.run({ ctxs: parseCtx(opts.ctx), threads, rounds, log, e2e, only: opts.only === undefined ? null : opts.only.split(',') })) };
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
