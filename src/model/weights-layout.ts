/**
 * Where a loaded model's weights live in the arena: offsets and dtypes only (the loader,
 * weights.ts, fills the bytes; the forward pass, forward.ts, reads them through a KernelSet).
 */
import type { DType } from '../core/dtype.js';

/** A weight matrix W [nOut, nIn], each row rowSizeBytes(dtype, nIn) bytes. */
export interface LinearWeight {
  readonly offsetBytes: number;
  readonly dtype: DType;
  readonly nOut: number;
  readonly nIn: number;
}

/** One decoder layer. Norm weights and biases are f32 vectors (offsets). */
export interface LayerWeights {
  readonly attnNorm: number; // f32 [hidden]
  readonly q: LinearWeight; // [nHeads * headDim, hidden]
  readonly k: LinearWeight; // [nKvHeads * headDim, hidden]
  readonly v: LinearWeight; // [nKvHeads * headDim, hidden]
  readonly o: LinearWeight; // [hidden, nHeads * headDim]
  readonly qBias: number | null; // f32 [nHeads * headDim]
  readonly kBias: number | null; // f32 [nKvHeads * headDim]
  readonly vBias: number | null; // f32 [nKvHeads * headDim]
  readonly oBias: number | null; // f32 [hidden]
  readonly qNorm: number | null; // f32 [headDim] (Qwen3)
  readonly kNorm: number | null; // f32 [headDim] (Qwen3)
  readonly ffnNorm: number; // f32 [hidden]
  readonly gate: LinearWeight; // [intermediate, hidden]
  readonly up: LinearWeight; // [intermediate, hidden]
  readonly down: LinearWeight; // [hidden, intermediate]
}

export interface ModelWeights {
  /** The embedding table [vocab, hidden]; also the output head when tied. */
  readonly embed: LinearWeight;
  readonly layers: readonly LayerWeights[];
  readonly norm: number; // f32 [hidden]
  /** [vocab, hidden]: `embed` itself for tied embeddings. */
  readonly lmHead: LinearWeight;
  /** f32 [rotaryDim / 2] inverse RoPE frequencies (scaling applied). */
  readonly invFreq: number;
  /** Arena allocations owned by these weights (freed by dispose). */
  readonly allocations: readonly number[];
}

/** The shape facts the forward pass needs (from the HF config). */
export interface ForwardShape {
  readonly nLayers: number;
  readonly hidden: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly rmsEps: number;
  readonly rotaryDim: number;
  /** HF Llama-family models rotate halves (neox pairing). */
  readonly ropePairing: 'neox' | 'interleaved';
  /** Per layer: sliding-window span in positions (Mistral), or Infinity for full attention. */
  readonly layerWindows: readonly number[];
}
