/**
 * IEEE half precision (F16) and bfloat16 (BF16) conversions, scalar and bulk.
 *
 * Narrowing (f32 -> f16/bf16) rounds to nearest, ties to even, and works on the float32 bit pattern:
 * the argument is first taken as a float32 (as the names say). Widening is exact for every bit pattern,
 * subnormals, infinities and NaN included (bulk widening keeps NaN payloads bit for bit).
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The float32 value of the half with bits `h` (0..0xffff), computed arithmetically. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** The float32 bit pattern of the half with bits `h`. */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = -14; // a subnormal half is mant * 2^-24 = (mant / 1024) * 2^-14; normalise it
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | ((e + 127) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** float32 bit pattern of every half, indexed by the half's bits. */
const F16_TO_F32_BITS: Uint32Array = (() => {
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Bits(h);
  return t;
})();

/** The half (bits) nearest to the float32 with bit pattern `u`, ties to even. */
function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const e = exp - 112; // the half's biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal (or zero): value / 2^-24 = (1.mant) * 2^(e - 1 + 10) = m24 >> (14 - e).
    if (e < -10) return sign; // below 2^-25: rounds to zero
    const m = mant | 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1) !== 0)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) !== 0)) r++; // a carry rolls into the exponent (to inf)
  return sign | r;
}

/** The bfloat16 (bits) nearest to the float32 with bit pattern `u`, ties to even. */
function f32BitsToBf16(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Half bits (0..0xffff) of `x` taken as float32, rounded to nearest even. */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16(scratchU32[0]!);
}

/** The float32 value of the bfloat16 with bits `h`. */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

/** bfloat16 bits (0..0xffff) of `x` taken as float32, rounded to nearest even. */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16(scratchU32[0]!);
}

function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Widens `src` (half bits) into `dst[dstOffset ..]`, bit-exact (NaN payloads kept). */
export function f16ArrayToF32(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const out = u32View(dst);
  const t = F16_TO_F32_BITS;
  for (let i = 0, n = src.length; i < n; i++) out[dstOffset + i] = t[src[i]!]!;
}

/** Widens `src` (bfloat16 bits) into `dst[dstOffset ..]`, bit-exact. */
export function bf16ArrayToF32(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const out = u32View(dst);
  for (let i = 0, n = src.length; i < n; i++) out[dstOffset + i] = src[i]! << 16;
}

/** Narrows `src[srcOffset .. srcOffset + dst.length]` to half bits in `dst` (round to nearest even). */
export function f32ArrayToF16(src: Float32Array, dst: Uint16Array, srcOffset = 0): void {
  const bits = u32View(src);
  for (let i = 0, n = dst.length; i < n; i++) dst[i] = f32BitsToF16(bits[srcOffset + i]!);
}

/** Narrows `src[srcOffset .. srcOffset + dst.length]` to bfloat16 bits in `dst` (round to nearest even). */
export function f32ArrayToBf16(src: Float32Array, dst: Uint16Array, srcOffset = 0): void {
  const bits = u32View(src);
  for (let i = 0, n = dst.length; i < n; i++) dst[i] = f32BitsToBf16(bits[srcOffset + i]!);
}
