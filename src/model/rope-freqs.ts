/**
 * Rotary embedding inverse frequencies, as transformers computes them
 * (`modeling_rope_utils.py`), for the rope types the runtime supports.
 *
 *   default  inv_freq[i] = theta^(-2i / headDim),  i in [0, headDim/2)
 *   linear   inv_freq[i] / factor                   (positions divided by factor)
 *   llama3   by wavelength w = 2 pi / inv_freq[i], with L = original_max_position_embeddings:
 *              w <  L / high_freq_factor  -> inv_freq            (high frequencies kept)
 *              w >  L / low_freq_factor   -> inv_freq / factor   (low frequencies scaled)
 *              otherwise, s = (L / w - low) / (high - low):
 *                           (1 - s) * inv_freq / factor + s * inv_freq
 *
 * The angle of pair i at position p is p * inv_freq[i]; pairs are (x[i], x[i + headDim/2])
 * ("rotate half", the Hugging Face convention).
 *
 * NOTE(1): Computed in float64, then rounded once to f32. transformers evaluates the same
 *   formulas in float32 torch ops, so a table entry can differ from torch's by 1 ulp; all
 *   kvcache paths (reference and fast) share this one table, so they agree exactly.
 * NOTE(2): None of these types rescales the attention (transformers' attention_factor is 1).
 */
import { ConfigError } from '../core/errors.js';
import type { RopeScaling } from './config.js';

export interface RopeParams {
  readonly headDim: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
}

/** The float64 table before rounding (NOTE(1)). */
export function ropeInvFreqF64(p: RopeParams): Float64Array {
  if (!Number.isInteger(p.headDim) || p.headDim < 2 || p.headDim % 2 !== 0) throw new ConfigError('rope headDim', 'an even integer >= 2', p.headDim);
  if (!(p.ropeTheta > 0) || !Number.isFinite(p.ropeTheta)) throw new ConfigError('rope_theta', 'a finite number > 0', p.ropeTheta);
  const half = p.headDim / 2;
  const out = new Float64Array(half); // [headDim / 2]
  for (let i = 0; i < half; i++) out[i] = 1 / p.ropeTheta ** ((2 * i) / p.headDim);
  const s = p.ropeScaling;
  if (s.type === 'linear') {
    for (let i = 0; i < half; i++) out[i] = out[i]! / s.factor;
  } else if (s.type === 'llama3') {
    const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = out[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highFreqWavelen) continue;
      if (wavelen > lowFreqWavelen) {
        out[i] = f / s.factor;
      } else {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        out[i] = ((1 - smooth) * f) / s.factor + smooth * f;
      }
    }
  }
  return out;
}

/** inv_freq as the runtime uses it: f32 [headDim / 2]. */
export function ropeInvFreq(p: RopeParams): Float32Array {
  return Float32Array.from(ropeInvFreqF64(p));
}
