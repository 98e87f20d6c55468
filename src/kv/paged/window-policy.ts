/**
 * Sliding window with attention sinks (StreamingLLM, Xiao et al. 2023) over a PagedKVCache: a
 * sequence keeps its first `sinks` tokens and its most recent `size` tokens, so generation can run
 * past the pool size indefinitely in constant memory. The edit is llama.cpp's context shift:
 *
 *   before the next step of n tokens (token index i = i-th token in position order):
 *     [ sinks 0..S-1 | discarded S..c-1 | kept c..len-1 ] + n
 *   seqRemove(seq, pos(S), pos(c))                      blocks wholly inside [S, c) return to the pool
 *   seqShift(seq, pos(c), Infinity, pos(S) - pos(c))    the kept tokens close the gap; keys re-rotated
 *   after:
 *     [ sinks | kept ] at contiguous positions; the step's tokens follow at cache.nextPos(seq)
 *
 * NOTE(1): The rule. over = len + n - (S + W). When over <= 0 nothing happens. Otherwise the cut c
 *   is the largest cut point with c - S <= over, where the cut points are the indices c in
 *   (S, len] at which a block starts (token c is the first of this sequence's tokens in its block)
 *   and c = len itself. No cut point in range, or c - S < minDiscard with c < len: nothing happens
 *   this step. So the last W tokens (the step's own included) are always kept, only whole blocks
 *   are discarded (a partial block only when everything past the sinks goes, c = len), and the
 *   tokens past the sinks after the step number at most max(W + minDiscard + L - 2, n)
 *   (L = blockLen; W + L - 1 with the default minDiscard 1): windowBlockBound gives the blocks.
 * NOTE(2): Sinks that end inside a block (S % L != 0): that block keeps the sinks and loses its
 *   later tokens on the first eviction (a hole of L - S % L slots: only the last block takes
 *   appends, so it is refilled only when everything past the sinks goes at once); later tokens
 *   start in blocks of their own, so every later eviction frees whole blocks. The hole costs no block (the sinks need that block anyway); pass
 *   sinks rounded up to a multiple of L to keep those tokens instead, at no extra memory.
 * NOTE(3): Capacity is a value (DESIGN decision 6): seqShift must copy blocks it rotates that
 *   other sequences share (copy-on-write). The plan counts those copies and the blocks seqRemove
 *   frees (those this sequence alone held); when the pool cannot supply the copies applyWindow
 *   returns false before touching anything.
 * NOTE(4): Positions are assigned within the cache (StreamingLLM): for a sequence that starts at 0
 *   they stay below S plus that bound, so no RoPE position grows without bound. Every eviction
 *   re-rotates the kept keys once, so a key is rotated about W / max(minDiscard, L) times in its
 *   life; with quantized K each rotation re-quantizes and the NMSE of old keys grows about
 *   linearly with that count (q8_0, L 4, W 64: 7e-4 for the oldest block after ~16 rotations, vs
 *   6e-5 for one). minDiscard trades memory (up to minDiscard more tokens) for fewer rotations,
 *   as llama.cpp's context shift does by discarding half the context at once.
 * NOTE(5): The prefix cache stays truthful (paged-cache NOTE(6)): the first eviction ends the
 *   sequence's hash chain (no block of it is registered afterwards), rotated blocks leave the
 *   index, removed ones keep their entries (their bytes did not change), sinks are never edited.
 *   windowHitLimit caps the prefix hits a windowed sequence may take at admission.
 * NOTE(6): The layout is read from view(0, seq) (one segment per run, in position and storage
 *   order, runs of one block adjacent) and the block of a segment from its K offset. Nothing is
 *   allocated unless an eviction is planned (about once per L decoded tokens), and nothing is
 *   read while the sequence is under S + W.
 */
import { ConfigError, assert, checkInt } from '../../core/errors.js';
import type { PagedKVCache } from './paged-cache.js';

/** Keep the first `sinks` tokens and the last `size` tokens of a sequence. */
export interface WindowOptions {
  /** Leading tokens kept forever (StreamingLLM's attention sinks; 4 in the paper). >= 0. */
  readonly sinks: number;
  /** Most recent tokens kept (the step's new tokens included). >= 1. */
  readonly size: number;
  /**
   * An eviction waits until it can discard at least this many tokens (or everything past the
   * sinks): fewer, larger shifts for up to minDiscard more tokens held (NOTE(4)). Default 1.
   */
  readonly minDiscard?: number;
}

/** One planned eviction (NOTE(1)): token indices [sinks, sinks + nDiscard) go. */
export interface WindowPlan {
  /** Tokens discarded (c - S). */
  readonly nDiscard: number;
  /** seqRemove range [p0, p1) (p1 = Infinity when every token past the sinks goes). */
  readonly p0: number;
  readonly p1: number;
  /** seqShift(seq, p1, Infinity, delta) afterwards; 0 when nothing is left to shift. */
  readonly delta: number;
  /** Blocks the removal returns to the pool (held by this sequence alone). */
  readonly freedBlocks: number;
  /** Shared blocks the shift must copy (copy-on-write). */
  readonly copies: number;
}

/** Throws ConfigError naming the bad field unless `window` is a valid WindowOptions (allocates nothing). */
function validate(window: unknown, what: string): asserts window is WindowOptions {
  if (typeof window !== 'object' || window === null) throw new ConfigError(what, 'an object { sinks, size, minDiscard? }', window);
  const w = window as Partial<WindowOptions>;
  checkInt(`${what} sinks (leading tokens kept)`, w.sinks, 0);
  checkInt(`${what} size (recent tokens kept)`, w.size, 1);
  if (w.minDiscard !== undefined) checkInt(`${what} minDiscard (fewest tokens an eviction discards)`, w.minDiscard, 1);
}

/** Validates a window (ConfigError naming the bad field) and fills the defaults. */
export function checkWindow(window: unknown, what = 'window'): Required<WindowOptions> {
  validate(window, what);
  return { sinks: window.sinks, size: window.size, minDiscard: window.minDiscard ?? 1 };
}

/**
 * Most blocks one sequence holds under `window` when every step adds at most `stepTokens` tokens
 * and the sequence was only ever appended to, admitted from a prefix hit and edited by
 * applyWindow: ceil(S / L) + ceil(max(W + minDiscard + L - 2, stepTokens) / L) (NOTE(1), NOTE(2)).
 */
export function windowBlockBound(window: WindowOptions, blockLen: number, stepTokens: number): number {
  const { sinks, size, minDiscard } = checkWindow(window);
  const L = checkInt('blockLen', blockLen, 1);
  const n = checkInt('stepTokens', stepTokens, 1);
  return Math.ceil(sinks / L) + Math.ceil(Math.max(size + minDiscard + L - 2, n) / L);
}

/**
 * Most prefix-hit tokens a windowed sequence should take for `historyLength` tokens (NOTE(5)):
 * all but the last when the whole history fits in the window (computing it would evict nothing,
 * so cached K/V are what it would compute), else only the sinks (past them, the window decides
 * what each token saw, and a hit computed without it would make the result depend on what
 * happened to be cached).
 */
export function windowHitLimit(window: WindowOptions, historyLength: number): number {
  const { sinks, size } = checkWindow(window);
  const all = Math.max(0, checkInt('historyLength', historyLength, 0) - 1);
  return historyLength <= sinks + size ? all : Math.min(all, sinks);
}

/** Block id of a segment from its K offset in layer 0 (block-storage layout). */
function blockOf(cache: PagedKVCache, kBase: number, kOffsetBytes: number): number {
  return Math.floor((kOffsetBytes - kBase) / cache.storage.kBlockBytes);
}

/**
 * What applyWindow(cache, seq, window, nNext) would do, without changing anything: null when
 * nothing is to be discarded before a step of nNext tokens (NOTE(1)).
 */
export function planWindow(cache: PagedKVCache, seq: number, window: WindowOptions, nNext = 1): WindowPlan | null {
  validate(window, 'window');
  const S = window.sinks;
  const W = window.size;
  const minDiscard = window.minDiscard ?? 1;
  checkInt('nNext (tokens of the next step)', nNext, 0);
  const len = cache.seqLen(seq);
  const over = len + nNext - (S + W);
  if (over <= 0 || len <= S) return null;
  const limit = S + over; // largest admissible cut
  const segs = cache.view(0, seq).segments;
  const kBase = cache.storage.kOffset(0, 0, 0);
  let cut = -1;
  let posCut = 0;
  let posS = 0;
  let idx = 0;
  let prev = -1;
  for (let r = 0; r < segs.length; r++) {
    const seg = segs[r]!;
    const b = blockOf(cache, kBase, seg.kOffsetBytes);
    if (S >= idx && S < idx + seg.nTokens) posS = seg.pos0 + (S - idx);
    if (b !== prev && idx > S && idx <= limit) {
      cut = idx;
      posCut = seg.pos0;
    }
    idx += seg.nTokens;
    prev = b;
  }
  assert(idx === len, `sequence ${seq}: view holds ${idx} tokens, seqLen ${len}`);
  if (len <= limit) cut = len;
  if (cut < 0 || (cut - S < minDiscard && cut < len)) return null;
  // Blocks whose first token lies in [S, cut) lie wholly inside it (cut is a block start or len).
  const pool = cache.pool;
  let freedBlocks = 0;
  let copies = 0;
  idx = 0;
  prev = -1;
  for (let r = 0; r < segs.length; r++) {
    const b = blockOf(cache, kBase, segs[r]!.kOffsetBytes);
    if (b !== prev) {
      if (idx >= S && idx < cut && pool.refCount(b) === 1) freedBlocks++;
      if (idx >= cut && pool.refCount(b) > 1) copies++;
    }
    idx += segs[r]!.nTokens;
    prev = b;
  }
  const whole = cut === len;
  return { nDiscard: cut - S, p0: posS, p1: whole ? Infinity : posCut, delta: whole ? 0 : posS - posCut, freedBlocks, copies };
}

/**
 * Evict the oldest tokens past the sinks of `seq` so that a step of nNext tokens keeps the
 * sequence inside the window (NOTE(1)); call it before reserving that step. Returns true when
 * done (or nothing was needed), false when the pool cannot supply the copy-on-write copies the
 * shift needs: then nothing changed (NOTE(3)). Throws ConfigError when the cache has no RoPE
 * config (keys could not be re-rotated) and StateError when seq has an open reservation.
 */
export function applyWindow(cache: PagedKVCache, seq: number, window: WindowOptions, nNext = 1): boolean {
  if (cache.config.rope === null) throw new ConfigError('sliding window: the cache config rope', 'rope parameters (kept keys are re-rotated)', 'none');
  const plan = planWindow(cache, seq, window, nNext);
  if (plan === null) return true;
  if (plan.copies > cache.availableBlocks + plan.freedBlocks) return false;
  cache.seqRemove(seq, plan.p0, plan.p1);
  if (plan.delta !== 0) {
    const ok = cache.seqShift(seq, plan.p1, Infinity, plan.delta);
    assert(ok, `sequence ${seq}: the window's shift lacked blocks the plan counted (${plan.copies} copies)`);
  }
  return true;
}
