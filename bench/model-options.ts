/**
 * What every model benchmark suite (paged, prefix-ttft, batch-decode, sparse) takes from the
 * command line, and the one place it is turned into a checkpoint folder and dtypes.
 */
import { benchModelDir } from '../src/cli/bench.js';
import { parseDType, type DType } from '../src/core/dtype.js';

export interface ModelBenchOptions {
  threads: number;
  log: (s: string) => void;
  preset?: string;
  model?: string;
  weights: string;
  /** Comma-separated KV dtypes; these suites use the first. */
  kv: string;
}

/** The checkpoint (--model, or --preset / `defaultPreset` made on demand), weight dtype and KV dtype. */
export function benchModel(o: ModelBenchOptions, defaultPreset?: string): { dir: string; weights: DType; kv: DType } {
  const dir = benchModelDir({ model: o.model, preset: o.preset ?? defaultPreset }, o.log);
  return { dir, weights: parseDType(o.weights, '--weights'), kv: parseDType(o.kv.split(',')[0]!, '--kv') };
}
