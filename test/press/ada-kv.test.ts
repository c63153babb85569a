import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaKvKeep, select } from '../../src/press/index.js';
import { isAscendingUnique, randMatrix, rng, toSelectView, type M, type NaiveView } from './naive.js';

/** Naive Ada-KV: own floor by sorting, then the rest by one global sort (score desc, head, index). */
function naiveAda(scores: number[][], ns: number[], B: number, w: number, alpha: number): number[][] {
  const H = ns.length;
  if (ns.reduce((a, b) => a + b, 0) <= H * B) return ns.map((n) => [...Array(n).keys()]);
  const ws = ns.map((n) => Math.min(w, n));
  const T = H * B - ws.reduce((a, b) => a + b, 0);
  const f = Math.floor(alpha * (B - w));
  const kept = scores.map(() => new Set<number>());
  scores.forEach((s, h) => {
    const order = s.map((x, j) => [x, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    order.slice(0, Math.min(f, s.length)).forEach(([, j]) => kept[h]!.add(j));
  });
  const rest = T - kept.reduce((a, k) => a + k.size, 0);
  const pool: [number, number, number][] = [];
  scores.forEach((s, h) => s.forEach((x, j) => !kept[h]!.has(j) && pool.push([x, h, j])));
  pool.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
  pool.slice(0, rest).forEach(([, h, j]) => kept[h]!.add(j));
  return kept.map((k, h) => [...k, ...Array.from({ length: ws[h]! }, (_, i) => ns[h]! - ws[h]! + i)].sort((a, b) => a - b));
}

test('ada-kv gives the head with peaked scores more tokens than the flat one, and the flat one its floor', () => {
  const r = rng(41);
  const n = 40;
  const w = 4;
  const m = n - w;
  const targets = new Set([...Array(20).keys()].map((i) => 1 + i * 1.7).map(Math.floor));
  const peaked = Array.from({ length: m }, (_, j) => (targets.has(j) ? 0.04 : 0.001) + 1e-5 * r());
  const flat = Array.from({ length: m }, () => 1 / m + 1e-5 * r());
  // B = 14: T = 2 * (14 - 4) = 20, floor = floor(0.2 * 10) = 2
  const keep = adaKvKeep([Float32Array.from(peaked), Float32Array.from(flat)], [n, n], 14, w, 0.2);
  assert.equal(keep[0]!.length, 18 + w);
  assert.equal(keep[1]!.length, 2 + w);
  for (const j of keep[0]!) assert.ok(j >= m || targets.has(j));
  assert.deepEqual([...keep[1]!].slice(0, 2), naiveAda([peaked, flat], [n, n], 14, w, 0.2)[1]!.slice(0, 2));
  // alpha = 0.5 raises the floor to 5
  const keep5 = adaKvKeep([Float32Array.from(peaked), Float32Array.from(flat)], [n, n], 14, w, 0.5);
  assert.deepEqual([keep5[0]!.length, keep5[1]!.length], [15 + w, 5 + w]);
});

test('ada-kv over snapkv: the head whose queries attend to a few keys keeps more than the uniform one', () => {
  const r = rng(42);
  const n = 40;
  const d = 8;
  const w = 4;
  const e0 = (s: number) => [s, 0, 0, 0, 0, 0, 0, 0];
  const keys0: M = randMatrix(r, n, d, 0.05);
  const targets = [2, 5, 7, 11, 13, 17, 19, 23, 29, 31];
  for (const t of targets) keys0[t] = e0(4);
  const q = (s: number): M => Array.from({ length: w }, () => e0(s));
  const v: NaiveView = { H: 2, Q: 2, d, n, keys: [keys0, randMatrix(r, n, d, 0.05)], values: [keys0, keys0], queries: [q(4), q(0)], layer: 0, numLayers: 1 };
  // B = 10: T = 12, floor = floor(0.2 * 6) = 1. Head 0's 10 targets (about 0.1 each) beat the flat head's 1/40.
  const keep = select('ada-kv', { inner: 'snapkv', budget: 10, window: w, kernel: 1 }, toSelectView(v));
  assert.deepEqual(keep[0], [...targets, 36, 37, 38, 39]);
  assert.equal(keep[1]!.length, 2 + w);
  assert.equal(keep[0]!.length + keep[1]!.length, 2 * 10);
});

test('ada-kv equals a naive global allocation on random scores, respects the floor, and keeps H * B in all', () => {
  const r = rng(43);
  for (let trial = 0; trial < 150; trial++) {
    const H = 1 + Math.floor(r() * 4);
    const w = Math.floor(r() * 6);
    const B = w + 1 + Math.floor(r() * 20);
    const alpha = [0, 0.2, 0.5, 1][trial % 4]!;
    const ns = Array.from({ length: H }, () => Math.floor(r() * 3 * B));
    const scores = ns.map((n) => Array.from({ length: n - Math.min(w, n) }, () => Math.fround(r())));
    const got = adaKvKeep(scores.map((s) => Float32Array.from(s)), ns, B, w, alpha);
    assert.deepEqual(got.map((k) => [...k]), naiveAda(scores, ns, B, w, alpha), `trial ${trial}`);
    const total = got.reduce((a, k) => a + k.length, 0);
    const sumN = ns.reduce((a, b) => a + b, 0);
    assert.equal(total, Math.min(sumN, H * B));
    got.forEach((k, h) => {
      assert.ok(isAscendingUnique(k));
      const n = ns[h]!;
      const wh = Math.min(w, n);
      for (let i = 0; i < wh; i++) assert.ok(k.includes(n - wh + i), 'window kept');
      if (sumN > H * B) assert.ok(k.length - wh >= Math.min(Math.floor(alpha * (B - w)), n - wh), 'floor');
    });
  }
});

test('ada-kv keeps everything while the heads together fit, and the newest B when B <= window', () => {
  const s = [Float32Array.from([1, 2, 3]), Float32Array.from([3, 2, 1, 0, 0, 0, 0])];
  // heads of 5 and 9 tokens, B = 7: 14 <= 14, nothing evicted even though head 1 holds 9 > 7
  assert.deepEqual(adaKvKeep(s, [5, 9], 7, 2, 0.2).map((k) => k.length), [5, 9]);
  assert.deepEqual(adaKvKeep(s, [5, 9], 2, 2, 0.2).map((k) => [...k]), [[3, 4], [7, 8]]);
});
