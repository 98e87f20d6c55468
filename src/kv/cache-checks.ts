/**
 * Input checks shared by the dense-style caches (static, dynamic, sub-view, mixed-precision):
 * the shape part of a config, the K/V arrays of an append, and the room left in a row. One
 * place, so every cache words its errors the same way.
 */
import { CapacityError, ConfigError, ShapeError, checkInt } from '../core/errors.js';

/** The shape part of every dense-style cache config. */
export interface CacheShapeConfig {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  /** Positions per row the cache may ever hold. */
  maxSeqLen: number;
  /** Rows (sequences) held side by side. Default 1. */
  batchSize?: number;
  /** Query heads, checked for GQA (must be a multiple of nKvHeads). Default nKvHeads. */
  nHeads?: number;
}

export interface CacheShape {
  readonly nLayers: number;
  readonly batchSize: number;
  readonly nKvHeads: number;
  readonly nHeads: number;
  readonly headDim: number;
  readonly maxSeqLen: number;
}

/** Validate the shape fields of a cache config (`what` names the config in errors). */
export function resolveCacheShape(c: CacheShapeConfig, what: string): CacheShape {
  if (typeof c !== 'object' || c === null) throw new ConfigError(what, 'an object', c);
  const nLayers = checkInt('nLayers', c.nLayers, 1);
  const nKvHeads = checkInt('nKvHeads', c.nKvHeads, 1);
  const headDim = checkInt('headDim', c.headDim, 1);
  const maxSeqLen = checkInt('maxSeqLen', c.maxSeqLen, 1);
  const batchSize = checkInt('batchSize', c.batchSize ?? 1, 1);
  const nHeads = checkInt('nHeads', c.nHeads ?? nKvHeads, 1);
  if (nHeads % nKvHeads !== 0) throw new ConfigError('nHeads (query heads) for GQA', `a multiple of nKvHeads = ${nKvHeads}`, nHeads);
  return { nLayers, batchSize, nKvHeads, nHeads, headDim, maxSeqLen };
}

/** New tokens in an append's k and v (`perToken` floats each); `shape` describes them in errors. */
export function countNewTokens(k: Float32Array, v: Float32Array, perToken: number, shape: string): number {
  if (!(k instanceof Float32Array)) throw new ShapeError('k', `a Float32Array ${shape}`, k);
  if (!(v instanceof Float32Array)) throw new ShapeError('v', `a Float32Array ${shape}`, v);
  if (k.length !== v.length) throw new ShapeError('v length (must equal k length)', k.length, v.length);
  if (k.length % perToken !== 0) throw new ShapeError(`k length for shape ${shape}`, `a multiple of ${perToken}`, k.length);
  return k.length / perToken;
}

/** The row's length after appending nNew to `len`, or CapacityError past maxSeqLen. */
export function checkAppendRoom(layer: number, row: number, len: number, nNew: number, maxSeqLen: number): number {
  if (len + nNew > maxSeqLen) {
    throw new CapacityError(`layer ${layer} row ${row}: append of ${nNew} tokens at length ${len}`, `at most ${maxSeqLen} positions (maxSeqLen)`, len + nNew);
  }
  return len + nNew;
}
