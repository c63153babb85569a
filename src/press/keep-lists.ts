/**
 * Keep lists: the selection every press shares. Top-k with the window protected (ties keep the lower
 * index, NaN counts as the lowest score), the budget rules before any scoring, the newest-b rule.
 */
import { ws } from './numeric.js';

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
 * The window-protecting keep list: with m = n - window scored slots, the first `prompt` slots (the
 * protected prompt), the top (budget - window - prompt) of scores[prompt..m), then the window m..n-1.
 * Requires n > budget > window and prompt <= budget - window.
 */
export function keepTopPlusWindow(scores: ArrayLike<number>, n: number, budget: number, window: number, prompt = 0): Int32Array {
  const m = n - window;
  const out = new Int32Array(budget);
  for (let j = 0; j < prompt; j++) out[j] = j;
  const k = budget - window - prompt;
  if (k > 0) {
    const rest = prompt === 0 ? scores : ArrayBuffer.isView(scores) ? (scores as Float32Array).subarray(prompt) : Array.from(scores).slice(prompt);
    topKAscending(rest, m - prompt, k, out, prompt);
    for (let t = prompt; t < prompt + k; t++) out[t] = out[t]! + prompt;
  }
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

