/**
 * ktransformers' CPU `KVCache` (cpuinfer_ext.kvcache.KVCache, its long-context mode) in its own
 * vocabulary, on top of the engine's block storage (kv/paged/block-storage.ts) and block-sparse
 * attention core (kv/sparse/sparse-attention.ts). Storage, anchors, importance, selection and
 * attention are the core's; this file translates ids, shapes and calls, and fixes what the
 * original gets wrong (reference: shared/reference/ktransformers-kvcache.md).
 *
 *   const kv = new KVCache(new KVCacheConfig(...15 fields...));
 *   kv.updateKVCacheOneBlock(k, v, layer, block)         k, v [kvHeadNum, blockLen, headDim] f32
 *   kv.attn(q, out, lse, layer, tokenIdx, table, seqlens, pick, init, local)
 *   kv.dumpKVCache(table, totalLen, path);  other.loadKVCache(path);  other.attn(q, out, lse, layer, 0)
 *
 * NOTE(1): Physical block ids are [0, maxBlockNum); id i lives in storage block i + 1 (storage
 *   block 0 is the pool's null block, never written), so the storage has maxBlockNum + 1 blocks.
 *   Layout per (layer, block): K and V [kvHeadNum, blockLen, rowBytes(kvType)], quantized along
 *   headDim. The original keeps V transposed and quantizes it along tokens: an implementation
 *   choice, not a contract; the block accessors take and return [kvHeadNum, blockLen, headDim].
 * NOTE(2): attn. Batch = cacheSeqlens.length (1 without a table); qLen = qIn.length / (batch *
 *   qHeadNum * headDim). Row b has cacheSeqlens[b] tokens, new ones included: query token j sits
 *   at position seqLen - qLen + j and sees keys at positions <= its own (causal among the new
 *   tokens; the original read out of bounds for qLen > 1). A token at a negative position (a row
 *   shorter than qLen, e.g. an empty row) sees no key: out 0, lse -Infinity (the original's
 *   |lse| < 1e-6 "empty" sentinel misread a true lse near 0). Without a table the one row is
 *   cacheTotalLen tokens over physical blocks 0, 1, 2, ... (the state loadKVCache leaves).
 *   q, out and lse are f32 (the original's q and out are fp16); lse is the natural log over the
 *   attended keys, for merging with other partial attention. output may be qIn itself.
 * NOTE(3): Per-call pickBlockNum / initBlockNum / localBlockNum default to the core's (pick 32,
 *   init 1 or ceil(64 / blockLen) for blockLen <= 32, local ceil(4096 / blockLen)); pick -1 is
 *   dense. A row with nFull <= init + pick + local attends densely (ktransformers), unless the
 *   option denseFallback is false. Stored selections are keyed by batch index, as the
 *   original's history: reused across tokenStep tokens and layerStep layers (sparse-config.ts).
 * NOTE(4): Anchors follow keys. updateKVCacheOneBlock recomputes the anchors of that (layer,
 *   block) when it had any (the original left them stale); anchors never computed are computed
 *   from the block's keys when first scored, read (getAnchorOneBlock) or by
 *   calcAnchorAllLayers. For DYNAMIC anchors, updateImportanceOneBlock recomputes them too.
 *   updateAnchorOneBlock overrides them until the block's keys (or DYNAMIC importance) change.
 *   Importance is the caller's data (the original's flow writes it after the K/V): a K/V update
 *   keeps it.
 * NOTE(5): Importance [blockLen, qHeadNum] and anchors [anchorNum, qHeadNum, headDim] per (layer,
 *   physical block) are f32 (the original's accessors take fp16, write the importance to the
 *   wrong place and ignore anchors entirely).
 * NOTE(6): attn runs on the calling thread with the kernels' own thread pool (maxThreadNum
 *   threads, or opts.threads); for ktransformers' submit/sync style wrap it in a CPUInfer task:
 *   cpu.submit(() => kv.attn(...)); cpu.sync(). q is copied into arena scratch that is reused:
 *   no allocation per call once warm.
 */
import { defaultArena, type Arena } from '../core/arena.js';
import { decodeRow, encodeRow } from '../core/dtype.js';
import { DisposedError, OutOfRangeError, checkIndex, checkInt } from '../core/errors.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import { kernelsFor } from '../kernels/registry.js';
import { defaultThreads } from '../kernels/wasm/runtime.js';
import { BlockStorage } from '../kv/paged/block-storage.js';
import { computeAnchors, decodeBlockKeys, type AnchorShape } from '../kv/sparse/anchors.js';
import { ArenaScratch } from '../kv/sparse/arena-scratch.js';
import { SparseAttention, type SparseCallOptions } from '../kv/sparse/sparse-attention.js';
import type { DecodeImportance } from '../kv/sparse/sparse-config.js';
import { AttnRows, checkAttnArgs, checkBlockAddress, checkF32, checkRows } from './ktransformers-checks.js';
import { AnchorType, KVCacheConfig, type KVCacheConfigInit } from './ktransformers-config.js';
import { applyDump, decodeDump, encodeDump, readDumpFile, writeDumpFile } from './ktransformers-dump.js';

export interface KVCacheOptions {
  /** Where storage and scratch live. Default: the process-wide arena. */
  arena?: Arena;
  /** Kernel threads. Default min(maxThreadNum, the machine's default). */
  threads?: number;
  /** Dense attention when every scorable block would be picked anyway (NOTE(3)). Default true. */
  denseFallback?: boolean;
  /** Importance accumulated by attn itself (sparse-config.ts NOTE(3)). Default 'off': the caller owns it. */
  decodeImportance?: DecodeImportance;
}

export class KVCache {
  readonly config: KVCacheConfig;
  readonly arena: Arena;
  /** K/V bytes: storage block i + 1 holds physical block i (NOTE(1)). */
  readonly storage: BlockStorage;
  /** The sparse core: anchors, importance, selections (keyed by storage block ids and batch rows). */
  readonly sparse: SparseAttention;
  readonly kernels: KernelSet;
  private cacheTotalLen = 0;
  private readonly rows = new AttnRows();
  private readonly scratch: ArenaScratch;
  private readonly call: SparseCallOptions = {};
  /** One row's table as storage ids (grown on demand). */
  private table = new Int32Array(16);
  /** Query positions by token count (reused). */
  private readonly positions = new Map<number, Int32Array>();
  private readonly anchorShape: AnchorShape;
  /** [kvHeadNum, blockLen, headDim] one block's decoded keys. */
  private readonly keys: Float32Array;
  /** [anchorNum, qHeadNum, headDim] one block's anchors. */
  private readonly anchorBuf: Float32Array;
  private disposed = false;

  constructor(config: KVCacheConfig | KVCacheConfigInit, opts: KVCacheOptions = {}) {
    const c = KVCacheConfig.from(config);
    this.config = c;
    this.arena = opts.arena ?? defaultArena();
    const threads = checkInt('KVCache threads', opts.threads ?? Math.min(c.maxThreadNum, defaultThreads()), 1);
    this.anchorShape = { anchorNum: c.anchorNum, nqHeads: c.qHeadNum, nKvHeads: c.kvHeadNum, headDim: c.headDim, blockLen: c.blockLen };
    this.keys = new Float32Array(c.kvHeadNum * c.blockLen * c.headDim);
    this.anchorBuf = new Float32Array(c.anchorNum * c.qHeadNum * c.headDim);
    const storage = new BlockStorage({
      arena: this.arena, nLayers: c.layerNum, nKvHeads: c.kvHeadNum, headDim: c.headDim,
      kDtype: c.dtype, vDtype: c.dtype, nBlocks: c.maxBlockNum + 1, blockLen: c.blockLen,
    });
    try {
      this.sparse = new SparseAttention(storage, c.qHeadNum, {
        anchorType: c.coreAnchorType, anchorNum: c.anchorNum, retrievalType: c.coreRetrievalType,
        tokenStep: c.tokenStep, layerStep: c.layerStep, layerOffset: c.layerOffset, denseLayers: 0,
        denseFallback: opts.denseFallback ?? true, importanceQueries: 0, decodeImportance: opts.decodeImportance ?? 'off',
      });
      this.kernels = kernelsFor(this.arena, threads);
    } catch (e) {
      storage.dispose();
      throw e;
    }
    this.storage = storage;
    this.scratch = new ArenaScratch(this.arena);
  }

  getLayerNum(): number {
    return this.config.layerNum;
  }
  getKvHeadNum(): number {
    return this.config.kvHeadNum;
  }
  getQHeadNum(): number {
    return this.config.qHeadNum;
  }
  getHeadDim(): number {
    return this.config.headDim;
  }
  getBlockLen(): number {
    return this.config.blockLen;
  }
  getAnchorNum(): number {
    return this.config.anchorNum;
  }

  /** Tokens of the identity-mapped context (0 at construction; the original left it uninitialised). */
  getCacheTotalLen(): number {
    return this.cacheTotalLen;
  }

  /** Blocks of the identity-mapped context: ceil(cacheTotalLen / blockLen). */
  getCacheTotalBlockNum(): number {
    return Math.ceil(this.cacheTotalLen / this.config.blockLen);
  }

  /** Set the identity-mapped context's length, in [0, maxBlockNum * blockLen]. */
  updateCacheTotalLen(cacheTotalLen: number): void {
    this.checkLive();
    const max = this.config.maxBlockNum * this.config.blockLen;
    if (typeof cacheTotalLen !== 'number' || !Number.isInteger(cacheTotalLen) || cacheTotalLen < 0 || cacheTotalLen > max) {
      throw new OutOfRangeError(`cacheTotalLen (maxBlockNum ${this.config.maxBlockNum} x blockLen ${this.config.blockLen})`, `an integer in [0, ${max}]`, cacheTotalLen);
    }
    this.cacheTotalLen = cacheTotalLen;
  }

  /**
   * Sparse attention of qIn [batch, qLen, qHeadNum, headDim] into output (same shape) and attnLse
   * [batch, qLen, qHeadNum] (NOTE(2), NOTE(3)). Every argument is checked before any row runs.
   */
  attn(
    qIn: Float32Array, output: Float32Array, attnLse: Float32Array, layerIdx: number, generateTokenIdx: number,
    blockTable?: Int32Array, cacheSeqlens?: Int32Array, pickBlockNum?: number, initBlockNum?: number, localBlockNum?: number,
  ): void {
    this.checkLive();
    const c = this.config;
    checkIndex(`layerIdx (layerNum = ${c.layerNum})`, layerIdx, c.layerNum);
    checkInt('generateTokenIdx', generateTokenIdx, 0);
    const dflt = this.sparse.config;
    const call = this.call;
    call.pick = checkInt('pickBlockNum (-1 = dense)', pickBlockNum ?? dflt.pick, -1);
    call.init = checkInt('initBlockNum', initBlockNum ?? dflt.init, 0);
    call.local = checkInt('localBlockNum', localBlockNum ?? dflt.local, 0);
    const rows = this.rows;
    checkAttnArgs(c, rows, this.cacheTotalLen, qIn, output, attnLse, blockTable, cacheSeqlens);
    const H = c.qHeadNum;
    const tok = H * c.headDim; // floats per query token
    const qLen = rows.qLen;
    const qOff = this.scratch.get('kt.q', qLen * tok * 4);
    const outOff = this.scratch.get('kt.out', qLen * tok * 4);
    const lseOff = this.scratch.get('kt.lse', qLen * H * 4);
    for (let b = 0; b < rows.batch; b++) {
      const seqLen = rows.seqLen(b);
      const table = this.rowTable(b, Math.ceil(seqLen / c.blockLen));
      const nVis = Math.min(qLen, seqLen);
      const t0 = b * qLen + qLen - nVis; // first token (of the whole batch) at a position >= 0
      output.fill(0, b * qLen * tok, t0 * tok);
      attnLse.fill(-Infinity, b * qLen * H, t0 * H);
      if (nVis === 0) continue;
      const positions = this.positionsFor(nVis);
      for (let i = 0; i < nVis; i++) positions[i] = seqLen - nVis + i;
      let f32 = this.arena.f32;
      const q0 = qOff >> 2;
      const src = t0 * tok;
      for (let i = 0; i < nVis * tok; i++) f32[q0 + i] = qIn[src + i]!;
      this.sparse.attend(this.kernels, layerIdx, b, table, seqLen, qOff, outOff, lseOff, positions, generateTokenIdx, call);
      f32 = this.arena.f32; // the kernels' scratch may have grown the memory
      const o0 = outOff >> 2;
      for (let i = 0; i < nVis * tok; i++) output[src + i] = f32[o0 + i]!;
      const l0 = lseOff >> 2;
      for (let i = 0; i < nVis * H; i++) attnLse[t0 * H + i] = f32[l0 + i]!;
    }
  }

  /**
   * Compute the anchors of every full block of the rows (blockTable / cacheSeqlens as in attn, or
   * the identity-mapped context) in every layer, from their keys (and importance for DYNAMIC):
   * the original's calc_anchor_all_layers.
   */
  calcAnchorAllLayers(blockTable?: Int32Array, cacheSeqlens?: Int32Array): void {
    this.checkLive();
    const c = this.config;
    const rows = this.rows;
    checkRows(c, rows, this.cacheTotalLen, blockTable, cacheSeqlens);
    for (let b = 0; b < rows.batch; b++) {
      const nFull = Math.floor(rows.seqLen(b) / c.blockLen);
      const table = this.rowTable(b, nFull);
      for (let l = 0; l < c.layerNum; l++) for (let i = 0; i < nFull; i++) this.refreshAnchors(l, table[i]!);
    }
  }

  /** Write one block's K and V, each [kvHeadNum, blockLen, headDim] f32, encoded to kvType (NOTE(1), NOTE(4)). */
  updateKVCacheOneBlock(kIn: Float32Array, vIn: Float32Array, layerId: number, blockIdx: number): void {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    const n = c.kvHeadNum * c.blockLen * c.headDim;
    const shape = `[kvHeadNum, blockLen, headDim] = [${c.kvHeadNum}, ${c.blockLen}, ${c.headDim}]`;
    checkF32('kIn', kIn, n, shape);
    checkF32('vIn', vIn, n, shape);
    const st = this.storage;
    const phys = blockIdx + 1;
    const D = c.headDim;
    const rowsPerBlock = c.kvHeadNum * c.blockLen; // [head, slot] rows, the same order in both layouts
    const kb = st.blockView(layerId, 'k', phys);
    for (let r = 0; r < rowsPerBlock; r++) encodeRow(c.dtype, kIn, r * D, D, kb, r * st.kRowBytes);
    const vb = st.blockView(layerId, 'v', phys);
    for (let r = 0; r < rowsPerBlock; r++) encodeRow(c.dtype, vIn, r * D, D, vb, r * st.vRowBytes);
    if (this.sparse.hasAnchors(layerId, phys)) this.refreshAnchors(layerId, phys);
  }

  /** Read one block's K and V, decoded to f32 [kvHeadNum, blockLen, headDim] (the kvType round trip). */
  getKVCacheOneBlock(kOut: Float32Array, vOut: Float32Array, layerId: number, blockIdx: number): void {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    const n = c.kvHeadNum * c.blockLen * c.headDim;
    const shape = `[kvHeadNum, blockLen, headDim] = [${c.kvHeadNum}, ${c.blockLen}, ${c.headDim}]`;
    checkF32('kOut', kOut, n, shape);
    checkF32('vOut', vOut, n, shape);
    const st = this.storage;
    const D = c.headDim;
    const rowsPerBlock = c.kvHeadNum * c.blockLen;
    const kb = st.blockView(layerId, 'k', blockIdx + 1);
    for (let r = 0; r < rowsPerBlock; r++) decodeRow(c.dtype, kb, r * st.kRowBytes, D, kOut, r * D);
    const vb = st.blockView(layerId, 'v', blockIdx + 1);
    for (let r = 0; r < rowsPerBlock; r++) decodeRow(c.dtype, vb, r * st.vRowBytes, D, vOut, r * D);
  }

  /** Overwrite one block's importance [blockLen, qHeadNum] f32 (NOTE(4), NOTE(5)). */
  updateImportanceOneBlock(importance: Float32Array, layerId: number, blockIdx: number): void {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    checkF32('importance', importance, c.blockLen * c.qHeadNum, `[blockLen, qHeadNum] = [${c.blockLen}, ${c.qHeadNum}]`);
    this.sparse.setImportance(layerId, blockIdx + 1, importance);
    if (c.anchorType === AnchorType.DYNAMIC && this.sparse.hasAnchors(layerId, blockIdx + 1)) this.refreshAnchors(layerId, blockIdx + 1);
  }

  /** Read one block's importance [blockLen, qHeadNum] into `out`; returns it. */
  getImportanceOneBlock(out: Float32Array, layerId: number, blockIdx: number): Float32Array {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    checkF32('importance', out, c.blockLen * c.qHeadNum, `[blockLen, qHeadNum] = [${c.blockLen}, ${c.qHeadNum}]`);
    out.set(this.sparse.getImportance(layerId, blockIdx + 1));
    return out;
  }

  /** Overwrite one block's anchors [anchorNum, qHeadNum, headDim] f32: scoring uses them (NOTE(4)). */
  updateAnchorOneBlock(anchor: Float32Array, layerId: number, blockIdx: number): void {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    checkF32('anchor', anchor, this.anchorBuf.length, `[anchorNum, qHeadNum, headDim] = [${c.anchorNum}, ${c.qHeadNum}, ${c.headDim}]`);
    this.sparse.setAnchors(layerId, blockIdx + 1, anchor);
  }

  /** Read one block's anchors [anchorNum, qHeadNum, headDim] into `out` (computed first if needed, NOTE(4)); returns it. */
  getAnchorOneBlock(out: Float32Array, layerId: number, blockIdx: number): Float32Array {
    this.checkLive();
    const c = this.config;
    checkBlockAddress(c, layerId, blockIdx);
    checkF32('anchor', out, this.anchorBuf.length, `[anchorNum, qHeadNum, headDim] = [${c.anchorNum}, ${c.qHeadNum}, ${c.headDim}]`);
    if (!this.sparse.hasAnchors(layerId, blockIdx + 1)) this.refreshAnchors(layerId, blockIdx + 1);
    out.set(this.sparse.getAnchors(layerId, blockIdx + 1));
    return out;
  }

  /**
   * Save logical blocks [0, ceil(cacheTotalLen / blockLen)) of blockTable (row 0: physical ids)
   * with their anchors and importance, and cacheTotalLen, to a snapshot file, atomically
   * (ktransformers-dump.ts).
   */
  dumpKVCache(blockTable: Int32Array, cacheTotalLen: number, path: string): void {
    this.checkLive();
    writeDumpFile(this, blockTable, cacheTotalLen, path);
  }

  /**
   * Load a file written by dumpKVCache: blocks to physical 0, 1, ... (identity-mapped),
   * cacheTotalLen restored. A file for another config is rejected before anything changes
   * (ktransformers-dump.ts NOTE(2)).
   */
  loadKVCache(path: string): void {
    this.checkLive();
    const d = readDumpFile(this, path);
    this.cacheTotalLen = applyDump(this, d);
  }

  /** dumpKVCache to bytes in memory. */
  dumpKVCacheBytes(blockTable: Int32Array, cacheTotalLen: number): Uint8Array {
    this.checkLive();
    return encodeDump(this, blockTable, cacheTotalLen);
  }

  /** loadKVCache from bytes in memory. */
  loadKVCacheBytes(bytes: Uint8Array): void {
    this.checkLive();
    const d = decodeDump(this, bytes);
    this.cacheTotalLen = applyDump(this, d);
  }

  /** Free storage and scratch; later calls throw DisposedError. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.sparse.dispose();
    this.scratch.dispose();
    this.storage.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('ktransformers KVCache', 'a live KVCache', 'a disposed one');
  }

  /** Row b's first nBlocks logical blocks as storage ids (physical + 1, NOTE(1)). */
  private rowTable(b: number, nBlocks: number): Int32Array {
    if (this.table.length < nBlocks) this.table = new Int32Array(Math.max(nBlocks, 2 * this.table.length));
    const t = this.table;
    const rows = this.rows;
    if (rows.table === null) {
      for (let i = 0; i < nBlocks; i++) t[i] = i + 1;
    } else {
      const at = b * rows.stride;
      for (let i = 0; i < nBlocks; i++) t[i] = rows.table[at + i]! + 1;
    }
    return t;
  }

  private positionsFor(n: number): Int32Array {
    let p = this.positions.get(n);
    if (!p) {
      p = new Int32Array(n);
      this.positions.set(n, p);
    }
    return p;
  }

  /** (Re)compute the anchors of storage block `phys` in `layer` from its keys, as the core does when scoring. */
  private refreshAnchors(layer: number, phys: number): void {
    const c = this.config;
    decodeBlockKeys(this.storage, layer, phys, c.blockLen, this.keys);
    const imp = c.anchorType === AnchorType.DYNAMIC ? this.sparse.getImportance(layer, phys) : null;
    computeAnchors(c.coreAnchorType, this.anchorShape, this.keys, c.blockLen, imp, 0, this.anchorBuf, 0);
    this.sparse.setAnchors(layer, phys, this.anchorBuf);
  }
}
