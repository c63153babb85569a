// The press table is the one list: a press added to it is listed, parsed from CLI flags and accepted by the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { loadModel } from '../../src/api.js';
import { parseFlags } from '../../src/cli/args.js';
import { compressionFromFlags, pressFlagHelpFor, pressFlagSpecFor } from '../../src/cli/press-flags.js';
import { BUDGET, BUILTIN_PRESSES, definePress, formatPresses, option, pressLabel, window } from '../../src/press/index.js';
import { createOpenAiServer, listen } from '../../src/server/openai.js';
import { stories260K } from '../helpers.js';

/** A press as a built-in one is written: options from the shared builders, a scorer. */
const oldestFirst = definePress({
  name: 'oldest-first',
  summary: 'keep the oldest tokens and the window (a test press)',
  options: [BUDGET, window(4, 4, 0), option.integer({ name: 'stride', description: 'keep every stride-th old token first', default: 1, min: 1 })],
  score(o, _view, _h, m, out) {
    for (let j = 0; j < m; j++) out[j] = (j % o.stride === 0 ? 2 * m : m) - j;
  },
});
const table = [...BUILTIN_PRESSES, oldestFirst];

test('a press added to the table is listed with its options, and parsed from CLI flags', async () => {
  const listing = formatPresses(table);
  assert.match(listing, /^oldest-first: keep the oldest tokens and the window \(a test press\)$/m);
  assert.match(listing, /^ {2}--stride \(integer\) default 1; integer >= 1\. keep every stride-th old token first$/m);
  assert.ok(!formatPresses().includes('oldest-first'), 'the built-in table is unchanged');
  assert.match(pressFlagHelpFor(table), /oldest-first/);
  assert.match(pressFlagHelpFor(table), /--stride N/);

  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const argv = ['--press', 'oldest-first', '--budget', '24', '--buffer', '8', '--stride', '3', 'Once upon a time'];
    const { values, positionals } = parseFlags(argv, pressFlagSpecFor(table), 'generate');
    const settings = compressionFromFlags(values, model.config, table)!;
    assert.deepEqual({ ...settings }, { press: 'oldest-first', budget: 24, stride: 3, buffer: 8 });
    const r = await model.complete(positionals[0]!, { maxTokens: 60, ignoreEos: true, compression: { ...settings, press: oldestFirst } });
    assert.ok(r.compressions > 0 && r.finalKvTokensPerHead <= 24 + 8);
    assert.throws(
      () => compressionFromFlags(parseFlags(['--press', 'oldest-first', '--stride', 'two'], pressFlagSpecFor(table), 'generate').values, model.config, table),
      /oldest-first: --stride must be an integer, got "two"/,
    );
  } finally {
    model.dispose();
  }
  assert.throws(() => parseFlags(['--press', 'r-kv', '--stride', '3'], pressFlagSpecFor(BUILTIN_PRESSES), 'generate'), /Unknown option '--stride'/);
});

test('a press added to the table is accepted by the server, its options validated by name', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  const server = createOpenAiServer({ model, modelName: 'stories', presses: table });
  const { port } = (await listen(server, 0, '127.0.0.1')) as AddressInfo;
  const post = async (kvsieve: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 50, temperature: 0, kvsieve }),
    });
    return { status: res.status, body: (await res.json()) as { choices: { text: string }[]; kvsieve: { compressions: number }; error: { message: string } } };
  };
  try {
    const ok = await post({ press: 'oldest-first', budget: 16, buffer: 8, stride: 2 });
    assert.equal(ok.status, 200);
    assert.ok(ok.body.kvsieve.compressions > 0);
    const lib = await model.complete('Once upon a time', { maxTokens: 50, compression: { press: oldestFirst, budget: 16, buffer: 8, stride: 2 } });
    assert.equal(ok.body.choices[0]!.text, lib.text);
    const bad = await post({ press: 'oldest-first', budget: 16, stride: 0 });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /oldest-first: option "kvsieve.stride" is out of range/);
    const builtin = await post({ press: 'r-kv', budget: 16, buffer: 8 });
    assert.equal(builtin.status, 200, 'built-in presses stay available');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    model.dispose();
  }
});

test('pressLabel names a configuration by its press, marking a prompt rule against the press\'s default', () => {
  assert.equal(pressLabel({ press: 'r-kv' }), 'r-kv');
  assert.equal(pressLabel({ press: 'r-kv', protectPrompt: true }), 'r-kv+pp');
  assert.equal(pressLabel({ press: 'r-kv', protectPrompt: false }), 'r-kv');
  assert.equal(pressLabel({ press: 'random-pp', protectPrompt: true }), 'random-pp');
  assert.equal(pressLabel({ press: 'random-pp', protectPrompt: false }), 'random-pp-pp');
  assert.equal(pressLabel({ press: 'ada-kv', inner: 'snapkv', protectPrompt: true }), 'ada-kv+pp');
});
