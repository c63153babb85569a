// A press written in user code with definePress runs on every path a built-in press takes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { BUDGET, definePress, option, protectPrompt, protectedSlots, select, window, type PressDefinition } from '../../src/press/index.js';
import { randomView, toSelectView } from './naive.js';
import { stories260K } from '../helpers.js';

/** knorm written again by a user, with a typed option of its own: the p-norm (2 gives knorm's scores). */
const keyNorm = definePress({
  name: 'key-norm',
  summary: 'keep the keys of lowest p-norm',
  options: [BUDGET, window(0, 0, 0), option.number({ name: 'power', description: 'the p of the p-norm', default: 2, min: 1 })],
  score(o, view, h, m, out) {
    const d = view.headDim;
    const K = view.heads[h]!.keys;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += Math.abs(K[j * d + t]!) ** o.power;
      out[j] = -(s ** (1 / o.power));
    }
  },
});

/**
 * TOVA written again: the last observation query's attention over each key, averaged over every query
 * head of the layer, the newest token always kept. It asks the engine for one observation query.
 */
const lastQuery = definePress({
  name: 'last-query',
  summary: "the last query's attention averaged over the query heads",
  options: [BUDGET],
  needs: { queries: () => 1 },
  window: () => 1,
  score(_o, view, h, m, out) {
    const { headDim: d, numQHeads: Q, numKvHeads: H } = view;
    const n = view.heads[h]!.n;
    const mean = new Float64Array(n);
    for (let g = 0; g < Q; g++) {
      const K = view.heads[Math.floor(g / (Q / H))]!.keys;
      const q = view.queries[g]!.subarray((view.w - 1) * d, view.w * d);
      const z = Array.from({ length: n }, (_, j) => {
        let s = 0;
        for (let t = 0; t < d; t++) s += q[t]! * K[j * d + t]!;
        return s / Math.sqrt(d);
      });
      const mx = Math.max(...z);
      const e = z.map((x) => Math.exp(x - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < n; j++) mean[j] = mean[j]! + e[j]! / sum / Q;
    }
    for (let j = 0; j < m; j++) out[j] = mean[j]!;
  },
});

test('definePress: a user press keeps what the built-in press it re-implements keeps, through select()', () => {
  for (let seed = 0; seed < 20; seed++) {
    const v = toSelectView(randomView(seed, { H: 2, Q: 4, d: 8, n: 40 + seed, w: 6, qScale: 2 }));
    assert.deepEqual(select(keyNorm, { budget: 20 }, v), select('knorm', { budget: 20 }, v), `key-norm seed ${seed}`);
    assert.deepEqual(select(lastQuery, { budget: 17 }, v), select('tova', { budget: 17 }, v), `last-query seed ${seed}`);
    // ada-kv wraps a user press like a built-in one
    assert.deepEqual(select('ada-kv', { inner: keyNorm, budget: 20, alpha: 0.3 }, v), select('ada-kv', { inner: 'knorm', budget: 20, alpha: 0.3 }, v));
  }
  // its own option is typed, checked and used
  const v = toSelectView(randomView(99, { H: 1, Q: 1, d: 8, n: 30, w: 1 }));
  assert.notDeepEqual(select(keyNorm, { budget: 10, power: 1 }, v), select(keyNorm, { budget: 10, power: 8 }, v));
  assert.throws(() => select(keyNorm, { budget: 10, power: 0 }, v), /key-norm: option "power" is out of range/);
  assert.throws(() => select(keyNorm, { budget: 10, lambda: 0.5 }, v), /key-norm: unknown option "lambda"/);
});

test('definePress: a user press runs through generate with compression exactly as the built-in one', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    const run = (press: string | PressDefinition, extra = {}) =>
      model.complete('Once upon a time', { maxTokens: 200, ignoreEos: true, compression: { press, budget: 40, buffer: 16, ...extra } });
    const [mine, builtin] = [await run(keyNorm), await run('knorm')];
    assert.ok(mine.compressions >= 10, `${mine.compressions} compressions`);
    assert.deepEqual(mine.generatedIds, builtin.generatedIds);
    assert.equal(mine.peakKvBytes, builtin.peakKvBytes);
    // observation queries reach a user press through the compressor
    const [last, tova] = [await run(lastQuery), await run('tova')];
    assert.ok(last.compressions >= 10);
    assert.deepEqual(last.generatedIds, tova.generatedIds);
    // a different option value changes what is kept, and so the text
    assert.notDeepEqual((await run(keyNorm, { power: 1 })).generatedIds, mine.generatedIds);
  } finally {
    model.dispose();
  }
});

test('definePress refuses malformed definitions; a bad keep() result names the press', () => {
  const base = { summary: 'x', options: [BUDGET] };
  assert.throws(() => definePress({ ...base, name: 'Bad Name', score() {} }), /name "Bad Name" must be lowercase/);
  assert.throws(() => definePress({ ...base, name: 'two', score() {}, keep: () => [] } as never), /exactly one of score\(\) and keep\(\)/);
  assert.throws(() => definePress({ ...base, name: 'dup', options: [BUDGET, BUDGET], score() {} }), /option "budget" is listed twice/);
  const backwards = definePress({ name: 'backwards', summary: 'keeps the oldest two, in the wrong order', options: [BUDGET], keep: (_o, view) => view.heads.map(() => [1, 0] as never) });
  const v = toSelectView(randomView(3, { H: 1, Q: 1, d: 4, n: 5, w: 1 }));
  assert.throws(() => select(backwards, { budget: 2 }, v), /backwards: keep\(\) list of KV head 0 must ascend/);
});

test('definePress: every user press with a budget takes protectPrompt; a keep rule must honour it (protectedSlots tells it how much)', () => {
  const v = { ...toSelectView(randomView(5, { H: 2, Q: 2, d: 8, n: 40, w: 1 })), promptLength: 12 };
  // A scored user press: the shared selection protects the prompt, its own scores pick the rest.
  const kept = select(keyNorm, { budget: 20, protectPrompt: true }, v);
  const plain = select('knorm', { budget: 20, protectPrompt: true }, v);
  assert.deepEqual(kept, plain);
  kept.forEach((k) => assert.deepEqual(k.slice(0, 12), [...Array(12).keys()]));
  assert.ok(keyNorm.options.some((o) => o.name === 'promptOverflow'));
  // A press may list the option itself to protect by default.
  const power = keyNorm.options.find((o) => o.name === 'power')!;
  const guarded = definePress({ name: 'guarded-norm', summary: 'key-norm protecting the prompt', options: [BUDGET, window(0, 0, 0), power, protectPrompt(true)], score: keyNorm.score! } as never) as PressDefinition;
  assert.deepEqual(select(guarded, { budget: 20 }, v), plain, 'protected by default');
  // A keep rule that keeps the newest only evicts the prompt: refused naming the option; one using protectedSlots passes.
  const newest = definePress({ name: 'newest', summary: 'the newest budget tokens', options: [BUDGET], keep: (o, view) => view.heads.map((hv) => Int32Array.from({ length: Math.min(hv.n, o.budget) }, (_, i) => hv.n - Math.min(hv.n, o.budget) + i)) });
  assert.throws(() => select(newest, { budget: 20, protectPrompt: true }, v), (e: Error & { option?: string }) => /newest: keep\(\) of KV head 0 evicts a protected prompt slot/.test(e.message) && e.option === 'protectPrompt');
  const careful = definePress({
    name: 'careful',
    summary: 'the protected prompt, then the newest',
    options: [BUDGET],
    keep: (o, view) =>
      view.heads.map((hv, h) => {
        const p = protectedSlots(o, view, h, o.budget, 0);
        const b = Math.min(hv.n, o.budget);
        return Int32Array.from({ length: Math.max(b, Math.min(p, hv.n)) }, (_, i) => (i < p ? i : hv.n - (b - i)));
      }),
  });
  select(careful, { budget: 20, protectPrompt: true }, v).forEach((k) => assert.deepEqual(k, [...[...Array(12).keys()], ...[...Array(8).keys()].map((i) => 32 + i)]));
});
