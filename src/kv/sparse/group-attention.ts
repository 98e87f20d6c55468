/**
 * The kernel calls of one sparse attention step: one ks.attention per selection group of a
 * SparseStep, each over a view of that group's blocks (block-view.ts).
 *
 *   dense / LAYER   one view, all kv heads, all q heads: q, out, lse used in place
 *   KVHEAD          per kv head g: a single-kv-head view, q heads [g * group, (g + 1) * group)
 *   QHEAD           per q head h: a single-kv-head view of kv head floor(h / group), q head h
 *
 * NOTE(1): With one query token a group's q heads are contiguous in q [1, nqHeads, headDim] (and
 *   in out and lse), so the kernel runs on them in place at shifted offsets. With several tokens
 *   they are strided: q is gathered into arena scratch [nTokens, heads, headDim], the kernel writes
 *   scratch out / lse, which are scattered back. The scratch is taken before any view reads
 *   arena.bytes (a grow replaces the buffer) and reused across calls (no allocation once warm).
 */
import type { KernelSet } from '../../kernels/kernel-set.js';
import type { AttentionOptions } from '../../kernels/types.js';
import type { BlockStorage } from '../paged/block-storage.js';
import type { ArenaScratch } from './arena-scratch.js';
import { fillBlockView, newBlockView, type BlockView } from './block-view.js';
import type { RetrievalType } from './sparse-config.js';
import type { SparseStep } from './selection-store.js';

export class GroupAttention {
  /** One view per selection group, rewritten in place on every call. */
  private readonly views: BlockView[];

  constructor(readonly storage: BlockStorage, readonly nqHeads: number, readonly retrieval: RetrievalType, nGroups: number, private readonly scratch: ArenaScratch) {
    this.views = Array.from({ length: nGroups }, () => newBlockView(storage));
  }

  /** out [nTokens, nqHeads, headDim] and lse [nTokens, nqHeads] of the step's groups (arena offsets). */
  run(ks: KernelSet, step: SparseStep, layer: number, table: Int32Array, seqLen: number, qOff: number, outOff: number, lseOff: number, positions: Int32Array, opts: AttentionOptions): void {
    const H = this.nqHeads;
    const group = H / this.storage.nKvHeads;
    const perGroup = step.dense || this.retrieval === 'layer' ? H : this.retrieval === 'kvhead' ? group : 1;
    const gather = positions.length > 1 && perGroup < H;
    if (gather) this.gatherScratch(positions.length, perGroup);
    for (let g = 0; g < step.nGroups; g++) {
      const kvHead = perGroup === H ? -1 : Math.floor((g * perGroup) / group);
      const view = this.views[g]!;
      fillBlockView(view, this.storage, layer, table, seqLen, step.tables, g * step.stride, step.counts[g]!, kvHead);
      this.attendHeads(ks, qOff, outOff, lseOff, positions, g * perGroup, perGroup, view, opts, gather);
    }
  }

  /** NOTE(1): [nTokens, hc, headDim] q and out, [nTokens, hc] lse. */
  private gatherScratch(nTokens: number, hc: number): { q: number; out: number; lse: number } {
    const D = this.storage.headDim;
    return {
      q: this.scratch.get('attend.q', nTokens * hc * D * 4),
      out: this.scratch.get('attend.out', nTokens * hc * D * 4),
      lse: this.scratch.get('attend.lse', nTokens * hc * 4),
    };
  }

  /** Attention of q heads [h0, h0 + hc) over `view`: in place, or through gathered scratch (NOTE(1)). */
  private attendHeads(ks: KernelSet, qOff: number, outOff: number, lseOff: number, positions: Int32Array, h0: number, hc: number, view: BlockView, opts: AttentionOptions, gather: boolean): void {
    const D = this.storage.headDim;
    const H = this.nqHeads;
    if (!gather) {
      ks.attention(qOff + h0 * D * 4, outOff + h0 * D * 4, lseOff + h0 * 4, positions, hc, view, opts);
      return;
    }
    const n = positions.length;
    const s = this.gatherScratch(n, hc); // the same buffers run() already sized: no growth here
    const qS = s.q >> 2;
    const oS = s.out >> 2;
    const lS = s.lse >> 2;
    let f32 = ks.arena.f32;
    for (let t = 0; t < n; t++) f32.copyWithin(qS + t * hc * D, (qOff >> 2) + (t * H + h0) * D, (qOff >> 2) + (t * H + h0 + hc) * D);
    ks.attention(s.q, s.out, s.lse, positions, hc, view, opts);
    f32 = ks.arena.f32;
    for (let t = 0; t < n; t++) {
      f32.copyWithin((outOff >> 2) + (t * H + h0) * D, oS + t * hc * D, oS + (t + 1) * hc * D);
      f32.copyWithin((lseOff >> 2) + t * H + h0, lS + t * hc, lS + (t + 1) * hc);
    }
  }
}
