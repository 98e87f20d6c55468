// Software prefetch for kernels that stream a large operand (matvec weights) from DRAM.
//
// WebAssembly has no prefetch instruction. A streaming kernel whose loop spends many
// instructions per 64-byte line (a q8_0 block is ~20 SIMD ops; f16 / bf16 widen every lane)
// only has the lines that fit in the core's reorder window in flight: on an Intel Xeon VM
// (2026-12) the q8_0 lm_head matvec read 4.8 GB/s from DRAM on one thread where an f32 one read
// 9.5 and the read probe 10, and the qwen2.5-0.5b decode ran 14-15 tok/s where llama.cpp ran 36.
// Plain loads of one byte per line, issued in a burst of TOUCH_BURST bytes TOUCH_AHEAD bytes
// ahead of the rows being computed, put a whole burst of misses in flight at once; the kernel
// then finds the lines in cache. Measured there: 4.8 -> 7.6 GB/s (1 thread), 8.9 -> 15 GB/s
// (2 threads), decode 14 -> 22.5 tok/s. Touching every other line, or one line per block
// spread through the loop (no burst), gained little: the misses must be issued together.
// The cost: ~20-25% on matrices already in the L3 (the burst's loads stall retirement briefly),
// which a model's decode never sees (its weights cycle through DRAM once per token).

/** Bytes touched per burst (64 lines). */
const TOUCH_BURST: usize = 4096;
/** How far ahead of the row being computed the touched bytes start. */
const TOUCH_AHEAD: usize = 4096;

/** Folded touched bytes: module state, so the optimiser cannot drop the loads. */
let touchSink: u32 = 0;

/** The first byte a kernel streaming from `start` should touch (its cursor's initial value). */
@inline export function touchStart(start: usize): usize {
  return start + TOUCH_AHEAD;
}

/**
 * Touch, in bursts, every line from the cursor `next` up to TOUCH_AHEAD bytes past `pos` (the
 * end of the rows about to be computed), never past the operand's end `limit`; returns the new
 * cursor. Usage: `let next = touchStart(rowsStart)`, then before each row (or group of rows)
 * `next = touchUpTo(next, rowsEnd, limit)`.
 */
@inline export function touchUpTo(next: usize, pos: usize, limit: usize): usize {
  const want = min(pos + TOUCH_AHEAD, limit);
  while (next < want) {
    const e = min(next + TOUCH_BURST, limit);
    let s: u32 = 0;
    for (let t = next; t < e; t += 64) s |= load<u8>(t);
    touchSink |= s;
    next = e;
  }
  return next;
}

/**
 * Touch the lines of [p, p + bytes) (bytes >= 1): one byte per 64, and the last byte, whose line
 * the stride can miss when p is not line-aligned.
 */
@inline export function touchLines(p: usize, bytes: usize): void {
  let s: u32 = load<u8>(p + bytes - 1);
  for (let o: usize = 0; o < bytes; o += 64) s |= load<u8>(p + o);
  touchSink |= s;
}
