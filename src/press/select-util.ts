/**
 * Selection mechanics shared by every press: top-k with the window protected (ties keep the lower index),
 * the budget rules, 1-D pooling with the spec's padding, min-max normalisation, and a scratch workspace
 * so that repeated compressions do not allocate.
 */
import type { Pooling } from './types.js';

export type NumArray = Float32Array | Float64Array;

/** Growable scratch buffers by name. One module-wide instance (`ws`); JS is single-threaded. */
export class Workspace {
  private readonly f32s = new Map<string, Float32Array>();
  private readonly f64s = new Map<string, Float64Array>();
  private readonly i32s = new Map<string, Int32Array>();

  f32(name: string, size: number): Float32Array {
    let b = this.f32s.get(name);
    if (!b || b.length < size) this.f32s.set(name, (b = new Float32Array(grown(size))));
    return b.subarray(0, size);
  }

  f64(name: string, size: number): Float64Array {
    let b = this.f64s.get(name);
    if (!b || b.length < size) this.f64s.set(name, (b = new Float64Array(grown(size))));
    return b.subarray(0, size);
  }

  i32(name: string, size: number): Int32Array {
    let b = this.i32s.get(name);
    if (!b || b.length < size) this.i32s.set(name, (b = new Int32Array(grown(size))));
    return b.subarray(0, size);
  }
}

function grown(size: number): number {
  return Math.max(64, Math.ceil(size * 1.25));
}

export const ws = new Workspace();

/**
 * Budget from a compression ratio (kvpress convention): floor of the float64 product n * (1 - ratio).
 * Not n - floor(n * ratio): n = 10, ratio = 0.9 gives 0.
 */
export function budgetFromRatio(n: number, ratio: number): number {
  return Math.floor(n * (1 - ratio));
}

/** 0..n-1. */
export function keepAll(n: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

/** The newest b of n slots: n-b..n-1 (all when b >= n). */
export function keepNewest(n: number, b: number): Int32Array {
  const k = Math.max(0, Math.min(n, b));
  const out = new Int32Array(k);
  for (let i = 0; i < k; i++) out[i] = n - k + i;
  return out;
}

/** A score as compared by the selection: NaN counts as the lowest. */
export function sv(x: number): number {
  return x !== x ? -Infinity : x;
}

/** The value of rank `idx` (0-based, ascending) of a[0..n), reordering a (Hoare quickselect). */
function quickselect(a: Float64Array, n: number, idx: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!;
    const y = a[mid]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (idx <= j) hi = j;
    else if (idx >= i) lo = i;
    else return a[idx]!;
  }
  return a[lo]!;
}

/** The k-th largest (1-based) of scores[0..m), NaN as -Infinity; 1 <= k <= m. */
export function kthLargest(scores: ArrayLike<number>, m: number, k: number): number {
  const tmp = ws.f64('select.kth', m);
  for (let j = 0; j < m; j++) tmp[j] = sv(scores[j]!);
  return quickselect(tmp, m, m - k);
}

/**
 * Writes the indices of the k highest of scores[0..m) to out[offset..offset+k), ascending. Ties at the
 * boundary keep the lower index. O(m) expected.
 */
export function topKAscending(scores: ArrayLike<number>, m: number, k: number, out: Int32Array, offset = 0): void {
  if (k <= 0) return;
  if (k >= m) {
    for (let j = 0; j < m; j++) out[offset + j] = j;
    return;
  }
  const t = kthLargest(scores, m, k);
  let greater = 0;
  for (let j = 0; j < m; j++) if (sv(scores[j]!) > t) greater++;
  let ties = k - greater;
  let p = offset;
  for (let j = 0; j < m; j++) {
    const s = sv(scores[j]!);
    if (s > t) out[p++] = j;
    else if (s === t && ties > 0) {
      out[p++] = j;
      ties--;
    }
  }
}

/**
 * The window-protecting keep list: with m = n - window scored slots, the top (budget - window) of
 * scores[0..m) followed by the window m..n-1. Requires n > budget > window.
 */
export function keepTopPlusWindow(scores: ArrayLike<number>, n: number, budget: number, window: number): Int32Array {
  const m = n - window;
  const out = new Int32Array(budget);
  topKAscending(scores, m, budget - window, out, 0);
  for (let t = 0; t < window; t++) out[budget - window + t] = m + t;
  return out;
}

/**
 * The budget rules before any scoring: returns the keep list when no scoring is needed (n <= budget: keep all;
 * budget <= window: keep the newest budget), else null.
 */
export function trivialKeep(n: number, budget: number, window: number): Int32Array | null {
  if (n <= budget) return keepAll(n);
  if (budget <= Math.min(window, n)) return keepNewest(n, budget);
  return null;
}

/**
 * 1-D pooling over src[0..m), stride 1, output length m, written to out (must not alias src).
 * avg: floor(kernel/2) zeros each side counted in the average (every output is a window sum / kernel, so the
 * ends shrink). max: the padding counts as -Infinity (the max over the in-range part of the window).
 * kernel must be odd.
 */
export function pool1d(kind: Pooling, src: ArrayLike<number>, m: number, kernel: number, out: NumArray): void {
  const p = kernel >> 1;
  if (kind === 'avg') {
    const inv = 1 / kernel;
    for (let j = 0; j < m; j++) {
      const a = j - p < 0 ? 0 : j - p;
      const b = j + p >= m ? m - 1 : j + p;
      let s = 0;
      for (let t = a; t <= b; t++) s += src[t]!;
      out[j] = s * inv;
    }
  } else {
    for (let j = 0; j < m; j++) {
      const a = j - p < 0 ? 0 : j - p;
      const b = j + p >= m ? m - 1 : j + p;
      let s = -Infinity;
      for (let t = a; t <= b; t++) if (src[t]! > s) s = src[t]!;
      out[j] = s;
    }
  }
}

/** minmax(x) = (x - min) / (max - min) over x[0..m), in place; all zeros when max == min. */
export function minmaxInPlace(x: NumArray, m: number): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = 0; j < m; j++) {
    const v = x[j]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const span = hi - lo;
  if (!(span > 0)) {
    x.fill(0, 0, m);
    return;
  }
  for (let j = 0; j < m; j++) x[j] = (x[j]! - lo) / span;
}

export function meanOf(x: ArrayLike<number>, m: number): number {
  if (m === 0) return 0;
  let s = 0;
  for (let j = 0; j < m; j++) s += x[j]!;
  return s / m;
}

/** a[ao..ao+d) . b[bo..bo+d) for Float32Arrays (kept monomorphic: one version per array type). */
export function dotF32(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  for (; i + 1 < d; i += 2) {
    s0 += a[ao + i]! * b[bo + i]!;
    s1 += a[ao + i + 1]! * b[bo + i + 1]!;
  }
  if (i < d) s0 += a[ao + i]! * b[bo + i]!;
  return s0 + s1;
}

/** a[ao..ao+d) . b[bo..bo+d) for Float64Arrays. */
export function dotF64(a: Float64Array, ao: number, b: Float64Array, bo: number, d: number): number {
  let s0 = 0;
  let s1 = 0;
  let i = 0;
  for (; i + 1 < d; i += 2) {
    s0 += a[ao + i]! * b[bo + i]!;
    s1 += a[ao + i + 1]! * b[bo + i + 1]!;
  }
  if (i < d) s0 += a[ao + i]! * b[bo + i]!;
  return s0 + s1;
}

/** Generic (any array-like) dot product, for cold paths. */
export function dot(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += a[ao + i]! * b[bo + i]!;
  return s;
}

/** Round half to even (Python's round), with a small tolerance for float noise at .5. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const frac = x - f;
  if (Math.abs(frac - 0.5) < 1e-9) return f % 2 === 0 ? f : f + 1;
  return Math.round(x);
}
