import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeValue, jsonErrorReason, oneLine, quoted } from '../../src/core/describe.js';

test('describeValue: any size or depth gives a short line', () => {
  const deep = JSON.parse('['.repeat(1_000_000) + ']'.repeat(1_000_000)) as unknown;
  assert.throws(() => JSON.stringify(deep), RangeError); // what describeValue replaces
  const cases: [unknown, string][] = [
    [deep, '[[[… 1 item]]]'],
    [new Array(100_000).fill(1), '[1, 1, 1, 1, 1, 1, 1, 1, … 100000 items]'],
    [[2, 3], '[2, 3]'],
    [{ dtype: 'F32' }, '{"dtype": "F32"}'],
    [-1, '-1'],
    [NaN, 'NaN'],
    [null, 'null'],
    [undefined, 'nothing'],
    [true, 'true'],
  ];
  for (const [v, want] of cases) assert.equal(describeValue(v), want);
  const many = describeValue(Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`key${i}`, 'x'.repeat(1000)])));
  assert.ok(many.length < 100 && many.endsWith('50000 keys}'), many);
  for (const v of [deep, 'x'.repeat(1_000_000), '\u0000'.repeat(10_000), [['a'.repeat(500)]]]) {
    const d = describeValue(v);
    assert.ok(d.length <= 90 && !d.includes('\n'), `${d.length}: ${d}`);
  }
});

test('quoted: long and binary names are cut, with their length', () => {
  assert.equal(quoted('model.norm.weight'), '"model.norm.weight"');
  const long = quoted('x'.repeat(100_000));
  assert.ok(long.length < 120 && long.endsWith('(100000 characters)'), long);
  // control characters take six characters each once escaped: the quoted form is what is bounded
  const binary = quoted('\u0001'.repeat(1000));
  assert.ok(binary.length < 120 && binary.endsWith('(1000 characters)'), binary);
});

test('oneLine and jsonErrorReason fold and shorten messages, dropping the excerpt V8 quotes', () => {
  assert.equal(oneLine('a\n  b\r\n c'), 'a b c');
  assert.equal(oneLine('x'.repeat(500), 20), `${'x'.repeat(19)}…`);
  let reason = '';
  try {
    JSON.parse('{"a":\n}');
  } catch (e) {
    reason = jsonErrorReason(e);
  }
  assert.equal(reason, "Unexpected token '}'");
  try {
    JSON.parse('[1, 2');
  } catch (e) {
    reason = jsonErrorReason(e);
  }
  assert.match(reason, /^Expected ',' or '\]' after array element in JSON at position 5/);
});
