// Weight conversion in the kernels (op.quantize, asm/quant.ts) and matrixFromF32, which runs it, against
// the JS reference conversions, byte for byte: quantizeQ8_0 / quantizeQ4_0 (src/quant) and
// f32ArrayToF16 / f32ArrayToBf16 (src/formats/half.ts). Random data of odd shapes, adversarial blocks
// (zeros, signed zeros, lone values, exact rounding ties, float32 subnormals, values at the f16 and
// f32 limits, infinities and NaNs), every float32 exponent for f16/bf16, windows and tails, a matrix
// of more than one scratch piece; on one and two threads and on both kernel builds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { repoRoot } from '../../helpers.js';
import { kernels, rng, randArray } from './helpers.js';
import { createKernels } from '../../../src/backend/wasm/node.js';
import type { WeightType } from '../../../src/backend/wasm/abi.js';
import { QUANTIZE_PIECE, type Kernels } from '../../../src/backend/wasm/kernels.js';
import { op } from '../../../src/backend/wasm/ops.js';
import { quantizeQ8_0 } from '../../../src/quant/q8_0.js';
import { quantizeQ4_0 } from '../../../src/quant/q4_0.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../../../src/core/half.js';
import { KvsieveError } from '../../../src/core/errors.js';

const k1 = await kernels({ threads: 1 });
const k2 = await kernels({ threads: 2 });
after(() => Promise.all([k1.dispose(), k2.dispose()]));
const both: [string, Kernels][] = [['1 thread', k1], ['2 threads', k2]];

const TYPES: WeightType[] = ['q8_0', 'q4_0', 'f16', 'bf16', 'f32'];

/** The stored bytes of data as `type`, by the JS references. */
function reference(type: WeightType, data: Float32Array): Uint8Array {
  switch (type) {
    case 'q8_0':
      return quantizeQ8_0(data);
    case 'q4_0':
      return quantizeQ4_0(data);
    case 'f16':
    case 'bf16': {
      const h = new Uint16Array(data.length);
      (type === 'f16' ? f32ArrayToF16 : f32ArrayToBf16)(data, h);
      return new Uint8Array(h.buffer);
    }
    case 'f32':
      return new Uint8Array(data.slice().buffer);
    default:
      throw new Error(`${type} is not converted from f32`);
  }
}

/**
 * Asserts equal bytes, naming the first difference. skip(i): bytes not compared (q8_0 scales of
 * blocks holding a NaN, whose NaN bits the JS engine picks).
 */
function assertBytes(got: Uint8Array, want: Uint8Array, what: string, skip: (i: number) => boolean = () => false): void {
  assert.equal(got.length, want.length, `${what}: byte count`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i] && !skip(i)) assert.fail(`${what}: byte ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** Byte i of a q8_0 layout is a scale byte of a block of data holding a NaN. */
function nanScaleByte(data: Float32Array): (i: number) => boolean {
  return (i) => {
    if (i % 34 >= 2) return false;
    const b = Math.floor(i / 34);
    return data.subarray(b * 32, b * 32 + 32).some(Number.isNaN);
  };
}

/** data ([rows, n / rows]) converted by op.quantize alone (no checkMatrix: non-finite results stay); the bytes. */
function viaOp(k: Kernels, type: WeightType, data: Float32Array, rows = 1): Uint8Array {
  const start = k.mark();
  try {
    const m = k.matrix(type, rows, data.length / rows);
    k.run(op.quantize(k.vecFrom(data), m));
    return k.bytes(m).slice();
  } finally {
    k.release(start);
  }
}

/** n values with a random sign and a float32 exponent spread over 2^lo .. 2^hi, varying inside every block. */
function wideArray(r: () => number, n: number, lo: number, hi: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() < 0.5 ? -1 : 1) * (1 + r()) * 2 ** Math.floor(lo + r() * (hi - lo));
  return a;
}

/** 32-value blocks aimed at the quantisers' edges, concatenated. */
function adversarialBlocks(): Float32Array {
  const blocks: number[][] = [];
  const block = (f: (j: number) => number) => blocks.push(Array.from({ length: 32 }, (_, j) => f(j)));
  block(() => 0);
  block(() => -0);
  block((j) => (j % 2 ? -0 : 0));
  for (const at of [0, 5, 16, 31]) for (const v of [1, -1, 3e-5, -7.25e4, -0]) block((j) => (j === at ? v : j % 3 ? 0 : -0));
  // q8_0 ties: an amax of 127 * 2^e gives d = 2^e and id = 2^-e exactly, so x * id = k + 0.5 exactly,
  // where roundf (away from zero) and round-half-even disagree.
  for (const e of [0, -20, -3, 7]) {
    for (let base = -127; base < 127; base += 31) block((j) => (j === 0 ? 127 : Math.max(-126.5, Math.min(126.5, base + j + 0.5))) * 2 ** e);
    block((j) => (j === 3 ? -127 : j - 16.5) * 2 ** e);
  }
  // q4_0: a largest value of -8 * 2^e gives d = 2^e, id = 2^-e, so x * id + 8.5 is an integer at every
  // half-integer x * id, truncation's edge; and the first of two equal magnitudes sets the sign.
  for (const e of [0, -9, 5]) {
    block((j) => (j === 0 ? -8 : -8 + j * 0.5) * 2 ** e);
    block((j) => (j === 31 ? -8 : 7.5 - j * 0.5) * 2 ** e);
    block((j) => (j === 20 ? 8 : 7.75 - j * 0.5) * 2 ** e);
  }
  block((j) => (j === 4 ? -2 : j === 9 ? 2 : j / 32));
  block((j) => (j === 4 ? 2 : j === 9 ? -2 : j / 32));
  block((j) => (j % 2 ? 5 : -5));
  // Float32 subnormals: d underflows to 0, or is a subnormal whose inverse overflows to infinity, or
  // just about has a finite inverse (near 2^-128 and 2^-126).
  for (const m of [1, 2, 3, 5, 12, 127, 128, 1000, 2 ** 20, 2 ** 21 + 1, 2 ** 22, 2 ** 23 - 1, 2 ** 23, 2 ** 25]) {
    block((j) => (j === 7 ? 1 : ((j % 5) - 2) / 2) * m * 2 ** -149);
    block((j) => (j === 7 ? -1 : ((j % 7) - 3) / 3) * m * 2 ** -149);
  }
  // Large: scales at the f16 limit (65504 stays finite, 65520 rounds to infinity) and values near
  // float32's largest (the scale overflows; the host refuses those, the bytes must still agree).
  for (const s of [65504, 65519, 65520, 70000]) {
    block((j) => (j === 1 ? 127 * s : (j - 15) * s));
    block((j) => (j === 1 ? -8 * s : (j - 15) * s * 0.25));
  }
  for (const v of [1e38, 3.4028234663852886e38, -3.4028234663852886e38]) block((j) => (j === 2 ? v : j * 1e36));
  // Infinities and NaNs among ordinary values (q4_0 ignores NaNs in its largest value; q8_0 does not).
  block((j) => (j === 6 ? Infinity : j - 10));
  block((j) => (j === 6 ? -Infinity : j - 10));
  block((j) => (j === 6 ? NaN : j - 10));
  block((j) => (j === 0 ? NaN : j === 1 ? -Infinity : j - 10));
  block(() => NaN);
  block((j) => (j % 2 ? NaN : 0));
  return Float32Array.from(blocks.flat());
}

/**
 * Float32 bit patterns aimed at the f16/bf16 roundings: every exponent of both signs with mantissas
 * at their rounding edges (ties, just above and below, carries into the exponent), NaN payloads,
 * and the f16 subnormal and overflow boundaries. An odd count, so the last elements take the tail path.
 */
function halfEdgeValues(): Float32Array {
  const mants = [0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0x18000, 0x400000, 0x7fe000, 0x7ff000, 0x7fffff];
  const r = rng(17);
  const bits: number[] = [];
  for (const sign of [0, 0x80000000]) {
    for (let e = 0; e < 256; e++) {
      for (const m of mants) bits.push((sign | (e << 23) | m) >>> 0);
      bits.push((sign | (e << 23) | Math.floor(r() * 0x800000)) >>> 0);
    }
  }
  const f = new Float32Array(bits.length + 11);
  new Uint32Array(f.buffer).set(bits);
  f.set([65504, 65519.99609375, 65520, 2 ** -24, 2 ** -25, 2 ** -25 * (1 + 2 ** -23), 3 * 2 ** -26, 2 ** -14 * (1 - 2 ** -11), 1 + 2 ** -11, 1 + 3 * 2 ** -11, -0], bits.length);
  return f;
}

test('op.quantize equals the JS conversions on random data of odd shapes, every type, one and two threads', () => {
  const r = rng(101);
  const shapes: Record<'block' | 'elem', [number, number][]> = {
    block: [[1, 32], [7, 96], [37, 224], [133, 4064]],
    elem: [[1, 1], [3, 5], [37, 45], [131, 1001], [17, 4099]],
  };
  for (const [name, k] of both) {
    for (const type of TYPES) {
      for (const [rows, cols] of shapes[type === 'q8_0' || type === 'q4_0' ? 'block' : 'elem']) {
        for (const data of [randArray(r, rows * cols, 3), wideArray(r, rows * cols, -30, 15)]) {
          const start = k.mark();
          const m = k.matrixFromF32(type, rows, cols, data);
          assertBytes(k.bytes(m), reference(type, data), `${type} [${rows}, ${cols}], ${name}`);
          k.release(start);
          // Any bits at all (infinities and NaNs included) through the op alone.
          const any = new Float32Array(new Uint32Array(rows * cols).map(() => Math.floor(r() * 2 ** 32)).buffer);
          assertBytes(viaOp(k, type, any, rows), reference(type, any), `${type} [${rows}, ${cols}] of random bits, ${name}`,
            type === 'q8_0' ? nanScaleByte(any) : undefined);
        }
      }
    }
  }
});

test('q8_0/q4_0 adversarial blocks: zeros, lone values, exact ties, subnormals, f16/f32 limits, infinities, NaNs', () => {
  const data = adversarialBlocks();
  const nb = data.length / 32;
  for (const [name, k] of both) {
    for (const type of ['q8_0', 'q4_0'] as const) {
      const got = viaOp(k, type, data);
      assertBytes(got, reference(type, data), `${type} adversarial, ${name}`, type === 'q8_0' ? nanScaleByte(data) : undefined);
      if (type === 'q8_0') {
        // The blocks holding a NaN: the scale is the quiet NaN 0x7e00, every q 0.
        for (let b = 0; b < nb; b++) {
          if (!data.subarray(b * 32, b * 32 + 32).some(Number.isNaN)) continue;
          assert.equal(got[b * 34]! | (got[b * 34 + 1]! << 8), 0x7e00, `block ${b} scale`);
          assert.ok(got.subarray(b * 34 + 2, b * 34 + 34).every((q) => q === 0), `block ${b} values`);
        }
      }
    }
  }
  // The ties really are ties (roundf and round-half-even differ there), so the comparison above can fail.
  const tie = Float32Array.from({ length: 32 }, (_, j) => (j === 0 ? 127 : j === 1 ? 0.5 : j === 2 ? -2.5 : 0));
  assert.deepEqual(Array.from(new Int8Array(viaOp(k1, 'q8_0', tie).buffer, 2, 3)), [127, 1, -3]);
});

test('f16/bf16: every float32 exponent at its rounding edges, NaN payloads and the f16 limits, and the tail path', () => {
  const data = halfEdgeValues();
  for (const [name, k] of both) {
    for (const type of ['f16', 'bf16'] as const) {
      assertBytes(viaOp(k, type, data), reference(type, data), `${type} edge values, ${name}`);
      // Lengths 1..17: a SIMD step of eight and the rest one lane at a time.
      for (let n = 1; n <= 17; n++) {
        const part = data.slice(5 * n, 6 * n);
        assertBytes(viaOp(k, type, part), reference(type, part), `${type} length ${n}, ${name}`);
      }
    }
  }
});

test('op.quantize windows write their elements only, at the right place', () => {
  const r = rng(7);
  const k = k2;
  for (const type of TYPES) {
    const q = type === 'q8_0' || type === 'q4_0';
    const cols = q ? 96 : 45;
    const rows = 23;
    const data = wideArray(r, rows * cols, -10, 10);
    const want = reference(type, data);
    const bytesPer = want.length / data.length; // per element
    const windows: [number, number][] = q ? [[0, 32], [64, 96], [32 * 7, 32 * 30], [rows * cols - 32, 32]] : [[0, 1], [3, 5], [13, 71], [1000, 35]];
    for (const [offset, n] of windows) {
      const start = k.mark();
      const m = k.matrix(type, rows, cols);
      k.run(op.quantize(k.vecFrom(data.subarray(offset, offset + n)), m, { offset }));
      const got = k.bytes(m);
      const b0 = offset * bytesPer;
      const b1 = (offset + n) * bytesPer;
      assertBytes(got.subarray(b0, b1), want.subarray(b0, b1), `${type} window [${offset}, ${offset + n})`);
      assert.ok(got.subarray(0, b0).every((b) => b === 0) && got.subarray(b1).every((b) => b === 0), `${type} window [${offset}, ${offset + n}): bytes outside written`);
      k.release(start);
    }
  }
});

test('matrixFromF32 converts a matrix of several scratch pieces (rows split between pieces) and frees the scratch', () => {
  const r = rng(2024);
  const rows = 1031;
  const cols = 1056;
  assert.ok(rows * cols > QUANTIZE_PIECE && (QUANTIZE_PIECE / cols) % 1 !== 0);
  const data = wideArray(r, rows * cols, -12, 12);
  for (const [name, k] of both) {
    for (const type of ['q8_0', 'q4_0', 'bf16', 'f16'] as const) {
      if (k === k1 && type !== 'q8_0') continue;
      const start = k.mark();
      const m = k.matrixFromF32(type, rows, cols, data, `blk.${type}`);
      assertBytes(k.bytes(m), reference(type, data), `${type} [${rows}, ${cols}], ${name}`);
      assert.equal(k.allocated, m.ptr + m.bytes, 'the scratch piece is released');
      k.release(start);
    }
  }
});

test('matrixFromF32 still refuses non-finite f16 values and q8_0/q4_0 scales by position; bf16 and q4_0 keep NaNs', () => {
  const k = k2;
  const start = k.mark();
  const cols = 64;
  const data = randArray(rng(3), 3 * cols, 2);
  const at = (i: number, v: number) => {
    const d = data.slice();
    d[i] = v;
    return d;
  };
  const refused = (type: WeightType, d: Float32Array, msg: RegExp) => {
    const before = k.allocated;
    assert.throws(() => k.matrixFromF32(type, 3, cols, d, 'blk.1.attn_q'), (e: unknown) => e instanceof KvsieveError && msg.test(e.message));
    assert.ok(k.allocated - before <= 3 * cols * 2 + 64, `${type}: no scratch left behind`);
  };
  refused('f16', at(cols + 37, 1e6), /blk\.1\.attn_q \(f16 \[3, 64\]\) has a non-finite value at row 1, column 37/);
  refused('f16', at(2 * cols + 3, NaN), /non-finite value at row 2, column 3/);
  refused('q8_0', at(cols + 40, 65520 * 127), /blk\.1\.attn_q \(q8_0 \[3, 64\]\) has a non-finite block scale at row 1, column 32/);
  refused('q8_0', at(2 * cols + 5, NaN), /non-finite block scale at row 2, column 0/);
  refused('q4_0', at(cols + 1, -Infinity), /non-finite block scale at row 1, column 0/);
  for (const type of ['q4_0', 'bf16'] as const) {
    const d = at(cols + 9, NaN);
    d[5] = type === 'bf16' ? Infinity : 0;
    assertBytes(k.bytes(k.matrixFromF32(type, 3, cols, d)), reference(type, d), `${type} with a NaN`);
  }
  k.release(start);
});

test('op.quantize refuses windows outside the matrix, unaligned q8_0/q4_0 windows and short inputs', () => {
  const start = k1.mark();
  const m = k1.matrix('q8_0', 4, 64);
  const src = k1.vec(64);
  assert.throws(() => op.quantize(src, m, { offset: 16, n: 32 }), /q8_0 offset 16 and count 32 must be multiples of 32/);
  assert.throws(() => op.quantize(src, m, { offset: 224 }), /elements \[224, 288\) outside q8_0 \[4, 64\]/);
  assert.throws(() => op.quantize(src, m, { n: 96 }), /quantize input holds 64 values, needs 96/);
  const h = k1.matrix('f16', 3, 5);
  assert.throws(() => op.quantize(k1.vec(4), h, { offset: 12 }), /elements \[12, 16\) outside f16 \[3, 5\]/);
  k1.release(start);
});

test('both kernel builds (SIMD128 and relaxed SIMD) convert identically to the references', async () => {
  const r = rng(55);
  const edges = halfEdgeValues();
  const data = Float32Array.from([...adversarialBlocks(), ...wideArray(r, 32 * 40, -20, 20), ...edges.subarray(0, edges.length & ~31)]);
  for (const file of ['kernels.wasm', 'kernels-relaxed.wasm']) {
    const k = await createKernels({ threads: 2, minParallelWork: 0, wasmPath: join(repoRoot, 'dist', 'wasm', file) });
    try {
      for (const type of TYPES) {
        assertBytes(viaOp(k, type, data), reference(type, data), `${type}, ${file}`, type === 'q8_0' ? nanScaleByte(data) : undefined);
      }
    } finally {
      await k.dispose();
    }
  }
});
