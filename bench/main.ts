#!/usr/bin/env node
/**
 * Benchmark programs (never timed unit tests). `npm run bench -- [suite...] [--ctx 1024,8192] [--out DIR] [--json]`.
 * Suites: cache. Every run measures its own baselines (bench/probes.ts) and writes one JSON file per suite.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { benchCache } from './cache.js';
import { runProbes } from './probes.js';

const SUITES = ['cache'] as const;

const program = new Command()
  .name('bench')
  .argument('[suites...]', `suites to run (${SUITES.join(', ')})`, ['cache'])
  .option('--ctx <list>', 'context lengths', '1024,8192')
  .option('--out <dir>', 'where JSON results go', 'bench-results')
  .option('--json', 'print the JSON instead of tables')
  .action((suites: string[], opts: { ctx: string; out: string; json?: boolean }) => {
    for (const s of suites) if (!(SUITES as readonly string[]).includes(s)) throw new Error(`unknown suite "${s}": expected one of ${SUITES.join(', ')}`);
    const ctxs = opts.ctx.split(',').map(Number);
    if (ctxs.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--ctx expects positive integers, given "${opts.ctx}"`);
    const log = (s: string) => (opts.json ? undefined : process.stderr.write(s + '\n'));
    const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
    log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`);
    const probes = runProbes();
    log(`probes: memcpy ${probes.memcpyGBps.toFixed(2)} GB/s, plain-JS read ${probes.jsReadGBps.toFixed(2)} GB/s`);
    const result = { date: new Date().toISOString(), machine, probes, ...benchCache(probes, ctxs, log) };
    mkdirSync(opts.out, { recursive: true });
    const file = join(opts.out, 'cache.json');
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    if (opts.json) {
      process.stdout.write(JSON.stringify(result) + '\n');
      return;
    }
    process.stdout.write('\n| kv dtype | ctx | append tok/s | ref decode attention ms | KV read GB/s | vs plain-JS probe |\n|---|---|---|---|---|---|\n');
    for (const r of result.attention) {
      process.stdout.write(`| ${r.dtype} | ${r.ctx} | ${r.appendTokensPerS.toFixed(0)} | ${r.attnMsPerCall.toFixed(2)} | ${r.attnKvGBps.toFixed(3)} | ${r.attnFractionOfJsProbe.toFixed(2)} |\n`);
    }
    process.stdout.write('\n| snapshot | layers x ctx | MiB | save MB/s | load MB/s | memcpy MB/s (probe) |\n|---|---|---|---|---|---|\n');
    for (const r of result.snapshot) {
      process.stdout.write(`| ${r.dtype} | ${r.layers} x ${r.ctx} | ${r.fileMiB.toFixed(1)} | ${r.saveMBps.toFixed(0)} | ${r.loadMBps.toFixed(0)} | ${(probes.memcpyGBps * 1000).toFixed(0)} |\n`);
    }
    process.stdout.write(`\nwritten: ${file}\n`);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
