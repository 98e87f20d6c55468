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
