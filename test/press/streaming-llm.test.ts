import { test } from 'node:test';
import assert from 'node:assert/strict';
import { select } from '../../src/press/index.js';
import { randomView, toSelectView } from './naive.js';

test('streaming-llm keeps the sinks and the recent window', () => {
  const v = randomView(2, { H: 2, Q: 2, d: 4, n: 20, w: 0 });
  const want = [0, 1, 2, 3, 16, 17, 18, 19];
  assert.deepEqual(select('streaming-llm', { budget: 8 }, toSelectView(v)), [want, want]);
  assert.deepEqual(select('streaming-llm', { budget: 5, sinks: 1 }, toSelectView(v))[0], [0, 16, 17, 18, 19]);
  assert.deepEqual(select('streaming-llm', { budget: 3, sinks: 0 }, toSelectView(v))[1], [17, 18, 19]);
  assert.deepEqual(select('streaming-llm', { budget: 20 }, toSelectView(v))[0], [...Array(20).keys()]);
});
