import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { openLlama2cCheckpoint } from '../../src/formats/llama2c.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { stories260K, tempDir } from '../helpers.js';

function throwsNaming(fn: () => unknown, parts: string[], pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `expected KvsieveError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), `message is one line: ${e.message}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} names ${p}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

test('stories260K: header values and a config equal to the HF conversion', () => {
  const { config, tensors } = openLlama2cCheckpoint(stories260K('stories260K.bin'));
  tensors.close();
  assert.deepEqual(
    [config.hiddenSize, config.intermediateSize, config.numLayers, config.numHeads, config.numKvHeads, config.vocabSize, config.maxPositions],
    [64, 172, 5, 8, 4, 512, 512],
  );
  assert.equal(config.headDim, 8);
  assert.equal(config.tieWordEmbeddings, true);
  const hf = parseHfConfig(
    JSON.parse(readFileSync(stories260K('hf', 'config.json'), 'utf8')),
    'config.json',
    JSON.parse(readFileSync(stories260K('hf', 'generation_config.json'), 'utf8')),
  );
  assert.deepEqual(config, hf);
});

test('stories260K: every tensor equals the independent HF safetensors conversion exactly', () => {
  const { tensors } = openLlama2cCheckpoint(stories260K('stories260K.bin'));
  const hf = openSafetensors(stories260K('hf'));
  try {
    const ours = tensors.list();
    assert.equal(ours.length, 2 + 9 * 5);
    assert.ok(!tensors.has('lm_head.weight'));
    assert.deepEqual(new Set([...ours.map((t) => t.name), 'lm_head.weight']), new Set(hf.list().map((t) => t.name)));
    for (const t of ours) {
      assert.deepEqual(t.shape, hf.info(t.name).shape, t.name);
      assert.equal(t.dtype, 'F32');
      assert.equal(t.file, stories260K('stories260K.bin'));
      assert.ok(sameBits(tensors.readF32(t.name), hf.readF32(t.name)), t.name);
    }
    // The HF file stores the shared classifier explicitly; it is our embedding matrix.
    assert.ok(sameBits(hf.readF32('lm_head.weight'), tensors.readF32('model.embed_tokens.weight')));
    // Reading twice gives the same (the permutation is applied to a fresh copy, not cumulatively).
    const q = 'model.layers.3.self_attn.q_proj.weight';
    assert.ok(sameBits(tensors.readF32(q), tensors.readF32(q)));
  } finally {
    tensors.close();
    hf.close();
  }
});

/**
 * Builds a small legacy checkpoint by hand: dim 8, hidden 6, 1 layer, 2 heads, 1 KV head (head size 4),
 * vocab -5 (unshared), seq_len 3. Array k's element i holds 1000 * (k + 1) + i, so every value says where it came from.
 */
function synthetic(): { bytes: Buffer; arrays: Float32Array[] } {
  const [dim, hidden, layers, heads, kvHeads, vocab, seqLen] = [8, 6, 1, 2, 1, 5, 3];
  const hs = dim / heads;
  const kv = hs * kvHeads;
  const sizes = [
    vocab * dim, layers * dim, layers * dim * dim, layers * kv * dim, layers * kv * dim, layers * dim * dim,
    layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim,
    seqLen * (hs / 2), seqLen * (hs / 2), vocab * dim,
  ];
  const arrays = sizes.map((n, k) => new Float32Array(n).map((_, i) => 1000 * (k + 1) + i));
  const head = Buffer.alloc(28);
  [dim, hidden, layers, heads, kvHeads, -vocab, seqLen].forEach((v, i) => head.writeInt32LE(v, 4 * i));
  return { bytes: Buffer.concat([head, ...arrays.map((a) => Buffer.from(a.buffer))]), arrays };
}

test('hand-built unshared checkpoint: HF names, q/k rows permuted per head (even offsets, then odd), lm_head', () => {
  const t = tempDir();
  try {
    const { bytes, arrays } = synthetic();
    const file = join(t.dir, 'syn.bin');
    writeFileSync(file, bytes);
    const { config, tensors } = openLlama2cCheckpoint(file, { maxReadBytes: 7 });
    assert.equal(config.tieWordEmbeddings, false);
    assert.equal(config.vocabSize, 5);
    assert.equal(config.headDim, 4);
    assert.equal(config.maxPositions, 3);
    const rows = (name: string, cols: number) => {
      const w = tensors.readF32(name);
      return Array.from({ length: w.length / cols }, (_, r) => w[r * cols]!);
    };
    // wq (array 2): row r starts with 3000 + 8r. Heads of 4 rows: [0,2,1,3], [4,6,5,7].
    assert.deepEqual(rows('model.layers.0.self_attn.q_proj.weight', 8), [0, 2, 1, 3, 4, 6, 5, 7].map((r) => 3000 + 8 * r));
    // wk (array 3): one KV head of 4 rows.
    assert.deepEqual(rows('model.layers.0.self_attn.k_proj.weight', 8), [0, 2, 1, 3].map((r) => 4000 + 8 * r));
    // Within a row, columns stay in order.
    assert.deepEqual([...tensors.readF32('model.layers.0.self_attn.q_proj.weight').subarray(8, 16)], [3016, 3017, 3018, 3019, 3020, 3021, 3022, 3023]);
    const expect: [string, number, number[]][] = [
      ['model.embed_tokens.weight', 0, [5, 8]],
      ['model.layers.0.input_layernorm.weight', 1, [8]],
      ['model.layers.0.self_attn.v_proj.weight', 4, [4, 8]],
      ['model.layers.0.self_attn.o_proj.weight', 5, [8, 8]],
      ['model.layers.0.post_attention_layernorm.weight', 6, [8]],
      ['model.layers.0.mlp.gate_proj.weight', 7, [6, 8]],
      ['model.layers.0.mlp.down_proj.weight', 8, [8, 6]],
      ['model.layers.0.mlp.up_proj.weight', 9, [6, 8]],
      ['model.norm.weight', 10, [8]],
      ['lm_head.weight', 13, [5, 8]], // after the two skipped freq_cis tables
    ];
    for (const [name, k, shape] of expect) {
      assert.deepEqual(tensors.info(name).shape, shape, name);
      assert.deepEqual([...tensors.readF32(name)], [...arrays[k]!], name);
    }
    assert.equal(tensors.list().length, 12);
    tensors.close();
  } finally {
    t.cleanup();
  }
});

test('bad llama2.c files: truncated, too short for the header, non-positive dims, oversize, versioned export', () => {
  const t = tempDir();
  try {
    const full = readFileSync(stories260K('stories260K.bin'));
    const cut = join(t.dir, 'cut.bin');
    writeFileSync(cut, full.subarray(0, full.length - 100));
    throwsNaming(() => openLlama2cCheckpoint(cut), [cut, String(full.length), String(full.length - 100)], /truncated/);

    const tiny = join(t.dir, 'tiny.bin');
    writeFileSync(tiny, full.subarray(0, 10));
    throwsNaming(() => openLlama2cCheckpoint(tiny), [tiny, '10', '28'], /truncated/);

    const zeroLayers = Buffer.from(full);
    zeroLayers.writeInt32LE(0, 8);
    const z = join(t.dir, 'zero.bin');
    writeFileSync(z, zeroLayers);
    throwsNaming(() => openLlama2cCheckpoint(z), [z, 'n_layers', '0']);

    const negDim = Buffer.from(full);
    negDim.writeInt32LE(-64, 0);
    const n = join(t.dir, 'neg.bin');
    writeFileSync(n, negDim);
    throwsNaming(() => openLlama2cCheckpoint(n), [n, 'dim', '-64']);

    const long = join(t.dir, 'long.bin');
    writeFileSync(long, Buffer.concat([full, Buffer.alloc(4)]));
    throwsNaming(() => openLlama2cCheckpoint(long), [long, String(full.length), String(full.length + 4)]);

    const v1 = Buffer.from(full);
    v1.writeUInt32LE(0x616b3432, 0);
    const vf = join(t.dir, 'v1.bin');
    writeFileSync(vf, v1);
    throwsNaming(() => openLlama2cCheckpoint(vf), [vf, 'version']);

    throwsNaming(() => openLlama2cCheckpoint(join(t.dir, 'absent.bin')), ['absent.bin']);
  } finally {
    t.cleanup();
  }
});
