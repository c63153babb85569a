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
// per block). Per (row, token) the arithmetic is, for each 32-block b of the row in order:
//   Q4_K  isum = sc_j * (exact integer dot of the nibbles with q_b), four partial lanes (i32x4)
//         acc  = acc + f32(isum) * (d * dx_b)                      (f32x4: lanes kept apart)
//         mins = mins + f32(m_j * s_b) * (dmin * dx_b)             (one f32)
//         result = hsum(acc) - mins
//   Q6_K  isum = sc_lo * (integer dot of values 0..15) + sc_hi * (values 16..31), four lanes
//         acc  = acc + f32(isum) * (d * dx_b);   result = hsum(acc)
// Integers are exact (|lane| < 2^24, so their conversion is too); the float operations are separate
// multiplies and adds (no fused multiply-add), the same bits in both builds. Every kernel below
// computes each (row, token) by that one function, so results do not depend on the thread split or
// on how many tokens share the product, and a token's row of a matmat equals its matvec bit for bit.
// Against the dequantised weights in f32 the result differs by the input's rounding to 8 bits (at
// most dx_b / 2 per value) and float rounding: the tolerance the tests derive per (row, token).
import { WT_Q4_K, f16FiniteToF32, f16ToF32 } from './common';

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

/** Integer dot (four partial lanes) of 32 values as 16 bytes of i8 pairs a (values 0..15) and b (16..31) with the input block at xb. */
@inline function dot32(a: v128, b: v128, xb: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), v128.load(xb)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), v128.load(xb, 16))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(b), v128.load(xb, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(b), v128.load(xb, 48))),
  );
}

/** One (row, token) Q4_K dot product: the row's nsb superblocks at w, the token's quantised input at x (nb = 8 nsb blocks); sm: 16 bytes of scratch. */
function dotQ4K(w: usize, x: usize, nsb: i32, sm: usize): f32 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  const xs = x + nb * 68;
  const lo4 = i8x16.splat(0x0f);
  let acc = f32x4.splat(0);
  let mins: f32 = 0;
  for (let sb = 0; sb < nsb; sb++) {
    const wb = w + <usize>sb * 144;
    const d = f16FiniteToF32(<u32>load<u16>(wb));
    const dmin = f16FiniteToF32(<u32>load<u16>(wb, 2));
    q4kScales(wb + 4, sm, sm + 8);
    for (let p = 0; p < 4; p++) {
      const q = wb + 16 + (<usize>p << 5);
      const a = v128.load(q);
      const b = v128.load(q, 16);
      for (let h = 0; h < 2; h++) {
        const j = (p << 1) + h;
        const blk = (<usize>sb << 3) + <usize>j;
        const na = h == 0 ? v128.and(a, lo4) : i8x16.shr_u(a, 4);
        const nbv = h == 0 ? v128.and(b, lo4) : i8x16.shr_u(b, 4);
        const isum = i32x4.mul(dot32(na, nbv, x + (blk << 6)), i32x4.splat(<i32>load<u8>(sm + j)));
        const dx = load<f32>(xd + (blk << 2));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(d * dx)));
        mins += <f32>(<i32>load<u8>(sm + 8 + j) * load<i32>(xs + (blk << 2))) * (dmin * dx);
      }
    }
  }
  return hsumF(acc) - mins;
}

/** One (row, token) Q6_K dot product (arguments as dotQ4K's, no scratch). */
function dotQ6K(w: usize, x: usize, nsb: i32): f32 {
  const nb = <usize>nsb << 3;
  const xd = x + (nb << 6);
  const lo4 = i8x16.splat(0x0f);
  const three = i8x16.splat(3);
  const off = i8x16.splat(32);
  let acc = f32x4.splat(0);
  for (let sb = 0; sb < nsb; sb++) {
    const wb = w + <usize>sb * 210;
    const d = f16FiniteToF32(<u32>load<u16>(wb, 208));
    for (let n = 0; n < 2; n++) {
      const ql = wb + (<usize>n << 6);
      const qh = wb + 128 + (<usize>n << 5);
      const sc = wb + 192 + (<usize>n << 3);
      const hA = v128.load(qh);
      const hB = v128.load(qh, 16);
      for (let k = 0; k < 4; k++) {
        const lq = ql + (<usize>(k & 1) << 5);
        let lA = v128.load(lq);
        let lB = v128.load(lq, 16);
        if (k < 2) {
          lA = v128.and(lA, lo4);
          lB = v128.and(lB, lo4);
        } else {
          lA = i8x16.shr_u(lA, 4);
          lB = i8x16.shr_u(lB, 4);
        }
        const s = <u32>(k << 1);
        const vA = i8x16.sub(v128.or(lA, i8x16.shl(v128.and(i8x16.shr_u(hA, s), three), 4)), off);
        const vB = i8x16.sub(v128.or(lB, i8x16.shl(v128.and(i8x16.shr_u(hB, s), three), 4)), off);
        const blk = (<usize>sb << 3) + (<usize>n << 2) + <usize>k;
        const xb = x + (blk << 6);
        const dA = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(vA), v128.load(xb)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(vA), v128.load(xb, 16)));
        const dB = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(vB), v128.load(xb, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(vB), v128.load(xb, 48)));
        const isum = i32x4.add(
          i32x4.mul(dA, i32x4.splat(<i32>load<i8>(sc + (<usize>k << 1)))),
          i32x4.mul(dB, i32x4.splat(<i32>load<i8>(sc + (<usize>k << 1) + 1))),
        );
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(d * load<f32>(xd + (blk << 2)))));
      }
    }
  }
  return hsumF(acc);
}

/** Lane sum in a fixed order: (l0 + l1) + (l2 + l3). */
@inline function hsumF(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Scratch bytes a K-quant product needs: the quantised input of nTok tokens, then 16 bytes for the Q4_K scales. */
export function kquantScratch(nTok: i32, cols: i32): usize {
  return ((<usize>nTok * <usize>(cols >> 5) * QX_BLOCK + 16 + 63) & ~(<usize>63));
}

/**
 * Rows [r0, r1) of y = W x for nTok tokens of the quantised input qx (quantX, one-token layout).
 * Row by row, every token against the row: the row (at most a few KiB) comes from memory once and
 * from L1 for the other tokens.
 */
export function matRowsKQuant(
  wt: i32, W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const nsb = cols >> 8;
  const rb = <usize>nsb * (wt == WT_Q4_K ? 144 : 210);
  const ts = <usize>(cols >> 5) * QX_BLOCK;
  const sm = qx + <usize>nTok * ts;
  const ys = <usize>yStride << 2;
  for (let r = r0; r < r1; r++) {
    const w = W + <usize>r * rb;
    let b: f32 = 0;
    if (bias) b = load<f32>(bias + (<usize>r << 2));
    for (let t = 0; t < nTok; t++) {
      let v = wt == WT_Q4_K ? dotQ4K(w, qx + <usize>t * ts, nsb, sm) : dotQ6K(w, qx + <usize>t * ts, nsb);
      if (bias) v += b;
      const p = y + <usize>t * ys + (<usize>r << 2);
      if (accumulate) v = load<f32>(p) + v;
      store<f32>(p, v);
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
