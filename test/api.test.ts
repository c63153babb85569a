import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/api.js';
import { KvsieveError } from '../src/core/errors.js';
import { openSafetensors, writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../src/formats/safetensors.js';
import { stories260K, tempDir, tinyModel } from './helpers.js';

/** The tensors of a fixture, as float32, ready to be rewritten (optionally edited). */
function fixtureTensors(name: string): TensorToWrite[] {
  const src = openSafetensors(tinyModel(name, 'model.safetensors'));
  try {
    return src.list().map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: src.readF32(t.name) }));
  } finally {
    src.close();
  }
}

const isKvsieveError = (pattern: RegExp) => (e: unknown) => e instanceof KvsieveError && pattern.test(e.message);

test('a sharded F32 rewrite of a fixture loads and gives identical logits', async () => {
  const { dir, cleanup } = tempDir();
  try {
    writeShardedSafetensors(dir, fixtureTensors('qwen2-F32'), 3);
    copyFileSync(tinyModel('qwen2-F32', 'config.json'), join(dir, 'config.json'));
    const ids = [3, 14, 15, 92, 65, 35];
    const a = await loadModel(tinyModel('qwen2-F32'));
    const b = await loadModel(dir);
    assert.deepEqual(b.logits(ids), a.logits(ids));
    a.dispose();
    b.dispose();
  } finally {
    cleanup();
  }
});

test('a tensor whose shape disagrees with config.json is named with its file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const tensors = fixtureTensors('llama3-F32').map((t) =>
      t.name === 'model.layers.1.mlp.up_proj.weight' ? { ...t, shape: [64, 160], data: t.data } : t,
    );
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    copyFileSync(tinyModel('llama3-F32', 'config.json'), join(dir, 'config.json'));
    await assert.rejects(
      loadModel(dir),
      isKvsieveError(/model\.safetensors.*"model\.layers\.1\.mlp\.up_proj\.weight" has shape \[64, 160\].*\[160, 64\]/),
    );
  } finally {
    cleanup();
  }
});

test('a missing tensor is named', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const tensors = fixtureTensors('mistral-F16').filter((t) => t.name !== 'model.layers.2.self_attn.v_proj.weight');
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    copyFileSync(tinyModel('mistral-F16', 'config.json'), join(dir, 'config.json'));
    await assert.rejects(loadModel(dir), isKvsieveError(/model\.layers\.2\.self_attn\.v_proj\.weight/));
  } finally {
    cleanup();
  }
});

test('an unknown model_type and an invalid config.json are refused naming the file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    copyFileSync(tinyModel('qwen2-F32', 'model.safetensors'), join(dir, 'model.safetensors'));
    const config = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'falcon' }));
    await assert.rejects(loadModel(dir), isKvsieveError(/config\.json: unsupported model_type "falcon"/));
    writeFileSync(join(dir, 'config.json'), '{"model_type": "llama",');
    await assert.rejects(loadModel(dir), isKvsieveError(/config\.json: invalid JSON/));
  } finally {
    cleanup();
  }
});

test('a prompt longer than the context is refused before any work', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const ids = Array.from({ length: 600 }, (_, i) => 3 + (i % 400));
    assert.throws(() => model.generate(null, { promptIds: ids }), isKvsieveError(/600 tokens.*context is 512/));
    assert.throws(() => model.generate(null, { promptIds: [1, 9999] }), isKvsieveError(/9999 is outside the vocabulary/));
    // Generation that runs into the context limit stops there with its own reason.
    const r = await model.complete(null, { promptIds: ids.slice(0, 500), maxTokens: 100, ignoreEos: true });
    assert.equal(r.stopReason, 'context');
    assert.equal(r.promptTokens + r.generatedTokens, 513);
  } finally {
    model.dispose();
  }
});

test('a model that cannot be found says where it looked', async () => {
  await assert.rejects(loadModel('no-such-model-xyz'), isKvsieveError(/"no-such-model-xyz" not found \(searched /));
});

/** A KvsieveError naming `option` (the library's own spelling, never a CLI flag) whose message matches `pattern`. */
const namesOption = (option: string, pattern: RegExp) => (e: unknown) =>
  e instanceof KvsieveError && e.option === option && pattern.test(e.message) && !/--|max-tokens|kv-dtype|top-p/.test(e.message) && !e.message.includes('\n');

test('library errors name the library options: loadModel', async () => {
  const bin = stories260K('stories260K.bin');
  await assert.rejects(loadModel(bin, { weights: 'q9' as never }), namesOption('weights', /^weights must be one of f32, f16, bf16, q8_0, q4_0, stored, got "q9"$/));
  await assert.rejects(loadModel(bin, { backend: 'gpu' as never }), namesOption('backend', /^backend must be .*, got "gpu"$/));
  await assert.rejects(loadModel(bin, { backend: 'reference', weights: 'q8_0' }), namesOption('weights', /^weights q8_0 needs the wasm backend/));
  await assert.rejects(loadModel(bin, { threads: 0 }), namesOption('threads', /^threads must be a whole number from 1 to 256, got 0$/));
});

test('library errors name the library options: generate, sampling and compression', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    const cases: [object, string, RegExp][] = [
      [{ maxTokens: -1 }, 'maxTokens', /^maxTokens must be a whole number >= 0, got -1$/],
      [{ maxTokens: 2.5 }, 'maxTokens', /^maxTokens must be/],
      [{ kvDtype: 'int4' }, 'kvDtype', /^kvDtype must be one of f32, f16, int8, got "int4"$/],
      [{ temperature: -1 }, 'temperature', /^temperature must be a number >= 0/],
      [{ topP: 0 }, 'topP', /^topP must be a number in \(0, 1\], got 0$/],
      [{ topK: 1.5 }, 'topK', /^topK must be a whole number/],
      [{ minP: 2 }, 'minP', /^minP must be a number in \[0, 1\]/],
      [{ prefillBlock: 0 }, 'prefillBlock', /^prefillBlock must be/],
      [{ compression: { press: 'r-kv', budget: 4 } }, 'compression.budget', /^r-kv: option "compression\.budget" \(4\) must be larger than window \(8\)$/],
      [{ compression: { press: 'magic' } }, 'compression.press', /^compression\.press: unknown press "magic"/],
      [{ compression: { press: 'r-kv', budget: 64, schedule: 'sometimes' } }, 'compression.schedule', /option "compression\.schedule" must be one of decode, prefill, both/],
      [{ compression: { press: 'r-kv', budget: 64, lambda: 3 } }, 'compression.lambda', /option "compression\.lambda" is out of range/],
      [{ compression: { press: 'q-filters', budget: 64 } }, 'compression.filters', /^q-filters: option "compression\.filters" is required/],
      [{ compression: { press: 'r-kv', budget: 64, sinks: 2 } }, 'compression.sinks', /unknown option "compression\.sinks"/],
    ];
    for (const [options, option, pattern] of cases) {
      assert.throws(() => model.generate('Once', options), namesOption(option, pattern), JSON.stringify(options));
    }
    assert.throws(() => model.generate(null, { promptIds: [1, 9999] }), namesOption('prompt', /9999 is outside the vocabulary/));
    // The model is still usable after refused requests.
    assert.equal((await model.complete('Once', { maxTokens: 3 })).generatedTokens, 3);
  } finally {
    model.dispose();
  }
});

test('a chat message array where a prompt goes is refused naming the prompt option', async () => {
  const model = await loadModel(stories260K(), { backend: 'reference' });
  try {
    const messages = [{ role: 'user', content: 'Once upon a time' }];
    const refused = (e: unknown) => {
      assert.ok(e instanceof KvsieveError);
      assert.equal(e.option, 'prompt');
      assert.match(e.message, /^prompt must be a string or token ids, not chat messages \(\{ role, content \}\): pass the user message as the prompt with \{ chat: true \}/);
      return true;
    };
    assert.throws(() => model.generate(messages as unknown as string), refused);
    await assert.rejects(model.generateBatch(messages as unknown as string[]), refused);
    await assert.rejects(model.generateBatch([messages] as unknown as number[][]), refused);
    assert.throws(() => model.generate({ text: 'x' } as unknown as string), /prompt must be a string or an array of token ids, got object/);
  } finally {
    model.dispose();
  }
});
