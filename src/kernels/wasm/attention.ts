/**
 * JS side of the WASM attention kernels (assembly/attention*.ts): the same contract as the
 * reference (ref/attention.ts, types.ts), computed in f32 SIMD over the cache's own bytes.
 *
 *   wasmAttention(rt, q, positions, nHeads, view, opts)     -> { out, lse }      (copies q in, results out)
 *   wasmAttentionAt(rt, qOff, outOff, lseOff, positions, nHeads, view, opts)  (arena offsets: no copies)
 *   wasmAttentionBatch(rt, q, positions, nHeads, views, opts) -> { out, lse }  (one row per view)
 *   wasmAttentionManyAt(rt, calls, nHeads, opts)            (many sequences' calls, one dispatch)
 *
 * NOTE(1): The work plan (planAttention) depends only on the shapes: query tiles of `tileTokens`
 *   tokens x the group of query heads of one kv head (at most MAX_TILE_ROWS rows), the tiles of
 *   `kvPerItem` kv heads per item (decode: all kv heads of a token read together), and key chunks
 *   of a fixed size when a call has too few tiles to keep threads busy (decode). The thread count
 *   only decides who runs which item, so 1 and N threads give bit-identical results.
 * NOTE(2): A call with one key chunk runs one kernel (items accumulate straight into `out`); with
 *   several, each item writes a partial (acc, max, sum) record and attention_merge combines the
 *   chunks of each (token, head) in chunk order with the exact LSE merge.
 * NOTE(3): Scores are in log2 units (q is multiplied by scale * log2 e once per call), weights are
 *   2^(s - max) by a polynomial (assembly/attention-math.ts), accumulation is f32. For q8_0 / q4_0
 *   K the query is quantized per 32-block to int16 and scores use exact integer dot products (as
 *   ggml's vec_dot_q8_0_q8_0, with a wider query); PARITY_TOLERANCES.attention covers that rounding.
 * NOTE(4): Once warm, a call allocates no arena memory: the segment table, visible ranges, per-slot
 *   scratch and partial records (and the many form's call table and prefix sums) are named
 *   runtime scratch buffers (runtime.ts NOTE(2)).
 * NOTE(5): Positions (query and key) must be below 2^31 - 1: the kernels compare them as i32.
 * NOTE(6): The many form (a batched decode step: one call per sequence, views of any lengths,
 *   paged or dense, any dtypes) runs the union of the calls' work items as ONE parallel-for
 *   (attention_multi) and, when any call chunks its keys, one merge (attention_merge_multi). Each
 *   call keeps exactly its own plan, tables and globals (a table of per-call argument blocks and
 *   prefix sums of the item counts map a dispatch item to (call, local item)); only the grain and
 *   the scratch slots (one size: the largest call's) are shared, and results never depend on
 *   which slot or thread runs an item: the output is bit-identical to the calls one by one.
 */
import { DTYPES, type DType } from '../../core/dtype.js';
import { ConfigError, OutOfRangeError, ShapeError } from '../../core/errors.js';
import type { KVView } from '../../kv/types.js';
import { checkPositions, checkView } from '../ref/attention.js';
import { resolveAttentionOptions, type AttentionCall, type AttentionOptions, type AttentionResult, type BatchAttentionResult } from '../types.js';
import type { KernelRuntime } from './runtime.js';

/** Dtype codes of assembly/attention-rows.ts (DT_*). */
const DTYPE_CODE: Readonly<Record<DType, number>> = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4 };
/** Keys per block in the kernels (assembly/attention-score.ts BLOCK_KEYS). */
const BLOCK_KEYS = 64;
/** Query rows (tokens x group heads) per tile: K/V rows are decoded once per tile. */
const MAX_TILE_ROWS = 64;
/** Smallest key chunk worth a work item of its own. */
const MIN_CHUNK_KEYS = 256;
/** Key chunking stops once a call has this many items. */
const TARGET_ITEMS = 64;
/** Items an item holding several kv heads must still leave (so threads stay busy at short contexts). */
const MIN_ITEMS = 16;
/** Scratch slots: items are handed out in at most this many grains (one slot per grain). */
const MAX_GRAINS = 64;
/** Multiply-adds below which a call runs on the calling thread only. */
const PARALLEL_MIN_WORK = 1 << 16;
/** The same for a merge (multiply-adds of its rows x chunks): right after the items the workers
 *  are still spinning, so waking them costs ~1 µs, and a decode merge at 8k keys is ~25 µs. */
const PARALLEL_MIN_MERGE = 1 << 13;
/** NOTE(5). */
const MAX_POSITION = 2 ** 31 - 2;
const LOG2E = Math.LOG2E;

/** Number of buffers in a scratch slot (assembly/attention.ts oQs .. oPos). */
const SLOT_BUFFERS = 14;

/** The shape-only work plan of one call (NOTE(1)); byte sizes of the scratch it needs. */
export interface AttentionPlan {
  tileTokens: number;
  nTiles: number;
  /** kv heads per item (NOTE(1)). */
  kvPerItem: number;
  nChunks: number;
  chunkKeys: number;
  nItems: number;
  /** One chunk and headDim % 4 == 0: items write `out` directly, no merge. */
  direct: boolean;
  /** Integer scores (q8_0 / q4_0 K). */
  intK: boolean;
  grain: number;
  nSlots: number;
  slotBytes: number;
  /** Byte offsets of the slot's buffers, in the kernel's order (assembly/attention.ts oQs .. oPos). */
  readonly slotLayout: Int32Array;
  /** Bytes of all the call's partial records (0 in direct mode). */
  partialBytes: number;
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

function newPlan(): AttentionPlan {
  return {
    tileTokens: 0, nTiles: 0, kvPerItem: 1, nChunks: 0, chunkKeys: 0, nItems: 0, direct: false, intK: false, grain: 1,
    nSlots: 0, slotBytes: 0, slotLayout: new Int32Array(SLOT_BUFFERS), partialBytes: 0,
  };
}

/** The plan run() fills on every call, and the slot sizes fillPlan works with (no allocation per call). */
const callPlan = newPlan();
const slotSizes = new Int32Array(SLOT_BUFFERS);

/** The work plan for nTokens queries over a view with nKeys keys (NOTE(1)), as a new object. */
export function planAttention(nTokens: number, nHeads: number, nKvHeads: number, headDim: number, kDtype: DType, nKeys: number): AttentionPlan {
  return fillPlan(newPlan(), nTokens, nHeads, nKvHeads, headDim, kDtype, nKeys);
}

function fillPlan(p: AttentionPlan, nTokens: number, nHeads: number, nKvHeads: number, headDim: number, kDtype: DType, nKeys: number): AttentionPlan {
  const group = nHeads / nKvHeads;
  const hdPad = roundUp(headDim, 4);
  p.tileTokens = Math.max(1, Math.min(nTokens, Math.floor(MAX_TILE_ROWS / group)));
  p.nTiles = Math.ceil(nTokens / p.tileTokens);
  const rows = p.tileTokens * group;
  p.kvPerItem = kvHeadsPerItem(p.nTiles, nKvHeads, rows, nKeys);
  const base = p.nTiles * (nKvHeads / p.kvPerItem);
  let nChunks = 1;
  if (nKeys > MIN_CHUNK_KEYS && base < TARGET_ITEMS) {
    nChunks = Math.min(Math.ceil(nKeys / MIN_CHUNK_KEYS), Math.ceil(TARGET_ITEMS / base));
  }
  p.chunkKeys = Math.max(BLOCK_KEYS, roundUp(Math.ceil(nKeys / nChunks), BLOCK_KEYS));
  p.nChunks = Math.max(1, Math.ceil(nKeys / p.chunkKeys));
  p.nItems = base * p.nChunks;
  p.direct = p.nChunks === 1 && hdPad === headDim;
  p.intK = DTYPES[kDtype].quantized;
  const pairRows = roundUp(rows, 2); // q rows are stored in pairs (assembly/attention-score.ts)
  const nBlocks = p.intK ? hdPad / 32 : 0;
  // Bytes of each slot buffer, in the kernel's order: qs qi qd S m l rows kf ki kd vf kr vr pos
  // (qs .. rows: one copy per kv head of the item; kf .. vf: rows of all its kv heads side by side).
  const sz = slotSizes;
  const heads = p.kvPerItem;
  sz[0] = heads * pairRows * hdPad * 4;
  sz[1] = p.intK ? heads * pairRows * hdPad * 2 : 0;
  sz[2] = heads * rows * nBlocks * 4;
  sz[3] = heads * rows * BLOCK_KEYS * 4;
  sz[4] = sz[5] = heads * rows * 4;
  sz[6] = heads * rows * 16;
  sz[7] = p.intK ? 0 : heads * BLOCK_KEYS * hdPad * 4;
  sz[8] = p.intK ? heads * BLOCK_KEYS * hdPad * 2 : 0;
  sz[9] = heads * nBlocks * BLOCK_KEYS * 4;
  sz[10] = heads * BLOCK_KEYS * hdPad * 4;
  sz[11] = sz[12] = sz[13] = BLOCK_KEYS * 4;
  let at = 0;
  for (let i = 0; i < SLOT_BUFFERS; i++) {
    p.slotLayout[i] = at;
    at += roundUp(sz[i]!, 64);
  }
  p.slotBytes = at;
  p.grain = Math.ceil(p.nItems / MAX_GRAINS);
  p.nSlots = Math.ceil(p.nItems / p.grain);
  // One record (acc, m, l of a kv head's tile rows) per (tile, kv head, chunk): kvPerItem per item.
  p.partialBytes = p.direct ? 0 : p.nTiles * nKvHeads * p.nChunks * (rows * hdPad + 2 * rows) * 4;
  return p;
}

/**
 * kv heads per item: the most (a divisor of nKvHeads) whose tiles together stay within
 * MAX_TILE_ROWS rows while the call keeps MIN_ITEMS items (counting full key chunks). Reading a
 * token's heads together fetches each cache line of a `bshd` cache once (assembly/attention.ts).
 */
function kvHeadsPerItem(nTiles: number, nKvHeads: number, rows: number, nKeys: number): number {
  const chunks = Math.max(1, Math.floor(nKeys / MIN_CHUNK_KEYS));
  for (let h = nKvHeads; h > 1; h--) {
    if (nKvHeads % h === 0 && h * rows <= MAX_TILE_ROWS && nTiles * (nKvHeads / h) * chunks >= MIN_ITEMS) return h;
  }
  return 1;
}

/**
 * Every buffer object an arena's memory has had while a call here looked at it. A shared memory
 * gets a new buffer object when it grows (and this module's own scratch may grow it), while a
 * caller's view over the old object still addresses the same memory: such views stay accepted.
 */
const knownBuffers = new WeakMap<ArrayBufferLike, WebAssembly.Memory>();

/** Throws ConfigError unless the view's bytes are this runtime's arena memory (offsets are arena offsets). */
function checkViewMemory(rt: KernelRuntime, view: KVView, what: string): void {
  const memory = rt.arena.memory;
  knownBuffers.set(memory.buffer, memory);
  const bytes = view.bytes;
  if (bytes.byteOffset !== 0 || knownBuffers.get(bytes.buffer) !== memory) {
    throw new ConfigError(
      `${what}.bytes`,
      "the kernel runtime's arena byte view (arena.bytes, byte 0 = arena offset 0)",
      `a ${bytes.byteLength}-byte view${knownBuffers.get(bytes.buffer) === memory ? ` at byte ${bytes.byteOffset}` : ' over other memory'}`,
    );
  }
}

/** Throws OutOfRangeError unless [offset, offset + 4n) is 4-aligned and inside the mapped arena. */
function checkF32Span(rt: KernelRuntime, what: string, offset: number, n: number): void {
  const mapped = rt.arena.mappedBytes;
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset % 4 !== 0 || offset + 4 * n > mapped) {
    throw new OutOfRangeError(`${what} arena offset ([${n}] f32)`, `a multiple of 4 in [0, ${mapped - 4 * n}]`, offset);
  }
}

/** Key positions must fit the kernels' i32 compares (NOTE(5)). */
function checkPositionLimits(positions: ArrayLike<number>, view: KVView, what: string, posWhat = 'positions'): void {
  for (let i = 0; i < positions.length; i++) {
    if (positions[i]! > MAX_POSITION) throw new OutOfRangeError(`${posWhat}[${i}] (wasm attention)`, `at most ${MAX_POSITION}`, positions[i]);
  }
  const segments = view.segments;
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s]!;
    if (seg.nTokens > 0 && seg.pos0 + seg.nTokens - 1 > MAX_POSITION) {
      throw new OutOfRangeError(`${what}.segments[${s}] last position (wasm attention)`, `at most ${MAX_POSITION}`, seg.pos0 + seg.nTokens - 1);
    }
  }
}

/**
 * Attention of `positions.length` query tokens over `view`, like ref attention(): q [nTokens,
 * nHeads, headDim] -> out [nTokens, nHeads, headDim], lse [nTokens, nHeads]. `view.bytes` must be
 * rt.arena's byte view (ConfigError otherwise). Same typed errors as the reference.
 */
export function wasmAttention(
  rt: KernelRuntime, q: Float32Array, positions: ArrayLike<number>, nHeads: number, view: KVView, opts?: AttentionOptions,
): AttentionResult {
  const nTokens = positions.length;
  checkView(view, nHeads, 'view');
  const { scale, window } = resolveAttentionOptions(opts, view.headDim);
  const n = nTokens * nHeads * view.headDim;
  if (q.length !== n) {
    throw new ShapeError(`q length ([nTokens, nHeads, headDim] = [${nTokens}, ${nHeads}, ${view.headDim}])`, n, q.length);
  }
  checkPositions(positions, 'positions');
  checkViewMemory(rt, view, 'view');
  checkPositionLimits(positions, view, 'view');
  if (nTokens === 0) return { out: new Float32Array(0), lse: new Float32Array(0) };
  const qOff = rt.stage('attention.q', q);
  const outOff = rt.scratch('attention.out', n * 4);
  const lseOff = rt.scratch('attention.lse', nTokens * nHeads * 4);
  run(rt, qOff, outOff, lseOff, positions, 0, nTokens, nHeads, view, scale, window);
  const f32 = rt.arena.f32;
  return { out: f32.slice(outOff >> 2, (outOff >> 2) + n), lse: f32.slice(lseOff >> 2, (lseOff >> 2) + nTokens * nHeads) };
}

/**
 * The zero-copy form: q, out and lse are f32 arena buffers at byte offsets qOffset ([nTokens,
 * nHeads, headDim]), outOffset (same shape) and lseOffset ([nTokens, nHeads]). out may be q itself
 * (an item reads its q rows before it writes the same rows of out); lse must overlap neither.
 */
export function wasmAttentionAt(
  rt: KernelRuntime, qOffset: number, outOffset: number, lseOffset: number, positions: ArrayLike<number>, nHeads: number,
  view: KVView, opts?: AttentionOptions,
): void {
  const nTokens = positions.length;
  checkView(view, nHeads, 'view');
  const { scale, window } = resolveAttentionOptions(opts, view.headDim);
  checkPositions(positions, 'positions');
  checkViewMemory(rt, view, 'view');
  checkPositionLimits(positions, view, 'view');
  const n = nTokens * nHeads * view.headDim;
  checkF32Span(rt, 'q', qOffset, n);
  checkF32Span(rt, 'out', outOffset, n);
  checkF32Span(rt, 'lse', lseOffset, nTokens * nHeads);
  if (nTokens === 0) return;
  run(rt, qOffset, outOffset, lseOffset, positions, 0, nTokens, nHeads, view, scale, window);
}

/**
 * Batched attention like ref attentionBatch(): row b (q [batch, nTokens, nHeads, headDim],
 * positions [batch, nTokens]) attends over views[b]; every view must be over rt.arena.
 */
export function wasmAttentionBatch(
  rt: KernelRuntime, q: Float32Array, positions: ArrayLike<number>, nHeads: number, views: readonly KVView[], opts?: AttentionOptions,
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
  views.forEach((v, b) => {
    checkViewMemory(rt, v, `views[${b}]`);
    checkPositionLimits(positions, v, `views[${b}]`);
  });
  if (nTokens === 0) return { out: new Float32Array(0), lse: new Float32Array(0) };
  const qOff = rt.stage('attention.q', q);
  const outOff = rt.scratch('attention.out', batch * rowElems * 4);
  const lseOff = rt.scratch('attention.lse', batch * nTokens * nHeads * 4);
  for (let b = 0; b < batch; b++) {
    run(rt, qOff + b * rowElems * 4, outOff + b * rowElems * 4, lseOff + b * nTokens * nHeads * 4, positions, b * nTokens, nTokens, nHeads, views[b]!, scale, window);
  }
  const f32 = rt.arena.f32;
  return {
    out: f32.slice(outOff >> 2, (outOff >> 2) + batch * rowElems),
    lse: f32.slice(lseOff >> 2, (lseOff >> 2) + batch * nTokens * nHeads),
  };
}

/** Writes 4-byte argument slots at an arena offset: the per-call blocks of the many form's table. */
class TableWriter {
  private rt: KernelRuntime | null = null;
  private at = 0;
  reset(rt: KernelRuntime, offsetBytes: number): this {
    this.rt = rt;
    this.at = offsetBytes >> 2;
    return this;
  }
  i32(v: number): this {
    this.rt!.arena.i32[this.at++] = v;
    return this;
  }
  ptr(v: number): this {
    this.rt!.arena.u32[this.at++] = v;
    return this;
  }
  f32(v: number): this {
    this.rt!.arena.f32[this.at++] = v;
    return this;
  }
  /** Forget the runtime (a module-level writer must not keep a disposed runtime alive). */
  release(): void {
    this.rt = null;
  }
}
const tableWriter = new TableWriter();

/** What writeCallArgs writes through (the runtime's ArgWriter or a TableWriter). */
interface SlotSink {
  i32(v: number): SlotSink;
  ptr(v: number): SlotSink;
  f32(v: number): SlotSink;
}

/** Slots of one call's argument block (assembly/attention.ts loadArgs: 0 .. 41). */
const CALL_SLOTS = 28 + SLOT_BUFFERS;

/** The segment table of a view at segOff: i32 [nSegments, 5] = kOff, vOff, nTokens, pos0, first key index. */
function writeSegments(rt: KernelRuntime, segOff: number, view: KVView): void {
  const segments = view.segments;
  const i32 = rt.arena.i32;
  const u32 = rt.arena.u32;
  let first = 0;
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s]!;
    const o = (segOff >> 2) + 5 * s;
    u32[o] = seg.kOffsetBytes;
    u32[o + 1] = seg.vOffsetBytes;
    i32[o + 2] = seg.nTokens;
    i32[o + 3] = seg.pos0;
    i32[o + 4] = first;
    first += seg.nTokens;
  }
}

/** The visible key ranges of the queries at rangeOff: i32 [nTokens, 2] = [lo, hi] (types.ts NOTE(2)). */
function writeRanges(rt: KernelRuntime, rangeOff: number, positions: ArrayLike<number>, posOff: number, nTokens: number, window: number): void {
  const i32 = rt.arena.i32;
  for (let i = 0; i < nTokens; i++) {
    const p = positions[posOff + i]!;
    i32[(rangeOff >> 2) + 2 * i] = window === Infinity ? 0 : Math.max(0, p - window + 1);
    i32[(rangeOff >> 2) + 2 * i + 1] = p;
  }
}

/** One call's argument block, slot by slot in the order of assembly/attention.ts loadArgs. */
function writeCallArgs(
  a: SlotSink, plan: AttentionPlan, qOff: number, outOff: number, lseOff: number, rangeOff: number, segOff: number,
  nTokens: number, nHeads: number, view: KVView, scale: number, partialOff: number, slotOff: number, slotBytes: number, grain: number,
): void {
  a.ptr(qOff).ptr(outOff).ptr(lseOff).ptr(rangeOff).ptr(segOff).i32(view.segments.length);
  a.i32(nTokens).i32(nHeads).i32(view.nKvHeads).i32(view.headDim).i32(DTYPE_CODE[view.kDtype]).i32(DTYPE_CODE[view.vDtype]);
  a.ptr(view.kTokenStrideBytes).ptr(view.kHeadStrideBytes).ptr(view.vTokenStrideBytes).ptr(view.vHeadStrideBytes);
  a.f32(scale * LOG2E).i32(plan.tileTokens).i32(plan.nTiles).i32(plan.nChunks).i32(plan.chunkKeys).i32(view.nTokens);
  a.ptr(partialOff).ptr(slotOff).ptr(slotBytes).i32(grain).i32(plan.intK ? 1 : 0);
  for (let i = 0; i < SLOT_BUFFERS; i++) a.ptr(plan.slotLayout[i]!);
  a.i32(plan.kvPerItem);
}

/**
 * Plan, write the tables and the argument block, run attention_tile (and attention_merge when the
 * keys are chunked). positions[posOff, posOff + nTokens) are this call's query positions.
 */
function run(
  rt: KernelRuntime, qOff: number, outOff: number, lseOff: number, positions: ArrayLike<number>, posOff: number, nTokens: number,
  nHeads: number, view: KVView, scale: number, window: number,
): void {
  const { headDim, nKvHeads } = view;
  const plan = fillPlan(callPlan, nTokens, nHeads, nKvHeads, headDim, view.kDtype, view.nTokens);
  // Every scratch buffer first (each may grow the arena), then the views to write the tables.
  const segOff = rt.scratch('attention.segments', Math.max(1, view.segments.length) * 20);
  const rangeOff = rt.scratch('attention.ranges', nTokens * 8);
  const slotOff = rt.scratch('attention.slots', plan.nSlots * plan.slotBytes);
  const partialOff = plan.direct ? 0 : rt.scratch('attention.partials', plan.partialBytes);
  writeSegments(rt, segOff, view);
  writeRanges(rt, rangeOff, positions, posOff, nTokens, window);
  writeCallArgs(rt.args(), plan, qOff, outOff, lseOff, rangeOff, segOff, nTokens, nHeads, view, scale, partialOff, slotOff, plan.slotBytes, plan.grain);
  // Calls too small to pay for waking the workers run on the calling thread (same results).
  const work = nTokens * nHeads * headDim * view.nTokens;
  if (work < PARALLEL_MIN_WORK) rt.runLocal('attention_tile', 0, plan.nItems);
  else rt.parallelFor('attention_tile', 0, plan.nItems, plan.grain);
  if (!plan.direct) {
    const rows = nTokens * nHeads;
    if (rows * plan.nChunks * headDim < PARALLEL_MIN_MERGE) rt.runLocal('attention_merge', 0, rows);
    else rt.parallelFor('attention_merge', 0, rows, Math.max(1, Math.ceil(rows / MAX_GRAINS)));
  }
}

/** Plans of the calls of the many form, reused across batches (grown on demand). */
const manyPlans: AttentionPlan[] = [];

/**
 * Many attention calls in one dispatch (NOTE(6)): call i is `calls[i]` (q / out / lse at arena
 * offsets, its own positions and view), all with `nHeads` query heads and the same options. The
 * results are bit-identical to wasmAttentionAt on each call in turn. Every call is checked (as
 * wasmAttentionAt, the errors naming `calls[i]`) before any kernel runs. A call's out may be its
 * own q; no other buffer of a call may overlap a buffer of another call.
 */
export function wasmAttentionManyAt(rt: KernelRuntime, calls: readonly AttentionCall[], nHeads: number, opts?: AttentionOptions): void {
  const nCalls = calls.length;
  if (nCalls === 0) {
    resolveAttentionOptions(opts, 1);
    return;
  }
  let window = Infinity;
  for (let c = 0; c < nCalls; c++) {
    const call = calls[c]!;
    const what = `calls[${c}]`;
    const { view, positions } = call;
    checkView(view, nHeads, `${what}.view`);
    window = resolveAttentionOptions(opts, view.headDim).window;
    checkPositions(positions, `${what}.positions`);
    checkViewMemory(rt, view, `${what}.view`);
    checkPositionLimits(positions, view, `${what}.view`, `${what}.positions`);
    const n = positions.length * nHeads * view.headDim;
    checkF32Span(rt, `${what}.q`, call.qOffset, n);
    checkF32Span(rt, `${what}.out`, call.outOffset, n);
    checkF32Span(rt, `${what}.lse`, call.lseOffset, positions.length * nHeads);
  }
  // Plans (each exactly the plan of the call alone) and the sizes of the shared tables.
  while (manyPlans.length < nCalls) manyPlans.push(newPlan());
  let nItems = 0, nMergeRows = 0, nSeg = 0, nRanges = 0, slotBytes = 0, partialBytes = 0, work = 0, mergeWork = 0;
  for (let c = 0; c < nCalls; c++) {
    const { positions, view } = calls[c]!;
    const nTokens = positions.length;
    if (nTokens === 0) continue;
    const plan = fillPlan(manyPlans[c]!, nTokens, nHeads, view.nKvHeads, view.headDim, view.kDtype, view.nTokens);
    nItems += plan.nItems;
    nSeg += view.segments.length;
    nRanges += nTokens;
    slotBytes = Math.max(slotBytes, plan.slotBytes);
    work += nTokens * nHeads * view.headDim * view.nTokens;
    if (!plan.direct) {
      partialBytes += plan.partialBytes;
      nMergeRows += nTokens * nHeads;
      mergeWork += nTokens * nHeads * plan.nChunks * view.headDim;
    }
  }
  if (nItems === 0) return;
  const grain = Math.ceil(nItems / MAX_GRAINS);
  const nSlots = Math.ceil(nItems / grain);
  // Every scratch buffer first (each may grow the arena), then the tables.
  const tableOff = rt.scratch('attention.many.calls', nCalls * CALL_SLOTS * 4);
  const startsOff = rt.scratch('attention.many.starts', 2 * (nCalls + 1) * 4); // item starts, then merge-row starts
  const segOff = rt.scratch('attention.segments', Math.max(1, nSeg) * 20);
  const rangeOff = rt.scratch('attention.ranges', nRanges * 8);
  const slotOff = rt.scratch('attention.slots', nSlots * slotBytes);
  const partialOff = partialBytes === 0 ? 0 : rt.scratch('attention.partials', partialBytes);
  const starts = rt.arena.i32;
  const itemStarts = startsOff >> 2;
  const rowStarts = itemStarts + nCalls + 1;
  let item = 0, row = 0, seg = segOff, range = rangeOff, partial = partialOff;
  for (let c = 0; c < nCalls; c++) {
    starts[itemStarts + c] = item;
    starts[rowStarts + c] = row;
    const call = calls[c]!;
    const { positions, view } = call;
    const nTokens = positions.length;
    if (nTokens === 0) continue;
    const plan = manyPlans[c]!;
    writeSegments(rt, seg, view);
    writeRanges(rt, range, positions, 0, nTokens, window);
    const { scale } = resolveAttentionOptions(opts, view.headDim);
    writeCallArgs(tableWriter.reset(rt, tableOff + c * CALL_SLOTS * 4), plan, call.qOffset, call.outOffset, call.lseOffset, range, seg,
      nTokens, nHeads, view, scale, plan.direct ? 0 : partial, slotOff, slotBytes, grain);
    item += plan.nItems;
    seg += view.segments.length * 20;
    range += nTokens * 8;
    if (!plan.direct) {
      partial += plan.partialBytes;
      row += nTokens * nHeads;
    }
  }
  tableWriter.release();
  starts[itemStarts + nCalls] = item;
  starts[rowStarts + nCalls] = row;
  // The multi block, in the slot order of assembly/attention.ts attention_multi.
  rt.args().ptr(tableOff).ptr(CALL_SLOTS * 4).ptr(startsOff).i32(nCalls).ptr(slotOff).ptr(slotBytes).i32(grain).ptr(startsOff + (nCalls + 1) * 4);
  if (work < PARALLEL_MIN_WORK) rt.runLocal('attention_multi', 0, nItems);
  else rt.parallelFor('attention_multi', 0, nItems, grain);
  if (nMergeRows > 0) {
    if (mergeWork < PARALLEL_MIN_MERGE) rt.runLocal('attention_merge_multi', 0, nMergeRows);
    else rt.parallelFor('attention_merge_multi', 0, nMergeRows, Math.max(1, Math.ceil(nMergeRows / MAX_GRAINS)));
  }
}
