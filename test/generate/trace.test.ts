import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import type { KvTraceEvent } from '../../src/generate/sequence.js';
import { stories260K, streamingLlmHeld } from '../helpers.js';

test('onTrace: per step, every layer and KV head holds exactly the sinks and the recent window of streaming-llm', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { threads: 1 });
  try {
    const events: KvTraceEvent[] = [];
    const compression = { press: 'streaming-llm' as const, budget: 10, buffer: 4, sinks: 3 };
    const r = await model.complete('Once upon a time', { maxTokens: 30, temperature: 0, ignoreEos: true, compression, onTrace: (e) => events.push(e) });
    assert.equal(events.length, 30);
    const expected = streamingLlmHeld(r.promptTokens, 30, 10, 4, 3);
    const c = model.config;
    for (const [i, e] of events.entries()) {
      assert.equal(e.step, i + 1);
      assert.equal(e.token, r.generatedIds[i]);
      assert.equal(e.processed, r.promptTokens + i);
      assert.equal(e.positions.length, c.numLayers);
      for (const layer of e.positions) {
        assert.equal(layer.length, c.numKvHeads);
        for (const head of layer) assert.deepEqual(head, expected[i], `step ${e.step}`);
      }
      const slot = 8 * c.headDim; // f32 K and V
      assert.equal(e.kvBytes, expected[i]!.length * c.numLayers * c.numKvHeads * slot);
      assert.equal(e.fullKvBytes, e.processed * c.numLayers * c.numKvHeads * slot);
    }
    assert.ok(events.some((e) => e.compressions > 0) && events.at(-1)!.kvBytes < events.at(-1)!.fullKvBytes);
    assert.equal(events.at(-1)!.peakKvBytes, r.peakKvBytes);
    assert.equal(r.peakKvBytes, 14 * c.numLayers * c.numKvHeads * 8 * c.headDim); // budget + buffer slots at most
  } finally {
    model.dispose();
  }
});

test('onTrace: an error thrown by the callback reaches the caller as it is', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    const mine = new Error('mine');
    await assert.rejects(
      model.complete('Once', {
        maxTokens: 3,
        onTrace: () => {
          throw mine;
        },
      }),
      (e) => e === mine,
    );
  } finally {
    model.dispose();
  }
});
