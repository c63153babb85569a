// Shared helpers for the kernels: type codes, f16/bf16 conversion, a SIMD exp, horizontal sums.
// AssemblyScript (compiled by scripts/build-wasm.mjs), not TypeScript: tsc must not see this folder.
// No host calls and no static data: every instance (main thread, workers, a browser later) only
// reads and writes the shared memory through the pointers it is given.

/** Weight element types (also the `wType` word of a task). */
export const WT_F32: i32 = 0;
export const WT_F16: i32 = 1;
export const WT_BF16: i32 = 2;
export const WT_Q8_0: i32 = 3;
export const WT_Q4_0: i32 = 4;
/** ggml's K-quants as stored in GGUF files: 256-value superblocks (asm/kquant.ts). */
export const WT_Q4_K: i32 = 5;
export const WT_Q6_K: i32 = 6;
export const WT_Q5_K: i32 = 8;
/** MXFP4 as stored in GGUF files (GPT-OSS's experts): 32-value blocks of 17 bytes (asm/mxfp4.ts). */
export const WT_MXFP4: i32 = 7;

/** Whether wt is one of the K-quants (asm/kquant.ts). */
@inline export function isKQuant(wt: i32): bool {
  return wt == WT_Q4_K || wt == WT_Q5_K || wt == WT_Q6_K;
}

/** KV cache element types. KV_I8: int8 with one f32 scale per (token, head): x = scale * q. */
export const KV_F32: i32 = 0;
export const KV_F16: i32 = 1;
export const KV_I8: i32 = 2;

/** Bytes of one weight row of `cols` elements (q8_0/q4_0/mxfp4: cols is a multiple of 32; q4_k/q6_k: of 256). */
export function rowBytes(wt: i32, cols: i32): usize {
  const c = <usize>cols;
  if (wt == WT_F32) return c << 2;
  if (wt == WT_F16 || wt == WT_BF16) return c << 1;
  if (wt == WT_Q8_0) return (c >> 5) * 34;
  if (wt == WT_Q4_0) return (c >> 5) * 18;
  if (wt == WT_Q4_K) return (c >> 8) * 144;
  if (wt == WT_Q5_K) return (c >> 8) * 176;
  if (wt == WT_Q6_K) return (c >> 8) * 210;
  if (wt == WT_MXFP4) return (c >> 5) * 17;
  unreachable();
  return 0;
}

/**
 * a * b + c on four lanes. In the relaxed-SIMD build (kernels-relaxed.wasm) this is
 * f32x4.relaxed_madd, one fused multiply-add where the CPU has FMA (a single rounding); in the
 * baseline build a multiply then an add.
 */
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** Lane sum in a fixed order: (l0 + l1) + (l2 + l3). */
@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline export function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** max |x| over a 32-value block held in eight vectors; NaN propagates (f32x4.max). */
@inline export function blockAbsMax(v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128): f32 {
  return hmax(f32x4.max(
    f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
    f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))),
  ));
}

/** 2^112: scales a half's exponent/mantissa bits placed at float32 positions to the right value. */
const F16_MAGIC: f32 = 5.192296858534828e33;

/** Exact f16 -> f32 for every bit pattern (subnormals, inf and NaN included). */
@inline export function f16ToF32(h: u32): f32 {
  const em = (h & 0x7fff) << 13;
  let bits = reinterpret<u32>(reinterpret<f32>(em) * F16_MAGIC);
  if (em >= 0x0f800000) bits |= 0x7f800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/**
 * Fast f16 -> f32 for weights and block scales, exact for every finite half (normal, subnormal,
 * signed zero). The half is sign-extended to 32 bits and shifted left by 13, which puts its sign in
 * bit 31 (and copies of it in bits 28-30, masked off), its exponent in bits 23-27 and its mantissa
 * in bits 13-22; as a float that is the value times 2^-112. Infinity and NaN come out as finite
 * values, so the host refuses non-finite f16 weights and scales at upload.
 */
@inline export function f16FiniteToF32(h: u32): f32 {
  return reinterpret<f32>(((<i32><i16>h) << 13) & 0x8fffffff) * F16_MAGIC;
}

/** Four halves sign-extended into i32 lanes (v128.load16x4_s) to floats, as f16FiniteToF32. */
@inline export function f16x4FiniteToF32x4(h: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(h, 13), i32x4.splat(0x8fffffff)), f32x4.splat(F16_MAGIC));
}

/** f32 -> f16 bits, round to nearest even; NaN keeps its top payload bits and is made quiet. */
export function f32ToF16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return ax > 0x7f800000 ? sign | 0x7e00 | ((ax & 0x7fffff) >> 13) : sign | 0x7c00;
  if (ax >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to infinity
  if (ax < 0x38800000) {
    // Below 2^-14: a half subnormal. Adding 0.5 (ulp 2^-24) lets the float adder round to even.
    const v = reinterpret<f32>(ax) + <f32>0.5;
    return sign | (reinterpret<u32>(v) - 0x3f000000);
  }
  // Normal: rebias the exponent and round the 13 dropped bits to even (a carry rolls upward).
  return sign | ((ax + 0xc8000fff + ((ax >> 13) & 1)) >> 13);
}

/** Four bfloat16 (zero-extended into i32 lanes) to floats. */
@inline export function bf16x4ToF32x4(h: v128): v128 {
  return i32x4.shl(h, 16);
}

// exp(x) on four lanes: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial (Cephes expf
// coefficients), 2^n put into the exponent. Inputs are clamped to [-87, 88]; below -87 gives 0.
// Relative error about 2e-7 (checked against Math.exp in the tests).
const EXP_HI: f32 = 88.0;
const EXP_LO: f32 = -87.0;
const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
/** 1.5 * 2^23 + 127: adding it to an integral |n| < 2^22 puts n + 127 in the low bits. */
const EXP_BIAS_MAGIC: f32 = 12583039.0;

@inline export function exp4(xin: v128): v128 {
  const tiny = f32x4.lt(xin, f32x4.splat(EXP_LO));
  // pmin/pmax (one instruction each) clamp exactly as min/max here: the bounds are neither NaN nor
  // zero, and a NaN input, the first operand, passes through both.
  const x = f32x4.pmax(f32x4.pmin(xin, f32x4.splat(EXP_HI)), f32x4.splat(EXP_LO));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(LOG2E)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1.0));
  // 2^n: n + 127 (1..254) lands in the low mantissa bits of n + (1.5 * 2^23 + 127), exactly; the
  // shift moves it into the exponent field and drops the rest (a NaN n gives 0, and NaN overall).
  const e = i32x4.shl(f32x4.add(n, f32x4.splat(EXP_BIAS_MAGIC)), 23);
  return v128.andnot(f32x4.mul(p, e), tiny);
}

/** The same computation as exp4 on one value (bit-identical to a lane of exp4). */
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

/** silu(g) * u on four lanes: g / (1 + exp(-g)) * u. */
@inline export function siluMul4(g: v128, u: v128): v128 {
  const e = exp4(f32x4.neg(g));
  return f32x4.mul(f32x4.div(g, f32x4.add(f32x4.splat(1.0), e)), u);
}

/**
 * gelu_tanh(g) * u: 0.5 g (1 + tanh(z)) = g sigmoid(2z), z = sqrt(2/pi) (g + 0.044715 g^3), so the same
 * sigmoid as silu's, of 2z.
 */
@inline export function geluMul4(g: v128, u: v128): v128 {
  const g3 = f32x4.mul(f32x4.mul(g, g), g);
  const z2 = f32x4.mul(f32x4.splat(<f32>1.5957691216057308), f32x4.add(g, f32x4.mul(f32x4.splat(<f32>0.044715), g3)));
  const e = exp4(f32x4.neg(z2));
  return f32x4.mul(f32x4.div(g, f32x4.add(f32x4.splat(1.0), e)), u);
}

@inline export function geluMul1(g: f32, u: f32): f32 {
  return f32x4.extract_lane(geluMul4(f32x4.splat(g), f32x4.splat(u)), 0);
}

/**
 * GPT-OSS's clamped SwiGLU: c sigmoid(1.702 c) (v + 1), c = min(g, 7), v = u clamped to [-7, 7]
 * (alpha and limit are the model's fixed values, as llama.cpp fixes them).
 */
@inline export function oaiMul4(g: v128, u: v128): v128 {
  const c = f32x4.pmin(g, f32x4.splat(<f32>7.0));
  const v = f32x4.pmax(f32x4.pmin(u, f32x4.splat(<f32>7.0)), f32x4.splat(<f32>-7.0));
  const e = exp4(f32x4.mul(f32x4.splat(<f32>-1.702), c));
  return f32x4.mul(f32x4.div(c, f32x4.add(f32x4.splat(1.0), e)), f32x4.add(v, f32x4.splat(1.0)));
}

@inline export function oaiMul1(g: f32, u: f32): f32 {
  return f32x4.extract_lane(oaiMul4(f32x4.splat(g), f32x4.splat(u)), 0);
}

@inline export function siluMul1(g: f32, u: f32): f32 {
  return f32x4.extract_lane(siluMul4(f32x4.splat(g), f32x4.splat(u)), 0);
}
