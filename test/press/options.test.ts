import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvsieveError } from '../../src/core/errors.js';
import {
  type ResolveContext,
  PRESSES,
  PRESS_NAMES,
  compressLayer,
  formatPresses,
  parsePressFlag,
  resolvePressOptions,
  toLayerView,
  type PressOptions,
} from '../../src/press/index.js';
import { randomView, toSelectView } from './naive.js';

const ctx = { numLayers: 2, numKvHeads: 2, headDim: 4 };
const pre: ResolveContext = { ...ctx, phase: 'prefill' };
const dec: ResolveContext = { ...ctx, phase: 'decode' };
const filters = [
  [[1, 0, 0, 0], [0, 1, 0, 0]],
  [[0, 0, 1, 0], [0, 0, 0, 1]],
];

test('defaults follow the spec, per phase where they differ', () => {
  const s = (p: string, c = dec, o = {}) => resolvePressOptions(p, o, c);
  assert.deepEqual([s('snapkv', pre).window, s('snapkv', dec).window], [64, 8]);
  assert.deepEqual([s('snapkv').kernel, s('snapkv').pooling, s('snapkv').gqa, s('snapkv').budget], [5, 'avg', 'mean', 1024]);
  assert.equal(s('snapkv', dec, { pooling: 'max' }).kernel, 7);
  assert.deepEqual([s('q-filters', pre, { filters }).window, s('q-filters', dec, { filters }).window], [0, 64]);
  assert.deepEqual([s('mix-kv', pre).window, s('mix-kv', dec).window, s('mix-kv').kernel], [32, 8, 5]);
  const r = s('r-kv', pre);
  assert.deepEqual([r.window, r.kernel, r.lambda, r.threshold], [8, 7, 0.1, 0.5]);
  assert.deepEqual([s('knorm', pre).window, s('knorm').window], [0, 0]);
  assert.deepEqual([s('h2o', pre).window, s('h2o').window, s('h2o').normalize], [64, 8, false]);
  assert.equal(s('streaming-llm').sinks, 4);
  assert.equal(s('tova').forceNewest, true);
  assert.equal(s('pyramidkv').beta, 20);
  const a = s('ada-kv');
  assert.deepEqual([(a.inner as { name: string }).name, a.alpha, a.window, a.kernel], ['snapkv', 0.2, 8, 5]);
  assert.equal(s('ada-kv', dec, { inner: 'r-kv', lambda: 0.07 }).lambda, 0.07);
  assert.equal(s('full').budget, Infinity);
  assert.equal(s('snapkv', pre, { phase: 'decode' }).phase, 'decode');
});

test('resolving a resolved object gives the same options', () => {
  const o = resolvePressOptions('q-filters', { budget: 100, filters }, dec);
  assert.deepEqual(resolvePressOptions('q-filters', o, dec), o);
  const a = resolvePressOptions('ada-kv', { inner: 'mix-kv', headRedundancy: [0.5, 0.25] }, dec);
  assert.deepEqual(resolvePressOptions('ada-kv', a, dec), a);
  assert.throws(() => resolvePressOptions('snapkv', o, dec), /option "press"/);
});

test('bad options are refused with one line naming the option', () => {
  const cases: [string, Record<string, unknown>, RegExp, typeof dec?][] = [
    ['nope', {}, /unknown press "nope"/],
    ['snapkv', { lambda: 0.5 }, /snapkv: unknown option "lambda"/],
    ['snapkv', { budget: 8 }, /option "budget" \(8\) must be larger than window \(8\)/],
    ['snapkv', { budget: 64 }, /"budget"/, pre],
    ['streaming-llm', { budget: 4 }, /"budget" \(4\) must be larger than sinks \(4\)/],
    ['knorm', { budget: 0 }, /"budget" is out of range/],
    ['knorm', { budget: 10.5 }, /"budget" must be an integer/],
    ['r-kv', { lambda: 1.5 }, /"lambda" is out of range \(\[0, 1\]\), got 1.5/],
    ['r-kv', { threshold: 2 }, /"threshold"/],
    ['r-kv', { window: 0 }, /"window"/],
    ['ada-kv', { alpha: -0.1 }, /"alpha"/],
    ['ada-kv', { inner: 'full' }, /"inner" must name a scored press/],
    ['ada-kv', { inner: 'r-kv', pooling: 'max' }, /unknown option "pooling"/],
    ['snapkv', { kernel: 4 }, /"kernel"/],
    ['snapkv', { pooling: 'mean' }, /"pooling" must be one of avg, max/],
    ['snapkv', { gqa: 'sum' }, /"gqa"/],
    ['snapkv', { phase: 'train' }, /"phase"/],
    ['q-filters', {}, /"filters" is required/],
    ['q-filters', { filters: filters.slice(0, 1) }, /"filters" must have shape \[layers=2\]\[kvHeads=2\]\[headDim=4\]/],
    ['q-filters', { filters: new Float32Array(15) }, /"filters" must hold .* 16 values/],
    ['q-filters', { filters: [[[1, 0, 0, NaN], [0, 1, 0, 0]], filters[1]] }, /"filters" holds a non-finite/],
    ['mix-kv', { headRedundancy: [0.5, 1.5] }, /"headRedundancy" values must lie in \[0, 1\]/],
    ['mix-kv', { headRedundancy: [0.5] }, /"headRedundancy" must have shape/],
    ['h2o', { accumulatedAttention: [[1, 2]] }, /"accumulatedAttention" must hold one array per KV head/],
    ['pyramidkv', { budget: 9, beta: 20 }, /"beta" \(20\)/],
    ['tova', { window: 2 }, /unknown option "window"/],
    ['tova', { forceNewest: 'yes' }, /"forceNewest" must be true or false/],
    ['full', { budget: 10 }, /full: unknown option "budget"/],
  ];
  for (const [press, o, re, c] of cases) {
    assert.throws(
      () => resolvePressOptions(press, o as never, c ?? dec),
      (e: unknown) => e instanceof KvsieveError && re.test(e.message) && !e.message.includes('\n'),
      `${press} ${JSON.stringify(o)} should fail with ${re}`,
    );
  }
});

test('the flat forms of tensors are accepted; a [kvHeads] redundancy table applies to every layer', () => {
  const o = resolvePressOptions('mix-kv', { headRedundancy: [0.5, 0.25] }, dec);
  assert.deepEqual([...o.headRedundancy!], [0.5, 0.25, 0.5, 0.25]);
  const o2 = resolvePressOptions('mix-kv', { headRedundancy: [[0.1, 0.2], [0.3, 0.4]] }, dec);
  assert.deepEqual([...o2.headRedundancy!].map((x) => Math.round(x * 10) / 10), [0.1, 0.2, 0.3, 0.4]);
  const o3 = resolvePressOptions('q-filters', { filters: Float32Array.from(filters.flat(2)), budget: 80 }, dec);
  assert.deepEqual([...o3.filters!], filters.flat(2));
});

test('compressLayer refuses options not resolved for the press, and malformed views', () => {
  const v = toLayerView(toSelectView(randomView(1, { H: 2, Q: 2, d: 4, n: 20, w: 4 })));
  const view = { ...v, numLayers: 2 };
  const o = resolvePressOptions('snapkv', { budget: 10 }, dec);
  assert.throws(() => compressLayer('r-kv', o, view), /r-kv: options: not resolved/);
  assert.throws(() => compressLayer('snapkv', { budget: 10 } as unknown as PressOptions, view), /options: not resolved/);
  assert.throws(() => compressLayer('snapkv', o, { ...view, numQHeads: 3 }), /numQHeads 3/);
  assert.throws(() => compressLayer('snapkv', o, { ...view, w: 0, queries: [] }), /snapkv: queries/);
  assert.equal(compressLayer('snapkv', o, view)[0]!.length, 10);
});

test('PRESSES lists every press with printable options; CLI flags parse by kebab-case name', () => {
  assert.deepEqual(Object.keys(PRESSES).sort(), [...PRESS_NAMES].sort());
  for (const name of PRESS_NAMES) {
    const info = PRESSES[name];
    assert.ok(info.summary.length > 10 && !info.summary.includes('\n'));
    assert.ok(info.options.some((s) => s.name === 'phase'));
    for (const s of info.options) {
      // kebab-case flags; the calibrated files carry their press's name (--q-filters, --triattention-stats); per-slot state is no flag
      const flag = s.name === 'filters' ? 'q-filters' : s.name === 'stats' ? 'triattention-stats' : s.type === 'state' ? null : s.name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
      assert.equal(s.flag, flag);
      assert.ok(s.default.length > 0 && s.range.length > 0 && s.description.length > 0);
    }
  }
  const table = formatPresses();
  for (const name of PRESS_NAMES) assert.ok(table.includes(`${name}: `));
  assert.ok(table.includes('--force-newest') && table.includes('64 (prefill), 8 (decode)'));

  assert.deepEqual(parsePressFlag('snapkv', '--budget', '512'), { name: 'budget', value: 512 });
  assert.deepEqual(parsePressFlag('tova', 'force-newest', 'false'), { name: 'forceNewest', value: false });
  assert.deepEqual(parsePressFlag('r-kv', '--lambda', '0.07'), { name: 'lambda', value: 0.07 });
  assert.deepEqual(parsePressFlag('ada-kv', '--lambda', '0.2', 'r-kv'), { name: 'lambda', value: 0.2 });
  assert.deepEqual(parsePressFlag('snapkv', '--gqa', 'max-logits'), { name: 'gqa', value: 'max-logits' });
  assert.throws(() => parsePressFlag('snapkv', '--budget', '5.5'), /--budget must be an integer/);
  assert.throws(() => parsePressFlag('snapkv', '--lambda', '1'), /snapkv: unknown option --lambda/);
  assert.deepEqual(parsePressFlag('mix-kv', '--head-redundancy', '0.5,0.25'), { name: 'headRedundancy', value: [0.5, 0.25] });
  assert.throws(() => parsePressFlag('mix-kv', '--head-redundancy', 'x.json'), /--head-redundancy must be comma-separated numbers/);
  assert.throws(() => parsePressFlag('h2o', '--accumulated-attention', '1'), /h2o: unknown option --accumulated-attention/);
});
