// Backend.attention over the segments of a step: every sequence's rows over its own cache in one call.
// The wasm backend runs them in one task; its results must be bit for bit those of one call per
// segment (what a sequence gets when it runs alone), and agree with the reference backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttentionSegment, Backend } from '../../src/backend/backend.js';
import { ReferenceBackend } from '../../src/backend/reference.js';
import { WasmBackend } from '../../src/backend/wasm/backend.js';
import type { KvDtype } from '../../src/core/kv-rows.js';
import { SlotCache } from '../../src/kv/cache.js';
import { bits, kernels, randArray, rng } from './wasm/helpers.js';

const [nHeads, nKv, d] = [6, 2, 16];
const width = nHeads * d;

/** One step of five sequences (decode rows and prefill blocks) on `be`, the same data for any backend. */
function step(be: Backend, kvDtype: KvDtype, seed: number) {
  const r = rng(seed);
  const specs = [
    { past: 9, tokens: 1, sums: false },
    { past: 0, tokens: 4, sums: true }, // a prompt's first block
    { past: 30, tokens: 1, sums: false, uneven: true }, // heads of different lengths after an eviction
    { past: 5, tokens: 3, sums: false },
    { past: 17, tokens: 1, sums: true },
  ];
  const T = specs.reduce((n, s) => n + s.tokens, 0);
  const q = be.allocF32(T * width);
  q.set(randArray(r, T * width, 2));
  const segments: AttentionSegment[] = [];
  let row = 0;
  for (const s of specs) {
    const cache = new SlotCache({ numLayers: 1, numKvHeads: nKv, headDim: d, maxSlotsPerHead: 64, allocator: be, kvDtype });
    const rows = (n: number, from: number) => {
      const k = be.allocF32(Math.max(1, n) * nKv * d);
      const v = be.allocF32(Math.max(1, n) * nKv * d);
      k.set(randArray(r, n * nKv * d, 1.5));
      v.set(randArray(r, n * nKv * d, 2));
      return { k, v, offset: 0, count: n, positions: Array.from({ length: n }, (_, i) => from + i) };
    };
    if (s.past > 0) cache.append(0, rows(s.past, 0));
    if (s.uneven) cache.evict(0, [[0, 3, 4, 20, 29], Array.from({ length: 26 }, (_, i) => i + 2)]);
    const heads = cache.append(0, rows(s.tokens, s.past));
    const seg: AttentionSegment = { row, tokens: s.tokens, heads };
    if (s.sums) {
      seg.probSums = heads.map((h) => {
        const a = be.allocF32(h.length);
        a.set(randArray(r, h.length));
        return a;
      });
    }
    segments.push(seg);
    row += s.tokens;
  }
  return { q, out: be.allocF32(T * width), segments, T };
}

test('wasm attention: all segments in one call, bit for bit as one call per segment, and as the reference backend', async () => {
  const wasm = new WasmBackend(await kernels({ threads: 2 }));
  const ref = new ReferenceBackend();
  try {
    for (const kvDtype of ['f32', 'f16', 'int8'] as KvDtype[]) {
      const a = step(wasm, kvDtype, 5);
      const sums0 = a.segments.map((s) => s.probSums?.map((p) => p.slice()));
      wasm.attention({ q: a.q, out: a.out, numHeads: nHeads, headDim: d, segments: a.segments });
      const together = a.out.slice();
      const sumsTogether = a.segments.map((s) => s.probSums?.map((p) => p.slice()));
      a.segments.forEach((s, i) => s.probSums?.forEach((p, h) => p.set(sums0[i]![h]!)));
      a.out.fill(NaN);
      for (const seg of a.segments) wasm.attention({ q: a.q, out: a.out, numHeads: nHeads, headDim: d, segments: [seg] });
      assert.deepEqual(bits(together), bits(a.out), `${kvDtype}: outputs`);
      a.segments.forEach((s, i) => s.probSums?.forEach((p, h) => assert.deepEqual(bits(sumsTogether[i]![h]!), bits(p), `${kvDtype}: probSums of segment ${i}, head ${h}`)));

      const b = step(ref, kvDtype, 5);
      ref.attention({ q: b.q, out: b.out, numHeads: nHeads, headDim: d, segments: b.segments });
      // Outputs are averages of values of magnitude <= 2 (times an int8 scale): float32 rounding
      // over at most 35 slots of 16 dimensions stays far below 1e-5.
      for (let i = 0; i < together.length; i++) assert.ok(Math.abs(together[i]! - b.out[i]!) <= 1e-5, `${kvDtype}: out[${i}] ${together[i]} vs reference ${b.out[i]}`);
      b.segments.forEach((s, i) =>
        s.probSums?.forEach((p, h) => {
          for (let j = 0; j < p.length; j++) assert.ok(Math.abs(sumsTogether[i]![h]![j]! - p[j]!) <= 1e-6, `${kvDtype}: probSums ${i}/${h}/${j}`);
        }),
      );
    }
    // No segments: nothing to do.
    wasm.attention({ q: wasm.allocF32(1), out: wasm.allocF32(1), numHeads: nHeads, headDim: d, segments: [] });
  } finally {
    wasm.dispose();
  }
});

test('attention with a sliding window: each token over only its last W slots, bit for bit as full attention over a cache that holds just those', async () => {
  const wasm = new WasmBackend(await kernels({ threads: 2 }));
  const ref = new ReferenceBackend();
  try {
    for (const be of [wasm, ref] as Backend[]) {
      for (const kvDtype of ['f32', 'f16', 'int8'] as KvDtype[]) {
        const r = rng(11);
        for (const [past, W] of [[20, 5], [3, 5], [12, 1], [7, 8]] as const) {
          // One decode token after `past` slots, KV heads of equal length.
          const rows = (n: number, from: number) => {
            const k = be.allocF32(n * nKv * d);
            const v = be.allocF32(n * nKv * d);
            k.set(randArray(r, n * nKv * d, 1.5));
            v.set(randArray(r, n * nKv * d, 2));
            return { k, v, offset: 0, count: n, positions: Array.from({ length: n }, (_, i) => from + i) };
          };
          const all = rows(past + 1, 0);
          const whole = new SlotCache({ numLayers: 1, numKvHeads: nKv, headDim: d, maxSlotsPerHead: 64, allocator: be, kvDtype });
          const heads = whole.append(0, all);
          // The same rows, only the last W of them.
          const keep = Math.min(W, past + 1);
          const tail = new SlotCache({ numLayers: 1, numKvHeads: nKv, headDim: d, maxSlotsPerHead: 64, allocator: be, kvDtype });
          const tailHeads = tail.append(0, { ...all, offset: past + 1 - keep, count: keep, positions: all.positions.slice(past + 1 - keep) });
          const q = be.allocF32(width);
          q.set(randArray(r, width, 2));
          const sums = heads.map((h) => be.allocF32(h.length));
          const tailSums = tailHeads.map((h) => be.allocF32(h.length));
          const out = be.allocF32(width);
          const want = be.allocF32(width);
          be.attention({ q, out, numHeads: nHeads, headDim: d, segments: [{ row: 0, tokens: 1, heads, probSums: sums }], window: W });
          be.attention({ q, out: want, numHeads: nHeads, headDim: d, segments: [{ row: 0, tokens: 1, heads: tailHeads, probSums: tailSums }] });
          const label = `${be.name} ${kvDtype} past ${past} window ${W}`;
          assert.deepEqual(bits(out), bits(want), `${label}: output`);
          // The window's probabilities land on its own slots; older slots get nothing.
          sums.forEach((s, h) => {
            assert.deepEqual(bits(s.subarray(past + 1 - keep)), bits(tailSums[h]!), `${label}: probSums of head ${h}`);
            assert.ok(s.subarray(0, past + 1 - keep).every((x) => x === 0), `${label}: nothing before the window`);
          });
        }
      }
    }
    // A prompt block: token t of 6 sees slots max(0, t - W + 1)..t; wasm and the reference agree.
    const block = (be: Backend) => {
      const r = rng(3);
      const cache = new SlotCache({ numLayers: 1, numKvHeads: nKv, headDim: d, maxSlotsPerHead: 64, allocator: be });
      const k = be.allocF32(9 * nKv * d);
      const v = be.allocF32(9 * nKv * d);
      k.set(randArray(r, 9 * nKv * d, 1.5));
      v.set(randArray(r, 9 * nKv * d, 2));
      const heads = cache.append(0, { k, v, offset: 0, count: 9, positions: Array.from({ length: 9 }, (_, i) => i) });
      const q = be.allocF32(6 * width);
      q.set(randArray(r, 6 * width, 2));
      const out = be.allocF32(6 * width);
      be.attention({ q, out, numHeads: nHeads, headDim: d, segments: [{ row: 0, tokens: 6, heads }], window: 4 });
      return out;
    };
    const [a, b] = [block(wasm), block(ref)];
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-5, `block: out[${i}] ${a[i]} vs reference ${b[i]}`);
  } finally {
    wasm.dispose();
  }
});
