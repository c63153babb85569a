import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compressLayer,
  pressScores,
  pyramidBudgets,
  resolvePressOptions,
  select,
  toLayerView,
  type LayerView,
} from '../../src/press/index.js';
import { naiveKeep, naiveSnapkv, randMatrix, randomView, rng, toSelectView, type M, type NaiveView } from './naive.js';

const ctxOf = (v: NaiveView) => ({ phase: 'decode' as const, numLayers: v.numLayers, numKvHeads: v.H, headDim: v.d });

test('snapkv avg-pooling edge shrinkage, hand-computed from uniform attention', () => {
  // Zero queries: every softmax is uniform. n = 6, window 2: query 0 sees 5 keys (1/5 each), query 1 sees all 6.
  const v: NaiveView = {
    H: 1,
    Q: 2,
    d: 4,
    n: 6,
    keys: [randMatrix(rng(1), 6, 4)],
    values: [randMatrix(rng(2), 6, 4)],
    queries: [Array.from({ length: 2 }, () => [0, 0, 0, 0]), Array.from({ length: 2 }, () => [0, 0, 0, 0])],
    layer: 0,
    numLayers: 1,
  };
  const a = (1 / 5 + 1 / 6) / 2; // 11/60 for every older key j < 4
  const lv = toLayerView(toSelectView(v));
  const avg = pressScores('snapkv', resolvePressOptions('snapkv', { window: 2, budget: 3 }, ctxOf(v)), lv, 0);
  const want = [(3 * a) / 5, (4 * a) / 5, (4 * a) / 5, (3 * a) / 5];
  assert.equal(avg.length, 4);
  want.forEach((x, j) => assert.ok(Math.abs(avg[j]! - x) < 1e-7, `j=${j}: ${avg[j]} vs ${x}`));
  const mx = pressScores('snapkv', resolvePressOptions('snapkv', { window: 2, budget: 3, pooling: 'max' }, ctxOf(v)), lv, 0);
  [...mx].forEach((x) => assert.ok(Math.abs(x - a) < 1e-7));
});

/** Keys of small norm except `targets`, which point along e0; all observation queries point along e0. */
function attendedView(n: number, w: number, targets: number[], seed: number): NaiveView {
  const r = rng(seed);
  const d = 8;
  const keys = randMatrix(r, n, d, 0.05);
  for (const t of targets) keys[t] = [4, 0, 0, 0, 0, 0, 0, 0];
  const q = (): M => Array.from({ length: w }, () => [4, 0, 0, 0, 0, 0, 0, 0]);
  return { H: 1, Q: 2, d, n, keys: [keys], values: [randMatrix(r, n, d)], queries: [q(), q()], layer: 0, numLayers: 1 };
}

test('snapkv keeps the tokens the observation queries attend to', () => {
  const v = attendedView(30, 4, [3, 11, 17], 5);
  const keep = select('snapkv', { window: 4, budget: 7, kernel: 1 }, toSelectView(v));
  assert.deepEqual(keep, [[3, 11, 17, 26, 27, 28, 29]]);
  // Default avg pooling (kernel 5): a run of five attended tokens scores highest at its centre.
  const run = attendedView(30, 4, [8, 9, 10, 11, 12], 6);
  assert.deepEqual(select('snapkv', { window: 4, budget: 5 }, toSelectView(run)), [[10, 26, 27, 28, 29]]);
  assert.deepEqual(select('snapkv', { window: 4, budget: 7 }, toSelectView(run)), [[9, 10, 11, 26, 27, 28, 29]]);
});

test('snapkv scores and picks equal the literal reference on random views (GQA modes, poolings, window sizes)', () => {
  let seed = 100;
  for (const [H, Q] of [[1, 1], [2, 4], [1, 4]] as const) {
    for (const gqa of ['mean', 'max-logits'] as const) {
      for (const pooling of ['avg', 'max'] as const) {
        for (const [w, viewW] of [[4, 4], [4, 6], [6, 3]] as const) {
          const v = randomView(seed++, { H, Q, d: 8, n: 40, w: viewW, qScale: 3 });
          const opts = { window: w, budget: 15, gqa, pooling };
          const o = resolvePressOptions('snapkv', opts, ctxOf(v));
          const lv = toLayerView(toSelectView(v));
          const keep = select('snapkv', opts, toSelectView(v));
          for (let h = 0; h < H; h++) {
            const want = naiveSnapkv(v, h, w, { kernel: o.kernel, pooling, gqa });
            const got = pressScores('snapkv', o, lv, h);
            want.forEach((x, j) => assert.ok(Math.abs(got[j]! - x) < 1e-6, `${gqa}/${pooling}/w${w}: j=${j} ${got[j]} vs ${x}`));
            assert.deepEqual(keep[h], naiveKeep(want, v.n, 15, w));
          }
        }
      }
    }
  }
});

test('snapkv on heads holding different numbers of tokens (after ada-kv) keeps B of each', () => {
  const v = randomView(9, { H: 2, Q: 4, d: 8, n: 50, w: 8, qScale: 3 });
  const lv = toLayerView(toSelectView(v));
  const short: LayerView = { ...lv, heads: [lv.heads[0]!, { ...lv.heads[1]!, n: 30 }] };
  const o = resolvePressOptions('snapkv', { budget: 20 }, ctxOf(v));
  const keep = compressLayer('snapkv', o, short);
  assert.equal(keep[0]!.length, 20);
  assert.equal(keep[1]!.length, 20);
  const shortNaive: NaiveView = { ...v, n: 30, keys: [v.keys[1]!.slice(0, 30)], H: 1, Q: 2, queries: v.queries.slice(2) };
  assert.deepEqual([...keep[1]!], naiveKeep(naiveSnapkv(shortNaive, 0, 8, { kernel: 5, pooling: 'avg', gqa: 'mean' }), 30, 20, 8));
});

test('pyramidkv budgets: hand-computed values, and the layer budgets sum to layers x budget', () => {
  // b = 100, L = 5, beta = 20: min 5, max 195, step 47.5 -> 195, 147.5, 100, 52.5, 5 (half to even).
  assert.deepEqual(pyramidBudgets(100, 5, 20), [195, 148, 100, 52, 5]);
  assert.deepEqual(pyramidBudgets(64, 1, 20), [64]);
  assert.deepEqual(pyramidBudgets(64, 4, 1), [64, 64, 64, 64]);
  const r = rng(11);
  for (let t = 0; t < 300; t++) {
    const b = 8 + Math.floor(r() * 3000);
    const L = 1 + Math.floor(r() * 80);
    const beta = 1 + r() * 30;
    const bs = pyramidBudgets(b, L, beta);
    const sum = bs.reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(sum - L * b) <= L / 2, `b=${b} L=${L} beta=${beta}: sum ${sum}`);
    for (let l = 1; l < L; l++) assert.ok(bs[l]! <= bs[l - 1]!);
  }
  for (const [b, L] of [[1024, 32], [512, 28], [128, 5], [100, 36]]) {
    assert.equal(pyramidBudgets(b!, L!, 20).reduce((x, y) => x + y, 0), L! * b!, `integer beta: exact (b=${b}, L=${L})`);
  }
});

test('pyramidkv keeps its layer budget per head with snapkv scores', () => {
  const L = 4;
  const budgets = pyramidBudgets(20, L, 4); // [35, 25, 15, 5]
  assert.deepEqual(budgets, [35, 25, 15, 5]);
  for (let layer = 0; layer < L; layer++) {
    const v = randomView(50 + layer, { H: 2, Q: 2, d: 8, n: 40, w: 8, layer, numLayers: L, qScale: 3 });
    const keep = select('pyramidkv', { budget: 20, beta: 4 }, toSelectView(v));
    for (let h = 0; h < 2; h++) {
      const B = budgets[layer]!;
      // the last layer's budget 5 is below the window 8: the newest 5 are kept
      assert.deepEqual(keep[h], naiveKeep(naiveSnapkv(v, h, 8, { kernel: 5, pooling: 'avg', gqa: 'mean' }), 40, B, 8));
    }
  }
});
