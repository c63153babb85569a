// Matrix-vector (one token) and matrix-matrix (several tokens) products over a row range [r0, r1):
//   y[t*yStride + r] (+)= sum_c W[r, c] * x[t*xStride + c]  (+ bias[r])
// W is row-major [rows, cols] in one of the WT_* layouts (GGUF block layouts for q8_0/q4_0).
//
// Determinism: every (row, token) result is computed by the same sequence of float operations
// whichever tile it falls in (one f32x4 accumulator over columns in order, then hsum, then the
// scalar tail, then bias), so results do not depend on how rows are split between threads, and a
// one-token matmat equals the matvec bit for bit.
import {
  WT_F32, WT_F16, WT_BF16, WT_Q8_0, WT_Q4_0, WT_MXFP4, isKQuant, hsum, blockAbsMax, madd, f16ToF32, f16FiniteToF32, f16x4FiniteToF32x4, bf16x4ToF32x4,
} from './common';
import { kquantScratch, matRowsKQuant } from './kquant';
import { mxfp4Scratch, matRowsMxfp4 } from './mxfp4';

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

/**
 * nr rows (2 or 4: weights at w + i * rs, results to rows r + i * Q) times nt tokens (1..4: inputs
 * x + j * xs, outputs y + j * ys); nr and nt are constants at every call, so only their accumulators
 * exist. Per (row, token) the arithmetic is dotFloat's: one f32x4 accumulator over the columns in
 * order, hsum, the scalar tail, then emit. Each weight vector serves the nt tokens, each input vector
 * the nr rows.
 */
@inline function floatTile<T>(
  w: usize, rs: usize, x: usize, xs: usize, cols: i32, y: usize, ys: usize, r: i32, Q: i32,
  bias: usize, accumulate: bool, nr: i32, nt: i32,
): void {
  const c4 = cols & ~3;
  const w0 = w;
  const w1 = w0 + rs;
  const w2 = w1 + rs;
  const w3 = w2 + rs;
  const x0 = x;
  const x1 = x0 + xs;
  const x2 = x1 + xs;
  const x3 = x2 + xs;
  // a<row><token>
  let a00 = f32x4.splat(0), a01 = a00, a02 = a00, a03 = a00;
  let a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  let a20 = a00, a21 = a00;
  let a30 = a00, a31 = a00;
  for (let c = 0; c < c4; c += 4) {
    const o = <usize>c * sizeof<T>();
    const ox = <usize>c << 2;
    const v0 = wload<T>(w0 + o);
    const v1 = wload<T>(w1 + o);
    let xv = v128.load(x0 + ox);
    a00 = madd(v0, xv, a00);
    a10 = madd(v1, xv, a10);
    if (nr > 2) {
      const v2 = wload<T>(w2 + o);
      const v3 = wload<T>(w3 + o);
      a20 = madd(v2, xv, a20);
      a30 = madd(v3, xv, a30);
      if (nt > 1) {
        xv = v128.load(x1 + ox);
        a01 = madd(v0, xv, a01);
        a11 = madd(v1, xv, a11);
        a21 = madd(v2, xv, a21);
        a31 = madd(v3, xv, a31);
      }
    } else {
      if (nt > 1) {
        xv = v128.load(x1 + ox);
        a01 = madd(v0, xv, a01);
        a11 = madd(v1, xv, a11);
      }
      if (nt > 2) {
        xv = v128.load(x2 + ox);
        a02 = madd(v0, xv, a02);
        a12 = madd(v1, xv, a12);
      }
      if (nt > 3) {
        xv = v128.load(x3 + ox);
        a03 = madd(v0, xv, a03);
        a13 = madd(v1, xv, a13);
      }
    }
  }
  const yq = <usize>Q << 2;
  floatFinish<T>(w0, x0, c4, cols, hsum(a00), y + (<usize>r << 2), bias, r, accumulate);
  floatFinish<T>(w1, x0, c4, cols, hsum(a10), y + (<usize>r << 2) + yq, bias, r + Q, accumulate);
  if (nr > 2) {
    floatFinish<T>(w2, x0, c4, cols, hsum(a20), y + (<usize>r << 2) + 2 * yq, bias, r + 2 * Q, accumulate);
    floatFinish<T>(w3, x0, c4, cols, hsum(a30), y + (<usize>r << 2) + 3 * yq, bias, r + 3 * Q, accumulate);
  }
  if (nt > 1) {
    const yt = y + ys + (<usize>r << 2);
    floatFinish<T>(w0, x1, c4, cols, hsum(a01), yt, bias, r, accumulate);
    floatFinish<T>(w1, x1, c4, cols, hsum(a11), yt + yq, bias, r + Q, accumulate);
    if (nr > 2) {
      floatFinish<T>(w2, x1, c4, cols, hsum(a21), yt + 2 * yq, bias, r + 2 * Q, accumulate);
      floatFinish<T>(w3, x1, c4, cols, hsum(a31), yt + 3 * yq, bias, r + 3 * Q, accumulate);
    }
  }
  if (nt > 2) {
    const yt = y + 2 * ys + (<usize>r << 2);
    floatFinish<T>(w0, x2, c4, cols, hsum(a02), yt, bias, r, accumulate);
    floatFinish<T>(w1, x2, c4, cols, hsum(a12), yt + yq, bias, r + Q, accumulate);
  }
  if (nt > 3) {
    const yt = y + 3 * ys + (<usize>r << 2);
    floatFinish<T>(w0, x3, c4, cols, hsum(a03), yt, bias, r, accumulate);
    floatFinish<T>(w1, x3, c4, cols, hsum(a13), yt + yq, bias, r + Q, accumulate);
  }
}

/** dotFloat's scalar tail (columns c4 .. cols) after s = hsum, then emit's bias and accumulate into p (row r). */
@inline function floatFinish<T>(w: usize, x: usize, c4: i32, cols: i32, s0: f32, p: usize, bias: usize, r: i32, accumulate: bool): void {
  let s = s0;
  for (let c = c4; c < cols; c++) s += wload1<T>(w + <usize>c * sizeof<T>()) * load<f32>(x + (<usize>c << 2));
  if (bias) s += load<f32>(bias + (<usize>r << 2));
  if (accumulate) s = load<f32>(p) + s;
  store<f32>(p, s);
}

/**
 * Several tokens: per group of four rows (from the four quarters of the range, as in the matvec)
 * the tokens in fours (two tiles of 2 rows x 4 tokens; f16 in threes, 2 x 3), then the rest (3: two
 * 2 x 3 tiles; 2: one 4 x 2, f16 two 2 x 2; 1: one 4 x 1), while the four rows are in cache: each
 * weight row comes from memory once per TOK_CHUNK tokens, and every tile keeps 4 to 8 independent
 * sums going (a single one is bound by the latency of its adds). Rows past the last group go one
 * (row, token) at a time.
 */
function matmatFloat<T>(
  W: usize, x: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool,
  nTok: i32, xStride: i32, yStride: i32,
): void {
  const rb = <usize>cols * sizeof<T>();
  const xs = <usize>xStride << 2;
  const ys = <usize>yStride << 2;
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  // f16's conversion holds two constants: its tiles stay at six sums or fewer (more would spill).
  const f16 = sizeof<T>() == 2 && !isSigned<T>();
  for (let tc = 0; tc < nTok; tc += TOK_CHUNK) {
    const te = min(nTok, tc + TOK_CHUNK);
    for (let i = 0; i < Q; i++) {
      const r = r0 + i;
      const w = W + <usize>r * rb;
      let t = tc;
      if (f16) {
        for (; t + 3 <= te; t += 3) {
          const xt = x + <usize>t * xs;
          const yt = y + <usize>t * ys;
          floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 2, 3);
          floatTile<T>(w + 2 * qb, qb, xt, xs, cols, yt, ys, r + 2 * Q, Q, bias, accumulate, 2, 3);
        }
      } else {
        for (; t + 4 <= te; t += 4) {
          const xt = x + <usize>t * xs;
          const yt = y + <usize>t * ys;
          floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 2, 4);
          floatTile<T>(w + 2 * qb, qb, xt, xs, cols, yt, ys, r + 2 * Q, Q, bias, accumulate, 2, 4);
        }
      }
      const rest = te - t;
      const xt = x + <usize>t * xs;
      const yt = y + <usize>t * ys;
      if (rest == 3) {
        floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 2, 3);
        floatTile<T>(w + 2 * qb, qb, xt, xs, cols, yt, ys, r + 2 * Q, Q, bias, accumulate, 2, 3);
      } else if (rest == 2) {
        if (f16) {
          floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 2, 2);
          floatTile<T>(w + 2 * qb, qb, xt, xs, cols, yt, ys, r + 2 * Q, Q, bias, accumulate, 2, 2);
        } else {
          floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 4, 2);
        }
      } else if (rest == 1) {
        floatTile<T>(w, qb, xt, xs, cols, yt, ys, r, Q, bias, accumulate, 4, 1);
      }
    }
    for (let r = r0 + 4 * Q; r < r1; r++) {
      for (let t = tc; t < te; t++) emit(y + <usize>t * ys, r, dotFloat<T>(W + <usize>r * rb, x + <usize>t * xs, cols), bias, accumulate);
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
//     a few tokens (fewTokens: a decode batch): that layout once per token, one after the other,
//     then matFewQuant's work areas; read by tiles of four weight rows times two tokens (quadTile):
//     each weight block comes from memory once for all the tokens (the four rows stay in L1 while
//     the token pairs pass over them), with no widening pass and no padding;
//   more tokens (matmat): the tokens in octets of 8 (padded with zeros), the columns in pairs:
//     q: [octet][nb][16 pairs][8 tokens] i32 (= two i16: the pair's columns) | d f32 [nb][8*octets]
//     then the matmat work areas: widened weights of 4 rows [seg][4 rows][16 pairs] i32,
//     their f32 scales [seg][4 rows], and per (4-row group, octet) 8 f32x4 partial sums (one
//     group, or SEG_ROWS rows' worth when the columns come in more than one segment).
//   A dot_i16x8_s of a column pair broadcast from one weight row with the pairs of four tokens
//   gives those four tokens' partial sums in its four lanes: no horizontal sums per block.

/**
 * Token counts up to which a product runs on the one-token input layout (the matvec and the
 * few-token tiles); past them, octets. Measured on the Qwen2.5-0.5B shapes (A/B alternated, 1 and 2
 * threads): the tiles lead up to about 12 tokens and are level at 14, the octets lead from 16 (two
 * octets without padding; the tiles' per-block sums and scaling then cost more than the octets'
 * widening pass). q4_0's octets win from 6: its blocks are half the bytes, so that pass waits less
 * on memory, while the tiles widen its nibbles once more.
 */
const FEW_TOK: i32 = 15;
const FEW_TOK_Q4: i32 = 5;

/** Whether nTok tokens against weights of type wt use the one-token input layout (else octets). */
@inline export function fewTokens(wt: i32, nTok: i32): bool {
  if (isKQuant(wt) || wt == WT_MXFP4) return true; // K-quants and MXFP4 take the one-token layout for any count (kquant.ts, mxfp4.ts)
  return nTok <= (wt == WT_Q4_0 ? FEW_TOK_Q4 : FEW_TOK);
}

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
 * nTok > FEW_TOK, the matmat work areas; rounded up to 64.
 */
export function qxBytes(wt: i32, nTok: i32, cols: i32): usize {
  if (isKQuant(wt)) return kquantScratch(nTok, cols);
  if (wt == WT_MXFP4) return mxfp4Scratch(nTok, cols);
  const nb = <usize>(cols >> 5);
  let b: usize;
  if (nTok == 1) {
    b = nb * 72;
  } else if (fewTokens(wt, nTok)) {
    // matFewQuant's work areas after the inputs: a running sum per token, the rows' scales and
    // (q4_0) widened blocks of one column segment.
    b = <usize>nTok * nb * 72 + (<usize>nTok << 4) + <usize>fewSegBlocks(<i32>nb) * 272;
  } else {
    const nO = <usize>mmOctets(nTok);
    const seg = mmSegBlocks(nTok, <i32>nb);
    const quads = <usize>seg < nb ? <usize>(SEG_ROWS >> 2) : 1;
    b = nO * nb * 512 + nb * nO * 32 + <usize>seg * 272 + quads * nO * 128;
  }
  return (b + 63) & ~(<usize>63);
}

/** The input scales of quantX's layout (few: the one-token layout per token, else octets). */
@inline function qxScales(qx: usize, nTok: i32, cols: i32, few: bool): usize {
  const nb = <usize>(cols >> 5);
  return few ? qx + (nb << 6) : qx + <usize>mmOctets(nTok) * nb * 512;
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
export function quantX(x: usize, xStride: i32, nTok: i32, cols: i32, qx: usize, few: bool): void {
  const nb = cols >> 5;
  const scales = qxScales(qx, nTok, cols, few);
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
      if (few) {
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
  if (few) return;
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
  const nb = cols >> 5;
  const rb = <usize>nb * blockBytes<T>();
  // The tile's four rows come from the four quarters of the range: four long sequential streams,
  // which the hardware prefetchers follow far better than four adjacent short rows.
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  for (let i = 0; i < Q; i++) quadOne<T>(W + <usize>(r0 + i) * rb, qb, qx, nb, y, r0 + i, Q, bias, accumulate);
  const scales = qxScales(qx, 1, cols, true);
  const sums = qxSums1(qx, cols);
  for (let r = r0 + 4 * Q; r < r1; r++) emit(y, r, dotQuant<T>(W + <usize>r * rb, qx, scales, sums, nb), bias, accumulate);
}

/**
 * Rows r, r + Q, r + 2Q, r + 3Q (weights from w, qb bytes apart) times one token of the one-token
 * layout at x: the matvec's tile, lanes = rows.
 */
@inline function quadOne<T>(w: usize, qb: usize, x: usize, nb: i32, y: usize, r: i32, Q: i32, bias: usize, accumulate: bool): void {
  const bb = blockBytes<T>();
  const scales = x + (<usize>nb << 6);
  const sums = scales + (<usize>nb << 2);
  let w0 = w;
  let w1 = w0 + qb;
  let w2 = w1 + qb;
  let w3 = w2 + qb;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const xb = x + (<usize>b << 6);
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
    const sc = f32x4.mul(quadScales(w0, w1, w2, w3), f32x4.splat(load<f32>(scales + (<usize>b << 2))));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), sc));
    w0 += bb;
    w1 += bb;
    w2 += bb;
    w3 += bb;
  }
  emitRows(y, r, Q, acc, bias, accumulate);
}

/** The block scales at w0..w3 (one per row) as f32 lanes, as f16FiniteToF32 of each. */
@inline function quadScales(w0: usize, w1: usize, w2: usize, w3: usize): v128 {
  let h = v128.load16_lane(w0, i32x4.splat(0), 0);
  h = v128.load16_lane(w1, h, 1);
  h = v128.load16_lane(w2, h, 2);
  h = v128.load16_lane(w3, h, 3);
  return f16x4FiniteToF32x4(i32x4.extend_low_i16x8_s(h));
}

/** emit of lane i of acc to row r + i*Q. */
@inline function emitRows(y: usize, r: i32, Q: i32, acc: v128, bias: usize, accumulate: bool): void {
  emit(y, r, f32x4.extract_lane(acc, 0), bias, accumulate);
  emit(y, r + Q, f32x4.extract_lane(acc, 1), bias, accumulate);
  emit(y, r + 2 * Q, f32x4.extract_lane(acc, 2), bias, accumulate);
  emit(y, r + 3 * Q, f32x4.extract_lane(acc, 3), bias, accumulate);
}

/** Blocks per column segment of a few-token product (the four rows' segment stays in L1 across the tokens). */
const FEW_SEG: i32 = 64;

/** Blocks per column segment of a few-token product over nb blocks (segments of equal size). */
@inline function fewSegBlocks(nb: i32): i32 {
  const nSeg = (nb + FEW_SEG - 1) / FEW_SEG;
  return (nb + nSeg - 1) / nSeg;
}

/**
 * One row's block sub-vector (8 columns) at p as i16 lanes: p points into a stored q8_0 block's
 * values (W = i8: 8 bytes), a stored q4_0 block (W = u16: k = 0..3 as in wideSub, p at the block),
 * or a block quadTile kept widened (W = i16: 16 bytes).
 */
@inline function wsub<W>(p: usize, k: i32): v128 {
  if (sizeof<W>() == 1) return v128.load8x8_s(p);
  if (isSigned<W>()) return v128.load(p);
  return wideSub<W>(p, k);
}

/** Bytes from one sub-vector of a row's block to the next in wsub's layouts (q4_0: wsub takes k instead). */
@inline function wstep<W>(): usize {
  return sizeof<W>() == 1 ? 8 : isSigned<W>() ? 16 : 0;
}

/**
 * Four rows times one token (two = false) or two (two = true; constants at every call) of the
 * one-token layout, over n blocks. The rows' blocks are at w + i * rs, bs bytes from one block to the
 * next (W as in wsub); the tokens' inputs at x and x + ts, their scales at sc and sc + ts.
 * `fresh`: the first pass over these blocks: it reads them as stored, computes the rows' block
 * scales and keeps them at dws (one f32x4 per block) and, for q4_0, the widened blocks at ww
 * ([block][row][32] i16), for the passes after it (which read those instead; q8_0 rereads its
 * blocks, still in L1). So the blocks come from memory inside the arithmetic, not in a pass of their
 * own. Per (row, token) and block: the exact integer dot, then acc + f32(isum) * (dw * dx), the
 * matvec's sequence, acc (lanes = rows; one f32x4 per token at acc) carried over from the previous
 * column segment (first: from 0) and back.
 */
@inline function quadTile<W>(
  w: usize, rs: usize, bs: usize, dws: usize, ww: usize, x: usize, ts: usize, sc: usize, n: i32, acc: usize,
  first: bool, two: bool, fresh: bool,
): void {
  const keepWide = fresh && sizeof<W>() == 2 && !isSigned<W>();
  // q8_0's values start 2 bytes into the block (after its scale); q4_0 and kept blocks at 0.
  const vo: usize = sizeof<W>() == 1 ? 2 : 0;
  let w0 = w;
  let w1 = w0 + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  let acc0 = first ? f32x4.splat(0) : v128.load(acc);
  let acc1 = first || !two ? f32x4.splat(0) : v128.load(acc, 16);
  for (let b = 0; b < n; b++) {
    const xa = x + (<usize>b << 6);
    let wk = ww + (<usize>b << 8);
    // Sub-vector 0 starts the sums and 1..3 loop: a basic block's loads are all issued first, so
    // the whole block unrolled would keep 16 widened weight vectors live (here 8 sums, 4 weights,
    // 1 input). The loop steps its pointers (no index arithmetic per load).
    let p0 = w0 + vo;
    let p1 = w1 + vo;
    let p2 = w2 + vo;
    let p3 = w3 + vo;
    let v0 = wsub<W>(p0, 0);
    let v1 = wsub<W>(p1, 0);
    let v2 = wsub<W>(p2, 0);
    let v3 = wsub<W>(p3, 0);
    if (keepWide) {
      v128.store(wk, v0);
      v128.store(wk, v1, 64);
      v128.store(wk, v2, 128);
      v128.store(wk, v3, 192);
    }
    let xv = v128.load(xa);
    let a00 = i32x4.dot_i16x8_s(v0, xv);
    let a10 = i32x4.dot_i16x8_s(v1, xv);
    let a20 = i32x4.dot_i16x8_s(v2, xv);
    let a30 = i32x4.dot_i16x8_s(v3, xv);
    let a01 = a00;
    let a11 = a00;
    let a21 = a00;
    let a31 = a00;
    if (two) {
      xv = v128.load(xa + ts);
      a01 = i32x4.dot_i16x8_s(v0, xv);
      a11 = i32x4.dot_i16x8_s(v1, xv);
      a21 = i32x4.dot_i16x8_s(v2, xv);
      a31 = i32x4.dot_i16x8_s(v3, xv);
    }
    let xp = xa + 16;
    const xe = xa + 64;
    let k = 1;
    while (xp < xe) {
      p0 += wstep<W>();
      p1 += wstep<W>();
      p2 += wstep<W>();
      p3 += wstep<W>();
      v0 = wsub<W>(p0, k);
      v1 = wsub<W>(p1, k);
      v2 = wsub<W>(p2, k);
      v3 = wsub<W>(p3, k);
      if (keepWide) {
        wk += 16;
        v128.store(wk, v0);
        v128.store(wk, v1, 64);
        v128.store(wk, v2, 128);
        v128.store(wk, v3, 192);
      }
      xv = v128.load(xp);
      a00 = i32x4.add(a00, i32x4.dot_i16x8_s(v0, xv));
      a10 = i32x4.add(a10, i32x4.dot_i16x8_s(v1, xv));
      a20 = i32x4.add(a20, i32x4.dot_i16x8_s(v2, xv));
      a30 = i32x4.add(a30, i32x4.dot_i16x8_s(v3, xv));
      if (two) {
        xv = v128.load(xp + ts);
        a01 = i32x4.add(a01, i32x4.dot_i16x8_s(v0, xv));
        a11 = i32x4.add(a11, i32x4.dot_i16x8_s(v1, xv));
        a21 = i32x4.add(a21, i32x4.dot_i16x8_s(v2, xv));
        a31 = i32x4.add(a31, i32x4.dot_i16x8_s(v3, xv));
      }
      xp += 16;
      k++;
    }
    let dw: v128;
    if (fresh) {
      dw = quadScales(w0, w1, w2, w3);
      v128.store(dws + (<usize>b << 4), dw);
    } else {
      dw = v128.load(dws + (<usize>b << 4));
    }
    const o = <usize>b << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(transposeSum(a00, a10, a20, a30)), f32x4.mul(dw, f32x4.splat(load<f32>(sc + o)))));
    if (two) {
      acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(transposeSum(a01, a11, a21, a31)), f32x4.mul(dw, f32x4.splat(load<f32>(sc + ts + o)))));
    }
    w0 += bs;
    w1 += bs;
    w2 += bs;
    w3 += bs;
  }
  v128.store(acc, acc0);
  if (two) v128.store(acc, acc1, 16);
}

/**
 * Rows [r0, r1) for a few tokens (2..FEW_TOK, see fewTokens) of the one-token layout (token t's at
 * qx + t * nb * 72; then the work areas, see qxBytes). Per group of four rows (from the four
 * quarters of the range, as in the matvec) and column segment, every token pair (then an odd last
 * token) over the rows' blocks: the first pair reads them from memory, the others from L1, so each
 * weight block comes from memory once for all the tokens. Rows past the last group go one (row,
 * token) at a time.
 */
function matFewQuant<T>(W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32): void {
  const bb = blockBytes<T>();
  const nb = cols >> 5;
  const rb = <usize>nb * bb;
  const ts = <usize>nb * 72;
  const ys = <usize>yStride << 2;
  const seg = fewSegBlocks(nb);
  const accs = qx + <usize>nTok * ts;
  const dws = accs + (<usize>nTok << 4);
  const ww = dws + (<usize>seg << 4);
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  for (let i = 0; i < Q; i++) {
    const r = r0 + i;
    const w = W + <usize>r * rb;
    for (let b0 = 0; b0 < nb; b0 += seg) {
      const n = min(seg, nb - b0);
      const p = w + <usize>b0 * bb;
      const first = b0 == 0;
      const xo = <usize>b0 << 6;
      const so = (<usize>nb << 6) + (<usize>b0 << 2);
      // Token pair 0 (nTok >= 2) reads the blocks as stored; the other pairs and an odd last token
      // read what it kept.
      quadTile<T>(p, qb, bb, dws, ww, qx + xo, ts, qx + so, n, accs, first, true, true);
      for (let t = 2; t < nTok; t += 2) {
        const xt = qx + <usize>t * ts;
        const at = accs + (<usize>t << 4);
        const two = t + 1 < nTok;
        if (sizeof<T>() == 1) {
          if (two) quadTile<T>(p, qb, bb, dws, ww, xt + xo, ts, xt + so, n, at, first, true, false);
          else quadTile<T>(p, qb, bb, dws, ww, xt + xo, ts, xt + so, n, at, first, false, false);
        } else {
          if (two) quadTile<i16>(ww, 64, 256, dws, 0, xt + xo, ts, xt + so, n, at, first, true, false);
          else quadTile<i16>(ww, 64, 256, dws, 0, xt + xo, ts, xt + so, n, at, first, false, false);
        }
      }
    }
    for (let t = 0; t < nTok; t++) emitRows(y + <usize>t * ys, r, Q, v128.load(accs + (<usize>t << 4)), bias, accumulate);
  }
  for (let r = r0 + 4 * Q; r < r1; r++) {
    const w = W + <usize>r * rb;
    for (let t = 0; t < nTok; t++) {
      const xt = qx + <usize>t * ts;
      emit(y + <usize>t * ys, r, dotQuant<T>(w, xt, xt + (<usize>nb << 6), xt + <usize>nb * 68, nb), bias, accumulate);
    }
  }
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
  const scales = qxScales(qx, nTok, cols, false);
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
  if (isKQuant(wt)) {
    matRowsKQuant(wt, W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
    return;
  }
  if (wt == WT_MXFP4) {
    matRowsMxfp4(W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
    return;
  }
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
    else if (fewTokens(wt, nTok)) {
      if (wt == WT_Q8_0) matFewQuant<i8>(W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
      else if (wt == WT_Q4_0) matFewQuant<u16>(W, qx, y, cols, r0, r1, bias, accumulate, nTok, yStride);
      else unreachable();
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
