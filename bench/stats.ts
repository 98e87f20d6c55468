/**
 * Pure helpers of the benchmarks (no timing, no WASM): medians and spreads, the roofline time of a
 * kernel call, and the interleaved-rounds driver that `npm run bench -- kernels` times its decode
 * attention and matvec rows with.
 *
 * NOTE: why rounds. The benchmark VM (2 vCPUs) shares its memory bandwidth and cores with
 * neighbours, and what it gets drifts by 20-40% within minutes. A fraction "kernel / limit" whose
 * limit was probed once, minutes before the kernel ran, carries that drift (decode attention at 8k
 * read 0.39-0.76 of roofline across runs of one build). interleaveRounds times the kernel for a
 * short window and probes the limits right after it, R times; each round's fraction compares
 * figures taken within a fraction of a second of each other, so drift that slows both the kernel
 * and its probe cancels, and the median over rounds drops the round a burst hit only one side of.
 */

/** The median of `xs` (the mean of the two middle values when their count is even). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** Median, smallest and largest of `xs`. */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) throw new RangeError('spread of no values');
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * Roofline time of a call, seconds: the larger of its memory time (bytes at `readGBps`) and its
 * compute time (flops at `peakGflops`).
 */
export function rooflineSeconds(bytes: number, flops: number, readGBps: number, peakGflops: number): number {
  return Math.max(bytes / (readGBps * 1e9), flops / (peakGflops * 1e9));
}

export interface Rounds<L> {
  /** Median seconds per kernel call over every timed call of every round. */
  seconds: number;
  /** Each round's median seconds per kernel call. */
  roundSeconds: number[];
  /** Each round's limits, probed right after its kernel window. */
  limits: L[];
  /** Each round's fraction, fraction(roundSeconds[i], limits[i]). */
  fractions: number[];
  /** Median, min and max of `fractions`. */
  fraction: Spread;
}

/**
 * `rounds` rounds of: time the kernel (`timeKernel` returns the seconds of each call of a short
 * window), then probe the limits (`probeLimits`), then score the round (`fraction` of the
 * round's median call time against the limits just probed).
 */
export function interleaveRounds<L>(
  rounds: number,
  timeKernel: () => readonly number[],
  probeLimits: () => L,
  fraction: (seconds: number, limits: L) => number,
): Rounds<L> {
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds must be a positive integer, given ${rounds}`);
  const all: number[] = [];
  const roundSeconds: number[] = [];
  const limits: L[] = [];
  const fractions: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const samples = timeKernel();
    all.push(...samples);
    const sec = median(samples);
    const lim = probeLimits();
    roundSeconds.push(sec);
    limits.push(lim);
    fractions.push(fraction(sec, lim));
  }
  return { seconds: median(all), roundSeconds, limits, fractions, fraction: spread(fractions) };
}

/**
 * Bytes of a cache size as Linux sysfs writes it (`/sys/devices/system/cpu/cpu0/cache/index3/size`:
 * "32768K"); null when the text is not one.
 */
export function parseCacheSize(text: string): number | null {
  const m = /^\s*(\d+)\s*([KMG]?)\s*$/i.exec(text);
  if (m === null) return null;
  const unit = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}
