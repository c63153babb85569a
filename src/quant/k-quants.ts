/**
 * GGUF Q4_K, Q5_K and Q6_K quantisation: superblocks of 256 values, written from the formats' definitions
 * (the layouts are spelled out in src/formats/gguf-quant.ts, which dequantises them). A plain
 * min/max quantiser, not llama.cpp's iterative search (make_qkx2 / make_qx): the blocks are valid and
 * decode as the format says, which is what test files and benchmarks need; the error is a little
 * larger than llama.cpp's quantiser would leave.
 *
 *   Q4_K  (144 B): half d, half dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
 *         Per sub-block j of 32: min_j = min(0, min x), scale_j = (max x - min_j) / 15; then
 *         d = max scale_j / 63, dmin = max(-min_j) / 63 (as f16); sc_j = round(scale_j / d),
 *         m_j = round(-min_j / dmin) (0..63); q = clamp(round((x + dmin m_j) / (d sc_j)), 0, 15).
 *   Q5_K  (176 B): Q4_K's header (d, dmin, 12 scale/min bytes), qh[32], qs[128]: Q4_K's quantiser
 *         with 31 levels instead of 15; value l of sub-block j keeps its low 4 bits in qs as Q4_K
 *         does and its fifth bit at bit j of qh[l].
 *   Q6_K  (210 B): ql[128], qh[64], i8 scales[16], half d.
 *         Per sub-block k of 16: s_k = the value of largest |x| / -32; d = the s_k of largest |s_k| / -128
 *         (as f16); sc_k = clamp(round(s_k / d), -128, 127); q = clamp(round(x / (d sc_k)), -32, 31) + 32.
 */
import { InternalError } from '../core/errors.js';
import { f16ToF32, f32ToF16 } from '../core/half.js';

export const QK_K = 256;
export const Q4_K_BLOCK_BYTES = 144;
export const Q5_K_BLOCK_BYTES = 176;
export const Q6_K_BLOCK_BYTES = 210;

function blocksOf(n: number, what: string): number {
  if (n % QK_K !== 0) throw new InternalError(`${what}: ${n} values is not a multiple of ${QK_K}`);
  return n / QK_K;
}

/** f32 -> f16 bits and the f16's value. */
function half(x: number): [number, number] {
  const h = f32ToF16(x);
  return [h, f16ToF32(h)];
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Quantises src (length a multiple of 256) to Q4_K into dst (fresh when left out) at dstOffset. */
export function quantizeQ4_K(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  return quantizeWithMins(src, 4, dst, dstOffset);
}

/** Quantises src (length a multiple of 256) to Q5_K into dst (fresh when left out) at dstOffset. */
export function quantizeQ5_K(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  return quantizeWithMins(src, 5, dst, dstOffset);
}

/** Q4_K (bits 4) or Q5_K (bits 5): the same header, sub-block scales and mins; Q5_K adds qh. */
function quantizeWithMins(src: Float32Array, bits: 4 | 5, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  const what = bits === 4 ? 'q4_k' : 'q5_k';
  const blockBytes = bits === 4 ? Q4_K_BLOCK_BYTES : Q5_K_BLOCK_BYTES;
  const levels = (1 << bits) - 1;
  const qs = bits === 4 ? 16 : 48;
  const nb = blocksOf(src.length, what);
  const out = dst ?? new Uint8Array(nb * blockBytes);
  if (out.length < dstOffset + nb * blockBytes) throw new InternalError(`${what}: destination too small`);
  const scale = new Float64Array(8);
  const min = new Float64Array(8);
  const sc = new Uint8Array(8);
  const mn = new Uint8Array(8);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = dstOffset + b * blockBytes;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let l = 0; l < 32; l++) {
        lo = Math.min(lo, x[32 * j + l]!);
        hi = Math.max(hi, x[32 * j + l]!);
      }
      min[j] = -lo;
      scale[j] = (hi - lo) / levels;
      maxScale = Math.max(maxScale, scale[j]!);
      maxMin = Math.max(maxMin, min[j]!);
    }
    const [dBits, d] = half(maxScale / 63);
    const [mBits, dmin] = half(maxMin / 63);
    for (let j = 0; j < 8; j++) {
      sc[j] = d > 0 ? clamp(Math.round(scale[j]! / d), 0, 63) : 0;
      mn[j] = dmin > 0 ? clamp(Math.round(min[j]! / dmin), 0, 63) : 0;
    }
    out[o] = dBits & 255;
    out[o + 1] = dBits >> 8;
    out[o + 2] = mBits & 255;
    out[o + 3] = mBits >> 8;
    // The 12 scale bytes: j < 4 in the low 6 bits of bytes j (scale) and j + 4 (min); j >= 4 split into
    // the low nibble (scale) / high nibble (min) of byte j + 4 and the top 2 bits of bytes j - 4 / j.
    const s = o + 4;
    for (let j = 0; j < 4; j++) {
      out[s + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
      out[s + j + 4] = mn[j]! | ((mn[j + 4]! >> 4) << 6);
      out[s + j + 8] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
    }
    if (bits === 5) out.fill(0, o + 16, o + 48);
    for (let j = 0; j < 8; j++) {
      const dj = Math.fround(d * sc[j]!);
      const mj = Math.fround(dmin * mn[j]!);
      const q = o + qs + 32 * (j >> 1);
      const shift = (j & 1) * 4;
      for (let l = 0; l < 32; l++) {
        const v = dj > 0 ? clamp(Math.round((x[32 * j + l]! + mj) / dj), 0, levels) : 0;
        out[q + l] = (shift === 0 ? out[q + l]! & 0xf0 : out[q + l]! & 0x0f) | ((v & 15) << shift);
        if (bits === 5) out[o + 16 + l] = out[o + 16 + l]! | ((v >> 4) << j);
      }
    }
  }
  return out;
}

/** Quantises src (length a multiple of 256) to Q6_K into dst (fresh when left out) at dstOffset. */
export function quantizeQ6_K(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  const nb = blocksOf(src.length, 'q6_k');
  const out = dst ?? new Uint8Array(nb * Q6_K_BLOCK_BYTES);
  if (out.length < dstOffset + nb * Q6_K_BLOCK_BYTES) throw new InternalError(`q6_k: destination too small`);
  const s = new Float64Array(16);
  const q = new Int8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = dstOffset + b * Q6_K_BLOCK_BYTES;
    let big = 0;
    for (let k = 0; k < 16; k++) {
      let m = 0;
      for (let l = 0; l < 16; l++) if (Math.abs(x[16 * k + l]!) > Math.abs(m)) m = x[16 * k + l]!;
      s[k] = m / -32;
      if (Math.abs(s[k]!) > Math.abs(big)) big = s[k]!;
    }
    const [dBits, d] = half(big / -128);
    for (let k = 0; k < 16; k++) {
      const sck = d !== 0 ? clamp(Math.round(s[k]! / d), -128, 127) : 0;
      out[o + 192 + k] = sck & 255;
      const dk = Math.fround(d * sck);
      for (let l = 0; l < 16; l++) q[16 * k + l] = dk !== 0 ? clamp(Math.round(x[16 * k + l]! / dk), -32, 31) : 0;
    }
    out[o + 208] = dBits & 255;
    out[o + 209] = dBits >> 8;
    // Half n, value 32k + l: low 4 bits into ql[64n + 32 (k & 1) + l] (k < 2 low nibble, else high),
    // high 2 bits into qh[32n + l] at bit 2k.
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) {
        let h = 0;
        for (let k = 0; k < 4; k++) {
          const v = q[128 * n + 32 * k + l]! + 32;
          const at = o + 64 * n + 32 * (k & 1) + l;
          if (k < 2) out[at] = (out[at]! & 0xf0) | (v & 15);
          else out[at] = (out[at]! & 0x0f) | ((v & 15) << 4);
          h |= (v >> 4) << (2 * k);
        }
        out[o + 128 + 32 * n + l] = h;
      }
    }
  }
  return out;
}
