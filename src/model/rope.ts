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
  if (s && s.type === 'yarn') {
    // Bands below the correction range [low, high] turn many times in the original context and are
    // kept; bands above it are interpolated (divided by factor); the range between is a linear mix.
    const correctionBand = (rotations: number) =>
      (c.headDim * Math.log(s.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
    let low = correctionBand(s.betaFast);
    let high = correctionBand(s.betaSlow);
    if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
    low = Math.max(low, 0);
    high = Math.min(high, c.headDim - 1);
    if (low === high) high += 0.001;
    for (let i = 0; i < half; i++) {
      const kept = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
      inv[i] = inv[i]! * (kept + (1 - kept) / s.factor);
    }
  } else if (s && s.type === 'llama3') {
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

/**
 * The rotation's amplitude: cos and sin are scaled by it (YaRN's attention factor, so q . k grows by
 * its square); 1 otherwise, and on the sliding layers' own unscaled RoPE.
 */
export function ropeAmplitude(c: ModelConfig, local = false): number {
  if (local && c.ropeLocalTheta !== undefined) return 1;
  return c.ropeScaling?.type === 'yarn' ? c.ropeScaling.attentionFactor : 1;
}

/** Fills cos/sin tables [T, headDim/2] for the given positions, times `amplitude`. */
export function ropeTables(
  inv: Float64Array,
  positions: ArrayLike<number>,
  T: number,
  cos: Float32Array,
  sin: Float32Array,
  amplitude = 1,
): void {
  const half = inv.length;
  for (let t = 0; t < T; t++) {
    const p = positions[t]!;
    for (let i = 0; i < half; i++) {
      const angle = p * inv[i]!;
      cos[t * half + i] = amplitude * Math.cos(angle);
      sin[t * half + i] = amplitude * Math.sin(angle);
    }
  }
}
