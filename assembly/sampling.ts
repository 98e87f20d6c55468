// Greedy and top-k selection over logits, by fixed-size chunks so that any thread count gives the
// same per-chunk results, merged deterministically (argmax in JS, top-k by topk_merge_f32).
//
// Order: a value is better than another when it is larger; NaN counts as larger than every number
// (as torch.argmax / torch.topk and numpy.argmax); equal values (including -0 == +0, and NaN vs NaN)
// are ordered by the lower index first. This is a strict total order on (value, index).
import { argI32, argU32, hmax4 } from './simd';

/**
 * The order as one u64 key, larger = better: high word = the f32 bits made monotonic as unsigned
 * (-0 canonicalised to +0 by adding 0, every NaN to the top), low word = ~index (lower index = larger).
 * The heap then compares one integer per step instead of branching over NaN and ties.
 */
@inline function key(v: f32, i: i32): u64 {
  const b = reinterpret<u32>(v + <f32>0);
  const m: u32 = v != v ? 0xffffffff : (b >> 31 != 0 ? ~b : b | 0x80000000);
  return (<u64>m << 32) | <u64>(<u32>~i);
}

@inline function indexOf(k: u64): i32 {
  return ~(<i32>(<u32>k));
}

/**
 * args: [0] x ptr (f32 [n]), [1] n, [2] chunkLen, [3] out values ptr (f32 [nChunks]),
 *       [4] out indices ptr (i32 [nChunks]). Chunks [begin, end): the best (value, index) of
 *       x[c * chunkLen, min(n, (c + 1) * chunkLen)).
 * Pass 1 finds the max with f32x4.max (NaN-propagating, so a NaN anywhere makes it NaN); pass 2
 * finds the first index holding it (x == max, or x != x for NaN), stopping there.
 */
export function argmax_chunks_f32(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const n = argI32(args, 1);
  const chunkLen = argI32(args, 2);
  const outVal = argU32(args, 3);
  const outIdx = argU32(args, 4);
  for (let c = begin; c < end; c++) {
    const lo = c * chunkLen;
    const hi = min<i32>(n, lo + chunkLen);
    let m0 = f32x4.splat(-Infinity), m1 = f32x4.splat(-Infinity), m2 = f32x4.splat(-Infinity), m3 = f32x4.splat(-Infinity);
    let i = lo;
    for (; i + 16 <= hi; i += 16) {
      const p = x + (<usize>i << 2);
      m0 = f32x4.max(m0, v128.load(p));
      m1 = f32x4.max(m1, v128.load(p, 16));
      m2 = f32x4.max(m2, v128.load(p, 32));
      m3 = f32x4.max(m3, v128.load(p, 48));
    }
    for (; i + 4 <= hi; i += 4) m0 = f32x4.max(m0, v128.load(x + (<usize>i << 2)));
    let mx = hmax4(f32x4.max(f32x4.max(m0, m1), f32x4.max(m2, m3)));
    for (; i < hi; i++) mx = max<f32>(mx, load<f32>(x + (<usize>i << 2)));
    const isNan = mx != mx;
    const mv = f32x4.splat(mx);
    let found = lo; // always overwritten: mx is one of the chunk's values (or one of them is NaN)
    i = lo;
    for (; i + 4 <= hi; i += 4) {
      const v = v128.load(x + (<usize>i << 2));
      if (v128.any_true(isNan ? f32x4.ne(v, v) : f32x4.eq(v, mv))) break;
    }
    for (; i < hi; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      if (isNan ? v != v : v == mx) {
        found = i;
        break;
      }
    }
    store<f32>(outVal + (<usize>c << 2), load<f32>(x + (<usize>found << 2)));
    store<i32>(outIdx + (<usize>c << 2), found);
  }
}

/** Sift entry j down a min-heap of u64 keys at hp of `size` (root = the WORST entry, smallest key). */
function siftDown(hp: usize, j: i32, size: i32): void {
  const v = load<u64>(hp + (<usize>j << 3));
  for (;;) {
    let c = 2 * j + 1;
    if (c >= size) break;
    let cv = load<u64>(hp + (<usize>c << 3));
    if (c + 1 < size) {
      const rv = load<u64>(hp + (<usize>(c + 1) << 3));
      if (rv < cv) {
        c++;
        cv = rv;
      }
    }
    if (v <= cv) break;
    store<u64>(hp + (<usize>j << 3), cv);
    j = c;
  }
  store<u64>(hp + (<usize>j << 3), v);
}

/**
 * args: [0] x ptr (f32 [n]), [1] n, [2] chunkLen, [3] k, [4] heaps ptr (u64 [nChunks, cap]),
 *       cap = min(k, chunkLen).
 * Chunks [begin, end): the keys of the best min(k, chunk length) entries, sorted best first.
 *
 * A min-heap of the best keys so far (worst at the root); later indices only enter when strictly
 * better than the root's value (an equal value has a larger index, so it is worse): a 16-wide SIMD
 * test `!(x <= root value)` (true for larger values and NaN) rejects most of them in bulk, and only
 * the lanes that pass are offered to the heap. Finally a heap sort leaves the slot best first.
 */
export function topk_chunks_f32(args: usize, begin: i32, end: i32): void {
  const x = argU32(args, 0);
  const n = argI32(args, 1);
  const chunkLen = argI32(args, 2);
  const k = argI32(args, 3);
  const cap = min<i32>(k, chunkLen);
  for (let c = begin; c < end; c++) {
    const hp = argU32(args, 4) + (<usize>c * <usize>cap << 3);
    const lo = c * chunkLen;
    const hi = min<i32>(n, lo + chunkLen);
    const size = min<i32>(cap, hi - lo);
    for (let j = 0; j < size; j++) store<u64>(hp + (<usize>j << 3), key(load<f32>(x + (<usize>(lo + j) << 2)), lo + j));
    for (let j = (size >> 1) - 1; j >= 0; j--) siftDown(hp, j, size);
    let i = lo + size;
    let thr = f32x4.splat(load<f32>(x + (<usize>indexOf(load<u64>(hp)) << 2)));
    for (; i + 16 <= hi; i += 16) {
      const p = x + (<usize>i << 2);
      // Lanes that may enter: !(x <= root value), i.e. larger or NaN; one bit per lane, 16 lanes.
      let bits = i32x4.bitmask(v128.not(f32x4.le(v128.load(p), thr)))
        | (i32x4.bitmask(v128.not(f32x4.le(v128.load(p, 16), thr))) << 4)
        | (i32x4.bitmask(v128.not(f32x4.le(v128.load(p, 32), thr))) << 8)
        | (i32x4.bitmask(v128.not(f32x4.le(v128.load(p, 48), thr))) << 12);
      if (bits == 0) continue;
      while (bits != 0) {
        const j = i + ctz(bits);
        const kj = key(load<f32>(x + (<usize>j << 2)), j);
        if (kj > load<u64>(hp)) { // re-checked against the root, which may have risen
          store<u64>(hp, kj);
          siftDown(hp, 0, size);
        }
        bits &= bits - 1;
      }
      thr = f32x4.splat(load<f32>(x + (<usize>indexOf(load<u64>(hp)) << 2)));
    }
    for (; i < hi; i++) {
      const ki = key(load<f32>(x + (<usize>i << 2)), i);
      if (ki > load<u64>(hp)) {
        store<u64>(hp, ki);
        siftDown(hp, 0, size);
      }
    }
    for (let e = size - 1; e > 0; e--) {
      const root = load<u64>(hp);
      store<u64>(hp, load<u64>(hp + (<usize>e << 3)));
      store<u64>(hp + (<usize>e << 3), root);
      siftDown(hp, 0, e);
    }
  }
}

/**
 * args: [0] x ptr (f32 [n]), [1] heaps ptr (u64 [nChunks, cap] from topk_chunks_f32), [2] n,
 *       [3] chunkLen, [4] k (<= n), [5] out values ptr (f32 [k]), [6] out indices ptr (i32 [k]),
 *       [7] cursors ptr (i32 [nChunks], scratch). Run as the single item [0, 1).
 * A k-way merge of the chunks' sorted lists: the global top k is the top k of their union,
 * because each of its entries is in its own chunk's top k.
 */
export function topk_merge_f32(args: usize, begin: i32, end: i32): void {
  if (begin >= end) return;
  const x = argU32(args, 0);
  const heaps = argU32(args, 1);
  const n = argI32(args, 2);
  const chunkLen = argI32(args, 3);
  const k = argI32(args, 4);
  const outVal = argU32(args, 5);
  const outIdx = argU32(args, 6);
  const cursors = argU32(args, 7);
  const cap = min<i32>(k, chunkLen);
  const nChunks = (n + chunkLen - 1) / chunkLen;
  for (let c = 0; c < nChunks; c++) store<i32>(cursors + (<usize>c << 2), 0);
  for (let r = 0; r < k; r++) {
    let best = -1;
    let bk: u64 = 0;
    for (let c = 0; c < nChunks; c++) {
      const cur = load<i32>(cursors + (<usize>c << 2));
      if (cur >= min<i32>(cap, n - c * chunkLen)) continue;
      const kc = load<u64>(heaps + ((<usize>c * <usize>cap + <usize>cur) << 3));
      if (best < 0 || kc > bk) {
        best = c;
        bk = kc;
      }
    }
    const idx = indexOf(bk);
    store<f32>(outVal + (<usize>r << 2), load<f32>(x + (<usize>idx << 2)));
    store<i32>(outIdx + (<usize>r << 2), idx);
    store<i32>(cursors + (<usize>best << 2), load<i32>(cursors + (<usize>best << 2)) + 1);
  }
}
