import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { kvBytesPerSequence, runThroughput } from '../../src/eval/throughput.js';
import { stories260K } from '../helpers.js';

test('throughput: per-sequence KV bytes by the press layer budgets; the pool runs what fits the KV memory', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const settings = { press: 'r-kv', budget: 32, buffer: 16 };
    const perSeq = kvBytesPerSequence(model, settings, 5, 100);
    assert.equal(perSeq, 5 * (32 + 16) * 4 * 8 * 2 * 4);
    const fullPerSeq = kvBytesPerSequence(model, null, 5, 100);
    assert.equal(fullPerSeq, 105 * 5 * 4 * 8 * 2 * 4);
    // Under a pool that holds three full-cache sequences, six requests: the full cache runs three at a
    // time (its blocks of 128 tokens: 105 tokens fit one), r-kv all six at once.
    const limit = 3 * 128 * 5 * 4 * 8 * 2 * 4;
    const pooled = await loadModel(stories260K('stories260K.bin'), { kvMemory: limit });
    try {
      const run = (s: typeof settings | null) => runThroughput(pooled, { settings: s, genLen: 100, requests: 6, promptIds: [1, 403, 407, 261, 378], modelLabel: 's' });
      const full = await run(null);
      const rkv = await run(settings);
      assert.equal(full.batch, 3);
      assert.equal(rkv.batch, 6);
      for (const r of [full, rkv]) {
        assert.equal(r.requests, 6);
        assert.equal(r.kvMemoryBytes, limit);
        assert.ok(r.peakKvBytes <= limit && r.tokensPerSecond > 0 && r.seconds > 0);
      }
    } finally {
      pooled.dispose();
    }
  } finally {
    model.dispose();
  }
});
