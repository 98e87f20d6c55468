/**
 * The `--sparse` flags shared by `kvcache generate` and `kvcache bench`: block-sparse decode
 * attention (kv/sparse; LanguageModel's `sparse` option) and its parameters, with
 * ktransformers' long-context defaults (kv/sparse/sparse-config.ts NOTE(1)) where a flag is left out.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../core/errors.js';
import { ANCHOR_TYPES, RETRIEVAL_TYPES, type AnchorType, type RetrievalType } from '../kv/sparse/sparse-config.js';
import type { SparseSequence, SparseSequenceOptions } from '../model/sparse-sequence.js';

export interface SparseCliOptions {
  sparse?: boolean;
  sparseBlockLen?: number;
  sparsePick?: number;
  sparseInit?: number;
  sparseLocal?: number;
  sparseAnchor?: AnchorType;
  sparseAnchorNum?: number;
  sparseRetrieval?: RetrievalType;
  sparseTokenStep?: number;
  sparseDenseLayers?: number;
}

function int(name: string, min: number) {
  return (s: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, given "${s}"`);
    return n;
  };
}

/** Add the --sparse flags to a command. */
export function addSparseOptions(cmd: Command): Command {
  return cmd
    .option('--sparse', 'block-sparse decode attention (init + top-pick + local blocks per step; prefill stays dense)')
    .option('--sparse-block-len <n>', 'tokens per block (default 128)', int('--sparse-block-len', 1))
    .option('--sparse-pick <n>', 'top-scored blocks attended per step, -1 = dense (default 32)', int('--sparse-pick', -1))
    .option('--sparse-init <n>', 'first blocks always attended (default 1)', int('--sparse-init', 0))
    .option('--sparse-local <n>', 'last full blocks always attended (default: 4096 tokens worth)', int('--sparse-local', 0))
    .addOption(new Option('--sparse-anchor <type>', 'block anchor (default dynamic)').choices(ANCHOR_TYPES))
    .option('--sparse-anchor-num <n>', 'anchor slots per block (default 1; quest needs 2)', int('--sparse-anchor-num', 1))
    .addOption(new Option('--sparse-retrieval <type>', 'one selection per layer, kv head or q head (default layer)').choices(RETRIEVAL_TYPES))
    .option('--sparse-token-step <n>', 'new selection every n decode tokens (default 100)', int('--sparse-token-step', 1))
    .option('--sparse-dense-layers <n>', 'first layers always dense (default 2)', int('--sparse-dense-layers', 0));
}

/** The LanguageModel `sparse` option from the flags; undefined without --sparse. */
export function sparseOptionsOf(o: SparseCliOptions): SparseSequenceOptions | undefined {
  const given = Object.entries(o).filter(([k, v]) => k.startsWith('sparse') && k !== 'sparse' && v !== undefined);
  if (!o.sparse) {
    if (given.length > 0) throw new ConfigError(`--${kebab(given[0]![0])}`, 'given with --sparse', 'without --sparse');
    return undefined;
  }
  return {
    blockLen: o.sparseBlockLen, pick: o.sparsePick, init: o.sparseInit, local: o.sparseLocal, anchorType: o.sparseAnchor,
    anchorNum: o.sparseAnchorNum, retrievalType: o.sparseRetrieval, tokenStep: o.sparseTokenStep, denseLayers: o.sparseDenseLayers,
  };
}

/** One line on what sparse decoding read: keys attended vs dense, selections. */
export function sparseReport(s: SparseSequence): string {
  const st = s.stats;
  const c = s.sparse.config;
  const frac = st.denseKeys > 0 ? st.attendedKeys / st.denseKeys : 1;
  return `sparse: ${c.anchorType} anchors, ${c.retrievalType} retrieval, blocks of ${s.blockLen}, init ${c.init} + pick ${c.pick} + local ${c.local}; ` +
    `decode read ${(100 * frac).toFixed(1)}% of the keys a dense step reads on sparse layers (${c.denseLayers} dense layers), ${st.selections} selections`;
}

function kebab(k: string): string {
  return k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
