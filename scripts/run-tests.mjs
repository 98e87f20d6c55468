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
const extra = process.argv.slice(2);
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...extra, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
