/**
 * Options of block-sparse attention (ktransformers' long-context mode, InfLLM / Quest style), their
 * defaults, and their validation against the shape of the cache they index.
 *
 *   row of seqLen tokens:  [init blocks][ ...... scored blocks ...... ][local blocks][tail]
 *                                        top `pick` of these by score
 *
 * NOTE(1): Defaults are ktransformers' published long-context defaults where they carry over
 *   (DYNAMIC anchors, anchor_num 1, LAYER retrieval, pick 32, a local window of 4096 tokens,
 *   2 dense first layers, token_step 100, layer_step 1), and its caller's default init (1 block,
 *   or 64 tokens' worth when blockLen <= 32). QUEST defaults to (and requires) 2 anchor slots.
 *   tokenStep 100 keeps the scoring pass (a TS loop of nBlocks * nqHeads * headDim * anchorNum
 *   multiply-adds plus a sort) off most tokens: measured at 32k tokens, 14 q heads x 64 dims,
 *   blockLen 128, one thread, ~0.5 ms per selection with one anchor slot and ~1.2 ms with QUEST's
 *   two, against ~2 ms for the sparse attention of that layer. tokenStep 1 re-selects every token.
 *   New blocks are attended between selections anyway (selection-store.ts NOTE(2)).
 * NOTE(2): A selection is made on layers l >= layerOffset with (l - layerOffset) % layerStep == 0
 *   (ktransformers tests l % layerStep == layerOffset, which never holds once layerOffset >=
 *   layerStep); the layers after it reuse it. Layers below layerOffset have no selection to reuse
 *   in the same forward pass and attend densely, like the `denseLayers` first layers.
 * NOTE(3): Importance (per token, per q head: attention probability received) only feeds DYNAMIC
 *   anchors, so by default it is tracked only for DYNAMIC: from the last `importanceQueries`
 *   prompt queries after prefill, and during decode into the block being filled ('tail'), which
 *   is the only block whose anchor is still to be computed. 'selected' adds every attended block
 *   (about +50% of the attention work: one more pass over the selected keys).
 */
import { ConfigError, checkInt } from '../../core/errors.js';

export type AnchorType = 'fixed' | 'dynamic' | 'quest' | 'block_mean' | 'block_max';
export type RetrievalType = 'layer' | 'kvhead' | 'qhead';
export type DecodeImportance = 'off' | 'tail' | 'selected';

export const ANCHOR_TYPES: readonly AnchorType[] = ['fixed', 'dynamic', 'quest', 'block_mean', 'block_max'];
export const RETRIEVAL_TYPES: readonly RetrievalType[] = ['layer', 'kvhead', 'qhead'];
const DECODE_IMPORTANCE: readonly DecodeImportance[] = ['off', 'tail', 'selected'];

/** The cache shape the options are checked against. */
export interface SparseShape {
  nLayers: number;
  nqHeads: number;
  nKvHeads: number;
  headDim: number;
  blockLen: number;
}

export interface SparseOptions {
  /** How a block's anchors are computed from its keys (default 'dynamic'). */
  anchorType?: AnchorType;
  /** Anchor slots per (block, q head): default 1, and 2 (required) for 'quest'. */
  anchorNum?: number;
  /** One selection per layer, per kv head (over its q-head group) or per q head (default 'layer'). */
  retrievalType?: RetrievalType;
  /** Top-scored blocks attended besides init / local / tail; -1 = always dense (default 32). */
  pick?: number;
  /** First blocks always attended (default 1, or ceil(64 / blockLen) when blockLen <= 32). */
  init?: number;
  /** Last full blocks always attended (default ceil(4096 / blockLen): a 4096-token window). */
  local?: number;
  /** A new selection every tokenStep tokens (default 100; NOTE(1)). */
  tokenStep?: number;
  /** Layers sharing one selection (default 1; NOTE(2)). */
  layerStep?: number;
  /** First selecting layer (default 0; NOTE(2)). */
  layerOffset?: number;
  /** The first N layers always attend densely (default min(2, nLayers)). */
  denseLayers?: number;
  /**
   * When every scorable block would be picked anyway (nFull <= init + pick + local), attend densely
   * over the row as ktransformers does (default true). false keeps the selection path (its block
   * order) even then.
   */
  denseFallback?: boolean;
  /** Prompt queries (the last ones) whose attention feeds importance after prefill (NOTE(3)). */
  importanceQueries?: number;
  /** Importance accumulated during decode (NOTE(3)). */
  decodeImportance?: DecodeImportance;
}

export interface ResolvedSparseConfig {
  readonly anchorType: AnchorType;
  readonly anchorNum: number;
  readonly retrievalType: RetrievalType;
  readonly pick: number;
  readonly init: number;
  readonly local: number;
  readonly tokenStep: number;
  readonly layerStep: number;
  readonly layerOffset: number;
  readonly denseLayers: number;
  readonly denseFallback: boolean;
  readonly importanceQueries: number;
  readonly decodeImportance: DecodeImportance;
  /** Selection slots: ceil((nLayers - layerOffset) / layerStep), one per selecting layer. */
  readonly nSlots: number;
}

/** Throws ConfigError unless the shape is usable (GQA groups of consecutive q heads). */
export function checkSparseShape(s: SparseShape): void {
  checkInt('sparse nLayers', s.nLayers, 1);
  checkInt('sparse nKvHeads', s.nKvHeads, 1);
  checkInt('sparse nqHeads', s.nqHeads, 1);
  checkInt('sparse headDim', s.headDim, 1);
  checkInt('sparse blockLen', s.blockLen, 1);
  if (s.nqHeads % s.nKvHeads !== 0) {
    throw new ConfigError(`sparse nqHeads (query heads) for nKvHeads = ${s.nKvHeads}`, `a multiple of ${s.nKvHeads}`, s.nqHeads);
  }
}

function oneOf<T extends string>(what: string, v: unknown, names: readonly T[]): T {
  if (typeof v !== 'string' || !(names as readonly string[]).includes(v)) throw new ConfigError(what, `one of ${names.join('|')}`, v);
  return v as T;
}

/** Fill in defaults (NOTE(1)) and validate every option against the shape. */
export function resolveSparseConfig(opts: SparseOptions, shape: SparseShape): ResolvedSparseConfig {
  checkSparseShape(shape);
  const { nLayers, blockLen } = shape;
  const anchorType = oneOf('sparse anchorType', opts.anchorType ?? 'dynamic', ANCHOR_TYPES);
  const retrievalType = oneOf('sparse retrievalType', opts.retrievalType ?? 'layer', RETRIEVAL_TYPES);
  const anchorNum = checkInt('sparse anchorNum (anchor slots per block)', opts.anchorNum ?? (anchorType === 'quest' ? 2 : 1), 1, blockLen);
  if (anchorType === 'quest' && anchorNum !== 2) {
    throw new ConfigError('sparse anchorNum for quest anchors (slot 0 = per-dim max, slot 1 = per-dim min)', 2, anchorNum);
  }
  const pick = checkInt('sparse pick (top-scored blocks; -1 = dense)', opts.pick ?? 32, -1);
  const init = checkInt('sparse init (first blocks)', opts.init ?? (blockLen <= 32 ? Math.ceil(64 / blockLen) : 1), 0);
  const local = checkInt('sparse local (last full blocks)', opts.local ?? Math.ceil(4096 / blockLen), 0);
  const tokenStep = checkInt('sparse tokenStep', opts.tokenStep ?? 100, 1);
  const layerStep = checkInt('sparse layerStep', opts.layerStep ?? 1, 1);
  const layerOffset = checkInt(`sparse layerOffset (nLayers = ${nLayers})`, opts.layerOffset ?? 0, 0, nLayers - 1);
  const denseLayers = checkInt(`sparse denseLayers (nLayers = ${nLayers})`, opts.denseLayers ?? Math.min(2, nLayers), 0, nLayers);
  const denseFallback = opts.denseFallback ?? true;
  if (typeof denseFallback !== 'boolean') throw new ConfigError('sparse denseFallback', 'a boolean', denseFallback);
  const dynamic = anchorType === 'dynamic';
  const importanceQueries = checkInt('sparse importanceQueries', opts.importanceQueries ?? (dynamic ? 32 : 0), 0);
  const decodeImportance = oneOf('sparse decodeImportance', opts.decodeImportance ?? (dynamic ? 'tail' : 'off'), DECODE_IMPORTANCE);
  const nSlots = Math.ceil((nLayers - layerOffset) / layerStep);
  return {
    anchorType, anchorNum, retrievalType, pick, init, local, tokenStep, layerStep, layerOffset, denseLayers,
    denseFallback, importanceQueries, decodeImportance, nSlots,
  };
}

/** Parse an anchor type: our names or ktransformers' enum names (FIXED_ANCHOR, BLOCK_MEAN, ...), any case. */
export function parseAnchorType(s: unknown): AnchorType {
  const t = typeof s === 'string' ? s.toLowerCase() : s;
  return oneOf('anchor type', t === 'fixed_anchor' ? 'fixed' : t, ANCHOR_TYPES);
}

/** Parse a retrieval type: our names or ktransformers' (LAYER, KVHEAD, QHEAD), any case. */
export function parseRetrievalType(s: unknown): RetrievalType {
  return oneOf('retrieval type', typeof s === 'string' ? s.toLowerCase() : s, RETRIEVAL_TYPES);
}

/** Selection groups of a retrieval type: 1 (layer), nKvHeads (kvhead) or nqHeads (qhead). */
export function groupCount(retrieval: RetrievalType, nqHeads: number, nKvHeads: number): number {
  return retrieval === 'layer' ? 1 : retrieval === 'kvhead' ? nKvHeads : nqHeads;
}
