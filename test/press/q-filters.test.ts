import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvFiltersFromQueryFilters, qFilterFromQueries, select } from '../../src/press/index.js';
import { dotv, gauss, naiveKeep, norm, randMatrix, randomView, rng, toSelectView } from './naive.js';

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
