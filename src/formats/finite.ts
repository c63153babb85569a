/**
 * Non-finite values (NaN, infinities) in checkpoint data. A weight that is not finite makes every logit
 * NaN, so the model loader (src/model/weights.ts) checks each tensor as it comes out of the file (float32
 * values or the stored bytes handed to a backend) and refuses it naming the tensor and the element. The
 * readers themselves return what the file holds.
 *
 * The scans run on every weight at load, so they look at exponent bits only, a 32-bit word at a time:
 * a float is non-finite exactly when its exponent field is all ones. For f32 words, (w & 0x7f800000) +
 * 0x00800000 carries into bit 31 only then; for two halves in a word the same sum per 16-bit lane
 * carries into bit 15 of that lane and never into the next (bf16: exponent 0x7f80, f16: 0x7c00).
 * The results are OR-ed over a run with no branch, and only a run that has one is searched again.
 * Quantised blocks are finite when their f16 scales are (their other fields are small integers); an MXFP4
 * block (a power-of-two scale, no f16) when its largest value does not overflow float32.
 */
import { KvsieveError } from '../core/errors.js';
import { quoted } from '../core/describe.js';
import { GGML_TYPE_BY_NAME } from './gguf-format.js';
import { mxfp4BlockFinite, MXFP4_BLOCK_BYTES } from '../quant/mxfp4.js';

/** Words OR-ed between two looks at the accumulator. */
const RUN = 4096;

/** Exponent mask and carry of one lane, per element type, and the lanes per 32-bit word. */
const LANES = {
  F32: { mask: 0x7f800000, carry: 0x00800000, top: 0x80000000, per: 1 },
  BF16: { mask: 0x7f807f80, carry: 0x00800080, top: 0x80008000, per: 2 },
  F16: { mask: 0x7c007c00, carry: 0x04000400, top: 0x80008000, per: 2 },
} as const;

export type FloatType = keyof typeof LANES;

/** Whether element `i` of `bytes` (type `t`, little endian) is NaN or infinite. */
function elementNonFinite(bytes: Uint8Array, t: FloatType, i: number): boolean {
  if (t === 'F32') return (bytes[4 * i + 3]! & 0x7f) === 0x7f && (bytes[4 * i + 2]! & 0x80) === 0x80;
  const h = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
  return t === 'BF16' ? (h & 0x7f80) === 0x7f80 : (h & 0x7c00) === 0x7c00;
}

/** Index of the first non-finite element of `bytes` (elements of type `t`), or -1. */
export function firstNonFinite(bytes: Uint8Array, t: FloatType): number {
  const size = t === 'F32' ? 4 : 2;
  const count = Math.floor(bytes.byteLength / size);
  const { mask, carry, top, per } = LANES[t];
  // Whole aligned words through the fast path; a misaligned start or a tail element one by one.
  const aligned = bytes.byteOffset % 4 === 0;
  const words = aligned ? Math.floor(bytes.byteLength / 4) : 0;
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
  for (let start = 0; start < words; start += RUN) {
    const end = Math.min(words, start + RUN);
    // eight words a round into two accumulators: about 5 GB/s in V8, twice a one-word loop
    let a = 0;
    let b = 0;
    let i = start;
    for (; i + 8 <= end; i += 8) {
      a |= ((w[i]! & mask) + carry) | ((w[i + 1]! & mask) + carry) | ((w[i + 2]! & mask) + carry) | ((w[i + 3]! & mask) + carry);
      b |= ((w[i + 4]! & mask) + carry) | ((w[i + 5]! & mask) + carry) | ((w[i + 6]! & mask) + carry) | ((w[i + 7]! & mask) + carry);
    }
    for (; i < end; i++) a |= (w[i]! & mask) + carry;
    if (((a | b) & top) !== 0) {
      for (let e = start * per; e < end * per; e++) if (elementNonFinite(bytes, t, e)) return e;
    }
  }
  for (let e = words * per; e < count; e++) if (elementNonFinite(bytes, t, e)) return e;
  return -1;
}

/**
 * Byte offsets of the f16 scale fields inside one block of a ggml quantised type, for the types kvsieve
 * reads (gguf-quant.ts has the layouts); a type missing here has no check.
 */
const BLOCK_SCALES: Record<string, readonly number[]> = {
  Q4_0: [0],
  Q4_1: [0, 2],
  Q5_0: [0],
  Q5_1: [0, 2],
  Q8_0: [0],
  Q4_K: [0, 2],
  Q5_K: [0, 2],
  Q6_K: [208],
};

/** Index of the first block of `bytes` (whole blocks of `typeSize` bytes) with a non-finite scale, or -1. */
export function firstNonFiniteBlock(bytes: Uint8Array, type: string, typeSize: number): number {
  if (type === 'MXFP4') return firstNonFiniteMxfp4(bytes);
  const at = BLOCK_SCALES[type];
  if (!at) return -1;
  const blocks = Math.floor(bytes.byteLength / typeSize);
  // Per scale field, the high byte of each block's half: exponent bits 0x7c all ones (+ 0x04 carries
  // into 0x80) only for an infinity or a NaN; OR-ed over a run of blocks, searched only when set.
  for (const s of at) {
    const hi = s + 1;
    for (let start = 0; start < blocks; start += RUN) {
      const end = Math.min(blocks, start + RUN);
      let acc = 0;
      for (let o = start * typeSize + hi, stop = end * typeSize; o < stop; o += typeSize) acc |= (bytes[o]! & 0x7c) + 0x04;
      if ((acc & 0x80) !== 0) {
        for (let b = start; b < end; b++) if ((bytes[b * typeSize + hi]! & 0x7c) === 0x7c) return firstAcross(bytes, at, typeSize, b);
      }
    }
  }
  return -1;
}

/**
 * MXFP4: a block with scale byte e < 253 is finite whatever its codes (at most 6 * 2^125); the scale bytes
 * are OR-ed as e + 3 (bit 8 set only from 253 on) over a run, and only a run with one is looked at closely.
 */
function firstNonFiniteMxfp4(bytes: Uint8Array): number {
  const blocks = Math.floor(bytes.byteLength / MXFP4_BLOCK_BYTES);
  for (let start = 0; start < blocks; start += RUN) {
    const end = Math.min(blocks, start + RUN);
    let acc = 0;
    for (let o = start * MXFP4_BLOCK_BYTES, stop = end * MXFP4_BLOCK_BYTES; o < stop; o += MXFP4_BLOCK_BYTES) acc |= bytes[o]! + 3;
    if ((acc & 0x100) !== 0) {
      for (let b = start; b < end; b++) if (!mxfp4BlockFinite(bytes, b)) return b;
    }
  }
  return -1;
}

/** The first block at or before `b` with any non-finite scale field (fields are scanned one at a time). */
function firstAcross(bytes: Uint8Array, at: readonly number[], typeSize: number, b: number): number {
  for (let k = 0; k <= b; k++) for (const s of at) if ((bytes[k * typeSize + s + 1]! & 0x7c) === 0x7c) return k;
  return b;
}

/** Where element `index` of a tensor of `shape` lies, for messages: "row 3, column 12" or "element 7". */
export function elementPlace(index: number, shape: readonly number[]): string {
  const cols = shape.length >= 2 ? shape[shape.length - 1]! : 0;
  return cols > 0 ? `row ${Math.floor(index / cols)}, column ${index % cols}` : `element ${index}`;
}

/** The error for a non-finite value (or block scale) found in a tensor. */
export function nonFiniteError(file: string, name: string, index: number, shape: readonly number[], what = 'value'): KvsieveError {
  return new KvsieveError(`${file}: tensor ${quoted(name)} has a non-finite ${what} (NaN or infinity) at ${elementPlace(index, shape)}`);
}

/** Throws when the float32 values of tensor `name` hold a NaN or an infinity. */
export function checkFiniteF32(values: Float32Array, file: string, name: string, shape: readonly number[]): void {
  const i = firstNonFinite(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 'F32');
  if (i >= 0) throw nonFiniteError(file, name, i, shape);
}

/**
 * Throws when the stored bytes of tensor `name` (element type `type`, ggml's names: F32, F16, BF16,
 * Q8_0, ...) hold a NaN or an infinity, or for block types a non-finite scale.
 */
export function checkFiniteStored(bytes: Uint8Array, type: string, file: string, name: string, shape: readonly number[]): void {
  if (type === 'F32' || type === 'F16' || type === 'BF16') {
    const i = firstNonFinite(bytes, type);
    if (i >= 0) throw nonFiniteError(file, name, i, shape);
    return;
  }
  const t = GGML_TYPE_BY_NAME.get(type);
  if (!t) return;
  const b = firstNonFiniteBlock(bytes, t.name, t.typeSize);
  if (b >= 0) throw nonFiniteError(file, name, b * t.blockSize, shape, `${t.name} block scale`);
}
