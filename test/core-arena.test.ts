/**
 * The memory arena: alignment, zero fill, first-fit reuse with coalescing, growth that keeps
 * data, bookkeeping, and the typed errors. Arenas here are a few MiB except one test that
 * creates the default 4 GiB-maximum shared memory (only 16 MiB of it is mapped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Arena, WASM32_MAX_BYTES, defaultArena } from '../src/core/arena.js';
import { CapacityError, ConfigError, DisposedError, KVCacheError, MemoryLimitError } from '../src/core/errors.js';

const MiB = 1 << 20;
const small = (shared = true): Arena => new Arena({ maximumBytes: 4 * MiB, initialBytes: MiB, shared });

test('alloc: 64-aligned offsets past reservedBytes, distinct and non-overlapping', () => {
  const a = small();
  assert.equal(a.reservedBytes, MiB);
  assert.equal(a.maximumBytes, 4 * MiB);
  const sizes = [1, 64, 65, 100, 0, 4096, 1000, 63, 128, 3];
  const offs = sizes.map((s) => a.alloc(s));
  const spans = offs.map((o, i) => [o, o + Math.max(64, Math.ceil(sizes[i]! / 64) * 64)] as const);
  for (const [o] of spans) {
    assert.equal(o % 64, 0);
    assert.ok(o >= MiB, `offset ${o} inside the reserved bytes`);
  }
  const sorted = [...spans].sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]![0] >= sorted[i - 1]![1], `overlap ${sorted[i - 1]} / ${sorted[i]}`);
  // Fresh arena, sequential allocations are packed from reservedBytes.
  assert.deepEqual(offs.slice(0, 3), [MiB, MiB + 64, MiB + 128]);
  assert.equal(offs[3], MiB + 256); // 65 bytes took 128
  a.dispose();
});

test('alloc honours a larger alignment and reuses the padding it leaves', () => {
  const a = new Arena({ maximumBytes: 4 * MiB, initialBytes: MiB, reservedBytes: 64 });
  assert.equal(a.alloc(64), 64);
  const big = a.alloc(100, 4096);
  assert.equal(big, 4096);
  // The gap [128, 4096) is a hole: a small allocation lands there, not after `big`.
  assert.equal(a.alloc(64), 128);
  const odd = a.alloc(10, 1000); // any positive integer alignment
  assert.equal(odd % 1000, 0);
  a.dispose();
});

test('allocations are zero-filled, including reused holes and space given back to the break', () => {
  const a = small();
  const x = a.alloc(256);
  const guard = a.alloc(64);
  a.bytes.fill(0xff, x, x + 256);
  a.free(x);
  const y = a.alloc(200); // reuses the hole at x
  assert.equal(y, x);
  assert.ok(a.bytes.subarray(y, y + 256).every((b) => b === 0));
  // The last allocation returns its bytes to the break; re-extending must zero them too.
  a.bytes.fill(0xab, guard, guard + 64);
  a.free(guard);
  const z = a.alloc(64);
  assert.equal(z, guard);
  assert.ok(a.bytes.subarray(z, z + 64).every((b) => b === 0));
  a.dispose();
});

test('free + re-alloc: first fit and coalescing of adjacent holes (either order)', () => {
  for (const order of ['ab', 'ba'] as const) {
    const a = small();
    const p = a.alloc(1000); // 1024 bytes
    const q = a.alloc(1000); // 1024 bytes, right after p
    const guard = a.alloc(64); // keeps p, q away from the break
    assert.equal(q, p + 1024);
    if (order === 'ab') {
      a.free(p);
      a.free(q);
    } else {
      a.free(q);
      a.free(p);
    }
    assert.equal(a.alloc(2048), p, `coalesced hole reused (${order})`);
    a.free(guard);
    a.dispose();
  }
  // Three-way coalescing (prev + middle + next) and a hole too small to be used.
  const a = small();
  const [p, q, r, g] = [a.alloc(64), a.alloc(64), a.alloc(64), a.alloc(64)];
  a.free(p);
  a.free(r);
  assert.equal(a.alloc(128), g + 64, 'no 128-byte hole yet: goes to the break');
  a.free(q);
  assert.equal(a.alloc(192), p, 'p + q + r merged into one 192-byte hole');
  a.dispose();
});

test('freeing the top allocation gives the space back to the break', () => {
  const a = small();
  const p = a.alloc(64);
  const q = a.alloc(512);
  const free0 = a.freeBytes;
  a.free(q);
  assert.equal(a.freeBytes, free0 + 512);
  a.free(p);
  assert.equal(a.freeBytes, 4 * MiB - MiB);
  assert.equal(a.alloc(64), p, 'allocation restarts at reservedBytes');
  a.dispose();
});

test('usedBytes / liveAllocations / freeBytes bookkeeping', () => {
  const a = small();
  assert.equal(a.usedBytes, 0);
  assert.equal(a.liveAllocations, 0);
  assert.equal(a.freeBytes, 3 * MiB);
  const p = a.alloc(1); // rounded up to 64
  const q = a.alloc(130); // 192
  const r = a.alloc(0); // 64
  assert.equal(a.usedBytes, 64 + 192 + 64);
  assert.equal(a.liveAllocations, 3);
  assert.equal(a.freeBytes, 3 * MiB - 320);
  a.free(q);
  assert.equal(a.usedBytes, 128);
  assert.equal(a.liveAllocations, 2);
  assert.equal(a.freeBytes, 3 * MiB - 128, 'the hole counts as free');
  a.free(p);
  a.free(r);
  assert.equal(a.usedBytes, 0);
  assert.equal(a.liveAllocations, 0);
  assert.equal(a.freeBytes, 3 * MiB);
  // Freeing an unknown offset is a caller bug: a plain internal assert, not a KVCacheError.
  assert.throws(
    () => a.free(p + 8),
    (e: unknown) => e instanceof Error && !(e instanceof KVCacheError) && /unknown arena offset/.test(e.message),
  );
  a.dispose();
});

for (const shared of [true, false]) {
  test(`growth keeps data and offsets (shared: ${shared})`, () => {
    const a = small(shared);
    assert.equal(a.mappedBytes, MiB);
    assert.equal(a.memory.buffer instanceof SharedArrayBuffer, shared);
    const p = a.alloc(1000);
    const pattern = Array.from({ length: 1000 }, (_, i) => (i * 37 + 11) & 0xff);
    a.bytes.set(pattern, p);
    const before = a.bytes;
    const big = a.alloc(2 * MiB); // forces memory.grow
    assert.ok(a.mappedBytes >= MiB + 1024 + 2 * MiB, `mapped ${a.mappedBytes}`);
    assert.ok(a.mappedBytes <= a.maximumBytes);
    const after = a.bytes; // a fresh view
    assert.notEqual(after, before);
    assert.equal(after.byteLength, a.mappedBytes);
    assert.deepEqual([...after.subarray(p, p + 1000)], pattern);
    assert.ok(after.subarray(big, big + 2 * MiB).every((b) => b === 0));
    // The typed views follow the growth too.
    a.f32[big / 4] = 1.5;
    assert.deepEqual([...a.bytes.subarray(big, big + 4)], [0x00, 0x00, 0xc0, 0x3f]);
    a.u16[(big + 8) / 2] = 0xbeef;
    assert.deepEqual([...a.slice(big + 8, 2)], [0xef, 0xbe]);
    a.dispose();
  });
}

test('MemoryLimitError past a small maximum, with the requested size in the message', () => {
  const a = small();
  const p = a.alloc(2 * MiB);
  let err: unknown;
  try {
    a.alloc(1536 * 1024); // 1 MiB reserved + 2 MiB + 1.5 MiB > 4 MiB
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof MemoryLimitError);
  assert.ok(err instanceof CapacityError);
  assert.ok(err instanceof KVCacheError);
  assert.equal(err.name, 'MemoryLimitError');
  assert.ok(err.message.includes('1572864'), err.message);
  assert.equal(err.given, 1572864);
  assert.ok(err.message.includes(String(MiB)), `says what is free: ${err.message}`);
  // The failed request changed nothing: the rest still fits exactly.
  assert.equal(a.usedBytes, 2 * MiB);
  assert.equal(a.liveAllocations, 1);
  assert.equal(a.freeBytes, MiB);
  const q = a.alloc(MiB);
  assert.equal(q, p + 2 * MiB);
  assert.equal(a.mappedBytes, 4 * MiB);
  assert.throws(() => a.alloc(1), MemoryLimitError);
  a.free(q);
  assert.equal(a.alloc(64), q);
  a.dispose();
});

test('ConfigError for bad sizes and options', () => {
  const a = small();
  for (const bad of [-1, 1.5, NaN, Infinity, '64' as unknown as number]) {
    assert.throws(() => a.alloc(bad), ConfigError, `size ${String(bad)}`);
  }
  assert.throws(() => a.alloc(64, 0), ConfigError);
  assert.throws(() => a.alloc(64, 2.5), ConfigError);
  assert.equal(a.liveAllocations, 0, 'rejected calls allocate nothing');
  assert.throws(() => new Arena({ maximumBytes: WASM32_MAX_BYTES + 65536 }), ConfigError);
  assert.throws(() => new Arena({ maximumBytes: 1024 }), ConfigError);
  assert.throws(() => new Arena({ maximumBytes: 4 * MiB, initialBytes: 8 * MiB }), ConfigError);
  assert.throws(() => new Arena({ maximumBytes: 4 * MiB, reservedBytes: -64 }), ConfigError);
  a.dispose();
});

test('DisposedError after dispose; free after dispose is a no-op', () => {
  const a = small();
  const p = a.alloc(64);
  a.dispose();
  assert.equal(a.isDisposed, true);
  assert.equal(a.usedBytes, 0);
  assert.equal(a.liveAllocations, 0);
  assert.throws(
    () => a.alloc(64),
    (e: unknown) => e instanceof DisposedError && e instanceof KVCacheError && /disposed/.test(e.message),
  );
  assert.throws(() => a.bytes, DisposedError);
  assert.throws(() => a.f32, DisposedError);
  a.free(p);
});

test('default options: 4 GiB maximum, shared, 16 MiB mapped; defaultArena is a singleton', () => {
  const a = new Arena();
  assert.equal(a.maximumBytes, WASM32_MAX_BYTES);
  assert.equal(WASM32_MAX_BYTES, 4 * 1024 * MiB);
  assert.equal(a.reservedBytes, MiB);
  assert.equal(a.mappedBytes, 16 * MiB);
  assert.ok(a.memory.buffer instanceof SharedArrayBuffer);
  const p = a.alloc(MiB);
  assert.equal(p, MiB);
  assert.throws(
    () => a.alloc(WASM32_MAX_BYTES),
    (e: unknown) => e instanceof MemoryLimitError && e.message.includes(String(WASM32_MAX_BYTES)) && /4 GiB/.test(e.message),
  );
  a.dispose();
  const d = defaultArena();
  assert.equal(defaultArena(), d);
  d.dispose();
  const d2 = defaultArena();
  assert.notEqual(d2, d);
  assert.equal(d2.isDisposed, false);
  d2.dispose();
});

test('random alloc/free sequences vs a naive model (fast-check)', () => {
  type Op = { kind: 'alloc'; size: number; align: number } | { kind: 'free'; pick: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('alloc' as const), size: fc.integer({ min: 0, max: 40_000 }), align: fc.constantFrom(64, 64, 128, 4096) }),
    fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const a = new Arena({ maximumBytes: 6 * MiB, initialBytes: 0, reservedBytes: 4096, shared: false });
      const live: Array<{ off: number; size: number; tag: number }> = [];
      let tag = 1;
      for (const op of ops) {
        if (op.kind === 'alloc') {
          const off = a.alloc(op.size, op.align);
          const size = Math.max(64, Math.ceil(op.size / 64) * 64);
          assert.equal(off % op.align, 0);
          assert.ok(off >= 4096 && off + size <= a.mappedBytes);
          for (const l of live) assert.ok(off + size <= l.off || l.off + l.size <= off, 'overlap');
          assert.ok(a.bytes.subarray(off, off + size).every((b) => b === 0), 'not zeroed');
          a.bytes.fill(tag & 0xff || 1, off, off + size);
          live.push({ off, size, tag: tag & 0xff || 1 });
          tag++;
        } else if (live.length > 0) {
          const [l] = live.splice(op.pick % live.length, 1);
          a.free(l!.off);
        }
        assert.equal(a.liveAllocations, live.length);
        assert.equal(a.usedBytes, live.reduce((s, l) => s + l.size, 0));
        // Everything between reservedBytes and the break is live or a hole (alignment padding included).
        assert.equal(a.freeBytes, a.maximumBytes - 4096 - a.usedBytes);
        const bytes = a.bytes;
        for (const l of live) {
          assert.equal(bytes[l.off], l.tag);
          assert.equal(bytes[l.off + l.size - 1], l.tag);
        }
      }
      for (const l of live) a.free(l.off);
      assert.equal(a.usedBytes, 0);
      assert.equal(a.freeBytes, a.maximumBytes - 4096, 'everything coalesced back to the break');
      a.dispose();
    }),
    { numRuns: 200, seed: 5 },
  );
});
