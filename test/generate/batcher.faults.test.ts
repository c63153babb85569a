import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { InternalError, KvsieveError } from '../../src/core/errors.js';
import { faultyBackend } from '../faulty-backend.js';
import { stories260K } from '../helpers.js';

test('an unexpected exception inside a generation step reaches every caller in the batch as an InternalError; the model goes on', async () => {
  const { backend, arm } = faultyBackend();
  const model = await loadModel(stories260K('stories260K.bin'), { backend });
  try {
    const clean = await model.complete('Once upon a time', { maxTokens: 8 });
    const bug = new TypeError("Cannot read properties of undefined (reading 'keys')");
    arm(() => bug);
    const a = model.generate('Once upon a time', { maxTokens: 8 });
    const b = model.generate('The sun', { maxTokens: 8 });
    for (const stream of [a, b]) {
      await assert.rejects(stream.result, (e: unknown) =>
        e instanceof InternalError && e.cause === bug && e.message === "generation step failed: TypeError: Cannot read properties of undefined (reading 'keys')");
    }
    // The iterator reports the same fault.
    const c = model.generate('Tom', { maxTokens: 4 });
    await assert.rejects((async () => { for await (const _ of c); })(), InternalError);

    // A fault kvsieve already classified passes as it is.
    const own = new InternalError('wasm backend: freeF32 of an array that is already free');
    arm(() => own);
    await assert.rejects(model.generate('Once', { maxTokens: 4 }).result, (e: unknown) => e === own);

    arm(null);
    const again = await model.complete('Once upon a time', { maxTokens: 8 });
    assert.deepEqual(again.generatedIds, clean.generatedIds);
  } finally {
    model.dispose();
  }
});

test("an error thrown by the caller's own onLogits callback reaches the caller unchanged", async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    const mine = new RangeError('my callback gave up');
    const stream = model.generate('Once', {
      maxTokens: 5,
      onLogits: (seq) => {
        if (seq.generated === 2) throw mine;
      },
    });
    await assert.rejects(stream.result, (e: unknown) => e === mine);
    // Running out of forced tokens is the caller's input, named by option.
    await assert.rejects(
      model.complete('Once', { forced: [403, 407], maxTokens: 5, ignoreEos: true }),
      (e: unknown) => e instanceof KvsieveError && e.option === 'forced' && /^forced holds 2 tokens/.test(e.message),
    );
  } finally {
    model.dispose();
  }
});
