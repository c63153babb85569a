// What loadModel checks beyond each file on its own: every tensor used, a tied lm_head equal to the
// embedding, finite weights, a tokenizer that fits the model's vocabulary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LoadOptions } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { writeGguf } from '../../src/formats/gguf.js';
import { lazyTensors, oneLineError, stories260K, storiesHfConfig, tempDir, tinyModel } from '../helpers.js';
import type { DType } from '../../src/formats/tensors.js';

function tensorsOf(file: string, dtype?: DType): TensorToWrite[] {
  const src = openSafetensors(file);
  try {
    return src.list().map((t) => ({ name: t.name, dtype: dtype ?? t.dtype, shape: t.shape, data: src.readF32(t.name) }));
  } finally {
    src.close();
  }
}

/** A copy of a fixture with its tensors (edited) and config.json (edited) rewritten. */
function fixture(dir: string, name: string, edit: (t: TensorToWrite[]) => TensorToWrite[], config: Record<string, unknown> = {}, dtype?: DType): string {
  writeSafetensors(join(dir, 'model.safetensors'), edit(tensorsOf(tinyModel(name, 'model.safetensors'), dtype)));
  const c = JSON.parse(readFileSync(tinyModel(name, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...c, ...config }));
  return dir;
}

function poison(t: TensorToWrite[], name: string, index: number, value: number): TensorToWrite[] {
  return t.map((x) => {
    if (x.name !== name) return x;
    const data = Float32Array.from(x.data as Float32Array);
    data[index] = value;
    return { ...x, data };
  });
}

test('a NaN or an infinity in a weight is refused at load, naming the tensor, row and column', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const target = 'model.layers.1.mlp.up_proj.weight'; // [160, 64]
    const cases: [DType, number, LoadOptions][] = [
      ['F32', NaN, { backend: 'reference' }],
      ['F32', Infinity, { backend: 'wasm', threads: 1, weights: 'f32' }],
      ['BF16', -Infinity, { backend: 'wasm', threads: 1, weights: 'bf16' }],
      ['F16', NaN, { backend: 'wasm', threads: 1, weights: 'q4_0' }], // q4_0 conversion would drop the NaN
      ['BF16', NaN, { backend: 'reference' }],
    ];
    for (const [dtype, value, options] of cases) {
      fixture(dir, 'llama3-F32', (t) => poison(t, target, 2 * 64 + 5, value), {}, dtype);
      await assert.rejects(
        loadModel(dir, options),
        oneLineError(/model\.safetensors: tensor "model\.layers\.1\.mlp\.up_proj\.weight" has a non-finite value \(NaN or infinity\) at row 2, column 5$/),
        `${dtype} ${value} ${JSON.stringify(options)}`,
      );
    }
    fixture(dir, 'llama3-F32', (t) => poison(t, 'model.norm.weight', 7, Infinity));
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/tensor "model\.norm\.weight" has a non-finite value .* at element 7$/));
    // the largest finite values load
    fixture(dir, 'llama3-F32', (t) => poison(t, target, 3, 3.4e38));
    (await loadModel(dir, { backend: 'reference' })).dispose();
  } finally {
    cleanup();
  }
});

test('a NaN in a llama2.c checkpoint or a GGUF file is refused naming the tensor', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const bin = readFileSync(stories260K('stories260K.bin'));
    bin.writeFloatLE(NaN, 28 + 4 * (512 * 64 + 10)); // rms_att of layer 0, element 10 (after the [512, 64] embedding)
    writeFileSync(join(dir, 'stories260K.bin'), bin);
    await assert.rejects(loadModel(join(dir, 'stories260K.bin'), { backend: 'reference' }), oneLineError(/tensor "model\.layers\.0\.input_layernorm\.weight" has a non-finite value .* at element 10$/));

    const src = openSafetensors(stories260K('hf', 'model.safetensors'));
    const tensors = lazyTensors(src).map((t) => (t.name === 'model.embed_tokens.weight' ? { ...t, data: () => poison([{ name: t.name, dtype: 'F32', shape: t.shape, data: src.readF32(t.name) }], t.name, 64 * 3 + 1, Infinity)[0]!.data as Float32Array } : t));
    for (const weightType of ['F32', 'Q8_0'] as const) {
      const file = join(dir, `m-${weightType}.gguf`);
      writeGguf(file, { config: storiesHfConfig(), tensors, weightType });
      // the reference backend reads float32 values; the wasm one takes Q8_0 blocks as stored
      await assert.rejects(loadModel(file, { backend: 'reference' }), oneLineError(new RegExp(`tensor "model\\.embed_tokens\\.weight" has a non-finite value .* at row 3, column ${weightType === 'F32' ? 1 : 0}$`)));
      if (weightType === 'Q8_0') {
        await assert.rejects(loadModel(file, { backend: 'wasm', threads: 1 }), oneLineError(/tensor "model\.embed_tokens\.weight" has a non-finite Q8_0 block scale .* at row 3, column 0$/));
      }
    }
    src.close();
  } finally {
    cleanup();
  }
});

test('a config with fewer layers than the file, or without a bias the file has, is refused naming the tensor', async () => {
  const { dir, cleanup } = tempDir();
  try {
    fixture(dir, 'qwen2-F32', (t) => t, { num_hidden_layers: 2 });
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/tensor "model\.layers\.2\.[a-z_.]+" is not used: the config has 2 layers/));
    fixture(dir, 'llama3-F32', (t) => [...t, { name: 'model.layers.0.self_attn.o_proj.bias', dtype: 'F32', shape: [64], data: new Float32Array(64) }]);
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/tensor "model\.layers\.0\.self_attn\.o_proj\.bias" is not used: the config calls for no such tensor/));
    // RoPE frequencies stored by old exports are not weights: they may stay
    fixture(dir, 'llama3-F32', (t) => [...t, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [8], data: new Float32Array(8) }]);
    (await loadModel(dir, { backend: 'reference' })).dispose();
  } finally {
    cleanup();
  }
});

test('tie_word_embeddings on a checkpoint whose lm_head differs from the embedding is refused; a copy of it loads', async () => {
  const { dir, cleanup } = tempDir();
  try {
    fixture(dir, 'llama3-F32', (t) => t, { tie_word_embeddings: true });
    await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(/tensor "lm_head\.weight" differs from model\.embed_tokens\.weight, but the config ties them/));
    // stories260K's conversion ships lm_head.weight as a copy of the embedding (tied)
    const m = await loadModel(stories260K('hf'), { backend: 'reference' });
    assert.equal(m.config.tieWordEmbeddings, true);
    m.dispose();
  } finally {
    cleanup();
  }
});

test('a tokenizer.json id past the model vocabulary is refused at once, not walked for a minute', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer_config.json']) copyFileSync(stories260K('hf', f), join(dir, f));
    const tj = JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8'));
    for (const [edit, pattern] of [
      [(j: any) => (j.model.vocab['hello'] = 1e9), /model\.vocab token "hello" has id 1000000000, outside the model's vocabulary of 512/],
      [(j: any) => j.added_tokens.push({ id: 512, content: '<extra>', special: true }), /added token "<extra>" has id 512, outside the model's vocabulary of 512/],
    ] as [(j: any) => void, RegExp][]) {
      const j = structuredClone(tj);
      edit(j);
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(j));
      const t0 = performance.now();
      await assert.rejects(loadModel(dir, { backend: 'reference' }), oneLineError(pattern));
      assert.ok(performance.now() - t0 < 5000, 'refused quickly');
    }
  } finally {
    cleanup();
  }
});
