/**
 * BlockStorage: the K/V bytes of a paged cache, the only module that reads or writes them
 * (DESIGN decision 2). Per layer one arena allocation for K and one for V:
 *
 *   K of layer l:  [nBlocks, nKvHeads, blockLen, kRowBytes]     (V alike with vRowBytes)
 *
 *   block b ──┬── head 0: row(slot 0) row(slot 1) ... row(slot blockLen-1)
 *             ├── head 1: ...
 *             └── head nKvHeads-1: ...
 *
 *   row (layer, block, head, slot) at  kBase[l] + block * kBlockBytes + head * kHeadStrideBytes + slot * kRowBytes
 *   kHeadStrideBytes = blockLen * kRowBytes,  kBlockBytes = nKvHeads * kHeadStrideBytes
 *
 * NOTE(1): Head-major inside a block: one head's rows of a block are contiguous, so an attention
 *   kernel streams each K/V row once for all query heads of its group. Token stride = rowBytes and
 *   head stride = blockLen * rowBytes are the same for every block, as a KVView requires.
 * NOTE(2): Rows are stored in their dtype (f32 / f16 / bf16 / q8_0 / q4_0 for K and V
 *   independently) through core/dtype's row codecs; quantized dtypes need headDim % 32 == 0.
 * NOTE(3): Block 0 (the null block) has storage like any other block, so a block's address is
 *   plain arithmetic; nothing is ever written to it.
 * NOTE(4): Offsets are stable (arena allocations never move); byte views are taken from the arena
 *   right before use because a shared memory's buffer changes when it grows.
 */
import type { Arena } from '../../core/arena.js';
import { checkRowLength, decodeRow, encodeRow, rowSizeBytes, type DType } from '../../core/dtype.js';
import { DisposedError, assert, checkInt } from '../../core/errors.js';

export interface BlockStorageConfig {
  arena: Arena;
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  kDtype: DType;
  vDtype: DType;
  /** Blocks, the null block included. */
  nBlocks: number;
  /** Token slots per block. */
  blockLen: number;
}

/** One rotation of every stored key by the same angle set (seqShift): see rotateKeys. */
export interface KeyRotation {
  /** [rotaryDim / 2] cos of delta * invFreq[i]. */
  readonly cos: Float64Array;
  /** [rotaryDim / 2] sin of delta * invFreq[i]. */
  readonly sin: Float64Array;
  readonly rotaryDim: number;
  readonly pairing: 'neox' | 'interleaved';
}

export class BlockStorage {
  readonly arena: Arena;
  readonly nLayers: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kDtype: DType;
  readonly vDtype: DType;
  readonly nBlocks: number;
  readonly blockLen: number;
  readonly kRowBytes: number;
  readonly vRowBytes: number;
  /** = kRowBytes (NOTE(1)). */
  readonly kTokenStrideBytes: number;
  readonly vTokenStrideBytes: number;
  /** = blockLen * kRowBytes. */
  readonly kHeadStrideBytes: number;
  readonly vHeadStrideBytes: number;
  /** = nKvHeads * blockLen * kRowBytes: one block of one layer's K. */
  readonly kBlockBytes: number;
  readonly vBlockBytes: number;
  /** [nLayers] arena offsets of K ([nBlocks, nKvHeads, blockLen, kRowBytes]). */
  private readonly kBase: number[] = [];
  /** [nLayers] arena offsets of V ([nBlocks, nKvHeads, blockLen, vRowBytes]). */
  private readonly vBase: number[] = [];
  /** [headDim] one decoded row (reads, rotation). */
  private readonly rowScratch: Float32Array;
  private disposed = false;

  /** Allocates every layer or nothing (a failed allocation frees what was taken, then throws). */
  constructor(c: BlockStorageConfig) {
    checkInt('nLayers', c.nLayers, 1);
    checkInt('nKvHeads', c.nKvHeads, 1);
    checkInt('headDim', c.headDim, 1);
    checkInt('nBlocks (the null block included)', c.nBlocks, 2);
    checkInt('blockLen', c.blockLen, 1);
    checkRowLength(c.kDtype, c.headDim, 'headDim (K rows)');
    checkRowLength(c.vDtype, c.headDim, 'headDim (V rows)');
    this.arena = c.arena;
    this.nLayers = c.nLayers;
    this.nKvHeads = c.nKvHeads;
    this.headDim = c.headDim;
    this.kDtype = c.kDtype;
    this.vDtype = c.vDtype;
    this.nBlocks = c.nBlocks;
    this.blockLen = c.blockLen;
    this.kRowBytes = rowSizeBytes(c.kDtype, c.headDim);
    this.vRowBytes = rowSizeBytes(c.vDtype, c.headDim);
    this.kTokenStrideBytes = this.kRowBytes;
    this.vTokenStrideBytes = this.vRowBytes;
    this.kHeadStrideBytes = c.blockLen * this.kRowBytes;
    this.vHeadStrideBytes = c.blockLen * this.vRowBytes;
    this.kBlockBytes = c.nKvHeads * this.kHeadStrideBytes;
    this.vBlockBytes = c.nKvHeads * this.vHeadStrideBytes;
    this.rowScratch = new Float32Array(c.headDim);
    try {
      for (let l = 0; l < c.nLayers; l++) {
        this.kBase.push(c.arena.alloc(c.nBlocks * this.kBlockBytes));
        this.vBase.push(c.arena.alloc(c.nBlocks * this.vBlockBytes));
      }
    } catch (e) {
      this.freeAll();
      throw e;
    }
  }

  /** Bytes of K and V storage over all layers. */
  get sizeBytes(): number {
    return this.nLayers * this.nBlocks * (this.kBlockBytes + this.vBlockBytes);
  }

  /** Arena offset of K row (layer, block, head 0, slot): a KVSegment's kOffsetBytes. */
  kOffset(layer: number, block: number, slot: number): number {
    return this.kBase[layer]! + block * this.kBlockBytes + slot * this.kRowBytes;
  }

  /** Arena offset of V row (layer, block, head 0, slot). */
  vOffset(layer: number, block: number, slot: number): number {
    return this.vBase[layer]! + block * this.vBlockBytes + slot * this.vRowBytes;
  }

  /**
   * Snapshot support (paged-snapshot.ts): the raw stored bytes of one block of one layer's K or V,
   * [nKvHeads, blockLen, rowBytes], as a view into the arena: no (de)quantization, writable (a
   * load copies saved bytes in). Valid until the arena grows (NOTE(4)).
   */
  blockView(layer: number, which: 'k' | 'v', block: number): Uint8Array {
    this.checkLive();
    assert(layer >= 0 && layer < this.nLayers && block > 0 && block < this.nBlocks, `raw view of layer ${layer} block ${block}`);
    const size = which === 'k' ? this.kBlockBytes : this.vBlockBytes;
    const at = which === 'k' ? this.kOffset(layer, block, 0) : this.vOffset(layer, block, 0);
    return this.arena.bytes.subarray(at, at + size);
  }

  /**
   * Snapshot support: the raw bytes of slots [slot0, slot0 + n) of one head of `block`,
   * [n, rowBytes] (contiguous: head-major, NOTE(1)); a writable arena view like blockView.
   */
  rowsView(layer: number, which: 'k' | 'v', block: number, head: number, slot0: number, n: number): Uint8Array {
    this.checkLive();
    assert(layer >= 0 && layer < this.nLayers && block > 0 && block < this.nBlocks && head >= 0 && head < this.nKvHeads && slot0 >= 0 && n >= 0 && slot0 + n <= this.blockLen, `raw view of slots [${slot0}, ${slot0 + n}) of head ${head}, block ${block}`);
    const k = which === 'k';
    const at = (k ? this.kOffset(layer, block, slot0) : this.vOffset(layer, block, slot0)) + head * (k ? this.kHeadStrideBytes : this.vHeadStrideBytes);
    return this.arena.bytes.subarray(at, at + n * (k ? this.kRowBytes : this.vRowBytes));
  }

  /**
   * Encode tokens [t0, t0 + n) of k and v ([nTokens, nKvHeads, headDim] f32) into slots
   * [slot0, slot0 + n) of `block` in `layer` (quantizing for q8_0 / q4_0).
   */
  writeRows(layer: number, block: number, slot0: number, n: number, k: Float32Array, v: Float32Array, t0: number): void {
    this.checkLive();
    assert(block > 0 && block < this.nBlocks && slot0 >= 0 && slot0 + n <= this.blockLen, `write of slots [${slot0}, ${slot0 + n}) of block ${block}`);
    const bytes = this.arena.bytes;
    const D = this.headDim;
    const H = this.nKvHeads;
    const kAt = this.kOffset(layer, block, slot0);
    const vAt = this.vOffset(layer, block, slot0);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < H; h++) {
        const src = ((t0 + t) * H + h) * D;
        encodeRow(this.kDtype, k, src, D, bytes, kAt + h * this.kHeadStrideBytes + t * this.kRowBytes);
        encodeRow(this.vDtype, v, src, D, bytes, vAt + h * this.vHeadStrideBytes + t * this.vRowBytes);
      }
    }
  }

  /**
   * Decode slots [slot0, slot0 + n) of `block` in `layer` into tokens [t0, t0 + n) of k and v
   * ([nTokens, nKvHeads, headDim] f32).
   */
  readRows(layer: number, block: number, slot0: number, n: number, k: Float32Array, v: Float32Array, t0: number): void {
    this.checkLive();
    assert(block >= 0 && block < this.nBlocks && slot0 >= 0 && slot0 + n <= this.blockLen, `read of slots [${slot0}, ${slot0 + n}) of block ${block}`);
    const bytes = this.arena.bytes;
    const D = this.headDim;
    const H = this.nKvHeads;
    const kAt = this.kOffset(layer, block, slot0);
    const vAt = this.vOffset(layer, block, slot0);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < H; h++) {
        const dst = ((t0 + t) * H + h) * D;
        decodeRow(this.kDtype, bytes, kAt + h * this.kHeadStrideBytes + t * this.kRowBytes, D, k, dst);
        decodeRow(this.vDtype, bytes, vAt + h * this.vHeadStrideBytes + t * this.vRowBytes, D, v, dst);
      }
    }
  }

  /** Copy every layer's K and V of block `src` to block `dst` (copy-on-write). */
  copyBlock(src: number, dst: number): void {
    this.checkLive();
    assert(src > 0 && dst > 0 && src !== dst, `copy of block ${src} to ${dst}`);
    const bytes = this.arena.bytes;
    for (let l = 0; l < this.nLayers; l++) {
      const ks = this.kBase[l]! + src * this.kBlockBytes;
      bytes.copyWithin(this.kBase[l]! + dst * this.kBlockBytes, ks, ks + this.kBlockBytes);
      const vs = this.vBase[l]! + src * this.vBlockBytes;
      bytes.copyWithin(this.vBase[l]! + dst * this.vBlockBytes, vs, vs + this.vBlockBytes);
    }
  }

  /**
   * Rotate the keys in slots [slot0, slot0 + n) of `block`, every layer and head, by a fixed
   * angle set (a RoPE position delta): decode (dequantize), rotate each pair in float64, round to
   * f32, encode (requantize). RoPE angles add, so rope(x, p + delta) = rotate(rope(x, p), delta).
   */
  rotateKeys(block: number, slot0: number, n: number, rot: KeyRotation): void {
    this.checkLive();
    assert(block > 0 && slot0 >= 0 && slot0 + n <= this.blockLen, `rotation of slots [${slot0}, ${slot0 + n}) of block ${block}`);
    const bytes = this.arena.bytes;
    const row = this.rowScratch; // [headDim]
    const D = this.headDim;
    const half = rot.rotaryDim / 2;
    const neox = rot.pairing === 'neox';
    for (let l = 0; l < this.nLayers; l++) {
      for (let h = 0; h < this.nKvHeads; h++) {
        for (let t = 0; t < n; t++) {
          const at = this.kOffset(l, block, slot0 + t) + h * this.kHeadStrideBytes;
          decodeRow(this.kDtype, bytes, at, D, row, 0);
          for (let i = 0; i < half; i++) {
            const ia = neox ? i : 2 * i;
            const ib = neox ? i + half : 2 * i + 1;
            const a = row[ia]!;
            const b = row[ib]!;
            row[ia] = a * rot.cos[i]! - b * rot.sin[i]!;
            row[ib] = b * rot.cos[i]! + a * rot.sin[i]!;
          }
          encodeRow(this.kDtype, row, 0, D, bytes, at);
        }
      }
    }
  }

  /** Frees the arena allocations; further use throws DisposedError. */
  dispose(): void {
    if (this.disposed) return;
    this.freeAll();
    this.disposed = true;
  }

  private freeAll(): void {
    if (!this.arena.isDisposed) {
      for (const o of this.kBase) this.arena.free(o);
      for (const o of this.vBase) this.arena.free(o);
    }
    this.kBase.length = 0;
    this.vBase.length = 0;
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('paged KV storage', 'a live storage', 'a disposed storage');
  }
}
