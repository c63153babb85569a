// ggml's K-quant weights (Q4_K, Q5_K, Q6_K) at their GGUF size: 256-value superblocks, as the file
// stores them and as the kernels hold them.
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
// Held layouts (repackKQuantRange, once at load; the same bytes per superblock, d, dmin and scales in
// place, only the code bytes re-laid; then the row groups below). Each 64-value chunk c (values 64c ..; for Q4_K/Q5_K
// sub-blocks 2c and 2c + 1) is taken in an interleaved order: position p holds chunk value
// 32 ((p >> 1) & 1) + 2 (p >> 2) + (p & 1), so byte pairs alternate between the chunk's two halves, and
// a pair dot (i16 lanes) yields sums of sub-blocks 2c and 2c + 1 (Q6_K: groups 4c, 4c + 2 or 4c + 1,
// 4c + 3) in alternate lanes: one i32x4.dot_i16x8_s with the pair of scales applies both. The chunk's
// four code vectors v0..v3 (positions 16k ..) are held as
//   Q4_K  qs[32c ..]: v0 | v1 << 4 (16 bytes), then v2 | v3 << 4
//   Q5_K  the 160 bytes from qh on as two pairs of chunks (2P, 2P + 1) of 80 bytes, c0 .. c4 (16
//         each): ck's low five bits are code vector k of chunk 2P (c4: vector 0 of chunk 2P + 1), and
//         their top three bits hold chunk 2P + 1's vectors w1 .. w3: w1 = c0 >> 5 | (c1 >> 5 & 3) << 3,
//         w2 = c2 >> 5 | (c3 >> 5 & 3) << 3, w3 = c4 >> 5 | (c1 >> 7) << 3 | (c3 >> 7) << 4
//   Q6_K  48 bytes at 48c: b0 | b1 | b2, bk's low six bits vk (codes q + 32, 0..63), their top two
//         bits v3's bits 0-1 (b0), 2-3 (b1), 4-5 (b2)
// so a code vector costs one mask, or a shift and a mask (Q4_K's high nibbles), or a few of those and
// ors (Q5_K's w1 .. w3, Q6_K's v3), and each chunk's scaling is one or two multiply-adds where the
// file's layout takes four.
//
// Row groups (Q4_K, Q5_K; repackKQuantGroups): every full group of four rows 4g .. 4g + 3 is held
// superblock by superblock in its rows' bytes (the last rows % 4 rows stay row by row, as above): the
// group's superblock s, 4 * bytes at the group's start + 4 s bytes, is
//   half d[4] | half dmin[4] | u8 N0[16] | u8 N1[16] | u8 C[16] | row 0's code bytes | .. row 3's
// (the code bytes as held above: 128 Q4_K, 160 Q5_K), where, with the rows' 6-bit scales and mins as
// four 16-byte vectors O0 = sc_0..7 of rows 0 and 1, O1 = sc of rows 2 and 3, O2 = m of rows 0 and
// 1, O3 = m of rows 2 and 3,
//   N0 = O0 & 15 | (O1 & 15) << 4,  N1 = O2 & 15 | (O3 & 15) << 4,
//   C  = O0 >> 4 | (O1 >> 4) << 2 | (O2 >> 4) << 4 | (O3 >> 4) << 6
// so the four rows' scales and mins come out of three loads in 17 vector operations (one row's
// file packing takes 11, q4kScaleLanes), and their d and dmin out of one load and 8 operations (18
// from four rows' blocks): about 36 operations fewer per superblock of four rows, a tenth of a
// one-token product's.
//
// Products run against the input quantised per superblock of 256 values (quantXK below, as ggml's
// q8_K): per token, in ts = kquantTokenBytes(cols) bytes,
//   q i8 [nsb][256] | dx f32 [nsb] | per superblock bsum i16 [16], bsum32 i16 [8]     (nsb = cols / 256)
// dx = amax / 127, q = round-half-even(x * (1 / dx)) (|q| <= 127) in each chunk's interleaved order,
// bsum the sum of each 16 q's (per chunk in the order 4c, 4c + 2, 4c + 1, 4c + 3, as the Q6_K scales
// are paired), bsum32 of each 32.
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
// the same integers. A chunk's pair dots are summed in i16 before scaling: Q4_K four of them
// (4 * 2 * 15 * 127 < 2^15), Q5_K four (4 * 2 * 31 * 127 = 31496), Q6_K two (2 * 2 * 63 * 127 = 32004);
// the scales are applied by one i32x4.dot_i16x8_s with the pair of scales splat.
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

/** Q4_K and Q5_K hold full groups of four rows interleaved (see the header); Q6_K row by row. */
@inline function grouped(wt: i32): bool {
  return wt != WT_Q6_K;
}

/** Bytes of a group superblock's header (d, dmin, N0, N1, C), before its four rows' code bytes. */
const GROUP_HEAD: usize = 64;

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

/** Row i's scales (bytes 0..7 of sc) and mins (of mn) from its group superblock's header at gb (see the header). */
function groupRowScales(gb: usize, i: usize, sc: usize, mn: usize): void {
  const half = <u32>(i >> 1); // O0 / O2 (rows 0, 1) or O1 / O3 (rows 2, 3)
  for (let j: usize = 0; j < 8; j++) {
    const p = ((i & 1) << 3) + j;
    const c = <u32>load<u8>(gb + 48 + p);
    store<u8>(sc + j, ((<u32>load<u8>(gb + 16 + p) >> (half << 2)) & 15) | (((c >> (half << 1)) & 3) << 4));
    store<u8>(mn + j, ((<u32>load<u8>(gb + 32 + p) >> (half << 2)) & 15) | (((c >> (4 + (half << 1))) & 3) << 4));
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

// The interleaved order of a 64-value chunk (see the header): from its four vectors of 16 values in
// order, v0..v3, the vectors at chunk positions 0..15, 16..31, 32..47, 48..63 of the interleaved order.
@inline function interleave0(v0: v128, v2: v128): v128 {
  return i8x16.shuffle(v0, v2, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
}
@inline function interleave1(v0: v128, v2: v128): v128 {
  return i8x16.shuffle(v0, v2, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}

/** Value (0..63) of a chunk at position p of its interleaved order. */
@inline function chunkValue(p: i32): i32 {
  return ((p & 2) << 4) | ((p >> 2) << 1) | (p & 1);
}

/**
 * Quantises nTok rows of x (row t at x + t * xStride floats, cols a multiple of 256) into qx, token
 * t at qx + t * kquantTokenBytes(cols): per superblock of 256 values dx = amax / 127, id = dx != 0 ?
 * 1 / dx : 0, q = round-half-even(x * id) in the interleaved order, the sums of each 16 q's (groups
 * 4c + 1 and 4c + 2 swapped) and of each 32.
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
      const bs = qt + nsb * 260 + sb * 48;
      for (let c: usize = 0; c < 4; c++) {
        // the chunk's four groups of 16 in order, then stored interleaved
        const g0 = quantGroup(p + (c << 8), iv, ones, bs + (c << 3));
        const g1 = quantGroup(p + (c << 8) + 64, iv, ones, bs + (c << 3) + 4);
        const g2 = quantGroup(p + (c << 8) + 128, iv, ones, bs + (c << 3) + 2);
        const g3 = quantGroup(p + (c << 8) + 192, iv, ones, bs + (c << 3) + 6);
        const o = qt + (sb << 8) + (c << 6);
        v128.store(o, interleave0(g0, g2));
        v128.store(o, interleave1(g0, g2), 16);
        v128.store(o, interleave0(g1, g3), 32);
        v128.store(o, interleave1(g1, g3), 48);
        // 32-sums of sub-blocks 2c (groups 4c, 4c + 1) and 2c + 1 (4c + 2, 4c + 3)
        store<i16>(bs + 32 + (c << 2), load<i16>(bs + (c << 3)) + load<i16>(bs + (c << 3), 4));
        store<i16>(bs + 34 + (c << 2), load<i16>(bs + (c << 3), 2) + load<i16>(bs + (c << 3), 6));
      }
      store<f32>(qt + (nsb << 8) + (sb << 2), d);
    }
  }
}

/** 16 floats at pg quantised with inverse scale iv (i8 lanes); their sum stored (i16) at sum. */
@inline function quantGroup(pg: usize, iv: v128, ones: v128, sum: usize): v128 {
  const a = i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg), iv))),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 16), iv))));
  const b = i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 32), iv))),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(pg, 48), iv))));
  store<i16>(sum, <i16>hsumI(i32x4.add(i32x4.dot_i16x8_s(a, ones), i32x4.dot_i16x8_s(b, ones))));
  return i8x16.narrow_i16x8_s(a, b);
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

// ---- the held layouts: from the code vectors of a chunk (interleaved order) -------------------

/** Held Q6_K: code vectors 0..2 of a chunk's b0, b1, b2 (their low six bits). */
@inline function q6Code012(b: v128): v128 {
  return v128.and(b, i8x16.splat(0x3f));
}
/** Held Q6_K: code vector 3 of a chunk from the top two bits of b0 (its bits 0-1), b1 (2-3), b2 (4-5). */
@inline function q6Code3(b0: v128, b1: v128, b2: v128): v128 {
  // i16 shifts: what moves across a byte boundary is masked off
  return v128.or(
    v128.or(v128.and(i16x8.shr_u(b0, 6), i8x16.splat(0x03)), v128.and(i16x8.shr_u(b1, 4), i8x16.splat(0x0c))),
    v128.and(i16x8.shr_u(b2, 2), i8x16.splat(0x30)));
}

/** Held Q5_K: code vectors 1, 2 (from c0, c1 or c2, c3) and 3 of chunk 2P + 1 (see the header). */
@inline function q5Code12(ca: v128, cb: v128): v128 {
  // i16 shifts: what moves across a byte boundary is masked off
  return v128.or(v128.and(i16x8.shr_u(ca, 5), i8x16.splat(0x07)), v128.and(i16x8.shr_u(cb, 2), i8x16.splat(0x18)));
}
@inline function q5Code3(c1: v128, c3: v128, c4: v128): v128 {
  return v128.or(
    v128.or(v128.and(i16x8.shr_u(c4, 5), i8x16.splat(0x07)), v128.and(i16x8.shr_u(c1, 4), i8x16.splat(0x08))),
    v128.and(i16x8.shr_u(c3, 3), i8x16.splat(0x10)));
}
@inline function lowFive(c: v128): v128 {
  return v128.and(c, i8x16.splat(0x1f));
}

// ---- re-laying a file's superblocks into the held layouts (once, at load) ----------------------

/**
 * Codes (Q4_K nibbles 0..15, Q5_K 0..31, Q6_K q + 32 in 0..63) of the file's superblock at wb, in
 * value order, into the 256 bytes at c.
 */
function fileCodes(wt: i32, wb: usize, c: usize): void {
  if (wt == WT_Q6_K) {
    const m = i8x16.splat(0x30);
    for (let n: usize = 0; n < 2; n++) {
      for (let h: usize = 0; h < 2; h++) {
        // values 128n + 32k + 16h + (0..15), k = 0..3
        const l0 = v128.load(wb + (n << 6) + (h << 4));
        const l1 = v128.load(wb + (n << 6) + (h << 4), 32);
        const hb = v128.load(wb + 128 + (n << 5) + (h << 4));
        const o = c + (n << 7) + (h << 4);
        v128.store(o, v128.or(lowNibbles(l0), v128.and(i16x8.shl(hb, 4), m)));
        v128.store(o, v128.or(lowNibbles(l1), v128.and(i16x8.shl(hb, 2), m)), 32);
        v128.store(o, v128.or(highNibbles(l0), v128.and(hb, m)), 64);
        v128.store(o, v128.or(highNibbles(l1), v128.and(i16x8.shr_u(hb, 2), m)), 96);
      }
    }
    return;
  }
  const q5 = wt == WT_Q5_K;
  const qs = wb + (q5 ? 48 : 16);
  const one = i8x16.splat(1);
  for (let j: usize = 0; j < 8; j++) {
    // sub-block j: the low (j even) or high nibbles of qs[32 (j >> 1) ..], the fifth bit qh[l] >> j
    for (let half: usize = 0; half < 2; half++) {
      const a = v128.load(qs + ((j >> 1) << 5) + (half << 4));
      let v = (j & 1) ? highNibbles(a) : lowNibbles(a);
      if (q5) {
        // per byte (qh >> j) & 1 (an i16 shift: the mask drops what crosses a byte), then << 4
        const h = v128.and(i16x8.shr_u(v128.load(wb + 16 + (half << 4)), <u32>j), one);
        v = v128.or(v, i16x8.shl(h, 4));
      }
      v128.store(c + (j << 5) + (half << 4), v);
    }
  }
}

/**
 * Superblocks [u0, u1) of a Q4_K, Q5_K or Q6_K matrix at W re-laid in place from the file's layout
 * to the held one (see the header). c: 256 bytes of scratch.
 */
export function repackKQuantRange(wt: i32, W: usize, u0: i32, u1: i32, c: usize): void {
  const bytes = superblockBytes(wt);
  for (let sb = u0; sb < u1; sb++) {
    const wb = W + <usize>sb * bytes;
    fileCodes(wt, wb, c);
    for (let k: usize = 0; k < 4; k++) {
      const cc = c + (k << 6);
      const v0 = v128.load(cc);
      const v1 = v128.load(cc, 16);
      const v2 = v128.load(cc, 32);
      const v3 = v128.load(cc, 48);
      // the chunk's code vectors in interleaved order, kept in the scratch (the reads above are done)
      v128.store(cc, interleave0(v0, v2));
      v128.store(cc, interleave1(v0, v2), 16);
      v128.store(cc, interleave0(v1, v3), 32);
      v128.store(cc, interleave1(v1, v3), 48);
    }
    if (wt == WT_Q6_K) {
      const top = i8x16.splat(-64); // 0xc0
      for (let k: usize = 0; k < 4; k++) {
        const cc = c + (k << 6);
        const v3 = v128.load(cc, 48);
        const b = wb + k * 48;
        v128.store(b, v128.or(v128.load(cc), v128.and(i16x8.shl(v3, 6), top)));
        v128.store(b, v128.or(v128.load(cc, 16), v128.and(i16x8.shl(v3, 4), top)), 16);
        v128.store(b, v128.or(v128.load(cc, 32), v128.and(i16x8.shl(v3, 2), top)), 32);
      }
    } else {
      if (wt == WT_Q5_K) {
        const seven = i8x16.splat(7);
        const three = i8x16.splat(3);
        const one = i8x16.splat(1);
        for (let pair: usize = 0; pair < 2; pair++) {
          const ca = c + (pair << 7); // chunk 2 pair's vectors, then chunk 2 pair + 1's at + 64
          const w1 = v128.load(ca, 80);
          const w2 = v128.load(ca, 96);
          const w3 = v128.load(ca, 112);
          const o = wb + 16 + pair * 80;
          // codes are below 32, so the i16 shifts of their bits never cross a byte
          v128.store(o, v128.or(v128.load(ca), i16x8.shl(v128.and(w1, seven), 5)));
          v128.store(o, v128.or(v128.or(v128.load(ca, 16), i16x8.shl(v128.and(i16x8.shr_u(w1, 3), three), 5)), i16x8.shl(v128.and(i16x8.shr_u(w3, 3), one), 7)), 16);
          v128.store(o, v128.or(v128.load(ca, 32), i16x8.shl(v128.and(w2, seven), 5)), 32);
          v128.store(o, v128.or(v128.or(v128.load(ca, 48), i16x8.shl(v128.and(i16x8.shr_u(w2, 3), three), 5)), i16x8.shl(v128.and(i16x8.shr_u(w3, 4), one), 7)), 48);
          v128.store(o, v128.or(v128.load(ca, 64), i16x8.shl(v128.and(w3, seven), 5)), 64);
        }
      } else {
        const lo4 = i8x16.splat(0x0f);
        for (let k: usize = 0; k < 4; k++) {
          const cc = c + (k << 6);
          // nibbles of vectors 0, 1 in the low and high halves of 16 bytes, 2, 3 in the next 16
          v128.store(wb + 16 + (k << 5), v128.or(v128.and(v128.load(cc), lo4), i16x8.shl(v128.and(v128.load(cc, 16), lo4), 4)));
          v128.store(wb + 16 + (k << 5), v128.or(v128.and(v128.load(cc, 32), lo4), i16x8.shl(v128.and(v128.load(cc, 48), lo4), 4)), 16);
        }
      }
    }
  }
}

/**
 * Row groups [g0, g1) (rows 4g .. 4g + 3; the last group may be short) of a Q4_K, Q5_K or Q6_K
 * matrix at W (rows x cols), filled with the file's bytes, re-laid in place into the held layout:
 * each row's superblocks (repackKQuantRange), then Q4_K and Q5_K's full groups interleaved (see the
 * header). scratch: repackScratch(wt, cols) bytes.
 */
export function repackKQuantGroups(wt: i32, W: usize, rows: i32, cols: i32, g0: i32, g1: i32, scratch: usize): void {
  const nsb = cols >> 8;
  for (let g = g0; g < g1; g++) {
    const r0 = g << 2;
    const r1 = min(rows, r0 + 4);
    repackKQuantRange(wt, W, r0 * nsb, r1 * nsb, scratch);
    if (grouped(wt) && r1 - r0 == 4) groupRows(wt, W + <usize>r0 * <usize>nsb * superblockBytes(wt), nsb, scratch);
  }
}

/** Scratch bytes of repackKQuantGroups: four rows' bytes and 256 more. */
export function repackScratch(wt: i32, cols: i32): usize {
  return (<usize>(cols >> 8) * superblockBytes(wt) << 2) + 256;
}

/** Four rows at G (held row by row, nsb superblocks each) interleaved in place into their row group. */
function groupRows(wt: i32, G: usize, nsb: i32, scratch: usize): void {
  const bytes = superblockBytes(wt);
  const rb = <usize>nsb * bytes;
  const codeBytes = bytes - 16;
  const o = scratch; // O0 .. O3, 64 bytes
  const rowsCopy = scratch + 256;
  memory.copy(rowsCopy, G, rb << 2);
  for (let sb: usize = 0; sb < <usize>nsb; sb++) {
    const gb = G + (sb * bytes << 2);
    for (let i: usize = 0; i < 4; i++) {
      const wb = rowsCopy + i * rb + sb * bytes;
      const sc = o + ((i >> 1) << 4) + ((i & 1) << 3);
      q4kScales(wb + 4, sc, sc + 32);
      store<u16>(gb + (i << 1), load<u16>(wb));
      store<u16>(gb + 8 + (i << 1), load<u16>(wb, 2));
      memory.copy(gb + GROUP_HEAD + i * codeBytes, wb + 16, codeBytes);
    }
    for (let p: usize = 0; p < 16; p++) {
      const o0 = <u32>load<u8>(o + p);
      const o1 = <u32>load<u8>(o + 16 + p);
      const o2 = <u32>load<u8>(o + 32 + p);
      const o3 = <u32>load<u8>(o + 48 + p);
      store<u8>(gb + 16 + p, (o0 & 15) | ((o1 & 15) << 4));
      store<u8>(gb + 32 + p, (o2 & 15) | ((o3 & 15) << 4));
      store<u8>(gb + 48 + p, (o0 >> 4) | ((o1 >> 4) << 2) | ((o2 >> 4) << 4) | ((o3 >> 4) << 6));
    }
  }
}

// A superblock of four rows unpacked for the dots (unpackQuad), SB_BYTES at u:
//   u + 256 i        row i's 256 codes as bytes, chunk by chunk in interleaved order (Q4_K 0..15,
//                    Q5_K 0..31, Q6_K q + 32 in 0..63)
//   u + 1024 + 32 i  row i's scales as i16 (Q4_K/Q5_K sc_0..7 then m_0..7; Q6_K sc_0..15 with
//                    4c + 1 and 4c + 2 swapped, as the input's 16-sums)
//   u + 1152         d of rows 0..3 (f32x4), u + 1168 dmin (Q4_K/Q5_K)
const SB_BYTES: usize = 1184;

/** Held Q6_K's i8 scales (16 lanes) in the order the kernels pair them: 4c + 1 and 4c + 2 swapped. */
@inline function q6ScaleOrder(s: v128): v128 {
  return i8x16.shuffle(s, s, 0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
}

/** One held Q4_K (q5 false) or Q5_K row's code bytes at cb unpacked into the layout above (row slot i). */
@inline function unpackCodes(q5: bool, cb: usize, u: usize, i: usize): void {
  const v = u + (i << 8);
  if (q5) {
    for (let pair: usize = 0; pair < 2; pair++) {
      const cp = cb + pair * 80;
      const c0 = v128.load(cp);
      const c1 = v128.load(cp, 16);
      const c2 = v128.load(cp, 32);
      const c3 = v128.load(cp, 48);
      const c4 = v128.load(cp, 64);
      const o = v + (pair << 7);
      v128.store(o, lowFive(c0));
      v128.store(o, lowFive(c1), 16);
      v128.store(o, lowFive(c2), 32);
      v128.store(o, lowFive(c3), 48);
      v128.store(o, lowFive(c4), 64);
      v128.store(o, q5Code12(c0, c1), 80);
      v128.store(o, q5Code12(c2, c3), 96);
      v128.store(o, q5Code3(c1, c3, c4), 112);
    }
  } else {
    for (let k: usize = 0; k < 4; k++) {
      const a = v128.load(cb + (k << 5));
      const b = v128.load(cb + (k << 5), 16);
      const o = v + (k << 6);
      v128.store(o, lowNibbles(a));
      v128.store(o, highNibbles(a), 16);
      v128.store(o, lowNibbles(b), 32);
      v128.store(o, highNibbles(b), 48);
    }
  }
}

/** One held Q4_K (q5 false) or Q5_K row's superblock at wb (row by row) unpacked (row slot i). */
@inline function unpackQ4K(q5: bool, wb: usize, u: usize, i: usize): void {
  unpackCodes(q5, wb + 16, u, i);
  rowScales(wb, u + 1024, i);
  store<f32>(u + 1152 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb)));
  store<f32>(u + 1168 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb, 2)));
}

/** A Q4_K (q5 false) or Q5_K group superblock at gb unpacked (its four rows in slots 0..3). */
@inline function unpackGroup(q5: bool, gb: usize, u: usize): void {
  const codeBytes: usize = q5 ? 160 : 128;
  const cb = gb + GROUP_HEAD;
  unpackCodes(q5, cb, u, 0);
  unpackCodes(q5, cb + codeBytes, u, 1);
  unpackCodes(q5, cb + 2 * codeBytes, u, 2);
  unpackCodes(q5, cb + 3 * codeBytes, u, 3);
  groupScales(gb, u + 1024);
  const h = v128.load(gb);
  v128.store(u + 1152, f16x4FiniteToF32x4(i32x4.extend_low_i16x8_s(h)));
  v128.store(u + 1168, f16x4FiniteToF32x4(i32x4.extend_high_i16x8_s(h)));
}

/** One held Q6_K row's superblock at wb unpacked (row slot i). */
@inline function unpackQ6K(wb: usize, u: usize, i: usize): void {
  const v = u + (i << 8);
  for (let k: usize = 0; k < 4; k++) {
    const b = wb + k * 48;
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    const b2 = v128.load(b, 32);
    const o = v + (k << 6);
    v128.store(o, q6Code012(b0));
    v128.store(o, q6Code012(b1), 16);
    v128.store(o, q6Code012(b2), 32);
    v128.store(o, q6Code3(b0, b1, b2), 48);
  }
  const s = q6ScaleOrder(v128.load(wb, 192));
  v128.store(u + 1024 + (i << 5), i16x8.extend_low_i8x16_s(s));
  v128.store(u + 1024 + (i << 5), i16x8.extend_high_i8x16_s(s), 16);
  store<f32>(u + 1152 + (i << 2), f16FiniteToF32(<u32>load<u16>(wb, 208)));
}

/** Superblock sb of four rows (group true: the row group at w; else the rows at w + i * rs) unpacked to u. */
@inline function unpackQuad(wt: i32, group: bool, w: usize, rs: usize, sb: usize, u: usize): void {
  if (group) {
    unpackGroup(wt == WT_Q5_K, w + (sb * superblockBytes(wt) << 2), u);
    return;
  }
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

/**
 * Chunk k of an unpacked row (codes at v) against the input vectors x0..x3 (Q4_K/Q5_K): one i16 sum
 * whose lanes alternate sub-blocks 2k and 2k + 1, scaled by the pair of scales at sp (i16, adjacent).
 */
@inline function chunkDot4(v: usize, k: usize, sp: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const o = v + (k << 6);
  const p = i16x8.add(
    i16x8.add(dotPairs(x0, v128.load(o)), dotPairs(x1, v128.load(o, 16))),
    i16x8.add(dotPairs(x2, v128.load(o, 32)), dotPairs(x3, v128.load(o, 48))));
  return i32x4.dot_i16x8_s(p, v128.load32_splat(sp));
}

/** Q6_K: chunk k of an unpacked row, its two i16 sums (groups 4k, 4k + 2 and 4k + 1, 4k + 3) scaled by the pairs at sp, sp + 4. */
@inline function chunkDot6(v: usize, k: usize, sp: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const o = v + (k << 6);
  const p01 = i16x8.add(dotPairs(x0, v128.load(o)), dotPairs(x1, v128.load(o, 16)));
  const p23 = i16x8.add(dotPairs(x2, v128.load(o, 32)), dotPairs(x3, v128.load(o, 48)));
  return i32x4.add(i32x4.dot_i16x8_s(p01, v128.load32_splat(sp)), i32x4.dot_i16x8_s(p23, v128.load32_splat(sp, 4)));
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
  for (let k: usize = 0; k < 4; k++) {
    const xp = xq + (k << 6);
    const x0 = v128.load(xp);
    const x1 = v128.load(xp, 16);
    const x2 = v128.load(xp, 32);
    const x3 = v128.load(xp, 48);
    if (mins) {
      a0 = i32x4.add(a0, chunkDot4(u, k, s + (k << 2), x0, x1, x2, x3));
      a1 = i32x4.add(a1, chunkDot4(u + 256, k, s + 32 + (k << 2), x0, x1, x2, x3));
      a2 = i32x4.add(a2, chunkDot4(u + 512, k, s + 64 + (k << 2), x0, x1, x2, x3));
      a3 = i32x4.add(a3, chunkDot4(u + 768, k, s + 96 + (k << 2), x0, x1, x2, x3));
    } else {
      a0 = i32x4.add(a0, chunkDot6(u, k, s + (k << 3), x0, x1, x2, x3));
      a1 = i32x4.add(a1, chunkDot6(u + 256, k, s + 32 + (k << 3), x0, x1, x2, x3));
      a2 = i32x4.add(a2, chunkDot6(u + 512, k, s + 64 + (k << 3), x0, x1, x2, x3));
      a3 = i32x4.add(a3, chunkDot6(u + 768, k, s + 96 + (k << 3), x0, x1, x2, x3));
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

/** Q4_K, one row's part of chunk k (sub-blocks 2k, 2k + 1) read straight from its held code bytes at cb (scales at s, i16). */
@inline function rowQ4(cb: usize, k: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const a = v128.load(cb + (k << 5));
  const b = v128.load(cb + (k << 5), 16);
  const p = i16x8.add(
    i16x8.add(dotPairs(x0, lowNibbles(a)), dotPairs(x1, highNibbles(a))),
    i16x8.add(dotPairs(x2, lowNibbles(b)), dotPairs(x3, highNibbles(b))));
  return i32x4.dot_i16x8_s(p, v128.load32_splat(s + (k << 2)));
}

/** Q5_K, one row's part of chunk 2P (its codes the low five bits of c0 .. c3) from its held code bytes at cb. */
@inline function rowQ5a(cb: usize, pair: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const cp = cb + pair * 80;
  const p = i16x8.add(
    i16x8.add(dotPairs(x0, lowFive(v128.load(cp))), dotPairs(x1, lowFive(v128.load(cp, 16)))),
    i16x8.add(dotPairs(x2, lowFive(v128.load(cp, 32))), dotPairs(x3, lowFive(v128.load(cp, 48)))));
  return i32x4.dot_i16x8_s(p, v128.load32_splat(s + (pair << 3)));
}

/** Q5_K, one row's part of chunk 2P + 1 (c4's low five bits, then the top bits of c0 .. c4). */
@inline function rowQ5b(cb: usize, pair: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const cp = cb + pair * 80;
  const c0 = v128.load(cp);
  const c1 = v128.load(cp, 16);
  const c2 = v128.load(cp, 32);
  const c3 = v128.load(cp, 48);
  const c4 = v128.load(cp, 64);
  const p = i16x8.add(
    i16x8.add(dotPairs(x0, lowFive(c4)), dotPairs(x1, q5Code12(c0, c1))),
    i16x8.add(dotPairs(x2, q5Code12(c2, c3)), dotPairs(x3, q5Code3(c1, c3, c4))));
  return i32x4.dot_i16x8_s(p, v128.load32_splat(s + (pair << 3) + 4));
}

/** Q6_K, one row's part of chunk k read straight from the held block at wb (scales at s: i16, q6ScaleOrder). */
@inline function rowQ6(wb: usize, k: usize, s: usize, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const b = wb + k * 48;
  const b0 = v128.load(b);
  const b1 = v128.load(b, 16);
  const b2 = v128.load(b, 32);
  const p01 = i16x8.add(dotPairs(x0, q6Code012(b0)), dotPairs(x1, q6Code012(b1)));
  const p23 = i16x8.add(dotPairs(x2, q6Code012(b2)), dotPairs(x3, q6Code3(b0, b1, b2)));
  const sp = s + (k << 3);
  return i32x4.add(i32x4.dot_i16x8_s(p01, v128.load32_splat(sp)), i32x4.dot_i16x8_s(p23, v128.load32_splat(sp, 4)));
}

/**
 * The scales and mins of a group superblock's four rows (header at gb) as i16 into sm: row i's sc_0..7
 * at sm + 32 i, its m_0..7 at + 16 (unpackQ4K's layout).
 */
@inline function groupScales(gb: usize, sm: usize): void {
  const n0 = v128.load(gb, 16);
  const n1 = v128.load(gb, 32);
  const c = v128.load(gb, 48);
  const lo4 = i8x16.splat(0x0f);
  const top = i8x16.splat(0x30);
  // i16 shifts: what moves across a byte boundary is masked off
  const o0 = v128.or(v128.and(n0, lo4), v128.and(i16x8.shl(c, 4), top));
  const o1 = v128.or(v128.and(i16x8.shr_u(n0, 4), lo4), v128.and(i16x8.shl(c, 2), top));
  const o2 = v128.or(v128.and(n1, lo4), v128.and(c, top));
  const o3 = v128.or(v128.and(i16x8.shr_u(n1, 4), lo4), v128.and(i16x8.shr_u(c, 2), top));
  v128.store(sm, i16x8.extend_low_i8x16_u(o0));
  v128.store(sm, i16x8.extend_low_i8x16_u(o2), 16);
  v128.store(sm, i16x8.extend_high_i8x16_u(o0), 32);
  v128.store(sm, i16x8.extend_high_i8x16_u(o2), 48);
  v128.store(sm, i16x8.extend_low_i8x16_u(o1), 64);
  v128.store(sm, i16x8.extend_low_i8x16_u(o3), 80);
  v128.store(sm, i16x8.extend_high_i8x16_u(o1), 96);
  v128.store(sm, i16x8.extend_high_i8x16_u(o3), 112);
}

/** A row's packed scales and mins (its block at wb) as i16 into sm (row slot i of groupScales' layout). */
@inline function rowScales(wb: usize, sm: usize, i: usize): void {
  const s = q4kScaleLanes(v128.load(wb, 4));
  v128.store(sm + (i << 5), i16x8.extend_low_i8x16_u(s));
  v128.store(sm + (i << 5), i16x8.extend_high_i8x16_u(s), 16);
}

/**
 * Four rows times one token at x, the held blocks read straight from the weights (no unpacking
 * pass): the same integers and float steps as quadK. The rows: group true, the row group at w (Q4_K,
 * Q5_K); else the rows at w + i * rs (rs = 0 repeats one row). Leaves acc - mins at accp. sm: 128
 * bytes for the rows' scales as i16 (the layout of the unpacked superblock's).
 * Each type has its own chunk loop: one loop dispatching per chunk on the type measured 0.75-0.90x.
 */
function quadOneK(wt: i32, group: bool, w: usize, rs: usize, x: usize, nsb: i32, sm: usize, accp: usize): void {
  const nsbU = <usize>nsb;
  const bytes = superblockBytes(wt);
  const mins = hasMins(wt);
  v128.store(accp, i32x4.splat(0));
  v128.store(accp, i32x4.splat(0), 16);
  // each row's superblock (a group: the group superblock, at w0), and (Q4_K, Q5_K) its code bytes
  let w0 = w;
  let w1 = w + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  const step = group ? bytes << 2 : bytes;
  const codeBytes = bytes - 16;
  for (let sb: usize = 0; sb < nsbU; sb++) {
    const xq = x + (sb << 8);
    let a0 = i32x4.splat(0);
    let a1 = i32x4.splat(0);
    let a2 = i32x4.splat(0);
    let a3 = i32x4.splat(0);
    let d: v128;
    let dmin = i32x4.splat(0);
    if (mins) {
      let c0: usize, c1: usize, c2: usize, c3: usize;
      if (group) {
        groupScales(w0, sm);
        const h = v128.load(w0);
        d = f16x4FiniteToF32x4(i32x4.extend_low_i16x8_s(h));
        dmin = f16x4FiniteToF32x4(i32x4.extend_high_i16x8_s(h));
        c0 = w0 + GROUP_HEAD;
        c1 = c0 + codeBytes;
        c2 = c1 + codeBytes;
        c3 = c2 + codeBytes;
      } else {
        rowScales(w0, sm, 0);
        rowScales(w1, sm, 1);
        rowScales(w2, sm, 2);
        rowScales(w3, sm, 3);
        d = halves4(w0, w1, w2, w3);
        dmin = halves4(w0 + 2, w1 + 2, w2 + 2, w3 + 2);
        c0 = w0 + 16;
        c1 = w1 + 16;
        c2 = w2 + 16;
        c3 = w3 + 16;
      }
      if (wt == WT_Q4_K) {
        for (let k: usize = 0; k < 4; k++) {
          const xp = xq + (k << 6);
          const x0 = v128.load(xp);
          const x1 = v128.load(xp, 16);
          const x2 = v128.load(xp, 32);
          const x3 = v128.load(xp, 48);
          a0 = i32x4.add(a0, rowQ4(c0, k, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ4(c1, k, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ4(c2, k, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ4(c3, k, sm + 96, x0, x1, x2, x3));
        }
      } else {
        for (let pair: usize = 0; pair < 2; pair++) {
          let xp = xq + (pair << 7);
          let x0 = v128.load(xp);
          let x1 = v128.load(xp, 16);
          let x2 = v128.load(xp, 32);
          let x3 = v128.load(xp, 48);
          a0 = i32x4.add(a0, rowQ5a(c0, pair, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ5a(c1, pair, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ5a(c2, pair, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ5a(c3, pair, sm + 96, x0, x1, x2, x3));
          xp += 64;
          x0 = v128.load(xp);
          x1 = v128.load(xp, 16);
          x2 = v128.load(xp, 32);
          x3 = v128.load(xp, 48);
          a0 = i32x4.add(a0, rowQ5b(c0, pair, sm, x0, x1, x2, x3));
          a1 = i32x4.add(a1, rowQ5b(c1, pair, sm + 32, x0, x1, x2, x3));
          a2 = i32x4.add(a2, rowQ5b(c2, pair, sm + 64, x0, x1, x2, x3));
          a3 = i32x4.add(a3, rowQ5b(c3, pair, sm + 96, x0, x1, x2, x3));
        }
      }
    } else {
      const t0 = q6ScaleOrder(v128.load(w0, 192));
      const t1 = q6ScaleOrder(v128.load(w1, 192));
      const t2 = q6ScaleOrder(v128.load(w2, 192));
      const t3 = q6ScaleOrder(v128.load(w3, 192));
      v128.store(sm, i16x8.extend_low_i8x16_s(t0));
      v128.store(sm, i16x8.extend_high_i8x16_s(t0), 16);
      v128.store(sm, i16x8.extend_low_i8x16_s(t1), 32);
      v128.store(sm, i16x8.extend_high_i8x16_s(t1), 48);
      v128.store(sm, i16x8.extend_low_i8x16_s(t2), 64);
      v128.store(sm, i16x8.extend_high_i8x16_s(t2), 80);
      v128.store(sm, i16x8.extend_low_i8x16_s(t3), 96);
      v128.store(sm, i16x8.extend_high_i8x16_s(t3), 112);
      for (let k: usize = 0; k < 4; k++) {
        const xp = xq + (k << 6);
        const x0 = v128.load(xp);
        const x1 = v128.load(xp, 16);
        const x2 = v128.load(xp, 32);
        const x3 = v128.load(xp, 48);
        a0 = i32x4.add(a0, rowQ6(w0, k, sm, x0, x1, x2, x3));
        a1 = i32x4.add(a1, rowQ6(w1, k, sm + 32, x0, x1, x2, x3));
        a2 = i32x4.add(a2, rowQ6(w2, k, sm + 64, x0, x1, x2, x3));
        a3 = i32x4.add(a3, rowQ6(w3, k, sm + 96, x0, x1, x2, x3));
      }
      d = halves4(w0 + 208, w1 + 208, w2 + 208, w3 + 208);
    }
    finishSb(mins, sm, a0, a1, a2, a3, x + nsbU * 260 + sb * 48, load<f32>(x + (nsbU << 8) + (sb << 2)), d, dmin, accp);
    w0 += step;
    w1 += step;
    w2 += step;
    w3 += step;
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
 * Four rows (group true: the row group at w; else at w + i * rs, rs = 0 repeating one row) times nTok tokens of qx: per pass of KSEG
 * superblocks the rows are unpacked once and every token runs over them from L1, its sums carried
 * between passes at accs + 32 t. Leaves (acc - mins) of token t at accs + 32 t.
 */
function quadK(wt: i32, group: bool, w: usize, rs: usize, qx: usize, ts: usize, nsb: i32, nTok: i32, u: usize, accs: usize): void {
  const mins = hasMins(wt);
  for (let t = 0; t < nTok; t++) {
    v128.store(accs + (<usize>t << 5), i32x4.splat(0));
    v128.store(accs + (<usize>t << 5), i32x4.splat(0), 16);
  }
  const nsbU = <usize>nsb;
  for (let sb0 = 0; sb0 < nsb; sb0 += KSEG) {
    const sb1 = min(nsb, sb0 + KSEG);
    for (let sb = sb0; sb < sb1; sb++) unpackQuad(wt, group, w, rs, <usize>sb, u + <usize>(sb - sb0) * SB_BYTES);
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
@inline function quadRows(wt: i32, group: bool, w: usize, rs: usize, qx: usize, ts: usize, nsb: i32, nTok: i32, u: usize, accs: usize): void {
  if (nTok == 1) quadOneK(wt, group, w, rs, qx, nsb, u, accs);
  else quadK(wt, group, w, rs, qx, ts, nsb, nTok, u, accs);
}

/** The four sums of a tile (f32x4 per token at accs + 32 t) emitted to rows r, r + dr, r + 2 dr, r + 3 dr. */
@inline function emitTile(accs: usize, nTok: i32, y: usize, ys: usize, r: i32, dr: i32, bias: usize, accumulate: bool): void {
  for (let t = 0; t < nTok; t++) {
    const v = v128.load(accs + (<usize>t << 5));
    const yt = y + <usize>t * ys;
    emitOne(yt, r, f32x4.extract_lane(v, 0), bias, accumulate);
    emitOne(yt, r + dr, f32x4.extract_lane(v, 1), bias, accumulate);
    emitOne(yt, r + 2 * dr, f32x4.extract_lane(v, 2), bias, accumulate);
    emitOne(yt, r + 3 * dr, f32x4.extract_lane(v, 3), bias, accumulate);
  }
}

/**
 * Rows [r0, r1) of y = W x for nTok tokens of the quantised input qx (quantXK); r0 a multiple of 4,
 * r1 one too or W's last row + 1 (the tasks' ranges are aligned to 4 rows). Q4_K and Q5_K go a row
 * group at a time (one sequential stream); Q6_K four rows at a time from the four quarters of the
 * range (four long sequential streams, as the q8_0 matvec reads them); rows past the last group or
 * quarter go one at a time as a tile of that row repeated.
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
  let lone = r0;
  if (grouped(wt)) {
    if (r0 & 3) unreachable(); // a range starting inside a row group would read another layout
    for (let r = r0; r + 4 <= r1; r += 4) {
      quadRows(wt, true, W + <usize>r * rb, 0, qx, ts, nsb, nTok, u, accs);
      emitTile(accs, nTok, y, ys, r, 1, bias, accumulate);
    }
    lone = r0 + ((r1 - r0) & ~3);
  } else {
    const Q = (r1 - r0) >> 2;
    const qb = <usize>Q * rb;
    for (let i = 0; i < Q; i++) {
      const r = r0 + i;
      quadRows(wt, false, W + <usize>r * rb, qb, qx, ts, nsb, nTok, u, accs);
      emitTile(accs, nTok, y, ys, r, Q, bias, accumulate);
    }
    lone = r0 + 4 * Q;
  }
  for (let r = lone; r < r1; r++) {
    quadRows(wt, false, W + <usize>r * rb, 0, qx, ts, nsb, nTok, u, accs);
    for (let t = 0; t < nTok; t++) emitOne(y + <usize>t * ys, r, load<f32>(accs + (<usize>t << 5)), bias, accumulate);
  }
}

/**
 * Row r of the held W (rows rows) dequantised to f32 into y[0 .. cols), bit for bit as
 * src/formats/gguf-quant.ts on the file's bytes (ggml's dequantize_row_q4_K / _q5_K / _q6_K in
 * float32: Q4_K and Q5_K (d * sc) * q - dmin * m, Q6_K (d * sc) * q). sm: 16 bytes of scratch.
 */
export function dequantRowKQuant(wt: i32, W: usize, rows: i32, cols: i32, r: i32, y: usize, sm: usize): void {
  const nsb = cols >> 8;
  const bytes = superblockBytes(wt);
  const w = W + <usize>r * <usize>nsb * bytes;
  const group = grouped(wt) && r < (rows & ~3);
  // a group row's superblocks: 4 * bytes apart from its group's start, its slot i in each
  const g = W + <usize>(r & ~3) * <usize>nsb * bytes;
  const i = <usize>(r & 3);
  for (let sb = 0; sb < nsb; sb++) {
    const wb = w + <usize>sb * bytes;
    const gb = g + (<usize>sb * bytes << 2);
    const yb = y + (<usize>sb << 10);
    if (wt == WT_Q6_K) {
      const d = f16ToF32(<u32>load<u16>(wb, 208));
      for (let p = 0; p < 256; p++) {
        // position p of the interleaved order: code vector k = (p >> 4) & 3 of chunk p >> 6, byte m
        const b = wb + <usize>(p >> 6) * 48;
        const k = (p >> 4) & 3;
        const m = <usize>(p & 15);
        const u = k < 3
          ? <u32>load<u8>(b + (<usize>k << 4) + m) & 63
          : (<u32>load<u8>(b + m) >> 6) | ((<u32>load<u8>(b + 16 + m) >> 6) << 2) | ((<u32>load<u8>(b + 32 + m) >> 6) << 4);
        const v = (p & ~63) | chunkValue(p & 63);
        const s = d * <f32>load<i8>(wb + 192 + <usize>(v >> 4));
        store<f32>(yb + (<usize>v << 2), s * <f32>(<i32>u - 32));
      }
    } else {
      const q5 = wt == WT_Q5_K;
      const d = f16ToF32(<u32>load<u16>(group ? gb + (i << 1) : wb));
      const dmin = f16ToF32(<u32>load<u16>(group ? gb + 8 + (i << 1) : wb + 2));
      if (group) groupRowScales(gb, i, sm, sm + 8);
      else q4kScales(wb + 4, sm, sm + 8);
      const cb = group ? gb + GROUP_HEAD + i * (bytes - 16) : wb + 16;
      for (let p = 0; p < 256; p++) {
        const c = p >> 6;
        const k = (p >> 4) & 3;
        const m = <usize>(p & 15);
        let q: u32;
        if (q5) {
          // the pair's c0 .. c4 (see the header): byte m of each
          const cp = cb + <usize>(c >> 1) * 80 + m;
          const k5 = (c & 1) ? (k == 0 ? 4 : -1) : k;
          if (k5 >= 0) q = <u32>load<u8>(cp + (<usize>k5 << 4)) & 31;
          else if (k == 1) q = (<u32>load<u8>(cp) >> 5) | (((<u32>load<u8>(cp + 16) >> 5) & 3) << 3);
          else if (k == 2) q = (<u32>load<u8>(cp + 32) >> 5) | (((<u32>load<u8>(cp + 48) >> 5) & 3) << 3);
          else q = (<u32>load<u8>(cp + 64) >> 5) | ((<u32>load<u8>(cp + 16) >> 7) << 3) | ((<u32>load<u8>(cp + 48) >> 7) << 4);
        } else {
          const byte = <u32>load<u8>(cb + (<usize>c << 5) + (<usize>(k >> 1) << 4) + m);
          q = (k & 1) ? byte >> 4 : byte & 15;
        }
        const v = (p & ~63) | chunkValue(p & 63);
        const j = <usize>(v >> 5);
        const d1 = d * <f32>load<u8>(sm + j);
        const m1 = dmin * <f32>load<u8>(sm + 8 + j);
        store<f32>(yb + (<usize>v << 2), d1 * <f32>q - m1);
      }
    }
  }
}
