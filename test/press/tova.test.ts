import { test } from 'node:test';
import assert from 'node:assert/strict';
import { select } from '../../src/press/index.js';
import { dotv, naiveKeep, randomView, softmax, toSelectView, type NaiveView } from './naive.js';

test('tova uses only the last query, averaged over all query heads of the layer', () => {
  const v = randomView(6, { H: 2, Q: 4, d: 8, n: 30, w: 5, qScale: 3 });
  const n = v.n;
  // Reference: mean over all 4 query heads of softmax(last query . keys of its KV head / sqrt(d)).
  const avg = Array(n).fill(0);
  for (let g = 0; g < 4; g++) {
    const h = Math.floor(g / 2);
    const p = softmax(v.keys[h]!.map((k) => dotv(v.queries[g]![4]!, k) / Math.sqrt(8)));
    p.forEach((x, j) => (avg[j] += x / 4));
  }
  const keep = select('tova', { budget: 12 }, toSelectView(v));
  const want = naiveKeep(avg.slice(0, n - 1), n, 12, 1);
  assert.deepEqual(keep, [want, want]);
  // The other observation queries play no part.
  const changed: NaiveView = { ...v, queries: v.queries.map((rows) => rows.map((row, i) => (i < 4 ? row.map((x) => -7 * x) : row))) };
  assert.deepEqual(select('tova', { budget: 12 }, toSelectView(changed)), keep);
  // Without forcing the newest token: top 12 of all n.
  assert.deepEqual(select('tova', { budget: 12, forceNewest: false }, toSelectView(v))[0], naiveKeep(avg, n, 12, 0));
});

test('tova evicts a newest token nobody attends to only when forceNewest is off', () => {
  const d = 4;
  const keys = [[3, 0, 0, 0], [0, 1, 0, 0], [3, 0, 0, 0], [0, 0, 1, 0], [-3, 0, 0, 0]];
  const q = [[[0, 0, 0, 0], [2, 0, 0, 0]]];
  const v: NaiveView = { H: 1, Q: 1, d, n: 5, keys: [keys], values: [keys], queries: q, layer: 0, numLayers: 1 };
  assert.deepEqual(select('tova', { budget: 2 }, toSelectView(v)), [[0, 4]]);
  assert.deepEqual(select('tova', { budget: 2, forceNewest: false }, toSelectView(v)), [[0, 2]]);
});
