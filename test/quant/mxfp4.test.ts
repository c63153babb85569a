// MXFP4 blocks against values worked out by hand from the OCP MX definition and ggml's layout (block_mxfp4:
// e, then qs[16] with element j in the low nibble of qs[j] and element j + 16 in the high nibble).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  dequantizeMXFP4, e2m1, e8m0Half, mxfp4BlockFinite, mxfp4Bytes, mxfp4ScaleExponent, nearestE2M1, quantizeMXFP4, MXFP4_BLOCK_BYTES,
} from '../../src/quant/mxfp4.js';
import { InternalError } from '../../src/core/errors.js';
import { rng } from '../helpers.js';

function block(values: number[]): Float32Array {
  const b = new Float32Array(32);
  b.set(values);
  return b;
}

/** Expected block bytes: e, then the 32 codes packed (j low, j + 16 high). */
function packed(e: number, codes: number[]): number[] {
  const out = [e];
  for (let j = 0; j < 16; j++) out.push((codes[j] ?? 0) | ((codes[j + 16] ?? 0) << 4));
  return out;
}

test('mxfp4: E2M1 codes and E8M0 scales', () => {
  assert.deepEqual([...Array(16).keys()].map(e2m1), [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]);
  assert.equal(e8m0Half(128), 1);
  assert.equal(e8m0Half(127), 0.5);
  assert.equal(e8m0Half(0), 2 ** -128); // a float32 subnormal, exact
  assert.equal(e8m0Half(1), 2 ** -127);
  assert.equal(e8m0Half(255), 2 ** 127);
  assert.equal(mxfp4Bytes(64), 34);
  assert.throws(() => mxfp4Bytes(33), InternalError);
});

test('mxfp4: nearest E2M1 value, ties to the even code, saturating at 6', () => {
  const cases: [number, number][] = [
    [0, 0], [-0, 0], [0.1, 0], [0.25, 0], [0.26, 1], [0.5, 1], [0.75, 2], [-0.75, 10], [1.25, 2], [1.3, 3], [1.75, 4], [2.5, 4],
    [2.51, 5], [3.5, 6], [-3.5, 14], [4.9, 6], [5, 6], [5.01, 7], [6, 7], [100, 7], [-100, 15], [-0.1, 0],
  ];
  for (const [v, c] of cases) assert.equal(nearestE2M1(v), c, `${v}`);
});

test('mxfp4: the scale exponent is the smallest that maps the absmax to 6 or less', () => {
  assert.equal(mxfp4ScaleExponent(0), 0);
  assert.equal(mxfp4ScaleExponent(6), 127); // 6 / 2^0 = 6
  assert.equal(mxfp4ScaleExponent(3), 126); // 3 / 2^-1 = 6
  assert.equal(mxfp4ScaleExponent(3.0000002), 127);
  assert.equal(mxfp4ScaleExponent(12), 128);
  assert.equal(mxfp4ScaleExponent(6 * 2 ** -127), 0);
  assert.equal(mxfp4ScaleExponent(1e-45), 0); // below the smallest scale: e = 0 (the value rounds to 0 there)
  assert.equal(mxfp4ScaleExponent(3e38), 253); // 6 * 2^126 > the largest float32: 253 is the most a finite amax needs
});

test('mxfp4: hand-computed blocks (quantise and dequantise)', () => {
  // A: amax 6 -> e = 127 (scale 1): every value rounds to its nearest E2M1 value.
  const a = block([6, -6, 0.5, -0.5, 1.25, 1.75, 0.25, 0.75, 2.5, 3.5, 5, -5, 0.3, -2.9, 1.5, -0.1, 4, 3, -1, 2]);
  const aCodes = [7, 15, 1, 9, 2, 4, 0, 2, 4, 6, 6, 14, 1, 13, 3, 0, 6, 5, 10, 4];
  const aValues = [6, -6, 0.5, -0.5, 1, 2, 0, 1, 2, 4, 4, -4, 0.5, -3, 1.5, 0, 4, 3, -1, 2];
  // B: amax 12 -> e = 128 (scale 2): 7 -> 3.5 -> 4 (code 6) -> 8; -1 -> -0.5 (code 9) -> -1; 2.9 -> 1.45 -> 1.5 (code 3) -> 3.
  const b = block([12, -1, 7, 0.4, 2.9]);
  const bCodes = [7, 9, 6, 0, 3];
  const bValues = [12, -1, 8, 0, 3];
  // C: all zero -> e = 0, codes 0.
  const c = block([]);
  // D: tiny values -> e = 0 (scale 2^-127): 6 * 2^-127 is code 7, 2^-128 code 1 (0.5): subnormal floats, exact.
  const d = block([6 * 2 ** -127, -(2 ** -128)]);
  const x = new Float32Array(128);
  x.set(a, 0);
  x.set(b, 32);
  x.set(c, 64);
  x.set(d, 96);
  const got = quantizeMXFP4(x);
  assert.equal(got.length, 4 * MXFP4_BLOCK_BYTES);
  const want = [...packed(127, aCodes), ...packed(128, bCodes), ...packed(0, []), ...packed(0, [7, 9])];
  assert.deepEqual([...got], want);
  const back = dequantizeMXFP4(got, 128);
  const wantValues = new Float32Array(128);
  wantValues.set(aValues, 0);
  wantValues.set(bValues, 32);
  wantValues.set([6 * 2 ** -127, -(2 ** -128)], 96);
  assert.deepEqual([...back].map((v) => v + 0), [...wantValues]); // (+0 folds the -0 of code 8, never written)
  // into a destination at an offset
  const dst = new Uint8Array(3 + 2 * MXFP4_BLOCK_BYTES);
  quantizeMXFP4(x.subarray(0, 64), dst, 3);
  assert.deepEqual([...dst.subarray(3)], want.slice(0, 2 * MXFP4_BLOCK_BYTES));
  assert.throws(() => quantizeMXFP4(new Float32Array(31)), InternalError);
  assert.throws(() => quantizeMXFP4(x, new Uint8Array(10)), InternalError);
});

test('mxfp4: the nibble order and extreme scales of stored blocks (ggml: e = 0 subnormal, e = 255 not NaN)', () => {
  const bytes = new Uint8Array(3 * MXFP4_BLOCK_BYTES);
  // block 0: e = 130 (scale 8); qs[0] = 0xF1: element 0 = code 1 (0.5 * 8 = 4), element 16 = code 15 (-6 * 8 = -48)
  bytes[0] = 130;
  bytes[1] = 0xf1;
  bytes[16] = 0x3a; // element 15 = code 10 (-1 * 8), element 31 = code 3 (1.5 * 8)
  // block 1: e = 0: code 1 -> 0.5 * 2^-127 = 2^-128
  bytes[17] = 0;
  bytes[18] = 0x01;
  // block 2: e = 255: code 1 -> 2^127 (finite), code 2 -> 2^128 = infinity in float32, as ggml computes it
  bytes[34] = 255;
  bytes[35] = 0x21;
  const v = dequantizeMXFP4(bytes, 96);
  assert.equal(v[0], 4);
  assert.equal(v[16], -48);
  assert.equal(v[15], -8);
  assert.equal(v[31], 12);
  assert.equal(v[32], 2 ** -128);
  assert.equal(v[64], 2 ** 127);
  assert.equal(v[80], Infinity);
  assert.equal(mxfp4BlockFinite(bytes, 0), true);
  assert.equal(mxfp4BlockFinite(bytes, 1), true);
  assert.equal(mxfp4BlockFinite(bytes, 2), false);
  // e = 252: 6 * 2^125 is finite; e = 253: 3 * 2^126 is, 6 * 2^126 = 1.5 * 2^128 is not; e = 254: 1.5 * 2^127 is, 2 * 2^127 not
  const big = new Uint8Array(MXFP4_BLOCK_BYTES);
  big[0] = 252;
  big[1] = 0x07;
  assert.equal(mxfp4BlockFinite(big, 0), true);
  big[0] = 253;
  assert.equal(mxfp4BlockFinite(big, 0), false);
  big[1] = 0x50;
  assert.equal(mxfp4BlockFinite(big, 0), true);
  big[0] = 254;
  assert.equal(mxfp4BlockFinite(big, 0), false);
  big[1] = 0x03;
  assert.equal(mxfp4BlockFinite(big, 0), true);
});

test('mxfp4: random blocks round to the nearest representable value (brute force over the 16 codes)', () => {
  const r = rng(7);
  const n = 32 * 64;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (r() * 2 - 1) * 10 ** (r() * 8 - 4);
  const q = quantizeMXFP4(x);
  const back = dequantizeMXFP4(q, n);
  for (let b = 0; b < n / 32; b++) {
    const scale = 2 ** (q[b * MXFP4_BLOCK_BYTES]! - 127);
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    assert.ok(amax <= 6 * scale && amax > 3 * scale, `block ${b}: amax ${amax} scale ${scale}`);
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      let best = Infinity;
      for (let c = 0; c < 16; c++) best = Math.min(best, Math.abs(e2m1(c) * scale - v));
      assert.equal(Math.abs(back[b * 32 + j]! - v), best, `block ${b} value ${j}`);
    }
  }
});
