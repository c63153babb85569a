/**
 * Press scores computed on the GPU (the webgpu backend's compressions): for the built-in presses whose
 * scores are observation-window attention (snapkv, pyramidkv, and ada-kv over either), that and R-KV's
 * redundancy (r-kv) or key norms (knorm), the heavy reductions run as WGSL over the cache's key buffer and the observation ring, and
 * only per-head sums cross back: [query heads or KV heads, slots] floats instead of the layer's keys
 * and values. The CPU then finishes each head's scores exactly as the press's own code does (the GQA
 * combination, pooling and scaling of observation.ts; knorm's sign), and the shared selection picks
 * the keep lists from them. Other presses (a user's definePress too) read the layer back instead.
 */
import type { WebGpuBackend } from '../backend/webgpu/backend.js';
import type { GpuKvStore } from '../backend/webgpu/shaders.js';
import { InternalError } from '../core/errors.js';
import type { GpuKvCache } from '../kv/gpu-cache.js';
import { pool1d } from '../press/numeric.js';
import { PRESSES } from '../press/table.js';
import type { GqaMode, Pooling, PressDefinition, PressOptions } from '../press/types.js';

/**
 * How a press is scored on the webgpu backend without reading keys and values back: scores from the
 * GPU (observation-window attention, r-kv, key norms, Q-Filters projections); or the press's own code
 * on a view without keys and values, which it does not read ('view': streaming-llm, random-pp; 'sums':
 * h2o, from the running attention sums alone).
 */
export type GpuScoring =
  | { kind: 'observation'; window: number; gqa: GqaMode; pooling: Pooling; kernel: number }
  | { kind: 'r-kv'; window: number; kernel: number; lambda: number; threshold: number }
  | { kind: 'key-norm' }
  | { kind: 'projection'; filters: Float32Array }
  | { kind: 'view' }
  | { kind: 'sums' };

/** The scorings gpuScores computes (the others run the press's code on the view). */
export type GpuScores = Exclude<GpuScoring, { kind: 'view' | 'sums' }>;

/** The observation-window attention a scoring needs: its softmax, GQA mode and pooling (observation.ts's spec). */
interface ObservationShape {
  window: number;
  softmax: 'causal' | 'scored';
  gqa: GqaMode;
  pooling: Pooling | null;
  kernel: number;
}

/** The GPU scoring of `def` (the scored press itself, or ada-kv's inner) with options `o`; null: none (read the layer back). */
export function gpuScoringOf(def: PressDefinition, o: PressOptions): GpuScoring | null {
  if (def === PRESSES.snapkv || def === PRESSES.pyramidkv) {
    // snapkvScores: causal softmax over all keys, the press's GQA mode, pooling and kernel
    return { kind: 'observation', window: o['window'] as number, gqa: o['gqa'] as GqaMode, pooling: o['pooling'] as Pooling, kernel: o['kernel'] as number };
  }
  if (def === PRESSES.knorm) return { kind: 'key-norm' };
  if (def === PRESSES['q-filters']) return { kind: 'projection', filters: o['filters'] as Float32Array };
  if (def === PRESSES['streaming-llm'] || def === PRESSES['random-pp']) return { kind: 'view' };
  if (def === PRESSES.h2o) return { kind: 'sums' };
  if (def === PRESSES['r-kv']) return { kind: 'r-kv', window: o['window'] as number, kernel: o['kernel'] as number, lambda: o['lambda'] as number, threshold: o['threshold'] as number };
  return null;
}

/** The observation ring of a layer on the GPU: [window, numHeads * headDim], `count` rows stored. */
export interface GpuRing {
  ring: GPUBuffer;
  window: number;
  count: number;
}

/** A layer's key buffer and how it holds the keys. */
interface GpuKeys {
  keys: GPUBuffer;
  kvStore: GpuKvStore;
}

export interface GpuScoreInput {
  backend: WebGpuBackend;
  cache: GpuKvCache;
  layer: number;
  numHeads: number;
  headDim: number;
  /** Scored slots per KV head (m_h = n_h - the press's window). */
  scored: readonly number[];
  ring: GpuRing | null;
}

/**
 * Per KV head the m_h scores `scoring` gives its oldest slots (higher = keep), as the press's CPU code
 * would compute them from the same keys and queries (to float rounding: the GPU sums in float32 and
 * in its own order).
 */
export async function gpuScores(scoring: GpuScores, x: GpuScoreInput): Promise<Float32Array[]> {
  const { keys, kvStore, capacity, lengths } = x.cache.layerKeys(x.layer);
  const H = lengths.length;
  if (!keys || capacity === 0) throw new InternalError('gpu scoring: the layer holds no slots');
  const shape = x.backend.upload(Uint32Array.from(lengths.flatMap((n, h) => [n, x.scored[h]!])), 'score shape');
  try {
    if (scoring.kind === 'key-norm') {
      const norms = x.backend.storage(H * capacity * 4, 'key norms');
      try {
        const s = x.backend.beginStep(1);
        s.keyNorms({ keys, kvStore, capacity, shape, heads: x.numHeads, kvHeads: H, headDim: x.headDim, norms });
        const all = await s.finish(norms, H * capacity);
        // knorm: score = -||k_j||
        return lengths.map((_, h) => Float32Array.from(all.subarray(h * capacity, h * capacity + x.scored[h]!), (v) => -v));
      } finally {
        norms.destroy();
      }
    }
    if (scoring.kind === 'projection') {
      // q-filters: score = -(f[l, h] . k_j)
      const d = x.headDim;
      const filter = x.backend.upload(scoring.filters.subarray(x.layer * H * d, (x.layer + 1) * H * d), 'q-filters');
      const proj = x.backend.storage(H * capacity * 4, 'key projections');
      try {
        const s = x.backend.beginStep(1);
        s.keyProjections({ keys, kvStore, capacity, shape, heads: x.numHeads, kvHeads: H, headDim: d, filter, proj });
        const all = await s.finish(proj, H * capacity);
        return lengths.map((_, h) => Float32Array.from(all.subarray(h * capacity, h * capacity + x.scored[h]!), (v) => -v));
      } finally {
        filter.destroy();
        proj.destroy();
      }
    }
    if (scoring.kind === 'observation') {
      const spec: ObservationShape = { window: scoring.window, softmax: 'causal', gqa: scoring.gqa, pooling: scoring.pooling, kernel: scoring.kernel };
      return await observationScoresOnGpu(x, spec, shape, { keys, kvStore }, capacity, lengths);
    }
    // r-kv: F = lambda I - (1 - lambda) R (src/press/r-kv.ts), I the observation attention (softmax over
    // the scored slots, GQA max on the logits, max pooling), R the softmax over all n of the redundancy
    const importance = await observationScoresOnGpu(x, { window: scoring.window, softmax: 'scored', gqa: 'max-logits', pooling: 'max', kernel: scoring.kernel }, shape, { keys, kvStore }, capacity, lengths);
    const means = await redundancyOnGpu(x, scoring.threshold, shape, { keys, kvStore }, capacity, H);
    return lengths.map((n, h) => {
      const c = means.subarray(h * capacity, h * capacity + n);
      const out = importance[h]!;
      let mx = -Infinity;
      for (let j = 0; j < n; j++) if (c[j]! > mx) mx = c[j]!;
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(c[j]! - mx);
      const lam = scoring.lambda;
      for (let j = 0; j < out.length; j++) out[j] = lam * out[j]! - (1 - lam) * (Math.exp(c[j]! - mx) / sum);
      return out;
    });
  } finally {
    shape.destroy();
  }
}

/** Per KV head the observation-window scores of its m_h oldest slots (observationScores with `spec`). */
async function observationScoresOnGpu(x: GpuScoreInput, spec: ObservationShape, shape: GPUBuffer, keys: GpuKeys, capacity: number, lengths: readonly number[]): Promise<Float32Array[]> {
  const H = lengths.length;
  const G = x.numHeads / H;
  const ring = x.ring;
  // observationCount: min(view.w, window) queries, at least 1 (the press's CPU code refuses none)
  const w = ring ? Math.min(ring.window, ring.count) : 0;
  const queries = Math.min(w, spec.window);
  if (!ring || queries < 1) throw new InternalError('gpu scoring: no observation queries stored for an observation-window press');
  const maxLogits = spec.gqa === 'max-logits';
  const rowHeads = maxLogits ? H : x.numHeads;
  const probs = x.backend.storage(rowHeads * queries * capacity * 4, 'observation probs');
  const totals = x.backend.storage(rowHeads * capacity * 4, 'observation totals');
  try {
    const s = x.backend.beginStep(2);
    s.observationTotals({ ...ring, queries, ...keys, capacity, shape, heads: x.numHeads, kvHeads: H, headDim: x.headDim, softmax: spec.softmax, maxLogits, probs, totals });
    const all = await s.finish(totals, rowHeads * capacity);
    return lengths.map((n, h) => {
      const m = x.scored[h]!;
      const rows = maxLogits ? [h] : Array.from({ length: G }, (_, e) => h * G + e);
      return finishObservation(rows.map((r) => all.subarray(r * capacity, r * capacity + m)), m, Math.min(queries, n), G, spec);
    });
  } finally {
    probs.destroy();
    totals.destroy();
  }
}

/** R-KV's redundancy c of every live key, [kvHeads, capacity] (ScoreKernels.redundancy's definition). */
async function redundancyOnGpu(x: GpuScoreInput, threshold: number, shape: GPUBuffer, keys: GpuKeys, capacity: number, H: number): Promise<Float32Array> {
  const scratch = ['key norms', 'redundancy pick', 'redundancy picked', 'redundancy'].map((label) => x.backend.storage(H * capacity * 4, label));
  const [norms, pick, picked, means] = scratch as [GPUBuffer, GPUBuffer, GPUBuffer, GPUBuffer];
  try {
    const s = x.backend.beginStep(3);
    const common = { ...keys, capacity, shape, heads: x.numHeads, kvHeads: H, headDim: x.headDim };
    s.keyNorms({ ...common, norms });
    s.redundancy({ ...common, threshold, norms, pick, picked, means });
    return await s.finish(means, H * capacity);
  } finally {
    for (const b of scratch) b.destroy();
  }
}

/**
 * The tail of observationScores (src/press/observation.ts) over per-row-head totals (the sum over the
 * q observation queries of each slot's probability): GQA mean (pooled per query head first under max
 * pooling, kvpress's order) or the max-logits row, pooling, then the mean over queries and group.
 */
function finishObservation(rows: Float32Array[], m: number, q: number, G: number, s: ObservationShape): Float32Array {
  const out = new Float32Array(m);
  const total = new Float64Array(m);
  const pooled = s.pooling !== null && s.kernel > 1;
  const perHeadPool = s.gqa === 'mean' && s.pooling === 'max' && s.kernel > 1 && G > 1;
  const scratch = perHeadPool ? new Float64Array(m) : null;
  for (const row of rows) {
    if (scratch) {
      pool1d('max', row, m, s.kernel, scratch);
      for (let j = 0; j < m; j++) total[j] = total[j]! + scratch[j]!;
    } else {
      for (let j = 0; j < m; j++) total[j] = total[j]! + row[j]!;
    }
  }
  const factor = (1 / q) * (s.gqa === 'mean' ? 1 / G : 1);
  if (pooled && !perHeadPool) {
    pool1d(s.pooling!, total, m, s.kernel, out);
    for (let j = 0; j < m; j++) out[j] = out[j]! * factor;
  } else {
    for (let j = 0; j < m; j++) out[j] = total[j]! * factor;
  }
  return out;
}
