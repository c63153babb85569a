import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pressScores, redundancyColumnMeans, resolvePressOptions, select, toLayerView } from '../../src/press/index.js';
import { naiveKeep, naiveRedundancy, naiveRkv, randMatrix, randomView, rng, toSelectView, type NaiveView } from './naive.js';

test('r-kv redundancy, hand-computed: diagonal zeroed, last-above-threshold zeroed, r_i = 0 when none', () => {
  // Unit keys: k0 = k1 = e_x, k2 = e_y, k3 = (0.6, 0.8), k4 = -e_x. Cosine rows (diagonal 0):
  //   row0 [0, 1, 0, .6, -1]  last > .5 at 3 -> S03 = 0
  //   row1 [1, 0, 0, .6, -1]  last at 3      -> S13 = 0
  //   row2 [0, 0, 0, .8, 0]   last at 3      -> S23 = 0
  //   row3 [.6, .6, .8, 0, -.6] last at 2    -> S32 = 0
  //   row4 [-1, -1, 0, -.6, 0]  none         -> r = 0, S40 = 0
  // column sums [1.6, 0.6, 0, -0.6, -2.6] / 5
  const keys = Float32Array.from([1, 0, 1, 0, 0, 1, 0.6, 0.8, -1, 0]);
  const c = redundancyColumnMeans(keys, 5, 2, 0.5);
  [0.32, 0.12, 0, -0.12, -0.52].forEach((x, j) => assert.ok(Math.abs(c[j]! - x) < 1e-6, `c[${j}] = ${c[j]} vs ${x}`));
  // Scaled keys (cosines unchanged), threshold 0.9: row0 zeroes S01, row1 zeroes S10; rows 2, 3, 4 have no match
  // and zero column 0 (S20 = 0, S30 = .6, S40 = -1). Columns: [0, .6 - 1, .8, .6 + .6 + .8 - .6, -1 - 1 - .6] / 5
  const c9 = redundancyColumnMeans(keys.map((x) => 3 * x), 5, 2, 0.9);
  const want9 = [0, -0.4, 0.8, 1.4, -2.6].map((x) => x / 5);
  want9.forEach((x, j) => assert.ok(Math.abs(c9[j]! - x) < 1e-6, `tau .9: c[${j}] = ${c9[j]} vs ${x}`));
});

test('r-kv blocked redundancy equals the naive n x n version within 1e-6 on random inputs', () => {
  const r = rng(21);
  for (const [n, d, tau] of [[5, 3, 0.5], [17, 4, 0.5], [40, 2, 0.3], [73, 8, 0.1], [130, 16, 0.5], [33, 4, -0.2], [50, 3, 0.95]] as const) {
    const keys = randMatrix(r, n, d);
    // plant near-duplicates so rows have late matches
    for (let t = 0; t < n / 5; t++) keys[Math.floor(r() * n)] = keys[Math.floor(r() * n)]!.map((x) => Math.fround(x * 1.01));
    const want = naiveRedundancy(keys, tau);
    const got = redundancyColumnMeans(Float32Array.from(keys.flat()), n, d, tau);
    want.forEach((x, j) => assert.ok(Math.abs(got[j]! - x) < 1e-6, `n=${n} tau=${tau} j=${j}: ${got[j]} vs ${x}`));
  }
});

test('r-kv drops the older copies of near-duplicate keys and keeps the newest', () => {
  const n = 12;
  const d = 16;
  const e = (i: number, s = 1) => Array.from({ length: d }, (_, a) => (a === i ? s : 0));
  // Distinct orthogonal keys, except that e3 appears at slots 2, 5 and 8 (the last slightly scaled).
  const keys = [e(0), e(1), e(3), e(4), e(5), e(3), e(6), e(7), e(3, 1.5), e(8), e(9), e(10)];
  // Zero queries: the importance is flat, the redundancy decides.
  const v: NaiveView = { H: 1, Q: 2, d, n, keys: [keys], values: [keys], queries: [[e(0, 0), e(0, 0)], [e(0, 0), e(0, 0)]], layer: 0, numLayers: 1 };
  const keep = select('r-kv', { budget: 10, window: 2 }, toSelectView(v));
  assert.deepEqual(keep, [[0, 1, 3, 4, 6, 7, 8, 9, 10, 11]]);
  // Two more slots to evict: the other older copy (slot 5) goes next; then every remaining candidate scores
  // alike, and the tie evicts the highest index (9), not the newest copy (8).
  assert.deepEqual(select('r-kv', { budget: 9, window: 2 }, toSelectView(v)), [[0, 1, 3, 4, 6, 7, 8, 10, 11]]);
  assert.deepEqual(select('r-kv', { budget: 9, window: 2 }, toSelectView(v)), [naiveKeep(naiveRkv(v, 0, 2, 0.1, 0.5), n, 9, 2)]);
});

test('r-kv scores equal the literal reference (importance: max-logits GQA, non-window softmax, max pool 7)', () => {
  let seed = 300;
  for (const [H, Q] of [[1, 1], [2, 4], [1, 4]] as const) {
    for (const lambda of [0.1, 0.5, 1]) {
      for (const [w, viewW] of [[8, 8], [4, 8], [8, 5]] as const) {
        const v = randomView(seed++, { H, Q, d: 8, n: 45, w: viewW, qScale: 3 });
        const opts = { budget: 20, window: w, lambda };
        const o = resolvePressOptions('r-kv', opts, { numLayers: 1, numKvHeads: H, headDim: 8 });
        const lv = toLayerView(toSelectView(v));
        const keep = select('r-kv', opts, toSelectView(v));
        for (let h = 0; h < H; h++) {
          const want = naiveRkv(v, h, w, lambda, 0.5);
          const got = pressScores('r-kv', o, lv, h);
          want.forEach((x, j) => assert.ok(Math.abs(got[j]! - x) < 1e-6, `j=${j}: ${got[j]} vs ${x}`));
          assert.deepEqual(keep[h], naiveKeep(want, v.n, 20, w));
        }
      }
    }
  }
});
