/**
 * Reference attention over a KVView: "the oracle" every faster kernel is checked against.
 *
 *   for each query token i (position qPos) and query head h (kv head g = floor(h / group)):
 *     s_k   = dot(q[i, h], K[g, k]) * scale          for every visible key k (mask: types.ts NOTE(2))
 *     m     = max_k s_k
 *     out   = sum_k exp(s_k - m) V[g, k] / sum_k exp(s_k - m)
 *     lse   = m + log(sum_k exp(s_k - m))
 *
 * NOTE(1): All arithmetic is float64 (JS numbers); only the final out / lse are rounded to f32.
 *   The max subtraction keeps exp() from overflowing (a defect of the original ktransformers code).
 * NOTE(2): K/V are read in their stored dtype by decoding ONE row at a time into a headDim scratch
 *   (the KVView address rule, kv/types.ts); the cache is never expanded to f32 as a whole. The only
 *   O(nKeys) scratch is the score buffer of one kv-head group, [group, nKeys] float64.
 * NOTE(3): Two passes per (query token, kv head): scores (K rows decoded once and shared by the
 *   `group` query heads of that kv head, GQA), then the weighted V sum. Plain and obviously
 *   correct rather than fast: the WASM kernels are the fast path.
 * NOTE(4): Segments are visited in the order given; the mask is by position, so the order only
 *   affects float rounding, never which keys are seen.
 */
import { checkRowLength, decodeRow, rowSizeBytes } from '../../core/dtype.js';
import { ConfigError, OutOfRangeError, ShapeError, checkInt } from '../../core/errors.js';
import type { KVView } from '../../kv/types.js';
import { resolveAttentionOptions, type AttentionOptions, type AttentionResult, type BatchAttentionResult } from '../types.js';

/** Scratch and read-only inputs of one attention call (one batch row). */
interface Job {
  readonly view: KVView;
  readonly q: Float32Array; // [.., nTokens, nHeads, headDim]
  readonly qOff: number; // element offset of (token 0, head 0) of this row in q
  readonly nHeads: number;
  readonly group: number; // query heads per kv head
  readonly scale: number;
  readonly window: number;
  readonly row: Float64Array; // [headDim] one decoded K or V row
  readonly scores: Float64Array; // [group, view.nTokens] scores of the current kv-head group
  readonly maxScore: Float64Array; // [group]
  readonly acc: Float64Array; // [group, headDim] running sum of p * V
  readonly sumP: Float64Array; // [group]
}

/**
 * Attention of `positions.length` query tokens of one sequence over the keys in `view`.
 * q: [nTokens, nHeads, headDim]; positions: [nTokens]. Returns out [nTokens, nHeads, headDim]
 * and lse [nTokens, nHeads]. Throws ShapeError / ConfigError / DTypeError / OutOfRangeError on
 * bad input (see checkView, checkPositions).
 */
export function attention(
  q: Float32Array,
  positions: ArrayLike<number>,
  nHeads: number,
  view: KVView,
  opts?: AttentionOptions,
): AttentionResult {
  const nTokens = positions.length;
  checkView(view, nHeads, 'view');
  const { scale, window } = resolveAttentionOptions(opts, view.headDim);
  const expected = nTokens * nHeads * view.headDim;
  if (q.length !== expected) {
    throw new ShapeError(`q length ([nTokens, nHeads, headDim] = [${nTokens}, ${nHeads}, ${view.headDim}])`, expected, q.length);
  }
  checkPositions(positions, 'positions');
  const out = new Float32Array(expected); // [nTokens, nHeads, headDim]
  const lse = new Float32Array(nTokens * nHeads); // [nTokens, nHeads]
  const job = makeJob(view, q, 0, nHeads, scale, window);
  attendRow(job, positions, 0, nTokens, out, 0, lse, 0);
  return { out, lse };
}

/**
 * Batched attention: row b attends over views[b]. All rows share nTokens, nHeads, headDim and
 * nKvHeads; their caches may have different lengths (and different dtypes / layouts).
 * q: [batch, nTokens, nHeads, headDim]; positions: [batch, nTokens].
 */
export function attentionBatch(
  q: Float32Array,
  positions: ArrayLike<number>,
  nHeads: number,
  views: readonly KVView[],
  opts?: AttentionOptions,
): BatchAttentionResult {
  const batch = views.length;
  if (batch < 1) throw new ConfigError('attentionBatch views', 'at least one view (one per batch row)', batch);
  if (positions.length % batch !== 0) {
    throw new ShapeError(`positions length ([batch, nTokens] with batch = ${batch})`, `a multiple of ${batch}`, positions.length);
  }
  const nTokens = positions.length / batch;
  const { headDim, nKvHeads } = views[0]!;
  for (let b = 0; b < batch; b++) {
    const v = views[b]!;
    checkView(v, nHeads, `views[${b}]`);
    if (v.headDim !== headDim) throw new ShapeError(`views[${b}].headDim`, headDim, v.headDim);
    if (v.nKvHeads !== nKvHeads) throw new ConfigError(`views[${b}].nKvHeads`, nKvHeads, v.nKvHeads);
  }
  const { scale, window } = resolveAttentionOptions(opts, headDim);
  const rowElems = nTokens * nHeads * headDim;
  if (q.length !== batch * rowElems) {
    throw new ShapeError(`q length ([batch, nTokens, nHeads, headDim] = [${batch}, ${nTokens}, ${nHeads}, ${headDim}])`, batch * rowElems, q.length);
  }
  checkPositions(positions, 'positions');
  const out = new Float32Array(batch * rowElems); // [batch, nTokens, nHeads, headDim]
  const lse = new Float32Array(batch * nTokens * nHeads); // [batch, nTokens, nHeads]
  for (let b = 0; b < batch; b++) {
    const job = makeJob(views[b]!, q, b * rowElems, nHeads, scale, window);
    attendRow(job, positions, b * nTokens, nTokens, out, b * rowElems, lse, b * nTokens * nHeads);
  }
  return { out, lse };
}

function makeJob(view: KVView, q: Float32Array, qOff: number, nHeads: number, scale: number, window: number): Job {
  const group = nHeads / view.nKvHeads;
  const headDim = view.headDim;
  return {
    view, q, qOff, nHeads, group, scale, window,
    row: new Float64Array(headDim),
    scores: new Float64Array(group * view.nTokens),
    maxScore: new Float64Array(group),
    acc: new Float64Array(group * headDim),
    sumP: new Float64Array(group),
  };
}

/** One batch row: every query token x every kv head; writes out/lse at the given offsets. */
function attendRow(
  job: Job, positions: ArrayLike<number>, posOff: number, nTokens: number,
  out: Float32Array, outOff: number, lse: Float32Array, lseOff: number,
): void {
  const { view, nHeads, group } = job;
  const headDim = view.headDim;
  for (let i = 0; i < nTokens; i++) {
    const qPos = positions[posOff + i]!;
    for (let g = 0; g < view.nKvHeads; g++) {
      const nVisible = scoreKeys(job, i, g, qPos);
      if (nVisible > 0) sumValues(job, g, qPos);
      for (let j = 0; j < group; j++) {
        const h = g * group + j;
        const o = outOff + (i * nHeads + h) * headDim;
        if (nVisible === 0) {
          // Fully masked: the softmax is over nothing; out = 0 and lse = log(0) by contract.
          out.fill(0, o, o + headDim);
          lse[lseOff + i * nHeads + h] = -Infinity;
          continue;
        }
        const sum = job.sumP[j]!;
        for (let d = 0; d < headDim; d++) out[o + d] = job.acc[j * headDim + d]! / sum;
        lse[lseOff + i * nHeads + h] = job.maxScore[j]! + Math.log(sum);
      }
    }
  }
}

function visible(kPos: number, qPos: number, window: number): boolean {
  return kPos <= qPos && qPos - kPos < window;
}

/**
 * Pass 1 for query token i and kv head g: scores[j, k] for the group's query heads j and
 * maxScore[j]. Masked keys get -Infinity (never read by pass 2). Returns the visible count.
 */
function scoreKeys(job: Job, i: number, g: number, qPos: number): number {
  const { view, q, row, scores, maxScore, group, scale } = job;
  const { headDim, nTokens: nKeys, bytes } = view;
  maxScore.fill(-Infinity);
  let key = 0;
  let nVisible = 0;
  for (const seg of view.segments) {
    for (let t = 0; t < seg.nTokens; t++, key++) {
      if (!visible(seg.pos0 + t, qPos, job.window)) {
        for (let j = 0; j < group; j++) scores[j * nKeys + key] = -Infinity;
        continue;
      }
      nVisible++;
      decodeRow(view.kDtype, bytes, seg.kOffsetBytes + t * view.kTokenStrideBytes + g * view.kHeadStrideBytes, headDim, row, 0);
      for (let j = 0; j < group; j++) {
        const qo = job.qOff + (i * job.nHeads + g * group + j) * headDim;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[qo + d]! * row[d]!;
        const s = dot * scale;
        scores[j * nKeys + key] = s;
        if (s > maxScore[j]!) maxScore[j] = s;
      }
    }
  }
  return nVisible;
}

/** Pass 2: acc[j] = sum_k p[j, k] V[k], sumP[j] = sum_k p[j, k], with p = exp(s - max). */
function sumValues(job: Job, g: number, qPos: number): void {
  const { view, row, scores, maxScore, acc, sumP, group } = job;
  const { headDim, nTokens: nKeys, bytes } = view;
  acc.fill(0);
  sumP.fill(0);
  let key = 0;
  for (const seg of view.segments) {
    for (let t = 0; t < seg.nTokens; t++, key++) {
      if (!visible(seg.pos0 + t, qPos, job.window)) continue;
      decodeRow(view.vDtype, bytes, seg.vOffsetBytes + t * view.vTokenStrideBytes + g * view.vHeadStrideBytes, headDim, row, 0);
      for (let j = 0; j < group; j++) {
        const p = Math.exp(scores[j * nKeys + key]! - maxScore[j]!);
        sumP[j] += p;
        for (let d = 0; d < headDim; d++) acc[j * headDim + d] += p * row[d]!;
      }
    }
  }
}

/**
 * Validate a view against the contract (kv/types.ts) before any byte is read: counts,
 * GQA divisibility, row lengths for the dtypes, segment totals, and every segment's last
 * row inside `bytes` (a view that points past its bytes is a caller bug we report, not read).
 */
export function checkView(view: KVView, nHeads: number, what: string): void {
  checkInt('nHeads', nHeads, 1);
  checkInt(`${what}.nKvHeads`, view.nKvHeads, 1);
  checkInt(`${what}.headDim`, view.headDim, 1);
  if (nHeads % view.nKvHeads !== 0) {
    throw new ConfigError(`nHeads (query heads) for ${what}.nKvHeads = ${view.nKvHeads}`, `a multiple of ${view.nKvHeads}`, nHeads);
  }
  for (const k of ['kTokenStrideBytes', 'kHeadStrideBytes', 'vTokenStrideBytes', 'vHeadStrideBytes'] as const) {
    checkInt(`${what}.${k}`, view[k], 0);
  }
  checkRowLength(view.kDtype, view.headDim, `${what} K headDim`);
  checkRowLength(view.vDtype, view.headDim, `${what} V headDim`);
  const kRow = rowSizeBytes(view.kDtype, view.headDim);
  const vRow = rowSizeBytes(view.vDtype, view.headDim);
  let total = 0;
  view.segments.forEach((seg, s) => {
    checkInt(`${what}.segments[${s}].nTokens`, seg.nTokens, 0);
    checkInt(`${what}.segments[${s}].pos0`, seg.pos0, 0);
    total += seg.nTokens;
    if (seg.nTokens === 0) return;
    const kEnd = seg.kOffsetBytes + (seg.nTokens - 1) * view.kTokenStrideBytes + (view.nKvHeads - 1) * view.kHeadStrideBytes + kRow;
    const vEnd = seg.vOffsetBytes + (seg.nTokens - 1) * view.vTokenStrideBytes + (view.nKvHeads - 1) * view.vHeadStrideBytes + vRow;
    const inside = (off: number, end: number) => Number.isInteger(off) && off >= 0 && end <= view.bytes.length;
    if (!inside(seg.kOffsetBytes, kEnd) || !inside(seg.vOffsetBytes, vEnd)) {
      throw new OutOfRangeError(`${what}.segments[${s}] rows`, `inside the ${view.bytes.length}-byte view`, `K bytes [${seg.kOffsetBytes}, ${kEnd}), V bytes [${seg.vOffsetBytes}, ${vEnd})`);
    }
  });
  if (total !== view.nTokens) throw new ShapeError(`${what}.nTokens (sum of segment nTokens)`, total, view.nTokens);
}

/** Query positions must be integers >= 0 (they are compared with key positions). */
export function checkPositions(positions: ArrayLike<number>, what: string): void {
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i];
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0) {
      throw new OutOfRangeError(`${what}[${i}]`, 'an integer >= 0', p);
    }
  }
}
