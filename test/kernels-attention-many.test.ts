/**
 * Many attention calls in one dispatch (wasmAttentionManyAt, KernelSet.attentionMany): the
 * sequences of a batched step, each over its own paged-like view (32-token blocks scattered over
 * a shared pool, segments starting inside blocks, position gaps), lengths 0 .. 1300 keys (so
 * some calls chunk their keys and need the merge, others run direct), decode and prefill-like
 * calls mixed, K/V dtypes f32 / f16 / q8_0 / q4_0 mixed within one batch, GQA 1 / 2 / 7,
 * headDim 64 and 80. Asserted: the many form is BIT-identical to wasmAttentionAt on each call in
 * turn, on 1 and 2 threads (and the two thread counts agree), and within PARITY_TOLERANCES of the
 * reference; the ref twin equals the reference per call; typed errors name the call and leave the
 * outputs untouched; no arena allocation once warm.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { encodeRow, rowSizeBytes, type DType } from '../src/core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import type { KVSegment, KVView } from '../src/kv/types.js';
import { attention } from '../src/kernels/ref/attention.js';
import { refKernels, wasmKernels } from '../src/kernels/registry.js';
import { nmse, parityBound } from '../src/kernels/tolerances.js';
import type { AttentionCall, AttentionOptions } from '../src/kernels/types.js';
import { planAttention, wasmAttentionAt, wasmAttentionManyAt } from '../src/kernels/wasm/attention.js';
import { variantSupported } from '../src/kernels/wasm/load.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { mulberry32, normalArray, randInt, shuffle, type Rng } from './helpers/rng.js';

/** |lse - lseRef| bound by K dtype, as test/kernels-attention.test.ts. */
const LSE_BOUND: Readonly<Record<DType, number>> = { f32: 4e-5, f16: 4e-5, bf16: 4e-5, q8_0: 3e-3, q4_0: 3e-3 };
const BLOCK = 32;

const arena = new Arena({ initialBytes: 64 << 20, maximumBytes: 1024 << 20 });
const rt1 = KernelRuntime.for(arena, { nThreads: 1, variant: 'simd' });
const rt2 = KernelRuntime.for(arena, { nThreads: 2, variant: 'simd' });

after(() => {
  rt1.dispose();
  rt2.dispose();
  arena.dispose();
});

/**
 * A pool of 32-token blocks in the arena, head-major in a block like kv/paged/block-storage.ts
 * (token stride = rowBytes, head stride = 32 * rowBytes), poisoned with 0xFF (NaN in every dtype)
 * so a kernel reading a row outside a sequence's valid ones fails; blocks handed out shuffled.
 */
class BlockPool {
  readonly kRow: number;
  readonly vRow: number;
  readonly kBase: number;
  readonly vBase: number;
  private readonly free: number[];
  constructor(readonly nBlocks: number, readonly nKvHeads: number, readonly headDim: number, readonly kDtype: DType, readonly vDtype: DType, rng: Rng) {
    this.kRow = rowSizeBytes(kDtype, headDim);
    this.vRow = rowSizeBytes(vDtype, headDim);
    this.kBase = arena.alloc(nBlocks * nKvHeads * BLOCK * this.kRow);
    this.vBase = arena.alloc(nBlocks * nKvHeads * BLOCK * this.vRow);
    arena.bytes.fill(0xff, this.kBase, this.kBase + nBlocks * nKvHeads * BLOCK * this.kRow);
    arena.bytes.fill(0xff, this.vBase, this.vBase + nBlocks * nKvHeads * BLOCK * this.vRow);
    this.free = shuffle(rng, Array.from({ length: nBlocks }, (_, i) => i));
  }
  take(): number {
    const b = this.free.pop();
    if (b === undefined) throw new Error('test pool exhausted');
    return b;
  }
  kAt(block: number, slot: number): number {
    return this.kBase + (block * this.nKvHeads * BLOCK + slot) * this.kRow;
  }
  vAt(block: number, slot: number): number {
    return this.vBase + (block * this.nKvHeads * BLOCK + slot) * this.vRow;
  }
  dispose(): void {
    arena.free(this.kBase);
    arena.free(this.vBase);
  }
}

/** Segment sizes of a paged sequence of nKeys keys: mostly whole blocks, some starting inside one. */
function segmentPlan(rng: Rng, nKeys: number): { slot0: number; n: number }[] {
  const out: { slot0: number; n: number }[] = [];
  for (let left = nKeys; left > 0;) {
    const slot0 = rng() < 0.15 ? randInt(rng, 1, BLOCK) : 0;
    let n = Math.min(BLOCK - slot0, left);
    if (rng() < 0.1) n = randInt(rng, 1, n + 1);
    out.push({ slot0, n });
    left -= n;
  }
  return out;
}

interface Seq {
  pool: BlockPool;
  segments: KVSegment[];
  keyPos: number[];
  view(): KVView;
}

/** Write a sequence of random rows into blocks of the pool; positions contiguous with occasional gaps. */
function pagedSeq(pool: BlockPool, rng: Rng, plan: { slot0: number; n: number }[]): Seq {
  const { nKvHeads, headDim, kDtype, vDtype, kRow, vRow } = pool;
  const segments: KVSegment[] = [];
  const keyPos: number[] = [];
  let pos = rng() < 0.3 ? randInt(rng, 0, 50) : 0;
  const bytes = arena.bytes;
  for (const { slot0, n } of plan) {
    const block = pool.take();
    const k = normalArray(rng, n * nKvHeads * headDim);
    const v = normalArray(rng, n * nKvHeads * headDim);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < nKvHeads; h++) {
        const src = (t * nKvHeads + h) * headDim;
        encodeRow(kDtype, k, src, headDim, bytes, pool.kAt(block, slot0 + t) + h * BLOCK * kRow);
        encodeRow(vDtype, v, src, headDim, bytes, pool.vAt(block, slot0 + t) + h * BLOCK * vRow);
      }
      keyPos.push(pos + t);
    }
    segments.push({ kOffsetBytes: pool.kAt(block, slot0), vOffsetBytes: pool.vAt(block, slot0), nTokens: n, pos0: pos });
    pos += n + (rng() < 0.1 ? randInt(rng, 1, 6) : 0);
  }
  const nTokens = keyPos.length;
  return {
    pool, segments, keyPos,
    view: () => ({
      bytes: arena.bytes, kDtype, vDtype, nKvHeads, headDim, segments, nTokens,
      kTokenStrideBytes: kRow, kHeadStrideBytes: BLOCK * kRow, vTokenStrideBytes: vRow, vHeadStrideBytes: BLOCK * vRow,
    }),
  };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

interface CallSpec {
  nKeys: number;
  nQuery: number;
  kDtype: DType;
  vDtype: DType;
  nKvHeads: number;
  headDim: number;
}

/** The batch of a case: sequences in pools, q / out / lse buffers back to back (like Forward's workspace). */
interface Batch {
  seqs: Seq[];
  positions: number[][];
  q: number;
  out: number;
  lse: number;
  qOff: number[];
  lseOff: number[];
  nHeads: number;
  calls(out?: number, lse?: number, inPlace?: boolean): AttentionCall[];
  dispose(): void;
}

function makeBatch(rng: Rng, nHeads: number, specs: readonly CallSpec[]): Batch {
  const plans = specs.map((s) => segmentPlan(rng, s.nKeys));
  // One pool per (dtypes, shape), shared by the sequences that use it; a few spare blocks.
  const keyOf = (s: CallSpec) => `${s.kDtype}/${s.vDtype}/${s.nKvHeads}/${s.headDim}`;
  const blocks = new Map<string, { spec: CallSpec; n: number }>();
  specs.forEach((s, i) => {
    const e = blocks.get(keyOf(s)) ?? { spec: s, n: 3 };
    e.n += plans[i]!.length;
    blocks.set(keyOf(s), e);
  });
  const pools = new Map<string, BlockPool>();
  for (const [key, { spec, n }] of blocks) pools.set(key, new BlockPool(n, spec.nKvHeads, spec.headDim, spec.kDtype, spec.vDtype, rng));
  const seqs = specs.map((s, i) => pagedSeq(pools.get(keyOf(s))!, rng, plans[i]!));
  // Query positions: the last nQuery keys' positions (new tokens already written), else 0, 1, ...
  const positions = specs.map((s, i) => {
    const kp = seqs[i]!.keyPos;
    return kp.length >= s.nQuery ? kp.slice(kp.length - s.nQuery) : Array.from({ length: s.nQuery }, (_, j) => j);
  });
  const qOff: number[] = [];
  const lseOff: number[] = [];
  let nq = 0, nl = 0;
  specs.forEach((s) => {
    qOff.push(nq);
    lseOff.push(nl);
    nq += s.nQuery * nHeads * s.headDim * 4;
    nl += s.nQuery * nHeads * 4;
  });
  const q = arena.alloc(Math.max(4, nq));
  const out = arena.alloc(Math.max(4, nq));
  const lse = arena.alloc(Math.max(4, nl));
  arena.f32.set(normalArray(rng, nq / 4), q >> 2);
  return {
    seqs, positions, q, out, lse, qOff, lseOff, nHeads,
    calls: (o = out, l = lse, inPlace = false) => seqs.map((sq, i) => ({
      qOffset: q + qOff[i]!, outOffset: (inPlace ? q : o) + qOff[i]!, lseOffset: l + lseOff[i]!, positions: positions[i]!, view: sq.view(),
    })),
    dispose: () => {
      for (const p of pools.values()) p.dispose();
      for (const o of [q, out, lse]) arena.free(o);
    },
  };
}

/** Bytes of the out [sum nQuery, 14, 64] and lse [sum nQuery, 14] of a batch of specs (the tests' 14 heads of 64). */
function outBytes(specs: readonly CallSpec[]): { nq: number; nl: number } {
  const tokens = specs.reduce((a, s) => a + s.nQuery, 0);
  return { nq: tokens * 14 * 64 * 4, nl: tokens * 14 * 4 };
}

function f32Slice(off: number, nBytes: number): Float32Array {
  return arena.f32.slice(off >> 2, (off + nBytes) >> 2);
}

/** Run one batch every way and assert (header). */
function checkBatch(seed: number, nHeads: number, specs: readonly CallSpec[], opts: AttentionOptions = {}, label = ''): void {
  const rng = mulberry32(seed);
  const b = makeBatch(rng, nHeads, specs);
  const outBytes = specs.reduce((a, s) => a + s.nQuery * nHeads * s.headDim * 4, 0);
  const lseBytes = specs.reduce((a, s) => a + s.nQuery * nHeads * 4, 0);
  const out1 = arena.alloc(Math.max(4, outBytes));
  const lse1 = arena.alloc(Math.max(4, lseBytes));
  const out2 = arena.alloc(Math.max(4, outBytes));
  const lse2 = arena.alloc(Math.max(4, lseBytes));
  try {
    // One by one (the reference behaviour of the many form), into out/lse.
    for (const c of b.calls()) wasmAttentionAt(rt2, c.qOffset, c.outOffset, c.lseOffset, c.positions, nHeads, c.view, opts);
    wasmAttentionManyAt(rt1, b.calls(out1, lse1), nHeads, opts);
    wasmAttentionManyAt(rt2, b.calls(out2, lse2), nHeads, opts);
    const one = { out: f32Slice(b.out, outBytes), lse: f32Slice(b.lse, lseBytes) };
    const m1 = { out: f32Slice(out1, outBytes), lse: f32Slice(lse1, lseBytes) };
    const m2 = { out: f32Slice(out2, outBytes), lse: f32Slice(lse2, lseBytes) };
    assert.ok(sameBits(m1.out, m2.out) && sameBits(m1.lse, m2.lse), `${label}: many on 1 and 2 threads differ`);
    assert.ok(sameBits(m1.out, one.out) && sameBits(m1.lse, one.lse), `${label}: many differs from one by one`);
    // Each call within the parity table of the reference.
    specs.forEach((s, i) => {
      const nOut = s.nQuery * nHeads * s.headDim;
      const nLse = s.nQuery * nHeads;
      const qv = f32Slice(b.q + b.qOff[i]!, nOut * 4);
      const ref = attention(qv, b.positions[i]!, nHeads, b.seqs[i]!.view(), opts);
      const got = m1.out.subarray(b.qOff[i]! >> 2, (b.qOff[i]! >> 2) + nOut);
      const gotLse = m1.lse.subarray(b.lseOff[i]! >> 2, (b.lseOff[i]! >> 2) + nLse);
      const e = nmse(got, ref.out);
      const bound = parityBound('attention', s.kDtype, s.vDtype);
      assert.ok(e <= bound, `${label} call ${i} (${s.kDtype}/${s.vDtype}, ${s.nKeys} keys, ${s.nQuery} queries): out NMSE ${e} > ${bound}`);
      for (let j = 0; j < nLse; j++) {
        if (ref.lse[j] === -Infinity) assert.equal(gotLse[j], -Infinity, `${label} call ${i}: lse[${j}] of a fully masked row`);
        else assert.ok(Math.abs(gotLse[j]! - ref.lse[j]!) <= LSE_BOUND[s.kDtype], `${label} call ${i}: lse[${j}] ${gotLse[j]} vs ${ref.lse[j]}`);
      }
    });
  } finally {
    for (const o of [out1, lse1, out2, lse2]) arena.free(o);
    b.dispose();
  }
}

const FLOAT: DType[] = ['f32', 'f16'];
const ALL: DType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[randInt(rng, 0, xs.length)]!;

/** A varlen batch: forced edge lengths (0, 1, just past a chunk threshold, long) plus random ones. */
function varlenSpecs(rng: Rng, n: number, nKvHeads: number, headDim: number, dtypes: readonly DType[]): CallSpec[] {
  const forced = [0, 1, 257, 1300, 33];
  const lens = [5, 31, 32, 200, 256, 300, 520, 700, 1100];
  const specs: CallSpec[] = [];
  for (let i = 0; i < n; i++) {
    const nKeys = i < forced.length ? forced[i]! : pick(rng, lens);
    const r = rng();
    const nQuery = r < 0.6 ? 1 : r < 0.9 ? randInt(rng, 2, 10) : randInt(rng, 10, 80);
    specs.push({ nKeys, nQuery, kDtype: pick(rng, dtypes), vDtype: pick(rng, dtypes), nKvHeads, headDim });
  }
  return shuffle(rng, specs);
}

describe('wasm attention, many calls in one dispatch: bit-identical to one by one', () => {
  let seed = 5000;
  for (const group of [1, 2, 7]) {
    for (const headDim of [64, 80]) {
      for (const nKvHeads of [1, 2]) {
        const s = seed++;
        const dtypes = headDim % 32 === 0 ? ALL : FLOAT; // q8_0 / q4_0 rows need headDim % 32 == 0
        test(`GQA ${group}, headDim ${headDim}, ${nKvHeads} kv heads, 9 varlen paged calls, dtypes ${dtypes.join('/')}`, () => {
          const rng = mulberry32(s);
          checkBatch(s, nKvHeads * group, varlenSpecs(rng, 9, nKvHeads, headDim, dtypes), {}, `seed ${s}`);
        });
      }
    }
  }

  test('the batch really mixes chunked and direct plans', () => {
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 1300).direct, false);
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 200).direct, true);
    assert.equal(planAttention(1, 14, 2, 64, 'f16', 257).nChunks, 2);
  });

  test('decode only (8 sequences 1k..8k keys, f16 KV, 14/2 heads x 64) and prefill only', () => {
    const rng = mulberry32(5100);
    const decode = Array.from({ length: 8 }, (): CallSpec => ({ nKeys: randInt(rng, 1000, 8200), nQuery: 1, kDtype: 'f16', vDtype: 'f16', nKvHeads: 2, headDim: 64 }));
    checkBatch(5101, 14, decode, {}, 'decode');
    const prefill = Array.from({ length: 4 }, (): CallSpec => ({ nKeys: randInt(rng, 40, 400), nQuery: 0, kDtype: 'q8_0', vDtype: 'q4_0', nKvHeads: 2, headDim: 64 }));
    prefill.forEach((p) => (p.nQuery = Math.min(p.nKeys, randInt(rng, 20, 90))));
    checkBatch(5102, 14, prefill, {}, 'prefill');
  });

  test('sliding windows (1, 17, 300) and a custom scale over a varlen batch', () => {
    let s = 5200;
    for (const opts of [{ window: 1 }, { window: 17 }, { window: 300 }, { scale: 0.37 }] as AttentionOptions[]) {
      const rng = mulberry32(s);
      checkBatch(s++, 8, varlenSpecs(rng, 7, 2, 64, ALL), opts, JSON.stringify(opts));
    }
  });

  test('calls of different nKvHeads and headDim in one batch (nHeads shared)', () => {
    const specs: CallSpec[] = [
      { nKeys: 700, nQuery: 1, kDtype: 'f16', vDtype: 'f16', nKvHeads: 2, headDim: 64 },
      { nKeys: 300, nQuery: 3, kDtype: 'f32', vDtype: 'f16', nKvHeads: 7, headDim: 80 },
      { nKeys: 0, nQuery: 2, kDtype: 'q8_0', vDtype: 'q8_0', nKvHeads: 14, headDim: 128 },
      { nKeys: 1300, nQuery: 1, kDtype: 'q4_0', vDtype: 'f32', nKvHeads: 1, headDim: 96 },
      { nKeys: 90, nQuery: 0, kDtype: 'f16', vDtype: 'f16', nKvHeads: 2, headDim: 64 },
    ];
    checkBatch(5300, 14, specs, {}, 'mixed shapes');
  });

  test('one call, and zero queries everywhere (nothing to run)', () => {
    checkBatch(5400, 4, [{ nKeys: 600, nQuery: 1, kDtype: 'f16', vDtype: 'q8_0', nKvHeads: 2, headDim: 64 }], {}, 'single');
    checkBatch(5401, 4, [{ nKeys: 60, nQuery: 0, kDtype: 'f16', vDtype: 'f16', nKvHeads: 2, headDim: 64 }], {}, 'no queries');
    wasmAttentionManyAt(rt2, [], 4); // no calls: nothing to do
  });

  test('in place (each call\'s out = its own q) equals out of place, many and one by one (direct and chunked calls)', () => {
    const rng = mulberry32(5500);
    const specs = varlenSpecs(rng, 8, 2, 64, ALL);
    const b = makeBatch(rng, 14, specs);
    try {
      const { nq, nl } = outBytes(specs);
      wasmAttentionManyAt(rt2, b.calls(), 14);
      const want = f32Slice(b.out, nq);
      const wantLse = f32Slice(b.lse, nl);
      const q0 = f32Slice(b.q, nq);
      for (const c of b.calls(b.out, b.lse, true)) wasmAttentionAt(rt2, c.qOffset, c.outOffset, c.lseOffset, c.positions, 14, c.view);
      assert.ok(sameBits(f32Slice(b.q, nq), want) && sameBits(f32Slice(b.lse, nl), wantLse), 'one by one, in place');
      arena.f32.set(q0, b.q >> 2);
      wasmAttentionManyAt(rt2, b.calls(b.out, b.lse, true), 14);
      assert.ok(sameBits(f32Slice(b.q, nq), want) && sameBits(f32Slice(b.lse, nl), wantLse), 'many, in place');
    } finally {
      b.dispose();
    }
  });

  test('the relaxed-SIMD build: many == one by one, 1 / 2 threads', { skip: !variantSupported('relaxed') }, () => {
    const rx1 = new KernelRuntime(arena, { nThreads: 1, variant: 'relaxed' });
    const rx2 = new KernelRuntime(arena, { nThreads: 2, variant: 'relaxed' });
    const rng = mulberry32(5600);
    const specs = varlenSpecs(rng, 9, 2, 64, ALL);
    const b = makeBatch(rng, 14, specs);
    const { nq, nl } = outBytes(specs);
    const out2 = arena.alloc(nq);
    const lse2 = arena.alloc(nl);
    try {
      for (const c of b.calls()) wasmAttentionAt(rx1, c.qOffset, c.outOffset, c.lseOffset, c.positions, 14, c.view);
      const want = f32Slice(b.out, nq);
      const wantLse = f32Slice(b.lse, nl);
      for (const rx of [rx1, rx2]) {
        wasmAttentionManyAt(rx, b.calls(out2, lse2), 14);
        assert.ok(sameBits(f32Slice(out2, nq), want) && sameBits(f32Slice(lse2, nl), wantLse), `relaxed, ${rx.nThreads} thread(s)`);
      }
    } finally {
      arena.free(out2);
      arena.free(lse2);
      b.dispose();
      rx1.dispose();
      rx2.dispose();
    }
  });

  test('no arena allocation once warm', () => {
    const rng = mulberry32(5700);
    const specs = varlenSpecs(rng, 8, 2, 64, ALL);
    const b = makeBatch(rng, 14, specs);
    try {
      wasmAttentionManyAt(rt2, b.calls(), 14);
      const used = arena.usedBytes;
      const live = arena.liveAllocations;
      for (let i = 0; i < 3; i++) wasmAttentionManyAt(rt2, b.calls(), 14);
      assert.equal(arena.usedBytes, used);
      assert.equal(arena.liveAllocations, live);
    } finally {
      b.dispose();
    }
  });
});

describe('KernelSet.attentionMany: the WASM set and its reference twin', () => {
  test('ref twin == reference per call (exact); WASM set == wasmAttentionManyAt (exact) and within parity of the twin', () => {
    const rng = mulberry32(5800);
    const specs = varlenSpecs(rng, 8, 2, 64, ALL);
    const b = makeBatch(rng, 14, specs);
    const { nq, nl } = outBytes(specs);
    const out2 = arena.alloc(nq);
    const lse2 = arena.alloc(nl);
    try {
      refKernels(arena).attentionMany(b.calls(), 14, { window: 300 });
      const refOut = f32Slice(b.out, nq);
      const refLse = f32Slice(b.lse, nl);
      specs.forEach((s, i) => {
        const n = s.nQuery * 14 * 64;
        const r = attention(f32Slice(b.q + b.qOff[i]!, n * 4), b.positions[i]!, 14, b.seqs[i]!.view(), { window: 300 });
        assert.ok(sameBits(refOut.subarray(b.qOff[i]! >> 2, (b.qOff[i]! >> 2) + n), r.out), `ref twin call ${i}`);
        assert.ok(sameBits(refLse.subarray(b.lseOff[i]! >> 2, (b.lseOff[i]! >> 2) + s.nQuery * 14), r.lse), `ref twin lse ${i}`);
      });
      wasmKernels(rt2).attentionMany(b.calls(), 14, { window: 300 });
      wasmAttentionManyAt(rt1, b.calls(out2, lse2), 14, { window: 300 });
      assert.ok(sameBits(f32Slice(b.out, nq), f32Slice(out2, nq)) && sameBits(f32Slice(b.lse, nl), f32Slice(lse2, nl)));
      specs.forEach((s, i) => {
        const n = s.nQuery * 14 * 64;
        const at = b.qOff[i]! >> 2;
        const e = nmse(f32Slice(out2, nq).subarray(at, at + n), refOut.subarray(at, at + n));
        assert.ok(e <= parityBound('attention', s.kDtype, s.vDtype), `call ${i}: NMSE ${e}`);
      });
    } finally {
      arena.free(out2);
      arena.free(lse2);
      b.dispose();
    }
  });
});

describe('attentionMany: typed errors name the call, nothing written', () => {
  const rng = mulberry32(5900);
  const specs: CallSpec[] = [
    { nKeys: 40, nQuery: 1, kDtype: 'f16', vDtype: 'f16', nKvHeads: 2, headDim: 64 },
    { nKeys: 300, nQuery: 2, kDtype: 'q8_0', vDtype: 'f16', nKvHeads: 2, headDim: 64 },
    { nKeys: 7, nQuery: 1, kDtype: 'f32', vDtype: 'f32', nKvHeads: 2, headDim: 64 },
  ];
  const b = makeBatch(rng, 4, specs);
  after(() => b.dispose());

  /** Patch call i, run on wasm and ref: both throw `cls` naming calls[i], and out / lse stay as they were. */
  function expectError(i: number, patch: (c: AttentionCall) => AttentionCall, cls: new (...a: never[]) => Error, nHeads = 4, opts?: AttentionOptions, name = `calls[${i}]`): void {
    const nq = specs.reduce((a, s) => a + s.nQuery * 4 * 64 * 4, 0);
    arena.f32.fill(7, b.out >> 2, (b.out + nq) >> 2);
    for (const ks of [wasmKernels(rt2), refKernels(arena)]) {
      const calls = b.calls().map((c, j) => (j === i ? patch(c) : c));
      assert.throws(() => ks.attentionMany(calls, nHeads, opts), (e: Error) => {
        assert.ok(e instanceof cls, `${ks.name}: ${e.name} is not ${cls.name}: ${e.message}`);
        assert.ok(e.message.includes(name), `${ks.name}: "${e.message}" does not name ${name}`);
        return true;
      });
      assert.ok(f32Slice(b.out, nq).every((x) => x === 7), `${ks.name}: an output was written before the error`);
    }
  }

  test('bad positions, view totals, dtypes, GQA', () => {
    expectError(1, (c) => ({ ...c, positions: [5, -1] }), OutOfRangeError, 4, undefined, 'calls[1].positions');
    expectError(2, (c) => ({ ...c, positions: [2.5] }), OutOfRangeError, 4, undefined, 'calls[2].positions');
    expectError(0, (c) => ({ ...c, view: { ...c.view, nTokens: c.view.nTokens + 1 } }), ShapeError, 4, undefined, 'calls[0].view');
    expectError(2, (c) => ({ ...c, view: { ...c.view, kDtype: 'q4_0', headDim: 40 } }), DTypeError, 4, undefined, 'calls[2].view');
    expectError(1, (c) => ({ ...c, view: { ...c.view, nKvHeads: 3 } }), ConfigError, 4, undefined, 'calls[1].view');
    const seg = b.seqs[0]!.view().segments[0]!;
    expectError(0, (c) => ({ ...c, view: { ...c.view, segments: [{ ...seg, kOffsetBytes: c.view.bytes.length - 10 }, ...c.view.segments.slice(1)] } }),
      OutOfRangeError, 4, undefined, 'calls[0].view.segments[0]');
  });

  test('options are checked once for all calls', () => {
    for (const window of [0, 2.5]) expectError(0, (c) => c, ConfigError, 4, { window }, 'attention window');
    expectError(0, (c) => c, ConfigError, 4, { scale: NaN }, 'attention scale');
  });

  test('wasm only: view memory, arena offsets, the i32 position limit', () => {
    const nq = specs.reduce((a, s) => a + s.nQuery * 4 * 64 * 4, 0);
    const run = (i: number, patch: (c: AttentionCall) => AttentionCall, cls: new (...a: never[]) => Error, name: string) => {
      arena.f32.fill(7, b.out >> 2, (b.out + nq) >> 2);
      const calls = b.calls().map((c, j) => (j === i ? patch(c) : c));
      assert.throws(() => wasmAttentionManyAt(rt1, calls, 4), (e: Error) => e instanceof cls && e.message.includes(name));
      assert.ok(f32Slice(b.out, nq).every((x) => x === 7));
    };
    run(2, (c) => ({ ...c, view: { ...c.view, bytes: new Uint8Array(arena.bytes.length) } }), ConfigError, 'calls[2].view.bytes');
    run(1, (c) => ({ ...c, qOffset: c.qOffset + 2 }), OutOfRangeError, 'calls[1].q');
    run(0, (c) => ({ ...c, outOffset: arena.mappedBytes - 8 }), OutOfRangeError, 'calls[0].out');
    run(2, (c) => ({ ...c, lseOffset: -4 }), OutOfRangeError, 'calls[2].lse');
    run(1, (c) => ({ ...c, positions: [5, 2 ** 31] }), OutOfRangeError, 'calls[1].positions');
    run(0, (c) => ({ ...c, view: { ...c.view, segments: [{ ...c.view.segments[0]!, pos0: 2 ** 31 - 3 }, ...c.view.segments.slice(1)] } }), OutOfRangeError, 'calls[0].view.segments[0]');
  });
});
