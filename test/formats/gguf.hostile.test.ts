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

function writeStoriesGguf(file: string, metadata: Record<string, GgufValue> = {}): void {
  const src = openSafetensors(stories260K('hf', 'model.safetensors'));
  try {
    writeGguf(file, { config: storiesHfConfig(), tensors: lazyTensors(src), weightType: 'F32', metadata });
  } finally {
    src.close();
  }
}

test('gguf: a tensor count one short is refused instead of dropping a tensor and shifting the data', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'm.gguf');
    writeStoriesGguf(file);
    openGgufWeights(file).tensors.close();
    const b = readFileSync(file);
    b.writeBigUInt64LE(b.readBigUInt64LE(8) - 1n, 8);
    writeFileSync(file, b);
    assert.throws(() => openGgufWeights(file), oneLineError(/belong to no tensor \(tensor count \d+ too small\?\)/));
  } finally {
    cleanup();
  }
});

test('gguf: impossible RoPE base, RMS epsilon and context length are refused naming the key', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'm.gguf');
    const f32 = (value: number): GgufValue => ({ type: 'FLOAT32', value });
    const cases: [string, GgufValue, RegExp][] = [
      ['llama.rope.freq_base', f32(-1), /metadata key "llama\.rope\.freq_base" must be greater than 1, got -1/],
      ['llama.rope.freq_base', f32(1), /"llama\.rope\.freq_base" must be greater than 1, got 1/],
      ['llama.attention.layer_norm_rms_epsilon', f32(-1), /"llama\.attention\.layer_norm_rms_epsilon" must be greater than 0 and less than 1, got -1/],
      ['llama.attention.layer_norm_rms_epsilon', f32(0), /layer_norm_rms_epsilon" must be greater than 0/],
      ['llama.context_length', { type: 'UINT64', value: 2 ** 40 }, /"llama\.context_length" must be a positive integer up to 2147483647/],
    ];
    for (const [key, value, pattern] of cases) {
      writeStoriesGguf(file, { [key]: value });
      assert.throws(() => openGgufWeights(file), oneLineError(pattern), key);
    }
  } finally {
    cleanup();
  }
});

test('gguf: rope_freqs divisors that fit no Llama 3 scaling are refused, not ignored', () => {
  const c = storiesHfConfig();
  const md = new Map<string, GgufValue>([['general.architecture', { type: 'STRING', value: 'llama' }], ...configMetadata('llama', c)]);
  const facts = (freqs: Float32Array) => ({
    has: (n: string) => n === 'token_embd.weight' || n === 'rope_freqs.weight',
    ne: (n: string) => (n === 'token_embd.weight' ? [c.hiddenSize, c.vocabSize] : undefined),
    ropeFreqs: () => freqs,
  });
  const half = c.headDim / 2;
  assert.equal(configFromGguf('m.gguf', md, facts(new Float32Array(half).fill(1))).ropeScaling, null);
  // all below 1: no scaling fits (the fit takes the largest divisor as the factor), and they are not all 1
  for (const v of [0.5, 0, -1]) {
    assert.throws(() => configFromGguf('m.gguf', md, facts(new Float32Array(half).fill(v))), oneLineError(/tensor "rope_freqs\.weight" does not follow Llama 3 RoPE scaling/));
  }
});
