// Weight conversion (OP_QUANTIZE): float32 values to a stored weight layout, bit-identical to the
// host's reference conversions, which define the results (src/quant/q8_0.ts, src/quant/q4_0.ts,
// src/formats/half.ts f32ArrayToF16 / f32ArrayToBf16):
//   q8_0  per 32-block: amax = max |x|, d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id)
//         (half away from zero), stored as f16 d then 32 int8;
//   q4_0  per 32-block: m = the first x of largest |x| (NaN never), d = m / -8, id = d ? 1/d : 0,
//         q = min(15, trunc(x * id + 8.5)), stored as f16 d then 16 bytes (element j low nibble,
//         element j + 16 high nibble);
//   f16, bf16  round to nearest even (NaN kept quiet with its top payload bits); f32 a copy.
// All float arithmetic is float32, one rounding per operation as the references' Math.fround
// (no fused multiply-adds here, so both kernel builds agree).
import { WT_F32, WT_F16, WT_BF16, WT_Q8_0, WT_Q4_0, hmax, blockAbsMax, f32ToF16 } from './common';

/** Elements per SIMD step of the f16/bf16 conversions. */
const HALF_STEP: i32 = 8;

/** f16 quiet NaN: the q8_0 scale of a block holding a NaN (see q8Block). */
const F16_QNAN: u16 = 0x7e00;

/**
 * Converts units [u0, u1) of src (f32) into dst, the start of the whole destination: units are 32-blocks
 * (q8_0: 34 bytes each, q4_0: 18) or elements (f16/bf16: 2 bytes, f32: 4).
 */
export function quantizeRange(wt: i32, src: usize, dst: usize, u0: i32, u1: i32): void {
  if (wt == WT_Q8_0) {
    for (let b = u0; b < u1; b++) q8Block(src + (<usize>b << 7), dst + <usize>b * 34);
  } else if (wt == WT_Q4_0) {
    for (let b = u0; b < u1; b++) q4Block(src + (<usize>b << 7), dst + <usize>b * 18);
  } else if (wt == WT_F16) {
    halfRange(src, dst, u0, u1, true);
  } else if (wt == WT_BF16) {
    halfRange(src, dst, u0, u1, false);
  } else if (wt == WT_F32) {
    memory.copy(dst + (<usize>u0 << 2), src + (<usize>u0 << 2), <usize>(u1 - u0) << 2);
  } else {
    unreachable();
  }
}

/** Elements [u0, u1) to f16 (f16 true) or bfloat16 bits, eight per step, the tail one lane at a time through the same code. */
@inline function halfRange(src: usize, dst: usize, u0: i32, u1: i32, f16: bool): void {
  let i = u0;
  for (; i + HALF_STEP <= u1; i += HALF_STEP) {
    const p = src + (<usize>i << 2);
    const a = v128.load(p);
    const b = v128.load(p, 16);
    const h = f16 ? i16x8.narrow_i32x4_u(f16Bits4(a), f16Bits4(b)) : i16x8.narrow_i32x4_u(bf16Bits4(a), bf16Bits4(b));
    v128.store(dst + (<usize>i << 1), h);
  }
  for (; i < u1; i++) {
    const x = v128.load32_splat(src + (<usize>i << 2));
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(f16 ? f16Bits4(x) : bf16Bits4(x), 0));
  }
}

// ---------------------------------------------------------------------------------------------
// f16 / bf16: the bit manipulations of src/formats/half.ts on four lanes (f32 bit patterns in, the
// 16-bit results zero-extended in i32 lanes out).

/**
 * f32 -> f16 bits, round to nearest even, as common.ts f32ToF16 (and half.ts f32BitsToF16) with the
 * cases selected instead of branched: |x| >= 65520 (inf, NaN included) -> inf, NaN -> quiet NaN with
 * the top 10 payload bits, |x| < 2^-14 -> subnormal half (|x| + 0.5 in float32 rounds |x| to a
 * multiple of 2^-24 to even, and the count of those is the half), else rebias the exponent and round
 * the 13 dropped mantissa bits to even (a carry rolls into the exponent).
 */
@inline function f16Bits4(x: v128): v128 {
  const ax = v128.and(x, i32x4.splat(0x7fffffff));
  const sign = v128.and(i32x4.shr_u(x, 16), i32x4.splat(0x8000));
  const normal = i32x4.shr_u(
    i32x4.add(i32x4.add(ax, i32x4.splat(<i32>0xc8000fff)), v128.and(i32x4.shr_u(ax, 13), i32x4.splat(1))),
    13,
  );
  const subnormal = i32x4.sub(f32x4.add(ax, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  const nan = v128.or(i32x4.splat(0x7e00), i32x4.shr_u(v128.and(ax, i32x4.splat(0x7fffff)), 13));
  let h = v128.bitselect(subnormal, normal, i32x4.lt_s(ax, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7c00), h, i32x4.ge_s(ax, i32x4.splat(0x477ff000)));
  h = v128.bitselect(nan, h, i32x4.gt_s(ax, i32x4.splat(0x7f800000)));
  return v128.or(h, sign);
}

/** f32 -> bfloat16 bits, round to nearest even (a carry rolls into the exponent); NaN -> its top half, made quiet. */
@inline function bf16Bits4(x: v128): v128 {
  const rounded = i32x4.shr_u(i32x4.add(i32x4.add(x, i32x4.splat(0x7fff)), v128.and(i32x4.shr_u(x, 16), i32x4.splat(1))), 16);
  const nan = v128.or(i32x4.shr_u(x, 16), i32x4.splat(0x40));
  return v128.bitselect(nan, rounded, i32x4.gt_s(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000)));
}

// ---------------------------------------------------------------------------------------------
// q8_0 / q4_0 blocks. Range of the quotients: every non-NaN |x| <= amax, and d, id each round once
// (relative error <= 2^-22 even where d is a float32 subnormal, as long as 1/d is finite), so
// |x * id| <= 127 (1 + 2^-21) for q8_0 and <= 8 (1 + 2^-21) for q4_0: q8_0's rounded values stay in
// -127..127 (the saturating narrows never saturate) and q4_0's x * id + 8.5 in [0.49, 16.51].

/** roundf on four lanes: trunc, then one away from zero where the dropped fraction (exact) is >= 1/2. */
@inline function roundAway4(v: v128): v128 {
  const t = f32x4.trunc(v);
  const up = f32x4.ge(f32x4.abs(f32x4.sub(v, t)), f32x4.splat(0.5));
  const away = v128.or(v128.and(v, i32x4.splat(<i32>0x80000000)), f32x4.splat(1.0)); // +-1 with v's sign
  return f32x4.add(t, v128.and(up, away));
}

/** Eight q8_0 values (two vectors) as i16 lanes; a NaN product becomes 0 (as the reference's setInt8). */
@inline function q8Lanes(a: v128, b: v128, iv: v128): v128 {
  return i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(a, iv))),
    i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(b, iv))),
  );
}

/** One q8_0 block: 32 floats at x to 34 bytes at o. */
@inline function q8Block(x: usize, o: usize): void {
  const v0 = v128.load(x);
  const v1 = v128.load(x, 16);
  const v2 = v128.load(x, 32);
  const v3 = v128.load(x, 48);
  const v4 = v128.load(x, 64);
  const v5 = v128.load(x, 80);
  const v6 = v128.load(x, 96);
  const v7 = v128.load(x, 112);
  // max propagates NaN, as the reference's Math.max.
  const amax = blockAbsMax(v0, v1, v2, v3, v4, v5, v6, v7);
  const d: f32 = amax / <f32>127.0;
  let id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  // 1/d overflows where d < 2^-128: x * inf is +-inf or NaN, which the reference's roundf and int8
  // store make 0; id = 0 gives those zeros directly (x is finite: |x| <= amax is tiny).
  if (id == <f32>Infinity) id = 0;
  // A NaN in the block makes amax, d and every q NaN (q stored as 0). Which NaN d is depends on the
  // engine (the JS reference stores 0xfe00 on x64 V8), so its scale here is the plain quiet NaN; the
  // host refuses non-finite scales either way.
  store<u16>(o, amax != amax ? F16_QNAN : <u16>f32ToF16(d));
  const iv = f32x4.splat(id);
  v128.store(o, i8x16.narrow_i16x8_s(q8Lanes(v0, v1, iv), q8Lanes(v2, v3, iv)), 2);
  v128.store(o, i8x16.narrow_i16x8_s(q8Lanes(v4, v5, iv), q8Lanes(v6, v7, iv)), 18);
}

/**
 * Four q4_0 nibbles: clamp(trunc(x * id + 8.5), 0, 15) in i32 lanes. Beyond the finite range (id
 * infinite: d a tiny subnormal) the reference's min(15, .) and int conversions give 15 for +inf, 0
 * for -inf and NaN; trunc_sat (NaN -> 0, +-inf -> int max/min) and the clamp give the same.
 */
@inline function q4Lanes(v: v128, iv: v128): v128 {
  const q = i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v, iv), f32x4.splat(8.5)));
  return i32x4.min_s(i32x4.max_s(q, i32x4.splat(0)), i32x4.splat(15));
}

/** One q4_0 block: 32 floats at x to 18 bytes at o. */
@inline function q4Block(x: usize, o: usize): void {
  const v0 = v128.load(x);
  const v1 = v128.load(x, 16);
  const v2 = v128.load(x, 32);
  const v3 = v128.load(x, 48);
  const v4 = v128.load(x, 64);
  const v5 = v128.load(x, 80);
  const v6 = v128.load(x, 96);
  const v7 = v128.load(x, 112);
  // |x| with NaN lanes as 0 (pmax(0, NaN) is 0): the reference's `amax < |x|` never takes a NaN.
  const z = f32x4.splat(0);
  const a0 = f32x4.pmax(z, f32x4.abs(v0));
  const a1 = f32x4.pmax(z, f32x4.abs(v1));
  const a2 = f32x4.pmax(z, f32x4.abs(v2));
  const a3 = f32x4.pmax(z, f32x4.abs(v3));
  const a4 = f32x4.pmax(z, f32x4.abs(v4));
  const a5 = f32x4.pmax(z, f32x4.abs(v5));
  const a6 = f32x4.pmax(z, f32x4.abs(v6));
  const a7 = f32x4.pmax(z, f32x4.abs(v7));
  const amax = hmax(f32x4.max(f32x4.max(f32x4.max(a0, a1), f32x4.max(a2, a3)), f32x4.max(f32x4.max(a4, a5), f32x4.max(a6, a7))));
  // The signed value: the first element whose |x| is amax (bit i of hits = element i); +0 for a block of
  // zeros (and NaNs), whose d is then -0.
  let mx: f32 = 0;
  if (amax > 0) {
    const s = f32x4.splat(amax);
    const hits =
      i32x4.bitmask(f32x4.eq(a0, s)) | (i32x4.bitmask(f32x4.eq(a1, s)) << 4) |
      (i32x4.bitmask(f32x4.eq(a2, s)) << 8) | (i32x4.bitmask(f32x4.eq(a3, s)) << 12) |
      (i32x4.bitmask(f32x4.eq(a4, s)) << 16) | (i32x4.bitmask(f32x4.eq(a5, s)) << 20) |
      (i32x4.bitmask(f32x4.eq(a6, s)) << 24) | (i32x4.bitmask(f32x4.eq(a7, s)) << 28);
    mx = load<f32>(x + (<usize>ctz(hits) << 2));
  }
  const d: f32 = mx / <f32>-8.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  store<u16>(o, <u16>f32ToF16(d));
  const iv = f32x4.splat(id);
  // Byte j = nibble j | nibble j + 16 << 4: vector k (elements 4k..4k+3) pairs with vector k + 4.
  const b0 = v128.or(q4Lanes(v0, iv), i32x4.shl(q4Lanes(v4, iv), 4));
  const b1 = v128.or(q4Lanes(v1, iv), i32x4.shl(q4Lanes(v5, iv), 4));
  const b2 = v128.or(q4Lanes(v2, iv), i32x4.shl(q4Lanes(v6, iv), 4));
  const b3 = v128.or(q4Lanes(v3, iv), i32x4.shl(q4Lanes(v7, iv), 4));
  v128.store(o, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(b0, b1), i16x8.narrow_i32x4_s(b2, b3)), 2);
}
