/**
 * Bindings of the selection kernels (assembly/sampling.ts), twins of ref/sampling.ts: argmax and
 * top-k over logits, with the order of ref/sampling.ts NOTE(1) (NaN largest, ties by lower index).
 *
 * NOTE(1): The logits are cut into fixed chunks of CHUNK values, independent of the thread count;
 *   each chunk's best (argmax) or best k (top-k, sorted) is computed on any thread, then merged in
 *   chunk order (argmax in JS, top-k by a k-way merge kernel on the calling thread). The answer is
 *   unique under the total order, so 1 and N threads give identical results.
 * NOTE(2): Scratch: argmax nChunks * 8 bytes; top-k nChunks * min(k, CHUNK) * 8 bytes of heap keys
 *   (at most ~8 bytes per logit) plus the merge cursors. Kept per runtime, grown on demand.
 */
import { checkInt } from '../../core/errors.js';
import { better, checkK, checkNonEmpty, type TopK } from '../ref/sampling.js';
import { checkWords } from './arena-span.js';
import type { KernelRuntime } from './runtime.js';

/** Logits per chunk (NOTE(1)): 64 KiB, a few µs of scanning, ~10 chunks for a 152K vocabulary. */
export const SELECT_CHUNK = 16384;

/** Index of the best of n logits at arena byte offset x (f32 [n]). */
export function argmaxAt(rt: KernelRuntime, x: number, n: number): number {
  checkInt('argmax n', n, 0);
  checkNonEmpty('argmax x', n);
  checkWords(rt, 'argmax x', x, n);
  const nChunks = Math.ceil(n / SELECT_CHUNK);
  const part = rt.scratch('sampling.argmax', nChunks * 8); // values f32 [nChunks] then indices i32 [nChunks]
  rt.args().ptr(x).i32(n).i32(SELECT_CHUNK).ptr(part).ptr(part + nChunks * 4);
  rt.parallelFor('argmax_chunks_f32', 0, nChunks, 1);
  const f32 = rt.arena.f32;
  const i32 = rt.arena.i32;
  const vo = part >> 2;
  const io = vo + nChunks;
  let best = 0;
  for (let c = 1; c < nChunks; c++) {
    if (better(f32[vo + c]!, i32[io + c]!, f32[vo + best]!, i32[io + best]!)) best = c;
  }
  return i32[io + best]!;
}

/** Index of the best logit. */
export function argmax(rt: KernelRuntime, x: Float32Array): number {
  checkNonEmpty('argmax x', x.length);
  return argmaxAt(rt, rt.stage('sampling.x', x), x.length);
}

export interface TopKAt {
  /** f32 [n] arena byte offset. */
  x: number;
  n: number;
  k: number;
  /** f32 [k] arena byte offset: the values, best first. */
  outValues: number;
  /** i32 [k] arena byte offset: their indices. */
  outIndices: number;
}

/** The k best logits and their indices, best first, written to outValues / outIndices. */
export function topKAt(rt: KernelRuntime, a: TopKAt): void {
  const n = checkInt('topK n', a.n, 0);
  checkNonEmpty('topK x', n);
  const k = checkK(a.k, n);
  checkWords(rt, 'topK x', a.x, n);
  checkWords(rt, 'topK outValues', a.outValues, k);
  checkWords(rt, 'topK outIndices', a.outIndices, k);
  const nChunks = Math.ceil(n / SELECT_CHUNK);
  const cap = Math.min(k, SELECT_CHUNK);
  const heaps = rt.scratch('sampling.topk', nChunks * cap * 8 + nChunks * 4); // u64 keys [nChunks, cap], then cursors i32 [nChunks]
  const cursors = heaps + nChunks * cap * 8;
  rt.args().ptr(a.x).i32(n).i32(SELECT_CHUNK).i32(k).ptr(heaps);
  rt.parallelFor('topk_chunks_f32', 0, nChunks, 1);
  rt.args().ptr(a.x).ptr(heaps).i32(n).i32(SELECT_CHUNK).i32(k).ptr(a.outValues).ptr(a.outIndices).ptr(cursors);
  rt.runLocal('topk_merge_f32', 0, 1);
}

/** The k best logits and their indices, best first. */
export function topK(rt: KernelRuntime, x: Float32Array, k: number): TopK {
  checkNonEmpty('topK x', x.length);
  checkK(k, x.length);
  const xo = rt.stage('sampling.x', x);
  const out = rt.scratch('sampling.topkOut', k * 8); // values f32 [k] then indices i32 [k]
  topKAt(rt, { x: xo, n: x.length, k, outValues: out, outIndices: out + k * 4 });
  const values = rt.arena.f32.slice(out >> 2, (out >> 2) + k);
  const indices = rt.arena.i32.slice((out >> 2) + k, (out >> 2) + 2 * k);
  return { values, indices };
}
