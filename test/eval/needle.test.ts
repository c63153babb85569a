import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { buildNeedlePrompt, DEFAULT_NEEDLE } from '../../src/eval/needle.js';
import { stories260K } from '../helpers.js';

test('needle prompts place the needle at the asked depth', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const tok = model.tokenizer!;
    for (const depth of [0, 0.5, 1]) {
      const ids = buildNeedlePrompt(model, DEFAULT_NEEDLE, 200, depth);
      assert.ok(ids.length <= 200 && ids.length > 150, `length ${ids.length}`);
      const text = tok.decode(ids);
      const at = text.indexOf(DEFAULT_NEEDLE.needle) / text.indexOf(DEFAULT_NEEDLE.question);
      assert.ok(Math.abs(at - depth) < 0.1, `depth ${depth}: needle at ${at.toFixed(2)}`);
      assert.ok(text.endsWith(DEFAULT_NEEDLE.question));
    }
  } finally {
    model.dispose();
  }
});
