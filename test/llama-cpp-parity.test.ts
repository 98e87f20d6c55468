/**
 * Token-exact parity with llama.cpp (through node-llama-cpp's CPU prebuilt, installed on demand
 * into .llama-cpp/ by scripts/llama-cpp.mjs): generated Qwen2, Qwen3 and Llama (llama3 rope)
 * checkpoints with GQA, exported to GGUF with f32 weights; f32 KV on both sides; greedy
 * continuations of 32 tokens from fixed prompt ids (20 and 650 tokens) must be identical.
 * The Llama checkpoint keeps its llama3 rope scaling (exported as llama.cpp's rope_freqs
 * divisors) on both prompts, and runs once more with rope_scaling removed (plain llama rope).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Arena } from '../src/core/arena.js';
import { generate } from '../src/generate/generate.js';
import { exportGguf } from '../src/model/gguf-export.js';
import { LanguageModel } from '../src/model/language-model.js';
import { makeModel } from '../src/model/make-model.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/llama-cpp.mjs', import.meta.url));
const N = 32;
const prompt = (n: number, salt: number) => Array.from({ length: n }, (_, i) => (i * 7919 + salt) % 20000);

function llamaCppGreedy(gguf: string, ids: number[]): number[] {
  const out = execFileSync(process.execPath, [SCRIPT, 'greedy', '--model', gguf, '--prompt-ids', ids.join(','), '--n', String(N), '--kv', 'f32', '--threads', '2'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!).tokens;
}

test('greedy tokens identical to llama.cpp for qwen2, qwen3 and llama checkpoints (f32 weights, f32 KV)', { timeout: 900_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'kvcache-llamacpp-'));
  const arena = new Arena({ maximumBytes: 1 << 30 });
  try {
    const cases: [string, boolean, number[][]][] = [
      ['tiny', false, [prompt(20, 13), prompt(650, 101)]],
      ['tiny-qwen3', false, [prompt(20, 13), prompt(650, 101)]],
      ['tiny-llama', false, [prompt(20, 13), prompt(650, 101)]],
      ['tiny-llama', true, [prompt(650, 101)]],
    ];
    for (const [preset, plainRope, prompts] of cases) {
      const dir = join(root, `${preset}${plainRope ? '-plain-rope' : ''}`);
      makeModel({ preset, outDir: dir, seed: 4, dtype: 'f32' });
      if (plainRope) {
        const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
        cfg.rope_scaling = null;
        writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      }
      const gguf = join(dir, 'model.gguf');
      exportGguf(dir, gguf, { weights: 'f32' });
      const lm = await LanguageModel.load(dir, { arena, maxSeqLen: 1024 });
      try {
        for (const ids of prompts) {
          let ours: number[] = [];
          for await (const ev of generate(lm, ids, { maxTokens: N, eosIds: [] })) ours.push(ev.tokenId);
          ours = ours.slice(0, N);
          const theirs = llamaCppGreedy(gguf, ids);
          assert.deepEqual(ours, theirs, `${dir}, prompt of ${ids.length} tokens`);
        }
      } finally {
        lm.dispose();
      }
    }
  } finally {
    arena.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});
