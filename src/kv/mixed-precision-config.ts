/**
 * Configuration of MixedPrecisionCache (mixed-precision-cache.ts): sizes, the recent window
 * (R tokens in recentDtype, moved G at a time) and the history dtypes of K and V.
 */
import type { Arena } from '../core/arena.js';
import { checkRowLength, parseDType, type DType } from '../core/dtype.js';
import { DTypeError, checkInt } from '../core/errors.js';
import { resolveCacheShape, type CacheShape, type CacheShapeConfig } from './cache-checks.js';

export type RecentDType = 'f32' | 'f16' | 'bf16';

export interface MixedPrecisionCacheConfig extends CacheShapeConfig {
  /** R: tokens kept in full precision, at least 32. Default 128. */
  recentTokens?: number;
  /** G: tokens moved to the history at a time, in [1, R]. Default 32 (or R when R < 32). */
  groupTokens?: number;
  /** dtype of the recent window. Default 'f16'. */
  recentDtype?: RecentDType;
  /** dtype of both history K and V unless historyKDtype / historyVDtype say otherwise. Default 'q8_0'. */
  historyDtype?: DType;
  historyKDtype?: DType;
  historyVDtype?: DType;
  /** Where storage lives. Default: the process-wide arena. */
  arena?: Arena;
}

export interface ResolvedMixedConfig extends CacheShape {
  readonly recentTokens: number;
  readonly groupTokens: number;
  readonly recentDtype: RecentDType;
  readonly historyKDtype: DType;
  readonly historyVDtype: DType;
}

/** Validate a config; throws ConfigError / DTypeError naming the bad field. */
export function resolveMixedConfig(c: MixedPrecisionCacheConfig): ResolvedMixedConfig {
  const shape = resolveCacheShape(c, 'mixed-precision cache config');
  const recentTokens = checkInt('recentTokens', c.recentTokens ?? 128, 32);
  const groupTokens = checkInt('groupTokens', c.groupTokens ?? Math.min(32, recentTokens), 1, recentTokens);
  const recentDtype = c.recentDtype ?? 'f16';
  if (recentDtype !== 'f32' && recentDtype !== 'f16' && recentDtype !== 'bf16') {
    throw new DTypeError('recentDtype', "one of f32|f16|bf16 (the recent window is full precision)", recentDtype);
  }
  const hist = c.historyDtype ?? 'q8_0';
  const historyKDtype = parseDType(c.historyKDtype ?? hist, 'historyKDtype');
  const historyVDtype = parseDType(c.historyVDtype ?? hist, 'historyVDtype');
  checkRowLength(historyKDtype, shape.headDim, 'headDim');
  checkRowLength(historyVDtype, shape.headDim, 'headDim');
  return { ...shape, recentTokens, groupTokens, recentDtype, historyKDtype, historyVDtype };
}
