/**
 * Same-run baselines every benchmark reports beside its figures.
 */

function timeIt(fn: () => void, minSeconds: number): number {
  let reps = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    fn();
    reps++;
    t = performance.now();
  } while (t - t0 < minSeconds * 1000);
  return (t - t0) / 1000 / reps;
}

export interface Probes {
  /** Native memcpy (TypedArray.set) over 256 MiB: bytes copied per second / 1e9. */
  memcpyGBps: number;
  /** A plain-JS loop summing a 64 MiB Float32Array: the ceiling of the reference (plain TS) kernels. */
  jsReadGBps: number;
}

export function runProbes(minSeconds = 0.5): Probes {
  const big = new Uint8Array(256 << 20).fill(1);
  const dst = new Uint8Array(256 << 20).fill(2); // touched first, so page faults are not timed
  dst.set(big);
  const copySec = timeIt(() => dst.set(big), minSeconds);
  const f = new Float32Array(16 << 20).fill(1);
  let sink = 0;
  const readSec = timeIt(() => {
    let s = 0;
    for (let i = 0; i < f.length; i++) s += f[i]!;
    sink += s;
  }, minSeconds);
  if (sink === -1) console.log('unreachable');
  return { memcpyGBps: big.length / copySec / 1e9, jsReadGBps: f.byteLength / readSec / 1e9 };
}

export { timeIt };

/**
 * Seconds of each call of `fn` over at least `minSeconds` (and `minCalls` calls), after `warmup`
 * untimed calls: the first calls of a WASM function run in the baseline tier, and after a
 * probe has swept the caches the first call finds its data cold.
 */
export function timeSamples(fn: () => void, minSeconds: number, warmup = 3, minCalls = 5): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  const t0 = performance.now();
  while (times.length < minCalls || performance.now() - t0 < minSeconds * 1000) {
    const a = performance.now();
    fn();
    times.push((performance.now() - a) / 1000);
  }
  return times;
}

/**
 * Median seconds per call of `fn` over at least `minSeconds` (and 5 calls), after `warmup`
 * untimed calls (timeSamples): a mean would let one slow outlier (a page fault, the other core
 * busy) move the figure.
 */
export function medianTime(fn: () => void, minSeconds: number, warmup = 3): number {
  const times = timeSamples(fn, minSeconds, warmup).sort((x, y) => x - y);
  return times[times.length >> 1]!;
}
