// Bad input found by fuzzing (scripts/fuzz): each case here was a crash, an unclear error or a file that
// loaded wrongly before the fix it tests.
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
import { lazyTensors, storiesHfConfig, stories260K, tempDir, tinyModel } from '../helpers.js';

/** A one-line KvsieveError under 300 characters whose message matches `pattern`. */
function clear(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `expected a KvsieveError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n') && e.message.length < 300, `one short line: ${e.message.length} characters`);
    assert.match(e.message, pattern);
    return true;
  };
}

/** The bytes of a safetensors file split into header length, header text and data. */
function split(file: string): { n: number; header: string; data: Buffer } {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { n, header: b.subarray(8, 8 + n).toString('utf8'), data: b.subarray(8 + n) };
}

function join8(header: string | Buffer, data: Buffer, length?: number): Buffer {
  const h = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(length ?? h.length));
  return Buffer.concat([len, h, data]);
}

test('safetensors: a header length 1 to 7 bytes short (the cut in the padding) is refused, not read shifted', () => {
  const { dir, cleanup } = tempDir();
  try {
    // a header written with 7 bytes of padding (the name length chosen for it), and the real files
    const padded = join(dir, 'padded.safetensors');
    for (let i = 0; i < 8; i++) {
      writeSafetensors(padded, [{ name: `w${'x'.repeat(i)}`, dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) }]);
      if (split(padded).header.endsWith(' '.repeat(7))) break;
    }
    let longest = 0;
    for (const source of [padded, stories260K('hf', 'model.safetensors'), tinyModel('mistral-F16', 'model.safetensors')]) {
      const { n, header, data } = split(source);
      const padding = header.length - header.trimEnd().length;
      longest = Math.max(longest, padding);
      const file = join(dir, 'model.safetensors');
      for (let k = 1; k <= Math.min(7, padding); k++) {
        // the last k spaces of the header now count as data: every tensor would start k bytes early
        writeFileSync(file, join8(header, data, n - k));
        assert.throws(() => openSafetensors(file), clear(new RegExp(`${k} data bytes after the last tensor belong to no tensor`)));
      }
      writeFileSync(file, join8(header, data, n));
      openSafetensors(file).close();
    }
    assert.equal(longest, 7);
  } finally {
    cleanup();
  }
});

test('safetensors: a gap between tensors and trailing bytes are refused', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'x.safetensors');
    const h = (b: number) => JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [b, b + 4] } });
    writeFileSync(file, join8(h(8), Buffer.alloc(12)));
    assert.throws(() => openSafetensors(file), clear(/data bytes \[4, 8\) before tensor "b" belong to no tensor/));
    writeFileSync(file, join8(h(4), Buffer.alloc(9)));
    assert.throws(() => openSafetensors(file), clear(/1 data bytes after the last tensor/));
    writeFileSync(file, join8(h(4), Buffer.alloc(8)));
    assert.deepEqual([...openSafetensors(file).readF32('b')], [0]);
  } finally {
    cleanup();
  }
});

test('safetensors and shard index: deeply nested or huge values give a short error, not a stack overflow', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'x.safetensors');
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    writeFileSync(file, join8(`{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`, Buffer.alloc(4)));
    assert.throws(() => openSafetensors(file), clear(/tensor "a": "shape" must be an array of non-negative integers, got \[\[\[… 1 item\]\]\]/));
    const ones = `[${new Array(100_000).fill(1).join(',')}]`;
    writeFileSync(file, join8(`{"a":{"dtype":"F32","shape":${ones},"data_offsets":[0,8]}}`, Buffer.alloc(8)));
    assert.throws(() => openSafetensors(file), clear(/hold 8 bytes but F32 \[1, 1, 1, .*100000 items\] needs 4/));
    writeFileSync(file, join8(`{"a":{"dtype":${deep},"shape":[1],"data_offsets":[0,4]}}`, Buffer.alloc(4)));
    assert.throws(() => openSafetensors(file), clear(/unsupported dtype \[\[\[/));

    const tensors: TensorToWrite[] = ['a', 'b'].map((name) => ({ name, dtype: 'F32', shape: [2], data: new Float32Array(2) }));
    const index = writeShardedSafetensors(join(dir, 'm'), tensors, 2);
    const json = JSON.parse(readFileSync(index, 'utf8'));
    writeFileSync(index, JSON.stringify(json).replace('"model-00002-of-00002.safetensors"', deep));
    assert.throws(() => openSafetensors(index), clear(/tensor "b" maps to \[\[\[… 1 item\]\]\], not a file name/));
    writeFileSync(index, JSON.stringify({ ...json, weight_map: { ...json.weight_map, b: 'x'.repeat(100_000) } }));
    assert.throws(() => openSafetensors(index), clear(/shard "x+"… \(100000 characters\) \(holding tensor "b"\) is missing/));
    writeFileSync(index, '{"weight_map":\n{"a":\n}}');
    assert.throws(() => openSafetensors(index), clear(/not valid JSON \(Unexpected token '}'\)$/));
  } finally {
    cleanup();
  }
});

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
    assert.throws(() => openGgufWeights(file), clear(/belong to no tensor \(tensor count \d+ too small\?\)/));
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
      assert.throws(() => openGgufWeights(file), clear(pattern), key);
    }
  } finally {
    cleanup();
  }
});

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
    [{ model_type: 'mistral', sliding_window: [4096] }, /"sliding_window" must be a number or null, got \[4096\]/],
    [{ hidden_size: new Array(100_000).fill(1) }, /"hidden_size" must be a number, got \[1, 1, .*100000 items\]/],
    [{ model_type: 'x'.repeat(10_000) }, /unsupported model_type "x+"… \(10000 characters\)/],
  ];
  for (const [edit, pattern] of cases) assert.throws(() => parseHfConfig({ ...base, ...edit }, 'config.json'), clear(pattern), JSON.stringify(edit).slice(0, 80));
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
    await assert.rejects(loadModel(dir, { backend: 'reference' }), clear(/config\.json: invalid JSON \(Unexpected token '}'\)$/));
    copyFileSync(stories260K('hf', 'config.json'), join(dir, 'config.json'));
    writeFileSync(join(dir, 'tokenizer.json'), '{"model":\n[1,\n');
    await assert.rejects(loadModel(dir, { backend: 'reference' }), clear(/tokenizer\.json: invalid JSON \(.*\)$/));
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
    assert.throws(() => configFromGguf('m.gguf', md, facts(new Float32Array(half).fill(v))), clear(/tensor "rope_freqs\.weight" does not follow Llama 3 RoPE scaling/));
  }
});
