import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { stories260K, tinyModel } from '../helpers.js';

for (const weights of ['q8_0', 'f32'] as const) {
test(`three sequences decoded together in one batch give exactly the tokens each gives alone (${weights} weights)`, async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights });
  try {
    const prompts = ['Once upon a time', 'Tom and his dog', 'The sun'];
    // Different lengths and one sampled sequence: each keeps its own cache, positions and sampler.
    const options = [
      { maxTokens: 40 },
      { maxTokens: 25 },
      { maxTokens: 33, temperature: 0.8, topP: 0.9, seed: 7 },
    ];
    const alone = [];
    for (let i = 0; i < prompts.length; i++) alone.push(await model.complete(prompts[i]!, options[i]!));
    const ids = prompts.map((p) => model.encodePrompt(p));
    const together = await model.generateBatch(ids, { maxTokens: 40 });
    assert.deepEqual(together[0]!.generatedIds, alone[0]!.generatedIds);
    assert.deepEqual(together[0]!.text, alone[0]!.text);
    // Per-sequence options: run the batch with each sequence's own options through the scheduler.
    const mixed = await model.generateBatch(ids, options);
    for (let i = 0; i < prompts.length; i++) {
      assert.deepEqual(mixed[i]!.generatedIds, alone[i]!.generatedIds, `sequence ${i}`);
      assert.equal(mixed[i]!.text, alone[i]!.text);
    }
  } finally {
    model.dispose();
  }
});
}

test('batched decoding on a GQA model with biases matches single-sequence decoding', async () => {
  const model = await loadModel(tinyModel('qwen2-F32'));
  try {
    const prompts = [[5, 9, 200, 17], [3], [44, 45, 46, 47, 48, 49, 50, 51, 52]];
    const alone = [];
    for (const p of prompts) alone.push((await model.complete(null, { promptIds: p, maxTokens: 12, ignoreEos: true })).generatedIds);
    const together = await model.generateBatch(prompts, { maxTokens: 12, ignoreEos: true });
    assert.deepEqual(together.map((r) => r.generatedIds), alone);
  } finally {
    model.dispose();
  }
});

test('twelve sequences of different lengths in one batch (f32 weights): each gives exactly its tokens alone', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    const words = ['Once upon a time', 'Tom', 'The little cat saw', 'Lily', 'A big red', 'One day', 'The sun', 'Sam had a', 'Mom', 'The dog ran', 'Ben and Sue', 'It was'];
    const options = words.map((_, i) => ({ maxTokens: 20 + 7 * i, ignoreEos: true }));
    const together = await model.generateBatch(words, options);
    assert.ok(Math.max(...together.map((r) => r.peakBatchSize)) >= 8, 'they ran together');
    for (let i = 0; i < words.length; i++) {
      assert.deepEqual(together[i]!.generatedIds, (await model.complete(words[i]!, options[i]!)).generatedIds, `sequence ${i}`);
    }
  } finally {
    model.dispose();
  }
});

test('a batch that shrinks from 18 sequences to 1 gives each exactly its tokens alone, for every wasm weight type', async () => {
  // Decode steps stack one row per sequence: as sequences finish, the products run on every token
  // count from 18 down to 1 (the few-token tiles), and the first step's prompts (more than 32 rows)
  // on the quantised octets.
  const prompts = Array.from({ length: 18 }, (_, i) => Array.from({ length: 1 + ((i * 5) % 7) }, (_, j) => 3 + ((i * 31 + j * 17) % 290)));
  const options = prompts.map((_, i) => ({ maxTokens: 2 + i, ignoreEos: true }));
  for (const weights of ['q8_0', 'q4_0', 'f16', 'bf16', 'f32'] as const) {
    const model = await loadModel(tinyModel('qwen2-F32'), { backend: 'wasm', weights, threads: 2 });
    try {
      const alone = [];
      for (let i = 0; i < prompts.length; i++) alone.push((await model.complete(null, { promptIds: prompts[i]!, ...options[i]! })).generatedIds);
      const together = await model.generateBatch(prompts, options);
      assert.deepEqual(together.map((r) => r.generatedIds), alone, weights);
      assert.equal(together[17]!.peakBatchSize, 18);
    } finally {
      model.dispose();
    }
  }
});
