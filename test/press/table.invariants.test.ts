import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PRESS_NAMES,
  SCORED_PRESS_NAMES,
  compressLayer,
  pressScores,
  pyramidLayerBudget,
  resolvePressOptions,
  select,
  toLayerView,
  type LayerView,
  type PressDefinition,
  type PressOptions,
  type PressOptionsInput,
  type SelectView,
} from '../../src/press/index.js';
import { isAscendingUnique, naiveKeep, randMatrix, randomView, rng, toSelectView, type NaiveView } from './naive.js';

const L = 3;
const d = 8;

/** Resolved options of any press, with the fields these checks read (absent ones are undefined). */
type AnyOptions = PressOptions & { sinks: number; window: number; beta: number; alpha: number; forceNewest: boolean; inner: PressDefinition };

function optionsFor(press: string, r: () => number, H: number, inner: string, Q = 2 * H): PressOptionsInput {
  const o: PressOptionsInput = { phase: r() < 0.5 ? 'prefill' : 'decode' };
  const target = press === 'ada-kv' ? inner : press;
  if (press === 'ada-kv') (o.inner = inner), (o.alpha = [0, 0.2, 0.7][Math.floor(r() * 3)]!);
  if (target === 'q-filters') o.filters = Array.from({ length: L }, () => randMatrix(r, H, d));
  if (target === 'triattention') {
    const re = Array.from({ length: L }, () => randMatrix(r, Q, d / 2));
    o.stats = { qMeanRe: re, qMeanIm: re.map((m) => m.map((row) => row.map((x) => -x))), qAbsMean: re.map((m) => m.map((row) => row.map((x) => 2 * Math.abs(x) + 0.1))) };
    o.selection = (['per-kv-head', 'per-layer', 'union'] as const)[Math.floor(r() * 3)];
  }
  if (target === 'random-pp') o.randomSeed = Math.floor(r() * 1000);
  const windowed = ['h2o', 'knorm', 'snapkv', 'pyramidkv', 'q-filters', 'r-kv', 'mix-kv', 'triattention', 'random-pp'].includes(target);
  if (windowed) o.window = (['knorm', 'q-filters', 'h2o', 'triattention', 'random-pp'].includes(target) ? 0 : 1) + Math.floor(r() * 6);
  if (target === 'streaming-llm') o.sinks = Math.floor(r() * 4);
  if (target === 'tova') o.forceNewest = r() < 0.7;
  if (target === 'r-kv') o.lambda = r();
  if (target === 'pyramidkv') o.beta = 1 + r() * 4;
  if (target === 'snapkv' || target === 'mix-kv' || target === 'pyramidkv') {
    o.pooling = r() < 0.5 ? 'avg' : 'max';
    o.gqa = r() < 0.5 ? 'mean' : 'max-logits';
  }
  if (target !== 'full') o.budget = (o.window ?? 0) + ((o.sinks as number | undefined) ?? 0) + 1 + Math.floor(r() * 25);
  return o;
}

/** The select view of a naive view, with the rope triattention needs. */
const sview = (v: NaiveView, extra: Partial<SelectView> = {}): SelectView => ({ ...toSelectView(v), ropeTheta: 10000, ...extra });

/** Budget and protected window the keep lists must show for a non-ada press. */
function expected(press: string, o: AnyOptions, layer: number): { B: number; w: number } {
  if (press === 'full') return { B: Infinity, w: 0 };
  if (press === 'streaming-llm') return { B: o.budget, w: o.budget - o.sinks };
  if (press === 'tova') return { B: o.budget, w: o.forceNewest ? 1 : 0 };
  if (press === 'pyramidkv') return { B: pyramidLayerBudget(o.budget, L, o.beta, layer), w: o.window };
  return { B: o.budget, w: o.window };
}

function checkKeep(label: string, press: string, o: AnyOptions, view: LayerView, keep: ArrayLike<number>[]): void {
  assert.equal(keep.length, view.numKvHeads, label);
  const ns = view.heads.map((hv) => hv.n);
  keep.forEach((k, h) => {
    assert.ok(isAscendingUnique(k), `${label}: ascending unique`);
    if (k.length > 0) assert.ok(k[0]! >= 0 && k[k.length - 1]! < ns[h]!, `${label}: in range`);
  });
  if (press === 'ada-kv') {
    const B = o.inner.name === 'pyramidkv' ? pyramidLayerBudget(o.budget, L, o.beta, view.layer) : o.budget;
    const w = o.inner.name === 'tova' ? (o.forceNewest ? 1 : 0) : o.window;
    const sumN = ns.reduce((a, b) => a + b, 0);
    const H = ns.length;
    const total = keep.reduce((a, k) => a + k.length, 0);
    if (sumN <= H * B) assert.equal(total, sumN, `${label}: nothing evicted`);
    else if (B <= w) keep.forEach((k, h) => assert.equal(k.length, Math.min(B, ns[h]!)));
    else {
      assert.equal(total, H * B, `${label}: H * B kept`);
      const floor = Math.floor(o.alpha * (B - w));
      keep.forEach((k, h) => {
        const wh = Math.min(w, ns[h]!);
        for (let i = 0; i < wh; i++) assert.ok(Array.from(k).includes(ns[h]! - wh + i), `${label}: window`);
        assert.ok(k.length - wh >= Math.min(floor, ns[h]! - wh), `${label}: floor`);
      });
    }
    return;
  }
  const { B, w } = expected(press, o, view.layer);
  keep.forEach((k, h) => {
    const n = ns[h]!;
    assert.equal(k.length, Math.min(n, B), `${label}: head ${h} keeps min(n, B)`);
    const newest = Math.min(w, k.length);
    for (let i = 0; i < newest; i++) assert.equal(k[k.length - newest + i], n - newest + i, `${label}: window kept`);
    if (press === 'streaming-llm' && n > B) for (let i = 0; i < Math.min(o.sinks, B); i++) assert.equal(k[i], i, `${label}: sinks`);
  });
}

test('every press on random views: budget per head (ada-kv: H * B per layer), window kept, ascending unique, nothing evicted when n <= B', () => {
  const r = rng(500);
  let seed = 1000;
  for (const press of PRESS_NAMES) {
    const inners = press === 'ada-kv' ? SCORED_PRESS_NAMES : ['-'];
    for (const inner of inners) {
      for (let trial = 0; trial < 12; trial++) {
        const H = 1 + Math.floor(r() * 2);
        const Q = H * (1 + Math.floor(r() * 2));
        const opts = optionsFor(press, r, H, inner, Q);
        const layer = Math.floor(r() * L);
        const B = opts.budget ?? 10;
        const n = trial % 3 === 0 ? 1 + Math.floor(r() * B) : B + 1 + Math.floor(r() * 40);
        const v = randomView(seed++, { H, Q, d, n, w: 1 + Math.floor(r() * 8), layer, numLayers: L, qScale: 2 });
        const label = `${press}${inner === '-' ? '' : `(${inner})`} trial ${trial} n=${n} ${JSON.stringify({ ...opts, filters: undefined, stats: undefined })}`;
        const o = resolvePressOptions(press as string, opts, { numLayers: L, numKvHeads: H, numQHeads: Q, headDim: d }) as AnyOptions;
        const keep = select(press, opts, sview(v));
        checkKeep(label, press, o, toLayerView(sview(v)), keep);
        const pyramid = press === 'pyramidkv' || (press === 'ada-kv' && inner === 'pyramidkv');
        const layerB = pyramid ? pyramidLayerBudget(B, L, o.beta, layer) : B;
        if (n <= layerB) keep.forEach((k) => assert.deepEqual(k, [...Array(n).keys()], `${label}: n <= B keeps all`));
        // Heads of different lengths (after ada-kv): every press copes.
        const lv = toLayerView(sview(v));
        // union keeps one list for every head: it needs the heads to hold the same slots
        if (opts['selection'] === 'union') continue;
        const uneven: LayerView = { ...lv, heads: lv.heads.map((hv, h) => ({ ...hv, n: h === 0 ? hv.n : Math.max(1, hv.n - 1 - Math.floor(r() * 5)) })) };
        checkKeep(`${label} uneven`, press, o, uneven, compressLayer(press, o, uneven));
      }
    }
  }
});

test('select accepts flat Float32Arrays and nested arrays alike', () => {
  const v = randomView(77, { H: 2, Q: 4, d, n: 30, w: 6, qScale: 2 });
  const flat = {
    numKvHeads: 2,
    numQHeads: 4,
    headDim: d,
    n: 30,
    keys: Float32Array.from(v.keys.flat(2)),
    values: Float32Array.from(v.values.flat(2)),
    queries: Float32Array.from(v.queries.flat(2)),
  };
  for (const press of ['snapkv', 'r-kv', 'mix-kv', 'tova', 'knorm', 'random-pp'] as const) {
    const opts = press === 'random-pp' ? { budget: 16, window: 4 } : { budget: 16 };
    assert.deepEqual(select(press, opts, flat), select(press, opts, toSelectView(v)), press);
  }
  assert.throws(() => select('snapkv', { budget: 16 }, { ...flat, queries: new Float32Array(7) }), /view\.queries/);
});

test('every press with protectPrompt: the prompt kept (clamped to B - w - 1), the window, exactly B, and the press\'s own top of the rest', () => {
  const r = rng(900);
  let seed = 5000;
  for (const press of PRESS_NAMES.filter((p) => p !== 'full')) {
    const inners = press === 'ada-kv' ? SCORED_PRESS_NAMES : ['-'];
    for (const inner of inners) {
      for (let trial = 0; trial < 10; trial++) {
        const H = 1 + Math.floor(r() * 2);
        const Q = H * (1 + Math.floor(r() * 2));
        const opts: PressOptionsInput = { ...optionsFor(press, r, H, inner, Q), protectPrompt: true, promptOverflow: 'clamp' };
        if (opts['selection'] === 'union') opts['selection'] = 'per-layer';
        const inBudget = r() < 0.8;
        if (!inBudget) opts.promptInBudget = false;
        const layer = Math.floor(r() * L);
        const B0 = opts.budget ?? 10;
        const n = B0 + 1 + Math.floor(r() * 40);
        const P = Math.floor(r() * (n + 1));
        const v = randomView(seed++, { H, Q, d, n, w: 1 + Math.floor(r() * 8), layer, numLayers: L, qScale: 2 });
        const view = sview(v, { promptLength: P, processed: n });
        const label = `${press}${inner === '-' ? '' : `(${inner})`} trial ${trial} n=${n} P=${P} ${JSON.stringify({ ...opts, filters: undefined, stats: undefined })}`;
        const o = resolvePressOptions(press as string, opts, { numLayers: L, numKvHeads: H, numQHeads: Q, headDim: d }) as AnyOptions;
        const keep = select(press, opts, view);
        const lv = toLayerView(view);
        const target = press === 'ada-kv' ? inner : press;
        const pyramid = target === 'pyramidkv';
        const B = (pyramid ? pyramidLayerBudget(B0, L, o.beta, layer) : B0) + (inBudget ? 0 : P);
        const w = target === 'streaming-llm' ? 0 : target === 'tova' ? (o.forceNewest ? 1 : 0) : o.window;
        if (press === 'ada-kv') {
          const total = keep.reduce((a, k) => a + k.length, 0);
          if (H * n <= H * B || B <= w) continue;
          assert.equal(total, H * B, `${label}: H * B kept`);
          keep.forEach((k) => {
            const p = Math.min(P, n, B - w - 1);
            assert.deepEqual(k.slice(0, p), [...Array(p).keys()], `${label}: prompt kept`);
          });
          continue;
        }
        keep.forEach((k, h) => {
          assert.ok(isAscendingUnique(k), label);
          if (n <= B) return assert.equal(k.length, n, `${label}: nothing evicted`);
          if (B <= w) return assert.equal(k.length, B, label);
          assert.equal(k.length, B, `${label}: exactly B`);
          const p = Math.min(P, B - w - 1);
          assert.deepEqual(k.slice(0, p), [...Array(p).keys()], `${label}: prompt kept`);
          assert.deepEqual(k.slice(B - w), [...Array(w).keys()].map((i) => n - w + i), `${label}: window kept`);
          if (target === 'streaming-llm') {
            const first = Math.max(Math.min(o.sinks, B), p);
            assert.deepEqual(k, [...[...Array(first).keys()], ...[...Array(B - first).keys()].map((i) => n - B + first + i)], `${label}: sinks, prompt, newest`);
            return;
          }
          // The rest is the press's own top B - w - p of its scores over [p, n - w): protection changes no other score.
          const scores = Array.from(pressScores(press, o, lv, h));
          const rest = naiveKeep(scores.slice(p), n - p, B - p, w).map((j) => j + p);
          assert.deepEqual(k.slice(p), rest, `${label}: the press's top of the rest`);
        });
      }
    }
  }
});

test('protectPrompt: promptOverflow skip evicts nothing when the prompt does not fit; a user keep rule must keep the prompt', () => {
  const v = sview(randomView(3, { H: 2, Q: 2, d, n: 40, w: 4 }), { promptLength: 30 });
  for (const press of ['snapkv', 'knorm', 'streaming-llm', 'random-pp'] as const) {
    const keep = select(press, { budget: 20, window: press === 'streaming-llm' ? undefined : 4, protectPrompt: true, promptOverflow: 'skip' }, v);
    keep.forEach((k) => assert.deepEqual(k, [...Array(40).keys()], press));
  }
  assert.deepEqual(select('ada-kv', { inner: 'knorm', budget: 20, protectPrompt: true, promptOverflow: 'skip' }, v), [[...Array(40).keys()], [...Array(40).keys()]]);
});
