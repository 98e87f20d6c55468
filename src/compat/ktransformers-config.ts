/**
 * ktransformers' `KVCacheConfig` and its enums (`kvcache.AnchorType`, `kvcache.ggml_type`,
 * `kvcache.RetrievalType` of cpuinfer_ext), and their translation to the sparse core's options.
 *
 *   new KVCacheConfig(layerNum, kvHeadNum, qHeadNum, headDim, blockLen, anchorNum, anchorType,
 *                     kvType, retrievalType, layerStep, tokenStep, layerOffset, maxBlockNum,
 *                     maxBatchSize, maxThreadNum)            (ktransformers' argument order)
 *   KVCacheConfig.from({ layerNum, ..., maxThreadNum })      (the same, by name)
 *
 * NOTE(1): Enum values are ktransformers' numeric codes: AnchorType and RetrievalType are the C++
 *   enums' ordinals (FIXED_ANCHOR = 0, DYNAMIC, QUEST, BLOCK_MEAN, BLOCK_MAX; LAYER = 0, KVHEAD,
 *   QHEAD), GGMLType the ggml_type codes (GGML_TYPE_F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8). The
 *   config stores codes; its inputs may also be names (FIXED / FIXED_ANCHOR, fp16 / F16, our
 *   sparse-config names such as 'block_mean'), any case.
 * NOTE(2): Validation differs from the original where it was needlessly strict: K and V are
 *   quantized along headDim (32 values of one token per ggml block), so quantized kv types need
 *   headDim % 32 == 0 but not blockLen % 32 == 0 (the original quantized V along tokens).
 *   Float kv types take any headDim. QUEST needs anchorNum 2 (slot 0 max, slot 1 min).
 * NOTE(3): layerOffset: the first layer that selects blocks; layers below it attend densely
 *   (sparse-config.ts NOTE(2)). maxBlockNum: physical blocks, ids [0, maxBlockNum).
 *   maxBatchSize: rows per attn call. maxThreadNum: the kernels' default thread count.
 */
import type { DType } from '../core/dtype.js';
import { ConfigError, checkInt } from '../core/errors.js';
import type { AnchorType as CoreAnchorType, RetrievalType as CoreRetrievalType } from '../kv/sparse/sparse-config.js';

/** ktransformers' AnchorType codes (NOTE(1)). */
export const AnchorType = { FIXED: 0, DYNAMIC: 1, QUEST: 2, BLOCK_MEAN: 3, BLOCK_MAX: 4 } as const;
export type AnchorType = (typeof AnchorType)[keyof typeof AnchorType];

/** ggml_type codes of the four kv types ktransformers stores (NOTE(1)). */
export const GGMLType = { FP32: 0, FP16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GGMLType = (typeof GGMLType)[keyof typeof GGMLType];

/** ktransformers' RetrievalType codes (NOTE(1)). */
export const RetrievalType = { LAYER: 0, KVHEAD: 1, QHEAD: 2 } as const;
export type RetrievalType = (typeof RetrievalType)[keyof typeof RetrievalType];

type Named<T> = { readonly [name: string]: T };

const ANCHOR_NAMES: Named<AnchorType> = {
  FIXED: 0, FIXED_ANCHOR: 0, DYNAMIC: 1, QUEST: 2, BLOCK_MEAN: 3, BLOCK_MAX: 4,
};
const GGML_NAMES: Named<GGMLType> = {
  FP32: 0, F32: 0, GGML_TYPE_F32: 0, FP16: 1, F16: 1, GGML_TYPE_F16: 1, Q4_0: 2, GGML_TYPE_Q4_0: 2, Q8_0: 8, GGML_TYPE_Q8_0: 8,
};
const RETRIEVAL_NAMES: Named<RetrievalType> = { LAYER: 0, KVHEAD: 1, QHEAD: 2 };

const ANCHOR_CORE: Readonly<Record<AnchorType, CoreAnchorType>> = { 0: 'fixed', 1: 'dynamic', 2: 'quest', 3: 'block_mean', 4: 'block_max' };
const GGML_DTYPE: Readonly<Record<GGMLType, DType>> = { 0: 'f32', 1: 'f16', 2: 'q4_0', 8: 'q8_0' };
const RETRIEVAL_CORE: Readonly<Record<RetrievalType, CoreRetrievalType>> = { 0: 'layer', 1: 'kvhead', 2: 'qhead' };

function nameOf<T extends number>(table: Readonly<Record<string, T>>, code: T): string {
  for (const [k, v] of Object.entries(table)) if (v === code) return k;
  return String(code);
}

/** The ktransformers name of an anchor type code (FIXED, DYNAMIC, QUEST, BLOCK_MEAN, BLOCK_MAX). */
export function anchorTypeName(t: AnchorType): string {
  return nameOf(AnchorType, t);
}
/** The ktransformers name of a kv type code (FP32, FP16, Q4_0, Q8_0). */
export function ggmlTypeName(t: GGMLType): string {
  return nameOf(GGMLType, t);
}
/** The ktransformers name of a retrieval type code (LAYER, KVHEAD, QHEAD). */
export function retrievalTypeName(t: RetrievalType): string {
  return nameOf(RetrievalType, t);
}

/** A code of `codes`, or a name of `names` (any case). */
function parseEnum<T extends number>(what: string, v: unknown, codes: Readonly<Record<string, T>>, names: Named<T>): T {
  if (typeof v === 'number' && (Object.values(codes) as number[]).includes(v)) return v as T;
  if (typeof v === 'string') {
    const key = v.toUpperCase();
    if (Object.prototype.hasOwnProperty.call(names, key)) return names[key]!;
  }
  const valid = Object.entries(codes).map(([k, c]) => `${k} (${c})`).join(', ');
  throw new ConfigError(what, `one of ${valid}`, v);
}

/** An AnchorType code from a code or a name (NOTE(1)). */
export function parseKtAnchorType(v: unknown): AnchorType {
  return parseEnum('KVCacheConfig.anchorType', v, AnchorType, ANCHOR_NAMES);
}
/** A GGMLType code from a code or a name (NOTE(1)). */
export function parseGGMLType(v: unknown): GGMLType {
  return parseEnum('KVCacheConfig.kvType (FP16, Q4_0, Q8_0 or FP32)', v, GGMLType, GGML_NAMES);
}
/** A RetrievalType code from a code or a name (NOTE(1)). */
export function parseKtRetrievalType(v: unknown): RetrievalType {
  return parseEnum('KVCacheConfig.retrievalType', v, RetrievalType, RETRIEVAL_NAMES);
}

/** The 15 fields by name; enums as codes or names (NOTE(1)). */
export interface KVCacheConfigInit {
  layerNum: number;
  kvHeadNum: number;
  qHeadNum: number;
  headDim: number;
  blockLen: number;
  anchorNum: number;
  anchorType: AnchorType | string;
  kvType: GGMLType | string;
  retrievalType: RetrievalType | string;
  layerStep: number;
  tokenStep: number;
  layerOffset: number;
  maxBlockNum: number;
  maxBatchSize: number;
  maxThreadNum: number;
}

/** A validated configuration (NOTE(2), NOTE(3)); enums stored as codes. */
export class KVCacheConfig {
  readonly layerNum: number;
  readonly kvHeadNum: number;
  readonly qHeadNum: number;
  readonly headDim: number;
  readonly blockLen: number;
  readonly anchorNum: number;
  readonly anchorType: AnchorType;
  readonly kvType: GGMLType;
  readonly retrievalType: RetrievalType;
  readonly layerStep: number;
  readonly tokenStep: number;
  readonly layerOffset: number;
  readonly maxBlockNum: number;
  readonly maxBatchSize: number;
  readonly maxThreadNum: number;

  /** ktransformers' positional constructor; throws ConfigError naming the first bad field. */
  constructor(
    layerNum: number, kvHeadNum: number, qHeadNum: number, headDim: number, blockLen: number, anchorNum: number,
    anchorType: AnchorType | string, kvType: GGMLType | string, retrievalType: RetrievalType | string,
    layerStep: number, tokenStep: number, layerOffset: number, maxBlockNum: number, maxBatchSize: number, maxThreadNum: number,
  ) {
    const f = (name: string): string => `KVCacheConfig.${name}`;
    this.layerNum = checkInt(f('layerNum'), layerNum, 1);
    this.kvHeadNum = checkInt(f('kvHeadNum'), kvHeadNum, 1);
    this.qHeadNum = checkInt(f('qHeadNum'), qHeadNum, 1);
    if (qHeadNum % kvHeadNum !== 0) throw new ConfigError(`${f('qHeadNum')} (kvHeadNum = ${kvHeadNum})`, `a multiple of ${kvHeadNum}`, qHeadNum);
    this.headDim = checkInt(f('headDim'), headDim, 1);
    this.blockLen = checkInt(f('blockLen'), blockLen, 1);
    this.anchorType = parseKtAnchorType(anchorType);
    this.anchorNum = checkInt(`${f('anchorNum')} (blockLen = ${blockLen})`, anchorNum, 1, blockLen);
    if (this.anchorType === AnchorType.QUEST && anchorNum !== 2) {
      throw new ConfigError(`${f('anchorNum')} for anchorType QUEST (slot 0 = per-dim max, slot 1 = per-dim min)`, 2, anchorNum);
    }
    this.kvType = parseGGMLType(kvType);
    if ((this.kvType === GGMLType.Q4_0 || this.kvType === GGMLType.Q8_0) && headDim % 32 !== 0) {
      throw new ConfigError(`${f('headDim')} for kvType ${ggmlTypeName(this.kvType)} (32-value blocks along headDim)`, 'a multiple of 32', headDim);
    }
    this.retrievalType = parseKtRetrievalType(retrievalType);
    this.layerStep = checkInt(f('layerStep'), layerStep, 1);
    this.tokenStep = checkInt(f('tokenStep'), tokenStep, 1);
    this.layerOffset = checkInt(`${f('layerOffset')} (layerNum = ${layerNum})`, layerOffset, 0, layerNum - 1);
    this.maxBlockNum = checkInt(f('maxBlockNum'), maxBlockNum, 1);
    this.maxBatchSize = checkInt(f('maxBatchSize'), maxBatchSize, 1);
    this.maxThreadNum = checkInt(f('maxThreadNum'), maxThreadNum, 1);
  }

  /** The same from an object (every field required); a KVCacheConfig is returned as is. */
  static from(c: KVCacheConfigInit | KVCacheConfig): KVCacheConfig {
    if (c instanceof KVCacheConfig) return c;
    if (typeof c !== 'object' || c === null) throw new ConfigError('KVCacheConfig', 'an object with the 15 fields', c);
    return new KVCacheConfig(
      c.layerNum, c.kvHeadNum, c.qHeadNum, c.headDim, c.blockLen, c.anchorNum, c.anchorType, c.kvType, c.retrievalType,
      c.layerStep, c.tokenStep, c.layerOffset, c.maxBlockNum, c.maxBatchSize, c.maxThreadNum,
    );
  }

  /** The storage dtype of K and V. */
  get dtype(): DType {
    return GGML_DTYPE[this.kvType];
  }

  /** The sparse core's anchor type name. */
  get coreAnchorType(): CoreAnchorType {
    return ANCHOR_CORE[this.anchorType];
  }

  /** The sparse core's retrieval type name. */
  get coreRetrievalType(): CoreRetrievalType {
    return RETRIEVAL_CORE[this.retrievalType];
  }

  /** The fields as plain JSON, enums by name (the dump's meta, ktransformers-dump.ts). */
  toJSON(): Record<string, number | string> {
    return {
      layerNum: this.layerNum, kvHeadNum: this.kvHeadNum, qHeadNum: this.qHeadNum, headDim: this.headDim, blockLen: this.blockLen,
      anchorNum: this.anchorNum, anchorType: anchorTypeName(this.anchorType), kvType: ggmlTypeName(this.kvType),
      retrievalType: retrievalTypeName(this.retrievalType), layerStep: this.layerStep, tokenStep: this.tokenStep,
      layerOffset: this.layerOffset, maxBlockNum: this.maxBlockNum, maxBatchSize: this.maxBatchSize, maxThreadNum: this.maxThreadNum,
    };
  }
}
