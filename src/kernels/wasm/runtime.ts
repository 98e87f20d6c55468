/**
 * The kernel runtime of one arena: the wasm instance over the arena's memory, the thread pool,
 * one argument block and named scratch buffers. Every fast kernel call goes through here.
 *
 *   const rt = KernelRuntime.for(arena);          // cached per arena (and per thread count)
 *   const rt = await KernelRuntime.start(arena);  // the same, started without blocking (browsers)
 *   const a = rt.args();                          // the argument block, slot by slot
 *   a.ptr(xOffset).ptr(yOffset).i32(n);
 *   rt.parallelFor('matvec_f32', 0, nRows, 16);   // every thread runs its share of [0, nRows)
 *
 * NOTE(1): A kernel export has the signature (args: usize, begin: i32, end: i32) and reads its
 *   parameters from 4-byte slots at `args` (assembly/simd.ts argI32/argU32/argF32). One block
 *   per runtime is enough because jobs are synchronous (pool.ts NOTE(1)).
 * NOTE(2): Scratch buffers are arena allocations kept by name and grown on demand (never per
 *   token once warm); their offsets are stable until the next grow of the same name.
 * NOTE(3): The control block and the argument block are allocated from the arena like any
 *   other buffer, so the runtime adds nothing to the wasm module's reserved low memory.
 * NOTE(4): In a browser, Web Workers start only after the creating thread yields, and a page's
 *   main thread may not block (pool.ts NOTE(5)): there, a runtime with workers comes from
 *   `await KernelRuntime.start()` inside a dedicated Worker, after which for() / kernelsFor()
 *   return it; on a page's main thread the default is one thread.
 */
import { Arena, defaultArena } from '../../core/arena.js';
import { ConfigError, DisposedError, checkInt } from '../../core/errors.js';
import { ThreadPool, threadCanBlock } from '../../parallel/pool.js';
import { CONTROL_BYTES, exportedFunctionNames, exportedFunctions, instantiate } from '../../parallel/protocol.js';
import { forcedVariant, kernelModule, preloadKernels, variantSupported, type KernelVariant } from './load.js';

const ARG_SLOTS = 64;

// Node 20 has no `navigator`: the core count comes from node:os there (loaded only on Node).
const nodeOs: typeof import('node:os') | null =
  typeof process !== 'undefined' && process.versions?.node ? await import('node:os') : null;

/** Writes kernel arguments slot by slot; slot k is at args + 4k. */
export class ArgWriter {
  private slot = 0;
  constructor(
    private readonly rt: KernelRuntime,
    readonly offsetBytes: number,
  ) {}
  /** Start over at slot 0 (called by KernelRuntime.args()). */
  reset(): this {
    this.slot = 0;
    return this;
  }
  i32(v: number): this {
    this.rt.arena.i32[(this.offsetBytes >> 2) + this.next()] = v;
    return this;
  }
  /** A byte offset in the arena (u32). */
  ptr(v: number): this {
    this.rt.arena.u32[(this.offsetBytes >> 2) + this.next()] = v;
    return this;
  }
  f32(v: number): this {
    this.rt.arena.f32[(this.offsetBytes >> 2) + this.next()] = v;
    return this;
  }
  private next(): number {
    if (this.slot >= ARG_SLOTS) throw new ConfigError('kernel arguments', `at most ${ARG_SLOTS} slots`, this.slot + 1);
    return this.slot++;
  }
}

export interface KernelRuntimeOptions {
  /** Threads including the caller. Default: KVCACHE_THREADS, else the machine's cores. */
  nThreads?: number;
  /** Force a build; default bestVariant(). 'ref' is not a runtime (use the ref kernels). */
  variant?: Exclude<KernelVariant, 'ref'>;
}

/** KVCACHE_THREADS, else the machine's cores; 1 on a thread that may not block (NOTE(4)). */
export function defaultThreads(): number {
  if (!threadCanBlock()) return 1;
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const forced = env?.KVCACHE_THREADS;
  if (forced !== undefined && forced !== '') return checkInt('KVCACHE_THREADS', Number(forced), 1, 65);
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  const cores = nodeOs ? nodeOs.availableParallelism() : (nav?.hardwareConcurrency ?? 1);
  return Math.max(1, Math.min(64, cores));
}

export class KernelRuntime {
  readonly arena: Arena;
  readonly variant: Exclude<KernelVariant, 'ref'>;
  readonly pool: ThreadPool;
  private readonly argBlock: ArgWriter;
  private readonly controlOffset: number;
  private readonly fnIndex = new Map<string, number>();
  private readonly scratchBufs = new Map<string, { offset: number; size: number }>();
  private disposed = false;

  private static readonly cache = new WeakMap<Arena, Map<string, KernelRuntime>>();

  /** The runtime of `arena` (default: the process-wide arena), created once per option set. */
  static for(arena: Arena = defaultArena(), opts: KernelRuntimeOptions = {}): KernelRuntime {
    const { byKey, key, nThreads, variant } = KernelRuntime.slot(arena, opts);
    let rt = live(byKey.get(key));
    if (!rt) {
      rt = new KernelRuntime(arena, { nThreads, variant });
      byKey.set(key, rt);
    }
    return rt;
  }

  /**
   * for() without blocking: compiles the module asynchronously, starts the workers and resolves
   * once they run (NOTE(4)); later for() / kernelsFor() calls with the same options return it.
   * Rejects with WorkerDiedError if a worker fails to load or start.
   */
  static async start(arena: Arena = defaultArena(), opts: KernelRuntimeOptions = {}): Promise<KernelRuntime> {
    const { byKey, key, nThreads, variant } = KernelRuntime.slot(arena, opts);
    let rt = live(byKey.get(key));
    if (!rt) {
      await preloadKernels(variant); // browsers limit synchronous compiles on a page's main thread
      rt = live(byKey.get(key)); // another start() may have finished meanwhile
    }
    if (!rt) {
      rt = new KernelRuntime(arena, { nThreads, variant }, true);
      byKey.set(key, rt);
    }
    try {
      await rt.pool.waitStarted();
    } catch (e) {
      rt.dispose();
      throw e;
    }
    return rt;
  }

  private static slot(arena: Arena, opts: KernelRuntimeOptions) {
    const nThreads = opts.nThreads ?? defaultThreads();
    const variant = opts.variant ?? bestWasmVariant();
    let byKey = KernelRuntime.cache.get(arena);
    if (!byKey) KernelRuntime.cache.set(arena, (byKey = new Map()));
    return { byKey, key: `${variant}/${nThreads}`, nThreads, variant };
  }

  /** `deferStart`: return before the workers run (start() awaits them; pool.ts NOTE(5)). */
  constructor(arena: Arena, opts: KernelRuntimeOptions = {}, deferStart = false) {
    this.arena = arena;
    this.variant = opts.variant ?? bestWasmVariant();
    const module = kernelModule(this.variant);
    const instance = instantiate(module, arena.memory);
    this.controlOffset = arena.alloc(CONTROL_BYTES + ARG_SLOTS * 4);
    this.argBlock = new ArgWriter(this, this.controlOffset + CONTROL_BYTES);
    const names = exportedFunctionNames(module);
    names.forEach((n, i) => this.fnIndex.set(n, i));
    try {
      this.pool = new ThreadPool(module, arena.memory, this.controlOffset, exportedFunctions(instance), names, {
        nThreads: opts.nThreads ?? defaultThreads(),
        deferStart,
      });
    } catch (e) {
      arena.free(this.controlOffset);
      throw e;
    }
  }

  get nThreads(): number {
    return this.pool.nThreads;
  }

  /** The argument block, reset to slot 0. */
  args(): ArgWriter {
    this.checkLive();
    return this.argBlock.reset();
  }

  /** Index of a kernel export; throws ConfigError for an unknown name. */
  kernel(name: string): number {
    const i = this.fnIndex.get(name);
    if (i === undefined) throw new ConfigError('kernel name', `one of ${[...this.fnIndex.keys()].join(', ')}`, name);
    return i;
  }

  /** Run a kernel over [begin, end) on all threads (whole grains per thread). */
  parallelFor(kernel: string | number, begin: number, end: number, grain = 1): void {
    const fn = typeof kernel === 'number' ? kernel : this.kernel(kernel);
    this.pool.parallelFor(fn, this.argBlock.offsetBytes, begin, end, grain);
  }

  /** Run a kernel over [begin, end) on the calling thread only. */
  runLocal(kernel: string | number, begin: number, end: number): void {
    const fn = typeof kernel === 'number' ? kernel : this.kernel(kernel);
    this.pool.runLocal(fn, this.argBlock.offsetBytes, begin, end);
  }

  /**
   * A scratch buffer of at least `sizeBytes`, 64-byte aligned, kept under `name` and reused.
   * Growing it frees the old one: never hold two offsets of the same name.
   */
  scratch(name: string, sizeBytes: number): number {
    this.checkLive();
    const cur = this.scratchBufs.get(name);
    if (cur && cur.size >= sizeBytes) return cur.offset;
    if (cur) this.arena.free(cur.offset);
    const size = Math.max(sizeBytes, (cur?.size ?? 0) * 2, 256);
    const offset = this.arena.alloc(size);
    this.scratchBufs.set(name, { offset, size });
    return offset;
  }

  /** Copy a JS array into a scratch buffer; returns its offset. */
  stage(name: string, data: Float32Array | Int32Array | Uint8Array): number {
    const off = this.scratch(name, data.byteLength);
    this.arena.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), off);
    return off;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const stopped = this.pool.dispose();
    if (!this.arena.isDisposed) {
      for (const { offset } of this.scratchBufs.values()) this.arena.free(offset);
      // A worker that may still run must not find its control block reused (pool.ts NOTE(4)).
      if (stopped) this.arena.free(this.controlOffset);
    }
    this.scratchBufs.clear();
  }

  private checkLive(): void {
    if (this.disposed) throw new DisposedError('kernel runtime', 'a live runtime', 'a disposed runtime');
  }
}

/**
 * The wasm build a runtime uses: the one KVCACHE_KERNELS names, else the best supported. A forced
 * `ref` does not apply here (it routes the engine's ops to the reference kernels, registry.ts);
 * the parity suite still runs the wasm kernels against them.
 */
export function bestWasmVariant(): Exclude<KernelVariant, 'ref'> {
  const forced = forcedVariant();
  if (forced && forced !== 'ref') return forced;
  if (variantSupported('relaxed')) return 'relaxed';
  if (variantSupported('simd')) return 'simd';
  throw new ConfigError(
    'kernel runtime',
    'an engine with WebAssembly SIMD and SharedArrayBuffer (in a browser: a cross-origin isolated page, served with COOP same-origin and COEP require-corp)',
    'one of them missing',
  );
}

/** `rt` unless it is missing or disposed. */
function live(rt: KernelRuntime | undefined): KernelRuntime | undefined {
  return rt && !rt.isDisposed && !rt.pool.isDisposed ? rt : undefined;
}
