/**
 * The ktransformers interface in one import: KVCacheConfig and its enums, the KVCache facade,
 * its dump format, and CPUInfer (compat/cpuinfer.ts) for the full vocabulary.
 *
 *   import { KVCache, KVCacheConfig, AnchorType, GGMLType, RetrievalType, CPUInfer } from './compat/ktransformers.js';
 */
export {
  AnchorType, GGMLType, RetrievalType, KVCacheConfig, anchorTypeName, ggmlTypeName, retrievalTypeName,
  parseKtAnchorType, parseGGMLType, parseKtRetrievalType, type KVCacheConfigInit,
} from './ktransformers-config.js';
export { KVCache, type KVCacheOptions } from './ktransformers-kvcache.js';
export { KT_DUMP_KIND, KT_DUMP_FORMAT_VERSION, parseDumpMeta, type KtDumpMeta } from './ktransformers-dump.js';
export { CPUInfer, type CPUInferTask, type KernelTask } from './cpuinfer.js';
