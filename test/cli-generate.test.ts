/**
 * The `kvcache generate` contract (DESIGN.md): --json prints exactly one object with the
 * documented keys; cached and --no-cache agree on greedy tokens; bad input is one clear line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeModel } from '../src/model/make-model.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('generate --json: the documented object; --no-cache gives the same greedy tokens', () => {
  const root = mkdtempSync(join(tmpdir(), 'kvcache-cli-'));
  try {
    const dir = join(root, 'm');
    makeModel({ preset: 'tiny', outDir: dir, seed: 2, dtype: 'bf16' });
    const base = ['generate', '--model', dir, '--prompt-ids', '785,3974,13876,38835', '--max-tokens', '6', '--json'];
    const a = cli(base);
    assert.equal(a.status, 0, a.stderr);
    const lines = a.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'exactly one line on stdout');
    const obj = JSON.parse(lines[0]!);
    assert.deepEqual(Object.keys(obj), ['tokens', 'text', 'promptTokens', 'prefillMs', 'decodeTokensPerS', 'kvBytes']);
    assert.equal(obj.tokens.length, 6);
    assert.equal(obj.promptTokens, 4);
    assert.equal(obj.kvBytes, (4 + 5) * 2 * 2 * 2 * 32 * 4, 'f32 K+V of 9 positions, 2 layers, 2 KV heads, headDim 32');
    const b = cli([...base, '--no-cache']);
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(JSON.parse(b.stdout).tokens, obj.tokens);
    const bad = cli(['generate', '--model', dir, '--max-tokens', '2']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^kvcache: ConfigError: prompt: expected exactly one of --prompt TEXT or --prompt-ids/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('generate --sparse: same --json object, the sparse report on stderr, same greedy tokens when every block is attended; flags need --sparse', () => {
  const root = mkdtempSync(join(tmpdir(), 'kvcache-cli-sparse-'));
  try {
    const dir = join(root, 'm');
    makeModel({ preset: 'tiny', outDir: dir, seed: 2, dtype: 'f32' });
    const ids = Array.from({ length: 200 }, (_, i) => 1000 + ((i * 7919) % 20000)).join(',');
    const base = ['generate', '--model', dir, '--prompt-ids', ids, '--max-tokens', '8', '--temperature', '0'];
    const dense = cli([...base, '--json']);
    assert.equal(dense.status, 0, dense.stderr);
    // Blocks of 32: 6 full blocks after the prompt; init 2 (the default for 32-token blocks) + pick 8 + local 1 covers them (dense fallback).
    const all = cli([...base, '--json', '--sparse', '--sparse-block-len', '32', '--sparse-pick', '8', '--sparse-local', '1', '--sparse-dense-layers', '0']);
    assert.equal(all.status, 0, all.stderr);
    assert.deepEqual(Object.keys(JSON.parse(all.stdout)), ['tokens', 'text', 'promptTokens', 'prefillMs', 'decodeTokensPerS', 'kvBytes']);
    assert.deepEqual(JSON.parse(all.stdout).tokens, JSON.parse(dense.stdout).tokens);
    const few = cli([...base, '--sparse', '--sparse-block-len', '32', '--sparse-pick', '1', '--sparse-init', '1', '--sparse-local', '1', '--sparse-dense-layers', '0', '--sparse-anchor', 'quest']);
    assert.equal(few.status, 0, few.stderr);
    const m = /sparse: quest anchors, layer retrieval, blocks of 32, init 1 \+ pick 1 \+ local 1; decode read ([\d.]+)% of the keys/.exec(few.stderr);
    assert.ok(m, few.stderr);
    assert.ok(Number(m[1]) < 80, `read ${m[1]}% of the keys`);
    const bad = cli([...base, '--sparse-pick', '3']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^kvcache: ConfigError: --sparse-pick: expected given with --sparse/);
    const badAnchor = cli([...base, '--sparse', '--sparse-anchor', 'nope']);
    assert.equal(badAnchor.status, 1);
    assert.match(badAnchor.stderr, /--sparse-anchor/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
