import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { loadTokenizerFor } from '../../src/tokenizer/index.js';
import { stories260K, tempDir } from '../helpers.js';

test('loadTokenizerFor: llama2c from a file or a directory (tok<vocab>.bin / tokenizer.bin)', async () => {
  const fromFile = await loadTokenizerFor(stories260K('tok512.bin'), 'llama2c', 512);
  assert.equal(fromFile.kind, 'llama2c');
  assert.deepEqual(fromFile.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  const fromDir = await loadTokenizerFor(stories260K(), 'llama2c', 512);
  assert.deepEqual(fromDir.encode('Hello world'), [1, 346, 306, 414, 263, 304, 341]);
  const { dir, cleanup } = tempDir();
  try {
    copyFileSync(stories260K('tok512.bin'), join(dir, 'tokenizer.bin'));
    const t = await loadTokenizerFor(dir, 'llama2c', 512);
    assert.equal(t.vocabSize, 512);
    await assert.rejects(
      loadTokenizerFor(dir, 'hf', 512),
      (e: unknown) => e instanceof KvsieveError && e.message.includes(join(dir, 'tokenizer.json')),
    );
  } finally {
    cleanup();
  }
  await assert.rejects(
    loadTokenizerFor(stories260K('hf'), 'llama2c', 512),
    (e: unknown) => e instanceof KvsieveError && e.message.includes('tok512.bin'),
  );
});

test('loadTokenizerFor: hf from the model directory or its tokenizer.json', async () => {
  for (const p of [stories260K('hf'), stories260K('hf', 'tokenizer.json')]) {
    const t = await loadTokenizerFor(p, 'hf', 512);
    assert.equal(t.kind, 'hf');
    assert.deepEqual(t.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  }
  await assert.rejects(
    loadTokenizerFor(stories260K('hf', 'config.json'), 'hf', 512),
    (e: unknown) => e instanceof KvsieveError && e.message.includes('config.json'),
  );
  await assert.rejects(
    loadTokenizerFor('/nonexistent/kvsieve-model', 'hf', 512),
    (e: unknown) => e instanceof KvsieveError && e.message.includes('/nonexistent/kvsieve-model'),
  );
});
