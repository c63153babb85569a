// Q4_K / Q5_K / Q6_K weights read as stored (asm/kquant.ts) against references written here from the
// formats' definitions:
//  - exactWeights decodes a superblock's values in float64 (exact: d sc q - dmin m has no rounding
//    there), independently of src/formats/gguf-quant.ts (whose float32 dequantisation is checked
//    against it within its two roundings, and against op.embed bit for bit);
//  - products: the reference quantises the input as the kernel does (quantSuperRef: per superblock
//    of 256 values dx = amax/127, q = round-half-even(x/dx), as ggml's q8_K), so only the kernel's
//    float steps round: per (row, token) at most (nb + 8) 2U sum dx sum_j (|d sc_j q_j| + |dmin m_j|) |qx_j|
//    (nb blocks of 32, U = 2^-24; the kernel has fewer steps, one per superblock, so this is loose).
//    Against the unquantised input the extra error is at most sum dx / 2 sum |w|: that, plus the same
//    float budget, is the tolerance against dequantise-then-f32.
//  - every token's rows of a product over 2..33 and 64 tokens equal its one-token matvec bit for
//    bit, and the fused gate-up equals its two products and the gate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { kernels, rng, randArray, U32, bits, assertClose, roundHalfEven } from './helpers.js';
import type { WeightType } from '../../../src/backend/wasm/abi.js';
import { op } from '../../../src/backend/wasm/ops.js';
import { dequantizeBlocks } from '../../../src/formats/gguf-quant.js';
import { quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from '../../../src/quant/k-quants.js';
import { f16ToF32, f32ToF16 } from '../../../src/core/half.js';
import { WasmBackend } from '../../../src/backend/wasm/backend.js';
import { KvsieveError } from '../../../src/core/errors.js';
import { relaxedSimdAvailable } from '../../../src/backend/wasm/node.js';
import { repoRoot } from '../../helpers.js';
import { join } from 'node:path';

const k = await kernels({ threads: 1 });
const k2 = await kernels({ threads: 2 });
after(() => Promise.all([k.dispose(), k2.dispose()]));

type KType = 'q4_k' | 'q5_k' | 'q6_k';
const K_TYPES: readonly KType[] = ['q4_k', 'q5_k', 'q6_k'];
const GGML: Record<KType, string> = { q4_k: 'Q4_K', q5_k: 'Q5_K', q6_k: 'Q6_K' };
const BLOCK: Record<KType, number> = { q4_k: 144, q5_k: 176, q6_k: 210 };

/**
 * Each value of the row-major [rows, cols] weights in float64 (exact) and its magnitude budget
 * |d sc q| + |dmin m| (Q6_K: |d sc q|), decoded from the format's definition value by value
 * (Q5_K: Q4_K's scales and nibbles at byte 48, the fifth bit of value l of sub-block j at bit j of
 * byte 16 + l).
 */
function exactWeights(type: KType, bytes: Uint8Array, n: number): { w: Float64Array; mag: Float64Array } {
  const w = new Float64Array(n);
  const mag = new Float64Array(n);
  const h = (o: number) => f16ToF32(bytes[o]! | (bytes[o + 1]! << 8));
  for (let b = 0; b < n / 256; b++) {
    const o = b * BLOCK[type];
    for (let i = 0; i < 256; i++) {
      const at = b * 256 + i;
      if (type !== 'q6_k') {
        const j = i >> 5; // sub-block
        const s = o + 4;
        const sc = j < 4 ? bytes[s + j]! & 63 : (bytes[s + j + 4]! & 15) | ((bytes[s + j - 4]! >> 6) << 4);
        const m = j < 4 ? bytes[s + j + 4]! & 63 : (bytes[s + j + 4]! >> 4) | ((bytes[s + j]! >> 6) << 4);
        const byte = bytes[o + (type === 'q5_k' ? 48 : 16) + 32 * (j >> 1) + (i & 31)]!;
        const fifth = type === 'q5_k' ? ((bytes[o + 16 + (i & 31)]! >> j) & 1) * 16 : 0;
        const q = (j % 2 === 0 ? byte & 15 : byte >> 4) + fifth;
        w[at] = h(o) * sc * q - h(o + 2) * m;
        mag[at] = Math.abs(h(o) * sc * q) + Math.abs(h(o + 2) * m);
      } else {
        const n2 = i >> 7; // half
        const r = i & 127;
        const kk = r >> 5;
        const l = r & 31;
        const qlByte = bytes[o + 64 * n2 + 32 * (kk & 1) + l]!;
        const low = kk < 2 ? qlByte & 15 : qlByte >> 4;
        const high = (bytes[o + 128 + 32 * n2 + l]! >> (2 * kk)) & 3;
        const q = (low | (high << 4)) - 32;
        const sc = (bytes[o + 192 + 8 * n2 + 2 * kk + (l >> 4)]! << 24) >> 24;
        w[at] = h(o + 208) * sc * q;
        mag[at] = Math.abs(w[at]!);
      }
    }
  }
  return { w, mag };
}

/** Random valid blocks: every byte random, the f16 scales set to finite values of about `scale` (either sign for Q6_K's d). */
function randomBlocks(type: KType, r: () => number, nBlocks: number, scale: number): Uint8Array {
  const b = new Uint8Array(nBlocks * BLOCK[type]);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  const setHalf = (o: number, v: number) => {
    const h = f32ToF16(v);
    b[o] = h & 255;
    b[o + 1] = h >> 8;
  };
  for (let i = 0; i < nBlocks; i++) {
    const o = i * BLOCK[type];
    if (type !== 'q6_k') {
      setHalf(o, scale * (0.5 + r()));
      setHalf(o + 2, scale * (0.5 + r()));
    } else {
      setHalf(o + 208, scale * (r() - 0.5));
    }
  }
  return b;
}

/** Weights of a [rows, cols] K-quant matrix: half quantised from random values, half random blocks. */
function weights(type: KType, r: () => number, rows: number, cols: number, random: boolean): Uint8Array {
  if (random) return randomBlocks(type, r, (rows * cols) / 256, type === 'q6_k' ? 0.0005 : 0.002);
  const x = randArray(r, rows * cols, 0.5);
  return type === 'q4_k' ? quantizeQ4_K(x) : type === 'q5_k' ? quantizeQ5_K(x) : quantizeQ6_K(x);
}

/** float32 dequantisation by src/formats/gguf-quant.ts. */
function dequantF32(type: KType, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  dequantizeBlocks(GGML[type], bytes, n / 256, out, 0);
  return out;
}

/** The kernel's input quantisation of the 256 values at off (float32 steps, as asm/kquant.ts quantXK). */
function quantSuperRef(x: Float32Array, off: number): { d: number; q: Int32Array } {
  let amax = 0;
  for (let j = 0; j < 256; j++) amax = Math.max(amax, Math.abs(x[off + j]!));
  const d = Math.fround(amax / 127);
  const id = d !== 0 ? Math.fround(1 / d) : 0;
  const q = new Int32Array(256);
  for (let j = 0; j < 256; j++) q[j] = roundHalfEven(Math.fround(x[off + j]! * id));
  return { d, q };
}

const SHAPES: [number, number][] = [[1, 256], [6, 512], [37, 256], [13, 1280]];

test('formats/gguf-quant dequantises Q4_K / Q5_K / Q6_K within its float32 roundings of the exact values, and op.embed gives its rows bit for bit', () => {
  const r = rng(41);
  for (const type of K_TYPES) {
    for (const random of [false, true]) {
      const rows = 9;
      const cols = 768;
      const bytes = weights(type, r, rows, cols, random);
      const { w, mag } = exactWeights(type, bytes, rows * cols);
      const f = dequantF32(type, bytes, rows * cols);
      assertClose(f, w, Array.from(mag, (m) => 3 * U32 * m), `${type} dequantised (random blocks ${random})`);
      const m0 = k.mark();
      const W = k.matrixFromBytes(type, rows, cols, bytes);
      const ids = k.ints(5);
      k.i32(ids).set([8, 0, 3, 3, 7]);
      const y = k.vec(5 * cols);
      k.run(op.embed(W, ids, y));
      const got = k.read(y);
      [8, 0, 3, 3, 7].forEach((row, i) => {
        assert.deepEqual(bits(got.subarray(i * cols, (i + 1) * cols)), bits(f.subarray(row * cols, (row + 1) * cols)), `${type} embed row ${row}`);
      });
      k.release(m0);
    }
  }
});

test('Q4_K / Q5_K / Q6_K matvec: within the float32 bound of the exact product on the kernel-quantised input, and of dequantise-then-f32 within the input rounding', () => {
  const r = rng(42);
  for (const type of K_TYPES) {
    for (const [rows, cols] of SHAPES) {
      for (const random of [false, true]) {
        const m0 = k.mark();
        const bytes = weights(type, r, rows, cols, random);
        const W = k.matrixFromBytes(type, rows, cols, bytes);
        const { w, mag } = exactWeights(type, bytes, rows * cols);
        const f = dequantF32(type, bytes, rows * cols);
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
          for (let sb = 0; sb < cols / 256; sb++) {
            const { d, q } = quantSuperRef(xs, sb * 256);
            for (let j = 0; j < 256; j++) {
              const c = row * cols + sb * 256 + j;
              s += d * q[j]! * w[c]!;
              budget += d * Math.abs(q[j]!) * mag[c]!;
              sF += f[c]! * xs[sb * 256 + j]!;
              absF += Math.abs(f[c]! * xs[sb * 256 + j]!);
              inputErr += (d / 2) * Math.abs(f[c]!);
            }
          }
          const floatBudget = (nb + 8) * 2 * U32 * budget;
          want[row] = before[row]! + (s + bias[row]!);
          tol[row] = floatBudget + 4 * U32 * (Math.abs(s) + Math.abs(bias[row]!) + Math.abs(before[row]!));
          // dequantise-then-f32: the input's rounding, the dequantised weights' roundings (3U |mag|,
          // times |x|), the kernel's float budget and the f32 sum's own ((cols + 8) U sum |w x|)
          wantF[row] = before[row]! + (sF + bias[row]!);
          tolF[row] = tol[row]! + inputErr + 3 * U32 * 2 * budget + (cols + 8) * U32 * absF;
        }
        assertClose(got, want, tol, `${type} [${rows}, ${cols}] random blocks ${random}: vs the exact product`);
        assertClose(got, wantF, tolF, `${type} [${rows}, ${cols}] random blocks ${random}: vs dequantise-then-f32`);
        k.release(m0);
      }
    }
  }
});

test('Q4_K / Q5_K / Q6_K over 2..33 and 64 tokens: every token\'s rows equal its one-token matvec bit for bit (1 and 2 threads, bias, accumulate, strides)', () => {
  const r = rng(43);
  for (const type of K_TYPES) {
    for (const [rows, cols] of [[37, 512], [6, 256], [13, 1280]] as [number, number][]) {
      const bytes = weights(type, r, rows, cols, rows === 6);
      for (const kk of [k, k2]) {
        const m0 = kk.mark();
        const W = kk.matrixFromBytes(type, rows, cols, bytes);
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
            assert.deepEqual(bits(all.subarray(t * yStride, t * yStride + rows)), bits(kk.read(y1)), `${type} [${rows}, ${cols}] ${nTok} tokens, token ${t}, ${kk.threads} threads`);
          }
          kk.release(m1);
        }
        kk.release(m0);
      }
    }
  }
});

test('Q4_K / Q5_K / Q6_K gate-up: the fused op equals its two products and the SiLU gate bit for bit', () => {
  const r = rng(44);
  for (const type of K_TYPES) {
    for (const nTok of [1, 3, 20]) {
      const m0 = k2.mark();
      const rows = 1100; // more than one GU_CHUNK of 512 rows
      const cols = 512;
      const G = k2.matrixFromBytes(type, rows, cols, weights(type, r, rows, cols, false));
      const U = k2.matrixFromBytes(type, rows, cols, weights(type, r, rows, cols, true));
      const x = k2.vecFrom(randArray(r, nTok * cols));
      const h = k2.vec(nTok * rows);
      k2.run(op.gateUpSilu(G, U, x, h, { nTok }));
      const g = k2.vec(nTok * rows);
      const u = k2.vec(nTok * rows);
      k2.run(op.matvec(G, x, g, { nTok }), op.matvec(U, x, u, { nTok }));
      const h2 = k2.vec(nTok * rows);
      k2.run(op.siluGate(g, u, h2, nTok * rows));
      assert.deepEqual(bits(k2.read(h)), bits(k2.read(h2)), `${type} ${nTok} tokens`);
      k2.release(m0);
    }
  }
});

test('K-quant weights: the wasm backend keeps Q4_K / Q5_K / Q6_K at their stored bytes (keepStoredQuants, keepStoredKQuants), refuses rows that are not whole superblocks naming the tensor, and leaves other storage to the dequantised path', () => {
  const backend = new WasmBackend(k, { weights: 'q8_0', keepStoredQuants: true });
  assert.equal(new WasmBackend(k, { weights: 'q8_0' }).takesStored('Q4_K', 512), false, 'converted without keepStored*');
  // keepStoredKQuants (loadModel's default): K-quants kept, Q4_0 still converted to q8_0, nothing kept with float storage
  const kOnly = new WasmBackend(k, { weights: 'q8_0', keepStoredKQuants: true });
  assert.equal(kOnly.takesStored('Q4_K', 512), true);
  assert.equal(kOnly.takesStored('Q6_K', 512), true);
  assert.equal(kOnly.takesStored('Q4_0', 512), false);
  assert.equal(kOnly.weightFromStored('Q6_K', weights('q6_k', rng(47), 2, 512, false), 2, 512).bytes, (2 * 512 / 256) * 210);
  assert.equal(new WasmBackend(k, { weights: 'f16', keepStoredKQuants: true }).takesStored('Q4_K', 512), false);
  const r = rng(45);
  for (const type of K_TYPES) {
    const bytes = weights(type, r, 4, 512, false);
    assert.equal(backend.takesStored(GGML[type], 512), true);
    const wgt = backend.weightFromStored(GGML[type], bytes, 4, 512, 'blk.0.ffn_down.weight');
    assert.equal(wgt.bytes, bytes.byteLength);
    assert.equal(wgt.bytes, (4 * 512 / 256) * BLOCK[type]);
    assert.equal(backend.takesStored(GGML[type], 320), false);
    assert.throws(() => backend.weightFromStored(GGML[type], bytes.subarray(0, 4 * 144), 4, 320, 'blk.3.attn_v.weight'),
      (e: unknown) => e instanceof KvsieveError && /blk\.3\.attn_v\.weight/.test(e.message) && /multiple of 256/.test(e.message));
  }
  assert.equal(backend.takesStored('Q5_1', 512), false);
  assert.throws(() => backend.weightFromStored('Q5_1', new Uint8Array(24), 1, 32, 'output.weight'),
    (e: unknown) => e instanceof KvsieveError && /output\.weight/.test(e.message) && /Q5_1/.test(e.message));
  // float storage asks for dequantised weights: K-quants go through weight() there
  assert.equal(new WasmBackend(k, { weights: 'f32' }).takesStored('Q4_K', 512), false);
  const nonFinite = weights('q4_k', r, 1, 256, false);
  nonFinite[2] = 0x00;
  nonFinite[3] = 0x7c; // dmin = +inf
  assert.throws(() => k.matrixFromBytes('q4_k' as WeightType, 1, 256, nonFinite, 'blk.1.attn_q.weight'),
    (e: unknown) => e instanceof KvsieveError && /blk\.1\.attn_q\.weight/.test(e.message) && /block scale/.test(e.message));
});


test('Q4_K / Q5_K / Q6_K: the relaxed-SIMD build (i8 pair dots) and the plain build give the same bits, extreme values included', { skip: !relaxedSimdAvailable() && 'no relaxed SIMD here' }, async () => {
  // Weights at their largest codes (nibbles 15, Q5_K values 31, Q6_K values 63 above the offset, scales 63 / -128) and
  // inputs at +-amax (|q| = 127): the pair sums the relaxed dot forms are at their largest there.
  const rows = 9;
  const cols = 768;
  const results = new Map<string, Uint32Array[]>();
  for (const file of ['kernels.wasm', 'kernels-relaxed.wasm']) {
    const r = rng(46); // the same weights and inputs for both builds
    const kk = await kernels({ threads: 1, wasmPath: join(repoRoot, 'dist', 'wasm', file) });
    const out: Uint32Array[] = [];
    for (const type of K_TYPES) {
      for (const extreme of [false, true]) {
        const bytes = weights(type, r, rows, cols, true);
        if (extreme) {
          for (let b = 0; b < (rows * cols) / 256; b++) {
            const o = b * BLOCK[type];
            if (type !== 'q6_k') bytes.fill(0xff, o + 4, o + BLOCK[type]);
            else {
              bytes.fill(0xff, o, o + 192);
              bytes.fill(0x80, o + 192, o + 208);
            }
          }
        }
        const W = kk.matrixFromBytes(type, rows, cols, bytes);
        for (const nTok of [1, 5]) {
          const xs = randArray(r, nTok * cols, 2);
          if (extreme) for (let i = 0; i < xs.length; i++) xs[i] = i % 3 === 0 ? -2 : 2;
          const y = kk.vec(nTok * rows);
          kk.run(op.matvec(W, kk.vecFrom(xs), y, { nTok }));
          out.push(bits(kk.read(y)));
        }
      }
    }
    results.set(file, out);
    await kk.dispose();
  }
  const plain = results.get('kernels.wasm')!;
  const relaxed = results.get('kernels-relaxed.wasm')!;
  plain.forEach((p, i) => assert.deepEqual(relaxed[i], p, `case ${i}`));
});
