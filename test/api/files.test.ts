import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadModel, loadModelFromFiles } from '../../src/api.js';
import { modelFormatOf } from '../../src/api/files.js';
import { oneLineError, stories260K, tempDir } from '../helpers.js';
import { writeTinyQ4KM } from '../formats/kquant-model.js';
import { loadBrowserModel } from '../../src/browser/engine.js';
import { kernelWasmPath } from '../../src/backend/wasm/node.js';

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

test('a GGUF file\'s bytes (Q4_K_M: K-quants kept as stored) give the file\'s logits, tokens and held types, in Node and through the browser entry; bad GGUF bytes are one-line errors naming the file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = writeTinyQ4KM(dir);
    const gguf = new Uint8Array(readFileSync(file));
    const fromPath = await loadModel(file, { threads: 1 });
    const fromBytes = await loadModelFromFiles({ 'tiny-Q4_K_M.gguf': gguf }, { threads: 1 });
    // the browser's entry, on the kernel build Node runs
    const inBrowser = await loadBrowserModel({ 'tiny-Q4_K_M.gguf': gguf }, { wasm: new Uint8Array(readFileSync(kernelWasmPath())), threads: 1 });
    try {
      const prompt = [1, 17, 300, 5, 77, 401, 2, 90];
      const want = fromPath.logits(prompt);
      for (const m of [fromBytes, inBrowser]) {
        assert.equal(m.info().format, 'gguf');
        assert.equal(m.info().backend, fromPath.info().backend); // 'wasm (q4_k/q6_k weights, 1 thread)'
        assert.equal(m.info().weightBytes, fromPath.info().weightBytes);
        assert.deepEqual(m.logits(prompt), want);
        assert.deepEqual(m.encodePrompt('a b c'), fromPath.encodePrompt('a b c'));
      }
      assert.match(fromPath.info().backend, /q4_k\/q6_k weights/);
    } finally {
      fromPath.dispose();
      fromBytes.dispose();
      inBrowser.dispose();
    }
    await assert.rejects(loadModelFromFiles({ 'tiny-Q4_K_M.gguf': gguf.subarray(0, 5000) }, { threads: 1 }), oneLineError(/^tiny-Q4_K_M\.gguf: /));
    assert.throws(() => modelFormatOf({ 'a.gguf': gguf, 'b.gguf': gguf }), oneLineError(/one GGUF file at a time, got "a\.gguf", "b\.gguf"/));
  } finally {
    cleanup();
  }
});
