/**
 * The thread pool and the kernel runtime: chunking, results that do not depend on the thread
 * count, errors in a worker surfacing in the caller, a dying worker never hanging the caller,
 * clean shutdown, and the asynchronous start that browsers need (test/browser-workers.test.ts
 * runs it in Chromium). The probe kernels (assembly/probe.ts) serve as the workload: probe_read
 * writes one sum per chunk, so every item's output shows which items ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Arena } from '../src/core/arena.js';
import { ConfigError, DisposedError, KernelError, StateError, WorkerDiedError } from '../src/core/errors.js';
import { KernelRuntime } from '../src/kernels/wasm/runtime.js';
import { threadCanBlock } from '../src/parallel/pool.js';
import { chunkOf } from '../src/parallel/protocol.js';

const MiB = 1 << 20;
const CHUNK_BYTES = 4096;

/** Fill `nChunks` chunks of 1024 floats so that chunk c sums to exactly 1024 * (c + 1). */
function fillChunks(arena: Arena, src: number, nChunks: number): void {
  const f = arena.f32;
  for (let c = 0; c < nChunks; c++) f.fill(c + 1, src / 4 + c * 1024, src / 4 + (c + 1) * 1024);
}

test('chunkOf: the chunks of all threads tile [begin, end) in whole grains, in order', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 9 }), (begin, len, grain, n) => {
      let next = begin;
      for (let t = 0; t < n; t++) {
        const [lo, hi] = chunkOf(t, n, begin, begin + len, grain);
        assert.equal(lo, next);
        assert.ok(hi >= lo);
        if (hi < begin + len) assert.equal((hi - begin) % grain, 0);
        next = hi;
      }
      assert.equal(next, begin + len);
    }),
  );
});

test('parallelFor runs every item exactly once, on 1, 2 and 3 threads, for any range and grain', () => {
  const arena = new Arena({ maximumBytes: 64 * MiB, initialBytes: 8 * MiB });
  const nChunks = 257;
  const src = arena.alloc(nChunks * CHUNK_BYTES);
  const out = arena.alloc(nChunks * 4);
  fillChunks(arena, src, nChunks);
  try {
    for (const nThreads of [1, 2, 3]) {
      const rt = new KernelRuntime(arena, { nThreads });
      assert.equal(rt.nThreads, nThreads);
      for (const [begin, end, grain] of [[0, nChunks, 1], [3, 200, 7], [10, 11, 1], [0, 2, 16], [5, 5, 1], [100, 257, 64]] as const) {
        arena.f32.fill(-1, out / 4, out / 4 + nChunks);
        rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES);
        rt.parallelFor('probe_read', begin, end, grain);
        const f = arena.f32;
        for (let c = 0; c < nChunks; c++) {
          const want = c >= begin && c < end ? 1024 * (c + 1) : -1;
          assert.equal(f[out / 4 + c], want, `threads ${nThreads}, range [${begin}, ${end}) grain ${grain}, item ${c}`);
        }
      }
      rt.dispose();
    }
  } finally {
    arena.dispose();
  }
});

test('KernelRuntime.for caches one runtime per arena and option set; unknown kernels are typed errors', () => {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  try {
    const a = KernelRuntime.for(arena, { nThreads: 1 });
    assert.equal(KernelRuntime.for(arena, { nThreads: 1 }), a);
    assert.throws(() => a.kernel('no_such_kernel'), ConfigError);
    const off = a.scratch('x', 100);
    assert.equal(a.scratch('x', 50), off, 'a smaller request reuses the buffer');
    const staged = a.stage('y', new Float32Array([1, 2, 3]));
    assert.deepEqual([...arena.f32.subarray(staged / 4, staged / 4 + 3)], [1, 2, 3]);
    const live = arena.liveAllocations;
    a.dispose();
    assert.equal(arena.liveAllocations, live - 3, 'dispose frees the control block and the scratch buffers');
    assert.throws(() => a.args(), DisposedError);
    assert.notEqual(KernelRuntime.for(arena, { nThreads: 1 }), a, 'a disposed runtime is replaced');
  } finally {
    arena.dispose();
  }
});

test('a trap in a worker surfaces as KernelError in the caller; the pool stays usable', () => {
  const arena = new Arena({ maximumBytes: 16 * MiB, initialBytes: 2 * MiB });
  const rt = new KernelRuntime(arena, { nThreads: 2 });
  try {
    const out = arena.alloc(64 * 4);
    // Every item reads 4 MiB from 8 KiB below the end of the mapped memory: all of them trap.
    const src = arena.mappedBytes - 2 * CHUNK_BYTES;
    rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES * 1024);
    assert.throws(
      () => rt.parallelFor('probe_read', 0, 4),
      (e: unknown) => e instanceof KernelError && /out of bounds|RuntimeError/.test(e.message),
    );
    // Same on the calling thread alone.
    assert.throws(() => rt.runLocal('probe_read', 0, 1), KernelError);
    // And the pool still works afterwards.
    const good = arena.alloc(4 * CHUNK_BYTES);
    fillChunks(arena, good, 4);
    rt.args().ptr(good).ptr(out).i32(CHUNK_BYTES);
    rt.parallelFor('probe_read', 0, 4);
    assert.deepEqual([...arena.f32.subarray(out / 4, out / 4 + 4)], [1024, 2048, 3072, 4096]);
  } finally {
    rt.dispose();
    arena.dispose();
  }
});

test('a worker that exits mid-job: WorkerDiedError, no hang, the runtime refuses further work', () => {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  const rt = new KernelRuntime(arena, { nThreads: 2 });
  try {
    const src = arena.alloc(4 * CHUNK_BYTES);
    const out = arena.alloc(64);
    rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES);
    rt.parallelFor('probe_read', 0, 4); // healthy first
    rt.pool.crashWorkerForTest(0);
    const t0 = Date.now();
    assert.throws(() => rt.parallelFor('probe_read', 0, 4), WorkerDiedError);
    assert.ok(Date.now() - t0 < 10000, 'detected promptly');
    assert.throws(() => rt.parallelFor('probe_read', 0, 4), WorkerDiedError);
  } finally {
    rt.dispose();
    arena.dispose();
  }
});

test('dispose stops the workers; a disposed pool is a typed error, dispose is idempotent', () => {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  const rt = new KernelRuntime(arena, { nThreads: 2 });
  rt.dispose();
  rt.dispose();
  assert.equal(rt.pool.isDisposed, true);
  assert.throws(() => rt.parallelFor('probe_read', 0, 4), DisposedError);
  arena.dispose();
});

test('KernelRuntime.start: an asynchronous start (the browser path) gives the runtime for() returns', async () => {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  try {
    assert.equal(threadCanBlock(), true, 'Node threads may block');
    const rt = await KernelRuntime.start(arena, { nThreads: 3 });
    assert.equal(rt.nThreads, 3);
    assert.equal(rt.pool.liveWorkers, 2);
    assert.equal(KernelRuntime.for(arena, { nThreads: 3, variant: rt.variant }), rt);
    assert.equal(await KernelRuntime.start(arena, { nThreads: 3 }), rt, 'a second start returns the live runtime');
    const src = arena.alloc(4 * CHUNK_BYTES);
    const out = arena.alloc(4 * 4);
    fillChunks(arena, src, 4);
    rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES);
    rt.parallelFor('probe_read', 0, 4);
    assert.deepEqual([...arena.f32.subarray(out / 4, out / 4 + 4)], [1024, 2048, 3072, 4096]);
    rt.dispose();
    assert.equal(rt.pool.liveWorkers, 0);
  } finally {
    arena.dispose();
  }
});

test('a deferred pool refuses jobs until waitStarted() resolves (a worker not yet in its loop would miss the job)', async () => {
  const arena = new Arena({ maximumBytes: 16 * MiB });
  const rt = new KernelRuntime(arena, { nThreads: 2 }, true);
  try {
    const src = arena.alloc(4 * CHUNK_BYTES);
    const out = arena.alloc(4 * 4);
    fillChunks(arena, src, 4);
    rt.args().ptr(src).ptr(out).i32(CHUNK_BYTES);
    assert.throws(() => rt.parallelFor('probe_read', 0, 4), StateError);
    await rt.pool.waitStarted();
    rt.parallelFor('probe_read', 0, 4);
    assert.deepEqual([...arena.f32.subarray(out / 4, out / 4 + 4)], [1024, 2048, 3072, 4096]);
  } finally {
    rt.dispose();
    arena.dispose();
  }
});
