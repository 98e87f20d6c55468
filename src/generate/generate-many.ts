/**
 * Several prompts generated concurrently on one paged KV cache (continuous batching):
 *
 *   for await (const ev of generateMany(session, [idsA, idsB, idsC], { maxTokens: 32 })) {
 *     console.log(ev.index, ev.text);      // events of all prompts, interleaved step by step
 *   }                                      // the return value: one GenerateSummary per prompt
 *
 * Every step runs one forward over (a) one decode token of each sequence that has a pending
 * token and (b) prefill chunks of sequences still reading their prompt, up to the session's
 * maxStepTokens: weights are read once per step for all of them.
 *
 * NOTE(1): Admission: a prompt starts from its longest cached prefix (PagedKVCache.seqAdd; at
 *   least its last token is computed, for logits), so a shared system prompt is prefilled once.
 *   At most session.maxSeqs sequences are active; the others wait in order.
 * NOTE(2): When the pool cannot hold a step (step() returns false), the most recently admitted
 *   active sequence is preempted: its blocks are freed (full ones stay in the prefix cache, so
 *   re-admission mostly hits) and it goes back to the head of the queue, keeping what it has
 *   generated; no sequence is admitted until one finishes. A lone sequence that still does not
 *   fit ends with reason 'capacity'.
 * NOTE(3): Greedy results equal running each prompt alone (tested, f32 KV): the per-sequence
 *   math is the same and only the matmul batch differs. Sampling gives prompt i the seed
 *   `seed + i`.
 * NOTE(4): `window: { sinks, size }` bounds each sequence's memory (StreamingLLM): before a
 *   sequence's tokens are reserved for a step, applyWindow (kv/paged/window-policy.ts) discards
 *   its oldest tokens past the sinks in whole blocks and shifts the rest back, so it holds at
 *   most windowBlockBound(window, blockLen, maxStepTokens) blocks however long it generates; the
 *   next token's position is cache.nextPos(seq), as always. A copy-on-write shift that finds no
 *   blocks counts as a full pool (NOTE(2)). Admission takes prefix hits only up to
 *   windowHitLimit. With a window, a prompt longer than sinks + size is prefilled under the
 *   window chunk by chunk, so what its tokens saw depends on the chunking (maxStepTokens and the
 *   other sequences' decode tokens); a preempted sequence is recomputed that way from its history.
 */
import { applyWindow, checkWindow, windowHitLimit, type WindowOptions } from '../kv/paged/window-policy.js';
import type { PagedSession, StepItem } from '../model/paged-session.js';
import { TokenStream, type GenerateEvent, type GenerateOptions, type GenerateSummary } from './token-stream.js';

export interface ManyOptions extends GenerateOptions {
  /** Sliding window with attention sinks for every sequence (NOTE(4)); default none (unbounded). */
  window?: WindowOptions;
}

export interface ManyEvent extends GenerateEvent {
  /** Index of the prompt this token belongs to. */
  readonly index: number;
}

interface Active {
  readonly index: number;
  readonly ts: TokenStream;
  seq: number;
  /** Leading tokens of ts.history that went through the model (a window may have evicted some since). */
  computed: number;
}

export async function* generateMany(session: PagedSession, prompts: readonly (readonly number[])[], opts: ManyOptions = {}): AsyncGenerator<ManyEvent, GenerateSummary[]> {
  const lm = session.lm;
  const cache = session.cache;
  const window = opts.window === undefined ? null : checkWindow(opts.window, 'generateMany window');
  const streams = prompts.map((p, i) => new TokenStream(lm, p, opts, i));
  const queue: number[] = streams.map((_, i) => i).filter((i) => !streams[i]!.done);
  const active: Active[] = [];
  const items: StepItem[] = [];
  const owners: Active[] = [];
  // After a preemption, admit no more sequences than now run until one of them finishes:
  // re-admitting the victim at once would fail the same way forever.
  let admitLimit = session.maxSeqs;
  try {
    while (queue.length > 0 || active.length > 0) {
      if (streams.some((ts) => !ts.done && ts.aborted())) break;
      while (active.length < admitLimit && queue.length > 0) {
        const index = queue.shift()!;
        const ts = streams[index]!;
        const hits = window === null ? {} : { maxHitTokens: windowHitLimit(window, ts.history.length) };
        const { seq, cachedTokens } = cache.seqAdd(ts.history, hits);
        active.push({ index, ts, seq, computed: cachedTokens });
      }
      planStep(session.maxStepTokens, active, items, owners);
      if (!slideWindows(session, window, items) || !session.step(items)) {
        if (active.length === 1) {
          cache.seqFree(active[0]!.seq);
          active.pop()!.ts.end('capacity');
        } else {
          const victim = active.pop()!;
          cache.seqFree(victim.seq);
          queue.unshift(victim.index);
          admitLimit = active.length;
        }
        continue;
      }
      for (let i = 0; i < items.length; i++) {
        const a = owners[i]!;
        a.computed += items[i]!.ids.length;
        if (!items[i]!.logits) continue;
        const ev = a.ts.push(session.logitsOf(i));
        if (ev) yield { index: a.index, ...ev };
      }
      for (let i = active.length - 1; i >= 0; i--) {
        if (!active[i]!.ts.done) continue;
        cache.seqFree(active[i]!.seq);
        active.splice(i, 1);
        admitLimit = session.maxSeqs;
      }
      await Promise.resolve(); // let abort listeners run between steps
    }
  } finally {
    for (const a of active) cache.seqFree(a.seq);
  }
  return streams.map((ts) => ts.summary());
}

/** Apply the window to every item's sequence before its step (NOTE(4)); false when the pool lacks blocks. */
function slideWindows(session: PagedSession, window: WindowOptions | null, items: readonly StepItem[]): boolean {
  if (window === null) return true;
  for (let i = 0; i < items.length; i++) {
    if (!applyWindow(session.cache, items[i]!.seq, window, items[i]!.ids.length)) return false;
  }
  return true;
}

/**
 * Fill `items` for one step: first every sequence's pending decode token (one each, oldest
 * first), then prompt chunks, while the step has room (NOTE(1) of the file). `owners[i]` is the
 * sequence of items[i].
 */
function planStep(budget: number, active: readonly Active[], items: StepItem[], owners: Active[]): void {
  items.length = 0;
  owners.length = 0;
  for (const a of active) {
    // One uncomputed token (the last sampled one, or a prompt's last token after a prefix hit).
    const pending = a.ts.history.length - a.computed;
    if (budget === 0) break;
    if (pending !== 1) continue;
    items.push({ seq: a.seq, ids: a.ts.history.slice(a.computed), logits: true });
    owners.push(a);
    budget--;
  }
  for (const a of active) {
    const pending = a.ts.history.length - a.computed;
    if (budget === 0) break;
    if (pending <= 1) continue;
    const n = Math.min(budget, pending);
    items.push({ seq: a.seq, ids: a.ts.history.slice(a.computed, a.computed + n), logits: n === pending });
    owners.push(a);
    budget -= n;
  }
}
