/**
 * GGUF Q8_0: blocks of 32 values, each 34 bytes = f16 scale d (little-endian) then 32 int8 q;
 * value = d * q. Quantisation follows ggml's reference (quantize_row_q8_0_ref) bit for bit:
 *   amax = max |x|, d = amax / 127 (float32), id = d ? 1/d : 0, q = roundf(x * id)
 * where roundf rounds half away from zero, and d is stored as f16 rounded to nearest even.
 * All arithmetic is float32 (Math.fround after each operation; double then float32 rounding is
 * exact for a single +, *, / of float32 operands).
 */
import { InternalError } from '../core/errors.js';
import { f16ToF32, f32ToF16 } from '../core/half.js';

export const QK8_0 = 32;
export const Q8_0_BLOCK_BYTES = 34;

/** Bytes of `n` values (n a multiple of 32) in Q8_0. */
export function q8_0Bytes(n: number): number {
  if (n % QK8_0 !== 0) throw new InternalError(`q8_0: ${n} values is not a multiple of ${QK8_0}`);
  return (n / QK8_0) * Q8_0_BLOCK_BYTES;
}

/** Rounds half away from zero (C roundf) a float32 value. */
function roundAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * Quantises src (length a multiple of 32; a row-major matrix whose rows are multiples of 32 gives
 * GGUF's row layout) into dst (a fresh array when left out) at dstOffset.
 */
export function quantizeQ8_0(src: Float32Array, dst?: Uint8Array, dstOffset = 0): Uint8Array {
  const bytes = q8_0Bytes(src.length);
  const out = dst ?? new Uint8Array(bytes);
  if (out.length < dstOffset + bytes) throw new InternalError(`q8_0: destination holds ${out.length - dstOffset} bytes, need ${bytes}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0, nb = src.length / QK8_0; b < nb; b++) {
    const x0 = b * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(src[x0 + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const o = dstOffset + b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < QK8_0; j++) view.setInt8(o + 2 + j, roundAway(Math.fround(src[x0 + j]! * id)));
  }
  return out;
}

/** Dequantises `n` values (a multiple of 32) from src at srcOffset: x = f16(d) * q in float32. */
export function dequantizeQ8_0(src: Uint8Array, n: number, srcOffset = 0, dst?: Float32Array): Float32Array {
  const bytes = q8_0Bytes(n);
  if (src.length < srcOffset + bytes) throw new InternalError(`q8_0: source holds ${src.length - srcOffset} bytes, need ${bytes}`);
  const out = dst ?? new Float32Array(n);
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, nb = n / QK8_0; b < nb; b++) {
    const o = srcOffset + b * Q8_0_BLOCK_BYTES;
    const d = f16ToF32(view.getUint16(o, true));
    for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = view.getInt8(o + 2 + j) * d;
  }
  return out;
}
