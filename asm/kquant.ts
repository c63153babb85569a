// ggml's K-quant weights (Q4_K, Q5_K, Q6_K) read as stored in GGUF files: 256-value superblocks.
//
//   Q4_K  144 bytes: half d | half dmin | u8 scales[12] | u8 qs[128]
//         eight sub-blocks of 32 values, each a 6-bit scale sc_j and min m_j packed in `scales`
//         (j < 4: sc = s[j] & 63, m = s[j+4] & 63; j >= 4: sc = s[j+4] & 15 | (s[j-4] >> 6) << 4,
//         m = s[j+4] >> 4 | (s[j] >> 6) << 4); sub-block j's values are the low (j even) or high
//         (j odd) nibbles q of qs[32 (j >> 1) .. + 32]: w = d * sc_j * q - dmin * m_j.
//   Q5_K  176 bytes: half d | half dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//         Q4_K's sub-blocks, scales and mins, each value's fifth bit in qh: value l of sub-block j is
//         q = nibble | ((qh[l] >> j) & 1) << 4 (0..31), w = d * sc_j * q - dmin * m_j.
//   Q6_K  210 bytes: u8 ql[128] | u8 qh[64] | i8 scales[16] | half d
//         two halves n of 128 values; in half n, value 32k + l (k 0..3, l 0..31) is
//         q = (ql[64n + 32 (k & 1) + l] nibble (k < 2 low, else high) | ((qh[32n + l] >> 2k) & 3) << 4) - 32,
//         w = d * scales[8n + 2k + (l >> 4)] * q.
//
// Products run against the input quantised per superblock of 256 values (quantXK below, as ggml's
// q8_K): per token, in ts = kquantTokenBytes(cols) bytes,
//   q i8 [nsb][256] | dx f32 [nsb] | per superblock bsum i16 [16], bsum32 i16 [8]     (nsb = cols / 256)
// dx = amax / 127, q = round-half-even(x * (1 / dx)) (|q| <= 127), bsum the sum of each 16 q's,
// bsum32 of each 32.
// Per (row, token) and superblock, in order, all integers exact (bounds below, all < 2^31):
//   Q4_K  isum = sum_j sc_j * dot_j(q4, q)   (|isum| <= 8 * 63 * 32 * 15 * 127 < 2^25; Q5_K the
//         same with q5: 8 * 63 * 32 * 31 * 127 < 2^26)
//         msum = sum_j m_j * bsum32_j                                (< 2^21)
//         acc  = acc + f32(isum) * (d * dx);  mins = mins + f32(msum) * (dmin * dx);  result acc - mins
//   Q6_K  isum = sum_k sc_k * (dot_k(u6, q) - 32 bsum_k)   (16 sub-blocks of 16, u6 = q6 + 32 in 0..63;
//         the sum of sc_k dot_k is at most 16 * 128 * 16 * 63 * 127 < 2^29)
//         acc  = acc + f32(isum) * (d * dx);  result acc
// (float32, acc and mins from 0, separate multiplies and adds: no fused multiply-add, the same bits
// in both builds; f32(isum) rounds to nearest where |isum| > 2^24, the same in every kernel.)
// The integer dots take pairs of bytes to i16 (weights 0..63 times input -127..127: a pair is at most
// 2 * 63 * 127 < 2^15): i16x8.relaxed_dot_i8x16_i7x16_s in the relaxed-SIMD build (pmaddubsw on x86,
// exact for a second operand below 128), widened i32x4.dot_i16x8_s otherwise, so both builds give
// the same integers; the sub-block scale is applied by one more i32x4.dot_i16x8_s with its splat.
// Every (row, token) goes through the same code (lanes of a four-row tile: a lone row is a tile of
// that row four times), so results do not depend on the thread split or on how many tokens share
// the product, and a token's row of a matmat equals its matvec bit for bit.
// Against the dequantised weights in f32 the result differs by the input's rounding to 8 bits (at
// most dx / 2 per value) and float rounding: the tolerance the tests derive per (row, token).
import { WT_Q4_K, WT_Q5_K, WT_Q6_K, f16FiniteToF32, f16ToF32, f16x4FiniteToF32x4 } from './common';

/** Bytes of a superblock of weight type wt (WT_Q4_K, WT_Q5_K or WT_Q6_K). */
@inline function superblockBytes(wt: i32): usize {
  return wt == WT_Q4_K ? 144 : wt == WT_Q5_K ? 176 : 210;
}

/** Q4_K and Q5_K have mins (w = d sc q - dmin m); Q6_K does not. */
@inline function hasMins(wt: i32): bool {
  return wt != WT_Q6_K;
}

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

/** Bytes of one token's quantised input (quantXK's layout), a multiple of 16. */
@inline export function kquantTokenBytes(cols: i32): usize {
  return (<usize>(cols >> 8) * 308 + 15) & ~(<usize>15);
}

/**
 * Quantises nTok rows of x (row t at x + t * xStride floats, cols a multiple of 256) into qx, token
 * t at qx + t * kquantTokenBytes(cols): per superblock of 256 values dx = amax / 127, id = dx != 0 ?
 * 1 / dx : 0, q = round-half-even(x * id), and the sums of each 16 and each 32 q's.
 */
export function quantXK(x: usize, xStride: i32, nTok: i32, cols: i32, qx: usize): void {
  const nsb = <usize>(cols >> 8);
  const ts = kquantTokenBytes(cols);
  const ones = i16x8.splat(1);
  for (let t = 0; t < nTok; t++) {
    const qt = qx + <usize>t * ts;
    for (let sb: usize = 0; sb < nsb; sb++) {
      const p = x + ((<usize>t * <usize>xStride + (sb << 8)) << 2);
      let m = f32x4.splat(0);
      for (let i: usize = 0; i < 256; i += 8) m = f32x4.max(m, f32x4.max(f32x4.abs(v128.load(p + (i << 2))), f32x4.abs(v128.load(p + (i << 2), 16))));
      const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
      const d: f32 = amax / <f32>127.0;
      const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
      const iv = f32x4.splat(id);
      for (let g: usize = 0; g < 16; g++) {
        const pg = p + (g << 6);
        const a = i16x8.narrow_i32x4_s(
          i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg), iv))),
          i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 16), iv))));
        const b = i16x8.narrow_i32x4_s(
          i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 32), iv))),
          i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 48), iv))));
        v128.store(qt + (sb << 8) + (g << 4), i8x16.narrow_i16x8_s(a, b));
        const s = i32x4.add(i32x4.dot_i16x8_s(a, ones), i32x4.dot_i16x8_s(b, ones));
        store<i16>(qt + nsb * 260 + sb * 48 + (g << 1), <i16>hsumI(s));
      }
      const bs = qt + nsb * 260 + sb * 48;
      for (let j: usize = 0; j < 8; j++) store<i16>(bs + 32 + (j << 1), load<i16>(bs + (j << 2)) + load<i16>(bs + (j << 2), 2));
      store<f32>(qt + (nsb << 8) + (sb << 2), d);
    }
  }
}

/**
 * i16x8: lane i = x[2i] w[2i] + x[2i+1] w[2i+1] for i8 lanes x (input, -127..127) and w (weights,
 * 0..63): exact in both builds.
 */
@inline function dotPairs(x: v128, w: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, w);
  return i16x8.narrow_i32x4_s(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(x), i16x8.extend_low_i8x16_u(w)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(x), i16x8.extend_high_i8x16_u(w)));
}

/** The low / high nibbles of 16 bytes as bytes. */
@inline function lowNibbles(a: v128): v128 {
  return v128.and(a, i8x16.splat(0x0f));
}
@inline function highNibbles(a: v128): v128 {
  return v128.and(i16x8.shr_u(a, 4), i8x16.splat(0x0f));
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

// A superblock of four rows unpacked for the dots (unpackQuad), SB_BYTES at u:
//   u + 256 i        row i's 256 values as bytes in order (Q4_K 0..15, Q5_K 0..31, Q6_K q + 32 in 0..63)
//   u + 1024 + 32 i  row i's scales as i16 (Q4_K/Q5_K sc_0..7 then m_0..7; Q6_K sc_0..15)
//   u + 1152         d of rows 0..3 (f32x4), u + 1168 dmin (Q4_K/Q5_K)
const SB_BYTES: usize = 1184;

/**
 * Q5_K's fifth bits of sub-blocks 2p and 2p + 1 at bit 4 of each byte (the rest 0), from hp = the qh
 * bytes shifted right by 2p as i16 lanes: bits 0 and 1 of each byte are then its bits 2p and 2p + 1
 * (what the i16 shift moves across bytes lands above them). The shift counts stay constant in a loop.
 */
@inline function fifthLo(hp: v128): v128 {
  return v128.and(i16x8.shl(hp, 4), i8x16.splat(0x10));
}
@inline function fifthHi(hp: v128): v128 {
  return v128.and(i16x8.shl(hp, 3), i8x16.splat(0x10));
}

/** One Q4_K (q5 false) or Q5_K row's superblock at wb unpacked into the layout above (row slot i). */
@inline function unpackQ4K(q5: bool, wb: usize, u: usize, i: usize): void {
  const v = u + (i << 8);
  const qs = wb + (q5 ? 48 : 16);
  for (let p: usize = 0; p < 4; p++) {
    // sub-blocks 2p (the low nibbles) and 2p + 1 (the high ones) of the same 32 bytes
    const a = v128.load(qs + (p << 5));
    const b = v128.load(qs + (p << 5), 16);
    const o = v + (p << 6);
    if (q5) {
      const h0 = i16x8.shr_u(v128.load(wb, 16), <u32>p << 1);
      const h1 = i16x8.shr_u(v128.load(wb, 32), <u32>p << 1);
      v128.store(o, v128.or(lowNibbles(a), fifthLo(h0)));
      v128.store(o, v128.or(lowNibbles(b), fifthLo(h1)), 16);
      v128.store(o, v128.or(highNibbles(a), fifthHi(h0)), 32);
      v128.store(o, v128.or(highNibbles(b), fifthHi(h1)), 48);
    } else {
      v128.store(o, lowNibbles(a));
      v128.store(o, lowNibbles(b), 16);
      v128.store(o, highNibbles(a), 32);
      v128.store(o, highNibbles(b), 48);
    }
  }
  const s = q4kScaleLanes(v128.load(wb, 4));
  v128.store(u + 1024 + (i << 5), i16x8.extend_low_i8x16_u(s));
  v128.store(u + 1024 + (i << 5), i16x8.extend_high_i8x16_u(s), 16);
  store<f32>(u + 1152 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb)));
  store<f32>(u + 1168 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb, 2)));
}

/** One Q6_K row's superblock at wb unpacked (row slot i): values q + 32, so 0..63. */
@inline function unpackQ6K(wb: usize, u: usize, i: usize): void {
  const v = u + (i << 8);
  const m = i8x16.splat(0x30);
  for (let n: usize = 0; n < 2; n++) {
    const ql = wb + (n << 6);
    const qh = wb + 128 + (n << 5);
    const o = v + (n << 7);
    for (let h: usize = 0; h < 2; h++) {
      // values 32k + 16h + (0..15) of half n, k = 0..3
      const l0 = v128.load(ql + (h << 4));
      const l1 = v128.load(ql + (h << 4), 32);
      const hb = v128.load(qh + (h << 4));
      const oh = o + (h << 4);
      v128.store(oh, v128.or(lowNibbles(l0), v128.and(i16x8.shl(hb, 4), m)));
      v128.store(oh, v128.or(lowNibbles(l1), v128.and(i16x8.shl(hb, 2), m)), 32);
      v128.store(oh, v128.or(highNibbles(l0), v128.and(hb, m)), 64);
      v128.store(oh, v128.or(highNibbles(l1), v128.and(i16x8.shr_u(hb, 2), m)), 96);
    }
  }
  const s = v128.load(wb, 192);
  v128.store(u + 1024 + (i << 5), i16x8.extend_low_i8x16_s(s));
  v128.store(u + 1024 + (i << 5), i16x8.extend_high_i8x16_s(s), 16);
  store<f32>(u + 1152 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb, 208)));
}

/** Superblock sb of four rows (at w + i * rs) unpacked to u. */
@inline function unpackQuad(wt: i32, w: usize, rs: usize, sb: usize, u: usize): void {
  const wb = w + sb * superblockBytes(wt);
  if (wt == WT_Q4_K) {
    unpackQ4K(false, wb, u, 0);
    unpackQ4K(false, wb + rs, u, 1);
    unpackQ4K(false, wb + 2 * rs, u, 2);
    unpackQ4K(false, wb + 3 * rs, u, 3);
  } else if (wt == WT_Q5_K) {
    unpackQ4K(true, wb, u, 0);
    unpackQ4K(true, wb + rs, u, 1);
    unpackQ4K(true, wb + 2 * rs, u, 2);
    unpackQ4K(true, wb + 3 * rs, u, 3);
  } else {
    unpackQ6K(wb, u, 0);
    unpackQ6K(wb + rs, u, 1);
    unpackQ6K(wb + 2 * rs, u, 2);
    unpackQ6K(wb + 3 * rs, u, 3);
  }
}

/** Row i's (slot at v, scales at s) contribution for the 32 input values x0, x1 at value offset o with scale lane j. */
@inline function subDot32(v: usize, s: usize, o: usize, j: usize, x0: v128, x1: v128): v128 {
  const p = i16x8.add(dotPairs(x0, v128.load(v + o)), dotPairs(x1, v128.load(v + o, 16)));
  return i32x4.dot_i16x8_s(p, v128.load16_splat(s + (j << 1)));
}

/** Q6_K: 16 values x0 at value offset o, scale lane j. */
@inline function subDot16(v: usize, s: usize, o: usize, j: usize, x0: v128): v128 {
  return i32x4.dot_i16x8_s(dotPairs(x0, v128.load(v + o)), v128.load16_splat(s + (j << 1)));
}

/**
 * An unpacked superblock of four rows at u times one token's superblock (values xq, scale dx, sums
 * bs): the float steps of the header on acc (f32x4 at accp) and mins (at accp + 16), lanes = rows.
 */
@inline function quadSb(mins: bool, u: usize, xq: usize, dx: f32, bs: usize, accp: usize): void {
  const s = u + 1024;
  let a0 = i32x4.splat(0);
  let a1 = i32x4.splat(0);
  let a2 = i32x4.splat(0);
  let a3 = i32x4.splat(0);
  if (mins) {
    for (let j: usize = 0; j < 8; j++) {
      const o = j << 5;
      const x0 = v128.load(xq + o);
      const x1 = v128.load(xq + o, 16);
      a0 = i32x4.add(a0, subDot32(u, s, o, j, x0, x1));
      a1 = i32x4.add(a1, subDot32(u + 256, s + 32, o, j, x0, x1));
      a2 = i32x4.add(a2, subDot32(u + 512, s + 64, o, j, x0, x1));
      a3 = i32x4.add(a3, subDot32(u + 768, s + 96, o, j, x0, x1));
    }
  } else {
    for (let j: usize = 0; j < 16; j++) {
      const o = j << 4;
      const x0 = v128.load(xq + o);
      a0 = i32x4.add(a0, subDot16(u, s, o, j, x0));
      a1 = i32x4.add(a1, subDot16(u + 256, s + 32, o, j, x0));
      a2 = i32x4.add(a2, subDot16(u + 512, s + 64, o, j, x0));
      a3 = i32x4.add(a3, subDot16(u + 768, s + 96, o, j, x0));
    }
  }
  finishSb(mins, s, a0, a1, a2, a3, bs, dx, v128.load(u, 1152), v128.load(u, 1168), accp);
}

/** The float steps of a superblock (see the header) on the sums at accp (acc f32x4, mins at + 16). */
@inline function finishSb(mins: bool, s: usize, a0: v128, a1: v128, a2: v128, a3: v128, bs: usize, dx: f32, d: v128, dmin: v128, accp: usize): void {
  const b0 = v128.load(bs);
  const b1 = v128.load(bs, 16);
  const dxv = f32x4.splat(dx);
  let acc = v128.load(accp);
  if (mins) {
    // sum_j m_j bsum32_j: the mins (lanes 8..15 of the scales) times the 32-sums
    const b32 = v128.load(bs, 32);
    const msum = transposeSum(
      i32x4.dot_i16x8_s(v128.load(s, 16), b32), i32x4.dot_i16x8_s(v128.load(s, 48), b32),
      i32x4.dot_i16x8_s(v128.load(s, 80), b32), i32x4.dot_i16x8_s(v128.load(s, 112), b32));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(transposeSum(a0, a1, a2, a3)), f32x4.mul(d, dxv)));
    v128.store(accp, f32x4.add(v128.load(accp, 16), f32x4.mul(f32x4.convert_i32x4_s(msum), f32x4.mul(dmin, dxv))), 16);
  } else {
    // minus 32 sum_k sc_k bsum_k (the values were taken as q + 32)
    const c0 = i32x4.sub(a0, i32x4.shl(scaledSums(s, b0, b1), 5));
    const c1 = i32x4.sub(a1, i32x4.shl(scaledSums(s + 32, b0, b1), 5));
    const c2 = i32x4.sub(a2, i32x4.shl(scaledSums(s + 64, b0, b1), 5));
    const c3 = i32x4.sub(a3, i32x4.shl(scaledSums(s + 96, b0, b1), 5));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(transposeSum(c0, c1, c2, c3)), f32x4.mul(d, dxv)));
  }
  v128.store(accp, acc);
}

/** Q6_K: sum_k sc_k bsum_k as four partial lanes. */
@inline function scaledSums(s: usize, b0: v128, b1: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(v128.load(s), b0), i32x4.dot_i16x8_s(v128.load(s, 16), b1));
}

/** The f16 at p0..p3 (one per row) as f32 lanes, as f16FiniteToF32 of each. */
@inline function halves4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = v128.load16_lane(p0, i32x4.splat(0), 0);
  h = v128.load16_lane(p1, h, 2);
  h = v128.load16_lane(p2, h, 4);
  h = v128.load16_lane(p3, h, 6);
  return f16x4FiniteToF32x4(i32x4.shr_s(i32x4.shl(h, 16), 16));
}

/** Q4_K, one row's part of sub-blocks 2p and 2p + 1 read straight from the block at wb (scales at s, i16). */
@inline function rowQ4(wb: usize, p: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const a = v128.load(wb + 16 + (p << 5));
  const b = v128.load(wb + 16 + (p << 5), 16);
  const lo = i16x8.add(dotPairs(x0, lowNibbles(a)), dotPairs(x1, lowNibbles(b)));
  const hi = i16x8.add(dotPairs(x2, highNibbles(a)), dotPairs(x3, highNibbles(b)));
  return i32x4.add(i32x4.dot_i16x8_s(lo, v128.load16_splat(s + (p << 2))), i32x4.dot_i16x8_s(hi, v128.load16_splat(s + (p << 2) + 2)));
}

/** Q5_K, rowQ4 with each value's fifth bit from qh (the block at wb; sh = 2p). */
@inline function rowQ5(wb: usize, p: usize, sh: u32, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const a = v128.load(wb + 48 + (p << 5));
  const b = v128.load(wb + 48 + (p << 5), 16);
  const h0 = i16x8.shr_u(v128.load(wb, 16), sh);
  const h1 = i16x8.shr_u(v128.load(wb, 32), sh);
  const lo = i16x8.add(dotPairs(x0, v128.or(lowNibbles(a), fifthLo(h0))), dotPairs(x1, v128.or(lowNibbles(b), fifthLo(h1))));
  const hi = i16x8.add(dotPairs(x2, v128.or(highNibbles(a), fifthHi(h0))), dotPairs(x3, v128.or(highNibbles(b), fifthHi(h1))));
  return i32x4.add(i32x4.dot_i16x8_s(lo, v128.load16_splat(s + (p << 2))), i32x4.dot_i16x8_s(hi, v128.load16_splat(s + (p << 2) + 2)));
}

/** Q6_K, one row's part of values 32k + 16h + (0..15), k = 0..3, of half n read straight from the block at wb (scales at s, i16). */
@inline function rowQ6(wb: usize, n: usize, h: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const m = i8x16.splat(0x30);
  const l0 = v128.load(wb + (n << 6) + (h << 4));
  const l1 = v128.load(wb + (n << 6) + (h << 4), 32);
  const hb = v128.load(wb + 128 + (n << 5) + (h << 4));
  const sc = s + (((n << 3) + h) << 1);
  const k0 = i32x4.dot_i16x8_s(dotPairs(x0, v128.or(lowNibbles(l0), v128.and(i16x8.shl(hb, 4), m))), v128.load16_splat(sc));
  const k1 = i32x4.dot_i16x8_s(dotPairs(x1, v128.or(lowNibbles(l1), v128.and(i16x8.shl(hb, 2), m))), v128.load16_splat(sc + 4));
  const k2 = i32x4.dot_i16x8_s(dotPairs(x2, v128.or(highNibbles(l0), v128.and(hb, m))), v128.load16_splat(sc + 8));
  const k3 = i32x4.dot_i16x8_s(dotPairs(x3, v128.or(highNibbles(l1), v128.and(i16x8.shr_u(hb, 2), m))), v128.load16_splat(sc + 12));
  return i32x4.add(i32x4.add(k0, k1), i32x4.add(k2, k3));
}

/**
 * Four rows (at w + i * rs) times one token at x, the blocks read straight from the weights (no
 * unpacking pass): the same integers and float steps as quadK. Leaves acc - mins at accp. sm: 128
 * bytes for the rows' scales as i16 (the layout of the unpacked superblock's).
 */
function quadOneK(wt: i32, w: usize, rs: usize, x: usize, nsb: i32, sm: usize, accp: usize): void {
  const nsbU = <usize>nsb;
  const bytes = superblockBytes(wt);
  const mins = hasMins(wt);
  v128.store(accp, i32x4.splat(0));
  v128.store(accp, i32x4.splat(0), 16);
  let w0 = w;
  let w1 = w + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  for (let sb: usize = 0; sb < nsbU; sb++) {
    const xq = x + (sb << 8);
    let a0 = i32x4.splat(0);
    let a1 = i32x4.splat(0);
    let a2 = i32x4.splat(0);
    let a3 = i32x4.splat(0);
    let d: v128;
    let dmin = i32x4.splat(0);
    if (mins) {
      const s0 = q4kScaleLanes(v128.load(w0, 4));
      const s1 = q4kScaleLanes(v128.load(w1, 4));
      const s2 = q4kScaleLanes(v128.load(w2, 4));
      const s3 = q4kScaleLanes(v128.load(w3, 4));
      v128.store(sm, i16x8.extend_low_i8x16_u(s0));
      v128.store(sm, i16x8.extend_high_i8x16_u(s0), 16);
      v128.store(sm, i16x8.extend_low_i8x16_u(s1), 32);
      v128.store(sm, i16x8.extend_high_i8x16_u(s1), 48);
      v128.store(sm, i16x8.extend_low_i8x16_u(s2), 64);
      v128.store(sm, i16x8.extend_high_i8x16_u(s2), 80);
      v128.store(sm, i16x8.extend_low_i8x16_u(s3), 96);
      v128.store(sm, i16x8.extend_high_i8x16_u(s3), 112);
      for (let p: usize = 0; p < 4; p++) {
        const xp = xq + (p << 6);
        const x0 = v128.load(xp);
        const x1 = v128.load(xp, 16);
        const x2 = v128.load(xp, 32);
        const x3 = v128.load(xp, 48);
        if (wt == WT_Q4_K) {
          a0 = i32x4.add(a0, rowQ4(w0, p, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ4(w1, p, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ4(w2, p, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ4(w3, p, sm + 96, x0, x1, x2, x3));
        } else {
          const sh = <u32>p << 1;
          a0 = i32x4.add(a0, rowQ5(w0, p, sh, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ5(w1, p, sh, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ5(w2, p, sh, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ5(w3, p, sh, sm + 96, x0, x1, x2, x3));
        }
      }
      d = halves4(w0, w1, w2, w3);
      dmin = halves4(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
    } else {
      const t0 = v128.load(w0, 192);
      const t1 = v128.load(w1, 192);
      const t2 = v128.load(w2, 192);
      const t3 = v128.load(w3, 192);
      v128.store(sm, i16x8.extend_low_i8x16_s(t0));
      v128.store(sm, i16x8.extend_high_i8x16_s(t0), 16);
      v128.store(sm, i16x8.extend_low_i8x16_s(t1), 32);
      v128.store(sm, i16x8.extend_high_i8x16_s(t1), 48);
      v128.store(sm, i16x8.extend_low_i8x16_s(t2), 64);
      v128.store(sm, i16x8.extend_high_i8x16_s(t2), 80);
      v128.store(sm, i16x8.extend_low_i8x16_s(t3), 96);
      v128.store(sm, i16x8.extend_high_i8x16_s(t3), 112);
      for (let n: usize = 0; n < 2; n++) {
        for (let h: usize = 0; h < 2; h++) {
          const xp = xq + (n << 7) + (h << 4);
          const x0 = v128.load(xp);
          const x1 = v128.load(xp, 32);
          const x2 = v128.load(xp, 64);
          const x3 = v128.load(xp, 96);
          a0 = i32x4.add(a0, rowQ6(w0, n, h, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ6(w1, n, h, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ6(w2, n, h, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ6(w3, n, h, sm + 96, x0, x1, x2, x3));
        }
      }
      d = halves4(w0 + 208, w1 + 208, w2 + 208, w3 + 208);
    }
    finishSb(mins, sm, a0, a1, a2, a3, x + nsbU * 260 + sb * 48, load<f32>(x + (nsbU << 8) + (sb << 2)), d, dmin, accp);
    w0 += bytes;
    w1 += bytes;
    w2 += bytes;
    w3 += bytes;
  }
  v128.store(accp, f32x4.sub(v128.load(accp), v128.load(accp, 16)));
}

/** Superblocks unpacked per pass of a several-token product (they stay in L1 while every token reads them). */
const KSEG: i32 = 4;

/**
 * Scratch bytes a K-quant product needs: the quantised input of nTok tokens (quantXK), then the
 * unpacked superblocks of one pass (KSEG of four rows) and two f32x4 sums per token.
 */
export function kquantScratch(nTok: i32, cols: i32): usize {
  const b = <usize>nTok * kquantTokenBytes(cols) + <usize>KSEG * SB_BYTES + (<usize>nTok << 5) + 64;
  return (b + 63) & ~(<usize>63);
}

@inline function emitOne(y: usize, r: i32, s: f32, bias: usize, accumulate: bool): void {
  let v = s;
  if (bias) v += load<f32>(bias + (<usize>r << 2));
  const p = y + (<usize>r << 2);
  if (accumulate) v = load<f32>(p) + v;
  store<f32>(p, v);
}

/**
 * Four rows (at w + i * rs; rs = 0 repeats one row) times nTok tokens of qx: per pass of KSEG
 * superblocks the rows are unpacked once and every token runs over them from L1, its sums carried
 * between passes at accs + 32 t. Leaves (acc - mins) of token t at accs + 32 t.
 */
function quadK(wt: i32, w: usize, rs: usize, qx: usize, ts: usize, nsb: i32, nTok: i32, u: usize, accs: usize): void {
  const mins = hasMins(wt);
  for (let t = 0; t < nTok; t++) {
    v128.store(accs + (<usize>t << 5), i32x4.splat(0));
    v128.store(accs + (<usize>t << 5), i32x4.splat(0), 16);
  }
  const nsbU = <usize>nsb;
  for (let sb0 = 0; sb0 < nsb; sb0 += KSEG) {
    const sb1 = min(nsb, sb0 + KSEG);
    for (let sb = sb0; sb < sb1; sb++) unpackQuad(wt, w, rs, <usize>sb, u + <usize>(sb - sb0) * SB_BYTES);
    for (let t = 0; t < nTok; t++) {
      const xt = qx + <usize>t * ts;
      const accp = accs + (<usize>t << 5);
      for (let sb = sb0; sb < sb1; sb++) {
        const s = <usize>sb;
        quadSb(mins, u + <usize>(sb - sb0) * SB_BYTES, xt + (s << 8), load<f32>(xt + (nsbU << 8) + (s << 2)), xt + nsbU * 260 + s * 48, accp);
      }
    }
  }
  for (let t = 0; t < nTok; t++) {
    const at = accs + (<usize>t << 5);
    v128.store(at, f32x4.sub(v128.load(at), v128.load(at, 16)));
  }
}

/** quadK, or for one token quadOneK (scratch for the scales at u). */
@inline function quadRows(wt: i32, w: usize, rs: usize, qx: usize, ts: usize, nsb: i32, nTok: i32, u: usize, accs: usize): void {
  if (nTok == 1) quadOneK(wt, w, rs, qx, nsb, u, accs);
  else quadK(wt, w, rs, qx, ts, nsb, nTok, u, accs);
}

/**
 * Rows [r0, r1) of y = W x for nTok tokens of the quantised input qx (quantXK). Rows go four at a
 * time from the four quarters of the range (four long sequential streams, as the q8_0 matvec reads
 * them); rows past the last group go one at a time as a tile of that row repeated.
 */
export function matRowsKQuant(
  wt: i32, W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const nsb = cols >> 8;
  const rb = <usize>nsb * superblockBytes(wt);
  const ts = kquantTokenBytes(cols);
  const u = (qx + <usize>nTok * ts + 63) & ~(<usize>63);
  const accs = u + <usize>KSEG * SB_BYTES;
  const ys = <usize>yStride << 2;
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  for (let i = 0; i < Q; i++) {
    const r = r0 + i;
    quadRows(wt, W + <usize>r * rb, qb, qx, ts, nsb, nTok, u, accs);
    for (let t = 0; t < nTok; t++) {
      const v = v128.load(accs + (<usize>t << 5));
      const yt = y + <usize>t * ys;
      emitOne(yt, r, f32x4.extract_lane(v, 0), bias, accumulate);
      emitOne(yt, r + Q, f32x4.extract_lane(v, 1), bias, accumulate);
      emitOne(yt, r + 2 * Q, f32x4.extract_lane(v, 2), bias, accumulate);
      emitOne(yt, r + 3 * Q, f32x4.extract_lane(v, 3), bias, accumulate);
    }
  }
  for (let r = r0 + 4 * Q; r < r1; r++) {
    quadRows(wt, W + <usize>r * rb, 0, qx, ts, nsb, nTok, u, accs);
    for (let t = 0; t < nTok; t++) emitOne(y + <usize>t * ys, r, load<f32>(accs + (<usize>t << 5)), bias, accumulate);
  }
}

/**
 * Row r of W dequantised to f32 into y[0 .. cols), bit for bit as src/formats/gguf-quant.ts
 * (ggml's dequantize_row_q4_K / _q5_K / _q6_K in float32: Q4_K and Q5_K (d * sc) * q - dmin * m,
 * Q6_K (d * sc) * q).
 * sm: 16 bytes of scratch.
 */
export function dequantRowKQuant(wt: i32, W: usize, cols: i32, r: i32, y: usize, sm: usize): void {
  const nsb = cols >> 8;
  if (wt == WT_Q4_K || wt == WT_Q5_K) {
    const bytes = superblockBytes(wt);
    const q5 = wt == WT_Q5_K;
    const w = W + <usize>r * <usize>nsb * bytes;
    for (let sb = 0; sb < nsb; sb++) {
      const wb = w + <usize>sb * bytes;
      const d = f16ToF32(<u32>load<u16>(wb));
      const dmin = f16ToF32(<u32>load<u16>(wb, 2));
      q4kScales(wb + 4, sm, sm + 8);
      const yb = y + (<usize>sb << 10);
      for (let j = 0; j < 8; j++) {
        const d1 = d * <f32>load<u8>(sm + j);
        const m1 = dmin * <f32>load<u8>(sm + 8 + j);
        const q = wb + (q5 ? 48 : 16) + (<usize>(j >> 1) << 5);
        const sh = <u32>((j & 1) << 2);
        const yj = yb + (<usize>j << 7);
        for (let l = 0; l < 32; l++) {
          const fifth = q5 ? ((<u32>load<u8>(wb + 16 + l) >> <u32>j) & 1) << 4 : 0;
          store<f32>(yj + (<usize>l << 2), d1 * <f32>(((<u32>load<u8>(q + l) >> sh) & 15) | fifth) - m1);
        }
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
