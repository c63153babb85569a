/**
 * MXFP4 (OCP Microscaling FP4; GPT-OSS's expert weights; ggml type 39): blocks of 32 values, 17 bytes:
 *
 *   byte 0      e: the block's E8M0 scale, 2^(e - 127)
 *   bytes 1-16  qs: element j in the low nibble of qs[j], element j + 16 in the high nibble
 *
 * Each nibble is an E2M1 code c: bit 3 the sign, bits 0-2 the magnitude index into
 * {0, 0.5, 1, 1.5, 2, 3, 4, 6}; value = E2M1(c) * 2^(e - 127).
 *
 * ggml stores the magnitudes doubled as integers {0, 1, 2, 3, 4, 6, 8, 12} and halves the scale
 * (2^(e - 128): its "e8m0 half"), the same values. Every value is a small integer times a power of two,
 * so it is exact in float32 down to e = 0 (2^-128 and 2^-127 are subnormal floats, still exact) and
 * dequantises as ggml's float32 arithmetic does. e = 255 is NaN in the OCP spec; ggml does not treat it
 * specially (scale 2^128, so every nonzero magnitude above 0.5 overflows to infinity), and neither does
 * this file: the loader's finite check (formats/finite.ts) refuses such blocks.
 */
import { InternalError } from '../core/errors.js';

export const QK_MXFP4 = 32;
export const MXFP4_BLOCK_BYTES = 17;

/** E2M1 magnitudes times two (ggml's table), by the code's low three bits. */
export const E2M1_DOUBLED = [0, 1, 2, 3, 4, 6, 8, 12] as const;

/** Each code's value times two as a signed integer (ggml's kvalues_mxfp4: code 8, -0, is 0). */
export const E2M1_DOUBLED_SIGNED = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12] as const;

/** Bytes of `n` values (n a multiple of 32) in MXFP4. */
export function mxfp4Bytes(n: number): number {
  if (n % QK_MXFP4 !== 0) throw new InternalError(`mxfp4: ${n} values is not a multiple of ${QK_MXFP4}`);
  return (n / QK_MXFP4) * MXFP4_BLOCK_BYTES;
}

/** The value of E2M1 code c (0..15). */
export function e2m1(c: number): number {
  const m = E2M1_DOUBLED[c & 7]! / 2;
  return c & 8 ? -m : m;
}

/** 2^(e - 128) as float32 (exact for every e: ggml's ggml_e8m0_to_fp32_half). */
export function e8m0Half(e: number): number {
  return Math.fround(2 ** (e - 128));
}

/** Midpoints between consecutive E2M1 magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
const MIDPOINTS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5] as const;

/**
 * The E2M1 code nearest to v: below midpoint m the magnitude index m; on a midpoint the even index (the
 * code whose mantissa bit is 0), as IEEE round-to-nearest-even; above 6, 6 (saturation). Zero is +0.
 */
export function nearestE2M1(v: number): number {
  const a = Math.abs(v);
  let m = 0;
  while (m < 7 && (a > MIDPOINTS[m]! || (a === MIDPOINTS[m]! && (m & 1) === 1))) m++;
  return m === 0 ? 0 : v < 0 ? m | 8 : m;
}

/**
 * The scale exponent e of a block whose largest magnitude is amax: the smallest e (0..254) with
 * amax / 2^(e - 127) <= 6, so no value is clipped (ggml's own quantiser takes floor(log2 amax) - 2 + 127,
 * which maps amax into [4, 8) and clips what lies above 6). 0 for an all-zero block.
 */
export function mxfp4ScaleExponent(amax: number): number {
  if (!(amax > 0)) return 0;
  let e = Math.max(0, Math.min(254, Math.ceil(Math.log2(amax / 6)) + 127));
  // log2 may be off by one ulp near powers of two: settle on the exact smallest exponent.
  while (e > 0 && amax <= 6 * 2 ** (e - 1 - 127)) e--;
  while (e < 254 && amax > 6 * 2 ** (e - 127)) e++;
  return e;
}

/**
 * Quantises src (length a multiple of 32) into dst (fresh when left out) at dstOffset: per block e from
 * the absmax (mxfp4ScaleExponent), each value rounded to the nearest E2M1 value of x / 2^(e - 127) (ties
 * to even). For test and benchmark files; not bit-compatible with ggml's quantiser (see above).
 */
export function quantizeMXFP4(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  const bytes = mxfp4Bytes(src.length);
  const out = dst ?? new Uint8Array(bytes);
  if (out.length < dstOffset + bytes) throw new InternalError(`mxfp4: destination holds ${out.length - dstOffset} bytes, need ${bytes}`);
  for (let b = 0, nb = src.length / QK_MXFP4; b < nb; b++) {
    const x0 = b * QK_MXFP4;
    let amax = 0;
    for (let j = 0; j < QK_MXFP4; j++) amax = Math.max(amax, Math.abs(src[x0 + j]!));
    const e = mxfp4ScaleExponent(amax);
    const inv = 2 ** (127 - e); // exact: x * inv is x / scale
    const o = dstOffset + b * MXFP4_BLOCK_BYTES;
    out[o] = e;
    for (let j = 0; j < 16; j++) {
      out[o + 1 + j] = nearestE2M1(src[x0 + j]! * inv) | (nearestE2M1(src[x0 + 16 + j]! * inv) << 4);
    }
  }
  return out;
}

/** Dequantises `n` values (a multiple of 32) from src at srcOffset: x = E2M1(c) * 2^(e - 127), in float32 as ggml. */
export function dequantizeMXFP4(src: Uint8Array, n: number, srcOffset = 0, dst?: Float32Array): Float32Array {
  const bytes = mxfp4Bytes(n);
  if (src.length < srcOffset + bytes) throw new InternalError(`mxfp4: source holds ${src.length - srcOffset} bytes, need ${bytes}`);
  const out = dst ?? new Float32Array(n);
  for (let b = 0, nb = n / QK_MXFP4; b < nb; b++) {
    const o = srcOffset + b * MXFP4_BLOCK_BYTES;
    const d = e8m0Half(src[o]!);
    const y = b * QK_MXFP4;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 1 + j]!;
      // doubled signed value * half scale: one float32 multiply, as ggml's dequantize_row_mxfp4
      out[y + j] = Math.fround(E2M1_DOUBLED_SIGNED[q & 15]! * d);
      out[y + j + 16] = Math.fround(E2M1_DOUBLED_SIGNED[q >> 4]! * d);
    }
  }
  return out;
}

/**
 * Whether MXFP4 block `b` of `bytes` dequantises to finite values only: below e = 253 always (at most
 * 6 * 2^125); above, unless its largest magnitude overflows float32.
 */
export function mxfp4BlockFinite(bytes: Uint8Array, b: number): boolean {
  const o = b * MXFP4_BLOCK_BYTES;
  const e = bytes[o]!;
  if (e < 253) return true;
  let big = 0;
  for (let j = 1; j <= 16; j++) big = Math.max(big, bytes[o + j]! & 7, (bytes[o + j]! >> 4) & 7);
  return Number.isFinite(Math.fround(E2M1_DOUBLED[big]! * e8m0Half(e)));
}
