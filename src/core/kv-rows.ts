import { f16ToF32, f32ToF16 } from '../core/half.js';

/**
 * How K and V rows are stored in the cache:
 *   f32  : 4 bytes per value
 *   f16  : 2 bytes per value (IEEE half, saturating at +-65504)
 *   int8 : 1 byte per value plus one float32 scale per (slot, head) for K and one for V:
 *          scale = amax / 127, q = round-half-even(x / scale), value = scale * q
 */
export type KvDtype = 'f32' | 'f16' | 'int8';
export const KV_DTYPES: readonly KvDtype[] = ['f32', 'f16', 'int8'];

export type KvRows = Float32Array | Uint16Array | Int8Array;

/** Bytes one slot (K and V of one head) occupies. */
export function slotBytes(dtype: KvDtype, headDim: number): number {
  return dtype === 'f32' ? 8 * headDim : dtype === 'f16' ? 4 * headDim : 2 * headDim + 8;
}

const F16_MAX = 65504;

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Writes one row of d floats into slot `slot` of `dst` (and its scale for int8). */
export function storeRow(dtype: KvDtype, src: Float32Array, srcOffset: number, dst: KvRows, scales: Float32Array | null, slot: number, d: number): void {
  const o = slot * d;
  if (dtype === 'f32') {
    (dst as Float32Array).set(src.subarray(srcOffset, srcOffset + d), o);
  } else if (dtype === 'f16') {
    const u = dst as Uint16Array;
    for (let i = 0; i < d; i++) u[o + i] = f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, src[srcOffset + i]!)));
  } else {
    let amax = 0;
    for (let i = 0; i < d; i++) amax = Math.max(amax, Math.abs(src[srcOffset + i]!));
    const scale = Math.fround(amax / 127);
    const q = dst as Int8Array;
    for (let i = 0; i < d; i++) q[o + i] = scale > 0 ? Math.max(-127, Math.min(127, roundHalfEven(src[srcOffset + i]! / scale))) : 0;
    scales![slot] = scale;
  }
}

let halfTable: Float32Array | null = null;

/** All 65536 halves widened (for fast reads of f16 rows). */
export function f16Table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = f16ToF32(h);
  }
  return halfTable;
}

/** Reads row `slot` of `rows` as floats into out[outOffset ..]. */
export function loadRow(dtype: KvDtype, rows: KvRows, scales: Float32Array | null, slot: number, d: number, out: Float32Array, outOffset = 0): void {
  const o = slot * d;
  if (dtype === 'f32') {
    out.set((rows as Float32Array).subarray(o, o + d), outOffset);
  } else if (dtype === 'f16') {
    const t = f16Table();
    for (let i = 0; i < d; i++) out[outOffset + i] = t[(rows as Uint16Array)[o + i]!]!;
  } else {
    const s = scales![slot]!;
    for (let i = 0; i < d; i++) out[outOffset + i] = s * (rows as Int8Array)[o + i]!;
  }
}

/** The first n rows as one float32 array [n, d] (a view when stored as f32). */
export function rowsAsF32(dtype: KvDtype, rows: KvRows, scales: Float32Array | null, n: number, d: number): Float32Array {
  if (dtype === 'f32') return (rows as Float32Array).subarray(0, n * d);
  const out = new Float32Array(n * d);
  for (let j = 0; j < n; j++) loadRow(dtype, rows, scales, j, d, out, j * d);
  return out;
}
