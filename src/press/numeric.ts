/**
 * Scratch buffers reused between compressions, and the small numeric helpers the presses share:
 * 1-D pooling with the spec's padding, min-max normalisation, means, dot products, Python's rounding.
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
