/**
 * The browser entry (`kvcache/browser`): the part of the public API that loads without Node
 * built-ins. index.ts also exports file I/O and model loading, whose modules import node:fs at
 * top level, so a browser cannot load that barrel at all.
 *
 * NOTE(1): Kernels with workers need a cross-origin isolated page (COOP same-origin, COEP
 *   require-corp) and run in a dedicated Worker after `await KernelRuntime.start()` (pool.ts
 *   NOTE(5)); test/browser-workers.test.ts loads this file in Chromium, which keeps it free of
 *   node: imports.
 */
export * from './core/errors.js';
export * from './core/half.js';
export * from './core/quant.js';
export * from './core/dtype.js';
export * from './core/arena.js';
export * from './core/rng.js';
export * from './core/tensor.js';
export * from './core/crc32.js';
export * from './kv/types.js';
export * from './kv/dense-cache.js';
export * from './kv/static-cache.js';
export * from './kv/dynamic-cache.js';
export * from './kv/sub-cache.js';
export * from './kernels/types.js';
export * from './kernels/ref/attention.js';
export * from './kernels/ref/merge.js';
export * from './kernels/tolerances.js';
export { SNAPSHOT_MAGIC, SNAPSHOT_VERSION, encodeSnapshot, decodeSnapshot, hasSnapshotMagic, type SnapshotSectionInput, type SnapshotSectionEntry, type DecodedSnapshot } from './io/snapshot.js';
export { KernelRuntime, ArgWriter, defaultThreads, bestWasmVariant, type KernelRuntimeOptions } from './kernels/wasm/runtime.js';
export { bestVariant, forcedVariant, variantSupported, preloadKernels, type KernelVariant } from './kernels/wasm/load.js';
export { wasmAttention, wasmAttentionAt, wasmAttentionBatch } from './kernels/wasm/attention.js';
export { matvecAt, matmulAt, wasmMatvec, wasmMatmul, uploadWeights } from './kernels/wasm/linear.js';
export { matvec as refMatvec, matmul as refMatmul } from './kernels/ref/linear.js';
export { rmsnorm as refRmsnorm } from './kernels/ref/norm.js';
export { rope as refRope, ropeInvFreq, type RopeMode, type RopeOptions } from './kernels/ref/rope.js';
export { kernelsFor, refKernels, wasmKernels } from './kernels/registry.js';
export type { KernelSet, RopePairing } from './kernels/kernel-set.js';
export { ThreadPool, threadCanBlock, type ThreadPoolOptions } from './parallel/pool.js';
export { CPUInfer, type CPUInferTask, type KernelTask } from './compat/cpuinfer.js';
