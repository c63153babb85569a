import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvsieveError } from '../../src/core/errors.js';
import { numberFlag, parseFlags } from '../../src/cli/args.js';
import { kvsieve } from '../helpers.js';

const options = {
  budget: { type: 'string', short: 'b' },
  lambda: { type: 'string' },
  system: { type: 'string' },
  json: { type: 'boolean' },
} as const;

test('a negative number after a flag that takes a value is that value, so the range check names it', () => {
  const cases: [string[], 'budget' | 'lambda', string][] = [
    [['--budget', '-1'], 'budget', '-1'],
    [['-b', '-2.5'], 'budget', '-2.5'],
    [['--budget=-3'], 'budget', '-3'],
    [['--lambda', '-.5'], 'lambda', '-.5'],
    [['--lambda', '-1e-3', 'prompt'], 'lambda', '-1e-3'],
    [['--lambda', '-inf'], 'lambda', '-inf'],
  ];
  for (const [args, flag, value] of cases) assert.equal(parseFlags(args, options, 'generate').values[flag], value, args.join(' '));
  assert.deepEqual(parseFlags(['--json', 'a', '--', '--budget', '-1'], options, 'generate').positionals, ['a', '--budget', '-1']);
  const { values } = parseFlags(['--budget', '-1'], options, 'generate');
  assert.throws(() => numberFlag('budget', values.budget, { integer: true, min: 1 }), (e: unknown) => e instanceof KvsieveError && e.message === '--budget must be a whole number in [1, inf], got "-1"');
});

test('a dash-led value that is not a number stays an error: one line, the hint included', () => {
  assert.throws(
    () => parseFlags(['--system', '-be brief'], options, 'generate'),
    (e: unknown) =>
      e instanceof KvsieveError &&
      !e.message.includes('\n') &&
      /^generate: Option '--system' argument is ambiguous\. .*use '--system=-XYZ'\. \(see kvsieve generate --help\)$/.test(e.message),
  );
});

test('kvsieve generate --budget -1 reports the range, not an ambiguous argument', () => {
  const r = kvsieve(['generate', '--press', 'r-kv', '--budget', '-1', 'Once']);
  assert.equal(r.code, 1);
  assert.match(r.stderr.trim(), /^kvsieve: .*budget.*-1/);
  assert.doesNotMatch(r.stderr, /ambiguous/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});
