import { test } from 'node:test';
import assert from 'node:assert/strict';
import { budgetFromRatio, keepNewest, keepTopPlusWindow, pool1d, topKAscending } from '../../src/press/index.js';
import { kthLargest, trivialKeep } from '../../src/press/keep-lists.js';
import { minmaxInPlace, roundHalfEven } from '../../src/press/numeric.js';
import { pool, rng } from './naive.js';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `index ${i}: ${a[i]} vs ${b[i]}`);
};

test('top-k keeps the lower index among equal scores and returns ascending indices', () => {
  const out = new Int32Array(2);
  topKAscending([1, 3, 3, 3, 0], 5, 2, out);
  assert.deepEqual([...out], [1, 2]);
  const out3 = new Int32Array(3);
  topKAscending([5, 1, 5, 2, 2, 2], 6, 3, out3);
  assert.deepEqual([...out3], [0, 2, 3]);
  // NaN counts as the lowest score.
  topKAscending([NaN, 0.5, -1], 3, 2, out);
  assert.deepEqual([...out], [1, 2]);
});

test('top-k by quickselect equals a full sort on random scores with many duplicates', () => {
  const r = rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const m = 1 + Math.floor(r() * 80);
    const k = Math.floor(r() * (m + 1));
    const s = Array.from({ length: m }, () => Math.floor(r() * 6));
    const want = s
      .map((x, j) => [x, j] as const)
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .slice(0, k)
      .map(([, j]) => j)
      .sort((a, b) => a - b);
    const out = new Int32Array(k);
    topKAscending(Float32Array.from(s), m, k, out);
    assert.deepEqual([...out], want);
    if (k > 0) assert.equal(kthLargest(s, m, k), [...s].sort((a, b) => b - a)[k - 1]);
  }
});

test('keep rules: window appended, n <= B keeps all, B <= w keeps the newest B', () => {
  assert.deepEqual([...keepTopPlusWindow([0.1, 0.9, 0.5, 0.7], 6, 4, 2)], [1, 3, 4, 5]);
  assert.deepEqual([...trivialKeep(5, 5, 2)!], [0, 1, 2, 3, 4]);
  assert.deepEqual([...trivialKeep(10, 3, 4)!], [7, 8, 9]);
  assert.deepEqual([...trivialKeep(10, 4, 4)!], [6, 7, 8, 9]);
  assert.equal(trivialKeep(10, 5, 4), null);
  assert.deepEqual([...keepNewest(3, 5)], [0, 1, 2]);
});

test('average pooling counts the zero padding: the ends shrink (hand-computed)', () => {
  const out = new Float64Array(6);
  pool1d('avg', [1, 1, 1, 1, 1, 1], 6, 5, out);
  close(out, [0.6, 0.8, 1, 1, 0.8, 0.6]);
  const out2 = new Float64Array(3);
  pool1d('avg', [5, 0, 10], 3, 5, out2); // every window covers all three: 15 / 5
  close(out2, [3, 3, 3]);
});

test('max pooling pads with -infinity (hand-computed) and both poolings match a literal padded version', () => {
  const out = new Float64Array(7);
  pool1d('max', [1, 3, 2, 0, 0, 0, 4], 7, 3, out);
  close(out, [3, 3, 3, 2, 0, 4, 4]);
  pool1d('max', [-1, -2, -3, -4, -5, -6, -7], 7, 7, out);
  close(out, [-1, -1, -1, -1, -2, -3, -4]);
  const r = rng(3);
  for (const kernel of [1, 3, 5, 7, 9]) {
    const a = Array.from({ length: 11 }, () => r() - 0.5);
    const o = new Float64Array(11);
    for (const kind of ['avg', 'max'] as const) {
      pool1d(kind, a, 11, kernel, o);
      close(o, pool(kind, a, kernel), 1e-15);
    }
  }
});

test('budget from a ratio is the floor of n * (1 - ratio), not n - floor(n * ratio)', () => {
  assert.equal(budgetFromRatio(10, 0.9), 0);
  assert.equal(10 - Math.floor(10 * 0.9), 1);
  assert.equal(budgetFromRatio(1000, 0.75), 250);
  assert.equal(budgetFromRatio(7, 0), 7);
});

test('min-max normalisation and half-even rounding', () => {
  const x = Float64Array.from([2, 4, 3]);
  minmaxInPlace(x, 3);
  close(x, [0, 1, 0.5]);
  const c = Float64Array.from([7, 7]);
  minmaxInPlace(c, 2);
  close(c, [0, 0]);
  assert.deepEqual([0.5, 1.5, 2.5, 147.5, 52.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 148, 52, 2, 3]);
});
