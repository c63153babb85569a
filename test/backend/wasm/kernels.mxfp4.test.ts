// MXFP4 weights read as stored (asm/mxfp4.ts) against references written here from the format's
// definition (OCP MX: value = E2M1(c) * 2^(e - 127); ggml's block: e, then qs[16], element j in the low
// nibble of qs[j], j + 16 in the high one):
//  - exactWeights decodes every value in float64, where it is exact; every MXFP4 value is also exact in
//    float32, so src/quant/mxfp4.ts's dequantisation and op.embed must give it bit for bit;
//  - products: the reference quantises the input as the kernel does (quantBlockRef), so only the kernel's
//    float steps round: per (row, token) at most (nb + 8) 2U sum_b dx_b sum_j |w_j q_j| (nb blocks, U =
//    2^-24). Against the unquantised input the extra error is at most sum_b dx_b / 2 sum |w|: that plus the
//    same float budget is the tolerance against dequantise-then-f32;
//  - every token's rows of a product over 2..33 and 64 tokens equal its one-token matvec bit for bit, on
//    1, 2 and 3 threads, and the fused gate-up equals its two products and the gate;
//  - the SIMD128 build (i16 dots) and the relaxed one (i8 x i7 dots of the codes offset by 12) give the
//    same bits.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { kernels, rng, randArray, U32, quantBlockRef, bits, assertClose } from './helpers.js';
import { op } from '../../../src/backend/wasm/ops.js';
import { dequantizeMXFP4, quantizeMXFP4, MXFP4_BLOCK_BYTES } from '../../../src/quant/mxfp4.js';
import { WasmBackend } from '../../../src/backend/wasm/backend.js';
import { KvsieveError } from '../../../src/core/errors.js';
import { createKernels, relaxedSimdAvailable } from '../../../src/backend/wasm/node.js';
import { join } from 'node:path';
import { repoRoot } from '../../helpers.js';

const k = await kernels({ threads: 1 });
const k2 = await kernels({ threads: 2 });
const k3 = await kernels({ threads: 3 });
after(() => Promise.all([k.dispose(), k2.dispose(), k3.dispose()]));

const MAGNITUDE = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** Every value of the row-major weights in float64, from the definition. */
function exactWeights(bytes: Uint8Array, n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = Math.floor(i / 32) * MXFP4_BLOCK_BYTES;
    const j = i % 32;
    const code = j < 16 ? bytes[o + 1 + j]! & 15 : bytes[o + 1 + j - 16]! >> 4;
    const v = MAGNITUDE[code & 7]! * 2 ** (bytes[o]! - 127);
    w[i] = code & 8 ? -v : v;
  }
  return w;
}

/** Weights of a [rows, cols] matrix: quantised from random values, or random bytes with scales 2^-9 .. 2^-3. */
function weights(r: () => number, rows: number, cols: number, random: boolean): Uint8Array {
  if (!random) return quantizeMXFP4(randArray(r, rows * cols, 0.5));
  const b = new Uint8Array((rows * cols / 32) * MXFP4_BLOCK_BYTES);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  for (let o = 0; o < b.length; o += MXFP4_BLOCK_BYTES) b[o] = 118 + Math.floor(r() * 7);
  return b;
}

test('MXFP4: src/quant dequantises every value exactly (float32 holds them), op.embed gives its rows bit for bit, e = 0 and 1 included', () => {
  const r = rng(51);
  for (const random of [false, true]) {
    const rows = 9;
    const cols = 96;
    const bytes = weights(r, rows, cols, random);
    if (random) {
      bytes[0] = 0; // 2^-127: subnormal values
      bytes[MXFP4_BLOCK_BYTES] = 1;
      bytes[2 * MXFP4_BLOCK_BYTES] = 200;
    }
    const w = exactWeights(bytes, rows * cols);
    const f = dequantizeMXFP4(bytes, rows * cols);
    assert.deepEqual(Array.from(f, (v) => v + 0), Array.from(w, (v) => Math.fround(v) + 0), `dequantised (random blocks ${random})`);
    const m0 = k.mark();
    const W = k.matrixFromBytes('mxfp4', rows, cols, bytes);
    assert.equal(W.bytes, bytes.byteLength);
    const ids = k.ints(5);
    k.i32(ids).set([8, 0, 3, 3, 7]);
    const y = k.vec(5 * cols);
    k.run(op.embed(W, ids, y));
    const got = k.read(y);
    [8, 0, 3, 3, 7].forEach((row, i) => {
      assert.deepEqual(bits(got.subarray(i * cols, (i + 1) * cols)), bits(f.subarray(row * cols, (row + 1) * cols)), `embed row ${row}`);
    });
    k.release(m0);
  }
});

test('MXFP4 matvec on odd shapes: within the float32 bound of the exact product on the kernel-quantised input, and of dequantise-then-f32 within the input rounding', () => {
  const r = rng(52);
  // rows 4k + 1..3 (the four quarters and tail rows), columns of 1, 2, 3 and 66 blocks (two column segments)
  for (const [rows, cols] of [[1, 32], [6, 64], [37, 96], [13, 2112], [7, 160]] as [number, number][]) {
    for (const random of [false, true]) {
      const m0 = k.mark();
      const bytes = weights(r, rows, cols, random);
      const W = k.matrixFromBytes('mxfp4', rows, cols, bytes);
      const w = exactWeights(bytes, rows * cols);
      const xs = randArray(r, cols, 2);
      const bias = randArray(r, rows);
      const x = k.vecFrom(xs);
      const y = k.vecFrom(randArray(r, rows));
      const before = k.read(y);
      k.run(op.matvec(W, x, y, { bias: k.vecFrom(bias), accumulate: true }));
      const got = k.read(y);
      const nb = cols / 32;
      const want = new Float64Array(rows);
      const tol = new Float64Array(rows);
      const wantF = new Float64Array(rows);
      const tolF = new Float64Array(rows);
      for (let row = 0; row < rows; row++) {
        let s = 0;
        let budget = 0;
        let sF = 0;
        let inputErr = 0;
        let absF = 0;
        for (let b = 0; b < nb; b++) {
          const { d, q } = quantBlockRef(xs, b * 32);
          for (let j = 0; j < 32; j++) {
            const c = row * cols + b * 32 + j;
            s += d * q[j]! * w[c]!;
            budget += d * Math.abs(q[j]! * w[c]!);
            sF += w[c]! * xs[b * 32 + j]!;
            absF += Math.abs(w[c]! * xs[b * 32 + j]!);
            inputErr += (d / 2) * Math.abs(w[c]!);
          }
        }
        want[row] = before[row]! + (s + bias[row]!);
        tol[row] = (nb + 8) * 2 * U32 * budget + 4 * U32 * (Math.abs(s) + Math.abs(bias[row]!) + Math.abs(before[row]!));
        wantF[row] = before[row]! + (sF + bias[row]!);
        tolF[row] = tol[row]! + inputErr + (cols + 8) * U32 * absF;
      }
      assertClose(got, want, tol, `[${rows}, ${cols}] random blocks ${random}: vs the exact product`);
      assertClose(got, wantF, tolF, `[${rows}, ${cols}] random blocks ${random}: vs dequantise-then-f32`);
      k.release(m0);
    }
  }
});

test('MXFP4 over 2..33 and 64 tokens: every token\'s rows equal its one-token matvec bit for bit (1, 2 and 3 threads, bias, accumulate, strides)', () => {
  const r = rng(53);
  for (const [rows, cols] of [[37, 96], [6, 2112], [13, 64]] as [number, number][]) {
    const bytes = weights(r, rows, cols, rows === 6);
    for (const kk of [k, k2, k3]) {
      const m0 = kk.mark();
      const W = kk.matrixFromBytes('mxfp4', rows, cols, bytes);
      const bias = kk.vecFrom(randArray(r, rows));
      for (const nTok of [2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64]) {
        const m1 = kk.mark();
        const xStride = cols + 32;
        const yStride = rows + 3;
        const x = kk.vecFrom(randArray(r, nTok * xStride, 3));
        const init = randArray(r, nTok * yStride);
        const y = kk.vecFrom(init);
        kk.run(op.matvec(W, x, y, { nTok, xStride, yStride, bias, accumulate: true }));
        const all = kk.read(y);
        for (let t = 0; t < nTok; t++) {
          const x1 = kk.vecFrom(kk.read(x).subarray(t * xStride, t * xStride + cols));
          const y1 = kk.vecFrom(init.subarray(t * yStride, t * yStride + rows));
          kk.run(op.matvec(W, x1, y1, { bias, accumulate: true }));
          assert.deepEqual(bits(all.subarray(t * yStride, t * yStride + rows)), bits(kk.read(y1)), `[${rows}, ${cols}] ${nTok} tokens, token ${t}, ${kk.threads} threads`);
        }
        kk.release(m1);
      }
      kk.release(m0);
    }
  }
  // and one token's matvec is the same on 1, 2 and 3 threads
  const rows = 37;
  const cols = 2112;
  const bytes = weights(r, rows, cols, false);
  const xs = randArray(r, cols, 2);
  const results = [k, k2, k3].map((kk) => {
    const m0 = kk.mark();
    const y = kk.vec(rows);
    kk.run(op.matvec(kk.matrixFromBytes('mxfp4', rows, cols, bytes), kk.vecFrom(xs), y));
    const out = bits(kk.read(y));
    kk.release(m0);
    return out;
  });
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
});

test('MXFP4 gate-up: the fused op equals its two products and the SiLU gate bit for bit', () => {
  const r = rng(54);
  for (const nTok of [1, 3, 20]) {
    const m0 = k2.mark();
    const rows = 1100; // more than one GU_CHUNK of 512 rows
    const cols = 192;
    const G = k2.matrixFromBytes('mxfp4', rows, cols, weights(r, rows, cols, false));
    const U = k2.matrixFromBytes('mxfp4', rows, cols, weights(r, rows, cols, true));
    const x = k2.vecFrom(randArray(r, nTok * cols));
    const h = k2.vec(nTok * rows);
    k2.run(op.gateUpSilu(G, U, x, h, { nTok }));
    const g = k2.vec(nTok * rows);
    const u = k2.vec(nTok * rows);
    k2.run(op.matvec(G, x, g, { nTok }), op.matvec(U, x, u, { nTok }));
    const h2 = k2.vec(nTok * rows);
    k2.run(op.siluGate(g, u, h2, nTok * rows));
    assert.deepEqual(bits(k2.read(h)), bits(k2.read(h2)), `${nTok} tokens`);
    k2.release(m0);
  }
});

test('MXFP4 weights: the wasm backend keeps them at their stored bytes under quantised storage (the default q8_0 too), refuses rows that are not whole blocks naming the tensor, and dequantises under float storage', () => {
  const r = rng(55);
  const bytes = weights(r, 4, 96, false);
  for (const backend of [new WasmBackend(k), new WasmBackend(k, { weights: 'q4_0' }), new WasmBackend(k, { weights: 'q8_0', keepStoredQuants: true })]) {
    assert.equal(backend.takesStored('MXFP4', 96), true);
    const wgt = backend.weightFromStored('MXFP4', bytes, 4, 96, 'blk.0.ffn_gate_exps.weight');
    assert.equal(wgt.bytes, bytes.byteLength);
    assert.equal(wgt.bytes, (4 * 96 / 32) * 17);
    assert.equal(backend.takesStored('MXFP4', 100), false);
    assert.throws(() => backend.weightFromStored('MXFP4', bytes, 4, 100, 'blk.3.ffn_up_exps.weight'),
      (e: unknown) => e instanceof KvsieveError && /blk\.3\.ffn_up_exps\.weight/.test(e.message) && /multiple of 32/.test(e.message));
  }
  for (const weights of ['f32', 'f16', 'bf16'] as const) assert.equal(new WasmBackend(k, { weights }).takesStored('MXFP4', 96), false, weights);
});

test('MXFP4 products: the SIMD128 build and the relaxed-SIMD build give the same bits (1, 5 and 20 tokens)', async (t) => {
  if (!relaxedSimdAvailable()) {
    t.skip('this engine does not take relaxed SIMD (KVSIEVE_RELAXED_SIMD=0)');
    return;
  }
  const r = rng(56);
  const rows = 37;
  const cols = 2112;
  const bytes = weights(r, rows, cols, true);
  const xs = randArray(r, 20 * cols, 3);
  const results: Uint32Array[][] = [];
  for (const file of ['kernels.wasm', 'kernels-relaxed.wasm']) {
    const kk = await createKernels({ threads: 1, wasmPath: join(repoRoot, 'dist', 'wasm', file) });
    try {
      const W = kk.matrixFromBytes('mxfp4', rows, cols, bytes);
      results.push([1, 5, 20].map((nTok) => {
        const y = kk.vec(nTok * rows);
        kk.run(op.matvec(W, kk.vecFrom(xs.subarray(0, nTok * cols)), y, { nTok }));
        return bits(kk.read(y));
      }));
    } finally {
      await kk.dispose();
    }
  }
  results[0]!.forEach((want, i) => assert.deepEqual(results[1]![i], want, `product ${i}`));
});
