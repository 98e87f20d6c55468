/**
 * HF-style KVCache / MultiLayerKVCache facades, checked against a naive model written here
 * (concatenation along S of [B, H, S, D] tensors), plus the legacy-format round trip and the
 * tensor helpers the facades share.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Arena } from '../src/core/arena.js';
import { CapacityError, ConfigError, OutOfRangeError, ShapeError, StateError } from '../src/core/errors.js';
import { checkShape, stackHeadMajor, tensor, zeros, type Tensor } from '../src/core/tensor.js';
import { HfKVCache, MultiLayerKVCache } from '../src/compat/hf.js';

function newArena(): Arena {
  return new Arena({ maximumBytes: 64 << 20, initialBytes: 1 << 20 });
}

function make(B: number, H: number, S: number, D: number, f: (b: number, h: number, s: number, d: number) => number): Tensor {
  const data = new Float32Array(B * H * S * D);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) data[((b * H + h) * S + s) * D + d] = f(b, h, s, d);
  return tensor(data, [B, H, S, D]);
}

/** The naive model: torch.cat([a, b], dim=2) for [B, H, S, D] tensors, written independently. */
function catS(a: Tensor | null, b: Tensor): Tensor {
  if (!a) return b;
  const [B, H, Sa, D] = a.shape as [number, number, number, number];
  const Sb = b.shape[2]!;
  const S = Sa + Sb;
  const out: number[] = [];
  for (let i = 0; i < B; i++) for (let h = 0; h < H; h++) {
    for (let s = 0; s < Sa; s++) for (let d = 0; d < D; d++) out.push(a.data[((i * H + h) * Sa + s) * D + d]!);
    for (let s = 0; s < Sb; s++) for (let d = 0; d < D; d++) out.push(b.data[((i * H + h) * Sb + s) * D + d]!);
  }
  return tensor(out, [B, H, S, D]);
}

function assertTensorEqual(got: Tensor, want: Tensor, what = 'tensor'): void {
  assert.deepEqual([...got.shape], [...want.shape], `${what} shape`);
  assert.deepEqual(Array.from(got.data), Array.from(want.data), `${what} data`);
}

test('KVCache: update concatenates along S with the right values; dims inferred, then fixed', () => {
  const cache = new HfKVCache({ arena: newArena() });
  assert.equal(cache.getSeqLength(), 0);
  assert.equal(cache.maxSeqLen, 4096);
  assert.equal(cache.dtype, 'f32');
  assert.throws(() => cache.get(), StateError);
  const k1 = make(2, 3, 4, 5, (b, h, s, d) => b * 1000 + h * 100 + s * 10 + d + 0.5);
  const v1 = make(2, 3, 4, 5, (b, h, s, d) => -(b * 1000 + h * 100 + s * 10 + d));
  const [K1, V1] = cache.update(k1, v1);
  assertTensorEqual(K1, k1, 'K after first update');
  assertTensorEqual(V1, v1, 'V after first update');
  const k2 = make(2, 3, 1, 5, (b, h, _s, d) => 7 + b + h / 4 + d / 16);
  const v2 = make(2, 3, 1, 5, (b, h, _s, d) => 3 - b - h / 4 - d / 16);
  const [K2, V2] = cache.update(k2, v2);
  assertTensorEqual(K2, catS(k1, k2), 'K = cat(k1, k2)');
  assertTensorEqual(V2, catS(v1, v2), 'V = cat(v1, v2)');
  assert.equal(cache.getSeqLength(), 5);
  assertTensorEqual(cache.get()[0], K2);
  // Dimensions are fixed now.
  assert.throws(() => cache.update(make(2, 2, 1, 5, () => 0), make(2, 2, 1, 5, () => 0)), ShapeError);
  assert.throws(() => cache.update(make(1, 3, 1, 5, () => 0), make(1, 3, 1, 5, () => 0)), ShapeError);
  assert.throws(() => cache.update(k2, v1), ShapeError, 'v shape must equal k shape');
  assert.equal(cache.getSeqLength(), 5);
  // reset forgets tokens and dimensions.
  cache.reset();
  assert.equal(cache.getSeqLength(), 0);
  const k3 = make(1, 1, 2, 8, (_b, _h, s, d) => s * 8 + d);
  assertTensorEqual(cache.update(k3, k3)[0], k3);
  cache.dispose();
});

test('KVCache: maxSeqLen and dtype options', () => {
  const arena = newArena();
  const small = new HfKVCache({ maxSeqLen: 4, arena });
  const five = make(1, 2, 5, 4, () => 1);
  assert.throws(() => small.update(five, five), CapacityError);
  assert.equal(small.core, null, 'a rejected first update does not fix the dimensions');
  const three = make(1, 2, 3, 8, (_b, h, s, d) => h + s + d);
  small.update(three, three);
  assert.throws(() => small.update(make(1, 2, 2, 8, () => 0), make(1, 2, 2, 8, () => 0)), CapacityError);
  assert.equal(small.getSeqLength(), 3);
  assertTensorEqual(small.get()[0], three);
  const half = new HfKVCache({ dtype: 'f16', arena });
  const exact = make(1, 2, 3, 4, (_b, h, s, d) => (h * 12 + s * 4 + d) * 0.125 - 2);
  assertTensorEqual(half.update(exact, exact)[1], exact, 'f16 keeps representable values');
  assert.equal(half.core!.kDtype, 'f16');
  const q = new HfKVCache({ dtype: 'q8_0', arena });
  const wave = make(1, 1, 2, 32, (_b, _h, s, d) => Math.cos(s * 5 + d));
  const [K] = q.update(wave, wave);
  K.data.forEach((x, i) => assert.ok(Math.abs(x - wave.data[i]!) <= 1 / 127 + 1e-6));
  assert.throws(() => new HfKVCache({ dtype: 'f8' as never }));
  small.dispose();
  half.dispose();
  q.dispose();
  assert.equal(arena.liveAllocations, 0);
});

test('MultiLayerKVCache: layers accumulate independently (property, against the naive model)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 2 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.record({ layer: fc.nat(2), n: fc.integer({ min: 0, max: 5 }), seed: fc.integer() }), { maxLength: 12 }),
      (nLayers, B, H, D, steps) => {
        const arena = newArena();
        const cache = new MultiLayerKVCache(nLayers, { arena, initialCapacity: 2 });
        const model: (Tensor | null)[][] = Array.from({ length: nLayers }, () => [null, null]);
        for (const { layer, n, seed } of steps) {
          const l = layer % nLayers;
          const k = make(B, H, n, D, (b, h, s, d) => ((seed + b * 7 + h * 13 + s * 17 + d * 19) % 1009) / 8);
          const v = make(B, H, n, D, (b, h, s, d) => -((seed + b * 3 + h * 5 + s * 11 + d) % 997) / 4);
          model[l] = [catS(model[l]![0]!, k), catS(model[l]![1]!, v)]; // null before a layer's first update
          const [K, V] = cache.update(k, v, l);
          assertTensorEqual(K, model[l]![0]!);
          assertTensorEqual(V, model[l]![1]!);
          assert.equal(cache.getSeqLength(l), model[l]![0]!.shape[2]);
        }
        const legacy = cache.toLegacy();
        if (steps.length === 0) assert.deepEqual(legacy, []);
        else {
          assert.equal(legacy.length, nLayers);
          legacy.forEach(([K, V], l) => {
            const [mk, mv] = model[l]!;
            if (!mk || !mv) {
              assert.deepEqual([...K.shape], [B, H, 0, D], 'a layer never updated is empty');
              return;
            }
            assertTensorEqual(K, mk);
            assertTensorEqual(V, mv);
          });
        }
        cache.dispose();
        assert.equal(arena.liveAllocations, 0);
      },
    ),
    { numRuns: 60, seed: 20240611 },
  );
});

test('MultiLayerKVCache: legacy round trip is equal, and fromLegacy then update continues', () => {
  const arena = newArena();
  const cache = new MultiLayerKVCache(3, { arena });
  const step = (l: number, p0: number, n: number): [Tensor, Tensor] => [
    make(1, 2, n, 4, (_b, h, s, d) => l * 1000 + h * 100 + (p0 + s) * 10 + d),
    make(1, 2, n, 4, (_b, h, s, d) => -(l * 1000 + h * 100 + (p0 + s) * 10 + d)),
  ];
  cache.update(...step(0, 0, 3), 0);
  cache.update(...step(1, 0, 2), 1);
  cache.update(...step(0, 3, 2), 0);
  assert.deepEqual([0, 1, 2].map((l) => cache.getSeqLength(l)), [5, 2, 0]);
  const legacy = cache.toLegacy();
  assert.equal(legacy.length, 3);
  assertTensorEqual(legacy[0]![0], catS(step(0, 0, 3)[0], step(0, 3, 2)[0]), 'layer 0 K');
  assertTensorEqual(legacy[1]![1], step(1, 0, 2)[1], 'layer 1 V');
  assert.deepEqual([...legacy[2]![0].shape], [1, 2, 0, 4], 'an empty layer is [B, H, 0, D]');
  const back = MultiLayerKVCache.fromLegacy(legacy, { arena });
  assert.equal(back.nLayers, 3);
  assert.deepEqual(back.toLegacy(), legacy);
  // Generation continues from the restored cache exactly as from the original.
  const [K0] = back.update(...step(0, 5, 1), 0);
  const [K0orig] = cache.update(...step(0, 5, 1), 0);
  assertTensorEqual(K0, K0orig);
  assertTensorEqual(K0, catS(legacy[0]![0], step(0, 5, 1)[0]));
  const [, V2] = back.update(...step(2, 0, 2), 2);
  assertTensorEqual(V2, step(2, 0, 2)[1]);
  assert.equal(back.getSeqLength(0), 6);
  back.dispose();
  cache.dispose();
  assert.equal(arena.liveAllocations, 0);
});

test('MultiLayerKVCache: errors', () => {
  const arena = newArena();
  const cache = new MultiLayerKVCache(2, { arena });
  const x = make(1, 2, 1, 4, () => 1);
  assert.throws(() => cache.update(x, x, 2), OutOfRangeError);
  assert.throws(() => cache.getSeqLength(-1), OutOfRangeError);
  assert.deepEqual(cache.toLegacy(), []);
  assert.throws(() => new MultiLayerKVCache(0), ConfigError);
  assert.throws(() => MultiLayerKVCache.fromLegacy([]), ConfigError);
  // Layers with different dims: rejected, and the partial cache is released.
  const before = arena.liveAllocations;
  assert.throws(() => MultiLayerKVCache.fromLegacy([[x, x], [make(1, 3, 1, 4, () => 1), make(1, 3, 1, 4, () => 1)]], { arena }), ShapeError);
  assert.equal(arena.liveAllocations, before);
});

test('tensor helpers: validation and head-major stacking', () => {
  assert.throws(() => tensor(new Float32Array(5), [2, 3]), ShapeError);
  assert.throws(() => tensor([1, 2], [2, -1]), ShapeError);
  assert.throws(() => tensor([1, 2], [1.5, 2]), ShapeError);
  const t = tensor([1, 2, 3, 4, 5, 6], [1, 2, 3]);
  assert.ok(t.data instanceof Float32Array);
  assert.deepEqual([...zeros([2, 0, 3]).shape], [2, 0, 3]);
  assert.throws(() => checkShape('k', t, [1, 2, 'S', 4]), /k shape: expected \[1, 2, S, 4\], given \[1, 2, 3\]/);
  assert.deepEqual(checkShape('k', t, [1, 'H', 3]), [1, 2, 3]);
  // Two rows of [nHeads = 2, len = 2, headDim = 1] -> bhsd / bshd, and with heads repeated twice.
  const rows = [new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8])];
  assert.deepEqual(Array.from(stackHeadMajor(rows, 2, 2, 1).data), [1, 2, 3, 4, 5, 6, 7, 8]);
  const bshd = stackHeadMajor(rows, 2, 2, 1, 'bshd');
  assert.deepEqual([...bshd.shape], [2, 2, 2, 1]);
  assert.deepEqual(Array.from(bshd.data), [1, 3, 2, 4, 5, 7, 6, 8]);
  const rep = stackHeadMajor(rows.slice(0, 1), 2, 2, 1, 'bhsd', 2);
  assert.deepEqual([...rep.shape], [1, 4, 2, 1]);
  assert.deepEqual(Array.from(rep.data), [1, 2, 1, 2, 3, 4, 3, 4]);
});
