/**
 * Driving a PagedSession step by step for the paged benchmarks: chunked prefill of one sequence
 * and greedy decode steps of many. (generateMany does this with scheduling and sampling; these
 * benchmarks time the engine's steps themselves.)
 */
import type { PagedSession } from '../src/model/paged-session.js';

/** Run ids through `seq` in chunks of at most session.maxStepTokens; returns the greedy next token. */
export function prefillSeq(session: PagedSession, seq: number, ids: ArrayLike<number>): number {
  const chunk = session.maxStepTokens;
  let next = -1;
  for (let i = 0; i < ids.length; i += chunk) {
    const part = Array.prototype.slice.call(ids, i, Math.min(ids.length, i + chunk)) as number[];
    const last = i + chunk >= ids.length;
    if (!session.step([{ seq, ids: part, logits: last }])) throw new Error(`pool full while prefilling sequence ${seq}`);
    if (last) next = argmax(session.logitsOf(0));
  }
  return next;
}

/** One decode step for every sequence (token i goes to seqs[i]); returns the greedy next tokens. */
export function decodeStep(session: PagedSession, seqs: readonly number[], tokens: number[]): number[] {
  const items = seqs.map((seq, i) => ({ seq, ids: [tokens[i]!], logits: true }));
  if (!session.step(items)) throw new Error('pool full while decoding');
  return seqs.map((_, i) => argmax(session.logitsOf(i)));
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}
