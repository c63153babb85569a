// ggml's K-quant weights (Q4_K, Q6_K) read as stored in GGUF files: 256-value superblocks.
//
//   Q4_K  144 bytes: half d | half dmin | u8 scales[12] | u8 qs[128]
//         eight sub-blocks of 32 values, each a 6-bit scale sc_j and min m_j packed in `scales`
//         (j < 4: sc = s[j] & 63, m = s[j+4] & 63; j >= 4: sc = s[j+4] & 15 | (s[j-4] >> 6) << 4,
//         m = s[j+4] >> 4 | (s[j] >> 6) << 4); sub-block j's values are the low (j even) or high
//         (j odd) nibbles q of qs[32 (j >> 1) .. + 32]: w = d * sc_j * q - dmin * m_j.
//   Q6_K  210 bytes: u8 ql[128] | u8 qh[64] | i8 scales[16] | half d
//         two halves n of 128 values; in half n, value 32k + l (k 0..3, l 0..31) is
//         q = (ql[64n + 32 (k & 1) + l] nibble (k < 2 low, else high) | ((qh[32n + l] >> 2k) & 3) << 4) - 32,
//         w = d * scales[8n + 2k + (l >> 4)] * q.
//
// Products run against the input quantised per 32-block (matvec.ts quantX, the one-token layout for
// any number of tokens: per token q i16 [nb][32] | d f32 [nb] | s i32 [nb], nb = cols / 32, 72 bytes
// per block). Per (row, token) the arithmetic is, for each 32-block b of the row in order (sub-block
// j of its superblock; isum_b the exact integer dot of the weights' integers with q_b):
//   Q4_K  acc  = acc + f32(sc_j * isum_b) * (d * dx_b)
//         mins = mins + f32(m_j * s_b) * (dmin * dx_b)        result = acc - mins
//   Q6_K  acc  = acc + f32(sc_lo * isum_lo + sc_hi * isum_hi) * (d * dx_b)   (its two 16-value halves)
//         result = acc
// (float32, acc and mins starting at 0). The matvec tiles hold four rows in the lanes of a vector
// (quadQ4K / quadQ6K), a lone row runs the same sequence on scalars (oneQ4K / oneQ6K).
// Integers are exact (|lane| < 2^24, so their conversion is too); the float operations are separate
// multiplies and adds (no fused multiply-add), the same bits in both builds. Every kernel below
// computes each (row, token) by that one function, so results do not depend on the thread split or
// on how many tokens share the product, and a token's row of a matmat equals its matvec bit for bit.
// Against the dequantised weights in f32 the result differs by the input's rounding to 8 bits (at
// most dx_b / 2 per value) and float rounding: the tolerance the tests derive per (row, token).
import { WT_Q4_K, f16FiniteToF32, f16ToF32, f16x4FiniteToF32x4 } from './common';

/** Bytes of one token's quantised input per 32-block (the one-token layout). */
const QX_BLOCK: usize = 72;

/** The eight 6-bit scales (bytes 0..7 of sc) and mins (bytes 0..7 of mn) of a Q4_K superblock's `scales` at s. */
@inline function q4kScales(s: usize, sc: usize, mn: usize): void {
  for (let j = 0; j < 4; j++) {
    store<u8>(sc + j, load<u8>(s + j) & 63);
    store<u8>(mn + j, load<u8>(s + j + 4) & 63);
  }
  for (let j = 4; j < 8; j++) {
    store<u8>(sc + j, (load<u8>(s + j + 4) & 15) | ((load<u8>(s + j - 4) >> 6) << 4));
    store<u8>(mn + j, (load<u8>(s + j + 4) >> 4) | ((load<u8>(s + j) >> 6) << 4));
  }
}

/**
 * A Q4_K superblock's scales and mins from its 12 packed bytes (the first 12 lanes of s, as loaded
 * from the block + 4): lanes 0..7 sc_j, lanes 8..15 m_j (see q4kScales for the packing).
 */
@inline function q4kScaleLanes(s: v128): v128 {
  const lo = v128.and(i8x16.shuffle(s, s, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 0, 0, 0, 0), i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
  const nib = v128.and(i8x16.shr_u(i8x16.shuffle(s, s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 9, 10, 11), 4), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1));
  const hi = v128.and(
    i8x16.shl(i8x16.shr_u(i8x16.shuffle(s, s, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 7), 6), 4),
    i8x16(0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1),
  );
  return v128.or(v128.or(lo, nib), hi);
}

/**
 * Four rows' q4kScaleLanes (v0..v3) regrouped per sub-block: at out, sc_j of rows 0..3 as four bytes
 * per j (32 bytes), then m_j likewise (32 bytes).
 */
@inline function q4kScalesByBlock(v0: v128, v1: v128, v2: v128, v3: v128, out: usize): void {
  const s01 = i8x16.shuffle(v0, v1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const s23 = i8x16.shuffle(v2, v3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const m01 = i8x16.shuffle(v0, v1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const m23 = i8x16.shuffle(v2, v3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  v128.store(out, i8x16.shuffle(s01, s23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23));
  v128.store(out, i8x16.shuffle(s01, s23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 16);
  v128.store(out, i8x16.shuffle(m01, m23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), 32);
  v128.store(out, i8x16.shuffle(m01, m23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 48);
}

/** Four unsigned bytes at p as i32 lanes. */
@inline function bytes4(p: usize): v128 {
  return i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(p)));
}

/** Integer dot (four partial lanes) of 32 values as 16 bytes of i8 pairs a (values 0..15) and b (16..31) with the input block at xb. */
@inline function dot32(a: v128, b: v128, xb: usize): v128 {
  return dot32x(a, b, v128.load(xb), v128.load(xb, 16), v128.load(xb, 32), v128.load(xb, 48));
}

/** dot32 with the input block's four vectors already loaded. */
@inline function dot32x(a: v128, b: v128, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), x3)),
  );
}

/** Sub-block j's nibbles (the low ones for even j, else the high ones) of the 32 bytes at q, as two vectors of bytes. */
@inline function nibblesLo(q: usize, high: bool): v128 {
  const a = v128.load(q);
  return high ? i8x16.shr_u(a, 4) : v128.and(a, i8x16.splat(0x0f));
}
@inline function nibblesHi(q: usize, high: bool): v128 {
  const a = v128.load(q, 16);
  return high ? i8x16.shr_u(a, 4) : v128.and(a, i8x16.splat(0x0f));
}

/** [sum(a), sum(b), sum(c), sum(d)] of four i32x4 vectors (exact). */
@inline function transposeSum(a: v128, b: v128, c: v128, d: v128): v128 {
  const s0 = i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const s1 = i32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(s0, s1, 0, 2, 4, 6), i32x4.shuffle(s0, s1, 1, 3, 5, 7));
}

@inline function hsumI(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

/** The f16 at p0..p3 (one per row) as f32 lanes, as f16FiniteToF32 of each. */
@inline function halves4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = v128.load16_lane(p0, i32x4.splat(0), 0);
  h = v128.load16_lane(p1, h, 2);
  h = v128.load16_lane(p2, h, 4);
  h = v128.load16_lane(p3, h, 6);
  return f16x4FiniteToF32x4(i32x4.shr_s(i32x4.shl(h, 16), 16));
}

/**
 * Four Q4_K rows (at w, w + rs, w + 2 rs, w + 3 rs) times one token's quantised input at x: lane i is
 * row i's result, computed as oneQ4K computes it. sm: 64 bytes of scratch.
 */
function quadQ4K(w: usize, rs: usize, x: usize, nsb: i32, sm: usize): v128 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  const xs = x + nb * 68;
  let acc = f32x4.splat(0);
  let mins = f32x4.splat(0);
  let w0 = w;
  let w1 = w0 + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  for (let sb = 0; sb < nsb; sb++) {
    const d = halves4(w0, w1, w2, w3);
    const dmin = halves4(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
    q4kScalesByBlock(q4kScaleLanes(v128.load(w0, 4)), q4kScaleLanes(v128.load(w1, 4)), q4kScaleLanes(v128.load(w2, 4)), q4kScaleLanes(v128.load(w3, 4)), sm);
    for (let p = 0; p < 4; p++) {
      // sub-blocks 2p (the low nibbles) and 2p + 1 (the high ones) of the same 32 bytes per row
      const qo: usize = 16 + (<usize>p << 5);
      const blk = (<usize>sb << 3) + (<usize>p << 1);
      const ss = sm + (<usize>p << 3);
      {
        const xb = x + ((blk) << 6);
        const x0 = v128.load(xb);
        const x1 = v128.load(xb, 16);
        const x2 = v128.load(xb, 32);
        const x3 = v128.load(xb, 48);
        const isum = transposeSum(
          dot32x(nibblesLo(w0 + qo, false), nibblesHi(w0 + qo, false), x0, x1, x2, x3),
          dot32x(nibblesLo(w1 + qo, false), nibblesHi(w1 + qo, false), x0, x1, x2, x3),
          dot32x(nibblesLo(w2 + qo, false), nibblesHi(w2 + qo, false), x0, x1, x2, x3),
          dot32x(nibblesLo(w3 + qo, false), nibblesHi(w3 + qo, false), x0, x1, x2, x3),
        );
        const dx = v128.load32_splat(xd + ((blk) << 2));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i32x4.mul(isum, bytes4(ss))), f32x4.mul(d, dx)));
        mins = f32x4.add(mins, f32x4.mul(f32x4.convert_i32x4_s(i32x4.mul(bytes4(ss + 32), v128.load32_splat(xs + ((blk) << 2)))), f32x4.mul(dmin, dx)));
      }
      {
        const xb = x + ((blk + 1) << 6);
        const x0 = v128.load(xb);
        const x1 = v128.load(xb, 16);
        const x2 = v128.load(xb, 32);
        const x3 = v128.load(xb, 48);
        const isum = transposeSum(
          dot32x(nibblesLo(w0 + qo, true), nibblesHi(w0 + qo, true), x0, x1, x2, x3),
          dot32x(nibblesLo(w1 + qo, true), nibblesHi(w1 + qo, true), x0, x1, x2, x3),
          dot32x(nibblesLo(w2 + qo, true), nibblesHi(w2 + qo, true), x0, x1, x2, x3),
          dot32x(nibblesLo(w3 + qo, true), nibblesHi(w3 + qo, true), x0, x1, x2, x3),
        );
        const dx = v128.load32_splat(xd + ((blk + 1) << 2));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i32x4.mul(isum, bytes4(ss + 4))), f32x4.mul(d, dx)));
        mins = f32x4.add(mins, f32x4.mul(f32x4.convert_i32x4_s(i32x4.mul(bytes4(ss + 4 + 32), v128.load32_splat(xs + ((blk + 1) << 2)))), f32x4.mul(dmin, dx)));
      }
    }
    w0 += 144;
    w1 += 144;
    w2 += 144;
    w3 += 144;
  }
  return f32x4.sub(acc, mins);
}

/**
 * One Q4_K row at w times one token's quantised input at x (nsb superblocks: nb = 8 nsb blocks):
 * per block b (sub-block j of its superblock), in order,
 *   acc  += f32(sc_j * isum_b) * (d * dx_b);   mins += f32(m_j * s_b) * (dmin * dx_b)
 * (isum_b the exact integer dot, s_b the block's sum of input values), then acc - mins. sm: 16 bytes of scratch.
 */
function oneQ4K(w: usize, x: usize, nsb: i32, sm: usize): f32 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  const xs = x + nb * 68;
  let acc: f32 = 0;
  let mins: f32 = 0;
  for (let sb = 0; sb < nsb; sb++) {
    const wb = w + <usize>sb * 144;
    const d = f16FiniteToF32(<u32>load<u16>(wb));
    const dmin = f16FiniteToF32(<u32>load<u16>(wb, 2));
    v128.store(sm, q4kScaleLanes(v128.load(wb, 4)));
    for (let j = 0; j < 8; j++) {
      const high = (j & 1) != 0;
      const q = wb + 16 + (<usize>(j >> 1) << 5);
      const blk = (<usize>sb << 3) + <usize>j;
      const isum = hsumI(dot32(nibblesLo(q, high), nibblesHi(q, high), x + (blk << 6)));
      const dx = load<f32>(xd + (blk << 2));
      acc += <f32>(isum * <i32>load<u8>(sm + j)) * (d * dx);
      mins += <f32>(<i32>load<u8>(sm + 8 + j) * load<i32>(xs + (blk << 2))) * (dmin * dx);
    }
  }
  return acc - mins;
}

/** Sub-block k (0..3) of half n of a Q6_K block at wb: values 0..15 (a) and 16..31 (b) as i8 lanes. */
@inline function q6Values(wb: usize, n: i32, k: i32, hA: v128, hB: v128, a: bool): v128 {
  const lq = wb + (<usize>n << 6) + (<usize>(k & 1) << 5) + (a ? 0 : 16);
  let l = v128.load(lq);
  l = k < 2 ? v128.and(l, i8x16.splat(0x0f)) : i8x16.shr_u(l, 4);
  const h = a ? hA : hB;
  return i8x16.sub(v128.or(l, i8x16.shl(v128.and(i8x16.shr_u(h, <u32>(k << 1)), i8x16.splat(3)), 4)), i8x16.splat(32));
}

/** One Q6_K row's integer sum for sub-block k of half n: sc_lo * dot(values 0..15) + sc_hi * dot(16..31), four partial lanes. */
@inline function q6Dot(wb: usize, n: i32, k: i32, xb: usize): v128 {
  const qh = wb + 128 + (<usize>n << 5);
  const hA = v128.load(qh);
  const hB = v128.load(qh, 16);
  const vA = q6Values(wb, n, k, hA, hB, true);
  const vB = q6Values(wb, n, k, hA, hB, false);
  const dA = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(vA), v128.load(xb)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(vA), v128.load(xb, 16)));
  const dB = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(vB), v128.load(xb, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(vB), v128.load(xb, 48)));
  const sc = wb + 192 + (<usize>n << 3) + (<usize>k << 1);
  return i32x4.add(i32x4.mul(dA, i32x4.splat(<i32>load<i8>(sc))), i32x4.mul(dB, i32x4.splat(<i32>load<i8>(sc, 1))));
}

/** Four Q6_K rows times one token (as quadQ4K): lane i is row i's result, computed as oneQ6K computes it. */
function quadQ6K(w: usize, rs: usize, x: usize, nsb: i32): v128 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  let acc = f32x4.splat(0);
  let w0 = w;
  let w1 = w0 + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  for (let sb = 0; sb < nsb; sb++) {
    const d = halves4(w0 + 208, w1 + 208, w2 + 208, w3 + 208);
    for (let n = 0; n < 2; n++) {
      // the four sub-blocks k of half n, written out (k a constant in each)
      {
        const blk = (<usize>sb << 3) + (<usize>n << 2) + 0;
        const xb = x + (blk << 6);
        const isum = transposeSum(q6Dot(w0, n, 0, xb), q6Dot(w1, n, 0, xb), q6Dot(w2, n, 0, xb), q6Dot(w3, n, 0, xb));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, v128.load32_splat(xd + (blk << 2)))));
      }
      {
        const blk = (<usize>sb << 3) + (<usize>n << 2) + 1;
        const xb = x + (blk << 6);
        const isum = transposeSum(q6Dot(w0, n, 1, xb), q6Dot(w1, n, 1, xb), q6Dot(w2, n, 1, xb), q6Dot(w3, n, 1, xb));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, v128.load32_splat(xd + (blk << 2)))));
      }
      {
        const blk = (<usize>sb << 3) + (<usize>n << 2) + 2;
        const xb = x + (blk << 6);
        const isum = transposeSum(q6Dot(w0, n, 2, xb), q6Dot(w1, n, 2, xb), q6Dot(w2, n, 2, xb), q6Dot(w3, n, 2, xb));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, v128.load32_splat(xd + (blk << 2)))));
      }
      {
        const blk = (<usize>sb << 3) + (<usize>n << 2) + 3;
        const xb = x + (blk << 6);
        const isum = transposeSum(q6Dot(w0, n, 3, xb), q6Dot(w1, n, 3, xb), q6Dot(w2, n, 3, xb), q6Dot(w3, n, 3, xb));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, v128.load32_splat(xd + (blk << 2)))));
      }
    }
    w0 += 210;
    w1 += 210;
    w2 += 210;
    w3 += 210;
  }
  return acc;
}

/** One Q6_K row times one token: per block b in order acc += f32(isum_b) * (d * dx_b), isum_b = sc_lo dot_lo + sc_hi dot_hi (exact). */
function oneQ6K(w: usize, x: usize, nsb: i32): f32 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  let acc: f32 = 0;
  for (let sb = 0; sb < nsb; sb++) {
    const wb = w + <usize>sb * 210;
    const d = f16FiniteToF32(<u32>load<u16>(wb, 208));
    for (let n = 0; n < 2; n++) {
      for (let k = 0; k < 4; k++) {
        const blk = (<usize>sb << 3) + (<usize>n << 2) + <usize>k;
        acc += <f32>hsumI(q6Dot(wb, n, k, x + (blk << 6))) * (d * load<f32>(xd + (blk << 2)));
      }
    }
  }
  return acc;
}

/** Superblocks per column segment of a several-token product (1024 columns: 8 KiB of widened weights for four rows). */
const KSEG: i32 = 4;

/**
 * Scratch bytes a K-quant product needs: the quantised input of nTok tokens, 64 bytes for the Q4_K
 * scales, and for several tokens the widened weights of one column segment of four rows (KSEG
 * superblocks: 8 KSEG blocks x 256 bytes), their factors (64 bytes per block) and two f32x4 per token.
 */
export function kquantScratch(nTok: i32, cols: i32): usize {
  let b = <usize>nTok * <usize>(cols >> 5) * QX_BLOCK + 64;
  if (nTok > 1) b += <usize>(KSEG << 3) * 320 + (<usize>nTok << 5);
  return (b + 63) & ~(<usize>63);
}

/**
 * Widens superblocks [sb0, sb1) of four rows (at w + i * rs) for the several-token tiles: per block
 * (32 values) and row the 32 weight integers already times their sub-block scale (Q4_K sc_j q, at most
 * 63 * 15; Q6_K sc q, at most 128 * 32: i16) at ww + block * 256 + row * 64, so an integer dot of them
 * with the input is sc * isum exactly; per block at fw + block * 64 the rows' d (f32x4), dmin (f32x4)
 * and mins m_j (i32x4).
 */
function widenQuadK(q4: bool, w: usize, rs: usize, sb0: i32, sb1: i32, ww: usize, fw: usize, sm: usize): void {
  const bytes: usize = q4 ? 144 : 210;
  for (let i = 0; i < 4; i++) {
    const row = w + <usize>i * rs;
    for (let sb = sb0; sb < sb1; sb++) {
      const wb = row + <usize>sb * bytes;
      const blk0 = <usize>(sb - sb0) << 3;
      if (q4) {
        const d = f16FiniteToF32(<u32>load<u16>(wb));
        const dmin = f16FiniteToF32(<u32>load<u16>(wb, 2));
        v128.store(sm, q4kScaleLanes(v128.load(wb, 4)));
        for (let j = 0; j < 8; j++) {
          const high = (j & 1) != 0;
          const q = wb + 16 + (<usize>(j >> 1) << 5);
          const sc = i16x8.splat(<i16>load<u8>(sm + j));
          const a = nibblesLo(q, high);
          const b = nibblesHi(q, high);
          const dst = ww + ((blk0 + <usize>j) << 8) + (<usize>i << 6);
          v128.store(dst, i16x8.mul(i16x8.extend_low_i8x16_u(a), sc));
          v128.store(dst, i16x8.mul(i16x8.extend_high_i8x16_u(a), sc), 16);
          v128.store(dst, i16x8.mul(i16x8.extend_low_i8x16_u(b), sc), 32);
          v128.store(dst, i16x8.mul(i16x8.extend_high_i8x16_u(b), sc), 48);
          const f = fw + ((blk0 + <usize>j) << 6) + (<usize>i << 2);
          store<f32>(f, d);
          store<f32>(f, dmin, 16);
          store<i32>(f, <i32>load<u8>(sm + 8 + j), 32);
        }
      } else {
        const d = f16FiniteToF32(<u32>load<u16>(wb, 208));
        for (let n = 0; n < 2; n++) {
          const qh = wb + 128 + (<usize>n << 5);
          const hA = v128.load(qh);
          const hB = v128.load(qh, 16);
          for (let k = 0; k < 4; k++) {
            const vA = q6Values(wb, n, k, hA, hB, true);
            const vB = q6Values(wb, n, k, hA, hB, false);
            const sc = wb + 192 + (<usize>n << 3) + (<usize>k << 1);
            const sLo = i16x8.splat(<i16>load<i8>(sc));
            const sHi = i16x8.splat(<i16>load<i8>(sc, 1));
            const blk = blk0 + (<usize>n << 2) + <usize>k;
            const dst = ww + (blk << 8) + (<usize>i << 6);
            v128.store(dst, i16x8.mul(i16x8.extend_low_i8x16_s(vA), sLo));
            v128.store(dst, i16x8.mul(i16x8.extend_high_i8x16_s(vA), sLo), 16);
            v128.store(dst, i16x8.mul(i16x8.extend_low_i8x16_s(vB), sHi), 32);
            v128.store(dst, i16x8.mul(i16x8.extend_high_i8x16_s(vB), sHi), 48);
            store<f32>(fw + (blk << 6) + (<usize>i << 2), d);
          }
        }
      }
    }
  }
}

/**
 * Four widened rows (widenQuadK) times one token over blocks [b0, b0 + n) of its quantised input at x
 * (nb blocks in all): the quads' arithmetic per block, the sums continued from / stored back to acc
 * (f32x4 acc, f32x4 mins; `first`: from 0).
 */
function tileK(q4: bool, ww: usize, fw: usize, x: usize, nb: i32, b0: i32, n: i32, acc: usize, first: bool): void {
  const xd = x + (<usize>nb << 6);
  const xs = x + <usize>nb * 68;
  let a = first ? f32x4.splat(0) : v128.load(acc);
  let m = first ? f32x4.splat(0) : v128.load(acc, 16);
  for (let b = 0; b < n; b++) {
    const blk = <usize>(b0 + b);
    const xb = x + (blk << 6);
    const wp = ww + (<usize>b << 8);
    const x0 = v128.load(xb);
    const x1 = v128.load(xb, 16);
    const x2 = v128.load(xb, 32);
    const x3 = v128.load(xb, 48);
    const r0 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(v128.load(wp), x0), i32x4.dot_i16x8_s(v128.load(wp, 16), x1)),
      i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 32), x2), i32x4.dot_i16x8_s(v128.load(wp, 48), x3)));
    const r1 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 64), x0), i32x4.dot_i16x8_s(v128.load(wp, 80), x1)),
      i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 96), x2), i32x4.dot_i16x8_s(v128.load(wp, 112), x3)));
    const r2 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 128), x0), i32x4.dot_i16x8_s(v128.load(wp, 144), x1)),
      i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 160), x2), i32x4.dot_i16x8_s(v128.load(wp, 176), x3)));
    const r3 = i32x4.add(i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 192), x0), i32x4.dot_i16x8_s(v128.load(wp, 208), x1)),
      i32x4.add(i32x4.dot_i16x8_s(v128.load(wp, 224), x2), i32x4.dot_i16x8_s(v128.load(wp, 240), x3)));
    const f = fw + (<usize>b << 6);
    const dx = v128.load32_splat(xd + (blk << 2));
    a = f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(transposeSum(r0, r1, r2, r3)), f32x4.mul(v128.load(f), dx)));
    if (q4) {
      m = f32x4.add(m, f32x4.mul(f32x4.convert_i32x4_s(i32x4.mul(v128.load(f, 32), v128.load32_splat(xs + (blk << 2)))), f32x4.mul(v128.load(f, 16), dx)));
    }
  }
  v128.store(acc, a);
  v128.store(acc, m, 16);
}

@inline function emitOne(y: usize, r: i32, s: f32, bias: usize, accumulate: bool): void {
  let v = s;
  if (bias) v += load<f32>(bias + (<usize>r << 2));
  const p = y + (<usize>r << 2);
  if (accumulate) v = load<f32>(p) + v;
  store<f32>(p, v);
}

/**
 * Rows [r0, r1) of y = W x for nTok tokens of the quantised input qx (quantX, one-token layout).
 * Rows go four at a time, from the four quarters of the range (four long sequential streams, as the
 * q8_0 matvec reads them), every token against the four: their blocks come from memory once and
 * from cache for the other tokens. Rows past the last group go one at a time (oneQ4K / oneQ6K, the
 * same arithmetic per row as a lane of the quads).
 */
export function matRowsKQuant(
  wt: i32, W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const q4 = wt == WT_Q4_K;
  const nsb = cols >> 8;
  const rb = <usize>nsb * (q4 ? 144 : 210);
  const ts = <usize>(cols >> 5) * QX_BLOCK;
  const sm = qx + <usize>nTok * ts;
  const ys = <usize>yStride << 2;
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  if (nTok == 1) {
    for (let i = 0; i < Q; i++) {
      const r = r0 + i;
      const v = q4 ? quadQ4K(W + <usize>r * rb, qb, qx, nsb, sm) : quadQ6K(W + <usize>r * rb, qb, qx, nsb);
      emitOne(y, r, f32x4.extract_lane(v, 0), bias, accumulate);
      emitOne(y, r + Q, f32x4.extract_lane(v, 1), bias, accumulate);
      emitOne(y, r + 2 * Q, f32x4.extract_lane(v, 2), bias, accumulate);
      emitOne(y, r + 3 * Q, f32x4.extract_lane(v, 3), bias, accumulate);
    }
  } else {
    // Per group of four rows and column segment: the rows' blocks widened once (scales folded in),
    // then every token over them from L1; the sums carry over between segments.
    const nb = cols >> 5;
    const ww = sm + 64;
    const fw = ww + (<usize>(KSEG << 3) << 8);
    const accs = fw + (<usize>(KSEG << 3) << 6);
    for (let i = 0; i < Q; i++) {
      const r = r0 + i;
      const w = W + <usize>r * rb;
      for (let sb0 = 0; sb0 < nsb; sb0 += KSEG) {
        const sb1 = min(nsb, sb0 + KSEG);
        widenQuadK(q4, w, qb, sb0, sb1, ww, fw, sm);
        for (let t = 0; t < nTok; t++) {
          tileK(q4, ww, fw, qx + <usize>t * ts, nb, sb0 << 3, (sb1 - sb0) << 3, accs + (<usize>t << 5), sb0 == 0);
        }
      }
      for (let t = 0; t < nTok; t++) {
        const at = accs + (<usize>t << 5);
        const v = f32x4.sub(v128.load(at), v128.load(at, 16));
        const yt = y + <usize>t * ys;
        emitOne(yt, r, f32x4.extract_lane(v, 0), bias, accumulate);
        emitOne(yt, r + Q, f32x4.extract_lane(v, 1), bias, accumulate);
        emitOne(yt, r + 2 * Q, f32x4.extract_lane(v, 2), bias, accumulate);
        emitOne(yt, r + 3 * Q, f32x4.extract_lane(v, 3), bias, accumulate);
      }
    }
  }
  for (let r = r0 + 4 * Q; r < r1; r++) {
    const w = W + <usize>r * rb;
    for (let t = 0; t < nTok; t++) {
      const x = qx + <usize>t * ts;
      emitOne(y + <usize>t * ys, r, q4 ? oneQ4K(w, x, nsb, sm) : oneQ6K(w, x, nsb), bias, accumulate);
    }
  }
}

/**
 * Row r of W dequantised to f32 into y[0 .. cols), bit for bit as src/formats/gguf-quant.ts
 * (ggml's dequantize_row_q4_K / _q6_K in float32: Q4_K (d * sc) * q - dmin * m, Q6_K (d * sc) * q).
 * sm: 16 bytes of scratch.
 */
export function dequantRowKQuant(wt: i32, W: usize, cols: i32, r: i32, y: usize, sm: usize): void {
  const nsb = cols >> 8;
  if (wt == WT_Q4_K) {
    const w = W + <usize>r * <usize>nsb * 144;
    for (let sb = 0; sb < nsb; sb++) {
      const wb = w + <usize>sb * 144;
      const d = f16ToF32(<u32>load<u16>(wb));
      const dmin = f16ToF32(<u32>load<u16>(wb, 2));
      q4kScales(wb + 4, sm, sm + 8);
      const yb = y + (<usize>sb << 10);
      for (let j = 0; j < 8; j++) {
        const d1 = d * <f32>load<u8>(sm + j);
        const m1 = dmin * <f32>load<u8>(sm + 8 + j);
        const q = wb + 16 + (<usize>(j >> 1) << 5);
        const sh = <u32>((j & 1) << 2);
        const yj = yb + (<usize>j << 7);
        for (let l = 0; l < 32; l++) store<f32>(yj + (<usize>l << 2), d1 * <f32>((<u32>load<u8>(q + l) >> sh) & 15) - m1);
      }
    }
  } else {
    const w = W + <usize>r * <usize>nsb * 210;
    for (let sb = 0; sb < nsb; sb++) {
      const wb = w + <usize>sb * 210;
      const d = f16ToF32(<u32>load<u16>(wb, 208));
      for (let n = 0; n < 2; n++) {
        const ql = wb + (<usize>n << 6);
        const qh = wb + 128 + (<usize>n << 5);
        const sc = wb + 192 + (<usize>n << 3);
        const yn = y + (<usize>sb << 10) + (<usize>n << 9);
        for (let k = 0; k < 4; k++) {
          const lq = ql + (<usize>(k & 1) << 5);
          const sh = <u32>((k >> 1) << 2);
          for (let l = 0; l < 32; l++) {
            const q = <i32>(((<u32>load<u8>(lq + l) >> sh) & 15) | (((<u32>load<u8>(qh + l) >> <u32>(k << 1)) & 3) << 4)) - 32;
            const s = d * <f32>load<i8>(sc + (<usize>k << 1) + (<usize>l >> 4));
            store<f32>(yn + (<usize>((k << 5) + l) << 2), s * <f32>q);
          }
        }
      }
    }
  }
}
