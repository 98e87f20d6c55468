// Same-run limits for the benchmarks: how fast one thread can stream memory through SIMD
// registers, and how many f32 multiply-adds it can issue. Every kernel is judged against these.
import { argI32, argU32, fma4, hsum4 } from './simd';

/**
 * args: [0] src ptr (64-aligned), [1] out ptr (f32 per chunk), [2] chunk bytes (multiple of 256).
 * Sums chunk i of src into out[i] for i in [begin, end): every byte is read once.
 */
export function probe_read(args: usize, begin: i32, end: i32): void {
  const src = argU32(args, 0);
  const out = argU32(args, 1);
  const chunk = <usize>argI32(args, 2);
  for (let c = begin; c < end; c++) {
    let p = src + <usize>c * chunk;
    const stop = p + chunk;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (; p < stop; p += 64) {
      a0 = f32x4.add(a0, v128.load(p));
      a1 = f32x4.add(a1, v128.load(p, 16));
      a2 = f32x4.add(a2, v128.load(p, 32));
      a3 = f32x4.add(a3, v128.load(p, 48));
    }
    store<f32>(out + (<usize>c << 2), hsum4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))));
  }
}

/**
 * args: [0] out ptr (f32 per item), [1] iterations per item.
 * 12 independent multiply-add chains on registers: 12 * 4 lanes * 2 FLOPs per iteration, no memory.
 * Why 12: a chain step is a multiply then an add (plain SIMD has no FMA), 6 cycles of latency on
 * this core, and the core issues 2 multiplies + 2 adds per cycle, so 12 chains in flight are
 * needed to keep all four pipes busy. 8 chains were latency-bound and read 70-85% of the peak
 * (measured: 22-27 vs 28-31 GFLOP/s on one thread); 14 or 16 chains spill and read less.
 */
export function probe_flops(args: usize, begin: i32, end: i32): void {
  const out = argU32(args, 0);
  const iters = argI32(args, 1);
  const m = f32x4.splat(0.999999);
  const c = f32x4.splat(1e-7);
  for (let item = begin; item < end; item++) {
    let a0 = f32x4.splat(1), a1 = f32x4.splat(2), a2 = f32x4.splat(3), a3 = f32x4.splat(4);
    let a4 = f32x4.splat(5), a5 = f32x4.splat(6), a6 = f32x4.splat(7), a7 = f32x4.splat(8);
    let a8 = f32x4.splat(9), a9 = f32x4.splat(10), a10 = f32x4.splat(11), a11 = f32x4.splat(12);
    for (let i = 0; i < iters; i++) {
      a0 = fma4(a0, m, c); a1 = fma4(a1, m, c); a2 = fma4(a2, m, c); a3 = fma4(a3, m, c);
      a4 = fma4(a4, m, c); a5 = fma4(a5, m, c); a6 = fma4(a6, m, c); a7 = fma4(a7, m, c);
      a8 = fma4(a8, m, c); a9 = fma4(a9, m, c); a10 = fma4(a10, m, c); a11 = fma4(a11, m, c);
    }
    const s0 = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
    const s1 = f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7));
    const s2 = f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11));
    store<f32>(out + (<usize>item << 2), hsum4(f32x4.add(f32x4.add(s0, s1), s2)));
  }
}
