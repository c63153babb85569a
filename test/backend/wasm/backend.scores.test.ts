// The scoring reductions of the wasm backend (ScoreKernels: dots, redundancy) against the plain references:
// odd sizes (head dims that are not multiples of 4, fewer than 4 rows or keys), several heads of different
// lengths in one call, keys inside and outside the kernels' memory, one and two threads. Then every press
// that uses them keeps exactly the same slots with and without the kernels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WasmBackend } from '../../../src/backend/wasm/backend.js';
import { compressLayer, resolvePressOptions, toLayerView } from '../../../src/press/index.js';
import { naiveRedundancy, randMatrix, randomView, rng, toSelectView } from '../../press/naive.js';
import { kernels } from './helpers.js';

async function backend(threads: number): Promise<WasmBackend> {
  return new WasmBackend(await kernels({ threads }));
}

for (const threads of [1, 2]) {
  test(`wasm dots: scale * a_r . k_j on odd shapes (${threads} thread${threads > 1 ? 's' : ''})`, async () => {
    const be = await backend(threads);
    try {
      const r = rng(7 + threads);
      for (const [rows, n, d] of [[1, 1, 1], [3, 5, 3], [4, 7, 4], [5, 33, 7], [9, 130, 64], [56, 41, 64], [13, 2, 130]] as const) {
        const a = Float32Array.from(randMatrix(r, rows, d).flat());
        const k = Float32Array.from(randMatrix(r, n, d).flat());
        const scale = 1 / Math.sqrt(d);
        const out = new Float32Array(rows * n).fill(NaN);
        be.scoreKernels.dots(a, rows, k, n, d, scale, out);
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            let mag = 0;
            for (let t = 0; t < d; t++) (s += a[i * d + t]! * k[j * d + t]!), (mag += Math.abs(a[i * d + t]! * k[j * d + t]!));
            const got = out[i * n + j]!;
            assert.ok(Math.abs(got - s * scale) <= 1e-6 * (1 + mag * scale), `rows=${rows} n=${n} d=${d} [${i}, ${j}]: ${got} vs ${s * scale}`);
          }
        }
      }
    } finally {
      be.dispose();
    }
  });

  test(`wasm redundancy equals the naive n x n reference within 1e-6, heads of different lengths in one call (${threads} thread${threads > 1 ? 's' : ''})`, async () => {
    const be = await backend(threads);
    try {
      const r = rng(21 + threads);
      for (const [d, tau] of [[3, 0.5], [4, 0.5], [2, 0.3], [8, 0.1], [16, 0.5], [4, -0.2], [3, 0.95], [64, 0.5]] as const) {
        const lengths = [1, 2, 3, 5, 17, 73, 130].sort(() => r() - 0.5).slice(0, 3);
        const keysM = lengths.map((n) => {
          const m = randMatrix(r, n, d);
          // plant near-duplicates so rows have late matches above the threshold
          for (let t = 0; t < n / 5; t++) m[Math.floor(r() * n)] = m[Math.floor(r() * n)]!.map((x) => Math.fround(x * 1.01));
          return m;
        });
        // the first head's keys live in the kernels' memory (used in place), the others are copied in
        const keys = keysM.map((m, h) => {
          const flat = Float32Array.from(m.flat());
          if (h > 0) return flat;
          const inMemory = be.allocF32(flat.length + d);
          inMemory.set(flat);
          return inMemory;
        });
        const out = lengths.map((n) => new Float64Array(n).fill(NaN));
        be.scoreKernels.redundancy(keys, lengths, d, tau, out);
        lengths.forEach((n, h) => {
          const want = naiveRedundancy(keysM[h]!, tau);
          want.forEach((x, j) => assert.ok(Math.abs(out[h]![j]! - x) < 1e-6, `d=${d} tau=${tau} n=${n} j=${j}: ${out[h]![j]} vs ${x}`));
        });
      }
      // hand-computed (see test/press/rkv.test.ts): unit keys e_x, e_x, e_y, (.6, .8), -e_x
      const c = [new Float64Array(5)];
      be.scoreKernels.redundancy([Float32Array.from([1, 0, 1, 0, 0, 1, 0.6, 0.8, -1, 0])], [5], 2, 0.5, c);
      [0.32, 0.12, 0, -0.12, -0.52].forEach((x, j) => assert.ok(Math.abs(c[0]![j]! - x) < 1e-6, `c[${j}] = ${c[0]![j]} vs ${x}`));
    } finally {
      be.dispose();
    }
  });
}

test('wasm redundancy in the upper half of a memory past 2 GiB (pointers above 2^31) equals the naive reference', async () => {
  // untouched wasm pages are not resident, so the 2 GiB below costs address space, not memory
  const be = await backend(2);
  try {
    be.allocF32(2 ** 29 + 1000);
    const r = rng(77);
    const d = 8;
    const lengths = [37, 90];
    const keysM = lengths.map((n) => randMatrix(r, n, d));
    const keys = keysM.map((m, h) => {
      const flat = Float32Array.from(m.flat());
      if (h > 0) return flat; // copied in, above 2 GiB
      const inMemory = be.allocF32(flat.length);
      inMemory.set(flat);
      assert.ok(inMemory.byteOffset >= 2 ** 31, `keys at ${inMemory.byteOffset}`);
      return inMemory;
    });
    const out = lengths.map((n) => new Float64Array(n).fill(NaN));
    be.scoreKernels.redundancy(keys, lengths, d, 0.3, out);
    lengths.forEach((n, h) => {
      const want = naiveRedundancy(keysM[h]!, 0.3);
      want.forEach((x, j) => assert.ok(Math.abs(out[h]![j]! - x) < 1e-6, `n=${n} j=${j}: ${out[h]![j]} vs ${x}`));
    });
  } finally {
    be.dispose();
  }
});

test('every press that scores with attention or redundancy keeps the same slots with the wasm kernels as without', async () => {
  const be = await backend(2);
  try {
    let seed = 900;
    const cases: [string, Record<string, unknown>][] = [
      ['r-kv', { budget: 30, window: 8 }],
      ['r-kv', { budget: 20, window: 4, lambda: 0.5, threshold: 0.2 }],
      ['snapkv', { budget: 30, window: 8 }],
      ['snapkv', { budget: 30, window: 8, gqa: 'max-logits', pooling: 'max', kernel: 7 }],
      ['pyramidkv', { budget: 30, window: 8 }],
      ['tova', { budget: 30 }],
      ['mix-kv', { budget: 30, window: 8 }],
      ['ada-kv', { budget: 30, window: 8, inner: 'r-kv' }],
      ['ada-kv', { budget: 30, window: 8, inner: 'snapkv' }],
    ];
    for (const [press, input] of cases) {
      for (const [H, Q, d, n] of [[2, 14, 64, 101], [1, 3, 6, 57], [4, 4, 8, 90]] as const) {
        const v = randomView(seed++, { H, Q, d, n, w: 8, layer: 1, numLayers: 3, qScale: 3 });
        const o = resolvePressOptions(press, { ...input, phase: 'decode' }, { numLayers: 3, numKvHeads: H, headDim: d });
        const lv = toLayerView(toSelectView(v));
        const plain = compressLayer(press, o, lv).map((k) => Array.from(k));
        const fast = compressLayer(press, o, { ...lv, kernels: be.scoreKernels }).map((k) => Array.from(k));
        assert.deepEqual(fast, plain, `${press} ${JSON.stringify(input)} H=${H} Q=${Q} d=${d} n=${n}`);
      }
    }
  } finally {
    be.dispose();
  }
});
