/**
 * The benchmarks' pure helpers (bench/stats.ts): median / spread, the roofline time, the
 * interleaved-rounds driver (with scripted kernel times and limits, no clock) and the sysfs
 * cache-size parser.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interleaveRounds, median, parseCacheSize, rooflineSeconds, spread } from '../bench/stats.js';

test('median: odd and even counts, input order and array untouched', () => {
  const xs = [5, 1, 3];
  assert.equal(median(xs), 3);
  assert.deepEqual(xs, [5, 1, 3]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.throws(() => median([]), RangeError);
});

test('spread: median, min and max', () => {
  assert.deepEqual(spread([0.6, 0.45, 0.72, 0.58, 0.61]), { median: 0.6, min: 0.45, max: 0.72 });
  assert.throws(() => spread([]), RangeError);
});

test('rooflineSeconds: the larger of memory time and compute time', () => {
  // 4 MB at 20 GB/s = 0.2 ms; 30 MFLOP at 50 GFLOP/s = 0.6 ms -> compute-bound
  assert.ok(Math.abs(rooflineSeconds(4e6, 30e6, 20, 50) - 0.6e-3) < 1e-15);
  // 100 MB at 20 GB/s = 5 ms; 1 MFLOP -> memory-bound
  assert.ok(Math.abs(rooflineSeconds(100e6, 1e6, 20, 50) - 5e-3) < 1e-15);
});

test('interleaveRounds: kernel window then probe each round; per-round fractions, overall median call', () => {
  // Round i: kernel calls of `times[i]` seconds, then a read probe of `reads[i]` GB/s. The machine
  // slows down in round 2 (both kernel and probe at half speed): the fraction stays put.
  const times = [[1.0, 1.1, 0.9], [2.0, 2.2, 1.8], [1.0, 1.2, 1.0]];
  const reads = [10, 5, 8];
  const order: string[] = [];
  let k = 0;
  let p = 0;
  const r = interleaveRounds(
    3,
    () => {
      order.push(`kernel${k}`);
      return times[k++]!;
    },
    () => {
      order.push(`probe${p}`);
      return reads[p++]!;
    },
    (sec, read) => 10 / sec / read, // "10 bytes per call" against the probe
  );
  assert.deepEqual(order, ['kernel0', 'probe0', 'kernel1', 'probe1', 'kernel2', 'probe2']);
  assert.deepEqual(r.roundSeconds, [1.0, 2.0, 1.0]);
  assert.deepEqual(r.limits, [10, 5, 8]);
  assert.deepEqual(r.fractions, [1, 1, 1.25]);
  assert.deepEqual(r.fraction, { median: 1, min: 1, max: 1.25 });
  // median over all 9 calls: 0.9 1.0 1.0 1.0 1.1 1.2 1.8 2.0 2.2 -> 1.1
  assert.equal(r.seconds, 1.1);
  assert.throws(() => interleaveRounds(0, () => [1], () => 1, () => 1), RangeError);
});

test('parseCacheSize: sysfs sizes', () => {
  assert.equal(parseCacheSize('32768K\n'), 32 << 20);
  assert.equal(parseCacheSize('1M'), 1 << 20);
  assert.equal(parseCacheSize('512'), 512);
  assert.equal(parseCacheSize(''), null);
  assert.equal(parseCacheSize('big'), null);
});
