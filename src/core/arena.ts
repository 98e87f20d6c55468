/**
 * The memory arena: one WebAssembly.Memory that holds weights, KV storage and scratch,
 * so WASM kernels (on every worker, when the memory is shared) read them zero-copy.
 *
 *   0 ............ reservedBytes ................................ brk ........ memory size ..... max
 *   [ wasm static data + stack ][ allocations and free holes ][ untouched, grown on demand ]
 *
 * NOTE(1): TS code reads the arena through typed-array views by byte offset. A shared memory's
 *   `buffer` object changes when the memory grows, so views are re-created lazily: always take
 *   them from `bytes` / `f32` / `u16` right before use, never keep one across an allocation.
 * NOTE(2): Offsets are stable for the lifetime of an allocation (growth never moves data);
 *   this is what makes a cache's raw buffers stable.
 * NOTE(3): First-fit over an address-ordered free list with coalescing. Allocations are few and
 *   large (per layer / per block pool), so O(number of holes) is fine.
 * NOTE(4): wasm32 addresses are 32-bit: the arena can never exceed 4 GiB (65,536 pages). A request
 *   past the maximum throws MemoryLimitError saying how much was asked and what is left.
 */
import { DisposedError, MemoryLimitError, assert, checkInt } from './errors.js';

const PAGE_BYTES = 65536;
const WASM32_MAX_PAGES = 65536;
export const WASM32_MAX_BYTES = WASM32_MAX_PAGES * PAGE_BYTES;

export interface ArenaOptions {
  /** Bytes to map up front (rounded up to 64 KiB pages). Default 16 MiB. */
  initialBytes?: number;
  /** Upper bound in bytes, at most 4 GiB (the wasm32 limit). Default 4 GiB. */
  maximumBytes?: number;
  /** Shared memory (needed by worker threads). Default: true where SharedArrayBuffer exists. */
  shared?: boolean;
  /** Low bytes left to the WASM module's static data and stack. Default 1 MiB. */
  reservedBytes?: number;
}

interface Hole {
  offset: number;
  size: number;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

export class Arena {
  readonly memory: WebAssembly.Memory;
  readonly maximumBytes: number;
  readonly reservedBytes: number;
  private brk: number;
  /** End of the highest byte ever handed out: memory above it is still zero (never written). */
  private highWater: number;
  private holes: Hole[] = [];
  private readonly sizes = new Map<number, number>(); // offset -> size of live allocations
  private used = 0;
  private disposed = false;
  private cachedBuffer: ArrayBufferLike | null = null;
  private u8View = new Uint8Array(0);
  private f32View = new Float32Array(0);
  private u16View = new Uint16Array(0);
  private i32View = new Int32Array(0);
  private u32View = new Uint32Array(0);

  constructor(opts: ArenaOptions = {}) {
    const maximumBytes = checkInt('arena maximumBytes', opts.maximumBytes ?? WASM32_MAX_BYTES, PAGE_BYTES, WASM32_MAX_BYTES);
    const initialBytes = checkInt('arena initialBytes', opts.initialBytes ?? 16 << 20, 0, maximumBytes);
    this.reservedBytes = alignUp(checkInt('arena reservedBytes', opts.reservedBytes ?? 1 << 20, 0, maximumBytes), 64);
    const shared = opts.shared ?? typeof SharedArrayBuffer !== 'undefined';
    const maxPages = Math.floor(maximumBytes / PAGE_BYTES);
    const initialPages = Math.min(maxPages, Math.max(1, Math.ceil(Math.max(initialBytes, this.reservedBytes) / PAGE_BYTES)));
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: maxPages, shared } as WebAssembly.MemoryDescriptor);
    this.maximumBytes = maxPages * PAGE_BYTES;
    this.brk = this.reservedBytes;
    this.highWater = this.reservedBytes;
  }

  /** Bytes handed out and not yet freed. */
  get usedBytes(): number {
    return this.used;
  }

  /** Bytes currently mapped by the memory. */
  get mappedBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Number of live allocations (for leak checks). */
  get liveAllocations(): number {
    return this.sizes.size;
  }

  /** Bytes that could still be allocated (ignoring fragmentation of holes). */
  get freeBytes(): number {
    let holes = 0;
    for (const h of this.holes) holes += h.size;
    return this.maximumBytes - this.brk + holes;
  }

  /** A byte view of the whole arena (re-created after growth). */
  get bytes(): Uint8Array {
    this.refresh();
    return this.u8View;
  }

  /** An f32 view of the whole arena: index = offsetBytes / 4. */
  get f32(): Float32Array {
    this.refresh();
    return this.f32View;
  }

  /** A uint16 view of the whole arena: index = offsetBytes / 2. */
  get u16(): Uint16Array {
    this.refresh();
    return this.u16View;
  }

  /** An int32 view of the whole arena: index = offsetBytes / 4. */
  get i32(): Int32Array {
    this.refresh();
    return this.i32View;
  }

  /** A uint32 view of the whole arena: index = offsetBytes / 4. */
  get u32(): Uint32Array {
    this.refresh();
    return this.u32View;
  }

  /** A byte view of one allocation (valid until the next allocation may grow the memory). */
  slice(offsetBytes: number, sizeBytes: number): Uint8Array {
    return this.bytes.subarray(offsetBytes, offsetBytes + sizeBytes);
  }

  /**
   * Allocate `sizeBytes` (zero-filled), aligned to `align` bytes; returns the byte offset.
   * Throws MemoryLimitError past the arena's maximum.
   */
  alloc(sizeBytes: number, align = 64): number {
    this.checkLive();
    checkInt('allocation sizeBytes', sizeBytes, 0);
    checkInt('allocation align', align, 1);
    const size = Math.max(64, alignUp(sizeBytes, 64));
    const fromHole = this.takeHole(size, align);
    const offset = fromHole ?? this.extend(size, align, sizeBytes);
    this.sizes.set(offset, size);
    this.used += size;
    // Memory above the high-water mark has never been handed out, and wasm memory grows
    // zero-filled: only bytes below it need clearing (filling fresh pages would touch gigabytes
    // of memory for nothing).
    const dirtyEnd = Math.min(offset + size, this.highWater);
    if (dirtyEnd > offset) this.bytes.fill(0, offset, dirtyEnd);
    this.highWater = Math.max(this.highWater, offset + size);
    return offset;
  }

  /** Return an allocation. Freeing an unknown offset is a bug in the caller (assert). */
  free(offsetBytes: number): void {
    if (this.disposed) return;
    const size = this.sizes.get(offsetBytes);
    assert(size !== undefined, `free of unknown arena offset ${offsetBytes}`);
    this.sizes.delete(offsetBytes);
    this.used -= size;
    this.insertHole({ offset: offsetBytes, size });
  }

  /** Drop every allocation; the memory itself is released when unreferenced. */
  dispose(): void {
    this.disposed = true;
    this.sizes.clear();
    this.holes = [];
    this.used = 0;
    this.cachedBuffer = null;
    this.u8View = new Uint8Array(0);
    this.f32View = new Float32Array(0);
    this.u16View = new Uint16Array(0);
    this.i32View = new Int32Array(0);
    this.u32View = new Uint32Array(0);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('arena', 'a live arena', 'a disposed arena');
  }

  private refresh(): void {
    this.checkLive();
    const buf = this.memory.buffer;
    if (buf !== this.cachedBuffer || this.u8View.byteLength !== buf.byteLength) {
      this.cachedBuffer = buf;
      this.u8View = new Uint8Array(buf);
      this.f32View = new Float32Array(buf);
      this.u16View = new Uint16Array(buf);
      this.i32View = new Int32Array(buf);
      this.u32View = new Uint32Array(buf);
    }
  }

  private takeHole(size: number, align: number): number | null {
    for (let i = 0; i < this.holes.length; i++) {
      const h = this.holes[i]!;
      const start = alignUp(h.offset, align);
      const pad = start - h.offset;
      if (pad + size > h.size) continue;
      this.holes.splice(i, 1);
      if (pad > 0) this.insertHole({ offset: h.offset, size: pad });
      const tail = h.size - pad - size;
      if (tail > 0) this.insertHole({ offset: start + size, size: tail });
      return start;
    }
    return null;
  }

  private extend(size: number, align: number, asked: number): number {
    const start = alignUp(this.brk, align);
    const end = start + size;
    if (end > this.maximumBytes) {
      throw new MemoryLimitError(
        `arena allocation of ${asked} bytes`,
        `at most ${this.freeBytes} bytes free of the ${this.maximumBytes}-byte arena (wasm32 caps memory at 4 GiB)`,
        asked,
      );
    }
    const mapped = this.memory.buffer.byteLength;
    if (end > mapped) {
      // Grow at least geometrically so that many small allocations do not grow page by page.
      const wantPages = Math.ceil(end / PAGE_BYTES);
      const curPages = mapped / PAGE_BYTES;
      const maxPages = this.maximumBytes / PAGE_BYTES;
      const target = Math.min(maxPages, Math.max(wantPages, Math.ceil(curPages * 1.25)));
      this.memory.grow(target - curPages);
    }
    if (start > this.brk) this.insertHole({ offset: this.brk, size: start - this.brk });
    this.brk = end;
    return start;
  }

  private insertHole(h: Hole): void {
    let i = 0;
    while (i < this.holes.length && this.holes[i]!.offset < h.offset) i++;
    this.holes.splice(i, 0, h);
    // Coalesce with the next and the previous hole.
    const next = this.holes[i + 1];
    if (next && h.offset + h.size === next.offset) {
      h.size += next.size;
      this.holes.splice(i + 1, 1);
    }
    const prev = this.holes[i - 1];
    if (prev && prev.offset + prev.size === h.offset) {
      prev.size += h.size;
      this.holes.splice(i, 1);
      i--;
    }
    // A hole that ends at the break gives its space back to the break.
    const last = this.holes[this.holes.length - 1];
    if (last && last.offset + last.size === this.brk) {
      this.brk = last.offset;
      this.holes.pop();
    }
  }
}

let defaultArenaInstance: Arena | null = null;

/** The process-wide arena used when a cache is not given one. */
export function defaultArena(): Arena {
  if (!defaultArenaInstance || defaultArenaInstance.isDisposed) defaultArenaInstance = new Arena();
  return defaultArenaInstance;
}
