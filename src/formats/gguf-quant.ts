/**
 * Dequantisation of ggml block types to float32, following ggml's block layouts and its reference
 * `dequantize_row_*` arithmetic (float32 throughout). Q8_0 and Q4_0 use src/quant; the others are here.
 *
 * Layouts (bytes, little endian; "half" = IEEE f16):
 *   Q4_1  (32 values, 20 B): half d, half m, u8 qs[16]        x = (nibble) * d + m, low nibbles = values 0..15
 *   Q5_0  (32 values, 22 B): half d, u8 qh[4], u8 qs[16]      x = ((nibble | high bit << 4) - 16) * d
 *   Q5_1  (32 values, 24 B): half d, half m, u8 qh[4], qs[16] x = (nibble | high bit << 4) * d + m
 *     (qh is a u32: bit j is the 5th bit of value j, bit j + 16 that of value j + 16)
 *   Q4_K  (256 values, 144 B): half d, half dmin, u8 scales[12], u8 qs[128]
 *   Q5_K  (256 values, 176 B): half d, half dmin, u8 scales[12], u8 qh[32], u8 qs[128]
 *     eight sub-blocks of 32 values with 6-bit scale sc and min m packed in `scales`: x = d * sc * q - dmin * m
 *   Q6_K  (256 values, 210 B): u8 ql[128], u8 qh[64], i8 scales[16], half d
 *     sixteen sub-blocks of 16 values: x = d * scale * (q6 - 32), q6 = 4 low bits from ql + 2 high bits from qh
 *   MXFP4 (32 values, 17 B): u8 e (E8M0), u8 qs[16] (E2M1 codes, low nibbles = values 0..15)   src/quant/mxfp4.ts
 */
import { InternalError } from '../core/errors.js';
import { f16ToF32 } from '../core/half.js';
import { dequantizeQ4_0 } from '../quant/q4_0.js';
import { dequantizeQ8_0 } from '../quant/q8_0.js';
import { dequantizeMXFP4 } from '../quant/mxfp4.js';

const fr = Math.fround;

/** Half bits at byte `o` of `b`, as float32. */
function half(b: Uint8Array, o: number): number {
  return f16ToF32(b[o]! | (b[o + 1]! << 8));
}

function dequantQ4_1(src: Uint8Array, nBlocks: number, dst: Float32Array, at: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 20;
    const d = half(src, o);
    const m = half(src, o + 2);
    const y = at + b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      dst[y + j] = fr(fr((q & 15) * d) + m);
      dst[y + j + 16] = fr(fr((q >> 4) * d) + m);
    }
  }
}

function dequantQ5(src: Uint8Array, nBlocks: number, dst: Float32Array, at: number, withMin: boolean): void {
  const size = withMin ? 24 : 22;
  const qhAt = withMin ? 4 : 2;
  for (let b = 0; b < nBlocks; b++) {
    const o = b * size;
    const d = half(src, o);
    const m = withMin ? half(src, o + 2) : 0;
    const qh = (src[o + qhAt]! | (src[o + qhAt + 1]! << 8) | (src[o + qhAt + 2]! << 16) | (src[o + qhAt + 3]! << 24)) >>> 0;
    const y = at + b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[o + qhAt + 4 + j]!;
      const lo = (q & 15) | (((qh >>> j) & 1) << 4);
      const hi = (q >> 4) | (((qh >>> (j + 16)) & 1) << 4);
      if (withMin) {
        dst[y + j] = fr(fr(lo * d) + m);
        dst[y + j + 16] = fr(fr(hi * d) + m);
      } else {
        dst[y + j] = fr((lo - 16) * d);
        dst[y + j + 16] = fr((hi - 16) * d);
      }
    }
  }
}

/** The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes at `s`. */
function scaleMinK4(src: Uint8Array, s: number, j: number, out: { sc: number; m: number }): void {
  if (j < 4) {
    out.sc = src[s + j]! & 63;
    out.m = src[s + j + 4]! & 63;
  } else {
    out.sc = (src[s + j + 4]! & 15) | ((src[s + j - 4]! >> 6) << 4);
    out.m = (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4);
  }
}

function dequantQ4_K(src: Uint8Array, nBlocks: number, dst: Float32Array, at: number): void {
  const sm = { sc: 0, m: 0 };
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 144;
    const d = half(src, o);
    const dmin = half(src, o + 2);
    const scales = o + 4;
    let q = o + 16;
    let y = at + b * 256;
    for (let j = 0; j < 8; j += 2) {
      scaleMinK4(src, scales, j, sm);
      const d1 = fr(d * sm.sc);
      const m1 = fr(dmin * sm.m);
      scaleMinK4(src, scales, j + 1, sm);
      const d2 = fr(d * sm.sc);
      const m2 = fr(dmin * sm.m);
      for (let l = 0; l < 32; l++) dst[y + l] = fr(fr(d1 * (src[q + l]! & 15)) - m1);
      for (let l = 0; l < 32; l++) dst[y + 32 + l] = fr(fr(d2 * (src[q + l]! >> 4)) - m2);
      q += 32;
      y += 64;
    }
  }
}

function dequantQ5_K(src: Uint8Array, nBlocks: number, dst: Float32Array, at: number): void {
  const sm = { sc: 0, m: 0 };
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 176;
    const d = half(src, o);
    const dmin = half(src, o + 2);
    const scales = o + 4;
    const qh = o + 16;
    let ql = o + 48;
    let y = at + b * 256;
    for (let j = 0, bit = 0; j < 8; j += 2, bit += 2) {
      scaleMinK4(src, scales, j, sm);
      const d1 = fr(d * sm.sc);
      const m1 = fr(dmin * sm.m);
      scaleMinK4(src, scales, j + 1, sm);
      const d2 = fr(d * sm.sc);
      const m2 = fr(dmin * sm.m);
      for (let l = 0; l < 32; l++) {
        const h = src[qh + l]!;
        dst[y + l] = fr(fr(d1 * ((src[ql + l]! & 15) + (((h >> bit) & 1) << 4))) - m1);
        dst[y + 32 + l] = fr(fr(d2 * ((src[ql + l]! >> 4) + (((h >> (bit + 1)) & 1) << 4))) - m2);
      }
      ql += 32;
      y += 64;
    }
  }
}

function dequantQ6_K(src: Uint8Array, nBlocks: number, dst: Float32Array, at: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 210;
    const d = half(src, o + 208);
    for (let n = 0; n < 2; n++) {
      const ql = o + 64 * n;
      const qh = o + 128 + 32 * n;
      const sc = o + 192 + 8 * n;
      const y = at + b * 256 + 128 * n;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 15) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 15) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s = (k: number) => (src[sc + is + k]! << 24) >> 24; // int8
        dst[y + l] = fr(fr(d * s(0)) * q1);
        dst[y + l + 32] = fr(fr(d * s(2)) * q2);
        dst[y + l + 64] = fr(fr(d * s(4)) * q3);
        dst[y + l + 96] = fr(fr(d * s(6)) * q4);
      }
    }
  }
}

/** Type names readF32 can convert. */
export const DEQUANTIZABLE = new Set(['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K', 'MXFP4']);

/**
 * Dequantises `nBlocks` whole blocks of `type` from `src` (starting at byte 0) into `dst[at ..]`.
 * F32/F16/BF16 are handled by the caller.
 */
export function dequantizeBlocks(type: string, src: Uint8Array, nBlocks: number, dst: Float32Array, at: number): void {
  switch (type) {
    case 'Q8_0':
      dequantizeQ8_0(src, nBlocks * 32, 0, dst.subarray(at, at + nBlocks * 32));
      return;
    case 'Q4_0':
      dequantizeQ4_0(src, nBlocks * 32, 0, dst.subarray(at, at + nBlocks * 32));
      return;
    case 'Q4_1':
      return dequantQ4_1(src, nBlocks, dst, at);
    case 'Q5_0':
      return dequantQ5(src, nBlocks, dst, at, false);
    case 'Q5_1':
      return dequantQ5(src, nBlocks, dst, at, true);
    case 'Q4_K':
      return dequantQ4_K(src, nBlocks, dst, at);
    case 'Q5_K':
      return dequantQ5_K(src, nBlocks, dst, at);
    case 'Q6_K':
      return dequantQ6_K(src, nBlocks, dst, at);
    case 'MXFP4':
      dequantizeMXFP4(src, nBlocks * 32, 0, dst.subarray(at, at + nBlocks * 32));
      return;
    default:
      throw new InternalError(`ggml type ${type} cannot be dequantised`);
  }
}
