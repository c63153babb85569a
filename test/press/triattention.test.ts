// triattention against the spec's formulas: a hand-computed view, the official route written naively
// (test/press/naive.ts: inverse RoPE at each key's position, amplitude and phase per band, 17 offsets),
// the selection modes, the prompt rules and the serving variant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pressScores, resolvePressOptions, select, selectLayers, toLayerView, type SelectView } from '../../src/press/index.js';
import { gauss, naiveTriKeep, naiveTriRaw, naiveZ, randomView, rng, toSelectView, type NaiveTriStats, type NaiveView } from './naive.js';

const d = 8;
const F = d / 2;
const invFreq = Array.from({ length: F }, (_, f) => Math.pow(1e6, (-2 * f) / d));

function randomStats(seed: number, L: number, Q: number): NaiveTriStats {
  const r = rng(seed);
  const re = Array.from({ length: L }, () => Array.from({ length: Q }, () => Array.from({ length: F }, () => Math.fround(gauss(r)))));
  const im = re.map((rows) => rows.map((row) => row.map(() => Math.fround(gauss(r)))));
  // m_f >= |qbar_f|, as every real calibration gives
  const abs = re.map((rows, l) => rows.map((row, a) => row.map((x, f) => Math.fround(Math.hypot(x, im[l]![a]![f]!) + 0.8 * r()))));
  return { re, im, abs };
}

const statsOption = (s: NaiveTriStats) => ({ qMeanRe: s.re, qMeanIm: s.im, qAbsMean: s.abs });

/** Ascending positions with gaps (a later compression's view): the first P slots are the prompt 0..P-1. */
function positionsFor(r: () => number, n: number, P: number, T: number): number[] {
  const pos = Array.from({ length: P }, (_, i) => i);
  const rest = new Set<number>();
  while (rest.size < n - P) rest.add(P + Math.floor(r() * (T - P)));
  return [...pos, ...[...rest].sort((a, b) => a - b)];
}

function views(seed: number, L: number, H: number, Q: number, n: number, P: number, T: number) {
  const r = rng(seed);
  const positions = Array.from({ length: H }, () => positionsFor(r, n, P, T));
  const nv: NaiveView[] = Array.from({ length: L }, (_, l) => randomView(seed * 31 + l, { H, Q, d, n, w: 0, layer: l, numLayers: L }));
  const sv: SelectView[] = nv.map((v) => ({ ...toSelectView(v), positions, promptLength: P, processed: T, ropeInvFreq: invFreq }));
  return { nv, sv, positions };
}

test('triattention on a hand-computed view: one band, one offset, the mean query is 1', () => {
  // d = 2 (one band, w = 1), offsetMax 1 (offset {1}), qbar = 1, m = 1: the score of a key whose pre-RoPE form is
  // the real number r at position p is r cos(T - p + 1) (the norm term (m - |qbar|) |k| is 0). Post-RoPE key: r e^{ip}.
  const T = 10;
  // slots in position order: (r, p) = (1, 0), (0.5, 7), (1, 8), (2, 9)
  const slots = [
    [1, 0],
    [0.5, 7],
    [1, 8],
    [2, 9],
  ] as const;
  const keys = slots.map(([rr, p]) => [rr * Math.cos(p), rr * Math.sin(p)]);
  const expected = slots.map(([rr, p]) => rr * Math.cos(T - p + 1)); // cos(11) = 0.004, cos(4) / 2 = -0.33, cos(3) = -0.99, 2 cos(2) = -0.83
  const view: SelectView = { numKvHeads: 1, numQHeads: 1, headDim: 2, n: 4, keys: [keys], positions: [slots.map(([, p]) => p)], processed: T, ropeInvFreq: [1] };
  const stats = { qMeanRe: [[[1]]], qMeanIm: [[[0]]], qAbsMean: [[[1]]] };
  const o = resolvePressOptions('triattention', { budget: 2, stats, offsetMax: 1, normalize: false }, { numLayers: 1, numKvHeads: 1, numQHeads: 1, headDim: 2 });
  const s = pressScores('triattention', o, toLayerView(view), 0);
  expected.forEach((x, slot) => assert.ok(Math.abs(s[slot]! - x) < 1e-6, `slot ${slot}: ${s[slot]} vs ${x}`));
  // The keep list: the two highest, slots 0 and 1.
  assert.deepEqual(select('triattention', { budget: 2, stats, offsetMax: 1, normalize: false }, view), [[0, 1]]);
  // Normalisation is a per-row affine map: the same keep list.
  assert.deepEqual(select('triattention', { budget: 2, stats, offsetMax: 1 }, view), [[0, 1]]);
});

test('triattention: scores from the stored post-RoPE keys equal the official inverse-RoPE route to 1e-6 relative', () => {
  const r = rng(11);
  for (const opts of [{}, { offsetAgg: 'max' as const }, { disableMlr: true }, { disableTrig: true }, { offsetMax: 1000 }]) {
    for (let trial = 0; trial < 6; trial++) {
      const n = 40;
      const T = 1000 + Math.floor(r() * 60000);
      const pos = positionsFor(r, n, 0, T);
      const v = randomView(100 + trial, { H: 1, Q: 1, d, n, w: 0 });
      const stats = randomStats(200 + trial, 1, 1);
      const view: SelectView = { ...toSelectView(v), positions: [pos], processed: T, ropeInvFreq: invFreq };
      const o = resolvePressOptions('triattention', { budget: 10, stats: statsOption(stats), normalize: false, protectPrompt: false, ...opts }, { numLayers: 1, numKvHeads: 1, numQHeads: 1, headDim: d });
      const got = pressScores('triattention', o, toLayerView(view), 0);
      const want = v.keys[0]!.map((k, j) =>
        naiveTriRaw(k, pos[j]!, T, invFreq, stats.re[0]![0]!, stats.im[0]![0]!, stats.abs[0]![0]!, {
          agg: opts.offsetAgg ?? 'mean',
          offsetMax: opts.offsetMax ?? 65536,
          disableTrig: opts.disableTrig ?? false,
          disableMlr: opts.disableMlr ?? false,
        }),
      );
      const scale = Math.max(...want.map(Math.abs));
      want.forEach((x, j) => assert.ok(Math.abs(got[j]! - x) <= 1e-6 * scale, `${JSON.stringify(opts)} T=${T} slot ${j}: ${got[j]} vs ${x}`));
    }
  }
});

test('triattention keep lists equal the official per-KV-head, per-layer and union selections (prompt kept, GQA, layers)', () => {
  const L = 3;
  const H = 2;
  const Q = 4;
  let seed = 1;
  for (const P of [0, 3, 9]) {
    for (const selection of ['per-kv-head', 'per-layer', 'union'] as const) {
      for (const groupAgg of ['max', 'mean'] as const) {
        if (groupAgg === 'mean' && selection !== 'per-layer') continue;
        const n = 30;
        const B = 16;
        const T = 5000 + seed * 37;
        const { nv, sv, positions } = views(seed++, L, H, Q, n, P, T);
        const stats = randomStats(seed, L, Q);
        // union: one list for every head, so every head holds the same slots
        const pos = selection === 'union' ? positions.map(() => positions[0]!) : positions;
        const svs = sv.map((v) => ({ ...v, positions: pos }));
        const got = selectLayers('triattention', { budget: B, stats: statsOption(stats), selection, groupAgg }, svs);
        const want = naiveTriKeep(nv, pos, stats, invFreq, P, T, B, { selection, groupAgg });
        assert.deepEqual(got, want, `P=${P} ${selection} ${groupAgg}`);
        if (selection !== 'per-layer') for (let l = 1; l < L; l++) assert.deepEqual(got[l], got[0], 'one list for every layer');
        for (const k of got.flat()) {
          assert.equal(k.length, B);
          for (let j = 0; j < P; j++) assert.equal(k[j], j, 'prompt kept');
        }
      }
    }
  }
});

test('triattention: a prompt filling the budget keeps its first B slots (official); clamp keeps B - 1 and the best decode slot', () => {
  const L = 2;
  const { nv, sv, positions } = views(7, L, 1, 2, 24, 18, 900);
  const stats = randomStats(8, L, 2);
  const B = 12;
  const truncated = selectLayers('triattention', { budget: B, stats: statsOption(stats) }, sv);
  assert.deepEqual(truncated, naiveTriKeep(nv, positions, stats, invFreq, 18, 900, B));
  assert.deepEqual(truncated[0]![0], [...Array(B).keys()]);
  const clamped = selectLayers('triattention', { budget: B, stats: statsOption(stats), promptOverflow: 'clamp' }, sv)[0]![0]!;
  assert.deepEqual(clamped.slice(0, B - 1), [...Array(B - 1).keys()]);
  // The free slot is the best decode slot [18, 24) by the official score: the naive list for a budget of 18 + 1
  // keeps the prompt and exactly that slot.
  const best = naiveTriKeep(nv, positions, stats, invFreq, 18, 900, 19)[0]![0]!.at(-1);
  assert.equal(clamped[B - 1], best);
  // skip: nothing evicted
  assert.deepEqual(selectLayers('triattention', { budget: B, stats: statsOption(stats), promptOverflow: 'skip' }, sv)[0]![0], [...Array(24).keys()]);
});

test('triattention serving variant: window 128-style protection, z over all slots with the unbiased sigma, prompt competing', () => {
  const L = 2;
  const H = 2;
  const Q = 4;
  const n = 40;
  const w = 5;
  const B = 20;
  const T = 3000;
  const { nv, sv, positions } = views(21, L, H, Q, n, 6, T);
  const stats = randomStats(22, L, Q);
  const got = selectLayers('triattention', { budget: B, stats: statsOption(stats), window: w, normStats: 'all-unbiased', protectPrompt: false }, sv);
  const G = Q / H;
  for (let h = 0; h < H; h++) {
    // vLLM: every slot scored and z-scored (unbiased), the window protected, group max, mean over layers, top B.
    const layerScores = nv.map((v, l) => {
      const z = Array.from({ length: G }, (_, g) =>
        naiveZ(v.keys[h]!.map((k, j) => naiveTriRaw(k, positions[h]![j]!, T, invFreq, stats.re[l]![h * G + g]!, stats.im[l]![h * G + g]!, stats.abs[l]![h * G + g]!)), true),
      );
      return Array.from({ length: n - w }, (_, j) => Math.max(...z.map((row) => row[j]!)));
    });
    const S = Array.from({ length: n - w }, (_, j) => layerScores.reduce((a, s) => a + s[j]!, 0) / L);
    const order = S.map((s, j) => [s, j] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    const want = [...order.slice(0, B - w).map(([, j]) => j), ...Array.from({ length: w }, (_, i) => n - w + i)].sort((a, b) => a - b);
    for (let l = 0; l < L; l++) assert.deepEqual(got[l]![h], want, `head ${h} layer ${l}`);
  }
});

test('triattention options and views: checked shapes name the option, a view without the rope is refused', () => {
  const stats = randomStats(3, 2, 4);
  const ctx = { numLayers: 2, numKvHeads: 2, numQHeads: 4, headDim: d };
  assert.throws(() => resolvePressOptions('triattention', { budget: 8 }, ctx), /triattention: option "stats" is required/);
  assert.throws(() => resolvePressOptions('triattention', { budget: 8, stats: statsOption(randomStats(3, 3, 4)) }, ctx), (e: Error & { option?: string }) => e.option === 'stats');
  assert.throws(() => resolvePressOptions('triattention', { budget: 8, stats: statsOption(randomStats(3, 2, 6)) }, ctx), /option "stats": qMeanRe must hold 4 query heads per layer/);
  assert.throws(() => resolvePressOptions('triattention', { budget: 8, stats: { ...statsOption(stats), qAbsMean: stats.re } }, ctx), /negative magnitude/);
  const v = toSelectView(randomView(1, { H: 2, Q: 4, d, n: 20, w: 0, numLayers: 2 }));
  assert.throws(() => select('triattention', { budget: 8, stats: statsOption(stats) }, v), /no ropeInvFreq/);
  // ropeTheta gives the same inverse frequencies
  assert.deepEqual(select('triattention', { budget: 8, stats: statsOption(stats) }, { ...v, ropeTheta: 1e6 }), select('triattention', { budget: 8, stats: statsOption(stats) }, { ...v, ropeInvFreq: invFreq }));
  // A single decode slot has sigma 0: its z-score is 0, not NaN.
  const one = toLayerView({ ...toSelectView(randomView(2, { H: 1, Q: 1, d, n: 6, w: 0 })), promptLength: 5, ropeInvFreq: invFreq });
  const o = resolvePressOptions('triattention', { budget: 3, stats: statsOption(randomStats(4, 1, 1)) }, { numLayers: 1, numKvHeads: 1, numQHeads: 1, headDim: d });
  assert.equal(pressScores('triattention', o, one, 0)[5], 0);
});
