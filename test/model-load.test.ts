/**
 * End to end on generated checkpoints: load a make-model folder into the arena, run the fast
 * forward pass over a cache, and compare the last token's logits with the float64 reference
 * forward of the same checkpoint (all four architectures; Mistral's prompt crosses its window).
 * Also: a checkpoint whose tensors disagree with its config is rejected and leaks nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Arena } from '../src/core/arena.js';
import { FormatError } from '../src/core/errors.js';
import { SafetensorsCheckpoint } from '../src/io/safetensors-index.js';
import { kernelsFor } from '../src/kernels/registry.js';
import { nmse } from '../src/kernels/tolerances.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { Forward, Workspace } from '../src/model/forward.js';
import { makeModel } from '../src/model/make-model.js';
import { refForward } from '../src/model/ref-forward.js';
import { loadModel } from '../src/model/weights.js';

const PROMPT = Array.from({ length: 70 }, (_, i) => (i * 7919 + 13) % 5000); // 70 > tiny-mistral's window of 64

test('loaded checkpoints: fast forward over the cache equals the float64 reference forward', () => {
  const root = mkdtempSync(join(tmpdir(), 'kvcache-load-'));
  const arena = new Arena({ maximumBytes: 1 << 30 });
  try {
    for (const preset of ['tiny', 'tiny-qwen3', 'tiny-llama', 'tiny-mistral']) {
      const dir = join(root, preset);
      makeModel({ preset, outDir: dir, seed: 3, dtype: 'f32' });
      const model = loadModel(dir, { arena, weights: 'f32' });
      const ks = kernelsFor(arena);
      const s = model.shape;
      const cache = new StaticCache({ nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, maxSeqLen: 128, dtype: 'f32', layout: 'bshd', arena });
      const ws = new Workspace(ks, s, 32, 1);
      const fwd = new Forward(ks, s, model.weights, ws);
      const ids = Int32Array.from(PROMPT);
      for (let p = 0; p < ids.length; p += 32) {
        const chunk = ids.subarray(p, Math.min(ids.length, p + 32));
        fwd.run(chunk, p, cache, 0, p + chunk.length === ids.length ? 1 : 0);
      }
      const fast = arena.f32.slice(ws.logits / 4, ws.logits / 4 + s.vocab);
      const ckpt = SafetensorsCheckpoint.open(dir);
      const want = refForward(model.config, (n) => ckpt.readF32(n), PROMPT, { logitPositions: [PROMPT.length - 1] });
      ckpt.dispose();
      const err = nmse(fast, want);
      assert.ok(err < 1e-8, `${preset}: logits NMSE ${err}`);
      let best = 0;
      for (let i = 1; i < s.vocab; i++) if (want[i]! > want[best]!) best = i;
      assert.equal(ks.argmax(ws.logits, s.vocab), best, `${preset}: greedy token`);
      ws.dispose();
      cache.dispose();
      model.dispose();
    }
  } finally {
    arena.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});

test('a checkpoint that disagrees with its config: FormatError naming the tensors, nothing leaked', () => {
  const root = mkdtempSync(join(tmpdir(), 'kvcache-load-bad-'));
  const arena = new Arena({ maximumBytes: 1 << 30 });
  try {
    const dir = join(root, 'tiny');
    makeModel({ preset: 'tiny', outDir: dir, seed: 1, dtype: 'bf16' });
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    cfg.num_hidden_layers = 3;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const live = arena.liveAllocations;
    assert.throws(() => loadModel(dir, { arena }), (e: unknown) => e instanceof FormatError && /missing model\.layers\.2\./.test(e.message));
    assert.equal(arena.liveAllocations, live);
    cfg.num_hidden_layers = 2;
    cfg.intermediate_size = 200;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    assert.throws(() => loadModel(dir, { arena }), /mlp\.gate_proj\.weight shape \[256, 128\] \(expected \[200, 128\]\)/);
    assert.equal(arena.liveAllocations, live);
  } finally {
    arena.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});
