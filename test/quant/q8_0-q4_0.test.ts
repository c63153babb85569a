// Q8_0 / Q4_0 quantisers against blocks worked out by hand from the GGUF/ggml definitions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantizeQ8_0, dequantizeQ8_0, q8_0Bytes } from '../../src/quant/q8_0.js';
import { quantizeQ4_0, dequantizeQ4_0, q4_0Bytes } from '../../src/quant/q4_0.js';
import { f16ToF32 } from '../../src/core/half.js';
import { InternalError } from '../../src/core/errors.js';
import { rng, randArray } from '../backend/wasm/helpers.js';

function block(values: number[]): Float32Array {
  const b = new Float32Array(32);
  b.set(values);
  return b;
}

/** Expected Q8_0 block bytes: f16 scale bits (LE) then q as int8. */
function q8Bytes(scaleBits: number, q: number[]): number[] {
  const out = [scaleBits & 0xff, scaleBits >> 8];
  for (let j = 0; j < 32; j++) out.push((q[j] ?? 0) & 0xff);
  return out;
}

test('q8_0: hand-computed blocks (d = amax/127 as f16, q = roundf(x/d) half away from zero)', () => {
  // d = 127/127 = 1 (f16 0x3c00); ties round away from zero: 0.5 -> 1, 2.5 -> 3, -126.5 -> -127.
  const a = block([127, 0.5, -0.5, 2.5, -2.5, 1.49, -1.51, 0, 3.5, -126.5, 100.25, -0.49]);
  // d = 63.5/127 = 0.5 (0x3800), 1/d = 2.
  const b = block([63.5, 0.25, -0.25, 0.75, 1.25, -63.5, 10, 0.2]);
  // all zero: d = 0, id = 0.
  const c = block([]);
  // d = 1/127 -> f16 0x2008 (2^-7 * (1 + 8/1024)); 1/d rounds to 127 in float32, so 0.5 -> 63.5 -> 64.
  const dBlk = block([1, -1, 0.5, 0.25]);
  const x = new Float32Array(128);
  x.set(a, 0);
  x.set(b, 32);
  x.set(c, 64);
  x.set(dBlk, 96);
  const got = quantizeQ8_0(x);
  assert.equal(got.length, 4 * 34);
  const want = [
    ...q8Bytes(0x3c00, [127, 1, -1, 3, -3, 1, -2, 0, 4, -127, 100, 0]),
    ...q8Bytes(0x3800, [127, 1, -1, 2, 3, -127, 20, 0]),
    ...q8Bytes(0x0000, []),
    ...q8Bytes(0x2008, [127, -127, 64, 32]),
  ];
  assert.deepEqual(Array.from(got), want);

  // Dequantisation: x = f16(d) * q.
  const back = dequantizeQ8_0(got, 128);
  assert.equal(back[0], 127);
  assert.equal(back[3], 3);
  assert.equal(back[32 + 3], 1);
  assert.equal(back[32 + 6], 10);
  const d16 = 2 ** -7 * (1 + 8 / 1024);
  assert.equal(back[96], Math.fround(127 * d16));
  assert.equal(back[98], Math.fround(64 * d16));
  assert.equal(back[99], Math.fround(32 * d16));
});

test('q4_0: hand-computed blocks (d = max/-8, q = min(15, trunc(x/d + 8.5)), low nibbles first)', () => {
  // max = -8 -> d = 1 (0x3c00). Elements j and j+16 share byte j (j low, j+16 high).
  const e = block([-8, 7, 7.9, 0, -0.5, -0.6, 0.49, 0.5, 3, -3]);
  e.set([1, -1, 2.5, -7.5], 16);
  // max = +4 (first of |4| = |-4|) -> d = -0.5 (0xb800), id = -2.
  const f = block([4, -4, 1, -3.5, 0.3]);
  // all zero: max = 0 -> d = 0 / -8 = -0 -> f16 0x8000; q = 8.
  const z = block([]);
  const x = new Float32Array(96);
  x.set(e, 0);
  x.set(f, 32);
  x.set(z, 64);
  const got = quantizeQ4_0(x);
  const want = [
    0x00, 0x3c, 0x90, 0x7f, 0xbf, 0x18, 0x88, 0x87, 0x88, 0x89, 0x8b, 0x85, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
    0x00, 0xb8, 0x80, 0x8f, 0x86, 0x8f, 0x87, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
    0x00, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
  ];
  assert.deepEqual(Array.from(got), want);

  const back = dequantizeQ4_0(got, 96);
  // (q - 8) * d
  assert.deepEqual(Array.from(back.subarray(0, 4)), [-8, 7, 7, 0]);
  assert.deepEqual(Array.from(back.subarray(16, 20)), [1, -1, 3, -7]);
  assert.deepEqual(Array.from(back.subarray(32, 37)), [4, -3.5, 1, -3.5, 0.5]);
  assert.ok(back.subarray(64).every((v) => v === 0));
});

test('q8_0 / q4_0: random round trips stay within half a step and re-quantise to the same bytes', () => {
  const r = rng(7);
  for (const scale of [1e-3, 0.7, 50]) {
    const x = randArray(r, 32 * 33, scale);
    x[5] = 0; // a zero and a full-scale value in one block
    x[6] = -scale;

    const q8 = quantizeQ8_0(x);
    assert.equal(q8.length, q8_0Bytes(x.length));
    const y8 = dequantizeQ8_0(q8, x.length);
    for (let b = 0; b < x.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      const d = Math.fround(amax / 127);
      const d16 = f16ToF32(q8[b * 34]! | (q8[b * 34 + 1]! << 8));
      const tol = d / 2 + 127 * Math.abs(d16 - d) + 1e-6 * d;
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        assert.ok(Math.abs(y8[i]! - x[i]!) <= tol, `q8_0 scale ${scale} element ${i}: ${y8[i]} vs ${x[i]}`);
      }
    }
    assert.deepEqual(quantizeQ8_0(y8), q8, 'q8_0 re-quantisation');

    const q4 = quantizeQ4_0(x);
    assert.equal(q4.length, q4_0Bytes(x.length));
    const y4 = dequantizeQ4_0(q4, x.length);
    for (let b = 0; b < x.length / 32; b++) {
      const d16 = Math.abs(f16ToF32(q4[b * 18]! | (q4[b * 18 + 1]! << 8)));
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        // One step is |d|; the clamp at 15 costs at most one more step, f16 rounding of d 8 * 2^-11 |d|.
        assert.ok(Math.abs(y4[i]! - x[i]!) <= 1.01 * d16, `q4_0 scale ${scale} element ${i}: ${y4[i]} vs ${x[i]}`);
      }
    }
    assert.deepEqual(quantizeQ4_0(y4), q4, 'q4_0 re-quantisation');
  }
});

test('q8_0 / q4_0: lengths that are not whole blocks are refused', () => {
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), (e: unknown) => e instanceof InternalError && /q8_0: 33 values/.test(e.message));
  assert.throws(() => quantizeQ4_0(new Float32Array(31)), (e: unknown) => e instanceof InternalError && /q4_0: 31 values/.test(e.message));
  assert.throws(() => dequantizeQ8_0(new Uint8Array(33), 32), /source holds 33 bytes, need 34/);
});
