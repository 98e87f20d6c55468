// Everything that loads without Node built-ins (the browser entry), then the Node-only parts.
export * from './browser.js';
export * from './compat/boostr.js';
export * from './compat/mllm.js';
export * from './compat/hf.js';
export { writeFileAtomic, writeSnapshotFile, readSnapshotFile } from './io/snapshot-file.js';
export { inspectFile } from './io/inspect.js';
export { DENSE_CACHE_SNAPSHOT_KIND, encodeCache, decodeCache, saveCache, loadCache, type DenseCacheSnapshotMeta, type LoadCacheOptions } from './kv/cache-snapshot.js';
// Files, models and generation.
export { writeGgufFile, readGgufHeader, readGgufTensor, ggufMeta, gguf, GgufValueType, type GgufFile, type GgufTensorInfo, type GgufTensorInput, type GgufValue } from './io/gguf.js';
export { SafetensorsFile, writeSafetensors, writeSafetensorsStreaming } from './io/safetensors.js';
export { SafetensorsCheckpoint } from './io/safetensors-index.js';
export * from './model/config.js';
export { expectedTensors, diffTensors } from './model/expected-tensors.js';
export { makeModel } from './model/make-model.js';
export { TextTokenizer } from './model/tokenizer.js';
export { refForward } from './model/ref-forward.js';
export { Forward, Workspace, type BatchPart } from './model/forward.js';
export { DenseRowKV, type SequenceKV } from './model/sequence-kv.js';
export { PagedSession, type PagedSessionOptions, type StepItem } from './model/paged-session.js';
export { modelFingerprint } from './model/fingerprint.js';
export { parseGenerationConfig, loadGenerationConfig, GREEDY_DEFAULTS, type GenerationDefaults } from './model/generation-config.js';
export type { ModelWeights, LayerWeights, LinearWeight, ForwardShape } from './model/weights-layout.js';
export { Sampler, resolveSampling, argmaxOf, type SamplingOptions } from './generate/sampler.js';
export { loadModel, forwardShapeOf, type LoadedModel, type LoadModelOptions } from './model/weights.js';
export { LanguageModel, type LanguageModelOptions, type CacheOptions } from './model/language-model.js';
export { generate, generateWithoutCache, runToEnd, type GenerateOptions, type GenerateEvent, type GenerateSummary, type StopReason } from './generate/generate.js';
export { exportGguf, type GgufExportOptions } from './model/gguf-export.js';
export { generateMany, type ManyEvent, type ManyOptions } from './generate/generate-many.js';
export { TokenStream } from './generate/token-stream.js';
export { runE2EBench, e2eTables, benchPrompt, type E2EBenchOptions, type E2EResult, type E2ERun, type E2ESpeedup } from './generate/e2e-bench.js';
// ---- Paged KV cache (issue 5): block pool, block storage, block hashes, prefix index, sequences ----
export { PagedKVCache, MAX_PAGED_POSITION, type SeqAddOptions, type SeqAddResult, type PagedRows } from './kv/paged/paged-cache.js';
export { DEFAULT_BLOCK_LEN, resolvePagedConfig, type PagedKVCacheConfig, type PagedRopeConfig, type ResolvedPagedConfig, type ResolvedRopeConfig } from './kv/paged/paged-config.js';
export { BlockPool, NULL_BLOCK, type BlockPoolConfig } from './kv/paged/block-pool.js';
export { BlockStorage, type BlockStorageConfig, type KeyRotation } from './kv/paged/block-storage.js';
export { PrefixIndex, type PrefixMatch } from './kv/paged/prefix-index.js';
export { BlockHasher, sha256, sha256Hex, bytesToHex, checkTokenIds, BLOCK_HASH_DOMAIN, ROOT_PARENT_HASH, type BlockHashContext } from './kv/paged/block-hash.js';
// ---- end paged KV cache ----
// ---- Paged KV cache snapshots (issue 5): prefix cache and single sequences ----
export { PAGED_PREFIX_SNAPSHOT_KIND, PREFIX_RECORD_BYTES, savePrefixCache, loadPrefixCache, encodePrefixCache, decodePrefixCache, prefixFromSnapshot, prefixSaveOrder, type LoadPrefixResult, type PrefixBlockEntry, type PrefixSnapshotMeta } from './kv/paged/paged-snapshot.js';
export { PAGED_SEQUENCE_SNAPSHOT_KIND, saveSequence, loadSequence, encodeSequence, decodeSequence, sequenceFromSnapshot, type SequenceSnapshotMeta } from './kv/paged/seq-snapshot.js';
export { PAGED_SNAPSHOT_FORMAT_VERSION, SnapshotMismatchError, type PagedIdentityMeta } from './kv/paged/paged-snapshot-meta.js';
// ---- end paged KV cache snapshots ----
// ---- Mixed-precision KV cache (issue 5): quantized history + full-precision recent window (KIVI) ----
export { MixedPrecisionCache, resolveMixedConfig, type MixedPrecisionCacheConfig, type ResolvedMixedConfig, type MixedRowKV, type RecentDType } from './kv/mixed-precision-cache.js';
// ---- end mixed-precision KV cache ----
// ---- Sliding window with attention sinks (issue 5) ----
export { applyWindow, planWindow, windowBlockBound, windowHitLimit, checkWindow, type WindowOptions, type WindowPlan } from './kv/paged/window-policy.js';
// ---- end sliding window ----
// ---- Sparse long-context attention (issue 6) ----
export { SparseAttention, type SparseCallOptions, type StoredSelection } from './kv/sparse/sparse-attention.js';
export { resolveSparseConfig, parseAnchorType, parseRetrievalType, ANCHOR_TYPES, RETRIEVAL_TYPES, type AnchorType, type RetrievalType, type DecodeImportance, type SparseOptions, type ResolvedSparseConfig, type SparseShape } from './kv/sparse/sparse-config.js';
export { SparseStep } from './kv/sparse/selection-store.js';
export { SparseSequence, DEFAULT_SPARSE_BLOCK_LEN, type SparseSequenceOptions, type SparseStats } from './model/sparse-sequence.js';
// ---- end sparse attention ----
// ---- ktransformers interface (issue 6): KVCacheConfig / KVCache / CPUInfer vocabulary ----
export * as ktransformers from './compat/ktransformers.js';
export { KVCache as KtKVCache, KVCacheConfig as KtKVCacheConfig, AnchorType as KtAnchorType, GGMLType, RetrievalType as KtRetrievalType, KT_DUMP_KIND, KT_DUMP_FORMAT_VERSION, type KVCacheOptions as KtKVCacheOptions, type KVCacheConfigInit as KtKVCacheConfigInit } from './compat/ktransformers.js';
// ---- end ktransformers interface ----
