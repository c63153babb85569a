import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { tinyModel, TINY_MODELS, stories260K } from '../helpers.js';
import { KvsieveError } from '../../src/core/errors.js';

test('config.json of every fixture normalises with the features its README lists', () => {
  const cfgs = Object.fromEntries(
    TINY_MODELS.map((m) => [m, parseHfConfig(JSON.parse(readFileSync(tinyModel(m, 'config.json'), 'utf8')))]),
  );
  assert.equal(cfgs['llama3-F32']!.ropeScaling?.factor, 8);
  assert.equal(cfgs['qwen2-F32']!.headDim, 16);
  assert.equal(cfgs['qwen2-F32']!.qkvBias, true);
  assert.equal(cfgs['qwen3-BF16']!.headDim, 24);
  assert.equal(cfgs['qwen3-BF16']!.qkNorm, true);
  assert.equal(cfgs['mistral-F16']!.tieWordEmbeddings, false);
  const s = parseHfConfig(JSON.parse(readFileSync(stories260K('hf', 'config.json'), 'utf8')));
  assert.deepEqual([s.numLayers, s.numHeads, s.numKvHeads, s.headDim, s.vocabSize], [5, 8, 4, 8, 512]);
});

test('unknown model_type and a sliding window in force are refused by name', () => {
  const base = JSON.parse(readFileSync(tinyModel('mistral-F16', 'config.json'), 'utf8'));
  assert.throws(() => parseHfConfig({ ...base, model_type: 'gpt2' }, 'x/config.json'), (e: unknown) =>
    e instanceof KvsieveError && /x\/config\.json.*model_type "gpt2"/.test(e.message));
  assert.throws(() => parseHfConfig({ ...base, sliding_window: 4096 }), /sliding_window 4096/);
});
