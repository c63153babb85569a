import { test } from 'node:test';
import assert from 'node:assert/strict';
import { select } from '../../src/press/index.js';
import { gauss, norm, rng, toSelectView, type NaiveView } from './naive.js';

test('knorm drops the largest-norm keys (window 0 by default, or protected)', () => {
  const r = rng(3);
  const n = 12;
  const d = 6;
  // key j has norm scale[j] exactly (a random unit direction times scale[j])
  const scale = [5, 1, 9, 2, 8, 3, 7, 4, 6, 0.5, 10, 11];
  const keys = Array.from({ length: n }, (_, j) => {
    const u = Array.from({ length: d }, () => gauss(r));
    const s = norm(u);
    return u.map((x) => (x / s) * scale[j]!);
  });
  const v: NaiveView = { H: 1, Q: 1, d, n, keys: [keys], values: [keys], queries: [[]], layer: 0, numLayers: 1 };
  // budget 8: the 4 largest norms (11, 10, 9, 8 at 11, 10, 2, 4) go
  assert.deepEqual(select('knorm', { budget: 8 }, toSelectView(v)), [[0, 1, 3, 5, 6, 7, 8, 9]]);
  // window 2 protects 10 and 11; the top 6 of the rest drop 2, 4, 6, 8 (norms 9, 8, 7, 6)
  assert.deepEqual(select('knorm', { budget: 8, window: 2 }, toSelectView(v)), [[0, 1, 3, 5, 7, 9, 10, 11]]);
});
