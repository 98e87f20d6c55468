/**
 * `kvcache demo` and `kvcache bench` on a tiny checkpoint: the reports carry what the README and
 * the issue promise (prompt tokens, TTFT, decode tok/s, KV bytes, speed-up over no cache, per-dtype
 * KV bytes per token), with values that follow from the model's shape, and bad input is one line.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rowSizeBytes, DTYPE_NAMES } from '../src/core/dtype.js';
import { makeModel } from '../src/model/make-model.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
let root = '';
let dir = '';
// tiny preset: 2 layers, 2 KV heads, headDim 32
const kvPerToken = (d: (typeof DTYPE_NAMES)[number]) => 2 * 2 * 2 * rowSizeBytes(d, 32);

function cli(args: string[], cwd?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', cwd });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'kvcache-cli-db-'));
  dir = join(root, 'tiny');
  makeModel({ preset: 'tiny', outDir: dir, seed: 4, dtype: 'bf16' });
});
after(() => rmSync(root, { recursive: true, force: true }));

test('demo --json: cached and uncached runs, identical greedy tokens, KV bytes of the sequence', () => {
  const r = cli(['demo', '--model', dir, '--max-tokens', '12', '--kv', 'q8_0', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.generatedTokens, 12);
  assert.ok(rep.promptTokens > 0);
  assert.equal(rep.kv, 'q8_0');
  assert.equal(rep.sameTokens, true);
  assert.equal(rep.commonPrefixTokens, 12);
  // The last sampled token is never fed back, so the cache holds prompt + 11 positions.
  assert.equal(rep.kvBytes, (rep.promptTokens + 11) * kvPerToken('q8_0'));
  assert.ok(rep.decodeTokensPerS > 0 && rep.noCache.decodeTokensPerS > 0 && rep.timeToFirstTokenMs > 0);
  assert.ok(Math.abs(rep.speedup - rep.noCache.totalMs / rep.totalMs) < 1e-9);
});

test('demo makes its model when the folder is missing', () => {
  const cwd = join(root, 'fresh');
  spawnSync('mkdir', ['-p', cwd]);
  // --model points at an empty folder: the demo writes preset small there first. Kept short.
  const target = join(cwd, 'm');
  const r = cli(['demo', '--model', target, '--max-tokens', '2', '--json'], cwd);
  assert.equal(r.status, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(target, 'config.json'), 'utf8'));
  assert.equal(cfg.num_hidden_layers, 8);
  assert.equal(cfg.hidden_size, 512);
  assert.ok(existsSync(join(target, 'tokenizer.json')));
  assert.equal(JSON.parse(r.stdout).generatedTokens, 2);
});

test('bench --json: one run per (KV dtype, context), KV bytes per token for every dtype, speed-up', () => {
  const r = cli(['bench', '--model', dir, '--ctx', '8,40', '--kv', 'f32,q4_0', '--weights', 'f32', '--decode-tokens', '4', '--speedup-tokens', '10', '--chunk', '16', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.deepEqual(rep.runs.map((x: { kv: string; ctx: number }) => `${x.kv}@${x.ctx}`), ['f32@8', 'f32@40', 'q4_0@8', 'q4_0@40']);
  for (const d of DTYPE_NAMES) assert.equal(rep.kvBytesPerToken[d], kvPerToken(d), d);
  for (const x of rep.runs) {
    assert.equal(x.kvBytes, (x.ctx + 3) * kvPerToken(x.kv), `${x.kv}@${x.ctx} KV bytes after ${x.ctx} + 3 fed tokens`);
    assert.ok(x.prefillTokensPerS > 0 && x.decodeTokensPerS > 0);
    assert.ok(Math.abs(x.prefillTokensPerS - x.ctx / (x.timeToFirstTokenMs / 1000)) < 1e-6 * x.prefillTokensPerS);
  }
  assert.equal(rep.speedup.tokens, 10);
  assert.equal(rep.speedup.sameTokens, true, 'f32 weights and KV: cached and uncached greedy tokens agree');
  assert.ok(rep.speedup.uncachedMs > 0 && rep.speedup.cachedMs > 0);
});

test('bench: bad input is one clear line', () => {
  const a = cli(['bench', '--model', dir, '--ctx', '8,x']);
  assert.equal(a.status, 1);
  assert.match(a.stderr, /--ctx.*positive integers.*x/);
  const b = cli(['bench', '--model', dir, '--preset', 'tiny']);
  assert.equal(b.status, 1);
  assert.match(b.stderr, /one of --model DIR or --preset NAME/);
  const c = cli(['bench', '--model', dir, '--kv', 'f8']);
  assert.equal(c.status, 1);
  assert.match(c.stderr, /--kv.*f8/);
});
