/**
 * TriAttention calibration (docs/methods.md Part 2, "Calibration"): per (layer, query head) and
 * frequency band f, the plain means over every calibration position t of the query as RoPE receives it
 * (after q_norm for Qwen3), in the rotate-half pairing q~_f = q[f] + i q[f + F]:
 *   qbar_f = mean_t q~_{t,f}       (complex; the "Q centre")
 *   m_f    = mean_t |q~_{t,f}|     (mean band magnitude)
 * Sums run in float64 and are stored as float32. The data is either text (one or more token sequences)
 * or the model's own generations (the published statistics came from reasoning traces).
 */
import type { GenerateOptions, Model } from '../api.js';
import { KvsieveError } from '../core/errors.js';
import type { TriAttentionStats } from '../formats/triattention.js';

export interface TriAttentionCalibration {
  stats: TriAttentionStats;
  sequences: number;
  tokens: number;
}

/** Statistics of the queries of `sequences` (token ids, each read as one sequence from position 0). */
export function calibrateTriAttention(model: Model, sequences: readonly (readonly number[])[]): TriAttentionCalibration {
  const c = model.config;
  const L = c.numLayers;
  const Hq = c.numHeads;
  const d = c.headDim;
  const F = d / 2;
  const re = new Float64Array(L * Hq * F);
  const im = new Float64Array(L * Hq * F);
  const abs = new Float64Array(L * Hq * F);
  let tokens = 0;
  for (const ids of sequences) {
    if (ids.length === 0) continue;
    if (ids.length > c.maxPositions) {
      throw new KvsieveError(`calibrate triattention: a calibration sequence has ${ids.length} tokens, the model's context is ${c.maxPositions}`);
    }
    tokens += ids.length;
    model.traceQueries(
      ids as number[],
      (layer, q, rowOffset, T) => {
        for (let t = 0; t < T; t++) {
          const row = (rowOffset + t) * Hq * d;
          for (let a = 0; a < Hq; a++) {
            const o = (layer * Hq + a) * F;
            const x = row + a * d;
            for (let f = 0; f < F; f++) {
              const qr = q[x + f]!;
              const qi = q[x + f + F]!;
              re[o + f] = re[o + f]! + qr;
              im[o + f] = im[o + f]! + qi;
              abs[o + f] = abs[o + f]! + Math.sqrt(qr * qr + qi * qi);
            }
          }
        }
      },
      'rope-input',
    );
  }
  if (tokens === 0) throw new KvsieveError('calibrate triattention: the calibration data gives no tokens');
  const mean = (s: Float64Array) => Float32Array.from(s, (x) => x / tokens);
  return {
    stats: { numLayers: L, numQHeads: Hq, bands: F, qMeanRe: mean(re), qMeanIm: mean(im), qAbsMean: mean(abs) },
    sequences: sequences.filter((s) => s.length > 0).length,
    tokens,
  };
}

/**
 * Text as calibration sequences: its tokens (no chat template, no BOS added beyond the model's
 * own), cut into pieces of at most `maxLength` tokens (default: the context), at most `sequences`.
 */
export function textSequences(model: Model, text: string, maxLength = model.config.maxPositions, sequences = Infinity): number[][] {
  if (!model.tokenizer) throw new KvsieveError('calibrate triattention: the model has no tokenizer to read the calibration text');
  const len = Math.min(maxLength, model.config.maxPositions);
  const ids = model.tokenizer.encode(text);
  const out: number[][] = [];
  for (let i = 0; i < ids.length && out.length < sequences; i += len) out.push(ids.slice(i, i + len));
  return out;
}

/**
 * The model's own generations as calibration sequences: each prompt (its `samples` samples, sample j
 * seeded seed + j) read and continued for up to `maxTokens`; each trace is prompt + generation.
 */
export async function generatedSequences(model: Model, prompts: readonly string[], options: GenerateOptions & { samples?: number } = {}): Promise<number[][]> {
  const { samples = 1, ...generate } = options;
  const out: number[][] = [];
  for (const p of prompts) {
    const results = await model.generateBatch([p], { ...generate, n: samples });
    for (const r of results) out.push([...r.promptIds, ...r.generatedIds].slice(0, model.config.maxPositions));
  }
  return out;
}
