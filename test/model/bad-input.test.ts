import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { openSafetensors, writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { stories260K, tempDir, tinyModel } from '../helpers.js';

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
