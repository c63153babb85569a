import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadModel, loadModelFromFiles } from '../../src/api.js';
import { modelFormatOf } from '../../src/api/files.js';
import { oneLineError, stories260K } from '../helpers.js';

const bytes = (...parts: string[]) => new Uint8Array(readFileSync(stories260K(...parts)));
const greedy = { maxTokens: 40, temperature: 0 } as const;

test('stories260K from its llama2.c bytes generates what loadModel(path) does', async () => {
  const fromPath = await loadModel(stories260K('stories260K.bin'), { threads: 1 });
  const fromBytes = await loadModelFromFiles({ 'stories260K.bin': bytes('stories260K.bin'), 'tok512.bin': bytes('tok512.bin') }, { threads: 1 });
  try {
    const a = await fromPath.complete('Once upon a time', { ...greedy, compression: { press: 'streaming-llm', budget: 16, buffer: 8 } });
    const b = await fromBytes.complete('Once upon a time', { ...greedy, compression: { press: 'streaming-llm', budget: 16, buffer: 8 } });
    assert.equal(b.text, a.text);
    assert.deepEqual(b.generatedIds, a.generatedIds);
    assert.equal(fromBytes.info().format, 'llama2c');
    assert.equal(fromBytes.info().path, 'stories260K.bin');
  } finally {
    fromPath.dispose();
    fromBytes.dispose();
  }
});

test("a Hugging Face folder's files from bytes give the folder's logits and tokens", async () => {
  const files = Object.fromEntries(readdirSync(stories260K('hf')).map((n) => [n, bytes('hf', n)]));
  const fromDir = await loadModel(stories260K('hf'), { backend: 'reference' });
  const fromBytes = await loadModelFromFiles(files, { backend: 'reference' });
  try {
    assert.deepEqual(fromBytes.logits([1, 403, 407]), fromDir.logits([1, 403, 407]));
    assert.deepEqual(fromBytes.encodePrompt('Once upon a time'), fromDir.encodePrompt('Once upon a time'));
    assert.equal(fromBytes.info().format, 'hf');
  } finally {
    fromDir.dispose();
    fromBytes.dispose();
  }
});

test('bad files are one-line errors naming the file or what is missing', async () => {
  assert.throws(() => modelFormatOf({ 'notes.txt': new Uint8Array(1) }), oneLineError(/model files: expected config\.json .* got "notes\.txt"/));
  await assert.rejects(loadModelFromFiles({ 'config.json': new TextEncoder().encode('{') }, { backend: 'reference' }), oneLineError(/no model\.safetensors/));
  await assert.rejects(
    loadModelFromFiles({ 'config.json': new TextEncoder().encode('{'), 'model.safetensors': new Uint8Array(8) }, { backend: 'reference' }),
    oneLineError(/^config\.json: invalid JSON/),
  );
  const cut = bytes('stories260K.bin').subarray(0, 1000);
  await assert.rejects(loadModelFromFiles({ 'stories260K.bin': cut }, { backend: 'reference' }), oneLineError(/^stories260K\.bin: truncated/));
  await assert.rejects(
    loadModelFromFiles({ 'config.json': bytes('hf', 'config.json'), 'model.safetensors': bytes('hf', 'model.safetensors').subarray(0, 500) }, { backend: 'reference' }),
    oneLineError(/^model\.safetensors: /),
  );
});
