/**
 * The forward pass on both KernelSets: the WASM set and the reference set give the same
 * logits for a small random model (GQA, q/k/v and o biases, per-head q/k norm), prefill in one
 * chunk equals token-by-token decode over the cache, and KVCACHE_KERNELS=ref selects the
 * reference set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { encodeArray, type DType } from '../src/core/dtype.js';
import { mulberry32, normalArray } from '../src/core/rng.js';
import { kernelsFor, refKernels, wasmKernels } from '../src/kernels/registry.js';
import type { KernelSet } from '../src/kernels/kernel-set.js';
import { ropeInvFreq } from '../src/kernels/ref/rope.js';
import { nmse } from '../src/kernels/tolerances.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { StaticCache } from '../src/kv/static-cache.js';
import { Forward, Workspace, type BatchPart } from '../src/model/forward.js';
import { DenseRowKV, type SequenceKV } from '../src/model/sequence-kv.js';
import type { ForwardShape, LinearWeight, ModelWeights } from '../src/model/weights-layout.js';

const SHAPE: ForwardShape = {
  nLayers: 2, hidden: 64, nHeads: 4, nKvHeads: 2, headDim: 32, intermediate: 96, vocab: 50,
  rmsEps: 1e-6, rotaryDim: 32, ropePairing: 'neox', layerWindows: [Infinity, Infinity],
};

/** Random weights placed in `arena` (the same seed gives the same model in any arena). */
function randomModel(arena: Arena, wDtype: DType): ModelWeights {
  const rng = mulberry32(42);
  const allocations: number[] = [];
  const put = (bytes: Uint8Array) => {
    const off = arena.alloc(bytes.length);
    arena.bytes.set(bytes, off);
    allocations.push(off);
    return off;
  };
  const vec = (n: number, mean = 0, std = 0.1) => put(new Uint8Array(normalArray(rng, n, std).map((x) => x + mean).buffer));
  const lin = (nOut: number, nIn: number, dtype = wDtype): LinearWeight => ({
    offsetBytes: put(encodeArray(dtype, normalArray(rng, nOut * nIn, 1 / Math.sqrt(nIn)))), dtype, nOut, nIn,
  });
  const { hidden, nHeads, nKvHeads, headDim, intermediate, vocab } = SHAPE;
  const embed = lin(vocab, hidden, 'f32');
  const layers = Array.from({ length: SHAPE.nLayers }, () => ({
    attnNorm: vec(hidden, 1), q: lin(nHeads * headDim, hidden), k: lin(nKvHeads * headDim, hidden), v: lin(nKvHeads * headDim, hidden),
    o: lin(hidden, nHeads * headDim), qBias: vec(nHeads * headDim), kBias: vec(nKvHeads * headDim), vBias: vec(nKvHeads * headDim),
    oBias: vec(hidden), qNorm: vec(headDim, 1), kNorm: vec(headDim, 1), ffnNorm: vec(hidden, 1),
    gate: lin(intermediate, hidden), up: lin(intermediate, hidden), down: lin(hidden, intermediate),
  }));
  const invFreq = put(new Uint8Array(ropeInvFreq(10000, SHAPE.rotaryDim).buffer));
  return { embed, layers, norm: vec(hidden, 1), lmHead: lin(vocab, hidden, 'f32'), invFreq, allocations };
}

function logitsOf(ks: KernelSet, ws: Workspace, n: number): Float32Array {
  return ks.arena.f32.slice(ws.logits / 4, ws.logits / 4 + n * SHAPE.vocab);
}

const IDS = Int32Array.from([3, 17, 42, 8, 8, 1, 49, 20]);

function run(ks: KernelSet, weights: ModelWeights, kvDtype: DType, chunked: boolean): Float32Array {
  const cache = new StaticCache({ nLayers: SHAPE.nLayers, nHeads: SHAPE.nHeads, nKvHeads: SHAPE.nKvHeads, headDim: SHAPE.headDim, maxSeqLen: 16, dtype: kvDtype, layout: 'bshd', arena: ks.arena });
  const ws = new Workspace(ks, SHAPE, IDS.length, 1);
  const fwd = new Forward(ks, SHAPE, weights, ws);
  try {
    if (chunked) {
      for (let i = 0; i < IDS.length; i++) fwd.run(IDS.subarray(i, i + 1), i, cache, 0, 1);
    } else {
      fwd.run(IDS, 0, cache, 0, 1);
    }
    assert.equal(cache.seqLen(1, 0), IDS.length);
    return logitsOf(ks, ws, 1);
  } finally {
    ws.dispose();
    cache.dispose();
  }
}

test('forward: WASM and reference kernel sets agree; one prefill chunk equals token-by-token decode', () => {
  const arena = new Arena({ maximumBytes: 256 << 20 });
  try {
    for (const [wDtype, kv, bound] of [['f32', 'f32', 1e-9], ['q8_0', 'f16', 1e-6], ['bf16', 'q8_0', 1e-6]] as const) {
      const weights = randomModel(arena, wDtype);
      const ref = run(refKernels(arena), weights, kv, false);
      for (const nThreads of [1, 2]) {
        const rt = new KernelRuntime(arena, { nThreads });
        const ks = wasmKernels(rt);
        const fast = run(ks, weights, kv, false);
        const stepwise = run(ks, weights, kv, true);
        // q8_0 weights: the WASM matmul quantizes activations per block as ggml does (parity table).
        const wBound = wDtype === 'q8_0' ? 1e-3 : bound;
        assert.ok(nmse(fast, ref) <= wBound, `${wDtype}/${kv} ${nThreads}t: NMSE ${nmse(fast, ref)} > ${wBound}`);
        assert.ok(nmse(stepwise, fast) <= 1e-9, `${wDtype}/${kv} chunked vs one chunk: NMSE ${nmse(stepwise, fast)}`);
        rt.dispose();
      }
      for (const off of weights.allocations) arena.free(off);
    }
  } finally {
    arena.dispose();
  }
});

test('kernelsFor: WASM by default, the reference set under KVCACHE_KERNELS=ref', () => {
  const arena = new Arena({ maximumBytes: 16 << 20 });
  const saved = process.env.KVCACHE_KERNELS;
  try {
    delete process.env.KVCACHE_KERNELS;
    const ks = kernelsFor(arena, 1);
    assert.notEqual(ks.name, 'ref');
    process.env.KVCACHE_KERNELS = 'ref';
    assert.equal(kernelsFor(arena, 1).name, 'ref');
    KernelRuntime.for(arena, { nThreads: 1 }).dispose();
  } finally {
    if (saved === undefined) delete process.env.KVCACHE_KERNELS;
    else process.env.KVCACHE_KERNELS = saved;
    arena.dispose();
  }
});

test('runBatch: a prefill chunk beside decode tokens of other sequences equals running each alone', () => {
  const arena = new Arena({ maximumBytes: 1 << 28 });
  try {
    const ks = kernelsFor(arena, 2);
    const weights = randomModel(arena, 'q8_0');
    const mk = (batch: number) => new StaticCache({ nLayers: SHAPE.nLayers, nHeads: SHAPE.nHeads, nKvHeads: SHAPE.nKvHeads, headDim: SHAPE.headDim, maxSeqLen: 16, batchSize: batch, dtype: 'f16', layout: 'bhsd', arena });
    // Alone: sequences A (prefill 5 then 1), B (prefill 3 then 1), C (prefill 2 then 3 more in one chunk).
    const seqs = [[3, 17, 42, 8, 8], [1, 49, 20], [7, 7]];
    const next = [[11], [12], [13, 14, 15]];
    const alone: Float32Array[] = [];
    for (let i = 0; i < 3; i++) {
      const cache = mk(1);
      const ws = new Workspace(ks, SHAPE, 8, 1);
      const f = new Forward(ks, SHAPE, weights, ws);
      f.run(Int32Array.from(seqs[i]!), 0, cache, 0, 0);
      f.run(Int32Array.from(next[i]!), seqs[i]!.length, cache, 0, 1);
      alone.push(logitsOf(ks, ws, 1));
      ws.dispose();
      cache.dispose();
    }
    // Batched: each prompt alone first (rows of one cache), then one step with all three parts.
    const cache = mk(3);
    const ws = new Workspace(ks, SHAPE, 8, 3);
    const f = new Forward(ks, SHAPE, weights, ws);
    for (let i = 0; i < 3; i++) f.run(Int32Array.from(seqs[i]!), 0, cache, i, 0);
    const ids = Int32Array.from(next.flat());
    const parts: BatchPart[] = [];
    let start = 0;
    for (let i = 0; i < 3; i++) {
      parts.push({ start, n: next[i]!.length, pos0: seqs[i]!.length, kv: new DenseRowKV(cache, i), nLogits: 1 });
      start += next[i]!.length;
    }
    f.runBatch(ids, parts);
    const batched = logitsOf(ks, ws, 3);
    for (let i = 0; i < 3; i++) {
      const row = batched.subarray(i * SHAPE.vocab, (i + 1) * SHAPE.vocab);
      assert.ok(nmse(row, alone[i]!) < 1e-10, `sequence ${i}: NMSE ${nmse(row, alone[i]!)}`);
    }
    assert.deepEqual([0, 1, 2].map((i) => cache.seqLen(0, i)), [6, 4, 5]);
    // Parts must tile the step and start at each sequence's next position.
    assert.throws(() => f.runBatch(ids, parts.slice(1)), /back to back/);
    assert.throws(() => f.runBatch(ids, [{ ...parts[0]!, n: 5 }]), /next position|covered/);
  } finally {
    arena.dispose();
  }
});

test('a sequence seen as two views (split positions) gives the logits of one view (LSE merge)', () => {
  const arena = new Arena({ maximumBytes: 1 << 28 });
  try {
    const ks = kernelsFor(arena, 2);
    const weights = randomModel(arena, 'f32');
    const mk = () => new StaticCache({ nLayers: SHAPE.nLayers, nHeads: SHAPE.nHeads, nKvHeads: SHAPE.nKvHeads, headDim: SHAPE.headDim, maxSeqLen: 16, dtype: 'f16', layout: 'bshd', arena });
    const runWith = (kvOf: (cache: StaticCache) => SequenceKV): Float32Array => {
      const cache = mk();
      const ws = new Workspace(ks, SHAPE, 8, 1);
      const f = new Forward(ks, SHAPE, weights, ws);
      const kv = kvOf(cache);
      f.runBatch(IDS.subarray(0, 6), [{ start: 0, n: 6, pos0: 0, kv, nLogits: 0 }]);
      f.runBatch(IDS.subarray(6, 8), [{ start: 0, n: 2, pos0: 6, kv, nLogits: 1 }]);
      const out = logitsOf(ks, ws, 1);
      ws.dispose();
      cache.dispose();
      return out;
    };
    const one = runWith((c) => new DenseRowKV(c, 0));
    /** The row's single segment cut at position 3 into two views. */
    const split = (c: StaticCache): SequenceKV => {
      const base = new DenseRowKV(c, 0);
      return {
        nextPos: () => base.nextPos(),
        append: (l, k, v, n) => base.append(l, k, v, n),
        view: (l) => base.view(l),
        views: (l) => {
          const v = base.view(l);
          const seg = v.segments[0]!;
          const m = Math.min(3, seg.nTokens);
          const a = { ...v, nTokens: m, segments: [{ ...seg, nTokens: m }] };
          const b = { ...v, nTokens: seg.nTokens - m, segments: [{ kOffsetBytes: seg.kOffsetBytes + m * v.kTokenStrideBytes, vOffsetBytes: seg.vOffsetBytes + m * v.vTokenStrideBytes, nTokens: seg.nTokens - m, pos0: seg.pos0 + m }] };
          return [a, b];
        },
      };
    };
    const two = runWith(split);
    assert.ok(nmse(two, one) < 1e-10, `NMSE ${nmse(two, one)}`);
    assert.ok(nmse(one, new Float32Array(one.length)) > 0.5, 'logits are not trivially zero');
  } finally {
    arena.dispose();
  }
});
