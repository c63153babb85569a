// Matrix-vector (one token) and matrix-matrix (several tokens) products over a row range [r0, r1):
//   y[t*yStride + r] (+)= sum_c W[r, c] * x[t*xStride + c]  (+ bias[r])
// W is row-major [rows, cols] in one of the WT_* layouts (GGUF block layouts for q8_0/q4_0).
//
// Determinism: every (row, token) result is computed by the same sequence of float operations
// whichever tile it falls in (one f32x4 accumulator over columns in order, then hsum, then the
// scalar tail, then bias), so results do not depend on how rows are split between threads, and a
// one-token matmat equals the matvec bit for bit.
import {
  WT_F32, WT_F16, WT_BF16, WT_Q8_0, WT_Q4_0, hsum, f16ToF32, f16FiniteToF32, f16x4FiniteToF32x4, bf16x4ToF32x4,
} from './common';

/** Tokens processed per pass over the weight rows in matmat (keeps their inputs in L2). */
const TOK_CHUNK: i32 = 16;

// ---------------------------------------------------------------------------------------------
// Float weights (f32, f16, bf16). The element type is a marker: f32 = f32, u16 = f16, i16 = bf16.

// f16 weights are converted by the finite-only fast path (the host refuses non-finite ones).
@inline function wload<T>(p: usize): v128 {
  if (sizeof<T>() == 4) return v128.load(p);
  else if (isSigned<T>()) return bf16x4ToF32x4(v128.load16x4_u(p));
  else return f16x4FiniteToF32x4(v128.load16x4_s(p));
}

@inline function wload1<T>(p: usize): f32 {
  if (sizeof<T>() == 4) return load<f32>(p);
  else if (isSigned<T>()) return reinterpret<f32>(<u32>load<u16>(p) << 16);
  else return f16FiniteToF32(<u32>load<u16>(p));
}

@inline function emit(y: usize, r: i32, s: f32, bias: usize, accumulate: bool): void {
  let v = s;
  if (bias) v += load<f32>(bias + (<usize>r << 2));
  const p = y + (<usize>r << 2);
  if (accumulate) v = load<f32>(p) + v;
  store<f32>(p, v);
}

/** One (row, token) dot product; the reference sequence every tile reproduces. */
@inline function dotFloat<T>(w: usize, x: usize, cols: i32): f32 {
  const c4 = cols & ~3;
  let a = f32x4.splat(0);
  for (let c = 0; c < c4; c += 4) {
    a = f32x4.add(a, f32x4.mul(wload<T>(w + <usize>c * sizeof<T>()), v128.load(x + (<usize>c << 2))));
  }
  let s = hsum(a);
  for (let c = c4; c < cols; c++) s += wload1<T>(w + <usize>c * sizeof<T>()) * load<f32>(x + (<usize>c << 2));
  return s;
}

function matvecFloat<T>(W: usize, x: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool): void {
  const rb = <usize>cols * sizeof<T>();
  const c4 = cols & ~3;
  // Tile rows from the four quarters of the range (long sequential streams, see matvecQuant).
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  for (let i = 0; i < Q; i++) {
    const r = r0 + i;
    const w0 = W + <usize>r * rb;
    const w1 = w0 + qb;
    const w2 = w1 + qb;
    const w3 = w2 + qb;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    for (let c = 0; c < c4; c += 4) {
      const xv = v128.load(x + (<usize>c << 2));
      const o = <usize>c * sizeof<T>();
      a0 = f32x4.add(a0, f32x4.mul(wload<T>(w0 + o), xv));
      a1 = f32x4.add(a1, f32x4.mul(wload<T>(w1 + o), xv));
      a2 = f32x4.add(a2, f32x4.mul(wload<T>(w2 + o), xv));
      a3 = f32x4.add(a3, f32x4.mul(wload<T>(w3 + o), xv));
    }
    let s0 = hsum(a0);
    let s1 = hsum(a1);
    let s2 = hsum(a2);
    let s3 = hsum(a3);
    for (let c = c4; c < cols; c++) {
      const xs = load<f32>(x + (<usize>c << 2));
      const o = <usize>c * sizeof<T>();
      s0 += wload1<T>(w0 + o) * xs;
      s1 += wload1<T>(w1 + o) * xs;
      s2 += wload1<T>(w2 + o) * xs;
      s3 += wload1<T>(w3 + o) * xs;
    }
    emit(y, r, s0, bias, accumulate);
    emit(y, r + Q, s1, bias, accumulate);
    emit(y, r + 2 * Q, s2, bias, accumulate);
    emit(y, r + 3 * Q, s3, bias, accumulate);
  }
  for (let r = r0 + 4 * Q; r < r1; r++) emit(y, r, dotFloat<T>(W + <usize>r * rb, x, cols), bias, accumulate);
}

function matmatFloat<T>(
  W: usize, x: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool,
  nTok: i32, xStride: i32, yStride: i32,
): void {
  const rb = <usize>cols * sizeof<T>();
  const c4 = cols & ~3;
  const xs = <usize>xStride << 2;
  const ys = <usize>yStride << 2;
  for (let tc = 0; tc < nTok; tc += TOK_CHUNK) {
    const te = min(nTok, tc + TOK_CHUNK);
    for (let r = r0; r < r1; r++) {
      const w = W + <usize>r * rb;
      let t = tc;
      for (; t + 4 <= te; t += 4) {
        const x0 = x + <usize>t * xs;
        const x1 = x0 + xs;
        const x2 = x1 + xs;
        const x3 = x2 + xs;
        let a0 = f32x4.splat(0);
        let a1 = f32x4.splat(0);
        let a2 = f32x4.splat(0);
        let a3 = f32x4.splat(0);
        for (let c = 0; c < c4; c += 4) {
          const wv = wload<T>(w + <usize>c * sizeof<T>());
          const o = <usize>c << 2;
          a0 = f32x4.add(a0, f32x4.mul(wv, v128.load(x0 + o)));
          a1 = f32x4.add(a1, f32x4.mul(wv, v128.load(x1 + o)));
          a2 = f32x4.add(a2, f32x4.mul(wv, v128.load(x2 + o)));
          a3 = f32x4.add(a3, f32x4.mul(wv, v128.load(x3 + o)));
        }
        let s0 = hsum(a0);
        let s1 = hsum(a1);
        let s2 = hsum(a2);
        let s3 = hsum(a3);
        for (let c = c4; c < cols; c++) {
          const wv = wload1<T>(w + <usize>c * sizeof<T>());
          const o = <usize>c << 2;
          s0 += wv * load<f32>(x0 + o);
          s1 += wv * load<f32>(x1 + o);
          s2 += wv * load<f32>(x2 + o);
          s3 += wv * load<f32>(x3 + o);
        }
        const yt = y + <usize>t * ys;
        emit(yt, r, s0, bias, accumulate);
        emit(yt + ys, r, s1, bias, accumulate);
        emit(yt + 2 * ys, r, s2, bias, accumulate);
        emit(yt + 3 * ys, r, s3, bias, accumulate);
      }
      for (; t < te; t++) emit(y + <usize>t * ys, r, dotFloat<T>(w, x + <usize>t * xs, cols), bias, accumulate);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Quantised weights (q8_0, q4_0) against the input quantised per 32-block to int8 values held in
// i16 lanes (only the weight side is widened per block), laid out at the start of the scratch:
//   q: i16 [nTok][cols] | d: f32 [nb][nTok] | s: i32 [nb][nTok] (sum of the block's q)
// Per (row, token) the arithmetic is: for each block b in order,
//   isum = exact integer dot of the block (q4_0: unsigned nibbles, minus 8 * s)
//   acc  = acc + f32(isum) * (f32(dw) * d)        (float32, acc starting at 0)
// Tiles compute 4 rows (matvec) or 4 tokens (matmat) at once by transposing the four integer
// dots into one vector, so each lane runs exactly that sequence.

/** Bytes quantX writes for nTok tokens of cols (a multiple of 32) values, rounded up to 64. */
export function qxBytes(nTok: i32, cols: i32): usize {
  const b = <usize>nTok * <usize>cols * 2 + <usize>nTok * (<usize>cols >> 5) * 8;
  return (b + 63) & ~(<usize>63);
}

@inline function qxScales(qx: usize, nTok: i32, cols: i32): usize {
  return qx + <usize>nTok * <usize>cols * 2;
}

@inline function qxSums(qx: usize, nTok: i32, cols: i32): usize {
  return qx + <usize>nTok * <usize>cols * 2 + <usize>nTok * (<usize>cols >> 5) * 4;
}

@inline function quantLanes(a: v128, b: v128, iv: v128): v128 {
  return i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(a, iv))),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(b, iv))));
}

/**
 * Quantises nTok rows of x: per 32-block d = amax / 127, id = d != 0 ? 1/d : 0,
 * q = round-to-nearest-even(x * id) (|q| <= 127), and the block's sum of q.
 */
export function quantX(x: usize, xStride: i32, nTok: i32, cols: i32, qx: usize): void {
  const nb = cols >> 5;
  const scales = qxScales(qx, nTok, cols);
  const sums = qxSums(qx, nTok, cols);
  const ones = i16x8.splat(1);
  for (let t = 0; t < nTok; t++) {
    for (let b = 0; b < nb; b++) {
      const p = x + ((<usize>t * <usize>xStride + (<usize>b << 5)) << 2);
      const v0 = v128.load(p);
      const v1 = v128.load(p, 16);
      const v2 = v128.load(p, 32);
      const v3 = v128.load(p, 48);
      const v4 = v128.load(p, 64);
      const v5 = v128.load(p, 80);
      const v6 = v128.load(p, 96);
      const v7 = v128.load(p, 112);
      const m = f32x4.max(
        f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
        f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))),
      );
      const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
      const d: f32 = amax / <f32>127.0;
      const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
      const iv = f32x4.splat(id);
      const q = qx + ((<usize>t * <usize>cols + (<usize>b << 5)) << 1);
      const q0 = quantLanes(v0, v1, iv);
      const q1 = quantLanes(v2, v3, iv);
      const q2 = quantLanes(v4, v5, iv);
      const q3 = quantLanes(v6, v7, iv);
      v128.store(q, q0);
      v128.store(q, q1, 16);
      v128.store(q, q2, 32);
      v128.store(q, q3, 48);
      const o = (<usize>b * <usize>nTok + <usize>t) << 2;
      store<f32>(scales + o, d);
      const s4 = i32x4.add(
        i32x4.add(i32x4.dot_i16x8_s(q0, ones), i32x4.dot_i16x8_s(q1, ones)),
        i32x4.add(i32x4.dot_i16x8_s(q2, ones), i32x4.dot_i16x8_s(q3, ones)));
      store<i32>(sums + o, hsumI(s4));
    }
  }
}

@inline function hsumI(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

/** [sum(a), sum(b), sum(c), sum(d)] of four i32x4 vectors (exact). */
@inline function transposeSum(a: v128, b: v128, c: v128, d: v128): v128 {
  const s0 = i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const s1 = i32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(s0, s1, 0, 2, 4, 6), i32x4.shuffle(s0, s1, 1, 3, 5, 7));
}

// Marker types: i8 = q8_0 (34-byte blocks), u16 = q4_0 (18-byte blocks).
@inline function blockBytes<T>(): usize {
  return sizeof<T>() == 1 ? 34 : 18;
}

/** The block's weights as four i16x8 vectors (q4_0: unsigned nibbles 0..15, the -8 comes later). */
@inline function wq0<T>(wb: usize): v128 {
  if (sizeof<T>() == 1) return v128.load8x8_s(wb, 2);
  return i16x8.extend_low_i8x16_u(v128.and(v128.load(wb, 2), i8x16.splat(0x0f)));
}
@inline function wq1<T>(wb: usize): v128 {
  if (sizeof<T>() == 1) return v128.load8x8_s(wb, 10);
  return i16x8.extend_high_i8x16_u(v128.and(v128.load(wb, 2), i8x16.splat(0x0f)));
}
@inline function wq2<T>(wb: usize): v128 {
  if (sizeof<T>() == 1) return v128.load8x8_s(wb, 18);
  return i16x8.extend_low_i8x16_u(i8x16.shr_u(v128.load(wb, 2), 4));
}
@inline function wq3<T>(wb: usize): v128 {
  if (sizeof<T>() == 1) return v128.load8x8_s(wb, 26);
  return i16x8.extend_high_i8x16_u(i8x16.shr_u(v128.load(wb, 2), 4));
}

/** Integer dot (4 partial lanes) of a weight block with an input block at xb. */
@inline function blockDot<T>(wb: usize, xb: usize): v128 {
  const i0 = i32x4.dot_i16x8_s(wq0<T>(wb), v128.load(xb));
  const i1 = i32x4.dot_i16x8_s(wq1<T>(wb), v128.load(xb, 16));
  const i2 = i32x4.dot_i16x8_s(wq2<T>(wb), v128.load(xb, 32));
  const i3 = i32x4.dot_i16x8_s(wq3<T>(wb), v128.load(xb, 48));
  return i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3));
}

@inline function blockDotW(w0: v128, w1: v128, w2: v128, w3: v128, xb: usize): v128 {
  const i0 = i32x4.dot_i16x8_s(w0, v128.load(xb));
  const i1 = i32x4.dot_i16x8_s(w1, v128.load(xb, 16));
  const i2 = i32x4.dot_i16x8_s(w2, v128.load(xb, 32));
  const i3 = i32x4.dot_i16x8_s(w3, v128.load(xb, 48));
  return i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3));
}

/** One (row, token) quantised dot product: the reference sequence every tile lane reproduces. */
@inline function dotQuant<T>(w: usize, xq: usize, scales: usize, sums: usize, nb: i32, nTok: i32, t: i32): f32 {
  let acc: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = w + <usize>b * blockBytes<T>();
    const o = (<usize>b * <usize>nTok + <usize>t) << 2;
    let isum = hsumI(blockDot<T>(wb, xq + (<usize>b << 6)));
    if (sizeof<T>() != 1) isum -= load<i32>(sums + o) << 3;
    acc += <f32>isum * (f16FiniteToF32(<u32>load<u16>(wb)) * load<f32>(scales + o));
  }
  return acc;
}

function matvecQuant<T>(W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool): void {
  const bb = blockBytes<T>();
  const nb = cols >> 5;
  const rb = <usize>nb * bb;
  const scales = qxScales(qx, 1, cols);
  const sums = qxSums(qx, 1, cols);
  // The tile's four rows come from the four quarters of the range: four long sequential streams,
  // which the hardware prefetchers follow far better than four adjacent short rows.
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  for (let i = 0; i < Q; i++) {
    const r = r0 + i;
    let w0 = W + <usize>r * rb;
    let w1 = w0 + qb;
    let w2 = w1 + qb;
    let w3 = w2 + qb;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const xb = qx + (<usize>b << 6);
      let isum = transposeSum(blockDot<T>(w0, xb), blockDot<T>(w1, xb), blockDot<T>(w2, xb), blockDot<T>(w3, xb));
      if (sizeof<T>() != 1) isum = i32x4.sub(isum, i32x4.splat(load<i32>(sums + (<usize>b << 2)) << 3));
      let h = v128.load16_lane(w0, i32x4.splat(0), 0);
      h = v128.load16_lane(w1, h, 1);
      h = v128.load16_lane(w2, h, 2);
      h = v128.load16_lane(w3, h, 3);
      const sc = f32x4.mul(f16x4FiniteToF32x4(i32x4.extend_low_i16x8_s(h)), f32x4.splat(load<f32>(scales + (<usize>b << 2))));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), sc));
      w0 += bb;
      w1 += bb;
      w2 += bb;
      w3 += bb;
    }
    emit(y, r, f32x4.extract_lane(acc, 0), bias, accumulate);
    emit(y, r + Q, f32x4.extract_lane(acc, 1), bias, accumulate);
    emit(y, r + 2 * Q, f32x4.extract_lane(acc, 2), bias, accumulate);
    emit(y, r + 3 * Q, f32x4.extract_lane(acc, 3), bias, accumulate);
  }
  for (let r = r0 + 4 * Q; r < r1; r++) emit(y, r, dotQuant<T>(W + <usize>r * rb, qx, scales, sums, nb, 1, 0), bias, accumulate);
}

function matmatQuant<T>(
  W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const bb = blockBytes<T>();
  const nb = cols >> 5;
  const rb = <usize>nb * bb;
  const qs = <usize>cols << 1; // bytes of one token's quantised values
  const scales = qxScales(qx, nTok, cols);
  const sums = qxSums(qx, nTok, cols);
  const ys = <usize>yStride << 2;
  for (let tc = 0; tc < nTok; tc += TOK_CHUNK) {
    const te = min(nTok, tc + TOK_CHUNK);
    for (let r = r0; r < r1; r++) {
      const w = W + <usize>r * rb;
      let t = tc;
      for (; t + 4 <= te; t += 4) {
        const x0 = qx + <usize>t * qs;
        let acc = f32x4.splat(0);
        for (let b = 0; b < nb; b++) {
          const wb = w + <usize>b * bb;
          const a0 = wq0<T>(wb);
          const a1 = wq1<T>(wb);
          const a2 = wq2<T>(wb);
          const a3 = wq3<T>(wb);
          const xb = x0 + (<usize>b << 6);
          let isum = transposeSum(
            blockDotW(a0, a1, a2, a3, xb), blockDotW(a0, a1, a2, a3, xb + qs),
            blockDotW(a0, a1, a2, a3, xb + 2 * qs), blockDotW(a0, a1, a2, a3, xb + 3 * qs));
          const o = (<usize>b * <usize>nTok + <usize>t) << 2;
          if (sizeof<T>() != 1) isum = i32x4.sub(isum, i32x4.shl(v128.load(sums + o), 3));
          const sc = f32x4.mul(f32x4.splat(f16FiniteToF32(<u32>load<u16>(wb))), v128.load(scales + o));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), sc));
        }
        const yt = y + <usize>t * ys;
        emit(yt, r, f32x4.extract_lane(acc, 0), bias, accumulate);
        emit(yt + ys, r, f32x4.extract_lane(acc, 1), bias, accumulate);
        emit(yt + 2 * ys, r, f32x4.extract_lane(acc, 2), bias, accumulate);
        emit(yt + 3 * ys, r, f32x4.extract_lane(acc, 3), bias, accumulate);
      }
      for (; t < te; t++) {
        emit(y + <usize>t * ys, r, dotQuant<T>(w, qx + <usize>t * qs, scales, sums, nb, nTok, t), bias, accumulate);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Rows [r0, r1) of y = W x for nTok tokens. For quantised types `qx` must already hold quantX of
 * the same x (the dispatcher caches it per thread); it is ignored for float types.
 */
export function matRows(
  wt: i32, W: usize, x: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32,
  bias: usize, accumulate: bool, nTok: i32, xStride: i32, yStride: i32,
): void {
  if (nTok == 1) {
    if (wt == WT_F32) matvecFloat<f32>(W, x, y, cols, r0, r1, bias, accumulate);
    else if (wt == WT_F16) matvecFloat<u16>(W, x, y, cols, r0, r1, bias, accumulate);
    else if (wt == WT_BF16) matvecFloat<i16>(W, x, y, cols, r0, r1, bias, accumulate);
    else if (wt == WT_Q8_0) matvecQuant<i8>(W, qx, y, cols, r0, r1, bias, accumulate);
    else if (wt == WT_Q4_0) matvecQuant<u16>(W, qx, y, cols, r0, r1, bias, accumulate);
    else unreachable();
  } else {
    if (wt == WT_F32) matmatFloat<f32>(W, x, y, cols, r0, r1, bias, accumulate, nTok, xStride, yStride);
    else if (wt == WT_F16) matmatFloat<u16>(W, x, y, cols, r0, r1, bias, accumulate, nTok, xStride, yStride);
    else if (wt == WT_BF16) matmatFloat<i16>(W, x, y, cols, r0, r1, bias, accumulate, nTok, xStride, yStride);
    else if (wt == WT_Q8_0) matmatQuant<i8>(W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
    else if (wt == WT_Q4_0) matmatQuant<u16>(W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
    else unreachable();
  }
}

/** Row `r` of W widened to f32 into y[0 .. cols). */
export function dequantRow(wt: i32, W: usize, cols: i32, r: i32, y: usize): void {
  const w = W + <usize>r * rowBytesOf(wt, cols);
  if (wt == WT_F32) {
    memory.copy(y, w, <usize>cols << 2);
  } else if (wt == WT_F16) {
    for (let c = 0; c < cols; c++) store<f32>(y + (<usize>c << 2), f16ToF32(<u32>load<u16>(w + (<usize>c << 1))));
  } else if (wt == WT_BF16) {
    for (let c = 0; c < cols; c++) store<u32>(y + (<usize>c << 2), <u32>load<u16>(w + (<usize>c << 1)) << 16);
  } else if (wt == WT_Q8_0) {
    const nb = cols >> 5;
    for (let b = 0; b < nb; b++) {
      const wb = w + <usize>b * 34;
      const d = f16ToF32(<u32>load<u16>(wb));
      const yb = y + (<usize>b << 7);
      for (let j = 0; j < 32; j++) store<f32>(yb + (<usize>j << 2), <f32>load<i8>(wb + 2 + <usize>j) * d);
    }
  } else if (wt == WT_Q4_0) {
    const nb = cols >> 5;
    for (let b = 0; b < nb; b++) {
      const wb = w + <usize>b * 18;
      const d = f16ToF32(<u32>load<u16>(wb));
      const yb = y + (<usize>b << 7);
      for (let j = 0; j < 16; j++) {
        const v = <i32>load<u8>(wb + 2 + <usize>j);
        store<f32>(yb + (<usize>j << 2), <f32>((v & 0x0f) - 8) * d);
        store<f32>(yb + (<usize>(j + 16) << 2), <f32>((v >> 4) - 8) * d);
      }
    }
  } else unreachable();
}

@inline function rowBytesOf(wt: i32, cols: i32): usize {
  const c = <usize>cols;
  return wt == WT_F32 ? c << 2 : wt == WT_Q8_0 ? (c >> 5) * 34 : wt == WT_Q4_0 ? (c >> 5) * 18 : c << 1;
}
