/**
 * Named f32 scratch buffers in the arena, grown on demand and reused: the kernels read and write
 * arena offsets only, so gathered queries, partial outputs and score rows live there.
 *
 * NOTE(1): A buffer keeps its offset until a request for more bytes under the same name (then it
 *   doubles), so the decode path allocates nothing once warm. Take arena views (arena.f32,
 *   arena.bytes) after the last get() of a call: a grow may replace the memory's buffer.
 */
import type { Arena } from '../../core/arena.js';

export class ArenaScratch {
  private readonly bufs = new Map<string, { offset: number; size: number }>();

  constructor(readonly arena: Arena) {}

  /** Byte offset of a buffer of at least `sizeBytes` under `name` (NOTE(1)). */
  get(name: string, sizeBytes: number): number {
    const cur = this.bufs.get(name);
    if (cur && cur.size >= sizeBytes) return cur.offset;
    const size = Math.max(sizeBytes, 2 * (cur?.size ?? 0), 256);
    const offset = this.arena.alloc(size);
    if (cur) this.arena.free(cur.offset);
    this.bufs.set(name, { offset, size });
    return offset;
  }

  dispose(): void {
    if (!this.arena.isDisposed) for (const b of this.bufs.values()) this.arena.free(b.offset);
    this.bufs.clear();
  }
}
