import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headRedundancy, pressScores, resolvePressOptions, select, toLayerView } from '../../src/press/index.js';
import { gauss, naiveKeep, naiveMixkv, naivePairwiseCos, randMatrix, randomView, rng, toSelectView, type M, type NaiveView } from './naive.js';

test('mix-kv head redundancy: (n ||mu||^2 - 1) / (n - 1) equals the naive mean pairwise cosine', () => {
  const r = rng(31);
  for (const [n, d, bias] of [[2, 3, 0], [10, 4, 0], [37, 8, 1.5], [64, 16, 3], [5, 2, -2]] as const) {
    const keys = randMatrix(r, n, d).map((k) => k.map((x, a) => Math.fround(x + (a === 0 ? bias : 0))));
    const got = headRedundancy(Float32Array.from(keys.flat()), n, d);
    const want = naivePairwiseCos(keys);
    assert.ok(Math.abs(got - want) < 1e-9, `n=${n} d=${d}: ${got} vs ${want}`);
  }
  // identical keys: 1; two opposite keys: -1
  assert.ok(Math.abs(headRedundancy(Float32Array.from([1, 2, 2, 4, 3, 6]), 3, 2) - 1) < 1e-9);
  assert.ok(Math.abs(headRedundancy(Float32Array.from([1, 0, -2, 0]), 2, 2) + 1) < 1e-9);
});

test('mix-kv scores equal the literal reference (online and calibrated redundancy)', () => {
  let seed = 400;
  for (const [H, Q] of [[1, 1], [2, 4]] as const) {
    for (const bias of [0, 2]) {
      for (const phase of ['prefill', 'decode'] as const) {
        const w = phase === 'prefill' ? 32 : 8;
        const v = randomView(seed++, { H, Q, d: 8, n: 60, w: 32, qScale: 3 });
        v.keys = v.keys.map((keys) => keys.map((k) => k.map((x, a) => Math.fround(x + (a === 1 ? bias : 0)))));
        const lv = toLayerView(toSelectView(v));
        const ctx = { numLayers: 1, numKvHeads: H, headDim: 8 };
        for (const calibrated of [undefined, Array.from({ length: H }, (_, h) => 0.3 + 0.4 * h)]) {
          const opts = { phase, budget: 40, ...(calibrated ? { headRedundancy: calibrated } : {}) };
          const o = resolvePressOptions('mix-kv', opts, ctx);
          const keep = select('mix-kv', opts, toSelectView(v));
          for (let h = 0; h < H; h++) {
            const want = naiveMixkv(v, h, w, calibrated?.[h]);
            const got = pressScores('mix-kv', o, lv, h);
            want.forEach((x, j) => assert.ok(Math.abs(got[j]! - x) < 1e-6 * Math.max(1, Math.abs(x)), `j=${j}: ${got[j]} vs ${x}`));
            assert.deepEqual(keep[h], naiveKeep(want, v.n, 40, w));
          }
        }
      }
    }
  }
});

test('mix-kv: a highly redundant head favours diverse keys, a non-redundant head favours importance', () => {
  const r = rng(32);
  const n = 30;
  const d = 8;
  const w = 8;
  const e = (i: number, s: number) => Array.from({ length: d }, (_, a) => (a === i ? s : 0));
  // Head 0: every key close to 2 e0 except the diverse slots 4, 13 and 20.
  const redundant: M = Array.from({ length: n }, () => e(0, 2).map((x) => Math.fround(x + 0.05 * gauss(r))));
  redundant[4] = e(1, 2);
  redundant[13] = e(2, 2);
  redundant[20] = e(3, 2);
  // Head 1: random keys.
  const diverse = randMatrix(r, n, d);
  // Both heads: the values of slots 7, 8, 9 have large norms (importance), the rest small.
  const values = (): M => Array.from({ length: n }, (_, j) => e(j % d, [7, 8, 9].includes(j) ? 10 : 1));
  const zeroQ = (): M => Array.from({ length: w }, () => e(0, 0));
  const v: NaiveView = { H: 2, Q: 2, d, n, keys: [redundant, diverse], values: [values(), values()], queries: [zeroQ(), zeroQ()], layer: 0, numLayers: 1 };
  const lv = toLayerView(toSelectView(v));
  assert.ok(headRedundancy(lv.heads[0]!.keys, n, d) > 0.7);
  assert.ok(headRedundancy(lv.heads[1]!.keys, n, d) < 0.2);
  const keep = select('mix-kv', { budget: w + 3 }, toSelectView(v));
  const windowSlots = [...Array(w).keys()].map((i) => n - w + i);
  assert.deepEqual(keep[0], [4, 13, 20, ...windowSlots]);
  assert.deepEqual(keep[1], [7, 8, 9, ...windowSlots]);
  // A calibrated table overrides the online value: r = 0 on head 0 makes it importance-driven too.
  assert.deepEqual(select('mix-kv', { budget: w + 3, headRedundancy: [0, 0] }, toSelectView(v))[0], [7, 8, 9, ...windowSlots]);
});
