// The forward's scratch: an allocation that fails leaves the scratch as it was, so the next step works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import type { Backend } from '../../src/backend/backend.js';
import { ReferenceBackend } from '../../src/backend/reference.js';
import { stories260K } from '../helpers.js';

test('a scratch allocation that fails once fails that step alone: the same prompt then gives the right tokens', async () => {
  // stories260K: hidden size 64, so a 32-token block's residual stream is 2048 floats (no KV store has that size here).
  let failSize: number | null = null;
  const inner = new ReferenceBackend();
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'allocF32') {
        return (n: number) => {
          if (n === failSize) {
            failSize = null;
            throw new RangeError(`Array buffer allocation failed (${n} floats)`);
          }
          return target.allocF32(n);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Backend;
  const model = await loadModel(stories260K('stories260K.bin'), { backend });
  const fresh = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    const prompt = 'Once upon a time, there was a little girl named Lily. She loved to play outside with her big red ball and her dog Max.';
    const options = { maxTokens: 40, prefillBlock: 32 };
    assert.ok(model.encodePrompt(prompt).length > 32);
    failSize = 32 * 64;
    await assert.rejects(model.complete(prompt, options), /allocation failed/);
    assert.equal(failSize, null, 'the failure was injected');
    const again = await model.complete(prompt, options);
    assert.deepEqual(again.generatedIds, (await fresh.complete(prompt, options)).generatedIds);
  } finally {
    model.dispose();
    fresh.dispose();
  }
});
