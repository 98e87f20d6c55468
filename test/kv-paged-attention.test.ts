/**
 * Paged attention equals dense attention: a PagedKVCache and a StaticCache hold the same K/V
 * (the same f32 rows encoded by the same codecs), and attention over their views must agree.
 *
 *   - random block layouts: several sequences written in interleaved chunks (scattered block ids),
 *     forks and prefix hits, every K/V dtype pair of interest, GQA, block lengths 1..64. The
 *     reference kernel visits keys in view order with float64 sums, so ref(paged) must be
 *     bit-identical to ref(dense); the WASM kernel gathers keys across segments by key index, so
 *     wasm(paged) must be bit-identical to wasm(dense) too, and within the parity table of ref.
 *   - holes: after seqRemove in the middle of blocks, ref attention over the paged view equals
 *     the naive float64 attention over the kept keys at their kept positions;
 *   - a forked sequence's continuation equals the same tokens written from scratch;
 *   - after seqShift the cached keys equal keys rotated at the shifted positions from scratch
 *     (within the storage dtype's rounding), values are untouched, and attention equals a dense
 *     cache built at the shifted positions.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { decodeRow, encodeRow, type DType } from '../src/core/dtype.js';
import { attention } from '../src/kernels/ref/attention.js';
import { rope, ropeInvFreq, type RopeMode } from '../src/kernels/ref/rope.js';
import { ATTENTION_TOLERANCES, lseToleranceFor, nmse, parityBound, thresholdFor } from '../src/kernels/tolerances.js';
import type { AttentionResult } from '../src/kernels/types.js';
import { wasmAttention } from '../src/kernels/wasm/attention.js';
import { variantSupported } from '../src/kernels/wasm/load.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { PagedKVCache } from '../src/kv/paged/paged-cache.js';
import { StaticCache } from '../src/kv/static-cache.js';
import type { KVView } from '../src/kv/types.js';
import { naiveAttention } from './helpers/kv-fixture.js';
import { mulberry32, normalArray, randInt, shuffle, type Rng } from './helpers/rng.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 512 << 20 });
const haveWasm = variantSupported('simd');
const rt = haveWasm ? KernelRuntime.for(arena, { nThreads: 1, variant: 'simd' }) : null;

after(() => {
  rt?.dispose();
  arena.dispose();
});

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

interface Shape {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  kDtype: DType;
  vDtype: DType;
}

function newPaged(s: Shape, nBlocks: number, blockLen: number, rope?: { pairing: RopeMode; rotaryDim: number }): PagedKVCache {
  return new PagedKVCache({ arena, ...s, nBlocks, blockLen, fingerprint: 'attention-test', rope: rope ? { theta: 10000, ...rope } : undefined });
}

function newDense(s: Shape, maxSeqLen: number): StaticCache {
  return new StaticCache({ arena, ...s, maxSeqLen, layout: 'bshd' });
}

/** reserve + write every layer from [n, nKvHeads, headDim] rows per layer + commit. */
function put(c: PagedKVCache, seq: number, k: Float32Array[], v: Float32Array[], ids?: number[]): void {
  const n = k[0]!.length / (c.nKvHeads * c.headDim);
  assert.ok(c.reserve(seq, n, ids), 'the pool has room');
  for (let l = 0; l < c.nLayers; l++) c.write(l, seq, k[l]!, v[l]!);
  c.commit(seq);
}

/** Rows [t0, t1) of per-layer [nTokens, nKvHeads, headDim] arrays. */
function slice(a: Float32Array[], t0: number, t1: number, tokenFloats: number): Float32Array[] {
  return a.map((x) => x.slice(t0 * tokenFloats, t1 * tokenFloats));
}

function randomLayers(rng: Rng, nLayers: number, n: number): Float32Array[] {
  return Array.from({ length: nLayers }, () => normalArray(rng, n));
}

/** ref on both views (bit-identical), wasm on both (bit-identical, within parity of ref). */
function expectSameAttention(paged: KVView, dense: KVView, q: Float32Array, pos: number[], nHeads: number, label: string): void {
  const a = attention(q, pos, nHeads, paged);
  const b = attention(q, pos, nHeads, dense);
  assert.ok(sameBits(a.out, b.out) && sameBits(a.lse, b.lse), `${label}: ref paged != ref dense`);
  if (!rt) return;
  const wa = wasmAttention(rt, q, pos, nHeads, paged);
  const wb = wasmAttention(rt, q, pos, nHeads, dense);
  assert.ok(sameBits(wa.out, wb.out) && sameBits(wa.lse, wb.lse), `${label}: wasm paged != wasm dense`);
  const e = nmse(wa.out, a.out);
  assert.ok(e <= parityBound('attention', paged.kDtype, paged.vDtype), `${label}: wasm vs ref NMSE ${e}`);
}

/**
 * Leave the pool's free blocks in a random order: fill the pool with one sequence, remove its blocks
 * one by one in shuffled order (each goes back to the free stack), free it.
 */
function shuffleFreeBlocks(c: PagedKVCache, rng: Rng): void {
  const L = c.blockLen;
  const n = c.availableBlocks;
  const seq = c.seqAdd().seq;
  const zeros = Array.from({ length: c.nLayers }, () => new Float32Array(n * L * c.nKvHeads * c.headDim));
  put(c, seq, zeros, zeros);
  for (const j of shuffle(rng, Array.from({ length: n }, (_, i) => i))) c.seqRemove(seq, j * L, (j + 1) * L);
  c.seqFree(seq);
}

/** Query positions: one decode token at the end, or the last `n` positions (causal prefill). */
function queryPositions(len: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => len - n + i);
}

const PAIRS: [DType, DType][] = [['f32', 'f32'], ['f16', 'f16'], ['bf16', 'q8_0'], ['q8_0', 'q8_0'], ['q4_0', 'f16'], ['q8_0', 'q4_0']];

describe('paged attention equals dense attention for random block layouts', () => {
  let seed = 100;
  for (const [kDtype, vDtype] of PAIRS) {
    for (const blockLen of [1, 7, 32, 64]) {
      const s = seed++;
      test(`K ${kDtype} / V ${vDtype}, blockLen ${blockLen}`, () => {
        const rng = mulberry32(s);
        const shape: Shape = { nLayers: 2, nKvHeads: 2, headDim: [32, 64][s % 2]!, kDtype, vDtype };
        const group = [1, 3, 4][s % 3]!;
        const nHeads = shape.nKvHeads * group;
        const tf = shape.nKvHeads * shape.headDim;
        const len = randInt(rng, 40, 300);
        const c = newPaged(shape, Math.ceil((3 * len) / blockLen) + 8, blockLen);
        shuffleFreeBlocks(c, rng);
        // The sequence under test and two others, written in interleaved chunks: its blocks end up
        // scattered through the pool, and prefill chunks do not align with blocks.
        const k = randomLayers(rng, shape.nLayers, len * tf);
        const v = randomLayers(rng, shape.nLayers, len * tf);
        const ids = Array.from({ length: len }, () => randInt(rng, 0, 1000));
        const seqs = [c.seqAdd().seq, c.seqAdd().seq, c.seqAdd().seq];
        const written = [0, 0, 0];
        while (written[0]! < len) {
          const i = randInt(rng, 0, 3);
          const n = Math.min(randInt(rng, 1, blockLen + 2), len - written[i]!);
          if (n <= 0) continue;
          const t0 = written[i]!;
          if (i === 0) put(c, seqs[0]!, slice(k, t0, t0 + n, tf), slice(v, t0, t0 + n, tf), ids.slice(t0, t0 + n));
          else put(c, seqs[i]!, randomLayers(rng, shape.nLayers, n * tf), randomLayers(rng, shape.nLayers, n * tf), ids.slice(t0, t0 + n).map((x) => x + 1000 * i));
          written[i] = t0 + n;
        }
        const table = [...c.blockTable(seqs[0]!)];
        assert.notDeepEqual(table, table.map((_, j) => j + 1), `blocks are not laid out 1, 2, 3, ...: ${table}`);
        const dense = newDense(shape, len);
        for (let l = 0; l < shape.nLayers; l++) dense.appendRow(l, 0, k[l]!, v[l]!);
        // A fork and a prefix hit of the same sequence must see the same keys.
        const fork = c.seqFork(seqs[0]!);
        const hit = c.seqAdd(ids, { maxHitTokens: len });
        assert.equal(hit.cachedTokens, Math.floor(len / blockLen) * blockLen);
        if (hit.cachedTokens < len) put(c, hit.seq, slice(k, hit.cachedTokens, len, tf), slice(v, hit.cachedTokens, len, tf));
        for (let l = 0; l < shape.nLayers; l++) {
          for (const nq of [1, 5]) {
            const q = normalArray(rng, nq * nHeads * shape.headDim);
            const pos = queryPositions(len, nq);
            for (const seq of [seqs[0]!, fork, hit.seq]) {
              assert.equal(c.view(l, seq).segments.length, Math.ceil(len / blockLen));
              expectSameAttention(c.view(l, seq), dense.view(l, 0), q, pos, nHeads, `layer ${l}, seq ${seq}, ${nq} queries`);
            }
          }
        }
        c.dispose();
        dense.dispose();
      });
    }
  }
});

test('holes from seqRemove: ref attention over the paged view equals naive attention over the kept keys at their positions', () => {
  const rng = mulberry32(7);
  const shape: Shape = { nLayers: 1, nKvHeads: 2, headDim: 16, kDtype: 'f32', vDtype: 'f32' };
  const tf = shape.nKvHeads * shape.headDim;
  const len = 90;
  const c = newPaged(shape, 20, 8);
  const s = c.seqAdd().seq;
  const k = randomLayers(rng, 1, len * tf);
  const v = randomLayers(rng, 1, len * tf);
  put(c, s, k, v);
  for (const [p0, p1] of [[3, 5], [10, 27], [40, 41], [60, 70]] as const) c.seqRemove(s, p0, p1);
  const keep = Array.from({ length: len }, (_, p) => p).filter((p) => !((p >= 3 && p < 5) || (p >= 10 && p < 27) || p === 40 || (p >= 60 && p < 70)));
  const pick = (a: Float32Array) => {
    const out = new Float32Array(keep.length * tf);
    keep.forEach((p, t) => out.set(a.subarray(p * tf, (p + 1) * tf), t * tf));
    return out;
  };
  const fx = { k: pick(k[0]!), v: pick(v[0]!), keyPos: Float64Array.from(keep), nKvHeads: 2, headDim: 16 };
  const view = c.view(0, s);
  assert.ok(view.segments.some((g) => g.pos0 % 8 !== 0), 'a segment starts inside a block');
  const nHeads = 4;
  const pos = [2, 9, 30, 41, 75, 89, 95];
  const q = normalArray(rng, pos.length * nHeads * 16);
  const got = attention(q, pos, nHeads, view);
  const want = naiveAttention(q, pos, nHeads, fx);
  assert.ok(nmse(got.out, want.out) <= ATTENTION_TOLERANCES.f32.outNmse, `NMSE ${nmse(got.out, want.out)}`);
  for (let i = 0; i < want.lse.length; i++) assert.ok(Math.abs(got.lse[i]! - want.lse[i]!) <= ATTENTION_TOLERANCES.f32.lseAbs);
  if (rt) {
    const w = wasmAttention(rt, q, pos, nHeads, c.view(0, s));
    assert.ok(nmse(w.out, got.out) <= parityBound('attention', 'f32'));
  }
  c.dispose();
});

test('a forked sequence continues exactly like the same tokens written from scratch (and the parent is untouched)', () => {
  const rng = mulberry32(21);
  const shape: Shape = { nLayers: 2, nKvHeads: 1, headDim: 32, kDtype: 'q8_0', vDtype: 'f16' };
  const tf = shape.headDim;
  const c = newPaged(shape, 40, 8);
  const [nP, nX, nY] = [37, 3, 13];
  const P = { k: randomLayers(rng, 2, nP * tf), v: randomLayers(rng, 2, nP * tf) };
  const X = { k: randomLayers(rng, 2, nX * tf), v: randomLayers(rng, 2, nX * tf) };
  const Y = { k: randomLayers(rng, 2, nY * tf), v: randomLayers(rng, 2, nY * tf) };
  const cat = (a: Float32Array[], b: Float32Array[]) => a.map((x, l) => Float32Array.from([...x, ...b[l]!]));
  const a = c.seqAdd().seq;
  put(c, a, P.k, P.v);
  const b = c.seqFork(a);
  put(c, b, Y.k.map((x) => x.slice(0, 2 * tf)), Y.v.map((x) => x.slice(0, 2 * tf))); // copies the shared tail
  put(c, a, X.k, X.v); // in place
  put(c, b, Y.k.map((x) => x.slice(2 * tf)), Y.v.map((x) => x.slice(2 * tf)));
  const scratch = c.seqAdd().seq;
  put(c, scratch, cat(P.k, Y.k), cat(P.v, Y.v));
  const parent = c.seqAdd().seq;
  put(c, parent, cat(P.k, X.k), cat(P.v, X.v));
  for (let l = 0; l < 2; l++) {
    for (const [x, y] of [[b, scratch], [a, parent]] as const) {
      const rx = c.read(l, x);
      const ry = c.read(l, y);
      assert.ok(sameBits(rx.k, ry.k) && sameBits(rx.v, ry.v), `layer ${l}: seq ${x} reads like seq ${y}`);
      assert.deepEqual([...rx.positions], [...ry.positions]);
    }
    const q = normalArray(rng, 4 * 2 * 32);
    const pos = queryPositions(nP + nY, 4);
    const r1: AttentionResult = attention(q, pos, 2, c.view(l, b));
    const r2: AttentionResult = attention(q, pos, 2, c.view(l, scratch));
    assert.ok(sameBits(r1.out, r2.out) && sameBits(r1.lse, r2.lse));
  }
  c.dispose();
});

/** What storage of `dtype` gives back for rows of `headDim` values (a copy). */
function stored(x: Float32Array, headDim: number, dtype: DType): Float32Array {
  const y = Float32Array.from(x);
  const bytes = new Uint8Array(headDim * 4);
  for (let r = 0; r < y.length / headDim; r++) {
    encodeRow(dtype, y, r * headDim, headDim, bytes, 0);
    decodeRow(dtype, bytes, 0, headDim, y, r * headDim);
  }
  return y;
}

/** rope(x) of [nTokens, 2, 64] rows at `positions` (what a model writes there), from the theta-10000 table. */
function ropeAt(x: Float32Array, positions: number[], rotaryDim: number, mode: RopeMode): Float32Array {
  return rope(x, positions, { nHeads: 2, headDim: 64, rotaryDim, mode, invFreq: ropeInvFreq(10000, rotaryDim) });
}

describe('seqShift re-rotates keys: equal to keys rotated at the shifted positions from scratch', () => {
  const cases: [DType, DType, RopeMode, number][] = [
    ['f32', 'f32', 'neox', 64], ['f32', 'f32', 'interleaved', 32], ['f16', 'f16', 'neox', 64],
    ['bf16', 'f32', 'interleaved', 64], ['q8_0', 'q8_0', 'neox', 64], ['q4_0', 'q8_0', 'neox', 64],
  ];
  let seed = 300;
  for (const [kDtype, vDtype, mode, rotaryDim] of cases) {
    const s = seed++;
    test(`K ${kDtype} / V ${vDtype}, ${mode}, rotaryDim ${rotaryDim} of 64`, () => {
      const rng = mulberry32(s);
      const shape: Shape = { nLayers: 2, nKvHeads: 2, headDim: 64, kDtype, vDtype };
      const tf = shape.nKvHeads * shape.headDim;
      const len = 150;
      const [gap0, gap1] = [40, 77]; // removed, then the tail moves back by 37
      const raw = randomLayers(rng, 2, len * tf); // keys before RoPE
      const v = randomLayers(rng, 2, len * tf);
      const allPos = Array.from({ length: len }, (_, p) => p);
      const c = newPaged(shape, 40, 16, { pairing: mode, rotaryDim });
      const seq = c.seqAdd().seq;
      const other = c.seqAdd().seq;
      put(c, seq, raw.map((x) => ropeAt(x, allPos, rotaryDim, mode)), v);
      const fork = c.seqFork(seq); // shares every block: the shift must copy, not edit, them
      put(c, other, slice(raw, 0, 10, tf), slice(v, 0, 10, tf));
      const forkBefore = [0, 1].map((l) => c.read(l, fork));
      c.seqRemove(seq, gap0, gap1);
      assert.equal(c.seqShift(seq, gap1, Infinity, gap0 - gap1), true);
      const kept = allPos.filter((p) => p < gap0 || p >= gap1);
      const shifted = kept.map((p) => (p < gap0 ? p : p - (gap1 - gap0)));
      const m = kept.length;
      const bound = ATTENTION_TOLERANCES[kDtype].outNmse;
      const dense = newDense(shape, m);
      for (let l = 0; l < 2; l++) {
        const r = c.read(l, seq);
        assert.deepEqual([...r.positions], shifted);
        const rawKept = new Float32Array(m * tf);
        const vKept = new Float32Array(m * tf);
        kept.forEach((p, t) => {
          rawKept.set(raw[l]!.subarray(p * tf, (p + 1) * tf), t * tf);
          vKept.set(v[l]!.subarray(p * tf, (p + 1) * tf), t * tf);
        });
        const e = nmse(r.k, stored(ropeAt(rawKept, shifted, rotaryDim, mode), 64, kDtype));
        assert.ok(e <= bound, `layer ${l}: key NMSE ${e} > ${bound}`);
        // Values never move; the fork still reads its original keys.
        assert.ok(sameBits(r.v, stored(vKept, 64, vDtype)), `layer ${l}: values unchanged`);
        const f = c.read(l, fork);
        assert.ok(sameBits(f.k, forkBefore[l]!.k) && sameBits(f.v, forkBefore[l]!.v), 'the fork is untouched');
        // Attention over the shifted cache vs a dense cache built at the shifted positions.
        dense.appendRow(l, 0, ropeAt(rawKept, shifted, rotaryDim, mode), vKept);
        const nHeads = 4;
        const q = normalArray(rng, 3 * nHeads * 64);
        const pos = queryPositions(m, 3);
        const got = attention(q, pos, nHeads, c.view(l, seq));
        const ref = attention(q, pos, nHeads, dense.view(l, 0));
        const ea = nmse(got.out, ref.out);
        assert.ok(ea <= thresholdFor(kDtype, vDtype), `layer ${l}: attention NMSE ${ea}`);
        for (let i = 0; i < ref.lse.length; i++) assert.ok(Math.abs(got.lse[i]! - ref.lse[i]!) <= lseToleranceFor(kDtype), `lse ${i}`);
      }
      // Blocks 0..2 of the sequence (positions < 40, never shifted) are still shared; the shifted ones are copies.
      const [mine, theirs] = [[...c.blockTable(seq)], [...c.blockTable(fork)]];
      assert.deepEqual(mine.slice(0, 3), theirs.slice(0, 3));
      assert.ok(mine.slice(3).every((b) => !theirs.includes(b)), 'shifted blocks were copied');
      c.dispose();
      dense.dispose();
    });
  }
});
