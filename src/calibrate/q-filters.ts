import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../api.js';
import { KvsieveError } from '../core/errors.js';
import { Random } from '../core/random.js';
import { openSafetensors, writeSafetensors } from '../formats/safetensors.js';
import type { ModelConfig } from '../core/model-config.js';
import { kvFiltersFromQueryFilters, qFilterFromQueries } from '../press/q-filters.js';

export interface QFilterCalibrationOptions {
  /** Calibration sequences (default 20). */
  sequences?: number;
  /** Tokens per sequence (default 2048, capped by the context). */
  seqLen?: number;
  /** Query vectors sampled per (layer, query head) (default 3000). */
  samples?: number;
  seed?: number;
}

export interface QFilterCalibration {
  /** [layers * kvHeads * headDim] */
  filters: Float32Array;
  sequences: number;
  tokens: number;
  samplesPerHead: number;
}

/**
 * Q-Filters calibration: runs the model over calibration token ids in `sequences` chunks of `seqLen`,
 * reservoir-samples `samples` query vectors (after RoPE) per (layer, query head), and turns each head's
 * sample into a filter (first right singular vector, sign rule), averaged per KV head.
 */
export function calibrateQFilters(model: Model, ids: readonly number[], o: QFilterCalibrationOptions = {}): QFilterCalibration {
  const c = model.config;
  const sequences = o.sequences ?? 20;
  const seqLen = Math.min(o.seqLen ?? 2048, c.maxPositions);
  const samples = o.samples ?? 3000;
  for (const [name, v] of [['sequences', sequences], ['seqLen', seqLen], ['samples', samples]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new KvsieveError(`calibrate q-filters: ${name} must be a whole number >= 1, got ${v}`, { option: name });
  }
  const chunks: number[][] = [];
  const bos = c.bosTokenId;
  const body = bos !== null ? seqLen - 1 : seqLen;
  for (let start = 0; start < ids.length && chunks.length < sequences; start += body) {
    const part = ids.slice(start, start + body);
    if (part.length < 2) break;
    chunks.push(bos !== null ? [bos, ...part] : [...part]);
  }
  if (chunks.length === 0) throw new KvsieveError('calibrate q-filters: the calibration data gives no tokens (need at least 2)');

  const L = c.numLayers;
  const Hq = c.numHeads;
  const d = c.headDim;
  const reservoir = Array.from({ length: L * Hq }, () => new Float32Array(samples * d));
  const seen = new Array<number>(L * Hq).fill(0);
  const rnd = new Random(o.seed ?? 0);
  let tokens = 0;
  for (const chunk of chunks) {
    tokens += chunk.length;
    model.traceQueries(chunk, (layer, q, rowOffset, T) => {
      for (let t = 0; t < T; t++) {
        for (let g = 0; g < Hq; g++) {
          const slot = layer * Hq + g;
          const k = seen[slot]!++;
          // Reservoir sampling: the k-th vector replaces a random kept one with probability samples / (k + 1).
          const at = k < samples ? k : Math.floor(rnd.next() * (k + 1));
          if (at < samples) {
            const src = (rowOffset + t) * Hq * d + g * d;
            reservoir[slot]!.set(q.subarray(src, src + d), at * d);
          }
        }
      }
    });
  }
  const filters = new Float32Array(L * c.numKvHeads * d);
  for (let l = 0; l < L; l++) {
    const perQueryHead = Array.from({ length: Hq }, (_, g) => {
      const n = Math.min(samples, seen[l * Hq + g]!);
      return qFilterFromQueries(reservoir[l * Hq + g]!, n, d);
    });
    kvFiltersFromQueryFilters(perQueryHead, c.numKvHeads).forEach((f, h) => filters.set(f, (l * c.numKvHeads + h) * d));
  }
  return { filters, sequences: chunks.length, tokens, samplesPerHead: Math.min(samples, seen[0]!) };
}

/** Reads a calibration text file. */
export function readCalibrationText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read calibration data (${(e as Error).message})`);
  }
}
