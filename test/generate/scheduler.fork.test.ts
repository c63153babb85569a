// n samples of one prompt: the prompt is read once, then each sample continues from a copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type GenerateOptions } from '../../src/api.js';
import type { Backend, EmbedArgs } from '../../src/backend/backend.js';
import { ReferenceBackend } from '../../src/backend/reference.js';
import { stories260K } from '../helpers.js';

/** A reference backend that counts the token rows the forward embeds: the tokens it computed. */
function countingBackend(): { backend: Backend; rows: () => number } {
  const inner = new ReferenceBackend();
  let rows = 0;
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'embed') {
        return (a: EmbedArgs) => {
          rows += a.tokens;
          return (v as (a: EmbedArgs) => void).call(target, a);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { backend, rows: () => rows };
}

const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog.';

test('forked samples equal the same samples run from separate prefills, greedy and seeded, with and without compression', async () => {
  const counting = countingBackend();
  const model = await loadModel(stories260K('stories260K.bin'), { backend: counting.backend });
  try {
    const promptTokens = model.encodePrompt(PROMPT).length;
    const cases: [string, GenerateOptions][] = [
      ['greedy, full cache', { maxTokens: 60 }],
      ['seeded, full cache', { maxTokens: 60, temperature: 0.9, topP: 0.95, seed: 5 }],
      ['seeded, r-kv', { maxTokens: 120, temperature: 0.9, seed: 11, ignoreEos: true, compression: { press: 'r-kv', budget: 24, buffer: 8 } }],
      ['seeded, h2o (attention sums copied)', { maxTokens: 120, temperature: 0.8, seed: 3, ignoreEos: true, compression: { press: 'h2o', budget: 24, buffer: 8, window: 4 } }],
      ['seeded, snapkv on the prompt then free growth', { maxTokens: 60, temperature: 0.7, seed: 2, compression: { press: 'snapkv', budget: 16, window: 4, schedule: 'prefill' } }],
    ];
    for (const [label, options] of cases) {
      const n = 4;
      const before = counting.rows();
      const forked = await model.generateBatch(PROMPT, { ...options, n });
      const forkedRows = counting.rows() - before;
      assert.equal(forked.length, n);
      for (let j = 0; j < n; j++) {
        const alone = await model.complete(PROMPT, { ...options, seed: (options.seed ?? 0) + j });
        assert.deepEqual(forked[j]!.generatedIds, alone.generatedIds, `${label}: sample ${j}`);
        assert.equal(forked[j]!.text, alone.text);
        assert.equal(forked[j]!.compressions, alone.compressions, `${label}: sample ${j} compressions`);
      }
      // The prompt was computed once: n samples cost the prompt plus each sample's own tokens.
      const generated = forked.reduce((a, r) => a + r.generatedTokens, 0);
      assert.equal(forkedRows, promptTokens + generated - n, `${label}: token rows computed`);
      if (options.temperature) assert.ok(new Set(forked.map((r) => r.text)).size > 1, `${label}: the samples differ`);
    }
  } finally {
    model.dispose();
  }
});

test('n samples of several prompts come back prompt by prompt; n is checked', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const rs = await model.generateBatch(['Tom had a ball', 'The cat'], { n: 3, maxTokens: 20, temperature: 1, seed: 1 });
    assert.equal(rs.length, 6);
    assert.deepEqual(rs.map((r) => r.promptIds.length), [6, 6, 6, 3, 3, 3].map((_, i) => (i < 3 ? model.encodePrompt('Tom had a ball').length : model.encodePrompt('The cat').length)));
    assert.deepEqual(rs[4]!.generatedIds, (await model.complete('The cat', { maxTokens: 20, temperature: 1, seed: 2 })).generatedIds);
    await assert.rejects(model.generateBatch('x', { n: 0 }), /n must be a whole number from 1 to 1024, got 0/);
  } finally {
    model.dispose();
  }
});
