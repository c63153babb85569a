import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compressLayer,
  h2oAccumulate,
  kvFiltersFromQueryFilters,
  qFilterFromQueries,
  resolvePressOptions,
  select,
  toLayerView,
} from '../../src/press/index.js';
import { dotv, gauss, naiveKeep, norm, randMatrix, randomView, rng, softmax, toSelectView, type NaiveView } from './naive.js';

test('full keeps everything', () => {
  const v = randomView(1, { H: 2, Q: 2, d: 4, n: 37, w: 0 });
  assert.deepEqual(select('full', {}, toSelectView(v)), [[...Array(37).keys()], [...Array(37).keys()]]);
});

test('streaming-llm keeps the sinks and the recent window', () => {
  const v = randomView(2, { H: 2, Q: 2, d: 4, n: 20, w: 0 });
  const want = [0, 1, 2, 3, 16, 17, 18, 19];
  assert.deepEqual(select('streaming-llm', { budget: 8 }, toSelectView(v)), [want, want]);
  assert.deepEqual(select('streaming-llm', { budget: 5, sinks: 1 }, toSelectView(v))[0], [0, 16, 17, 18, 19]);
  assert.deepEqual(select('streaming-llm', { budget: 3, sinks: 0 }, toSelectView(v))[1], [17, 18, 19]);
  assert.deepEqual(select('streaming-llm', { budget: 20 }, toSelectView(v))[0], [...Array(20).keys()]);
});

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

test('q-filters keeps the keys with the lowest projection on the filter', () => {
  const L = 2;
  const H = 2;
  const d = 8;
  const n = 100;
  const r = rng(4);
  const filters = Array.from({ length: L }, () => randMatrix(r, H, d));
  for (let layer = 0; layer < L; layer++) {
    const v = randomView(10 + layer, { H, Q: 4, d, n, w: 0, layer, numLayers: L });
    for (const [phase, w] of [['prefill', 0], ['decode', 64]] as const) {
      const keep = select('q-filters', { phase, budget: 80, filters }, toSelectView(v));
      for (let h = 0; h < H; h++) {
        const proj = v.keys[h]!.slice(0, n - w).map((k) => -dotv(filters[layer]![h]!, k));
        assert.deepEqual(keep[h], naiveKeep(proj, n, 80, w), `layer ${layer} head ${h} ${phase}`);
      }
    }
  }
  // Flat Float32Array filters give the same picks.
  const flat = Float32Array.from(filters.flat(2));
  const v = randomView(10, { H, Q: 4, d, n, w: 0, layer: 0, numLayers: L });
  const opts = { phase: 'prefill' as const, budget: 50 };
  assert.deepEqual(select('q-filters', { ...opts, filters: flat }, toSelectView(v)), select('q-filters', { ...opts, filters }, toSelectView(v)));
});

test('q-filters calibration recovers -sgn * v1 of the query matrix; GQA filters are plain means', () => {
  const r = rng(5);
  const d = 6;
  const N = 400;
  const v1 = [3, -1, 2, 0.5, -2, 1];
  const nv = norm(v1);
  const dir = v1.map((x) => x / nv);
  // Queries: mostly +along dir with a positive coefficient (u1 mostly positive), plus small noise.
  const Q = new Float32Array(N * d);
  for (let i = 0; i < N; i++) {
    const c = 5 + gauss(r);
    for (let a = 0; a < d; a++) Q[i * d + a] = c * dir[a]! + 0.3 * gauss(r);
  }
  // Reference v1: plain power iteration on Q^T Q (float64, many steps), oriented along +dir.
  const C = Array.from({ length: d }, (_, a) => Array.from({ length: d }, (_, b) => {
    let s = 0;
    for (let i = 0; i < N; i++) s += Q[i * d + a]! * Q[i * d + b]!;
    return s;
  }));
  let v = Array(d).fill(1);
  for (let it = 0; it < 2000; it++) {
    const nv = C.map((row) => dotv(row, v));
    const s = norm(nv);
    v = nv.map((x) => x / s);
  }
  if (dotv(v, dir) < 0) v = v.map((x) => -x);
  assert.ok(dotv(v, dir) > 0.99, 'the sampled queries are dominated by dir');
  const f = qFilterFromQueries(Q, N, d);
  // u1 = Q v1 / s1 is mostly positive when v1 is oriented along +dir (positive coefficients), so f = -v1.
  v.forEach((x, a) => assert.ok(Math.abs(f[a]! + x) < 1e-6, `a=${a}: ${f[a]} vs ${-x}`));
  // Flipping every query flips u1's majority sign: the filter becomes +v1.
  const f2 = qFilterFromQueries(Q.map((x) => -x), N, d);
  v.forEach((x, a) => assert.ok(Math.abs(f2[a]! - x) < 1e-6));
  const kv = kvFiltersFromQueryFilters([[1, 0], [0, 1], [2, 2], [4, 0]], 2);
  assert.deepEqual(kv.map((x) => [...x]), [[0.5, 0.5], [3, 1]]);
});

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
