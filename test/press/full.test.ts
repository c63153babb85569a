import { test } from 'node:test';
import assert from 'node:assert/strict';
import { select } from '../../src/press/index.js';
import { randomView, toSelectView } from './naive.js';

test('full keeps everything', () => {
  const v = randomView(1, { H: 2, Q: 2, d: 4, n: 37, w: 0 });
  assert.deepEqual(select('full', {}, toSelectView(v)), [[...Array(37).keys()], [...Array(37).keys()]]);
});
