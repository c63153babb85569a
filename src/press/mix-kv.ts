/**
 * mix-kv (importance + diversity mixed per head), over the m = n - w older slots (min-max and means over them):
 *   I = S + V~, S the SnapKV score, v_j = ||V_j||, V~ = minmax(v) * mean(S) / mean(minmax(v));
 *   D = d * mean(S) / mean(d), d = minmax(-(k^_j . mu)), mu the mean of the unit keys over ALL n slots;
 *   F = r_h D + (1 - r_h) I, r_h the head redundancy (calibrated table, or online (n ||mu||^2 - 1) / (n - 1)).
 * A zero denominator (constant v or d, all-zero scores) drops that term instead of dividing by zero (the published
 * code adds 1e-8; picks do not change).
 */
import { KvsieveError } from '../core/errors.js';
import { definePress } from './define.js';
import { meanOf, minmaxInPlace, ws } from './numeric.js';
import { BUDGET, flatTensor, GQA, KERNEL_BY_POOLING, option, POOLING, window } from './options.js';
import { snapkvScores } from './snapkv.js';

/** mu = mean over the n keys of k_j / ||k_j|| (a zero key counts as the zero vector), into out[0..d). */
export function meanUnitKey(keys: ArrayLike<number>, n: number, d: number, out: Float64Array): Float64Array {
  out.fill(0, 0, d);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = j * d; t < (j + 1) * d; t++) s += keys[t]! * keys[t]!;
    if (s === 0) continue;
    const inv = 1 / (Math.sqrt(s) * n);
    for (let a = 0; a < d; a++) out[a] = out[a]! + keys[j * d + a]! * inv;
  }
  return out;
}

/**
 * Mean pairwise cosine similarity of a head's n keys, through the identity (n ||mu||^2 - 1) / (n - 1).
 * Not clamped (random keys may give a small negative value); 0 when n < 2.
 */
export function headRedundancy(keys: ArrayLike<number>, n: number, d: number): number {
  if (n < 2) return 0;
  const mu = meanUnitKey(keys, n, d, ws.f64('mixkv.mu', d));
  let s = 0;
  for (let a = 0; a < d; a++) s += mu[a]! * mu[a]!;
  return (n * s - 1) / (n - 1);
}

const HEAD_REDUNDANCY = option.custom({
  name: 'headRedundancy',
  type: 'tensor',
  description: 'calibrated head redundancy r_h, [kvHeads] or [layers][kvHeads]; on the CLI comma-separated per KV head',
  defaultText: 'computed online from the keys',
  range: 'values in [0, 1]',
  convert(press, v, ctx): Float32Array {
    const H = ctx.numKvHeads;
    const L = ctx.numLayers;
    const isNestedLayers = Array.isArray(v) && v.length > 0 && Array.isArray(v[0]);
    const flatLen = ArrayBuffer.isView(v) ? (v as Float32Array).length : -1;
    let t: Float32Array;
    if (isNestedLayers || flatLen === L * H) t = flatTensor(press, 'headRedundancy', v, [L, H], ['layers', 'kvHeads']);
    else {
      const one = flatTensor(press, 'headRedundancy', v, [H], ['kvHeads']);
      t = new Float32Array(L * H);
      for (let l = 0; l < L; l++) t.set(one, l * H);
    }
    for (const x of t) if (x < 0 || x > 1) throw new KvsieveError(`${press}: option "headRedundancy" values must lie in [0, 1], got ${x}`, { option: 'headRedundancy' });
    return t;
  },
  fromFlag(press, raw) {
    return raw.split(',').map((x) => {
      const v = Number(x);
      if (x.trim() === '' || !Number.isFinite(v)) throw new KvsieveError(`${press}: --head-redundancy must be comma-separated numbers, got ${JSON.stringify(raw.slice(0, 60))}`);
      return v;
    });
  },
});

export const mixkv = definePress({
  name: 'mix-kv',
  summary: "importance and diversity mixed per head by the head's key redundancy",
  options: [BUDGET, window(32, 8, 1), KERNEL_BY_POOLING, POOLING, GQA, HEAD_REDUNDANCY],
  needs: { queries: (o) => Math.max(1, o.window) },
  score(o, view, h, m, out) {
    const d = view.headDim;
    const head = view.heads[h]!;
    const n = head.n;
    if (head.values.length < n * d) {
      throw new KvsieveError(`mix-kv: values: KV head ${h} holds ${head.values.length} value entries, needs n * headDim = ${n * d}`);
    }
    // Importance: S then + V~ (S kept in `out` until the end).
    snapkvScores(o, view, h, m, out);
    const meanS = meanOf(out, m);
    const vt = ws.f64('mixkv.v', m);
    const V = head.values;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = j * d; t < (j + 1) * d; t++) s += V[t]! * V[t]!;
      vt[j] = Math.sqrt(s);
    }
    minmaxInPlace(vt, m);
    const meanV = meanOf(vt, m);
    const vScale = meanV > 0 ? meanS / meanV : 0;
    // Diversity.
    const mu = meanUnitKey(head.keys, n, d, ws.f64('mixkv.mu', d));
    const K = head.keys;
    const dv = ws.f64('mixkv.d', m);
    for (let j = 0; j < m; j++) {
      let s = 0;
      let c = 0;
      for (let a = 0; a < d; a++) {
        const k = K[j * d + a]!;
        s += k * k;
        c += k * mu[a]!;
      }
      dv[j] = s > 0 ? -c / Math.sqrt(s) : 0;
    }
    minmaxInPlace(dv, m);
    const meanD = meanOf(dv, m);
    const dScale = meanD > 0 ? meanS / meanD : 0;
    // Head redundancy.
    let r: number;
    if (o.headRedundancy) r = o.headRedundancy[view.layer * view.numKvHeads + h]!;
    else {
      let s = 0;
      for (let a = 0; a < d; a++) s += mu[a]! * mu[a]!;
      r = n < 2 ? 0 : (n * s - 1) / (n - 1);
    }
    r = Math.min(1, Math.max(0, r));
    for (let j = 0; j < m; j++) {
      const imp = out[j]! + vt[j]! * vScale;
      const div = dv[j]! * dScale;
      out[j] = r * div + (1 - r) * imp;
    }
  },
});
