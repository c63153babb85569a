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
