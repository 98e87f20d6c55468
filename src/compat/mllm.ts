/**
 * MLLM's `StaticCache`, `DynamicCache` and `SubStaticCache` (C++, mllm::nn::lmcache) in
 * their own vocabulary, on top of the engine's StaticCache, DynamicCache and SubCache.
 * Storage, bounds, growth and sub-view write-through are the core's; this file translates
 * tensors, names, dtypes and devices.
 *
 *   use_fa2 = true  (MLLM's default): tensors are [B, S, H, D]  -> core layout 'bshd'
 *   use_fa2 = false (eager mode):     tensors are [B, H, S, D]  -> core layout 'bhsd'
 *
 * NOTE(1): GQA. In eager mode MLLM stores and returns every KV head repeated q_heads/kv_heads
 *   times (cache head h*rep + r holds input head h), so the output feeds a plain multi-head
 *   attention. The core stores each KV head once; the facade repeats on read-out only, so the
 *   returned tensors are [1, qHeads, S, D] as in MLLM without the memory cost. FA2 mode returns
 *   [1, S, kvHeads, D] (FlashAttention-2 handles GQA itself). `repeatKv: false` turns the eager
 *   repetition off.
 * NOTE(2): Differences from MLLM's sources, deliberate: the FA2 StaticCache path (NYI upstream)
 *   works; DynamicCache honours use_fa2 for the input layout (upstream always asserts
 *   [B, H, S, D]); shapes are checked fully (not only dim 1) with ShapeError; a full cache
 *   throws CapacityError; SubStaticCache(parent, start, len) is the window [start, start+len)
 *   whose count starts at what the parent already holds there, and whose writes extend the
 *   parent's count when they continue it (see kv/sub-cache.ts).
 * NOTE(3): The StaticCache is single-sequence (batch 1) as in MLLM; DynamicCache takes its
 *   batch from the first update and is f32 (MLLM's DynamicCache has no dtype parameter).
 */
import type { Arena } from '../core/arena.js';
import { parseDType, type DType } from '../core/dtype.js';
import { ConfigError, StateError, checkIndex } from '../core/errors.js';
import { checkSameShape, checkShape, stackHeadMajor, type Tensor } from '../core/tensor.js';
import { resolveDenseConfig, type DenseCache } from '../kv/dense-cache.js';
import { DynamicCache } from '../kv/dynamic-cache.js';
import { StaticCache } from '../kv/static-cache.js';
import { SubCache } from '../kv/sub-cache.js';
import type { KVLayout } from '../kv/types.js';

/** MLLM's DataTypes names are accepted next to the engine's. */
export type MllmDType = DType | 'kFloat32' | 'kFloat16' | 'kBFloat16' | 'kFP32' | 'kFP16' | 'kBF16';
/** Only the CPU exists here (WASM SIMD on workers counts as CPU). */
export type MllmDeviceType = 'cpu' | 'kCPU';

const MLLM_DTYPES: Readonly<Record<string, DType>> = {
  kFloat32: 'f32',
  kFP32: 'f32',
  kFloat16: 'f16',
  kFP16: 'f16',
  kBFloat16: 'bf16',
  kBF16: 'bf16',
};

function mllmDType(d: unknown, what: string): DType {
  return parseDType(typeof d === 'string' && Object.prototype.hasOwnProperty.call(MLLM_DTYPES, d) ? MLLM_DTYPES[d] : d, what);
}

export interface MllmCacheOptions {
  /** Where storage lives. Default: the process-wide arena. */
  arena?: Arena;
  /** Eager mode only: return KV heads repeated to qHeads as MLLM does (NOTE(1)). Default true. */
  repeatKv?: boolean;
}

export interface MllmDynamicCacheOptions extends MllmCacheOptions {
  /** Bound on positions per layer (the core needs one). Default 32768. */
  maxSeqLen?: number;
  /** Positions allocated per layer at first; doubles from there. Default min(256, maxSeqLen). */
  initialCapacity?: number;
}

/** The translation the three caches share: tensor checks in, read-outs in MLLM's layout out. */
abstract class MllmCacheBase {
  readonly layerNums: number;
  readonly qHeads: number;
  readonly kvHeads: number;
  readonly kvDims: number;
  readonly useFa2: boolean;
  /** Eager-mode read-outs repeat KV heads to qHeads. */
  readonly repeatKv: boolean;
  protected readonly layout: KVLayout;
  /** Times each KV head appears in read-outs. */
  protected readonly repeat: number;

  protected constructor(layerNums: number, qHeads: number, kvHeads: number, kvDims: number, useFa2: boolean, repeatKv: boolean) {
    this.layerNums = layerNums;
    this.qHeads = qHeads;
    this.kvHeads = kvHeads;
    this.kvDims = kvDims;
    this.useFa2 = useFa2 !== false;
    this.repeatKv = repeatKv;
    this.layout = this.useFa2 ? 'bshd' : 'bhsd';
    this.repeat = !this.useFa2 && repeatKv ? qHeads / kvHeads : 1;
  }

  /** The engine cache, or null before a lazily created one exists. */
  protected abstract current(): DenseCache | null;
  /** The engine cache to write `k` into (created on first use by DynamicCache). */
  protected abstract coreFor(k: Tensor): DenseCache;
  /** Batch size the inputs must have, or 'B' while it is still free. */
  protected abstract batch(): number | 'B';

  /** Append k, v to `layerIdx` and return that layer's whole cached K and V in the input layout. */
  updateKVCache(layerIdx: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const B = this.batch();
    const want = this.useFa2 ? [B, 'S', this.kvHeads, this.kvDims] : [B, this.kvHeads, 'S', this.kvDims];
    checkShape('k', k, want);
    checkSameShape('k', k, 'v', v);
    this.coreFor(k).append(layerIdx, k.data, v.data);
    return this.getKVCache(layerIdx);
  }

  /** The cached K and V of `layerIdx` without writing. */
  getKVCache(layerIdx: number): [Tensor, Tensor] {
    const core = this.current();
    if (!core) throw new StateError('getKVCache before the first updateKVCache', 'a cache that has seen one update (its batch size is not known yet)', 'none');
    const len = core.seqLen(layerIdx, 0);
    const ks: Float32Array[] = [];
    const vs: Float32Array[] = [];
    for (let b = 0; b < core.batchSize; b++) {
      ks.push(core.keys(layerIdx, b));
      vs.push(core.values(layerIdx, b));
    }
    return [
      stackHeadMajor(ks, this.kvHeads, len, this.kvDims, this.layout, this.repeat),
      stackHeadMajor(vs, this.kvHeads, len, this.kvDims, this.layout, this.repeat),
    ];
  }

  /** Tokens cached in `layerIdx`. */
  getCurrentSeqCnt(layerIdx = 0): number {
    const core = this.current();
    if (core) return core.seqLen(layerIdx, 0);
    checkIndex('layerIdx', layerIdx, this.layerNums);
    return 0;
  }

  /** Set every layer's count without writing (MLLM's setCurrentSeqCnt). */
  setCurrentSeqCnt(seq: number): void {
    const core = this.current();
    if (!core) {
      if (seq === 0) return;
      throw new StateError('setCurrentSeqCnt before the first updateKVCache', 'seq 0', seq);
    }
    for (let l = 0; l < core.nLayers; l++) for (let b = 0; b < core.batchSize; b++) core.setSeqLen(l, b, seq);
  }

  /** Forget every token (storage is kept). */
  clearCache(): void {
    this.current()?.reset();
  }

  getLayerNums(): number {
    return this.layerNums;
  }

  dispose(): void {
    this.current()?.dispose();
  }
}

/** `StaticCache(max_cache_length, layer_nums, q_heads, kv_heads, kv_dims, k_dtype, v_dtype, device_type = kCPU, use_fa2 = true)`. */
export class MllmStaticCache extends MllmCacheBase {
  readonly core: StaticCache;
  readonly maxCacheLength: number;

  constructor(
    maxCacheLength: number,
    layerNums: number,
    qHeads: number,
    kvHeads: number,
    kvDims: number,
    kDtype: MllmDType,
    vDtype: MllmDType,
    deviceType: MllmDeviceType = 'cpu',
    useFa2 = true,
    opts: MllmCacheOptions = {},
  ) {
    if (deviceType !== 'cpu' && deviceType !== 'kCPU') throw new ConfigError('deviceType', "'cpu' (kCPU): this engine stores KV in CPU/WASM memory", deviceType);
    const core = new StaticCache({
      nLayers: layerNums,
      batchSize: 1,
      nKvHeads: kvHeads,
      nHeads: qHeads,
      headDim: kvDims,
      maxSeqLen: maxCacheLength,
      kDtype: mllmDType(kDtype, 'kDtype'),
      vDtype: mllmDType(vDtype, 'vDtype'),
      layout: useFa2 !== false ? 'bshd' : 'bhsd',
      arena: opts.arena,
    });
    super(layerNums, qHeads, kvHeads, kvDims, useFa2, opts.repeatKv ?? true);
    this.core = core;
    this.maxCacheLength = maxCacheLength;
  }

  protected current(): DenseCache {
    return this.core;
  }

  protected coreFor(): DenseCache {
    return this.core;
  }

  protected batch(): number {
    return 1;
  }
}

/** `DynamicCache(layer_nums, q_heads, kv_heads, kv_dims, use_fa2 = true)`: f32, grows by doubling. */
export class MllmDynamicCache extends MllmCacheBase {
  private core_: DynamicCache | null = null;
  private readonly opts: MllmDynamicCacheOptions;
  private readonly maxSeqLen: number;

  constructor(layerNums: number, qHeads: number, kvHeads: number, kvDims: number, useFa2 = true, opts: MllmDynamicCacheOptions = {}) {
    const maxSeqLen = opts.maxSeqLen ?? 32768;
    // Validate now (the core cache itself waits for the first update to learn the batch size).
    resolveDenseConfig({ nLayers: layerNums, nKvHeads: kvHeads, nHeads: qHeads, headDim: kvDims, maxSeqLen });
    super(layerNums, qHeads, kvHeads, kvDims, useFa2, opts.repeatKv ?? true);
    this.opts = opts;
    this.maxSeqLen = maxSeqLen;
  }

  /** The engine cache, once the first update has fixed the batch size. */
  get core(): DynamicCache | null {
    return this.core_;
  }

  protected current(): DenseCache | null {
    return this.core_;
  }

  protected coreFor(k: Tensor): DenseCache {
    this.core_ ??= new DynamicCache({
      nLayers: this.layerNums,
      batchSize: k.shape[0]!,
      nKvHeads: this.kvHeads,
      nHeads: this.qHeads,
      headDim: this.kvDims,
      maxSeqLen: this.maxSeqLen,
      initialCapacity: this.opts.initialCapacity,
      dtype: 'f32',
      layout: this.layout,
      arena: this.opts.arena,
    });
    return this.core_;
  }

  protected batch(): number | 'B' {
    return this.core_ ? this.core_.batchSize : 'B';
  }

  override updateKVCache(layerIdx: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const fresh = this.core_ === null;
    try {
      return super.updateKVCache(layerIdx, k, v);
    } catch (e) {
      // A rejected first update must not fix the batch size.
      if (fresh && this.core_) {
        this.core_.dispose();
        this.core_ = null;
      }
      throw e;
    }
  }
}

/** `SubStaticCache(parent, start_idx, len)`: the window [startIdx, startIdx + len) of a StaticCache, sharing its memory. */
export class MllmSubStaticCache extends MllmCacheBase {
  readonly core: SubCache;
  readonly parent: MllmStaticCache;

  constructor(parent: MllmStaticCache, startIdx: number, len: number) {
    const core = new SubCache(parent.core, startIdx, len);
    super(parent.layerNums, parent.qHeads, parent.kvHeads, parent.kvDims, parent.useFa2, parent.repeatKv);
    this.core = core;
    this.parent = parent;
  }

  protected current(): DenseCache {
    return this.core;
  }

  protected coreFor(): DenseCache {
    return this.core;
  }

  protected batch(): number {
    return 1;
  }
}

/** MLLM's names, for `new mllm.StaticCache(...)`. */
export const mllm = {
  StaticCache: MllmStaticCache,
  DynamicCache: MllmDynamicCache,
  SubStaticCache: MllmSubStaticCache,
} as const;
