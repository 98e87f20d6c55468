/**
 * Input checks of the ktransformers KVCache facade, all run before anything changes: typed errors
 * naming the argument, the expected and the given value.
 *
 *   attn rows:  blockTable Int32Array [batch, blocksPerRow] of physical ids in [0, maxBlockNum),
 *               cacheSeqlens Int32Array [batch] (valid tokens per row, <= blocksPerRow * blockLen);
 *               or neither: one row of cacheTotalLen tokens over blocks 0, 1, 2, ... (identity)
 *   qIn         Float32Array [batch, qLen, qHeadNum, headDim]: qLen = qIn.length / (batch * qHeadNum * headDim)
 *   output      the same shape;  attnLse  Float32Array [batch, qLen, qHeadNum]
 */
import { CapacityError, ConfigError, OutOfRangeError, ShapeError, checkIndex } from '../core/errors.js';
import type { KVCacheConfig } from './ktransformers-config.js';

/** Throws ConfigError unless `a` is a Float32Array, ShapeError unless it has n elements. */
export function checkF32(what: string, a: unknown, n: number, shape: string): Float32Array {
  if (!(a instanceof Float32Array)) throw new ConfigError(what, `a Float32Array ${shape}`, a === null ? 'null' : typeof a);
  if (a.length !== n) throw new ShapeError(`${what} length (${shape})`, n, a.length);
  return a;
}

/** layerId in [0, layerNum), blockIdx (physical) in [0, maxBlockNum). */
export function checkBlockAddress(c: KVCacheConfig, layerId: unknown, blockIdx: unknown): void {
  checkIndex(`layerId (layerNum = ${c.layerNum})`, layerId, c.layerNum);
  checkIndex(`blockIdx (physical block id, maxBlockNum = ${c.maxBlockNum})`, blockIdx, c.maxBlockNum);
}

/** Physical ids table[at + i], i < nBlocks, each in [0, maxBlockNum). */
export function checkIds(c: KVCacheConfig, what: string, table: Int32Array, at: number, nBlocks: number): void {
  for (let i = 0; i < nBlocks; i++) {
    const id = table[at + i]!;
    if (id < 0 || id >= c.maxBlockNum) throw new OutOfRangeError(`${what}[${i}] (physical block id)`, `an integer in [0, ${c.maxBlockNum})`, id);
  }
}

/** The rows of one attn call (rewritten in place by checkAttnArgs: no allocation per call). */
export class AttnRows {
  batch = 1;
  qLen = 1;
  /** Entries per row of the caller's table. */
  stride = 0;
  /** The caller's table [batch, stride], or null: identity over cacheTotalLen tokens. */
  table: Int32Array | null = null;
  seqLens: Int32Array | null = null;
  identityLen = 0;

  seqLen(b: number): number {
    return this.seqLens === null ? this.identityLen : this.seqLens[b]!;
  }
}

/** The rows of attn / calcAnchorAllLayers (the file's header) into `rows`. */
export function checkRows(c: KVCacheConfig, rows: AttnRows, cacheTotalLen: number, blockTable: unknown, cacheSeqlens: unknown): void {
  const L = c.blockLen;
  if (blockTable === undefined || blockTable === null) {
    if (cacheSeqlens !== undefined && cacheSeqlens !== null) {
      throw new ConfigError('cacheSeqlens without a blockTable', 'both, or neither (one row of cacheTotalLen tokens over blocks 0, 1, ...)', 'cacheSeqlens only');
    }
    rows.batch = 1;
    rows.table = null;
    rows.seqLens = null;
    rows.identityLen = cacheTotalLen;
    rows.stride = Math.ceil(cacheTotalLen / L);
    return;
  }
  if (!(blockTable instanceof Int32Array)) throw new ConfigError('blockTable', 'an Int32Array [batch, blocksPerRow] of physical block ids', typeof blockTable);
  if (!(cacheSeqlens instanceof Int32Array)) throw new ConfigError('cacheSeqlens (with a blockTable)', 'an Int32Array [batch]', cacheSeqlens === undefined ? 'undefined' : typeof cacheSeqlens);
  const batch = cacheSeqlens.length;
  if (batch === 0) throw new ShapeError('cacheSeqlens length (batch)', 'at least 1', 0);
  if (batch > c.maxBatchSize) throw new CapacityError(`batch (cacheSeqlens length) for maxBatchSize = ${c.maxBatchSize}`, `at most ${c.maxBatchSize}`, batch);
  if (blockTable.length % batch !== 0) throw new ShapeError(`blockTable length ([batch, blocksPerRow], batch = ${batch})`, `a multiple of ${batch}`, blockTable.length);
  const stride = blockTable.length / batch;
  for (let b = 0; b < batch; b++) {
    const s = cacheSeqlens[b]!;
    if (s < 0 || s > stride * L) {
      throw new OutOfRangeError(`cacheSeqlens[${b}] (blocksPerRow ${stride} x blockLen ${L})`, `an integer in [0, ${stride * L}]`, s);
    }
    checkIds(c, `blockTable[${b}]`, blockTable, b * stride, Math.ceil(s / L));
  }
  rows.batch = batch;
  rows.table = blockTable;
  rows.seqLens = cacheSeqlens;
  rows.stride = stride;
}

/** Every argument of attn (the file's header) into `rows`. */
export function checkAttnArgs(
  c: KVCacheConfig, rows: AttnRows, cacheTotalLen: number, qIn: unknown, output: unknown, attnLse: unknown,
  blockTable: unknown, cacheSeqlens: unknown,
): void {
  checkRows(c, rows, cacheTotalLen, blockTable, cacheSeqlens);
  const H = c.qHeadNum;
  const D = c.headDim;
  const perToken = rows.batch * H * D;
  if (!(qIn instanceof Float32Array)) throw new ConfigError('qIn', 'a Float32Array [batch, qLen, qHeadNum, headDim]', qIn === null ? 'null' : typeof qIn);
  if (qIn.length === 0 || qIn.length % perToken !== 0) {
    throw new ShapeError(`qIn length ([batch, qLen, qHeadNum, headDim] = [${rows.batch}, qLen, ${H}, ${D}])`, `a positive multiple of ${perToken}`, qIn.length);
  }
  rows.qLen = qIn.length / perToken;
  checkF32('output', output, qIn.length, `[batch, qLen, qHeadNum, headDim] = [${rows.batch}, ${rows.qLen}, ${H}, ${D}]`);
  checkF32('attnLse', attnLse, rows.batch * rows.qLen * H, `[batch, qLen, qHeadNum] = [${rows.batch}, ${rows.qLen}, ${H}]`);
}

/** dumpKVCache's table and length: the first ceil(cacheTotalLen / blockLen) ids of blockTable (row 0). */
export function checkDumpArgs(c: KVCacheConfig, blockTable: unknown, cacheTotalLen: unknown): number {
  const max = c.maxBlockNum * c.blockLen;
  if (typeof cacheTotalLen !== 'number' || !Number.isInteger(cacheTotalLen) || cacheTotalLen < 0 || cacheTotalLen > max) {
    throw new OutOfRangeError(`cacheTotalLen (maxBlockNum ${c.maxBlockNum} x blockLen ${c.blockLen})`, `an integer in [0, ${max}]`, cacheTotalLen);
  }
  if (!(blockTable instanceof Int32Array)) throw new ConfigError('blockTable', 'an Int32Array of physical block ids (row 0 is dumped)', typeof blockTable);
  const n = Math.ceil(cacheTotalLen / c.blockLen);
  if (blockTable.length < n) throw new ShapeError(`blockTable length (cacheTotalLen ${cacheTotalLen} / blockLen ${c.blockLen}, rounded up)`, `at least ${n}`, blockTable.length);
  checkIds(c, 'blockTable', blockTable, 0, n);
  return n;
}
