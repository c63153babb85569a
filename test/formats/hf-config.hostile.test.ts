import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { openGgufWeights, writeGguf, type GgufValue } from '../../src/formats/gguf.js';
import { configFromGguf, configMetadata } from '../../src/formats/gguf-config.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { openSafetensors, writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { lazyTensors, oneLineError, stories260K, storiesHfConfig, tempDir, tinyModel } from '../helpers.js';

// Bad input found by fuzzing (scripts/fuzz): each case here was a crash, an unclear error or a file that
// loaded wrongly before the fix it tests.

test('config.json: impossible values are refused naming the field', () => {
  const base = JSON.parse(readFileSync(tinyModel('llama3-F32', 'config.json'), 'utf8')) as Record<string, unknown>;
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ rope_theta: -1 }, /field "rope_theta" must be greater than 1, got -1/],
    [{ rope_theta: 0.5 }, /"rope_theta" must be greater than 1/],
    [{ rms_norm_eps: -1 }, /field "rms_norm_eps" must be greater than 0 and less than 1, got -1/],
    [{ rms_norm_eps: 0 }, /"rms_norm_eps" must be greater than 0/],
    [{ max_position_embeddings: 1e300 }, /"max_position_embeddings" must be a positive integer up to 2147483647, got 1e\+300/],
    [{ head_dim: 15 }, /head size 15 must be even/],
    [{ eos_token_id: 300 }, /"eos_token_id" must be token ids below vocab_size 300, got 300/],
    [{ eos_token_id: [2, -1] }, /"eos_token_id" must be token ids below vocab_size 300, got \[2, -1\]/],
    [{ bos_token_id: 1.5 }, /"bos_token_id" must be token ids/],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 64 } }, /rope_scaling: field "high_freq_factor" must be greater than 4, got 1/],
    [{ rope_scaling: [1, 2] }, /"rope_scaling" must be an object or null, got \[1, 2\]/],
    [{ model_type: 'mistral', sliding_window: [4096] }, /"sliding_window" must be a number, got \[4096\]/],
    [{ model_type: 'mistral', sliding_window: 0.5 }, /"sliding_window" must be a positive integer up to 2147483647, got 0.5/],
    [{ model_type: 'mistral', sliding_window: 8, layer_types: ['sliding_attention'] }, /"layer_types" must list "sliding_attention" or "full_attention" for each of the 3 layers, got \["sliding_attention"\]/],
    [{ layer_types: ['sliding_attention', 'full_attention', 'full_attention'] }, /"layer_types" lists sliding layers but "sliding_window" is not set/],
    [{ hidden_size: new Array(100_000).fill(1) }, /"hidden_size" must be a number, got \[1, 1, .*100000 items\]/],
    [{ model_type: 'x'.repeat(10_000) }, /unsupported model_type "x+"… \(10000 characters\)/],
  ];
  for (const [edit, pattern] of cases) assert.throws(() => parseHfConfig({ ...base, ...edit }, 'config.json'), oneLineError(pattern), JSON.stringify(edit).slice(0, 80));
  // the real values still parse
  assert.equal(parseHfConfig(base).ropeTheta, 500000);
});

test('config.json and tokenizer.json that are not valid JSON give one line naming the file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      copyFileSync(stories260K('hf', f), join(dir, f));
    }
    writeFileSync(join(dir, 'config.json'), '{"model_type": "llama",\n\n "x": }');
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/config\.json: invalid JSON \(Unexpected token '}'\)$/));
    copyFileSync(stories260K('hf', 'config.json'), join(dir, 'config.json'));
    writeFileSync(join(dir, 'tokenizer.json'), '{"model":\n[1,\n');
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/tokenizer\.json: invalid JSON \(.*\)$/));
  } finally {
    cleanup();
  }
});
