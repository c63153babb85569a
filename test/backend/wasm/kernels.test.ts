// Every wasm kernel against a plain-TS reference on random shapes (odd sizes included), one thread.
//
// Tolerances are rigorous float32 error bounds, not fitted constants (U = 2^-24):
//  - dot products of n terms: (n + 8) U sum|w x|  (f32 accumulation in any order);
//  - q8_0/q4_0: the reference quantises the input exactly as the kernel does (per 32-block
//    d = amax/127, q = round-half-even(x/d)), so the integer dots are exact and only the block
//    scaling and accumulation round: (nb + 8) 2U sum_b dx sum_j |w_j q_j|. Against the unquantised
//    product the extra error is at most sum |w| dx/2 per block;
//  - exp is a polynomial with relative error <= 2.5e-7 (tested directly; 1.3 ulp measured),
//    softmax/SiLU budgets build on that;
//  - RoPE, add, KV stores and embedding rows are exact (compared bit for bit).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { kernels, rng, randArray, U32, quantBlockRef, roundHalfEven, bits, assertClose } from './helpers.js';
import type { WeightType } from '../../../src/backend/wasm/abi.js';
import type { KvDtype } from '../../../src/core/kv-rows.js';
import { Kernels } from '../../../src/backend/wasm/kernels.js';
import { op, sub, Task, type Matrix } from '../../../src/backend/wasm/ops.js';
import { loadKernelModule } from '../../../src/backend/wasm/node.js';
import { f16ToF32, bf16ToF32, f32ToF16 } from '../../../src/core/half.js';
import { dequantizeQ8_0 } from '../../../src/quant/q8_0.js';
import { dequantizeQ4_0 } from '../../../src/quant/q4_0.js';
import { InternalError, KvsieveError } from '../../../src/core/errors.js';

const k = await kernels({ threads: 1 });
after(() => k.dispose());

/** The stored weights of m widened to f64, read back from the shared memory. */
function storedWeights(m: Matrix): Float64Array {
  const n = m.rows * m.cols;
  const bytes = k.bytes(m).slice();
  const out = new Float64Array(n);
  const u16 = new Uint16Array(bytes.buffer, 0, m.type === 'f16' || m.type === 'bf16' ? n : 0);
  switch (m.type) {
    case 'f32':
      out.set(new Float32Array(bytes.buffer, 0, n));
      break;
    case 'f16':
      for (let i = 0; i < n; i++) out[i] = f16ToF32(u16[i]!);
      break;
    case 'bf16':
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(u16[i]!);
      break;
    case 'q8_0':
      out.set(dequantizeQ8_0(bytes, n));
      break;
    case 'q4_0':
      out.set(dequantizeQ4_0(bytes, n));
      break;
  }
  return out;
}

interface DotRef {
  /** Reference value of row r of W times x (what the kernel computes up to float rounding). */
  value: number;
  /** Bound on the kernel's rounding error. */
  tol: number;
}

/**
 * Reference W x for one input row: float types exactly in f64; quantised types with the input
 * quantised as the kernel does, plus a check that this stays within the quantisation bound of the
 * exact product (so a wrong quantiser in both would still be caught).
 */
function refDots(m: Matrix, w: Float64Array, x: Float32Array, xOff: number): DotRef[] {
  const { rows, cols } = m;
  const out: DotRef[] = [];
  if (m.type === 'q8_0' || m.type === 'q4_0') {
    const nb = cols / 32;
    const blocks = Array.from({ length: nb }, (_, b) => quantBlockRef(x, xOff + b * 32));
    for (let r = 0; r < rows; r++) {
      let s = 0;
      let mag = 0;
      let exact = 0;
      let qerr = 0;
      for (let b = 0; b < nb; b++) {
        const { d, q } = blocks[b]!;
        // The stored weights are integer multiples of their block scale, so this is dw * dx * isum
        // exactly (the integer dot the kernel forms), in f64.
        // The kernel's SIMD lanes hold partial sums that may cancel, so the bound uses sum |w q|.
        let wq = 0;
        let wqAbs = 0;
        for (let j = 0; j < 32; j++) {
          const wv = w[r * cols + b * 32 + j]!;
          wq += wv * q[j]!;
          wqAbs += Math.abs(wv * q[j]!);
          exact += wv * x[xOff + b * 32 + j]!;
          qerr += Math.abs(wv) * d * (0.5 + 1e-5);
        }
        s += wq * d;
        mag += wqAbs * d;
      }
      const tol = (nb + 8) * 2 * U32 * mag + 1e-30;
      assert.ok(Math.abs(s - exact) <= qerr + tol, `quantised reference drifted from the exact product: ${s} vs ${exact}`);
      out.push({ value: s, tol });
    }
  } else {
    for (let r = 0; r < rows; r++) {
      let s = 0;
      let mag = 0;
      for (let c = 0; c < cols; c++) {
        const p = w[r * cols + c]! * x[xOff + c]!;
        s += p;
        mag += Math.abs(p);
      }
      out.push({ value: s, tol: (cols + 8) * U32 * mag + 1e-30 });
    }
  }
  return out;
}

const FLOAT_SHAPES: [number, number][] = [[1, 1], [3, 5], [37, 96], [37, 100], [64, 37], [5, 203]];
const QUANT_SHAPES: [number, number][] = [[1, 32], [37, 96], [7, 160], [64, 224]];
/** The types matrixFromF32 converts to (the K-quants are only taken as stored: kernels.kquant.test.ts). */
type ConvertedType = Exclude<WeightType, 'q4_k' | 'q5_k' | 'q6_k' | 'mxfp4'>;
const TYPES: ConvertedType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

test('matvec / matmat: every weight type, odd shapes, 1..33 tokens, strides, bias, accumulate', () => {
  const r = rng(1);
  for (const type of TYPES) {
    const shapes = type === 'q8_0' || type === 'q4_0' ? QUANT_SHAPES : FLOAT_SHAPES;
    for (const [rows, cols] of shapes) {
      // 2..15 (q4_0 2..5): the few-token tiles (token pairs, fours, the rest); past that the quantised octets.
      for (const nTok of [1, 2, 3, 4, 5, 8, 17, 32, 33]) {
        for (const variant of [0, 1]) {
          const m0 = k.mark();
          const W = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
          const w = storedWeights(W);
          const xStride = cols + 3 * variant;
          const yStride = rows + 2 * variant;
          // Padding between rows is NaN: reading or writing it would show.
          const xs = new Float32Array((nTok - 1) * xStride + cols).fill(NaN);
          const y0 = new Float32Array((nTok - 1) * yStride + rows).fill(NaN);
          for (let t = 0; t < nTok; t++) {
            xs.set(randArray(r, cols, 2), t * xStride);
            y0.set(randArray(r, rows), t * yStride);
          }
          const bias = variant ? randArray(r, rows) : null;
          const accumulate = variant === 1;
          const x = k.vecFrom(xs);
          const y = k.vecFrom(y0);
          k.runLocal(op.matvec(W, x, y, { nTok, xStride, yStride, accumulate, ...(bias ? { bias: k.vecFrom(bias) } : {}) }));
          const got = k.read(y);
          const want: number[] = [];
          const tol: number[] = [];
          const gotRows: number[] = [];
          for (let t = 0; t < nTok; t++) {
            const refs = refDots(W, w, xs, t * xStride);
            for (let i = 0; i < rows; i++) {
              const b = bias ? bias[i]! : 0;
              const a = accumulate ? y0[t * yStride + i]! : 0;
              const v = refs[i]!.value + b + a;
              want.push(v);
              tol.push(refs[i]!.tol + 4 * U32 * (Math.abs(refs[i]!.value) + Math.abs(b) + Math.abs(a)));
              gotRows.push(got[t * yStride + i]!);
            }
            if (variant) for (let i = rows; i < yStride && t < nTok - 1; i++) assert.ok(Number.isNaN(got[t * yStride + i]!), 'output padding written');
          }
          assertClose(gotRows, want, tol, `${type} [${rows}x${cols}] nTok=${nTok} variant=${variant}`);
          k.release(m0);
        }
      }
    }
  }
});

test('matmat rows equal the one-token matvec bit for bit (tiling never changes the arithmetic)', () => {
  const r = rng(2);
  for (const type of TYPES) {
    const [rows, cols] = type === 'q8_0' || type === 'q4_0' ? [37, 160] : [37, 101];
    const m0 = k.mark();
    const W = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
    const nTok = 7;
    const x = k.vecFrom(randArray(r, nTok * cols));
    const y = k.vec(nTok * rows);
    k.runLocal(op.matvec(W, x, y, { nTok }));
    const all = k.read(y);
    for (let t = 0; t < nTok; t++) {
      const y1 = k.vec(rows);
      k.runLocal(op.matvec(W, sub(x, t * cols, cols), y1));
      assert.deepEqual(bits(k.read(y1)), bits(all.slice(t * rows, (t + 1) * rows)), `${type} token ${t}`);
    }
    k.release(m0);
  }
});

test('2..33 tokens (a decode batch): every token\'s rows equal its one-token matvec bit for bit, every weight type', () => {
  const r = rng(12);
  // Rows: 4k + 1, 4k + 2, 4k + 3 (quarters of the range and tail rows); quantised columns: 66 blocks,
  // two column segments of the few-token tiles; float columns not a multiple of 4 (scalar tails).
  const shapes: Record<ConvertedType, [number, number][]> = {
    f32: [[37, 101], [6, 8]], f16: [[38, 101], [7, 3]], bf16: [[39, 101], [5, 12]], q8_0: [[37, 2112], [6, 64]], q4_0: [[39, 2112], [7, 32]],
  };
  for (const type of TYPES) {
    for (const [rows, cols] of shapes[type]) {
      const m0 = k.mark();
      const W = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
      const bias = k.vecFrom(randArray(r, rows));
      for (const nTok of [2, 3, 4, 5, 6, 7, 8, 9, 11, 15, 16, 17, 31, 32, 33]) {
        for (const variant of [0, 1]) {
          const m1 = k.mark();
          const xStride = cols + 5 * variant;
          const yStride = rows + 3 * variant;
          const x = k.vecFrom(randArray(r, (nTok - 1) * xStride + cols, 2));
          const y0 = randArray(r, (nTok - 1) * yStride + rows);
          const o = variant ? { bias, accumulate: true } : {};
          const y = k.vecFrom(y0);
          k.runLocal(op.matvec(W, x, y, { nTok, xStride, yStride, ...o }));
          const all = k.read(y);
          for (let t = 0; t < nTok; t++) {
            const y1 = k.vecFrom(y0.subarray(t * yStride, t * yStride + rows));
            k.runLocal(op.matvec(W, sub(x, t * xStride, cols), y1, o));
            assert.deepEqual(bits(k.read(y1)), bits(all.slice(t * yStride, t * yStride + rows)), `${type} [${rows}x${cols}] nTok=${nTok} variant ${variant} token ${t}`);
          }
          k.release(m1);
        }
      }
      k.release(m0);
    }
  }
});

test('quantised matmat over many tokens and long rows (column segments, row and token tails) equals the matvec bit for bit', () => {
  const r = rng(7);
  // 41 tokens: five full octets and one holding a single token; 66 blocks: more than one column
  // segment at that many tokens; 70 rows: more than one run of rows carried between segments, and
  // a partial group of four. With bias and accumulate too.
  const [rows, cols, nTok] = [70, 2112, 41];
  for (const type of ['q8_0', 'q4_0'] as const) {
    for (const variant of [0, 1]) {
      const m0 = k.mark();
      const W = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
      const x = k.vecFrom(randArray(r, nTok * cols, 3));
      const y0 = randArray(r, nTok * rows);
      const bias = variant ? k.vecFrom(randArray(r, rows)) : null;
      const o = { accumulate: variant === 1, ...(bias ? { bias } : {}) };
      const y = k.vecFrom(y0);
      k.runLocal(op.matvec(W, x, y, { nTok, ...o }));
      const all = k.read(y);
      for (let t = 0; t < nTok; t++) {
        const y1 = k.vecFrom(y0.subarray(t * rows, (t + 1) * rows));
        k.runLocal(op.matvec(W, sub(x, t * cols, cols), y1, o));
        assert.deepEqual(bits(k.read(y1)), bits(all.slice(t * rows, (t + 1) * rows)), `${type} variant ${variant} token ${t}`);
      }
      k.release(m0);
    }
  }
});

function silu(g: number): number {
  return g / (1 + Math.exp(-g));
}

test('gateUpSilu: h = silu(Wg x) * (Wu x) for every weight type and 1 or 5 tokens', () => {
  const r = rng(3);
  for (const type of TYPES) {
    // 1100 rows: two 512-row chunks and a partial one.
    const [rows, cols] = type === 'q8_0' || type === 'q4_0' ? [1100, 64] : [1100, 13];
    for (const nTok of [1, 5]) {
      const m0 = k.mark();
      const Wg = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
      const Wu = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
      const wg = storedWeights(Wg);
      const wu = storedWeights(Wu);
      const xs = randArray(r, nTok * cols, 1.5);
      const x = k.vecFrom(xs);
      const h = k.vec(nTok * rows);
      k.runLocal(op.gateUpSilu(Wg, Wu, x, h, { nTok }));
      const got = k.read(h);
      const want: number[] = [];
      const tol: number[] = [];
      for (let t = 0; t < nTok; t++) {
        const g = refDots(Wg, wg, xs, t * cols);
        const u = refDots(Wu, wu, xs, t * cols);
        for (let i = 0; i < rows; i++) {
          const gv = g[i]!.value;
          const uv = u[i]!.value;
          const hv = silu(gv) * uv;
          want.push(hv);
          tol.push(1.1 * g[i]!.tol * Math.abs(uv) + Math.abs(silu(gv)) * u[i]!.tol + 6e-7 * Math.abs(hv) + 1e-7 * Math.abs(gv * uv) + 1e-30);
        }
      }
      assertClose(got, want, tol, `gateUpSilu ${type} nTok=${nTok}`);
      k.release(m0);
    }
  }
});

test('rmsnorm: rows with strides, with and without a weight, odd lengths', () => {
  const r = rng(4);
  for (const n of [1, 7, 96, 101]) {
    for (const withWeight of [true, false]) {
      const m0 = k.mark();
      const rows = 3;
      const xStride = n + 1;
      const yStride = n + 2;
      const xs = new Float32Array((rows - 1) * xStride + n).fill(NaN);
      for (let i = 0; i < rows; i++) xs.set(randArray(r, n, 3), i * xStride);
      const ws = randArray(r, n, 2);
      const eps = 1e-6;
      const x = k.vecFrom(xs);
      const y = k.vecFrom(new Float32Array((rows - 1) * yStride + n).fill(NaN));
      k.runLocal(op.rmsnorm(x, withWeight ? k.vecFrom(ws) : null, y, n, eps, { rows, xStride, yStride }));
      const got = k.read(y);
      for (let i = 0; i < rows; i++) {
        let ss = 0;
        for (let j = 0; j < n; j++) ss += xs[i * xStride + j]! ** 2;
        const s = 1 / Math.sqrt(ss / n + eps);
        const want = Array.from({ length: n }, (_, j) => xs[i * xStride + j]! * s * (withWeight ? ws[j]! : 1));
        const tol = want.map((v) => (n / 2 + 8) * U32 * Math.abs(v) + 1e-30);
        assertClose(got.subarray(i * yStride, i * yStride + n), want, tol, `rmsnorm n=${n} row ${i}`);
        if (i < rows - 1) assert.ok(Number.isNaN(got[i * yStride + n + 1]!), 'padding written');
      }
      k.release(m0);
    }
  }
});

test('rope: rotate_half pairs (i, i + d/2), bit for bit against float32 arithmetic', () => {
  const r = rng(5);
  for (const headDim of [2, 8, 12, 64]) {
    const m0 = k.mark();
    const nHeads = 3;
    const nTok = 2;
    const half = headDim / 2;
    const xStride = nHeads * headDim + 5;
    const tabStride = half + 1;
    const xs = randArray(r, (nTok - 1) * xStride + nHeads * headDim, 2);
    const cs = randArray(r, (nTok - 1) * tabStride + half);
    const sn = randArray(r, (nTok - 1) * tabStride + half);
    const x = k.vecFrom(xs);
    k.runLocal(op.rope(x, k.vecFrom(cs), k.vecFrom(sn), { nHeads, headDim, nTok, xStride, tabStride }));
    const want = xs.slice();
    const f = Math.fround;
    for (let t = 0; t < nTok; t++) {
      for (let h = 0; h < nHeads; h++) {
        const base = t * xStride + h * headDim;
        for (let i = 0; i < half; i++) {
          const a = xs[base + i]!;
          const b = xs[base + i + half]!;
          const c = cs[t * tabStride + i]!;
          const s = sn[t * tabStride + i]!;
          want[base + i] = f(f(a * c) - f(b * s));
          want[base + i + half] = f(f(b * c) + f(a * s));
        }
      }
    }
    assert.deepEqual(bits(k.read(x)), bits(want), `rope headDim=${headDim}`);
    k.release(m0);
  }
});

/** Softmax reference with the kernels' error budget per element. */
function softmaxRef(xs: ArrayLike<number>, n: number): { p: number[]; tol: number[] } {
  let m = -Infinity;
  let lo = Infinity;
  for (let i = 0; i < n; i++) {
    m = Math.max(m, xs[i]!);
    lo = Math.min(lo, xs[i]!);
  }
  const e = Array.from({ length: n }, (_, i) => Math.exp(xs[i]! - m));
  const s = e.reduce((a, b) => a + b, 0);
  const p = e.map((v) => v / s);
  const eps = 5e-7 + (n + 8) * 2 * U32 + 4 * U32 * Math.min(87, m - lo);
  return { p, tol: p.map((v) => v * eps + 1e-30) };
}

test('softmax: odd lengths, wide ranges, ties and values below exp range', () => {
  const r = rng(6);
  for (const n of [1, 3, 4, 17, 100]) {
    const m0 = k.mark();
    const rows = 4;
    const stride = n + 3;
    const xs = new Float32Array((rows - 1) * stride + n).fill(NaN);
    for (let i = 0; i < rows; i++) xs.set(randArray(r, n, i === 3 ? 60 : 8), i * stride);
    xs[stride] = xs[stride + n - 1] = 5; // a tie
    if (n > 2) xs[2 * stride + 1] = -200; // exp underflows to 0
    const x = k.vecFrom(xs);
    k.runLocal(op.softmax(x, n, { rows, stride }));
    const got = k.read(x);
    for (let i = 0; i < rows; i++) {
      const { p, tol } = softmaxRef(xs.subarray(i * stride, i * stride + n), n);
      assertClose(got.subarray(i * stride, i * stride + n), p, tol, `softmax n=${n} row ${i}`);
      if (i < rows - 1) assert.ok(Number.isNaN(got[i * stride + n]!), 'padding written');
    }
    k.release(m0);
  }
});

test('exp: relative error <= 2.5e-7 over [-87, 88], 0 below, clamped to exp(88) above', () => {
  const m0 = k.mark();
  const n = 20001;
  const xs = Float32Array.from({ length: n }, (_, i) => -87 + (175 * i) / (n - 1));
  const x = k.vecFrom(xs);
  const y = k.vec(n);
  k.runLocal(op.exp(x, y, n));
  const want = Array.from(xs, Math.exp);
  assertClose(k.read(y), want, want.map((v) => 2.5e-7 * v), 'exp');
  const edge = k.vecFrom([-87.5, -1000, -Infinity, 88, 100, Infinity, 0]);
  const ey = k.vec(7);
  k.runLocal(op.exp(edge, ey, 7));
  const e = k.read(ey);
  assert.deepEqual(Array.from(e.subarray(0, 3)), [0, 0, 0]);
  assert.ok(Math.abs(e[3]! / Math.exp(88) - 1) <= 2.5e-7 && e[4] === e[3] && e[5] === e[3], 'clamped at exp(88)');
  assert.equal(e[6], 1);
  k.release(m0);
});

test('siluGate and add: odd lengths, extreme gates; add is exact', () => {
  const r = rng(7);
  const n = 103;
  const m0 = k.mark();
  const g = randArray(r, n, 20);
  g.set([0, -0, 200, -200, 88.5, -88.5, 1e-30, -1e-30]);
  const u = randArray(r, n, 3);
  const gv = k.vecFrom(g);
  const uv = k.vecFrom(u);
  const out = k.vec(n);
  k.runLocal(op.siluGate(gv, uv, out, n));
  const want = Array.from(g, (x, i) => silu(x) * u[i]!);
  assertClose(k.read(out), want, want.map((w, i) => 6e-7 * Math.abs(w) + 1e-7 * Math.abs(g[i]! * u[i]!) + 1e-30), 'siluGate');

  const a = randArray(r, n, 5);
  const b = randArray(r, n, 5);
  const av = k.vecFrom(a);
  k.runLocal(op.add(av, av, k.vecFrom(b), n));
  assert.deepEqual(bits(k.read(av)), bits(Float32Array.from(a, (v, i) => v + b[i]!)), 'add');
  k.release(m0);
});

/** Fills head h of a cache with random stored K/V and returns them widened to f64 ([len][d]). */
function fillHead(kv: ReturnType<Kernels['kvLayer']>, h: number, len: number, r: () => number): { K: Float64Array; V: Float64Array } {
  const d = kv.headDim;
  const K = new Float64Array(len * d);
  const V = new Float64Array(len * d);
  const keys = kv.keys(h);
  const vals = kv.values(h);
  for (let j = 0; j < len * d; j++) {
    const kx = (r() * 2 - 1) * 1.5;
    const vx = (r() * 2 - 1) * 2;
    if (kv.type === 'f32') {
      keys[j] = kx;
      vals[j] = vx;
      K[j] = keys[j]!;
      V[j] = vals[j]!;
    } else if (kv.type === 'f16') {
      keys[j] = f32ToF16(kx);
      vals[j] = f32ToF16(vx);
      K[j] = f16ToF32(keys[j]!);
      V[j] = f16ToF32(vals[j]!);
    } else {
      keys[j] = Math.round(kx * 80);
      vals[j] = Math.round(vx * 60);
    }
  }
  if (kv.type === 'int8') {
    const ks = kv.keyScales(h)!;
    const vs = kv.valueScales(h)!;
    for (let j = 0; j < len; j++) {
      ks[j] = 0.01 + r() * 0.02;
      vs[j] = 0.02 + r() * 0.02;
      for (let i = 0; i < d; i++) {
        K[j * d + i] = keys[j * d + i]! * ks[j]!;
        V[j * d + i] = vals[j * d + i]! * vs[j]!;
      }
    }
  }
  return { K, V };
}

test('attention: f32/f16/int8 caches, GQA groups, per-head lengths, causal segments, probs and probSums', () => {
  const r = rng(8);
  const cases = [
    { nKv: 1, G: 1, d: 4, lens: [1], nq: 1 },
    { nKv: 2, G: 3, d: 12, lens: [9, 5], nq: 1 },
    { nKv: 2, G: 2, d: 64, lens: [37, 20], nq: 5 },
    { nKv: 3, G: 1, d: 8, lens: [6, 6, 40], nq: 6 },
  ];
  for (const type of ['f32', 'f16', 'int8'] as KvDtype[]) {
    for (const c of cases) {
      for (const tracked of [false, true]) {
        const m0 = k.mark();
        const { nKv, G, d, lens, nq } = c;
        const nHeads = nKv * G;
        const maxLen = Math.max(...lens);
        const kv = k.kvLayer({ type, nKvHeads: nKv, headDim: d, capacity: maxLen + 3, probSums: tracked });
        const heads = lens.map((len, h) => {
          kv.setLength(h, len);
          return fillHead(kv, h, len, r);
        });
        const sums0 = lens.map((len, h) => {
          const s = kv.probSums(h);
          if (!s) return null;
          const init = randArray(r, len);
          s.set(init);
          return init;
        });
        const qStride = nHeads * d + 1;
        const outStride = nHeads * d + 2;
        const probsStride = maxLen + 2;
        const qs = new Float32Array((nq - 1) * qStride + nHeads * d).fill(NaN);
        for (let t = 0; t < nq; t++) qs.set(randArray(r, nHeads * d), t * qStride);
        const q = k.vecFrom(qs);
        const out = k.vecFrom(new Float32Array((nq - 1) * outStride + nHeads * d).fill(NaN));
        const probs = k.vecFrom(new Float32Array(nq * nHeads * probsStride).fill(NaN));
        const scale = 1 / Math.sqrt(d);
        k.runLocal(op.attention(kv, q, out, { nHeads, nq, qStride, outStride, probs, probsStride, qChunk: 2 }));
        const gotOut = k.read(out);
        const gotP = k.read(probs);
        const sumWant = sums0.map((s) => (s ? Array.from(s) : null));
        const sumTol = lens.map((len) => new Array<number>(len).fill(1e-30));
        for (let t = 0; t < nq; t++) {
          for (let hq = 0; hq < nHeads; hq++) {
            const h = Math.floor(hq / G);
            const { K, V } = heads[h]!;
            const len = lens[h]!;
            const nv = len - nq + t + 1;
            const s: number[] = [];
            let smax = 0;
            for (let j = 0; j < nv; j++) {
              let dot = 0;
              let mag = 0;
              for (let i = 0; i < d; i++) {
                const p = qs[t * qStride + hq * d + i]! * K[j * d + i]!;
                dot += p;
                mag += Math.abs(p);
              }
              s.push(dot * scale);
              smax = Math.max(smax, mag * scale);
            }
            const { p, tol: ptol } = softmaxRef(s, nv);
            const ds = (d + 10) * 2 * U32 * smax; // score rounding, relative to the logits
            const ptolAll = p.map((v, j) => ptol[j]! + 2.2 * ds * v);
            const row = gotP.subarray((t * nHeads + hq) * probsStride, (t * nHeads + hq) * probsStride + len);
            assertClose(row.subarray(0, nv), p, ptolAll, `${type} probs t=${t} head=${hq}`);
            assert.ok(row.subarray(nv).every((v) => v === 0), 'probs beyond the visible slots are 0');
            const o: number[] = [];
            const otol: number[] = [];
            for (let i = 0; i < d; i++) {
              let acc = 0;
              let err = 0;
              for (let j = 0; j < nv; j++) {
                acc += p[j]! * V[j * d + i]!;
                err += (ptolAll[j]! + (nv + 8) * 2 * U32 * p[j]!) * Math.abs(V[j * d + i]!);
              }
              o.push(acc);
              otol.push(err + 1e-30);
            }
            assertClose(gotOut.subarray(t * outStride + hq * d, t * outStride + hq * d + d), o, otol, `${type} out t=${t} head=${hq}`);
            if (tracked) {
              for (let j = 0; j < nv; j++) {
                const want = sumWant[h]!;
                const tol = sumTol[h]!;
                want[j] = want[j]! + p[j]! / G;
                tol[j] = tol[j]! + ptolAll[j]! / G + 4 * U32 * Math.abs(want[j]!);
              }
            }
          }
        }
        if (tracked) {
          for (let h = 0; h < nKv; h++) assertClose(kv.probSums(h)!.subarray(0, lens[h]!), sumWant[h]!, sumTol[h]!, `${type} probSums head ${h}`);
        }
        k.release(m0);
      }
    }
  }
});

test('attentions: every segment of a step in one task, bit for bit as op.attention per segment (probSums too)', () => {
  const r = rng(13);
  for (const type of ['f32', 'f16', 'int8'] as KvDtype[]) {
    for (const [nKv, G, d] of [[2, 3, 64], [3, 1, 12]] as const) {
      const m0 = k.mark();
      const nHeads = nKv * G;
      const width = nHeads * d;
      // Decode segments (one token), prefill blocks (several), one-slot heads, per-head lengths, one
      // segment tracking probSums; rows of one step, strided as the forward's.
      const specs = [
        { nq: 1, lens: [5, 9, 7].slice(0, nKv), sums: false },
        { nq: 6, lens: [6, 30, 8].slice(0, nKv), sums: true },
        { nq: 1, lens: [1, 1, 1].slice(0, nKv), sums: false },
        { nq: 3, lens: [40, 3, 17].slice(0, nKv), sums: false },
        { nq: 1, lens: [12, 2, 33].slice(0, nKv), sums: true },
      ];
      const T = specs.reduce((n, sp) => n + sp.nq, 0);
      const segs = specs.map((sp) => {
        const kv = k.kvLayer({ type, nKvHeads: nKv, headDim: d, capacity: Math.max(...sp.lens) + 2, probSums: sp.sums });
        sp.lens.forEach((len, h) => {
          kv.setLength(h, len);
          fillHead(kv, h, len, r);
          kv.probSums(h)?.set(randArray(r, len));
        });
        return { kv, nq: sp.nq };
      });
      const sums0 = segs.map(({ kv }) => Array.from({ length: nKv }, (_, h) => kv.probSums(h)?.slice() ?? null));
      const q = k.vecFrom(randArray(r, T * width, 2));
      const outOne = k.vecFrom(new Float32Array(T * width).fill(NaN));
      const outAll = k.vecFrom(new Float32Array(T * width).fill(NaN));
      let row = 0;
      const parts = segs.map(({ kv, nq }) => {
        const part = { kv, nq, q: sub(q, row * width, nq * width), outOne: sub(outOne, row * width, nq * width), out: sub(outAll, row * width, nq * width) };
        row += nq;
        return part;
      });
      for (const p of parts) k.runLocal(op.attention(p.kv, p.q, p.outOne, { nHeads, nq: p.nq, qChunk: 2 }));
      const sumsOne = segs.map(({ kv }) => Array.from({ length: nKv }, (_, h) => kv.probSums(h)?.slice() ?? null));
      segs.forEach(({ kv }, i) => sums0[i]!.forEach((s0, h) => s0 && kv.probSums(h)!.set(s0)));
      const table = k.segmentTable(8);
      const task = op.attentions(table, parts, { nHeads, qChunk: 2 });
      assert.equal(task.units, specs.reduce((n, sp) => n + nKv * (sp.sums ? 1 : Math.ceil(sp.nq / 2)), 0), 'units: (segment, KV head, query chunk)');
      k.runLocal(task);
      assert.deepEqual(bits(k.read(outAll)), bits(k.read(outOne)), `${type} ${nKv}x${G}x${d} outputs`);
      assert.ok(k.read(outAll).every((v) => Number.isFinite(v)), 'every row written');
      segs.forEach(({ kv }, i) => {
        for (let h = 0; h < nKv; h++) {
          const got = kv.probSums(h);
          if (got) assert.deepEqual(bits(got), bits(sumsOne[i]![h]!), `${type} segment ${i} probSums head ${h}`);
        }
      });
      k.release(m0);
    }
  }
  const m0 = k.mark();
  const kv = k.kvLayer({ type: 'f32', nKvHeads: 2, headDim: 4, capacity: 4 });
  const kv16 = k.kvLayer({ type: 'f16', nKvHeads: 2, headDim: 4, capacity: 4 });
  kv.setLengthAll(2);
  kv16.setLengthAll(2);
  const v = k.vec(32);
  const one = { kv, q: v, out: v, nq: 1 };
  assert.throws(() => op.attentions(k.segmentTable(1), [one, one], { nHeads: 2 }), /2 segments for a table of 1/);
  assert.throws(() => op.attentions(k.segmentTable(2), [one, { ...one, kv: kv16 }], { nHeads: 2 }), /segment 1 is f16 2x4, segment 0 f32 2x4/);
  assert.throws(() => op.attentions(k.segmentTable(2), [one, { ...one, nq: 3 }], { nHeads: 2 }), /KV head 0 holds 2 slots, fewer than the 3 query tokens/);
  k.release(m0);
});

test('kvStore: slots length - nTok + t per head; f32 copies, f16 rounds to nearest even (saturating), int8 per-slot scale', () => {
  const r = rng(9);
  for (const type of ['f32', 'f16', 'int8'] as KvDtype[]) {
    const m0 = k.mark();
    const nKv = 2;
    const d = 8;
    const nTok = 3;
    const kv = k.kvLayer({ type, nKvHeads: nKv, headDim: d, capacity: 10 });
    kv.setLength(0, 3);
    kv.setLength(1, 7);
    const srcStride = nKv * d + 1;
    const ks = randArray(r, (nTok - 1) * srcStride + nKv * d, 3);
    const vs = randArray(r, (nTok - 1) * srcStride + nKv * d, 3);
    if (type === 'f16') {
      // Specials: overflow (saturates to 65504), the largest half, ties at the subnormal edge, -0,
      // NaN payload, -inf (saturates).
      // 1 + 2^-11 ties down to the even 1.0, 1 + 3 * 2^-11 ties up to the even 1 + 2^-9.
      ks.set([65520, 65519, 2 ** -25, 3 * 2 ** -26, -0, NaN, -Infinity, 1 + 2 ** -11]);
      ks.set([-(1 + 3 * 2 ** -11), 1 + 3 * 2 ** -11, 5 * 2 ** -25, 2 ** -14 - 2 ** -25], d);
      new Uint32Array(ks.buffer)[5] = 0x7fa12345;
    }
    if (type === 'int8') vs.fill(0, 0, d); // a zero row: scale 0, q 0
    k.runLocal(op.kvStore(kv, k.vecFrom(ks), k.vecFrom(vs), { nTok, srcStride }));
    for (let h = 0; h < nKv; h++) {
      const slot0 = kv.length(h) - nTok;
      for (const [src, area, scales] of [[ks, kv.keys(h), kv.keyScales(h)], [vs, kv.values(h), kv.valueScales(h)]] as const) {
        for (let j = 0; j < 10; j++) {
          const t = j - slot0;
          const got = Array.from(area.subarray(j * d, (j + 1) * d));
          if (t < 0 || t >= nTok) {
            assert.ok(got.every((v) => v === 0), `${type} head ${h} slot ${j} untouched`);
            continue;
          }
          const row = src.subarray(t * srcStride + h * d, t * srcStride + h * d + d);
          if (type === 'f32') {
            assert.deepEqual(bits(Float32Array.from(got)), bits(row), `f32 head ${h} slot ${j}`);
          } else if (type === 'f16') {
            assert.deepEqual(got, Array.from(row, (v) => f32ToF16(Math.max(-65504, Math.min(65504, v)))), `f16 head ${h} slot ${j}`);
          } else {
            let amax = 0;
            for (const v of row) amax = Math.max(amax, Math.abs(v));
            const sc = Math.fround(amax / 127);
            const id = sc !== 0 ? Math.fround(1 / sc) : 0;
            assert.equal(scales![j], sc, `int8 scale head ${h} slot ${j}`);
            assert.deepEqual(got, Array.from(row, (v) => roundHalfEven(Math.fround(v * id)) + 0), `int8 head ${h} slot ${j}`);
          }
        }
      }
    }
    k.release(m0);
  }
});

test('kvStore f16: 4096 random float32 bit patterns round like formats/half.ts (after saturation)', () => {
  const r = rng(11);
  const m0 = k.mark();
  const d = 64;
  const nTok = 64;
  const kv = k.kvLayer({ type: 'f16', nKvHeads: 1, headDim: d, capacity: nTok });
  kv.setLength(0, nTok);
  const src = new Float32Array(nTok * d);
  const u = new Uint32Array(src.buffer);
  for (let i = 0; i < u.length; i++) u[i] = (r() * 2 ** 32) >>> 0;
  k.runLocal(op.kvStore(kv, k.vecFrom(src), k.vecFrom(src), { nTok }));
  const want = Array.from(src, (v) => f32ToF16(Math.max(-65504, Math.min(65504, v))));
  assert.deepEqual(Array.from(kv.keys(0)), want);
  assert.ok(want.some((h) => h === 0x7bff) && want.some((h) => (h & 0x7c00) === 0x7c00), 'saturated and NaN cases present');
  k.release(m0);
});

test('embed: rows widened to f32 bit for bit as the TS dequantisers do', () => {
  const r = rng(10);
  for (const type of TYPES) {
    const m0 = k.mark();
    const rows = 37;
    const cols = 96;
    const W = k.matrixFromF32(type, rows, cols, randArray(r, rows * cols, 4));
    const w = storedWeights(W);
    const idList = [5, 0, 36, 5];
    const ids = k.ints(idList.length);
    k.i32(ids).set(idList);
    const y = k.vec(idList.length * cols);
    k.runLocal(op.embed(W, ids, y));
    const want = new Float32Array(idList.length * cols);
    idList.forEach((id, j) => want.set(w.subarray(id * cols, (id + 1) * cols), j * cols));
    assert.deepEqual(bits(k.read(y)), bits(want), `embed ${type}`);
    k.release(m0);
  }
});

test('arena: alignment, growth past the initial size, zeroed reuse, and the maximum', async () => {
  const small = await kernels({ threads: 1, initialBytes: 1 << 20, maxBytes: 8 << 20 });
  try {
    const a = small.alloc(3, 1);
    const b = small.alloc(10, 256);
    assert.equal(b % 256, 0);
    assert.ok(b >= a + 3);
    const before = small.memoryBytes;
    const m = small.mark();
    const big = small.vec((3 << 20) / 4);
    assert.ok(small.memoryBytes > before, 'memory grew');
    small.f32(big).fill(7);
    small.release(m);
    const again = small.vec(16);
    assert.ok(small.f32(again).every((v) => v === 0), 'released memory comes back zeroed');
    assert.throws(() => small.alloc(16 << 20), (e: unknown) => e instanceof KvsieveError && /maximum is 8388608/.test(e.message));
  } finally {
    await small.dispose();
  }
});

test('attention scratch that grows with the sequence does not pile up in the arena', async () => {
  // Decode grows a head's scores row by one slot per token; the arena only moves up. Every 64 bytes
  // of growth used to leave the previous scratch behind: sum over lengths, not twice the last one.
  const small = await kernels({ threads: 1 });
  try {
    const [nHeads, d, cap] = [7, 8, 4000];
    const kv = small.kvLayer({ type: 'f32', nKvHeads: 1, headDim: d, capacity: cap });
    const q = small.vec(nHeads * d);
    const out = small.vec(nHeads * d);
    const run = (len: number) => {
      kv.setLength(0, len);
      small.run(op.attention(kv, q, out, { nHeads }));
    };
    run(16);
    const m0 = small.mark();
    run(cap / 2); // something allocated after the scratch: it cannot grow in place any more
    small.vec(16);
    for (let len = cap / 2; len <= cap; len += 3) run(len);
    const finalScores = nHeads * cap * 4;
    const grown = small.mark() - m0;
    assert.ok(grown < 4 * finalScores, `arena grew ${grown} bytes for a final scores row of ${finalScores}`);
  } finally {
    await small.dispose();
  }
});

test('a scratch that cannot grow leaves the arena as it was', async () => {
  const small = await kernels({ threads: 1, initialBytes: 1 << 20, maxBytes: 8 << 20 });
  try {
    const [nHeads, d, cap] = [64, 4, 40000]; // scores of 64 heads x 40000 slots: 10 MB, past the maximum
    const kv = small.kvLayer({ type: 'f32', nKvHeads: 1, headDim: d, capacity: cap });
    const q = small.vec(nHeads * d);
    const out = small.vec(nHeads * d);
    const run = (len: number) => {
      kv.setLength(0, len);
      small.run(op.attention(kv, q, out, { nHeads }));
    };
    run(16); // the scratch is now the last allocation
    const m = small.mark();
    assert.throws(() => run(cap), (e: unknown) => e instanceof KvsieveError && /maximum is 8388608/.test(e.message));
    assert.equal(small.mark(), m);
    const after = small.vec(16); // must not land on the scratch still in use
    assert.ok(after.ptr >= m);
    run(16);
  } finally {
    await small.dispose();
  }
});

test('bad arguments are refused by name as internal faults; a trapping kernel becomes an InternalError; bad weights are bad input', async () => {
  const m0 = k.mark();
  const W = k.matrixFromF32('f32', 4, 8, new Float32Array(32));
  assert.throws(() => op.matvec(W, k.vec(7), k.vec(4)), (e: unknown) => e instanceof InternalError && /matvec input holds 7 values, needs 8/.test(e.message));
  assert.throws(() => k.matrix('q8_0', 2, 40), /q8_0 needs a multiple of 32 columns, got 40/);
  assert.throws(() => k.matrixFromF32('f32', 2, 2, new Float32Array(3)), /needs 4 values, got 3/);
  assert.throws(() => k.matrixFromF32('f16', 2, 3, Float32Array.from([1, 2, 3, 4, 1e6, 6]), 'blk.0.ffn_up'),
    (e: unknown) => e instanceof KvsieveError && /blk\.0\.ffn_up \(f16 \[2, 3\]\) has a non-finite value at row 1, column 1/.test(e.message));
  const q8 = new Uint8Array(2 * 34 * 2);
  q8[34 * 3] = 0x00;
  q8[34 * 3 + 1] = 0x7e; // NaN scale of row 1, block 1
  assert.throws(() => k.matrixFromBytes('q8_0', 2, 64, q8), /non-finite block scale at row 1, column 32/);
  const kv = k.kvLayer({ type: 'f32', nKvHeads: 2, headDim: 4, capacity: 4 });
  assert.throws(() => op.attention(kv, k.vec(24), k.vec(24), { nHeads: 3 }), /3 query heads is not a multiple of 2 KV heads/);
  assert.throws(() => op.attention(kv, k.vec(8), k.vec(8), { nHeads: 2 }), /KV head 0 holds 0 slots/);
  // A weight pointer past the end of memory traps inside wasm.
  const wild: Matrix = { ...W, ptr: k.memoryBytes - 16 };
  assert.throws(() => k.runLocal(op.matvec(wild, k.vec(8), k.vec(4))), (e: unknown) => e instanceof InternalError && /wasm kernel failed/.test(e.message));
  assert.throws(() => k.run(...Array.from({ length: 65 }, () => new Task(7, 0, 1))), /65 tasks, at most 64/);
  await assert.rejects(loadKernelModule('/nonexistent/kernels.wasm'), (e: unknown) => e instanceof InternalError && /build-wasm/.test(e.message));
  k.release(m0);
});
