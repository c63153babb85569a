/**
 * r-kv (redundancy-aware): F[j] = lambda * I[j] - (1 - lambda) * R[j] over the n - w older slots, w = 8 newest kept.
 * I: attention of the w observation queries, GQA max over the group on the logits, softmax over the non-window
 *    keys only, mean over the queries, max pooling kernel 7 (-infinity padding).
 * R: softmax over all n of c, the column means of the cosine-similarity matrix of all n keys with its diagonal
 *    and each row's last entry above the threshold (or column 0 when none) zeroed.
 */
import { definePress } from './define.js';
import { dotF64, ws } from './numeric.js';
import { observationCount, observationScores } from './observation.js';
import { BUDGET, option, window } from './options.js';

const ROW_BLOCK = 16;

/**
 * c[j] = mean over rows i of S[i,j] where S = k^ k^^T (k^_j = k_j / (||k_j|| + 1e-8)), diagonal set to 0, and
 * for each row i, S[i, r_i] set to 0 with r_i the largest j with S[i,j] > threshold (r_i = 0 when none).
 *
 * Never materialises S: the upper triangle is computed in row blocks (each dot product once, added to both
 * column sums), keeping per row only the last index above the threshold and its value (and S[i,0]) —
 * O(n^2 d) time, O(n) extra memory. Returns `out` (or a new array) holding c[0..n).
 */
export function redundancyColumnMeans(keys: ArrayLike<number>, n: number, d: number, threshold: number, out?: Float64Array): Float64Array {
  const c = out ?? new Float64Array(n);
  c.fill(0, 0, n);
  if (n === 0) return c;
  const kh = ws.f64('rkv.khat', n * d);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = j * d; t < (j + 1) * d; t++) s += keys[t]! * keys[t]!;
    const inv = 1 / (Math.sqrt(s) + 1e-8);
    for (let t = j * d; t < (j + 1) * d; t++) kh[t] = keys[t]! * inv;
  }
  // Row i: largest j > i above the threshold (found while scanning row i's upper part, j ascending) ...
  const above = ws.i32('rkv.above', n).fill(-1);
  const aboveVal = ws.f64('rkv.aboveVal', n);
  // ... and largest j < i above the threshold (found while scanning row j, rows ascending).
  const below = ws.i32('rkv.below', n).fill(-1);
  const belowVal = ws.f64('rkv.belowVal', n);
  // S[i, 0] for every row i (= S[0, i], computed in row 0).
  const col0 = ws.f64('rkv.col0', n);
  col0[0] = 0;

  const pair = (i: number, j: number, s: number): void => {
    c[j] = c[j]! + s;
    c[i] = c[i]! + s;
    if (s > threshold) {
      above[i] = j;
      aboveVal[i] = s;
      below[j] = i;
      belowVal[j] = s;
    }
    if (i === 0) col0[j] = s;
  };
  for (let i0 = 0; i0 < n; i0 += ROW_BLOCK) {
    const i1 = Math.min(n, i0 + ROW_BLOCK);
    // Columns inside the block: only the rows i < j.
    for (let j = i0 + 1; j < i1; j++) for (let i = i0; i < j; i++) pair(i, j, dotF64(kh, i * d, kh, j * d, d));
    // Columns after the block: every row of the block, four rows per pass over the column.
    for (let j = i1; j < n; j++) {
      const jo = j * d;
      let i = i0;
      for (; i + 4 <= i1; i += 4) {
        const o0 = i * d;
        const o1 = o0 + d;
        const o2 = o1 + d;
        const o3 = o2 + d;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let t = 0; t < d; t++) {
          const k = kh[jo + t]!;
          s0 += kh[o0 + t]! * k;
          s1 += kh[o1 + t]! * k;
          s2 += kh[o2 + t]! * k;
          s3 += kh[o3 + t]! * k;
        }
        pair(i, j, s0);
        pair(i + 1, j, s1);
        pair(i + 2, j, s2);
        pair(i + 3, j, s3);
      }
      for (; i < i1; i++) pair(i, j, dotF64(kh, i * d, kh, jo, d));
    }
  }
  const diagQualifies = 0 > threshold; // the zeroed diagonal itself is "above" a negative threshold
  for (let i = 0; i < n; i++) {
    let removed: number;
    let at: number;
    if (above[i]! >= 0) (at = above[i]!), (removed = aboveVal[i]!);
    else if (diagQualifies) (at = i), (removed = 0);
    else if (below[i]! >= 0) (at = below[i]!), (removed = belowVal[i]!);
    else (at = 0), (removed = col0[i]!);
    c[at] = c[at]! - removed;
  }
  const inv = 1 / n;
  for (let j = 0; j < n; j++) c[j] = c[j]! * inv;
  return c;
}

const KERNEL_7 = option.integer({ name: 'kernel', description: 'max-pooling kernel of the importance', default: 7, min: 1, odd: true, range: 'odd integer >= 1 (1: no pooling)' });

const LAMBDA = option.number({
  name: 'lambda',
  description: 'weight of importance against redundancy: F = lambda I - (1 - lambda) R',
  default: 0.1,
  min: 0,
  max: 1,
});

const THRESHOLD = option.number({
  name: 'threshold',
  description: "cosine similarity above which two keys are near-duplicates (each token's most recent one is protected)",
  default: 0.5,
  min: -1,
  max: 1,
});

export const rkv = definePress({
  name: 'r-kv',
  summary: 'importance minus redundancy (cosine similarity of keys), for reasoning models',
  options: [BUDGET, window(8, 8, 1), KERNEL_7, LAMBDA, THRESHOLD],
  needs: { queries: (o) => Math.max(1, o.window) },
  /** With backend kernels: every head's c in one call (the heads run in parallel). */
  prepare(o, view) {
    const k = view.kernels;
    if (!k) return null;
    const c = view.heads.map((hv, h) => ws.f64(`rkv.c${h}`, hv.n));
    k.redundancy(view.heads.map((hv) => hv.keys), view.heads.map((hv) => hv.n), view.headDim, o.threshold, c);
    return c;
  },
  score(o, view, h, m, out, prepared) {
    const head = view.heads[h]!;
    const n = head.n;
    observationScores(
      view,
      h,
      { queries: observationCount(view, o.window, o.press), scored: m, softmax: 'scored', gqa: 'max-logits', pooling: 'max', kernel: o.kernel },
      out,
    );
    const c = (prepared as Float64Array[] | null)?.[h] ?? redundancyColumnMeans(head.keys, n, view.headDim, o.threshold, ws.f64('rkv.c', n));
    // R = softmax over all n of c; only R[j], j < m, is used.
    let mx = -Infinity;
    for (let j = 0; j < n; j++) if (c[j]! > mx) mx = c[j]!;
    let sum = 0;
    for (let j = 0; j < n; j++) sum += Math.exp(c[j]! - mx);
    const lam = o.lambda;
    for (let j = 0; j < m; j++) out[j] = lam * out[j]! - (1 - lam) * (Math.exp(c[j]! - mx) / sum);
  },
});
