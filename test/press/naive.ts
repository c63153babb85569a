/**
 * Independent, deliberately naive references for the press tests: plain nested arrays, float64, the formulas of
 * docs/methods.md written out literally (full matrices, explicit loops, sorting instead of selection).
 */
import type { SelectView } from '../../src/press/index.js';

export type M = number[][];

import { rng } from '../helpers.js';

export { rng };

/** Standard normal, rounded to float32 so the engine's Float32Arrays hold exactly the same numbers. */
export function gauss(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.fround(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()));
}

export function randMatrix(r: () => number, rows: number, cols: number, scale = 1): M {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => Math.fround(gauss(r) * scale)));
}

export interface NaiveView {
  H: number;
  Q: number;
  d: number;
  n: number;
  keys: M[]; // [H][n][d]
  values: M[]; // [H][n][d]
  queries: M[]; // [Q][w][d]
  layer: number;
  numLayers: number;
}

export function randomView(seed: number, o: { H: number; Q: number; d: number; n: number; w: number; layer?: number; numLayers?: number; qScale?: number }): NaiveView {
  const r = rng(seed);
  return {
    H: o.H,
    Q: o.Q,
    d: o.d,
    n: o.n,
    keys: Array.from({ length: o.H }, () => randMatrix(r, o.n, o.d)),
    values: Array.from({ length: o.H }, () => randMatrix(r, o.n, o.d)),
    queries: Array.from({ length: o.Q }, () => randMatrix(r, o.w, o.d, o.qScale ?? 1)),
    layer: o.layer ?? 0,
    numLayers: o.numLayers ?? 1,
  };
}

export function toSelectView(v: NaiveView): SelectView {
  return {
    numKvHeads: v.H,
    numQHeads: v.Q,
    headDim: v.d,
    n: v.n,
    keys: v.keys,
    values: v.values,
    queries: v.queries,
    layer: v.layer,
    numLayers: v.numLayers,
  };
}

export const dotv = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
export const norm = (a: number[]) => Math.sqrt(dotv(a, a));

export function softmax(x: number[]): number[] {
  const mx = Math.max(...x);
  const e = x.map((v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Literal pooling: avg with zero padding counted (sum / kernel), max with -inf padding. */
export function pool(kind: 'avg' | 'max', a: number[], kernel: number): number[] {
  const p = Math.floor(kernel / 2);
  const padded = [...Array(p).fill(kind === 'avg' ? 0 : -Infinity), ...a, ...Array(p).fill(kind === 'avg' ? 0 : -Infinity)];
  return a.map((_, j) => {
    const win = padded.slice(j, j + kernel);
    return kind === 'avg' ? win.reduce((s, x) => s + x, 0) / kernel : Math.max(...win);
  });
}

/** Keep list from scores of j < n - w: sort by (score desc, index asc), top B - w, plus the window; rules for n <= B, B <= w. */
export function naiveKeep(scores: number[], n: number, B: number, w: number): number[] {
  if (n <= B) return [...Array(n).keys()];
  if (B <= w) return [...Array(B).keys()].map((i) => n - B + i);
  const order = scores.map((s, j) => [s, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const top = order.slice(0, B - w).map(([, j]) => j);
  for (let j = n - w; j < n; j++) top.push(j);
  return top.sort((a, b) => a - b);
}

/** Attention probabilities A[g][i][j] of the last q queries over head h's keys, full n columns (0 where masked). */
function attn(v: NaiveView, g: number, h: number, q: number, scope: 'causal' | 'scored', m: number): M {
  const rows = v.queries[g]!;
  const w = rows.length;
  const out: M = [];
  for (let i = 0; i < q; i++) {
    const qi = rows[w - q + i]!;
    const visible = scope === 'causal' ? v.n - q + i + 1 : m;
    const z = v.keys[h]!.slice(0, visible).map((k) => dotv(qi, k) / Math.sqrt(v.d));
    const p = softmax(z);
    out.push([...p, ...Array(v.n - visible).fill(0)]);
  }
  return out;
}

/** Attention from max-over-group logits. */
function attnMaxLogits(v: NaiveView, h: number, q: number, scope: 'causal' | 'scored', m: number): M {
  const G = v.Q / v.H;
  const out: M = [];
  for (let i = 0; i < q; i++) {
    const visible = scope === 'causal' ? v.n - q + i + 1 : m;
    const z: number[] = [];
    for (let j = 0; j < visible; j++) {
      let mx = -Infinity;
      for (let g = h * G; g < (h + 1) * G; g++) {
        const rows = v.queries[g]!;
        mx = Math.max(mx, dotv(rows[rows.length - q + i]!, v.keys[h]![j]!) / Math.sqrt(v.d));
      }
      z.push(mx);
    }
    out.push([...softmax(z), ...Array(v.n - visible).fill(0)]);
  }
  return out;
}

const meanRows = (A: M, m: number) => Array.from({ length: m }, (_, j) => A.reduce((s, row) => s + row[j]!, 0) / A.length);

/** SnapKV scores of head h per the spec (kvpress order: pool each query head, then mean). */
export function naiveSnapkv(v: NaiveView, h: number, w: number, o: { kernel: number; pooling: 'avg' | 'max'; gqa: 'mean' | 'max-logits' }): number[] {
  const q = Math.min(w, v.queries[0]!.length);
  const m = v.n - w;
  const G = v.Q / v.H;
  if (o.gqa === 'max-logits') return pool(o.pooling, meanRows(attnMaxLogits(v, h, q, 'causal', m), m), o.kernel);
  const perHead: number[][] = [];
  for (let g = h * G; g < (h + 1) * G; g++) perHead.push(pool(o.pooling, meanRows(attn(v, g, h, q, 'causal', m), m), o.kernel));
  return Array.from({ length: m }, (_, j) => perHead.reduce((s, a) => s + a[j]!, 0) / G);
}

/** Full n x n cosine matrix (k / (||k|| + 1e-8)), diagonal zeroed, per-row last-above-threshold zeroed, column means. */
export function naiveRedundancy(keys: M, tau: number): number[] {
  const n = keys.length;
  const kh = keys.map((k) => {
    const s = norm(k) + 1e-8;
    return k.map((x) => x / s);
  });
  const S: M = kh.map((a) => kh.map((b) => dotv(a, b)));
  for (let i = 0; i < n; i++) S[i]![i] = 0;
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (let j = 0; j < n; j++) if (S[i]![j]! > tau) r = j;
    S[i]![r] = 0;
  }
  return Array.from({ length: n }, (_, j) => S.reduce((s, row) => s + row[j]!, 0) / n);
}

export function naiveRkv(v: NaiveView, h: number, w: number, lambda: number, tau: number, kernel = 7): number[] {
  const q = Math.min(w, v.queries[0]!.length);
  const m = v.n - w;
  const I = pool('max', meanRows(attnMaxLogits(v, h, q, 'scored', m), m), kernel);
  const R = softmax(naiveRedundancy(v.keys[h]!, tau));
  return I.map((x, j) => lambda * x - (1 - lambda) * R[j]!);
}

const minmax = (x: number[]) => {
  const lo = Math.min(...x);
  const hi = Math.max(...x);
  return x.map((v) => (hi > lo ? (v - lo) / (hi - lo) : 0));
};
const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;

/** Mean pairwise cosine similarity over all ordered pairs i != j. */
export function naivePairwiseCos(keys: M): number {
  const n = keys.length;
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) s += dotv(keys[i]!, keys[j]!) / (norm(keys[i]!) * norm(keys[j]!));
  return s / (n * (n - 1));
}

export function naiveMixkv(v: NaiveView, h: number, w: number, r?: number): number[] {
  const m = v.n - w;
  const S = naiveSnapkv(v, h, w, { kernel: 5, pooling: 'avg', gqa: 'mean' });
  const vt = minmax(v.values[h]!.slice(0, m).map(norm));
  const Vt = vt.map((x) => (x * mean(S)) / mean(vt));
  const I = S.map((s, j) => s + Vt[j]!);
  const kh = v.keys[h]!.map((k) => k.map((x) => x / norm(k)));
  const mu = kh[0]!.map((_, a) => mean(kh.map((k) => k[a]!)));
  const dd = minmax(kh.slice(0, m).map((k) => -dotv(k, mu)));
  const D = dd.map((x) => (x * mean(S)) / mean(dd));
  const rh = r ?? Math.min(1, Math.max(0, naivePairwiseCos(v.keys[h]!)));
  return I.map((x, j) => rh * D[j]! + (1 - rh) * x);
}

export function isAscendingUnique(a: ArrayLike<number>): boolean {
  for (let i = 1; i < a.length; i++) if (!(a[i]! > a[i - 1]!)) return false;
  return true;
}

// ---- triattention: the official route, literally (invert RoPE at each key's position, then per band an
// amplitude and a phase, 17 offsets, z-scores over the decode slots, group max, mean over layers) ----

export interface NaiveTriStats {
  re: number[][][]; // [L][Hq][F]
  im: number[][][];
  abs: number[][][];
}

export interface NaiveTriOptions {
  offsetMax?: number;
  agg?: 'mean' | 'max';
  disableTrig?: boolean;
  disableMlr?: boolean;
}

/** One raw score r_{l,a}[j] of a post-RoPE key at position p, at round T (pruning_utils, in float64). */
export function naiveTriRaw(post: number[], p: number, T: number, invFreq: number[], qre: number[], qim: number[], qabs: number[], o: NaiveTriOptions = {}): number {
  const F = post.length / 2;
  const offsets: number[] = [];
  for (let x = 1; x <= (o.offsetMax ?? 65536); x *= 2) offsets.push(x);
  // invert_rope: pre[f] = post[f] cos + post[f+F] sin, pre[f+F] = post[f+F] cos - post[f] sin
  const A: number[] = [];
  const phi: number[] = [];
  let extra = 0;
  for (let f = 0; f < F; f++) {
    const th = p * invFreq[f]!;
    const kr = post[f]! * Math.cos(th) + post[f + F]! * Math.sin(th);
    const ki = post[f + F]! * Math.cos(th) - post[f]! * Math.sin(th);
    const kAbs = Math.hypot(kr, ki);
    const qAbs = Math.hypot(qre[f]!, qim[f]!);
    // qbar * conj(k) = (x + iy)(kr - i ki)
    const rr = qre[f]! * kr + qim[f]! * ki;
    const ri = qim[f]! * kr - qre[f]! * ki;
    A.push(qAbs * kAbs);
    phi.push(Math.atan2(ri, rr));
    extra += (o.disableMlr ? qabs[f]! : qabs[f]! - qAbs) * kAbs;
  }
  const perOffset = offsets.map((off) => {
    if (o.disableTrig) return extra;
    let s = 0;
    for (let f = 0; f < F; f++) s += A[f]! * Math.cos((T - p + off) * invFreq[f]! + phi[f]!);
    return s + extra;
  });
  return o.agg === 'max' ? Math.max(...perOffset) : perOffset.reduce((a, b) => a + b, 0) / perOffset.length;
}

/** The z-scores of a row (population sigma, clamped at 1e-6) or, vLLM's, (unbiased sigma, below 1e-8 -> 1). */
export function naiveZ(row: number[], unbiased = false): number[] {
  const n = row.length;
  const mu = row.reduce((a, b) => a + b, 0) / n;
  const ss = row.reduce((a, b) => a + (b - mu) ** 2, 0);
  let sigma = unbiased ? (n > 1 ? Math.sqrt(ss / (n - 1)) : 0) : Math.max(Math.sqrt(ss / n), 1e-6);
  if (unbiased && !(sigma >= 1e-8)) sigma = 1;
  return row.map((x) => (x - mu) / sigma);
}

/**
 * The official per-KV-head keep lists (HF reference, window 0): prompt slots [0, P) kept, each row z-scored over
 * the decode slots, group max per (layer, KV head), mean over layers, top B - P decode slots by that. views[l]
 * holds layer l's keys; positions[h] the (shared) positions of head h's slots. Or, selection 'per-layer', one
 * list per (layer, KV head) by the group max (or mean) of that layer; 'union', one list by the max over all rows.
 */
export function naiveTriKeep(
  views: NaiveView[],
  positions: number[][],
  stats: NaiveTriStats,
  invFreq: number[],
  P: number,
  T: number,
  B: number,
  o: NaiveTriOptions & { selection?: 'per-kv-head' | 'per-layer' | 'union'; groupAgg?: 'max' | 'mean' } = {},
): number[][][] {
  const { H, Q } = views[0]!;
  const G = Q / H;
  const n = views[0]!.n;
  if (n <= B) return views.map(() => Array.from({ length: H }, () => [...Array(n).keys()]));
  if (P >= B) return views.map(() => Array.from({ length: H }, () => [...Array(B).keys()]));
  // z[l][a][j - P] over the decode slots
  const z = views.map((v, l) =>
    Array.from({ length: Q }, (_, a) => {
      const h = Math.floor(a / G);
      const row = [];
      for (let j = P; j < n; j++) row.push(naiveTriRaw(v.keys[h]![j]!, positions[h]![j]!, T, invFreq, stats.re[l]![a]!, stats.im[l]![a]!, stats.abs[l]![a]!, o));
      return naiveZ(row);
    }),
  );
  const group = (l: number, h: number) =>
    Array.from({ length: n - P }, (_, i) => {
      const zs = Array.from({ length: G }, (_, g) => z[l]![h * G + g]![i]!);
      return o.groupAgg === 'mean' ? zs.reduce((a, b) => a + b, 0) / G : Math.max(...zs);
    });
  const keepBy = (score: number[]) => {
    const order = score.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    return [...[...Array(P).keys()], ...order.slice(0, B - P).map(([, i]) => i + P)].sort((a, b) => a - b);
  };
  if (o.selection === 'per-layer') return views.map((_, l) => Array.from({ length: H }, (_, h) => keepBy(group(l, h))));
  if (o.selection === 'union') {
    const c = Array.from({ length: n - P }, (_, i) => Math.max(...z.flatMap((rows) => rows.map((r) => r[i]!))));
    const k = keepBy(c);
    return views.map(() => Array.from({ length: H }, () => k));
  }
  const perHead = Array.from({ length: H }, (_, h) => {
    const rows = views.map((_v, l) => group(l, h));
    return keepBy(Array.from({ length: n - P }, (_, i) => rows.reduce((acc, r) => acc + r[i]!, 0) / rows.length));
  });
  return views.map(() => perHead);
}
