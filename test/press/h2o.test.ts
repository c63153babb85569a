import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compressLayer, h2oAccumulate, resolvePressOptions, select, toLayerView } from '../../src/press/index.js';
import { dotv, naiveKeep, randomView, softmax, toSelectView } from './naive.js';

test('h2o keeps the top B - w by the given accumulated sums plus the window', () => {
  const v = randomView(7, { H: 2, Q: 2, d: 4, n: 10, w: 0 });
  const acc = [
    [0.5, 3, 0.1, 2, 0.2, 4, 0.3, 0.9, 0.05, 0.01],
    [1, 1, 1, 5, 1, 1, 6, 0, 0, 0],
  ];
  const keep = select('h2o', { budget: 5, window: 2, accumulatedAttention: acc }, toSelectView(v));
  assert.deepEqual(keep, [[1, 3, 5, 8, 9], [0, 3, 6, 8, 9]]);
  // normalised by n - j (queries that saw the slot): head 1 sums / [10, 9, ..., 3] over j < 8
  // -> 0.1, 0.111, 0.125, 0.714, 0.167, 0.2, 2, 0: keeps 6, 3, 5
  const norm2 = select('h2o', { budget: 5, window: 2, accumulatedAttention: acc, normalize: true }, toSelectView(v));
  assert.deepEqual(norm2[1], [3, 5, 6, 8, 9]);
  // The engine's per-slot sums in the layer view take precedence over the option.
  const o = resolvePressOptions('h2o', { budget: 5, window: 2, accumulatedAttention: acc }, { numLayers: 1, numKvHeads: 2, headDim: 4 });
  const lv = { ...toLayerView(toSelectView(v)), accumulatedAttention: [Float32Array.from(acc[1]!), Float32Array.from(acc[0]!)] };
  assert.deepEqual(compressLayer('h2o', o, lv).map((k) => [...k]), [[0, 3, 6, 8, 9], [1, 3, 5, 8, 9]]);
});

test('h2o running sums: one decode step adds the mean over the group of the attention probabilities', () => {
  const acc = Float32Array.from([1, 0, 0.5]);
  h2oAccumulate(acc, [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], 3);
  [1.4, 0.3, 0.8].forEach((x, j) => assert.ok(Math.abs(acc[j]! - x) < 1e-6));
});

test('h2o without state sums the causal attention of the observation queries, mean over the group', () => {
  const v = randomView(8, { H: 1, Q: 2, d: 8, n: 24, w: 6, qScale: 3 });
  const m = 24 - 2;
  const score = Array(m).fill(0);
  for (let g = 0; g < 2; g++) {
    for (let i = 0; i < 6; i++) {
      const visible = 24 - 6 + i + 1;
      const p = softmax(v.keys[0]!.slice(0, visible).map((k) => dotv(v.queries[g]![i]!, k) / Math.sqrt(8)));
      for (let j = 0; j < m; j++) score[j] += (p[j] ?? 0) / 2;
    }
  }
  assert.deepEqual(select('h2o', { budget: 10, window: 2 }, toSelectView(v))[0], naiveKeep(score, 24, 10, 2));
});
