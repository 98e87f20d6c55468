/**
 * The ktransformers CPUInfer facade: submit never runs a task, sync runs them in order on the
 * pool, a failing task stops the drain and empties the queue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { ConfigError, KernelError } from '../src/core/errors.js';
import { CPUInfer } from '../src/compat/cpuinfer.js';

test('CPUInfer: submit queues, sync runs function and kernel tasks in order on 2 threads', () => {
  const arena = new Arena({ maximumBytes: 32 * (1 << 20) });
  const cpu = new CPUInfer(2, arena);
  try {
    assert.equal(cpu.nThreads, 2);
    const nChunks = 6;
    const src = arena.alloc(nChunks * 4096);
    const out = arena.alloc(nChunks * 4);
    const order: string[] = [];
    cpu.submit(() => {
      order.push('fill');
      for (let c = 0; c < nChunks; c++) arena.f32.fill(c, src / 4 + c * 1024, src / 4 + (c + 1) * 1024);
    });
    cpu.submit({ kernel: 'probe_read', begin: 0, end: nChunks, args: [src, out, 4096] });
    cpu.submit(() => order.push(`read ${arena.f32[out / 4 + 5]}`));
    assert.equal(cpu.pending, 3);
    assert.deepEqual(order, [], 'nothing runs before sync');
    cpu.sync();
    assert.equal(cpu.pending, 0);
    assert.deepEqual(order, ['fill', 'read 5120']);
    assert.deepEqual([...arena.f32.subarray(out / 4, out / 4 + nChunks)], [0, 1024, 2048, 3072, 4096, 5120]);
    assert.throws(() => cpu.submit(42 as never), ConfigError);
  } finally {
    cpu.dispose();
    arena.dispose();
  }
});

test('CPUInfer: a failing task stops the drain, sync rethrows, the queue is left empty', () => {
  const arena = new Arena({ maximumBytes: 16 * (1 << 20) });
  const cpu = new CPUInfer(1, arena);
  try {
    let ran = 0;
    cpu.submit(() => ran++);
    cpu.submit({ kernel: 'probe_read', begin: 0, end: 1, args: [arena.maximumBytes - 64, 0, 1 << 20] });
    cpu.submit(() => ran++);
    assert.throws(() => cpu.sync(), KernelError);
    assert.equal(ran, 1);
    assert.equal(cpu.pending, 0);
    cpu.sync();
    assert.equal(ran, 1);
  } finally {
    cpu.dispose();
    arena.dispose();
  }
});
