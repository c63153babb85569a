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

test('unknown model_type is refused by name', () => {
  const base = JSON.parse(readFileSync(tinyModel('mistral-F16', 'config.json'), 'utf8'));
  assert.throws(() => parseHfConfig({ ...base, model_type: 'gpt2' }, 'x/config.json'), (e: unknown) =>
    e instanceof KvsieveError && /x\/config\.json.*model_type "gpt2"/.test(e.message));
});

test('sliding windows: which layers slide, as transformers decides it', () => {
  const mistral = JSON.parse(readFileSync(tinyModel('mistral-F16', 'config.json'), 'utf8'));
  const qwen2 = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'config.json'), 'utf8'));
  const slides = (json: Record<string, unknown>) => {
    const c = parseHfConfig(json);
    return c.slidingWindow === undefined ? null : { window: c.slidingWindow, layers: c.slidingLayers };
  };
  // Mistral: every layer when the window is set; none when it is null or covers the context (4096).
  assert.deepEqual(slides({ ...mistral, sliding_window: 4 }), { window: 4, layers: [true, true, true] });
  assert.equal(slides(mistral), null);
  assert.equal(slides({ ...mistral, sliding_window: 4096 }), null);
  // Qwen2: only with use_sliding_window, from max_window_layers on (Qwen2.5's published configs set
  // use_sliding_window false, so they keep full attention).
  assert.equal(slides({ ...qwen2, sliding_window: 4 }), null);
  assert.deepEqual(slides({ ...qwen2, use_sliding_window: true, sliding_window: 4, max_window_layers: 2 }), { window: 4, layers: [false, false, true] });
  assert.equal(slides({ ...qwen2, use_sliding_window: true, sliding_window: 4, max_window_layers: 3 }), null);
  // An explicit list wins, whatever the architecture.
  const listed = { ...qwen2, sliding_window: 4, layer_types: ['full_attention', 'sliding_attention', 'full_attention'] };
  assert.deepEqual(slides(listed), { window: 4, layers: [false, true, false] });
  // Llama without a list never slides.
  const llama = JSON.parse(readFileSync(tinyModel('llama3-F32', 'config.json'), 'utf8'));
  assert.equal(slides({ ...llama, sliding_window: 4 }), null);
});
