// Whole-head reductions for scoring (generic math; the kernels know nothing about presses):
//   dotRowsRange: out[r][j] = scale * a[r] . k[j]             (logits of a few query rows over n keys)
//   redundancyUnit: per key j, the column mean of the cosine-similarity matrix of the n keys, with the
//                   diagonal and, in every row, the last entry above a threshold left out.
// AssemblyScript; see common.ts for the rules every kernel follows.
import { hsum } from './common';

/** Entry of a redundancy head table (32-bit words): keys ptr, n, out ptr (f64[n]). */
export const RED_ENTRY: usize = 16;

@inline function dotTail(a: usize, b: usize, t0: i32, d: i32): f32 {
  let s: f32 = 0;
  for (let t = t0; t < d; t++) s += load<f32>(a + (<usize>t << 2)) * load<f32>(b + (<usize>t << 2));
  return s;
}

/** a . b over d floats (four lane sums, then the tail). */
@inline function dot1(a: usize, b: usize, d: i32): f32 {
  const d4 = d & ~3;
  let acc = f32x4.splat(0);
  for (let t = 0; t < d4; t += 4) {
    const o = <usize>t << 2;
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  return hsum(acc) + dotTail(a, b, d4, d);
}

/**
 * [a_0 . k, a_1 . k, a_2 . k, a_3 . k] for the four rows a_i = a0 + i * rs bytes and the key at kj, d floats each:
 * the key is read once for the four rows.
 */
@inline function dot4(a0: usize, rs: usize, kj: usize, d: i32): v128 {
  const d4 = d & ~3;
  const a1 = a0 + rs;
  const a2 = a1 + rs;
  const a3 = a2 + rs;
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  for (let t = 0; t < d4; t += 4) {
    const o = <usize>t << 2;
    const kv = v128.load(kj + o);
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a0 + o), kv));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a1 + o), kv));
    s2 = f32x4.add(s2, f32x4.mul(v128.load(a2 + o), kv));
    s3 = f32x4.add(s3, f32x4.mul(v128.load(a3 + o), kv));
  }
  let v = f32x4.splat(hsum(s0) + dotTail(a0, kj, d4, d));
  v = f32x4.replace_lane(v, 1, hsum(s1) + dotTail(a1, kj, d4, d));
  v = f32x4.replace_lane(v, 2, hsum(s2) + dotTail(a2, kj, d4, d));
  return f32x4.replace_lane(v, 3, hsum(s3) + dotTail(a3, kj, d4, d));
}

/**
 * out[r * outStride + j] = scale * a_r . k_j for rows r in [r0, r1) of a (row r at a + r * aStride floats)
 * and keys j < n (key j at k + j * d floats). Each key is read once per block of four rows.
 */
export function dotRowsRange(a: usize, aStride: i32, r0: i32, r1: i32, k: usize, n: i32, d: i32, scale: f32, out: usize, outStride: i32): void {
  const as = <usize>aStride << 2;
  const os = <usize>outStride << 2;
  const kb = <usize>d << 2;
  let r = r0;
  for (; r + 4 <= r1; r += 4) {
    const a0 = a + <usize>r * as;
    const o0 = out + <usize>r * os;
    for (let j = 0; j < n; j++) {
      const x = dot4(a0, as, k + <usize>j * kb, d);
      const jo = <usize>j << 2;
      store<f32>(o0 + jo, scale * f32x4.extract_lane(x, 0));
      store<f32>(o0 + os + jo, scale * f32x4.extract_lane(x, 1));
      store<f32>(o0 + 2 * os + jo, scale * f32x4.extract_lane(x, 2));
      store<f32>(o0 + 3 * os + jo, scale * f32x4.extract_lane(x, 3));
    }
  }
  for (; r < r1; r++) {
    const ar = a + <usize>r * as;
    const orow = out + <usize>r * os;
    for (let j = 0; j < n; j++) store<f32>(orow + (<usize>j << 2), scale * dot1(ar, k + <usize>j * kb, d));
  }
}

/** Scratch bytes redundancyUnit needs for a head of n keys of d values. */
export function redundancyScratch(n: i32, d: i32): usize {
  return ((<usize>n * <usize>d) << 2) + 5 * ((<usize>n << 2) + 16) + 64;
}

// Per-row bookkeeping of redundancyUnit (arrays in scratch).
let gAbove: usize = 0; // i32[n]: largest j > i with S[i,j] > threshold, or -1
let gAboveVal: usize = 0; // f32[n]: S[i, above[i]]
let gBelow: usize = 0; // i32[n]: largest i < j with S[i,j] > threshold, or -1
let gBelowVal: usize = 0; // f32[n]
let gCol0: usize = 0; // f32[n]: S[i, 0]
let gC: usize = 0; // f64[n]: column sums
let gThreshold: f32 = 0;

@inline function addTo(i: i32, s: f64): void {
  const ci = gC + (<usize>i << 3);
  store<f64>(ci, load<f64>(ci) + s);
}

/** S[i, j] = s (i < j): recorded as row i's latest entry above the threshold and column j's, if it is one. */
@inline function above(i: i32, j: i32, s: f32): void {
  if (s > gThreshold) {
    const io = <usize>i << 2;
    const jo = <usize>j << 2;
    store<i32>(gAbove + io, j);
    store<f32>(gAboveVal + io, s);
    store<i32>(gBelow + jo, i);
    store<f32>(gBelowVal + jo, s);
  }
}

/** Adds S[i, j] = s (i < j) to both column sums and the bookkeeping. */
@inline function pair(i: i32, j: i32, s: f32): void {
  addTo(j, <f64>s);
  addTo(i, <f64>s);
  above(i, j, s);
  if (i == 0) store<f32>(gCol0 + (<usize>j << 2), s);
}

/**
 * c[j] = (1/n) * sum over rows i of S[i,j], S = k^ k^^T with k^_j = k_j / (||k_j|| + 1e-8), the diagonal set
 * to 0 and, in each row i, S[i, r_i] set to 0 where r_i is the largest j with S[i,j] > threshold (0 when none).
 * Each dot product is computed once (the upper triangle, four rows per pass over the keys) and added to both
 * column sums; per row only the last index above the threshold is kept. Writes c[0..n) as f64 to `out`.
 */
export function redundancyUnit(keys: usize, n: i32, d: i32, threshold: f32, out: usize, scratch: usize): void {
  const kb = <usize>d << 2;
  const kh = (scratch + 15) & ~(<usize>15);
  const nb = <usize>n << 2;
  gAbove = kh + <usize>n * kb;
  gAboveVal = gAbove + nb;
  gBelow = gAboveVal + nb;
  gBelowVal = gBelow + nb;
  gCol0 = gBelowVal + nb;
  gC = out;
  gThreshold = threshold;
  for (let j = 0; j < n; j++) {
    store<f64>(gC + (<usize>j << 3), 0);
    store<i32>(gAbove + (<usize>j << 2), -1);
    store<i32>(gBelow + (<usize>j << 2), -1);
  }
  if (n == 0) return;
  store<f32>(gCol0, 0);
  // k^ rows
  for (let j = 0; j < n; j++) {
    const src = keys + <usize>j * kb;
    const dst = kh + <usize>j * kb;
    const inv: f32 = <f32>1 / (<f32>Mathf.sqrt(dot1(src, src, d)) + <f32>1e-8);
    for (let t = 0; t < d; t++) store<f32>(dst + (<usize>t << 2), load<f32>(src + (<usize>t << 2)) * inv);
  }
  for (let i0 = 0; i0 < n; i0 += 4) {
    const i1 = min(n, i0 + 4);
    // pairs inside the block (i < j)
    for (let j = i0 + 1; j < i1; j++) {
      for (let i = i0; i < j; i++) pair(i, j, dot1(kh + <usize>i * kb, kh + <usize>j * kb, d));
    }
    if (i1 - i0 == 4) {
      const a0 = kh + <usize>i0 * kb;
      let r0: f64 = 0;
      let r1: f64 = 0;
      let r2: f64 = 0;
      let r3: f64 = 0;
      for (let j = i1; j < n; j++) {
        const x = dot4(a0, kb, kh + <usize>j * kb, d);
        const x0 = f32x4.extract_lane(x, 0);
        const x1 = f32x4.extract_lane(x, 1);
        const x2 = f32x4.extract_lane(x, 2);
        const x3 = f32x4.extract_lane(x, 3);
        // the four rows' sums stay in registers; column j gets its four entries at once
        r0 += <f64>x0;
        r1 += <f64>x1;
        r2 += <f64>x2;
        r3 += <f64>x3;
        const cj = gC + (<usize>j << 3);
        store<f64>(cj, load<f64>(cj) + ((<f64>x0 + <f64>x1) + (<f64>x2 + <f64>x3)));
        if (max(max(x0, x1), max(x2, x3)) > threshold) {
          above(i0, j, x0);
          above(i0 + 1, j, x1);
          above(i0 + 2, j, x2);
          above(i0 + 3, j, x3);
        }
        if (i0 == 0) store<f32>(gCol0 + (<usize>j << 2), x0);
      }
      addTo(i0, r0);
      addTo(i0 + 1, r1);
      addTo(i0 + 2, r2);
      addTo(i0 + 3, r3);
    } else {
      for (let j = i1; j < n; j++) {
        for (let i = i0; i < i1; i++) pair(i, j, dot1(kh + <usize>i * kb, kh + <usize>j * kb, d));
      }
    }
  }
  const diagQualifies = threshold < 0; // the zeroed diagonal itself is "above" a negative threshold
  for (let i = 0; i < n; i++) {
    const io = <usize>i << 2;
    let at: i32;
    let removed: f32;
    const above = load<i32>(gAbove + io);
    const below = load<i32>(gBelow + io);
    if (above >= 0) {
      at = above;
      removed = load<f32>(gAboveVal + io);
    } else if (diagQualifies) {
      at = i;
      removed = 0;
    } else if (below >= 0) {
      at = below;
      removed = load<f32>(gBelowVal + io);
    } else {
      at = 0;
      removed = load<f32>(gCol0 + io);
    }
    const ca = gC + (<usize>at << 3);
    store<f64>(ca, load<f64>(ca) - <f64>removed);
  }
  const inv: f64 = 1.0 / <f64>n;
  for (let j = 0; j < n; j++) {
    const cj = gC + (<usize>j << 3);
    store<f64>(cj, load<f64>(cj) * inv);
  }
}
