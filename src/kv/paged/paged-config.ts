/**
 * Configuration of a PagedKVCache and its validation (typed errors naming the bad field).
 */
import type { Arena } from '../../core/arena.js';
import { checkRowLength, parseDType, type DType } from '../../core/dtype.js';
import { ConfigError, checkInt } from '../../core/errors.js';
import { checkInvFreq, checkRopeMode, checkRotaryDim, ropeInvFreq, type RopeMode } from '../../kernels/ref/rope.js';

/** Token slots per block by default: the WASM attention kernels gather keys 32 at a time. */
export const DEFAULT_BLOCK_LEN = 32;

/** How the cached keys were rotated (needed by seqShift to re-rotate them). */
export interface PagedRopeConfig {
  /** f32 [rotaryDim / 2] inverse frequencies (the model's table, scaling included). */
  invFreq?: Float32Array;
  /** Base of the default table theta^(-2i / rotaryDim) when invFreq is not given. Default 10000. */
  theta?: number;
  /** Leading dims of each head that rotate; default headDim. */
  rotaryDim?: number;
  /** Default 'neox'. */
  pairing?: RopeMode;
}

export interface PagedKVCacheConfig {
  /** Where the blocks live. Default: the process-wide arena. */
  arena?: Arena;
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  /** dtype of K and V unless kDtype / vDtype say otherwise. Default 'f32'. */
  dtype?: DType;
  kDtype?: DType;
  vDtype?: DType;
  /** Blocks in the pool, the null block 0 included (nBlocks - 1 can hold tokens); >= 2. */
  nBlocks: number;
  /** Token slots per block; default DEFAULT_BLOCK_LEN. */
  blockLen?: number;
  /** Identifies the model (weights + config); part of every block hash. */
  fingerprint: string;
  /** Default namespace of block hashes (a sequence may name its own). Default ''. */
  namespace?: string;
  /** RoPE of the stored keys; without it seqShift throws ConfigError. */
  rope?: PagedRopeConfig;
}

export interface ResolvedRopeConfig {
  readonly invFreq: Float32Array; // [rotaryDim / 2]
  readonly rotaryDim: number;
  readonly pairing: RopeMode;
}

export interface ResolvedPagedConfig {
  readonly nLayers: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly nBlocks: number;
  readonly blockLen: number;
  readonly fingerprint: string;
  readonly namespace: string;
  readonly rope: ResolvedRopeConfig | null;
}

function resolveRope(r: PagedRopeConfig | undefined, headDim: number): ResolvedRopeConfig | null {
  if (r === undefined) return null;
  if (typeof r !== 'object' || r === null) throw new ConfigError('rope', 'an object { invFreq? | theta?, rotaryDim?, pairing? }', r);
  const rotaryDim = checkRotaryDim(r.rotaryDim ?? headDim, headDim);
  const pairing = checkRopeMode(r.pairing ?? 'neox');
  let invFreq: Float32Array;
  if (r.invFreq !== undefined) {
    if (!(r.invFreq instanceof Float32Array)) throw new ConfigError('rope invFreq', 'a Float32Array [rotaryDim / 2]', r.invFreq);
    checkInvFreq(r.invFreq, rotaryDim);
    invFreq = Float32Array.from(r.invFreq);
  } else {
    invFreq = ropeInvFreq(r.theta ?? 10000, rotaryDim);
  }
  return { invFreq, rotaryDim, pairing };
}

/** Validate a config; throws ConfigError / DTypeError naming the field, what it needs and what it got. */
export function resolvePagedConfig(c: PagedKVCacheConfig): ResolvedPagedConfig {
  if (typeof c !== 'object' || c === null) throw new ConfigError('paged cache config', 'an object', c);
  const nLayers = checkInt('nLayers', c.nLayers, 1);
  const nKvHeads = checkInt('nKvHeads', c.nKvHeads, 1);
  const headDim = checkInt('headDim', c.headDim, 1);
  const kDtype = parseDType(c.kDtype ?? c.dtype ?? 'f32', 'kDtype');
  const vDtype = parseDType(c.vDtype ?? c.dtype ?? 'f32', 'vDtype');
  checkRowLength(kDtype, headDim, 'headDim (K rows)');
  checkRowLength(vDtype, headDim, 'headDim (V rows)');
  const nBlocks = checkInt('nBlocks (blocks in the pool, the null block included)', c.nBlocks, 2, 0x7fffffff);
  const blockLen = checkInt('blockLen (token slots per block)', c.blockLen ?? DEFAULT_BLOCK_LEN, 1, 1 << 20);
  if (typeof c.fingerprint !== 'string') throw new ConfigError('fingerprint (model identity, part of every block hash)', 'a string', c.fingerprint);
  const namespace = c.namespace ?? '';
  if (typeof namespace !== 'string') throw new ConfigError('namespace', 'a string', namespace);
  const rope = resolveRope(c.rope, headDim);
  return { nLayers, nKvHeads, headDim, kDtype, vDtype, nBlocks, blockLen, fingerprint: c.fingerprint, namespace, rope };
}
