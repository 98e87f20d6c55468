#!/usr/bin/env node
// Runs every compiled test file under dist/test with node's test runner.
// Node 20's `--test` takes no globs, so the files are listed here.
// Extra arguments are passed through (e.g. `npm test -- --test-name-pattern=snapshot`).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = find('dist/test').sort();
if (files.length === 0) {
  console.error('no test files found under dist/test: run `npm run build` first');
  process.exit(1);
}
// Two passes: the engine on its default (WASM) kernels, then forced onto the reference kernels
// (KVCACHE_KERNELS=ref), so that every path above the kernels is also checked on the oracle.
// `--fast` runs the first pass only.
const extra = process.argv.slice(2).filter((a) => a !== '--fast');
const passes = process.argv.includes('--fast') ? [null] : [null, 'ref'];
let status = 0;
for (const kernels of passes) {
  const env = { ...process.env };
  if (kernels) env.KVCACHE_KERNELS = kernels;
  else delete env.KVCACHE_KERNELS;
  console.log(`\n== test pass: ${kernels ? 'KVCACHE_KERNELS=' + kernels : 'default kernels'} ==\n`);
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...extra, ...files], { stdio: 'inherit', env });
  if (r.status !== 0) status = r.status ?? 1;
}
process.exit(status);
