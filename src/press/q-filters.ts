/**
 * q-filters: score s_j = -(f[l,h] . k_j), keep the highest. f is a per (layer, KV head) filter calibrated once
 * per model. No attention weights needed. Window 0 at prefill (kvpress parity), 64 at decode by default.
 */
import { InternalError, KvsieveError } from '../core/errors.js';
import { readQFilters } from '../formats/q-filters.js';
import { definePress } from './define.js';
import { dot, dotF32 } from './numeric.js';
import { BUDGET, flatTensor, option, window } from './options.js';

const FILTERS = option.custom({
  name: 'filters',
  type: 'tensor',
  flag: 'q-filters',
  description: 'calibrated Q-Filters, [layers][kvHeads][headDim]: on the CLI a directory or .safetensors file (kvsieve calibrate q-filters)',
  defaultText: 'none (required)',
  range: 'finite values, shape of the model',
  required: true,
  convert: (press, v, ctx) => flatTensor(press, 'filters', v, [ctx.numLayers, ctx.numKvHeads, ctx.headDim], ['layers', 'kvHeads', 'headDim']),
  fromFlag: (_press, raw, ctx) => readQFilters(raw, ctx),
});

export const qFilters = definePress({
  name: 'q-filters',
  summary: 'keep the keys with the lowest projection on a calibrated per-head filter',
  options: [BUDGET, window(0, 64, 0, 'newest tokens always kept (0 = kvpress parity)'), FILTERS],
  score(o, view, h, m, out) {
    const d = view.headDim;
    const f = o.filters;
    const need = view.numLayers * view.numKvHeads * d;
    if (!f || f.length !== need) {
      throw new KvsieveError(`q-filters: filters must hold layers*kvHeads*headDim = ${need} values for this model, got ${f ? f.length : 'none'}`);
    }
    const fo = (view.layer * view.numKvHeads + h) * d;
    const K = view.heads[h]!.keys;
    for (let j = 0; j < m; j++) out[j] = -dotF32(f, fo, K, j * d, d);
  },
});

/**
 * Calibration of one query head's filter from N sampled query vectors q [N * d] (row-major):
 * with Q = U S V^T and u1, v1 the first singular vectors, sgn = +1 when more than half of u1's entries are
 * positive, else -1; the filter is -sgn * v1. v1 is the top eigenvector of Q^T Q (repeated squaring, then
 * power iteration); u1 has the signs of Q v1.
 */
export function qFilterFromQueries(q: ArrayLike<number>, N: number, d: number): Float32Array {
  if (N < 1 || q.length < N * d) throw new InternalError(`q-filters calibration: need N * d = ${N * d} query values, got ${q.length}`);
  let C = new Float64Array(d * d);
  for (let r = 0; r < N; r++) {
    const o = r * d;
    for (let a = 0; a < d; a++) {
      const x = q[o + a]!;
      if (x === 0) continue;
      for (let b = 0; b < d; b++) C[a * d + b] = C[a * d + b]! + x * q[o + b]!;
    }
  }
  const C0 = C.slice();
  // Repeated squaring: C^(2^8) is close to rank one along v1.
  for (let it = 0; it < 8; it++) {
    const S = new Float64Array(d * d);
    for (let a = 0; a < d; a++)
      for (let k = 0; k < d; k++) {
        const x = C[a * d + k]!;
        if (x === 0) continue;
        for (let b = 0; b < d; b++) S[a * d + b] = S[a * d + b]! + x * C[k * d + b]!;
      }
    let mx = 0;
    for (const x of S) mx = Math.max(mx, Math.abs(x));
    if (mx === 0) break;
    for (let i = 0; i < S.length; i++) S[i] = S[i]! / mx;
    C = S;
  }
  // Start from the largest column, then polish with power iterations on Q^T Q.
  let best = 0;
  let bestNorm = -1;
  for (let c = 0; c < d; c++) {
    let s = 0;
    for (let a = 0; a < d; a++) s += C[a * d + c]! ** 2;
    if (s > bestNorm) (bestNorm = s), (best = c);
  }
  let v = new Float64Array(d);
  for (let a = 0; a < d; a++) v[a] = C[a * d + best]!;
  normalise(v);
  for (let it = 0; it < 200; it++) {
    const nv = new Float64Array(d);
    for (let a = 0; a < d; a++) nv[a] = dot(C0, a * d, v, 0, d);
    if (!normalise(nv)) break;
    let change = 0;
    for (let a = 0; a < d; a++) change = Math.max(change, Math.abs(nv[a]! - v[a]!));
    v = nv;
    if (change < 1e-13) break;
  }
  let positive = 0;
  for (let r = 0; r < N; r++) if (dot(q, r * d, v, 0, d) > 0) positive++;
  const sgn = positive > N / 2 ? 1 : -1;
  const f = new Float32Array(d);
  for (let a = 0; a < d; a++) f[a] = -sgn * v[a]!;
  return f;
}

function normalise(v: Float64Array): boolean {
  let s = 0;
  for (const x of v) s += x * x;
  if (!(s > 0)) return false;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * inv;
  return true;
}

/** KV-head filters for GQA: the plain mean (not renormalised) of each group's G query-head filters. */
export function kvFiltersFromQueryFilters(perQueryHead: ArrayLike<number>[], numKvHeads: number): Float32Array[] {
  const G = perQueryHead.length / numKvHeads;
  if (!Number.isInteger(G) || G < 1) {
    throw new InternalError(`q-filters calibration: ${perQueryHead.length} query-head filters do not split into ${numKvHeads} KV heads`);
  }
  const d = perQueryHead[0]!.length;
  return Array.from({ length: numKvHeads }, (_, h) => {
    const f = new Float32Array(d);
    for (let g = h * G; g < (h + 1) * G; g++) for (let a = 0; a < d; a++) f[a] = f[a]! + perQueryHead[g]![a]! / G;
    return f;
  });
}
