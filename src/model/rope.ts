import type { ModelConfig } from '../core/model-config.js';

/**
 * Inverse frequencies of rotate_half RoPE, [headDim/2], in float64:
 * inv_freq[i] = theta^(-2i/d), rescaled per band when rope_scaling is llama3, divided by the factor
 * when it is linear. `local`: the sliding layers' own RoPE where the model has one (ropeLocalTheta,
 * unscaled); otherwise they share the global one.
 */
export function ropeInverseFrequencies(c: ModelConfig, local = false): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  const own = local && c.ropeLocalTheta !== undefined;
  const theta = own ? c.ropeLocalTheta! : c.ropeTheta;
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / c.headDim);
  if (own) return inv;
  if (c.ropeLinearFactor !== undefined) for (let i = 0; i < half; i++) inv[i] = inv[i]! / c.ropeLinearFactor;
  const s = c.ropeScaling;
  if (s && s.type === 'llama3') {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) {
        inv[i] = inv[i]! / s.factor;
      } else if (wavelen >= highWavelen) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i]! / s.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}

/** Fills cos/sin tables [T, headDim/2] for the given positions. */
export function ropeTables(
  inv: Float64Array,
  positions: ArrayLike<number>,
  T: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  const half = inv.length;
  for (let t = 0; t < T; t++) {
    const p = positions[t]!;
    for (let i = 0; i < half; i++) {
      const angle = p * inv[i]!;
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
}
