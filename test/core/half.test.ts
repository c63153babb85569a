import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bf16ArrayToF32, bf16ToF32, f16ArrayToF32, f16ToF32, f32ArrayToBf16, f32ArrayToF16, f32ToBf16, f32ToF16 } from '../../src/core/half.js';
import { rng } from '../helpers.js';

/**
 * Independent reference: round |x| to a binary format with `p` stored mantissa bits and exponent range
 * [emin, emax] by plain arithmetic on doubles (ties to even), returning the rounded value.
 */
function refRound(x: number, p: number, emin: number, emax: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  e = Math.max(e, emin);
  const ulp = 2 ** (e - p);
  const q = a / ulp;
  const f = Math.floor(q);
  const d = q - f;
  const r = (d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f) * ulp;
  const out = r >= 2 ** (emax + 1) ? Infinity : r;
  return x < 0 ? -out : out;
}
const refF16 = (x: number) => refRound(x, 10, -14, 15);
const refBf16 = (x: number) => refRound(x, 7, -126, 127);


const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function fromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

test('f16ToF32 decodes hand-checked bit patterns (normals, subnormals, zeros, inf, nan)', () => {
  const cases: [number, number][] = [
    [0x0000, 0],
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8200, -(2 ** -15)],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [h, v] of cases) assert.equal(f16ToF32(h), v, `0x${h.toString(16)}`);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.ok(Number.isNaN(f16ToF32(0xfc01)));
});

test('bf16ToF32 decodes hand-checked bit patterns', () => {
  const cases: [number, number][] = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x3e80, 0.25],
    [0x4049, 3.140625],
    [0x7f7f, 3.3895313892515355e38],
    [0x0080, 2 ** -126],
    [0x0001, 2 ** -133], // subnormal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ];
  for (const [h, v] of cases) assert.equal(bf16ToF32(h), v, `0x${h.toString(16)}`);
  assert.ok(Object.is(bf16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(bf16ToF32(0x7fc0)));
});

test('f32ToF16 / f32ToBf16 round hand-checked values to nearest even', () => {
  assert.equal(f32ToF16(1), 0x3c00);
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie, 1.0 is even
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie, rounds up to the even 1 + 2^-9
  assert.equal(f32ToF16(65519), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00); // halfway to 2^16 rounds to even = infinity
  assert.equal(f32ToF16(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal
  assert.equal(f32ToF16(3e-8), 0x0001);
  assert.equal(f32ToF16(1.5 * 2 ** -24), 0x0002);
  assert.equal(f32ToF16(2.5 * 2 ** -24), 0x0002);
  assert.equal(f32ToF16(1e-8), 0x0000);
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(-Infinity), 0xfc00);
  const nan = f32ToF16(NaN);
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0);

  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80);
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16(3.14159), 0x4049);
  assert.equal(f32ToBf16(fromBits(0x7f7fffff)), 0x7f80); // float32 max rounds to infinity
  assert.equal(f32ToBf16(-0), 0x8000);
  const bnan = f32ToBf16(NaN);
  assert.ok((bnan & 0x7f80) === 0x7f80 && (bnan & 0x7f) !== 0);
});

test('every half and every bfloat16 survives a widen-narrow round trip; bulk widening matches scalar bit for bit', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const wideH = new Float32Array(65536);
  const wideB = new Float32Array(65536);
  f16ArrayToF32(all, wideH);
  bf16ArrayToF32(all, wideB);
  const wideHBits = new Uint32Array(wideH.buffer);
  const wideBBits = new Uint32Array(wideB.buffer);
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    if (Number.isNaN(v)) {
      // NaN payload kept: sign, all-ones exponent, mantissa shifted up by 13
      assert.equal(wideHBits[h], (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0);
    } else {
      assert.ok(Object.is(wideH[h], v), `f16 0x${h.toString(16)}`);
      assert.equal(f32ToF16(v), h);
    }
    assert.equal(wideBBits[h], (h << 16) >>> 0);
    const b = bf16ToF32(h);
    if (!Number.isNaN(b)) assert.equal(f32ToBf16(b), h);
  }
});

test('midpoints between adjacent halves / bfloat16s round to the even one; their neighbours round away', () => {
  const check = (lo: number, hi: number, toBits: (x: number) => number, decode: (h: number) => number, inf: number, top: number) => {
    // The value just past the largest finite one is the power of two the exponent would reach next.
    const mid = (decode(lo) + (hi === inf ? top : decode(hi))) / 2; // exact in float32 (one more significant bit)
    assert.equal(Math.fround(mid), mid);
    const even = (lo & 1) === 0 ? lo : hi;
    const want = hi === inf ? inf : even;
    assert.equal(toBits(mid), want, `mid of 0x${lo.toString(16)}`);
    assert.equal(toBits(-mid), want | 0x8000);
    assert.equal(toBits(fromBits(bitsOf(mid) + 1)), hi); // just above (positive: bits grow with value)
    assert.equal(toBits(fromBits(bitsOf(mid) - 1)), lo);
  };
  for (let h = 0; h < 0x7c00; h++) check(h, h + 1, f32ToF16, f16ToF32, 0x7c00, 2 ** 16);
  for (let h = 0; h < 0x7f80; h++) check(h, h + 1, f32ToBf16, bf16ToF32, 0x7f80, 2 ** 128);
});

test('narrowing matches an arithmetic reference on random float32 bit patterns, scalar and bulk', () => {
  const rand = rng(12345);
  const n = 100_000;
  const xs = new Float32Array(n);
  const bits = new Uint32Array(xs.buffer);
  for (let i = 0; i < n; i++) bits[i] = Math.floor(rand() * 2 ** 32);
  // Also dense samples near the half range, where most interesting rounding happens.
  for (let i = 0; i < n / 2; i++) xs[i] = (rand() - 0.5) * 2 ** Math.floor(rand() * 44 - 28);
  const h = new Uint16Array(n);
  const b = new Uint16Array(n);
  f32ArrayToF16(xs, h);
  f32ArrayToBf16(xs, b);
  for (let i = 0; i < n; i++) {
    const x = xs[i]!;
    assert.equal(h[i], f32ToF16(x));
    assert.equal(b[i], f32ToBf16(x));
    if (Number.isNaN(x)) continue;
    assert.ok(Object.is(f16ToF32(h[i]!), refF16(x)), `f16 of ${x}`);
    assert.ok(Object.is(bf16ToF32(b[i]!), refBf16(x)), `bf16 of ${x}`);
  }
  // Offsets into the source are honoured.
  const part = new Uint16Array(10);
  f32ArrayToF16(xs, part, 500);
  assert.deepEqual([...part], [...h.subarray(500, 510)]);
});
