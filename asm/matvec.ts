// Matrix-vector (one token) and matrix-matrix (several tokens) products over a row range [r0, r1):
//   y[t*yStride + r] (+)= sum_c W[r, c] * x[t*xStride + c]  (+ bias[r])
// W is row-major [rows, cols] in one of the WT_* layouts (GGUF block layouts for q8_0/q4_0).
//
// Determinism: every (row, token) result is computed by the same sequence of float operations
// whichever tile it falls in (one f32x4 accumulator over columns in order, then hsum, then the
// scalar tail, then bias), so results do not depend on how rows are split between threads, and a
// one-token matmat equals the matvec bit for bit.
import {
  WT_F32, WT_F16, WT_BF16, WT_Q8_0, WT_Q4_0, hsum, blockAbsMax, madd, f16ToF32, f16FiniteToF32, f16x4FiniteToF32x4, bf16x4ToF32x4,
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
    a = madd(wload<T>(w + <usize>c * sizeof<T>()), v128.load(x + (<usize>c << 2)), a);
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
      a0 = madd(wload<T>(w0 + o), xv, a0);
      a1 = madd(wload<T>(w1 + o), xv, a1);
      a2 = madd(wload<T>(w2 + o), xv, a2);
      a3 = madd(wload<T>(w3 + o), xv, a3);
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
          a0 = madd(wv, v128.load(x0 + o), a0);
          a1 = madd(wv, v128.load(x1 + o), a1);
          a2 = madd(wv, v128.load(x2 + o), a2);
          a3 = madd(wv, v128.load(x3 + o), a3);
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
// i16 lanes, so that i32x4.dot_i16x8_s forms exact integer dot products. Per (row, token) the
// arithmetic is: for each block b in order,
//   isum = exact integer dot of the block (q4_0: the nibbles minus 8)
//   acc  = acc + f32(isum) * (f32(dw) * d)        (float32, acc starting at 0)
// and every kernel below reproduces exactly that sequence per (row, token), whatever its tiling,
// so results do not depend on the thread split and a token's matmat row equals its matvec.
//
// Scratch layouts (quantX writes the input part; see qxBytes):
//   one token (matvec): q i16 [nb][32] | d f32 [nb] | s i32 [nb] (the block's sum of q, for q4_0);
//     up to MV_TOK tokens: that layout once per token, one after the other (a matvec per token:
//     faster than a matmat tile mostly padding);
//   more tokens (matmat): the tokens in octets of 8 (padded with zeros), the columns in pairs:
//     q: [octet][nb][16 pairs][8 tokens] i32 (= two i16: the pair's columns) | d f32 [nb][8*octets]
//     then the matmat work areas: widened weights of 4 rows [seg][4 rows][16 pairs] i32,
//     their f32 scales [seg][4 rows], and per (4-row group, octet) 8 f32x4 partial sums (one
//     group, or SEG_ROWS rows' worth when the columns come in more than one segment).
//   A dot_i16x8_s of a column pair broadcast from one weight row with the pairs of four tokens
//   gives those four tokens' partial sums in its four lanes: no horizontal sums per block.

/** Token counts up to which a product runs as one matvec per token. */
const MV_TOK: i32 = 3;
/** Bytes of input (all tokens, one column segment) a matmat pass keeps in L2. */
const SEG_BYTES: i32 = 160 * 1024;
/** Rows whose partial sums a multi-segment matmat carries between segments (a multiple of 4). */
const SEG_ROWS: i32 = 64;

@inline function mmOctets(nTok: i32): i32 {
  return (nTok + 7) >> 3;
}

/** Blocks per column segment of a matmat over nTok tokens and nb blocks (segments of equal size). */
@inline function mmSegBlocks(nTok: i32, nb: i32): i32 {
  const segMax = max(1, SEG_BYTES / (mmOctets(nTok) << 9));
  const nSeg = (nb + segMax - 1) / segMax;
  return (nb + nSeg - 1) / nSeg;
}

/**
 * Scratch bytes for the quantised input of nTok tokens of cols (a multiple of 32) values and, for
 * nTok > MV_TOK, the matmat work areas; rounded up to 64.
 */
export function qxBytes(nTok: i32, cols: i32): usize {
  const nb = <usize>(cols >> 5);
  let b: usize;
  if (nTok <= MV_TOK) {
    b = <usize>nTok * nb * 72;
  } else {
    const nO = <usize>mmOctets(nTok);
    const seg = mmSegBlocks(nTok, <i32>nb);
    const quads = <usize>seg < nb ? <usize>(SEG_ROWS >> 2) : 1;
    b = nO * nb * 512 + nb * nO * 32 + <usize>seg * 272 + quads * nO * 128;
  }
  return (b + 63) & ~(<usize>63);
}

@inline function qxScales(qx: usize, nTok: i32, cols: i32): usize {
  const nb = <usize>(cols >> 5);
  return nTok <= MV_TOK ? qx + (nb << 6) : qx + <usize>mmOctets(nTok) * nb * 512;
}

/** One token only: the block sums. */
@inline function qxSums1(qx: usize, cols: i32): usize {
  return qx + (<usize>(cols >> 5) * 68);
}

@inline function quantLanes(a: v128, b: v128, iv: v128): v128 {
  return i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(a, iv))),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(b, iv))));
}

/** Stores the four i32 lanes (column pairs) of v at p, p + 32, p + 64, p + 96. */
@inline function scatterPairs(p: usize, v: v128): void {
  v128.store32_lane(p, v, 0);
  v128.store32_lane(p, v, 1, 32);
  v128.store32_lane(p, v, 2, 64);
  v128.store32_lane(p, v, 3, 96);
}

/**
 * Quantises nTok rows of x: per 32-block d = amax / 127, id = d != 0 ? 1/d : 0,
 * q = round-to-nearest-even(x * id) (|q| <= 127); for one token also the block's sum of q.
 */
export function quantX(x: usize, xStride: i32, nTok: i32, cols: i32, qx: usize): void {
  const nb = cols >> 5;
  const scales = qxScales(qx, nTok, cols);
  const sums = qxSums1(qx, cols);
  const nP = mmOctets(nTok) << 3;
  const ones = i16x8.splat(1);
  for (let t = 0; t < nTok; t++) {
    // Matmat: token t is lane (t & 3) of half ((t >> 2) & 1) of octet t >> 3.
    const qt = qx + ((<usize>(t >> 3) * <usize>nb) << 9) + (<usize>((t >> 2) & 1) << 4) + (<usize>(t & 3) << 2);
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
      const amax = blockAbsMax(v0, v1, v2, v3, v4, v5, v6, v7);
      const d: f32 = amax / <f32>127.0;
      const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
      const iv = f32x4.splat(id);
      const q0 = quantLanes(v0, v1, iv);
      const q1 = quantLanes(v2, v3, iv);
      const q2 = quantLanes(v4, v5, iv);
      const q3 = quantLanes(v6, v7, iv);
      if (nTok <= MV_TOK) {
        const q = qx + <usize>t * <usize>nb * 72 + (<usize>b << 6);
        v128.store(q, q0);
        v128.store(q, q1, 16);
        v128.store(q, q2, 32);
        v128.store(q, q3, 48);
        store<f32>(scales + <usize>t * <usize>nb * 72 + (<usize>b << 2), d);
        const s4 = i32x4.add(
          i32x4.add(i32x4.dot_i16x8_s(q0, ones), i32x4.dot_i16x8_s(q1, ones)),
          i32x4.add(i32x4.dot_i16x8_s(q2, ones), i32x4.dot_i16x8_s(q3, ones)));
        store<i32>(sums + <usize>t * <usize>nb * 72 + (<usize>b << 2), hsumI(s4));
      } else {
        const q = qt + (<usize>b << 9);
        scatterPairs(q, q0);
        scatterPairs(q + 128, q1);
        scatterPairs(q + 256, q2);
        scatterPairs(q + 384, q3);
        store<f32>(scales + ((<usize>b * <usize>nP + <usize>t) << 2), d);
      }
    }
  }
  // Padding tokens of the last octet: zero values and scales (their results are never stored).
  if (nTok <= MV_TOK) return;
  const z = i32x4.splat(0);
  for (let t = nTok; t < nP; t++) {
    const qt = qx + ((<usize>(t >> 3) * <usize>nb) << 9) + (<usize>((t >> 2) & 1) << 4) + (<usize>(t & 3) << 2);
    for (let b = 0; b < nb; b++) {
      const q = qt + (<usize>b << 9);
      for (let j = 0; j < 16; j++) v128.store32_lane(q + (<usize>j << 5), z, 0);
      store<f32>(scales + ((<usize>b * <usize>nP + <usize>t) << 2), 0);
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

/** One (row, token) quantised dot product of the one-token layout. */
@inline function dotQuant<T>(w: usize, xq: usize, scales: usize, sums: usize, nb: i32): f32 {
  let acc: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = w + <usize>b * blockBytes<T>();
    const o = <usize>b << 2;
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
  const sums = qxSums1(qx, cols);
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
      let isum: v128;
      if (sizeof<T>() == 1) {
        // Sub-vector 0 starts the four rows' sums, 1..3 run as a loop: a basic block's loads are
        // all issued first, so the whole block unrolled keeps 16 widened weight vectors live.
        let xv = v128.load(xb);
        let a0 = i32x4.dot_i16x8_s(wideSub<T>(w0, 0), xv);
        let a1 = i32x4.dot_i16x8_s(wideSub<T>(w1, 0), xv);
        let a2 = i32x4.dot_i16x8_s(wideSub<T>(w2, 0), xv);
        let a3 = i32x4.dot_i16x8_s(wideSub<T>(w3, 0), xv);
        for (let k = 1; k < 4; k++) {
          xv = v128.load(xb + (<usize>k << 4));
          a0 = i32x4.add(a0, i32x4.dot_i16x8_s(wideSub<T>(w0, k), xv));
          a1 = i32x4.add(a1, i32x4.dot_i16x8_s(wideSub<T>(w1, k), xv));
          a2 = i32x4.add(a2, i32x4.dot_i16x8_s(wideSub<T>(w2, k), xv));
          a3 = i32x4.add(a3, i32x4.dot_i16x8_s(wideSub<T>(w3, k), xv));
        }
        isum = transposeSum(a0, a1, a2, a3);
      } else {
        isum = transposeSum(blockDot<T>(w0, xb), blockDot<T>(w1, xb), blockDot<T>(w2, xb), blockDot<T>(w3, xb));
        isum = i32x4.sub(isum, i32x4.splat(load<i32>(sums + (<usize>b << 2)) << 3));
      }
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
  for (let r = r0 + 4 * Q; r < r1; r++) emit(y, r, dotQuant<T>(W + <usize>r * rb, qx, scales, sums, nb), bias, accumulate);
}

/** Sub-vector k (columns 8k .. 8k+7) of the block at wb as signed i16 lanes (q4_0: nibble - 8). */
@inline function wideSub<T>(wb: usize, k: i32): v128 {
  if (sizeof<T>() == 1) return v128.load8x8_s(wb + 2 + (<usize>k << 3));
  // q4_0: columns 0..15 are the low nibbles of the 16 bytes, 16..31 the high ones.
  const n = v128.and(i16x8.shr_u(v128.load8x8_u(wb + 2 + (<usize>(k & 1) << 3)), <u32>(k >> 1) << 2), i16x8.splat(0x0f));
  return i16x8.sub(n, i16x8.splat(8));
}

/**
 * Widens blocks [b0, b1) of the nr (<= 4) rows at w (rb bytes apart) into ww: per block and row
 * the 16 column pairs as i32 (two i16), [block][row][pair]; their scales as f32 into dw
 * [block][row]. Missing rows are 0.
 */
function widenQuad<T>(w: usize, rb: usize, nr: i32, b0: i32, b1: i32, ww: usize, dw: usize): void {
  const bb = blockBytes<T>();
  const z = i32x4.splat(0);
  if (nr == 4) {
    let p0 = w + <usize>b0 * bb;
    let p1 = p0 + rb;
    let p2 = p1 + rb;
    let p3 = p2 + rb;
    let d = ww;
    let ds = dw;
    for (let b = b0; b < b1; b++) {
      v128.store(d, wideSub<T>(p0, 0));
      v128.store(d, wideSub<T>(p0, 1), 16);
      v128.store(d, wideSub<T>(p0, 2), 32);
      v128.store(d, wideSub<T>(p0, 3), 48);
      v128.store(d, wideSub<T>(p1, 0), 64);
      v128.store(d, wideSub<T>(p1, 1), 80);
      v128.store(d, wideSub<T>(p1, 2), 96);
      v128.store(d, wideSub<T>(p1, 3), 112);
      v128.store(d, wideSub<T>(p2, 0), 128);
      v128.store(d, wideSub<T>(p2, 1), 144);
      v128.store(d, wideSub<T>(p2, 2), 160);
      v128.store(d, wideSub<T>(p2, 3), 176);
      v128.store(d, wideSub<T>(p3, 0), 192);
      v128.store(d, wideSub<T>(p3, 1), 208);
      v128.store(d, wideSub<T>(p3, 2), 224);
      v128.store(d, wideSub<T>(p3, 3), 240);
      // The four scales in the low halves of i32 lanes, sign-extended, then f16x4FiniteToF32x4
      // (= f16FiniteToF32 per lane).
      let h = v128.load16_lane(p0, z, 0);
      h = v128.load16_lane(p1, h, 2);
      h = v128.load16_lane(p2, h, 4);
      h = v128.load16_lane(p3, h, 6);
      v128.store(ds, f16x4FiniteToF32x4(i32x4.shr_s(i32x4.shl(h, 16), 16)));
      p0 += bb;
      p1 += bb;
      p2 += bb;
      p3 += bb;
      d += 256;
      ds += 16;
    }
    return;
  }
  for (let b = b0; b < b1; b++) {
    const wb = w + <usize>b * bb;
    const dst = ww + (<usize>(b - b0) << 8);
    const ds = dw + (<usize>(b - b0) << 4);
    for (let i = 0; i < 4; i++) {
      const d = dst + (<usize>i << 6);
      if (i < nr) {
        const wr = wb + <usize>i * rb;
        v128.store(d, wideSub<T>(wr, 0));
        v128.store(d, wideSub<T>(wr, 1), 16);
        v128.store(d, wideSub<T>(wr, 2), 32);
        v128.store(d, wideSub<T>(wr, 3), 48);
        store<f32>(ds + (<usize>i << 2), f16FiniteToF32(<u32>load<u16>(wr)));
      } else {
        store<f32>(ds + (<usize>i << 2), 0);
        v128.store(d, z);
        v128.store(d, z, 16);
        v128.store(d, z, 32);
        v128.store(d, z, 48);
      }
    }
  }
}

/**
 * 4 rows x 8 tokens (one octet) over n blocks: ww/dw as widenQuad wrote them, x the octet's first
 * block, sc its scales (nP floats per block). Partial sums continue from / go back to f (8 f32x4,
 * [half][row]); `first` starts them at 0.
 */
function tile8(ww: usize, dw: usize, x: usize, sc: usize, nP: i32, n: i32, f: usize, first: bool): void {
  let f00 = f32x4.splat(0);
  let f10 = f32x4.splat(0);
  let f20 = f32x4.splat(0);
  let f30 = f32x4.splat(0);
  let f01 = f32x4.splat(0);
  let f11 = f32x4.splat(0);
  let f21 = f32x4.splat(0);
  let f31 = f32x4.splat(0);
  if (!first) {
    f00 = v128.load(f);
    f10 = v128.load(f, 16);
    f20 = v128.load(f, 32);
    f30 = v128.load(f, 48);
    f01 = v128.load(f, 64);
    f11 = v128.load(f, 80);
    f21 = v128.load(f, 96);
    f31 = v128.load(f, 112);
  }
  const scs = <usize>nP << 2;
  let wp = ww;
  let xp = x;
  let sp = sc;
  let dp = dw;
  for (let b = 0; b < n; b++) {
    // Column pair 0 starts the sums, pairs 1..15 run as a loop (a basic block's loads are all
    // issued first, so unrolling here would spill).
    let w0 = v128.load32_splat(wp);
    let w1 = v128.load32_splat(wp, 64);
    let w2 = v128.load32_splat(wp, 128);
    let w3 = v128.load32_splat(wp, 192);
    let xa = v128.load(xp);
    let xb = v128.load(xp, 16);
    let a00 = i32x4.dot_i16x8_s(w0, xa);
    let a01 = i32x4.dot_i16x8_s(w0, xb);
    let a10 = i32x4.dot_i16x8_s(w1, xa);
    let a11 = i32x4.dot_i16x8_s(w1, xb);
    let a20 = i32x4.dot_i16x8_s(w2, xa);
    let a21 = i32x4.dot_i16x8_s(w2, xb);
    let a30 = i32x4.dot_i16x8_s(w3, xa);
    let a31 = i32x4.dot_i16x8_s(w3, xb);
    const wb = wp;
    const we = wp + 64;
    wp += 4;
    xp += 32;
    while (wp < we) {
      w0 = v128.load32_splat(wp);
      w1 = v128.load32_splat(wp, 64);
      w2 = v128.load32_splat(wp, 128);
      w3 = v128.load32_splat(wp, 192);
      xa = v128.load(xp);
      xb = v128.load(xp, 16);
      a00 = i32x4.add(a00, i32x4.dot_i16x8_s(w0, xa));
      a01 = i32x4.add(a01, i32x4.dot_i16x8_s(w0, xb));
      a10 = i32x4.add(a10, i32x4.dot_i16x8_s(w1, xa));
      a11 = i32x4.add(a11, i32x4.dot_i16x8_s(w1, xb));
      a20 = i32x4.add(a20, i32x4.dot_i16x8_s(w2, xa));
      a21 = i32x4.add(a21, i32x4.dot_i16x8_s(w2, xb));
      a30 = i32x4.add(a30, i32x4.dot_i16x8_s(w3, xa));
      a31 = i32x4.add(a31, i32x4.dot_i16x8_s(w3, xb));
      wp += 4;
      xp += 32;
    }
    wp = wb + 256;
    const sa = v128.load(sp);
    const sb = v128.load(sp, 16);
    const d0 = v128.load32_splat(dp);
    const d1 = v128.load32_splat(dp, 4);
    const d2 = v128.load32_splat(dp, 8);
    const d3 = v128.load32_splat(dp, 12);
    f00 = f32x4.add(f00, f32x4.mul(f32x4.convert_i32x4_s(a00), f32x4.mul(d0, sa)));
    f01 = f32x4.add(f01, f32x4.mul(f32x4.convert_i32x4_s(a01), f32x4.mul(d0, sb)));
    f10 = f32x4.add(f10, f32x4.mul(f32x4.convert_i32x4_s(a10), f32x4.mul(d1, sa)));
    f11 = f32x4.add(f11, f32x4.mul(f32x4.convert_i32x4_s(a11), f32x4.mul(d1, sb)));
    f20 = f32x4.add(f20, f32x4.mul(f32x4.convert_i32x4_s(a20), f32x4.mul(d2, sa)));
    f21 = f32x4.add(f21, f32x4.mul(f32x4.convert_i32x4_s(a21), f32x4.mul(d2, sb)));
    f30 = f32x4.add(f30, f32x4.mul(f32x4.convert_i32x4_s(a30), f32x4.mul(d3, sa)));
    f31 = f32x4.add(f31, f32x4.mul(f32x4.convert_i32x4_s(a31), f32x4.mul(d3, sb)));
    sp += scs; // (xp has stepped 16 pairs x 32 bytes: the octet's next block)
    dp += 16;
  }
  v128.store(f, f00);
  v128.store(f, f10, 16);
  v128.store(f, f20, 32);
  v128.store(f, f30, 48);
  v128.store(f, f01, 64);
  v128.store(f, f11, 80);
  v128.store(f, f21, 96);
  v128.store(f, f31, 112);
}

/** As tile8 for the first four tokens of an octet only (the last octet holding at most 4 tokens). */
function tile4(ww: usize, dw: usize, x: usize, sc: usize, nP: i32, n: i32, f: usize, first: bool): void {
  let f0 = f32x4.splat(0);
  let f1 = f32x4.splat(0);
  let f2 = f32x4.splat(0);
  let f3 = f32x4.splat(0);
  if (!first) {
    f0 = v128.load(f);
    f1 = v128.load(f, 16);
    f2 = v128.load(f, 32);
    f3 = v128.load(f, 48);
  }
  const scs = <usize>nP << 2;
  let wp = ww;
  let xp = x;
  let sp = sc;
  let dp = dw;
  for (let b = 0; b < n; b++) {
    let xa = v128.load(xp);
    let a0 = i32x4.dot_i16x8_s(v128.load32_splat(wp), xa);
    let a1 = i32x4.dot_i16x8_s(v128.load32_splat(wp, 64), xa);
    let a2 = i32x4.dot_i16x8_s(v128.load32_splat(wp, 128), xa);
    let a3 = i32x4.dot_i16x8_s(v128.load32_splat(wp, 192), xa);
    const wb = wp;
    const we = wp + 64;
    wp += 4;
    xp += 32;
    while (wp < we) {
      xa = v128.load(xp);
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v128.load32_splat(wp), xa));
      a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v128.load32_splat(wp, 64), xa));
      a2 = i32x4.add(a2, i32x4.dot_i16x8_s(v128.load32_splat(wp, 128), xa));
      a3 = i32x4.add(a3, i32x4.dot_i16x8_s(v128.load32_splat(wp, 192), xa));
      wp += 4;
      xp += 32;
    }
    wp = wb + 256;
    const sa = v128.load(sp);
    f0 = f32x4.add(f0, f32x4.mul(f32x4.convert_i32x4_s(a0), f32x4.mul(v128.load32_splat(dp), sa)));
    f1 = f32x4.add(f1, f32x4.mul(f32x4.convert_i32x4_s(a1), f32x4.mul(v128.load32_splat(dp, 4), sa)));
    f2 = f32x4.add(f2, f32x4.mul(f32x4.convert_i32x4_s(a2), f32x4.mul(v128.load32_splat(dp, 8), sa)));
    f3 = f32x4.add(f3, f32x4.mul(f32x4.convert_i32x4_s(a3), f32x4.mul(v128.load32_splat(dp, 12), sa)));
    sp += scs;
    dp += 16;
  }
  v128.store(f, f0);
  v128.store(f, f1, 16);
  v128.store(f, f2, 32);
  v128.store(f, f3, 48);
}

/** emit for rows r..r+3 of n (<= 4) tokens ys bytes apart from f's four [row] f32x4 (lanes = tokens). */
@inline function emitQuad(f: usize, y: usize, ys: usize, r: i32, n: i32, bias: usize, accumulate: bool): void {
  const a = v128.load(f);
  const b = v128.load(f, 16);
  const c = v128.load(f, 32);
  const d = v128.load(f, 48);
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(c, d, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(a, b, 2, 6, 3, 7);
  const t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  const p = y + (<usize>r << 2);
  emit4(p, i32x4.shuffle(t0, t1, 0, 1, 4, 5), bias, r, accumulate);
  if (n > 1) emit4(p + ys, i32x4.shuffle(t0, t1, 2, 3, 6, 7), bias, r, accumulate);
  if (n > 2) emit4(p + 2 * ys, i32x4.shuffle(t2, t3, 0, 1, 4, 5), bias, r, accumulate);
  if (n > 3) emit4(p + 3 * ys, i32x4.shuffle(t2, t3, 2, 3, 6, 7), bias, r, accumulate);
}

/** emit of four consecutive rows from r (to p = y + r) at once: the same arithmetic per lane. */
@inline function emit4(p: usize, s: v128, bias: usize, r: i32, accumulate: bool): void {
  let v = s;
  if (bias) v = f32x4.add(v, v128.load(bias + (<usize>r << 2)));
  if (accumulate) v = f32x4.add(v128.load(p), v);
  v128.store(p, v);
}

function matmatQuant<T>(
  W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const bb = blockBytes<T>();
  const nb = cols >> 5;
  const rb = <usize>nb * bb;
  const nO = mmOctets(nTok);
  const nP = nO << 3;
  const seg = mmSegBlocks(nTok, nb);
  const scales = qxScales(qx, nTok, cols);
  const ww = scales + <usize>nb * <usize>nP * 4;
  const dw = ww + (<usize>seg << 8);
  const facc = dw + (<usize>seg << 4);
  const ys = <usize>yStride << 2;
  // Column segments outside the rows (SEG_ROWS at a time), so the input segment of all tokens
  // stays in L2 while each group of four rows streams its weights once; partial sums carry over
  // between segments in facc.
  const rowStep = seg < nb ? SEG_ROWS : r1 - r0;
  for (let rc = r0; rc < r1; rc += rowStep) {
    const re = min(r1, rc + rowStep);
    for (let b0 = 0; b0 < nb; b0 += seg) {
      const b1 = min(nb, b0 + seg);
      const first = b0 == 0;
      const last = b1 == nb;
      for (let r = rc; r < re; r += 4) {
        const nr = min(4, re - r);
        widenQuad<T>(W + <usize>r * rb, rb, nr, b0, b1, ww, dw);
        const fq = last && first ? facc : facc + <usize>((r - rc) >> 2) * <usize>nO * 128;
        for (let o = 0; o < nO; o++) {
          const valid = min(8, nTok - (o << 3));
          const x = qx + ((<usize>o * <usize>nb + <usize>b0) << 9);
          const sc = scales + ((<usize>b0 * <usize>nP + (<usize>o << 3)) << 2);
          const f = fq + <usize>o * 128;
          if (valid > 4) tile8(ww, dw, x, sc, nP, b1 - b0, f, first);
          else tile4(ww, dw, x, sc, nP, b1 - b0, f, first);
          if (last) {
            if (nr == 4) {
              emitQuad(f, y + (<usize>(o << 3)) * ys, ys, r, min(4, valid), bias, accumulate);
              if (valid > 4) emitQuad(f + 64, y + (<usize>((o << 3) + 4)) * ys, ys, r, valid - 4, bias, accumulate);
            } else {
              for (let t = 0; t < valid; t++) {
                const yt = y + <usize>((o << 3) + t) * ys;
                const ft = f + (<usize>(t >> 2) << 6) + (<usize>(t & 3) << 2);
                for (let i = 0; i < nr; i++) emit(yt, r + i, load<f32>(ft + (<usize>i << 4)), bias, accumulate);
              }
            }
          }
        }
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
    else if (nTok <= MV_TOK) {
      // One matvec per token, each on its own one-token layout of the quantised input.
      const qs = <usize>(cols >> 5) * 72;
      for (let t = 0; t < nTok; t++) {
        const qt = qx + <usize>t * qs;
        const yt = y + ((<usize>t * <usize>yStride) << 2);
        if (wt == WT_Q8_0) matvecQuant<i8>(W, qt, yt, cols, r0, r1, bias, accumulate);
        else if (wt == WT_Q4_0) matvecQuant<u16>(W, qt, yt, cols, r0, r1, bias, accumulate);
        else unreachable();
      }
    }
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
