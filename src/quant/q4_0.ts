/**
 * GGUF Q4_0: blocks of 32 values, each 18 bytes = f16 scale d (little-endian) then 16 bytes of
 * nibbles: byte j holds element j in its low nibble and element j+16 in its high nibble;
 * value = (nibble - 8) * d. Quantisation follows ggml's reference (quantize_row_q4_0_ref):
 *   max = the value with the largest |x| (first one on ties), d = max / -8, id = d ? 1/d : 0,
 *   q = min(15, (int8)(x * id + 8.5))   (truncation toward zero)
 * with float32 arithmetic throughout and d stored as f16 rounded to nearest even.
 */
import { InternalError } from '../core/errors.js';
import { f16ToF32, f32ToF16 } from '../core/half.js';

export const QK4_0 = 32;
export const Q4_0_BLOCK_BYTES = 18;

/** Bytes of `n` values (n a multiple of 32) in Q4_0. */
export function q4_0Bytes(n: number): number {
  if (n % QK4_0 !== 0) throw new InternalError(`q4_0: ${n} values is not a multiple of ${QK4_0}`);
  return (n / QK4_0) * Q4_0_BLOCK_BYTES;
}

/** Quantises src (length a multiple of 32) into dst (fresh when left out) at dstOffset. */
export function quantizeQ4_0(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  const bytes = q4_0Bytes(src.length);
  const out = dst ?? new Uint8Array(bytes);
  if (out.length < dstOffset + bytes) throw new InternalError(`q4_0: destination holds ${out.length - dstOffset} bytes, need ${bytes}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0, nb = src.length / QK4_0; b < nb; b++) {
    const x0 = b * QK4_0;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = src[x0 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const o = dstOffset + b * Q4_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const a = Math.fround(src[x0 + j]! * id);
      const c = Math.fround(src[x0 + 16 + j]! * id);
      const qa = Math.min(15, Math.trunc(Math.fround(a + 8.5)));
      const qc = Math.min(15, Math.trunc(Math.fround(c + 8.5)));
      out[o + 2 + j] = qa | (qc << 4);
    }
  }
  return out;
}

/** Dequantises `n` values (a multiple of 32) from src at srcOffset: x = (nibble - 8) * f16(d). */
export function dequantizeQ4_0(src: Uint8Array, n: number, srcOffset = 0, dst?: Float32Array): Float32Array {
  const bytes = q4_0Bytes(n);
  if (src.length < srcOffset + bytes) throw new InternalError(`q4_0: source holds ${src.length - srcOffset} bytes, need ${bytes}`);
  const out = dst ?? new Float32Array(n);
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, nb = n / QK4_0; b < nb; b++) {
    const o = srcOffset + b * Q4_0_BLOCK_BYTES;
    const d = f16ToF32(view.getUint16(o, true));
    for (let j = 0; j < 16; j++) {
      const v = src[o + 2 + j]!;
      out[b * QK4_0 + j] = ((v & 0x0f) - 8) * d;
      out[b * QK4_0 + j + 16] = ((v >> 4) - 8) * d;
    }
  }
  return out;
}
