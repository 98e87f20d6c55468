/**
 * Load a Hugging Face checkpoint folder into the arena: config.json + safetensors (single or
 * sharded), weight matrices converted to the requested dtype (f32, f16, bf16, q8_0, q4_0),
 * norms, biases and the RoPE table as f32. Returns what forward.ts reads.
 *
 * NOTE(1): Matrices stream through one small f32 buffer (STREAM_CHUNK_VALUES): rows are read,
 *   widened and encoded straight into their arena allocation, so peak JS memory is a few MiB and
 *   no full-size temporary is ever touched (fresh pages cost more than the conversion).
 * NOTE(2): The tensor set is checked against the config before anything is allocated: missing,
 *   extra or wrongly shaped tensors are one FormatError naming them and the folder. A failure
 *   part-way (truncated file) frees every allocation made so far: nothing leaks.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Arena } from '../core/arena.js';
import { defaultArena } from '../core/arena.js';
import { checkRowLength, encodeRow, parseDType, rowSizeBytes, type DType } from '../core/dtype.js';
import { ConfigError, FormatError } from '../core/errors.js';
import { SafetensorsCheckpoint } from '../io/safetensors-index.js';
import { parseModelConfigText, type ModelConfig } from './config.js';
import { diffTensors, layerPrefix } from './expected-tensors.js';
import { ropeInvFreq } from './rope-freqs.js';
import type { ForwardShape, LayerWeights, LinearWeight, ModelWeights } from './weights-layout.js';

/** f32 values per streamed chunk of a weight matrix (NOTE(1)): 4 MiB. */
const STREAM_CHUNK_VALUES = 1 << 20;

export interface LoadModelOptions {
  /** dtype of the weight matrices (and the embedding table). Default 'f32'. */
  weights?: DType;
  arena?: Arena;
  /** Called after each tensor is placed: tensors done, tensors in all, the tensor's name. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface LoadedModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly shape: ForwardShape;
  readonly weights: ModelWeights;
  readonly arena: Arena;
  /** Weight bytes placed in the arena. */
  readonly weightBytes: number;
  dispose(): void;
}

/** The forward pass's view of a config. */
export function forwardShapeOf(c: ModelConfig): ForwardShape {
  if (c.mlpBias) throw new ConfigError('config.json mlp_bias', 'false (MLP biases are not supported)', true);
  return {
    nLayers: c.nLayers,
    hidden: c.hiddenSize,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    vocab: c.vocabSize,
    rmsEps: c.rmsNormEps,
    rotaryDim: c.headDim,
    ropePairing: 'neox',
    layerWindows: c.layerWindows.map((w) => w ?? Infinity),
  };
}

export function loadModel(dir: string, opts: LoadModelOptions = {}): LoadedModel {
  const config = parseModelConfigText(readFileSync(join(dir, 'config.json'), 'utf8'), join(dir, 'config.json'));
  const shape = forwardShapeOf(config);
  const wDtype = parseDType(opts.weights ?? 'f32', 'weights dtype');
  const arena = opts.arena ?? defaultArena();
  const ckpt = SafetensorsCheckpoint.open(dir);
  const allocations: number[] = [];
  let weightBytes = 0;
  try {
    checkTensorSet(dir, config, ckpt);
    const total = ckpt.tensorNames().length + 1; // + the rope inv_freq table
    let done = 0;
    const place = (name: string, bytes: Uint8Array): number => {
      const off = arena.alloc(bytes.length);
      allocations.push(off);
      arena.bytes.set(bytes, off);
      weightBytes += bytes.length;
      opts.onProgress?.(++done, total, name);
      return off;
    };
    const vec = (name: string) => {
      const f = ckpt.readF32(name);
      return place(name, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
    };
    const scratch = new Float32Array(STREAM_CHUNK_VALUES); // rows of one matrix in flight, as f32
    const mat = (name: string, nOut: number, nIn: number): LinearWeight => {
      checkRowLength(wDtype, nIn, `${name} row length (its input features)`);
      const rowBytes = rowSizeBytes(wDtype, nIn);
      const off = arena.alloc(rowBytes * nOut);
      allocations.push(off);
      const rowsPerChunk = Math.max(1, Math.floor(STREAM_CHUNK_VALUES / nIn));
      const buf = nIn > STREAM_CHUNK_VALUES ? new Float32Array(nIn) : scratch;
      for (let r0 = 0; r0 < nOut; r0 += rowsPerChunk) {
        const n = Math.min(rowsPerChunk, nOut - r0);
        const rows = buf.subarray(0, n * nIn); // [n, nIn]
        ckpt.readF32Range(name, r0 * nIn, rows);
        const dst = off + r0 * rowBytes;
        // Rows are whole blocks (nIn % 32 == 0 for quantized dtypes), so n rows encode as one run.
        if (wDtype === 'f32') arena.f32.set(rows, dst / 4);
        else encodeRow(wDtype, rows, 0, rows.length, arena.bytes, dst);
      }
      weightBytes += rowBytes * nOut;
      opts.onProgress?.(++done, total, name);
      return { offsetBytes: off, dtype: wDtype, nOut, nIn };
    };
    const optVec = (name: string, present: boolean) => (present ? vec(name) : null);
    const c = config;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    const embed = mat('model.embed_tokens.weight', c.vocabSize, c.hiddenSize);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const p = layerPrefix(l);
      layers.push({
        attnNorm: vec(`${p}input_layernorm.weight`),
        q: mat(`${p}self_attn.q_proj.weight`, qDim, c.hiddenSize),
        k: mat(`${p}self_attn.k_proj.weight`, kvDim, c.hiddenSize),
        v: mat(`${p}self_attn.v_proj.weight`, kvDim, c.hiddenSize),
        o: mat(`${p}self_attn.o_proj.weight`, c.hiddenSize, qDim),
        qBias: optVec(`${p}self_attn.q_proj.bias`, c.qkvBias),
        kBias: optVec(`${p}self_attn.k_proj.bias`, c.qkvBias),
        vBias: optVec(`${p}self_attn.v_proj.bias`, c.qkvBias),
        oBias: optVec(`${p}self_attn.o_proj.bias`, c.oBias),
        qNorm: optVec(`${p}self_attn.q_norm.weight`, c.qkNorm),
        kNorm: optVec(`${p}self_attn.k_norm.weight`, c.qkNorm),
        ffnNorm: vec(`${p}post_attention_layernorm.weight`),
        gate: mat(`${p}mlp.gate_proj.weight`, c.intermediateSize, c.hiddenSize),
        up: mat(`${p}mlp.up_proj.weight`, c.intermediateSize, c.hiddenSize),
        down: mat(`${p}mlp.down_proj.weight`, c.hiddenSize, c.intermediateSize),
      });
    }
    const norm = vec('model.norm.weight');
    const lmHead = c.tieWordEmbeddings ? embed : mat('lm_head.weight', c.vocabSize, c.hiddenSize);
    const inv = ropeInvFreq(c);
    const invFreq = place('rope inv_freq', new Uint8Array(inv.buffer, inv.byteOffset, inv.byteLength));
    const weights: ModelWeights = { embed, layers, norm, lmHead, invFreq, allocations };
    let disposed = false;
    return {
      dir, config, shape, weights, arena, weightBytes,
      dispose() {
        if (disposed || arena.isDisposed) return;
        disposed = true;
        for (const off of allocations) arena.free(off);
      },
    };
  } catch (e) {
    if (!arena.isDisposed) for (const off of allocations) arena.free(off);
    throw e;
  } finally {
    ckpt.dispose();
  }
}

function checkTensorSet(dir: string, c: ModelConfig, ckpt: SafetensorsCheckpoint): void {
  const actual = ckpt.tensorNames().map((name) => ({ name, shape: [...ckpt.info(name).shape] }));
  const d = diffTensors(c, actual);
  const problems = [
    ...d.missing.map((n) => `missing ${n}`),
    ...d.extra.map((n) => `unexpected ${n}`),
    ...d.wrongShape.map((w) => `${w.name} shape [${w.given.join(', ')}] (expected [${w.expected.join(', ')}])`),
  ];
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join('; ') + (problems.length > 8 ? `; and ${problems.length - 8} more` : '');
    throw new FormatError(`checkpoint ${dir} (${c.architecture})`, 'exactly the tensors its config.json describes', shown);
  }
}
