// The GPU scoring kernels (observation-window attention, key norms) against the presses' own CPU
// scores (scoresWith over the same keys and queries) on random data: values within 2e-5 relative to
// the largest score, and the same top slots. Heads of different lengths (ada-kv's), a ring that has
// wrapped, GQA 4 query heads over 2 KV heads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebGpuBackend } from '../../../src/backend/webgpu/backend.js';
import { Random } from '../../../src/core/random.js';
import { gpuScores, gpuScoringOf, type GpuScores } from '../../../src/generate/gpu-scoring.js';
import { GpuKvCache } from '../../../src/kv/gpu-cache.js';
import { PRESSES, resolvePressOptions, topKAscending } from '../../../src/press/index.js';
import { scoresWith } from '../../../src/press/define.js';
import type { LayerView } from '../../../src/press/types.js';
import { withGpu } from './gpu.js';

test('webgpu scoring: snapkv (GQA mean and max-logits, avg/max pooling, kernels 1 and 5), pyramidkv, r-kv (thresholds above and below 0), knorm and q-filters scores match the CPU press code', async (t) => {
  if (!(await withGpu(t))) return;
  const backend = await WebGpuBackend.create();
  const Hq = 4;
  const H = 2;
  const d = 16;
  const n = 90;
  const rng = new Random(7);
  const normal = () => (rng.next() + rng.next() + rng.next() - 1.5) * 2; // roughly unit spread
  const cache = new GpuKvCache({ numLayers: 1, numKvHeads: H, headDim: d, maxSlotsPerHead: 200, backend });
  try {
    const k = Float32Array.from({ length: n * H * d }, () => normal());
    const v = Float32Array.from({ length: n * H * d }, () => normal());
    cache.append(0, { k, v, offset: 0, count: n, positions: Array.from({ length: n }, (_, i) => i) });
    // head 1 keeps every other of its first 40 slots, then the rest: 70 slots against head 0's 90
    const keep1 = Int32Array.from([...Array.from({ length: 20 }, (_, i) => 2 * i), ...Array.from({ length: 50 }, (_, i) => 40 + i)]);
    cache.evict(0, [Int32Array.from({ length: n }, (_, i) => i), keep1]);
    const read = await cache.readLayer(0);
    const lengths = [n, keep1.length];

    // 27 query rows through a ring of 16: rows 11..26 remain, row r at slot r % 16
    const window = 16;
    const stored = 27;
    const rows = Array.from({ length: stored }, () => Float32Array.from({ length: Hq * d }, () => normal()));
    const ringData = new Float32Array(window * Hq * d);
    rows.forEach((row, r) => ringData.set(row, (r % window) * Hq * d));
    const ring = backend.upload(ringData);
    // the view's queries: per query head [w, d], oldest first
    const queries = Array.from({ length: Hq }, (_, g) => {
      const q = new Float32Array(window * d);
      for (let i = 0; i < window; i++) q.set(rows[stored - window + i]!.subarray(g * d, (g + 1) * d), i * d);
      return q;
    });
    const view: LayerView = {
      layer: 0,
      numLayers: 1,
      numKvHeads: H,
      numQHeads: Hq,
      headDim: d,
      heads: lengths.map((m, h) => ({ n: m, keys: read.keys[h]!, values: read.values[h]! })),
      queries,
      w: window,
    };
    const ctx = { numLayers: 1, numKvHeads: H, numQHeads: Hq, headDim: d };
    const cases = [
      ['snapkv', { window: 8 }],
      ['snapkv', { window: 16, gqa: 'max-logits', pooling: 'max', kernel: 5 }],
      ['snapkv', { window: 4, pooling: 'max', kernel: 5 }],
      ['snapkv', { window: 12, kernel: 1 }],
      ['pyramidkv', { window: 8, pooling: 'avg', kernel: 3 }],
      ['knorm', { window: 4 }],
      ['r-kv', { window: 8 }],
      ['r-kv', { window: 16, kernel: 3, lambda: 0.3, threshold: 0.2 }],
      ['r-kv', { window: 4, threshold: -0.5 }],
      ['q-filters', { window: 4, filters: Float32Array.from({ length: H * d }, (_, i) => Math.cos(i * 0.7)) }],
    ] as const;
    for (const [name, input] of cases) {
      const def = PRESSES[name];
      const o = resolvePressOptions(def, { budget: 40, ...input }, ctx);
      const scoring = gpuScoringOf(def, o) as GpuScores;
      const w = o['window'] as number;
      const scored = lengths.map((m) => m - Math.min(w, m));
      const got = await gpuScores(scoring, { backend, cache, layer: 0, numHeads: Hq, headDim: d, scored, ring: { ring, window, count: stored } });
      for (let h = 0; h < H; h++) {
        const want = scoresWith(def, o, view, h);
        const label = `${name} ${JSON.stringify(input)} head ${h}`;
        assert.equal(got[h]!.length, want.length, label);
        const scale = Math.max(...want.map(Math.abs));
        for (let j = 0; j < want.length; j++) assert.ok(Math.abs(got[h]![j]! - want[j]!) <= 2e-5 * scale, `${label} slot ${j}: ${got[h]![j]} vs ${want[j]}`);
        const top = (s: Float32Array) => {
          const out = new Int32Array(20);
          topKAscending(s, s.length, 20, out);
          return [...out];
        };
        assert.deepEqual(top(got[h]!), top(want), `${label}: top 20`);
      }
    }
    ring.destroy();
  } finally {
    cache.release();
    backend.dispose();
  }
});
