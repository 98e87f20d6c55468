/**
 * Test fixture for the ktransformers KVCache facade: configs, rows of random blocks under
 * scattered physical ids, and a naive float64 attention over the decoded blocks (independent of
 * src/kv/sparse and the kernels).
 */
import { KVCache, type KVCacheOptions } from '../../src/compat/ktransformers-kvcache.js';
import { AnchorType, GGMLType, KVCacheConfig, RetrievalType, type KVCacheConfigInit } from '../../src/compat/ktransformers-config.js';
import type { Arena } from '../../src/core/arena.js';
import { normalArray, type Rng } from './rng.js';

export const BASE: KVCacheConfigInit = {
  layerNum: 2, kvHeadNum: 2, qHeadNum: 4, headDim: 32, blockLen: 16, anchorNum: 1,
  anchorType: AnchorType.BLOCK_MEAN, kvType: GGMLType.FP32, retrievalType: RetrievalType.LAYER,
  layerStep: 1, tokenStep: 1, layerOffset: 0, maxBlockNum: 24, maxBatchSize: 4, maxThreadNum: 1,
};

export function makeCache(arena: Arena, over: Partial<KVCacheConfigInit> = {}, opts: KVCacheOptions = {}): KVCache {
  return new KVCache(KVCacheConfig.from({ ...BASE, ...over }), { arena, ...opts });
}

/** Random K and V [kvHeadNum, blockLen, headDim] written to each physical block of `ids` in `layer`. */
export function fillBlocks(kv: KVCache, rng: Rng, layer: number, ids: ArrayLike<number>): void {
  const c = kv.config;
  const n = c.kvHeadNum * c.blockLen * c.headDim;
  for (let i = 0; i < ids.length; i++) kv.updateKVCacheOneBlock(normalArray(rng, n), normalArray(rng, n), layer, ids[i]!);
}

export interface Reference {
  out: Float64Array;
  lse: Float64Array;
}

/**
 * Dense causal attention of q [qLen, qHeadNum, headDim] over a row (physical ids `table`, seqLen
 * tokens) of `layer`, from the decoded blocks: query j at position seqLen - qLen + j sees keys at
 * positions <= its own; out 0 and lse -Infinity when it sees none.
 */
export function naiveAttention(kv: KVCache, layer: number, table: ArrayLike<number>, seqLen: number, q: Float32Array, qLen: number): Reference {
  const c = kv.config;
  const { qHeadNum: H, kvHeadNum: KV, headDim: D, blockLen: L } = c;
  const group = H / KV;
  const n = KV * L * D;
  const K = new Float32Array(seqLen * KV * D); // [token, kvHead, dim]
  const V = new Float32Array(seqLen * KV * D);
  const kb = new Float32Array(n);
  const vb = new Float32Array(n);
  for (let b = 0; b * L < seqLen; b++) {
    kv.getKVCacheOneBlock(kb, vb, layer, table[b]!);
    for (let g = 0; g < KV; g++) {
      for (let t = 0; t < L && b * L + t < seqLen; t++) {
        for (let d = 0; d < D; d++) {
          K[((b * L + t) * KV + g) * D + d] = kb[(g * L + t) * D + d]!;
          V[((b * L + t) * KV + g) * D + d] = vb[(g * L + t) * D + d]!;
        }
      }
    }
  }
  const out = new Float64Array(qLen * H * D);
  const lse = new Float64Array(qLen * H).fill(-Infinity);
  const scale = 1 / Math.sqrt(D);
  for (let j = 0; j < qLen; j++) {
    const pos = seqLen - qLen + j;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const nk = pos + 1;
      if (nk <= 0) continue;
      const s = new Float64Array(nk);
      let m = -Infinity;
      for (let k = 0; k < nk; k++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(j * H + h) * D + d]! * K[(k * KV + g) * D + d]!;
        s[k] = dot * scale;
        m = Math.max(m, s[k]!);
      }
      let sum = 0;
      for (let k = 0; k < nk; k++) sum += Math.exp(s[k]! - m);
      for (let k = 0; k < nk; k++) {
        const p = Math.exp(s[k]! - m) / sum;
        for (let d = 0; d < D; d++) out[(j * H + h) * D + d] += p * V[(k * KV + g) * D + d]!;
      }
      lse[j * H + h] = m + Math.log(sum);
    }
  }
  return { out, lse };
}

/** Max |a - b| over the elements (Infinity pairs of the same sign count as equal). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
  }
  return m;
}

export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
