/**
 * Attention of the observation queries over one KV head's keys, reduced to one score per older slot:
 * z[g,i,j] = q[g,i] . k[j] / sqrt(d), softmax, mean (or sum) over the queries, GQA reduction, pooling.
 * The one place softmax and the GQA grouping live (the presses' observation-window attention).
 */
import { KvsieveError } from '../core/errors.js';
import { dotF32, pool1d, ws } from './numeric.js';
import type { GqaMode, LayerView, Pooling } from './types.js';

export interface ObservationSpec {
  /** Observation queries to use: the last `queries` rows of the view (query i belongs to token n - queries + i). */
  queries: number;
  /** Slots scored: j < scored (the non-window slots). */
  scored: number;
  /**
   * 'causal': softmax over all keys the query can see (j <= n - queries + i: the last query sees all n);
   * 'scored': softmax over the scored slots j < scored only (R-KV).
   */
  softmax: 'causal' | 'scored';
  /** 'mean': per query head softmax, then the mean over the group; 'max-logits': max over the group before softmax. */
  gqa: GqaMode;
  /** null: no pooling. */
  pooling: Pooling | null;
  kernel: number;
  /** Sum over the queries instead of the mean (h2o's running sums). */
  sum?: boolean;
}

/** Number of observation queries a press with window w uses: min(view.w, w), at least 1. */
export function observationCount(view: LayerView, window: number, press: string): number {
  const q = Math.min(view.w, window);
  if (q < 1) {
    throw new KvsieveError(`${press}: queries: the layer view holds no observation queries (w = ${view.w}) but the press needs them`);
  }
  return q;
}

/** Softmax in place over x[0..len). */
export function softmaxInPlace(x: Float64Array | Float32Array, len: number): void {
  let mx = -Infinity;
  for (let j = 0; j < len; j++) if (x[j]! > mx) mx = x[j]!;
  let s = 0;
  for (let j = 0; j < len; j++) {
    const e = Math.exp(x[j]! - mx);
    x[j] = e;
    s += e;
  }
  const inv = 1 / s;
  for (let j = 0; j < len; j++) x[j] = x[j]! * inv;
}

/**
 * Logits of up to 4 query rows at once: out[r * stride + j] = scale * qs[r][qo[r]..+d) . K[j], j < visible.
 * Each key is loaded once per block of 4 rows (about twice as fast as one row at a time).
 */
export function logitRows(qs: Float32Array[], qo: number[], count: number, K: Float32Array, visible: number, d: number, scale: number, out: Float64Array, stride: number): void {
  let r = 0;
  for (; r + 4 <= count; r += 4) {
    const a0 = qs[r]!;
    const a1 = qs[r + 1]!;
    const a2 = qs[r + 2]!;
    const a3 = qs[r + 3]!;
    const o0 = qo[r]!;
    const o1 = qo[r + 1]!;
    const o2 = qo[r + 2]!;
    const o3 = qo[r + 3]!;
    const b = r * stride;
    for (let j = 0; j < visible; j++) {
      const ko = j * d;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let t = 0; t < d; t++) {
        const k = K[ko + t]!;
        s0 += a0[o0 + t]! * k;
        s1 += a1[o1 + t]! * k;
        s2 += a2[o2 + t]! * k;
        s3 += a3[o3 + t]! * k;
      }
      out[b + j] = s0 * scale;
      out[b + stride + j] = s1 * scale;
      out[b + 2 * stride + j] = s2 * scale;
      out[b + 3 * stride + j] = s3 * scale;
    }
  }
  for (; r < count; r++) {
    const a = qs[r]!;
    const o = qo[r]!;
    const b = r * stride;
    for (let j = 0; j < visible; j++) out[b + j] = dotF32(a, o, K, j * d, d) * scale;
  }
}

/**
 * Softmax probabilities of query row `row` of query head g over keys 0..visible-1 of KV head h, into out[0..visible).
 */
export function attentionRow(view: LayerView, g: number, row: number, h: number, visible: number, out: Float64Array): void {
  const d = view.headDim;
  logitRows([view.queries[g]!], [row * d], 1, view.heads[h]!.keys, visible, d, 1 / Math.sqrt(d), out, 0);
  softmaxInPlace(out, visible);
}

/**
 * Logits of every observation query of KV head h's group over all its n keys through the view's kernels:
 * [G * q, n], row (g - h * G) * q + i for query head g and observation query i (token n - q + i).
 */
function headLogits(view: LayerView, h: number, first: number, q: number, scale: number): Float32Array {
  const d = view.headDim;
  const G = view.numQHeads / view.numKvHeads;
  const n = view.heads[h]!.n;
  const a = ws.f32('attn.rows', G * q * d);
  for (let g = 0; g < G; g++) a.set(view.queries[h * G + g]!.subarray(first * d, (first + q) * d), g * q * d);
  const out = ws.f32('attn.logits', G * q * n);
  view.kernels!.dots(a, G * q, view.heads[h]!.keys, n, d, scale, out);
  return out;
}

/**
 * Scores of slots j < spec.scored of KV head h from the observation queries, into out[0..scored).
 * GQA 'mean' with max pooling pools each query head, then averages (kvpress order); with average pooling the
 * order does not matter and the group mean is pooled once.
 */
export function observationScores(view: LayerView, h: number, spec: ObservationSpec, out: Float32Array): void {
  const d = view.headDim;
  const scale = 1 / Math.sqrt(d);
  const G = view.numQHeads / view.numKvHeads;
  const n = view.heads[h]!.n;
  const K = view.heads[h]!.keys;
  const q = Math.min(spec.queries, n); // a query never belongs to a token the head no longer holds in its window
  const m = spec.scored;
  const first = view.w - q;
  const block = ws.f64('attn.block', 4 * n);
  const total = ws.f64('attn.total', m);
  total.fill(0);
  const perHeadPool = spec.gqa === 'mean' && spec.pooling === 'max' && spec.kernel > 1 && G > 1;
  const visibleOf = (i: number) => (spec.softmax === 'causal' ? n - q + i + 1 : m);
  // Logits of block rows r < c (query head rowsOf[r][0], observation query rowsOf[r][1]) over keys j < visible
  // into block[r * n + j]: from one backend call for the whole head when the view has kernels.
  const rowsOf: [number, number][] = [];
  const all = view.kernels ? headLogits(view, h, first, q, scale) : null;
  const qs: Float32Array[] = [];
  const qo: number[] = [];
  const logits = (c: number, visible: number): void => {
    if (all) {
      for (let r = 0; r < c; r++) {
        const src = ((rowsOf[r]![0] - h * G) * q + rowsOf[r]![1]) * n;
        for (let j = 0; j < visible; j++) block[r * n + j] = all[src + j]!;
      }
      return;
    }
    qs.length = qo.length = 0;
    for (let r = 0; r < c; r++) qs.push(view.queries[rowsOf[r]![0]]!), qo.push((first + rowsOf[r]![1]) * d);
    logitRows(qs, qo, c, K, visible, d, scale, block, n);
  };

  if (spec.gqa === 'mean') {
    const acc = perHeadPool ? ws.f64('attn.acc', m) : total;
    const pooled = perHeadPool ? ws.f64('attn.pooled', m) : total;
    for (let g = h * G; g < (h + 1) * G; g++) {
      if (perHeadPool) acc.fill(0);
      for (let i0 = 0; i0 < q; i0 += 4) {
        const c = Math.min(4, q - i0);
        rowsOf.length = 0;
        for (let r = 0; r < c; r++) rowsOf.push([g, i0 + r]);
        logits(c, visibleOf(i0 + c - 1));
        for (let r = 0; r < c; r++) {
          const row = block.subarray(r * n, (r + 1) * n);
          const visible = visibleOf(i0 + r);
          softmaxInPlace(row, visible);
          // a query older than some scored slots (h2o uses every stored query) does not see them
          const upto = Math.min(m, visible);
          for (let j = 0; j < upto; j++) acc[j] = acc[j]! + row[j]!;
        }
      }
      if (perHeadPool) {
        pool1d('max', acc, m, spec.kernel, pooled);
        for (let j = 0; j < m; j++) total[j] = total[j]! + pooled[j]!;
      }
    }
  } else {
    const row = ws.f64('attn.row', n);
    for (let i = 0; i < q; i++) {
      const visible = visibleOf(i);
      row.fill(-Infinity, 0, visible);
      for (let g0 = h * G; g0 < (h + 1) * G; g0 += 4) {
        const c = Math.min(4, (h + 1) * G - g0);
        rowsOf.length = 0;
        for (let r = 0; r < c; r++) rowsOf.push([g0 + r, i]);
        logits(c, visible);
        for (let r = 0; r < c; r++) {
          const b = r * n;
          for (let j = 0; j < visible; j++) if (block[b + j]! > row[j]!) row[j] = block[b + j]!;
        }
      }
      softmaxInPlace(row, visible);
      const upto = Math.min(m, visible);
      for (let j = 0; j < upto; j++) total[j] = total[j]! + row[j]!;
    }
  }

  const factor = (spec.sum ? 1 : 1 / q) * (spec.gqa === 'mean' ? 1 / G : 1);
  if (spec.pooling && spec.kernel > 1 && !perHeadPool) {
    pool1d(spec.pooling, total, m, spec.kernel, out);
    for (let j = 0; j < m; j++) out[j] = out[j]! * factor;
  } else {
    for (let j = 0; j < m; j++) out[j] = total[j]! * factor;
  }
}
