// random-pp's properties (docs/methods.md Part 2): prompt and window kept, exactly B, a uniform subset of the
// rest (chi-square over many sequences), independent per head, layer and compression, reproducible by seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { select, type SelectView } from '../../src/press/index.js';
import { isAscendingUnique, randomView, toSelectView } from './naive.js';

const base = toSelectView(randomView(1, { H: 2, Q: 2, d: 4, n: 60, w: 0, numLayers: 4 }));
const view = (o: Partial<SelectView>): SelectView => ({ ...base, promptLength: 10, processed: 60, ...o });

/** The chi-square quantile of probability 1 - 0.001 with `df` degrees of freedom (Wilson-Hilferty). */
function chi2Critical(df: number): number {
  const z = 3.09;
  return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
}

test('random-pp keeps the prompt, the window and exactly B, ascending; the same seed keeps the same set', () => {
  for (const [P, w, B] of [
    [10, 8, 30],
    [0, 8, 30],
    [10, 0, 25],
    [3, 20, 40],
  ] as const) {
    const opts = { budget: B, window: w };
    for (let s = 0; s < 20; s++) {
      const keep = select('random-pp', opts, view({ promptLength: P, sequenceId: s }));
      for (const k of keep) {
        assert.equal(k.length, B);
        assert.ok(isAscendingUnique(k));
        for (let j = 0; j < P; j++) assert.equal(k[j], j, 'prompt kept');
        for (let i = 0; i < w; i++) assert.equal(k[B - w + i], 60 - w + i, 'window kept');
      }
      assert.deepEqual(select('random-pp', opts, view({ promptLength: P, sequenceId: s })), keep, 'same stream, same set');
    }
  }
  // Without protection the prompt competes like any other slot.
  const loose = Array.from({ length: 40 }, (_, s) => select('random-pp', { budget: 30, window: 8, protectPrompt: false }, view({ sequenceId: s }))[0]!);
  assert.ok(loose.some((k) => k.slice(0, 10).join() !== '0,1,2,3,4,5,6,7,8,9'));
});

test('random-pp draws a uniform subset: chi-square of every unprotected slot\'s keep count over 4000 sequences', () => {
  const P = 10;
  const w = 8;
  const B = 30;
  const n = 60;
  const free = n - w - P; // 42 candidates
  const k = B - w - P; // 12 drawn
  const N = 4000;
  const counts = [new Array<number>(free).fill(0), new Array<number>(free).fill(0)];
  let overlap = 0;
  for (let s = 0; s < N; s++) {
    const keep = select('random-pp', { budget: B, window: w, randomSeed: 7 }, view({ sequenceId: s }));
    const sets = keep.map((kh) => kh.filter((j) => j >= P && j < n - w));
    sets.forEach((set, h) => set.forEach((j) => counts[h]![j - P]!++));
    overlap += sets[0]!.filter((j) => sets[1]!.includes(j)).length;
  }
  const p = k / free;
  for (const c of counts) {
    // Each draw keeps exactly k, so a cell's variance is N p (1 - p): the statistic is chi-square with free - 1 df.
    const x2 = c.reduce((a, x) => a + (x - N * p) ** 2 / (N * p * (1 - p)), 0);
    assert.ok(x2 < chi2Critical(free - 1), `chi-square ${x2.toFixed(1)} >= ${chi2Critical(free - 1).toFixed(1)}`);
  }
  // Heads draw independently: the mean overlap of their two k-subsets is k^2 / free (hypergeometric), standard
  // error about 0.02 here; identical draws would give k.
  const expected = (k * k) / free;
  assert.ok(Math.abs(overlap / N - expected) < 0.1, `overlap ${overlap / N} vs ${expected}`);
});

test('random-pp streams differ by sequence, compression step, layer and seed', () => {
  const opts = { budget: 30, window: 8 };
  const a = select('random-pp', opts, view({ sequenceId: 1, layer: 0 }));
  const differs = (b: number[][]) => b[0]!.join() !== a[0]!.join() && b[1]!.join() !== a[1]!.join();
  assert.ok(differs(select('random-pp', opts, view({ sequenceId: 2, layer: 0 }))), 'sequence');
  assert.ok(differs(select('random-pp', opts, view({ sequenceId: 1, layer: 0, processed: 61 }))), 'step');
  assert.ok(differs(select('random-pp', opts, view({ sequenceId: 1, layer: 1 }))), 'layer');
  assert.ok(differs(select('random-pp', { ...opts, randomSeed: 5 }, view({ sequenceId: 1, layer: 0 }))), 'seed');
  assert.notEqual(a[0]!.join(), a[1]!.join(), 'heads');
});

test('random-pp with a prompt longer than B - w: the first B - w - 1 prompt slots, one random slot of the rest, the window', () => {
  const B = 30;
  const w = 8;
  const seen = new Set<number>();
  for (let s = 0; s < 300; s++) {
    for (const k of select('random-pp', { budget: B, window: w }, view({ promptLength: 40, sequenceId: s }))) {
      assert.deepEqual(k.slice(0, B - w - 1), [...Array(B - w - 1).keys()]);
      const one = k[B - w - 1]!;
      assert.ok(one >= B - w - 1 && one < 60 - w);
      seen.add(one);
      assert.deepEqual(k.slice(B - w), [...Array(w).keys()].map((i) => 60 - w + i));
    }
  }
  // The free slot ranges over the rest of the prompt and the generated slots alike (31 candidates).
  assert.ok(seen.size > 25, `${seen.size} distinct free slots`);
  assert.ok([...seen].some((j) => j < 40) && [...seen].some((j) => j >= 40));
});
