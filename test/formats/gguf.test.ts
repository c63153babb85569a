// GGUF: writer + reader round trips against the safetensors sources, quantisation against reference
// quantisers written here from the ggml block definitions, the q/k row order llama.cpp uses, the GGUF
// tokenizer against the Hugging Face one, and one test per kind of corrupt input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { fitLlama3, llama3RopeDivisors, openGgufWeights, writeGguf, type GgufTensorToWrite, type GgufWeightType } from '../../src/formats/gguf.js';
import { openGguf } from '../../src/model/open-gguf.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import type { TensorSource } from '../../src/formats/tensors.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { type Llama3RopeScaling, type ModelConfig } from '../../src/core/model-config.js';
import { ropeInverseFrequencies } from '../../src/model/rope.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
import { ggufVocabFromLlama2c, syntheticGpt2Vocab, TokenType } from '../../src/formats/gguf-vocab.js';
import { loadModel } from '../../src/api.js';
import type { ModelWeights } from '../../src/model/llama.js';
import type { Kernels } from '../../src/backend/wasm/kernels.js';
import { lazyTensors, stories260K, storiesHfConfig, tempDir, tinyModel, TINY_MODELS } from '../helpers.js';

const { dir: tmp, cleanup } = tempDir('kvsieve-gguf-');
process.on('exit', cleanup);

// ---------------------------------------------------------------------------------------------
// Independent references

/** Nearest half-precision value of a float32 (ties to even), computed arithmetically. */
function f16Round(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  const m = a / ulp;
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const v = r * ulp;
  return Math.sign(x) * (v > 65504 ? Infinity : v);
}

const fr = Math.fround;

/** ggml Q8_0 of a row-major array (length a multiple of 32): d = amax/127 (float32, stored as f16), q = round(x/d). */
function refQ8_0(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 32;
  const bytes = new Uint8Array(nb * 34);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = fr(amax / 127);
    const id = d === 0 ? 0 : fr(1 / d);
    const dh = f16Round(d);
    dv.setUint16(b * 34, halfBits(dh), true);
    for (let j = 0; j < 32; j++) {
      const v = fr(x[b * 32 + j]! * id);
      const q = (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)) + 0; // roundf (half away from zero); int8, so no -0
      dv.setInt8(b * 34 + 2 + j, q);
      values[b * 32 + j] = fr(q * dh);
    }
  }
  return { bytes, values };
}

/** ggml Q4_0: d = max / -8 (max = the value of largest magnitude), q = min(15, trunc(x/d + 8.5)), low nibbles = 0..15. */
function refQ4_0(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 32;
  const bytes = new Uint8Array(nb * 18);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d === 0 ? 0 : fr(1 / d);
    const dh = f16Round(d);
    dv.setUint16(b * 18, halfBits(dh), true);
    const q = (j: number) => Math.min(15, Math.trunc(fr(fr(x[b * 32 + j]! * id) + 8.5)));
    for (let j = 0; j < 16; j++) {
      const lo = q(j);
      const hi = q(j + 16);
      bytes[b * 18 + 2 + j] = lo | (hi << 4);
      values[b * 32 + j] = fr((lo - 8) * dh);
      values[b * 32 + j + 16] = fr((hi - 8) * dh);
    }
  }
  return { bytes, values };
}

/** IEEE half bits of a value that is exactly representable as a half. */
function halfBits(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const s = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a < 2 ** -14) return s | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

/** llama.cpp's converter reorder of q/k rows: reshape(n_head, 2, d/2, cols) then swap axes 1 and 2. */
function llamaPermute(w: Float32Array, nHead: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const half = rows / nHead / 2;
  const out = new Float32Array(w.length);
  let r = 0;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * 2 * half + j * half + i;
        out.set(w.subarray(from * cols, (from + 1) * cols), r * cols);
        r++;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function fixtureConfig(name: string): ModelConfig {
  return parseHfConfig(JSON.parse(readFileSync(tinyModel(name, 'config.json'), 'utf8')), tinyModel(name, 'config.json'));
}

/** Config the GGUF should come back with: mistral files are `llama`. */
function expectedConfig(c: ModelConfig): ModelConfig {
  return { ...c, architecture: c.architecture === 'mistral' ? 'llama' : c.architecture };
}

function writeFixture(name: string, weightType: GgufWeightType): { file: string; config: ModelConfig; src: TensorSource } {
  const config = fixtureConfig(name);
  const src = openSafetensors(tinyModel(name, 'model.safetensors'));
  const file = join(tmp, `${name}-${weightType}.gguf`);
  if (!existsSync(file)) writeGguf(file, { config, tensors: lazyTensors(src), weightType });
  return { file, config, src };
}

function assertKvsieveError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `expected a KvsieveError, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Round trips from the tiny fixtures

for (const name of TINY_MODELS) {
  test(`gguf: ${name} written as F32 reads back with the same config and exactly the same tensors`, async () => {
    const { file, config, src } = writeFixture(name, 'F32');
    const g = await openGguf(file);
    try {
      assert.deepEqual(g.config, expectedConfig(config));
      assert.equal(g.tokenizer?.vocabSize, config.vocabSize); // the synthetic vocabulary written for llama.cpp
      const want = src.list().filter((i) => !(config.tieWordEmbeddings && i.name === 'lm_head.weight'));
      assert.deepEqual(
        g.tensors.list().map((i) => i.name).sort(),
        want.map((i) => i.name).sort(),
      );
      for (const i of want) {
        assert.deepEqual(g.tensors.info(i.name).shape, i.shape, i.name);
        assert.deepEqual(g.tensors.readF32(i.name), src.readF32(i.name), i.name);
      }
    } finally {
      g.tensors.close();
    }
  });
}

test('gguf: the engine reproduces every fixture\'s reference greedy ids from its F32 GGUF', async () => {
  for (const name of TINY_MODELS) {
    const { file } = writeFixture(name, 'F32');
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
    const model = await loadModel(file, { backend: 'reference' });
    const r = await model.complete(null, { promptIds: expected.prompt_ids, maxTokens: expected.greedy_ids.length, ignoreEos: true });
    assert.deepEqual(r.generatedIds, expected.greedy_ids, name);
    model.dispose();
  }
});

test('gguf: llama-arch q/k rows are stored in llama.cpp\'s interleaved order, qwen rows as they are', () => {
  for (const name of ['llama3-F32', 'mistral-F16', 'qwen2-F32', 'qwen3-BF16'] as const) {
    const { file, config, src } = writeFixture(name, 'F32');
    const g = openGgufWeights(file);
    try {
      const permuted = g.arch === 'llama';
      assert.equal(permuted, name === 'llama3-F32' || name === 'mistral-F16');
      for (const [proj, heads] of [
        ['q', config.numHeads],
        ['k', config.numKvHeads],
      ] as const) {
        const hfName = `model.layers.1.self_attn.${proj}_proj.weight`;
        const hf = src.readF32(hfName);
        const raw = g.header.tensors.find((t) => t.name === `blk.1.attn_${proj}.weight`)!;
        const stored = new Float32Array(readFileSync(file).buffer.slice(raw.position, raw.position + raw.byteLength));
        assert.deepEqual(stored, permuted ? llamaPermute(hf, heads, config.hiddenSize) : hf, `${name} ${proj}`);
        if (name === 'qwen2-F32') {
          const biasRaw = g.header.tensors.find((t) => t.name === `blk.1.attn_${proj}.bias`)!;
          assert.equal(biasRaw.type.name, 'F32');
        }
      }
    } finally {
      g.tensors.close();
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Quantised weights

for (const weightType of ['Q8_0', 'Q4_0'] as const) {
  test(`gguf: ${weightType} matrices equal a reference quantise + dequantise; norms, biases stay F32`, () => {
    for (const name of ['llama3-F32', 'qwen2-F32'] as const) {
      const { file, config, src } = writeFixture(name, weightType);
      const ref = weightType === 'Q8_0' ? refQ8_0 : refQ4_0;
      const g = openGgufWeights(file, { chunkBytes: 100 }); // small chunks: several blocks per read, many reads
      try {
        assert.deepEqual(g.config, expectedConfig(config));
        for (const i of src.list()) {
          if (config.tieWordEmbeddings && i.name === 'lm_head.weight') continue;
          const x = src.readF32(i.name);
          const got = g.tensors.readF32(i.name);
          const raw = g.tensors.readRawTensor(i.name);
          if (i.shape.length === 1) {
            assert.equal(raw.type, 'F32', i.name);
            assert.deepEqual(got, x, i.name);
            continue;
          }
          assert.equal(raw.type, weightType, i.name);
          assert.deepEqual(raw.shape, i.shape);
          const want = ref(x);
          assert.deepEqual(got, want.values, i.name);
          // raw blocks: the reference bytes of the HF-ordered rows (q/k of llama files reordered back)
          assert.deepEqual(raw.data, want.bytes, `${i.name} raw`);
        }
      } finally {
        g.tensors.close();
      }
    }
  });
}

/** The bytes the wasm backend holds for every matrix of a loaded model, by tensor name. */
function heldMatrixBytes(model: object): Map<string, Uint8Array> {
  const llama = (model as { llama: { weights: ModelWeights; backend: { kernels: { bytes(m: unknown): Uint8Array } } } }).llama;
  const bytes = (w: unknown) => llama.backend.kernels.bytes((w as { matrix: unknown }).matrix).slice();
  const out = new Map<string, Uint8Array>([['model.embed_tokens.weight', bytes(llama.weights.embed)]]);
  llama.weights.layers.forEach((l, i) => {
    for (const [k, hf] of [['q', 'self_attn.q_proj'], ['k', 'self_attn.k_proj'], ['v', 'self_attn.v_proj'], ['o', 'self_attn.o_proj'], ['gate', 'mlp.gate_proj'], ['up', 'mlp.up_proj'], ['down', 'mlp.down_proj']] as const) {
      out.set(`model.layers.${i}.${hf}.weight`, bytes(l[k]));
    }
  });
  return out;
}

/**
 * The tensors of an open GGUF, ready to write again: F32 ones as floats, the others as their raw
 * blocks (rows in HF order), passed through `edit(name, blocks)` (default: unchanged).
 */
function rawTensorsOf(g: ReturnType<typeof openGgufWeights>, edit = (_name: string, blocks: Uint8Array) => blocks): GgufTensorToWrite[] {
  return g.tensors.list().map((i) => {
    const raw = g.tensors.readRawTensor(i.name);
    return raw.type === 'F32'
      ? { name: i.name, shape: i.shape, data: g.tensors.readF32(i.name) }
      : { name: i.name, shape: i.shape, data: new Float32Array(0), raw: { type: raw.type, data: edit(i.name, raw.data) } };
  });
}

/**
 * Blocks no quantiser of float32 values would write: every quant halved towards zero (Q8_0 int8 q;
 * Q4_0 nibbles n, value n - 8), scales kept. Loading them through float32 and quantising again would
 * scale the largest quant back to the full range; loaded as stored they stay as they are.
 */
function halvedQuants(type: 'Q8_0' | 'Q4_0', blocks: Uint8Array): Uint8Array {
  const out = blocks.slice();
  const size = type === 'Q8_0' ? 34 : 18;
  for (let b = 0; b < out.length; b += size) {
    for (let j = b + 2; j < b + size; j++) {
      if (type === 'Q8_0') out[j] = ((out[j]! << 24 >> 24) >> 1) & 0xff;
      else out[j] = (((((out[j]! & 15) - 8) >> 1) + 8) | (((((out[j]! >> 4) - 8) >> 1) + 8) << 4));
    }
  }
  return out;
}

for (const weightType of ['Q8_0', 'Q4_0'] as const) {
  test(`gguf: ${weightType} matrices load into ${weightType.toLowerCase()} storage as stored, with the logits of the F32 file quantised at load`, async () => {
    const storage = weightType === 'Q8_0' ? 'q8_0' : 'q4_0';
    for (const name of ['llama3-F32', 'qwen2-F32'] as const) {
      const { file: quantised, config } = writeFixture(name, weightType);
      // kvsieve wrote this file with the quantiser it uses at load: both models hold the same blocks.
      const asStored = await loadModel(quantised, { backend: 'wasm', threads: 1, weights: storage });
      const atLoad = await loadModel(writeFixture(name, 'F32').file, { backend: 'wasm', threads: 1, weights: storage });
      const ids = [1, 5, 9, 2, 7, 3];
      try {
        assert.deepEqual(asStored.logits(ids), atLoad.logits(ids), name);
      } finally {
        asStored.dispose();
        atLoad.dispose();
      }
      // A file with blocks of its own: the wasm memory holds exactly its bytes (llama q/k rows back in HF order).
      const g = openGgufWeights(quantised);
      const foreign = join(tmp, `${name}-${weightType}-halved.gguf`);
      try {
        writeGguf(foreign, { config, tensors: rawTensorsOf(g, (_, blocks) => halvedQuants(weightType, blocks)), weightType: 'F32' });
      } finally {
        g.tensors.close();
      }
      const h = openGgufWeights(foreign);
      const model = await loadModel(foreign, { backend: 'wasm', threads: 1, weights: storage });
      try {
        for (const [tensor, held] of heldMatrixBytes(model)) assert.deepEqual(held, h.tensors.readRawTensor(tensor).data, `${name} ${tensor}`);
      } finally {
        h.tensors.close();
        model.dispose();
      }
    }
  });
}

test('gguf: a Q8_0 block scale that is not finite is refused at load, naming the tensor, row and column', async () => {
  const { file, config } = writeFixture('qwen2-F32', 'Q8_0');
  const g = openGgufWeights(file);
  const bad = join(tmp, 'qwen2-Q8_0-inf-scale.gguf');
  const target = 'model.layers.1.mlp.up_proj.weight';
  try {
    const cols = g.tensors.info(target).shape[1]!;
    const tensors = rawTensorsOf(g, (name, blocks) => {
      if (name !== target) return blocks;
      const data = blocks.slice();
      const block = cols / 32 + 1; // row 1, second block
      data[block * 34] = 0x00;
      data[block * 34 + 1] = 0x7c; // +inf as f16, little-endian
      return data;
    });
    writeGguf(bad, { config, tensors, weightType: 'F32' });
  } finally {
    g.tensors.close();
  }
  await assert.rejects(loadModel(bad, { backend: 'wasm', threads: 1, weights: 'q8_0' }), (e: unknown) => {
    assert.ok(e instanceof KvsieveError);
    // The loader checks the stored blocks before the backend gets them (model/weights.ts).
    assert.match(e.message, new RegExp(`tensor "${target.replace(/\./g, '\\.')}" has a non-finite Q8_0 block scale .*at row 1, column 32`));
    return true;
  });
});

test('safetensors: F16 and BF16 checkpoints load into f16 / bf16 storage as stored, and into q8_0 / q4_0 / f32 from their halves as from float32', async () => {
  for (const name of ['mistral-F16', 'qwen3-BF16'] as const) {
    const src = openSafetensors(tinyModel(name, 'model.safetensors'));
    try {
      for (const storage of ['f16', 'bf16', 'q8_0', 'q4_0', 'f32'] as const) {
        const model = await loadModel(tinyModel(name), { backend: 'wasm', threads: 1, weights: storage });
        const k = (model as unknown as { llama: { backend: { kernels: Kernels } } }).llama.backend.kernels;
        try {
          for (const [tensor, held] of heldMatrixBytes(model)) {
            const stored = src.info(tensor).dtype.toLowerCase() === storage;
            // Stored bytes as they are; otherwise what the kernels make of the float32 reader's values.
            const [rows, cols] = src.info(tensor).shape as [number, number];
            const want = stored ? src.readStored!(tensor) : k.bytes(k.matrixFromF32(held.length === rows * cols * 4 ? 'f32' : storage, rows, cols, src.readF32(tensor))).slice();
            assert.deepEqual(held, want, `${name} ${storage} ${tensor}`);
          }
        } finally {
          model.dispose();
        }
      }
    } finally {
      src.close();
    }
  }
});

test('gguf: raw blocks from readRawTensor write back unchanged (llama q/k rows included)', () => {
  const { file, config } = writeFixture('llama3-F32', 'Q8_0');
  const g = openGgufWeights(file);
  const copy = join(tmp, 'raw-copy.gguf');
  try {
    writeGguf(copy, { config, tensors: rawTensorsOf(g), weightType: 'F32' });
    const a = readFileSync(file);
    const b = readFileSync(copy);
    const h = openGgufWeights(copy);
    try {
      for (const t of g.header.tensors) {
        const u = h.header.tensors.find((x) => x.name === t.name)!;
        assert.equal(u.type.name, t.type.name, t.name);
        assert.ok(a.subarray(t.position, t.position + t.byteLength).equals(b.subarray(u.position, u.position + u.byteLength)), t.name);
      }
      assert.deepEqual(h.tensors.readF32('model.layers.2.self_attn.k_proj.weight'), g.tensors.readF32('model.layers.2.self_attn.k_proj.weight'));
    } finally {
      h.tensors.close();
    }
  } finally {
    g.tensors.close();
  }
});

test('gguf: rows that are not a multiple of 32 fall back to F16 (stories260K down_proj, 172 columns)', () => {
  const config = storiesHfConfig();
  const src = openSafetensors(stories260K('hf', 'model.safetensors'));
  const file = join(tmp, 'stories-q8.gguf');
  writeGguf(file, { config, tensors: lazyTensors(src), weightType: 'Q8_0', tokenizer: ggufVocabFromLlama2c(stories260K('tok512.bin'), 512) });
  const g = openGgufWeights(file);
  try {
    const name = 'model.layers.0.mlp.down_proj.weight';
    assert.equal(g.tensors.ggmlType(name), 'F16');
    assert.equal(g.tensors.info(name).dtype, 'F16');
    assert.deepEqual(g.tensors.readF32(name), Float32Array.from(src.readF32(name), f16Round));
    assert.equal(g.tensors.ggmlType('model.layers.0.mlp.up_proj.weight'), 'Q8_0');
    assert.equal(g.metadata.get('general.file_type'), 7);
  } finally {
    g.tensors.close();
  }
});

// ---------------------------------------------------------------------------------------------
// stories260K with its own vocabulary

test('gguf: stories260K round trip (tensors, config) and its GGUF tokenizer encodes like the HF one', async () => {
  const config = storiesHfConfig();
  const src = openSafetensors(stories260K('hf', 'model.safetensors'));
  const file = join(tmp, 'stories-f32.gguf');
  writeGguf(file, {
    config,
    tensors: lazyTensors(src),
    weightType: 'F32',
    tokenizer: ggufVocabFromLlama2c(stories260K('tok512.bin'), 512),
    name: 'stories260K',
  });
  const g = await openGguf(file);
  try {
    assert.deepEqual(g.config, config);
    assert.equal(g.metadata.get('general.name'), 'stories260K');
    assert.ok(!g.tensors.has('lm_head.weight')); // tied: llama.cpp's convention is to leave output.weight out
    for (const i of src.list()) {
      if (i.name !== 'lm_head.weight') assert.deepEqual(g.tensors.readF32(i.name), src.readF32(i.name), i.name);
    }
    const tok = g.tokenizer!;
    const hf = (await loadHfTokenizer(stories260K('hf')))!;
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    const cases = (JSON.parse(readFileSync(stories260K('golden', 'encoder_ids.json'), 'utf8')) as { cases: { text: string; ids_with_bos: number[] }[] }).cases;
    assert.equal(cases.length, 25);
    let agreeWithRunC = 0;
    for (const c of cases) {
      assert.deepEqual(tok.encode(c.text), hf.encode(c.text), c.text);
      assert.deepEqual(tok.encode(c.text, { addBos: false }), hf.encode(c.text, { addBos: false }), c.text);
      if (JSON.stringify(tok.encode(c.text)) === JSON.stringify(c.ids_with_bos)) agreeWithRunC++;
    }
    assert.equal(agreeWithRunC, 24); // the 25th is literal "<s>" text, special for HF tokenizers (documented)
    const gens = (JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')) as { generations: { ids: number[]; text: string }[] }).generations;
    for (const gen of gens) assert.equal(tok.decode(gen.ids), gen.text);
    assert.equal(tok.tokenString(259), '\u2581t');
    assert.ok(tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(3));
  } finally {
    g.tensors.close();
  }
});

test('gguf: the llama vocabulary\'s derived merges are those of the HF tokenizer.json (165)', async () => {
  const { ggufTokenizerJson } = await import('../../src/tokenizer/gguf.js');
  const file = join(tmp, 'stories-f32.gguf');
  if (!existsSync(file)) return; // written by the previous test (tests in a file run in order)
  const g = openGgufWeights(file);
  g.tensors.close();
  const json = ggufTokenizerJson(file, g.header.metadata)!;
  const hfJson = JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8')) as { model: { merges: (string | string[])[] } };
  const want = hfJson.model.merges.map((m) => (typeof m === 'string' ? m.split(' ') : m));
  assert.deepEqual((json.tokenizer['model'] as { merges: unknown }).merges, want);
  assert.equal(want.length, 165);
});

// ---------------------------------------------------------------------------------------------
// Byte-level (gpt2) vocabularies

function tinyConfig(vocabSize: number, over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'qwen2',
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 16,
    vocabSize,
    maxPositions: 128,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    ropeScaling: null,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    tieWordEmbeddings: true,
    bosTokenId: null,
    eosTokenIds: [],
    ...over,
  };
}

function tinyTensors(c: ModelConfig): GgufTensorToWrite[] {
  let seed = 1;
  const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.1);
  const D = c.hiddenSize;
  const t: GgufTensorToWrite[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, D], data: rand(c.vocabSize * D) }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    t.push(
      { name: `${p}input_layernorm.weight`, shape: [D], data: rand(D) },
      { name: `${p}self_attn.q_proj.weight`, shape: [c.numHeads * c.headDim, D], data: rand(c.numHeads * c.headDim * D) },
      { name: `${p}self_attn.k_proj.weight`, shape: [c.numKvHeads * c.headDim, D], data: rand(c.numKvHeads * c.headDim * D) },
      { name: `${p}self_attn.v_proj.weight`, shape: [c.numKvHeads * c.headDim, D], data: rand(c.numKvHeads * c.headDim * D) },
      { name: `${p}self_attn.o_proj.weight`, shape: [D, c.numHeads * c.headDim], data: rand(c.numHeads * c.headDim * D) },
      { name: `${p}post_attention_layernorm.weight`, shape: [D], data: rand(D) },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, D], data: rand(c.intermediateSize * D) },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, D], data: rand(c.intermediateSize * D) },
      { name: `${p}mlp.down_proj.weight`, shape: [D, c.intermediateSize], data: rand(c.intermediateSize * D) },
    );
  }
  t.push({ name: 'model.norm.weight', shape: [D], data: rand(D) });
  return t;
}

test('gguf: the synthetic byte-level vocabulary tokenizes as its token list says', async () => {
  const c = tinyConfig(3000, { bosTokenId: 2990, eosTokenIds: [2991] });
  const file = join(tmp, 'synthetic.gguf');
  writeGguf(file, { config: c, tensors: tinyTensors(c), weightType: 'F16' });
  const g = await openGguf(file);
  g.tensors.close();
  const tokens = g.metadata.get('tokenizer.ggml.tokens') as string[];
  assert.equal(tokens.length, 3000);
  assert.equal(new Set(tokens).size, 3000);
  assert.equal(tokens[2990], '<|bos|>');
  const id = (t: string) => tokens.indexOf(t);
  const tok = g.tokenizer!;
  // GPT-2 pre-tokenisation: "ab" and " Cd" are words; two-character pieces ("ab", space + letter) are tokens
  // here, three-character ones are not (the 3000 ids run out before them)
  assert.deepEqual(tok.encode('ab C'), [id('ab'), id('\u0120C')]);
  assert.deepEqual(tok.encode('ab Cd'), [id('ab'), id('\u0120C'), id('d')]);
  assert.equal(id('\u0120Cd'), -1);
  assert.deepEqual(tok.encode('x'), [id('x')]);
  assert.deepEqual(tok.encode('\n'), [10]); // byte 0x0a is token 10
  assert.equal(tok.decode(tok.encode('hello World 123 ÿ!')), 'hello World 123 ÿ!');
  assert.equal(tok.bosId, 2990);
  assert.equal(tok.eosId, 2991);
  assert.deepEqual(tok.encode('ab<|eos|>'), [id('ab'), 2991]); // control tokens are special added tokens
  assert.equal(tok.decode([id('ab'), 2991]), 'ab');
  assert.ok(tok.isSpecial(2991) && !tok.isSpecial(id('ab')));
});

test('gguf: tokenizer.ggml.pre picks the pre-tokenizer (qwen2 splits digits, llama-bpe groups three)', async () => {
  const base = syntheticGpt2Vocab(300);
  // add the digit merges "1 2" -> "12" and "12 3" -> "123" in place of the last two generated tokens
  const tokens = [...base.tokens.slice(0, 298), '12', '123'];
  const merges = [...base.merges.slice(0, base.merges.length - 2), '1 2', '12 3'];
  const c = tinyConfig(300);
  const results: Record<string, number[]> = {};
  for (const pre of ['qwen2', 'llama-bpe', 'default']) {
    const file = join(tmp, `pre-${pre}.gguf`);
    writeGguf(file, { config: c, tensors: tinyTensors(c), weightType: 'F32', tokenizer: { model: 'gpt2', tokens, merges, types: base.types, pre, chatTemplate: '{{ messages[0].content }}!' } });
    const g = await openGguf(file);
    g.tensors.close();
    results[pre] = g.tokenizer!.encode('1234');
    assert.equal(g.tokenizer!.applyChatTemplate!([{ role: 'user', content: 'hi' }]), 'hi!');
  }
  assert.deepEqual(results['qwen2'], [49, 50, 51, 52]); // bytes '1' '2' '3' '4'
  assert.deepEqual(results['llama-bpe'], [299, 52]); // '123' '4'
  assert.deepEqual(results['default'], [299, 52]); // GPT-2: '1234' is one word, merged to '123' + '4'
  const bad = join(tmp, 'pre-bad.gguf');
  writeGguf(bad, { config: c, tensors: tinyTensors(c), weightType: 'F32', tokenizer: { model: 'gpt2', tokens, merges, types: base.types, pre: 'no-such-pre' } });
  await assert.rejects(openGguf(bad), (e: unknown) => e instanceof KvsieveError && /tokenizer\.ggml\.pre "no-such-pre" is not supported/.test(e.message));
  const g = await openGguf(bad, { tokenizer: false });
  assert.equal(g.tokenizer, null);
  g.tensors.close();
});

// ---------------------------------------------------------------------------------------------
// Llama 3 RoPE scaling

test('gguf: Llama 3 rope scaling is written as rope_freqs divisors and fitted back from them alone', () => {
  const { file, config } = writeFixture('llama3-F32', 'F32');
  const g = openGgufWeights(file);
  try {
    const raw = g.tensors.readRawTensor('rope_freqs.weight');
    const divisors = new Float32Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength / 4);
    // inv_freq / divisor must be the HF llama3 frequencies
    const base = ropeInverseFrequencies({ ...config, ropeScaling: null });
    const scaled = ropeInverseFrequencies(config);
    divisors.forEach((d, i) => assert.ok(Math.abs(base[i]! / d - scaled[i]!) <= 1e-6 * scaled[i]!, `freq ${i}`));
    assert.ok(!g.tensors.list().some((i) => i.name === 'rope_freqs.weight'));
  } finally {
    g.tensors.close();
  }
  // files from llama.cpp's converter carry only the divisors: the fitted parameters give the same frequencies
  const cases: ModelConfig[] = [
    config,
    { ...config, headDim: 128, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
    { ...config, headDim: 64, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
  ];
  for (const c of cases) {
    const fitted = fitLlama3(llama3RopeDivisors(c.ropeScaling as Llama3RopeScaling, c.ropeTheta, c.headDim), c.ropeTheta, c.headDim, 131072);
    assert.ok(fitted);
    const a = ropeInverseFrequencies(c);
    const b = ropeInverseFrequencies({ ...c, ropeScaling: fitted });
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-6 * v, `head ${c.headDim} freq ${i}: ${v} vs ${b[i]}`));
  }
});

// ---------------------------------------------------------------------------------------------
// Writer behaviour

test('gguf: the writer calls each lazy tensor once, in order, and writes atomically', () => {
  const c = tinyConfig(300);
  const calls: string[] = [];
  const tensors = tinyTensors(c).map((t) => ({ ...t, data: () => (calls.push(t.name), t.data as Float32Array) }));
  const file = join(tmp, 'lazy.gguf');
  writeGguf(file, { config: c, tensors, weightType: 'Q8_0' });
  assert.deepEqual(calls, tensors.map((t) => t.name));
  assert.ok(!existsSync(`${file}.tmp`));
  // a failing producer leaves neither the file nor the temporary behind
  const failing = join(tmp, 'failing.gguf');
  const bad = tensors.map((t, i) => (i === 3 ? { ...t, data: () => new Float32Array(1) } : t));
  assertKvsieveError(() => writeGguf(failing, { config: c, tensors: bad, weightType: 'F32' }), /tensor "model\.layers\.0\.self_attn\.k_proj\.weight": data must be a Float32Array of 512 values/);
  assert.ok(!existsSync(failing) && !existsSync(`${failing}.tmp`));
  assertKvsieveError(
    () => writeGguf(failing, { config: c, tensors: [...tensors, { name: 'model.rotary.inv_freq', shape: [8], data: new Float32Array(8) }], weightType: 'F32' }),
    /tensor "model\.rotary\.inv_freq" has no GGUF/,
  );
  assertKvsieveError(
    () => writeGguf(failing, { config: c, tensors, weightType: 'F32', tokenizer: syntheticGpt2Vocab(299) }),
    /299 tokens but the model's vocab_size is 300/,
  );
  assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('failing')), []);
});

test('gguf: metadata values of every type round trip; v2 files and custom alignment read', () => {
  const c = tinyConfig(300);
  const file = join(tmp, 'types.gguf');
  writeGguf(file, {
    config: c,
    tensors: tinyTensors(c),
    weightType: 'F32',
    alignment: 64,
    metadata: {
      'test.u8': { type: 'UINT8', value: 255 },
      'test.i8': { type: 'INT8', value: -128 },
      'test.u16': { type: 'UINT16', value: 65535 },
      'test.i16': { type: 'INT16', value: -32768 },
      'test.u32': { type: 'UINT32', value: 4294967295 },
      'test.i32': { type: 'INT32', value: -2147483648 },
      'test.f32': { type: 'FLOAT32', value: 0.5 },
      'test.f64': { type: 'FLOAT64', value: 0.1 },
      'test.bool': { type: 'BOOL', value: true },
      'test.str': { type: 'STRING', value: 'héllo ✓' },
      'test.u64': { type: 'UINT64', value: 2n ** 64n - 1n },
      'test.i64': { type: 'INT64', value: -5 },
      'test.arr_i16': { type: 'ARRAY', elementType: 'INT16', value: [1, -2, 3] },
      'test.arr_bool': { type: 'ARRAY', elementType: 'BOOL', value: [true, false] },
      'test.arr_str': { type: 'ARRAY', elementType: 'STRING', value: ['a', '', 'ü'] },
      'test.arr_f64': { type: 'ARRAY', elementType: 'FLOAT64', value: [1.5, -0.25] },
      'test.arr_u64': { type: 'ARRAY', elementType: 'UINT64', value: [1n, 2n] },
    },
  });
  const g = openGgufWeights(file);
  g.tensors.close();
  const m = g.metadata;
  assert.equal(g.header.alignment, 64);
  assert.equal(g.header.dataOffset % 64, 0);
  assert.ok(g.header.tensors.every((t) => t.offset % 64 === 0));
  assert.equal(m.get('test.u8'), 255);
  assert.equal(m.get('test.i8'), -128);
  assert.equal(m.get('test.u16'), 65535);
  assert.equal(m.get('test.i16'), -32768);
  assert.equal(m.get('test.u32'), 4294967295);
  assert.equal(m.get('test.i32'), -2147483648);
  assert.equal(m.get('test.f32'), 0.5);
  assert.equal(m.get('test.f64'), 0.1);
  assert.equal(m.get('test.bool'), true);
  assert.equal(m.get('test.str'), 'héllo ✓');
  assert.equal(m.get('test.u64'), 2n ** 64n - 1n); // beyond 2^53: a bigint
  assert.equal(m.get('test.i64'), -5);
  assert.deepEqual(m.get('test.arr_i16'), Int16Array.from([1, -2, 3]));
  assert.deepEqual(m.get('test.arr_bool'), [true, false]);
  assert.deepEqual(m.get('test.arr_str'), ['a', '', 'ü']);
  assert.deepEqual(m.get('test.arr_f64'), Float64Array.from([1.5, -0.25]));
  assert.deepEqual(m.get('test.arr_u64'), BigUint64Array.from([1n, 2n]));
  assert.equal(g.header.metadata.get('test.arr_i16')?.elementType, 'INT16');

  // the same file as GGUF v2 (identical layout) reads the same
  const v2 = join(tmp, 'types-v2.gguf');
  const bytes = readFileSync(file);
  bytes.writeUInt32LE(2, 4);
  writeFileSync(v2, bytes);
  const g2 = openGgufWeights(v2);
  assert.equal(g2.header.version, 2);
  assert.deepEqual(g2.tensors.readF32('model.norm.weight'), tinyTensors(c).at(-1)!.data);
  g2.tensors.close();
});

// ---------------------------------------------------------------------------------------------
// Handcrafted files: other block types and corrupt input

type Kv = [string, number, (w: Builder) => void];

/** A tiny GGUF byte builder, independent of the writer under test. */
class Builder {
  parts: Buffer[] = [];
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.parts.push(b);
    return this;
  }
  raw(b: Uint8Array) {
    this.parts.push(Buffer.from(b));
    return this;
  }
  get length() {
    return this.parts.reduce((a, b) => a + b.length, 0);
  }
  bytes() {
    return Buffer.concat(this.parts);
  }
}

const S = 8; // GGUF string value type
const U32 = 4;
const F32 = 6;
const ARR = 9;

function tinyKvs(arch = 'qwen2'): Kv[] {
  const u = (v: number) => (w: Builder) => w.u32(v);
  const f = (v: number) => (w: Builder) => w.raw(Buffer.from(new Float32Array([v]).buffer));
  return [
    ['general.architecture', S, (w) => w.str(arch)],
    [`${arch}.embedding_length`, U32, u(256)],
    [`${arch}.block_count`, U32, u(1)],
    [`${arch}.feed_forward_length`, U32, u(256)],
    [`${arch}.attention.head_count`, U32, u(4)],
    [`${arch}.attention.head_count_kv`, U32, u(2)],
    [`${arch}.attention.layer_norm_rms_epsilon`, F32, f(1e-6)],
  ];
}

interface RawT {
  name: string;
  ne: number[];
  type: number;
  data: Uint8Array;
  offset?: number;
}

function buildGguf(opts: { version?: number; kvs?: Kv[]; tensors?: RawT[]; magic?: string; alignment?: number }): Buffer {
  const al = opts.alignment ?? 32;
  const w = new Builder();
  w.raw(Buffer.from(opts.magic ?? 'GGUF', 'latin1')).u32(opts.version ?? 3);
  const kvs = opts.kvs ?? tinyKvs();
  const tensors = opts.tensors ?? [];
  w.u64(tensors.length).u64(kvs.length);
  for (const [k, type, val] of kvs) {
    w.str(k).u32(type);
    val(w);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    w.str(t.name).u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    const o = t.offset ?? off;
    offsets.push(o);
    w.u32(t.type).u64(o);
    off = Math.max(off, Math.ceil((o + t.data.length) / al) * al);
  }
  const head = w.bytes();
  const start = Math.ceil(head.length / al) * al;
  const out = Buffer.alloc(start + off);
  head.copy(out);
  tensors.forEach((t, i) => out.set(t.data, start + offsets[i]!));
  return out;
}

function gguf(name: string, bytes: Buffer): string {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

/** Random bytes for `nBlocks` blocks of `blockBytes`, each block's f16 fields at `halfAt` set to small scales. */
function randomBlocks(nBlocks: number, blockBytes: number, halfAt: number[], seed: number): Uint8Array {
  let s = seed;
  const next = () => (s = (s * 1103515245 + 12345) % 2 ** 31);
  const b = new Uint8Array(nBlocks * blockBytes);
  for (let i = 0; i < b.length; i++) b[i] = next() & 255;
  for (let k = 0; k < nBlocks; k++) {
    for (const h of halfAt) {
      // a positive half in [2^-10, 2^-8): exponent 5..6, random mantissa
      const bits = ((5 + (next() & 1)) << 10) | (next() & 1023);
      b[k * blockBytes + h] = bits & 255;
      b[k * blockBytes + h + 1] = bits >> 8;
    }
  }
  return b;
}

const h16 = (b: Uint8Array, o: number) => {
  const bits = b[o]! | (b[o + 1]! << 8);
  const e = (bits >> 10) & 31;
  const m = bits & 1023;
  return (bits & 0x8000 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
};

/** Element-by-element references for the K-quant and 5-bit types (ggml's layouts, written per value). */
const REFERENCES: Record<string, { id: number; block: number; bytes: number; halves: number[]; value: (b: Uint8Array, o: number, e: number) => number }> = {
  Q4_1: {
    id: 3, block: 32, bytes: 20, halves: [0, 2],
    value: (b, o, e) => fr(fr((e < 16 ? b[o + 4 + e]! & 15 : b[o + 4 + e - 16]! >> 4) * h16(b, o)) + h16(b, o + 2)),
  },
  Q5_0: {
    id: 6, block: 32, bytes: 22, halves: [0],
    value: (b, o, e) => {
      const qh = (b[o + 2]! | (b[o + 3]! << 8) | (b[o + 4]! << 16)) + b[o + 5]! * 2 ** 24;
      const low = e < 16 ? b[o + 6 + e]! & 15 : b[o + 6 + e - 16]! >> 4;
      const high = Math.floor(qh / 2 ** e) % 2;
      return fr((low + 16 * high - 16) * h16(b, o));
    },
  },
  Q5_1: {
    id: 7, block: 32, bytes: 24, halves: [0, 2],
    value: (b, o, e) => {
      const qh = (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16)) + b[o + 7]! * 2 ** 24;
      const low = e < 16 ? b[o + 8 + e]! & 15 : b[o + 8 + e - 16]! >> 4;
      const high = Math.floor(qh / 2 ** e) % 2;
      return fr(fr((low + 16 * high) * h16(b, o)) + h16(b, o + 2));
    },
  },
  Q4_K: {
    id: 12, block: 256, bytes: 144, halves: [0, 2],
    value: (b, o, e) => {
      const sub = Math.floor(e / 32); // 8 sub-blocks of 32; pairs share 32 bytes of qs (low nibbles, then high)
      const byte = b[o + 16 + 32 * Math.floor(sub / 2) + (e % 32)]!;
      const q = sub % 2 === 0 ? byte & 15 : byte >> 4;
      const [sc, m] = kScaleMin(b, o + 4, sub);
      return fr(fr(fr(h16(b, o) * sc) * q) - fr(h16(b, o + 2) * m));
    },
  },
  Q5_K: {
    id: 13, block: 256, bytes: 176, halves: [0, 2],
    value: (b, o, e) => {
      const sub = Math.floor(e / 32);
      const byte = b[o + 48 + 32 * Math.floor(sub / 2) + (e % 32)]!;
      const high = (b[o + 16 + (e % 32)]! >> sub) & 1; // qh bit `sub` of byte e % 32
      const q = (sub % 2 === 0 ? byte & 15 : byte >> 4) + 16 * high;
      const [sc, m] = kScaleMin(b, o + 4, sub);
      return fr(fr(fr(h16(b, o) * sc) * q) - fr(h16(b, o + 2) * m));
    },
  },
  Q6_K: {
    id: 14, block: 256, bytes: 210, halves: [208],
    value: (b, o, e) => {
      const half = Math.floor(e / 128); // two halves of 128 values: ql 64 bytes, qh 32 bytes, 8 scales each
      const r = e % 128;
      const quarter = Math.floor(r / 32); // which of the four 32-value groups
      const l = r % 32;
      const qlByte = b[o + 64 * half + l + (quarter % 2) * 32]!;
      const low = quarter < 2 ? qlByte & 15 : qlByte >> 4;
      const high = (b[o + 128 + 32 * half + l]! >> (2 * quarter)) & 3;
      const scale = (b[o + 192 + 8 * half + 2 * quarter + Math.floor(l / 16)]! << 24) >> 24;
      return fr(fr(h16(b, o + 208) * scale) * (low + 16 * high - 32));
    },
  },
};

/** 6-bit scale and min of K-quant sub-block j from the 12 packed bytes: j < 4 in the low 6 bits of bytes j / j+4;
 * j >= 4 in the nibbles of byte j+4 with their top 2 bits in the top bits of bytes j-4 / j. */
function kScaleMin(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j]! % 64, b[s + j + 4]! % 64];
  return [(b[s + j + 4]! % 16) + 16 * Math.floor(b[s + j - 4]! / 64), Math.floor(b[s + j + 4]! / 16) + 16 * Math.floor(b[s + j]! / 64)];
}

test('gguf: Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K blocks dequantise per ggml\'s layouts', () => {
  let seed = 11;
  for (const [name, r] of Object.entries(REFERENCES)) {
    const rows = 3;
    const cols = 512;
    const nb = (rows * cols) / r.block;
    const data = randomBlocks(nb, r.bytes, r.halves, seed++);
    const file = gguf(`blocks-${name}.gguf`, buildGguf({ tensors: [okTensor(), { name: 'blk.0.ffn_up.weight', ne: [cols, rows], type: r.id, data }] }));
    const g = openGgufWeights(file, { chunkBytes: 3 * r.bytes }) ;
    try {
      const got = g.tensors.readF32('model.layers.0.mlp.up_proj.weight');
      assert.equal(g.tensors.ggmlType('model.layers.0.mlp.up_proj.weight'), name);
      for (let e = 0; e < rows * cols; e++) {
        const want = r.value(data, Math.floor(e / r.block) * r.bytes, e % r.block);
        if (got[e] !== want) assert.fail(`${name}: value ${e} is ${got[e]}, expected ${want}`);
      }
    } finally {
      g.tensors.close();
    }
  }
});

function expectOpenError(name: string, bytes: Buffer, pattern: RegExp): void {
  const file = gguf(name, bytes);
  assertKvsieveError(() => openGgufWeights(file), pattern);
  // and the message names the file
  assertKvsieveError(() => openGgufWeights(file), new RegExp(file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
}

const okTensor = (): RawT => ({ name: 'token_embd.weight', ne: [256, 4], type: 0, data: new Uint8Array(4096) });

test('gguf corrupt: bad magic', () => {
  expectOpenError('bad-magic.gguf', buildGguf({ magic: 'GGML' }), /not a GGUF file \(magic 0x4c4d4747, expected "GGUF"\)/);
  expectOpenError('empty.gguf', Buffer.alloc(2), /not a GGUF file/);
});

test('gguf corrupt: unsupported versions', () => {
  expectOpenError('v1.gguf', buildGguf({ version: 1 }), /GGUF version 1 is not supported \(only versions 2 and 3\)/);
  expectOpenError('v4.gguf', buildGguf({ version: 4 }), /GGUF version 4 is not supported/);
});

test('gguf corrupt: truncated metadata', () => {
  // the file ends inside the value of a key
  const cut = new Builder().raw(Buffer.from('GGUF')).u32(3).u64(0).u64(1).str('qwen2.block_count').u32(U32).raw(Buffer.from([1, 0]));
  expectOpenError('trunc-meta.gguf', cut.bytes(), /truncated: metadata key "qwen2\.block_count" needs bytes up to 57 but the file ends at byte 55/);
  // a string whose length runs past the end
  const w = new Builder().raw(Buffer.from('GGUF')).u32(3).u64(0).u64(1).str('general.name').u32(S).u64(1000).raw(Buffer.from('abc'));
  expectOpenError('trunc-string.gguf', w.bytes(), /metadata key "general\.name" of 1000 bytes at byte \d+ runs past the end of the file/);
  // an array count larger than the file
  const a = new Builder().raw(Buffer.from('GGUF')).u32(3).u64(0).u64(1).str('tokenizer.ggml.tokens').u32(ARR).u32(S).u64(1e9);
  expectOpenError('trunc-array.gguf', a.bytes(), /truncated: metadata key "tokenizer\.ggml\.tokens" holds 1000000000 STRING values/);
  // a header announcing more entries than the file can hold
  expectOpenError('trunc-counts.gguf', new Builder().raw(Buffer.from('GGUF')).u32(3).u64(5).u64(1e6).bytes(), /truncated: the header announces 1000000 metadata entries and 5 tensors/);
});

test('gguf corrupt: unknown metadata value type and duplicate keys', () => {
  const kvs = tinyKvs();
  expectOpenError('bad-vtype.gguf', buildGguf({ kvs: [...kvs, ['x.y', 13, (w) => w.u32(0)]] }), /metadata key "x\.y" has unknown value type 13/);
  expectOpenError('dup-key.gguf', buildGguf({ kvs: [...kvs, kvs[1]!] }), /metadata key "qwen2\.embedding_length" appears twice/);
});

test('gguf corrupt: unknown tensor type names the type number and the tensor', () => {
  expectOpenError('bad-type.gguf', buildGguf({ tensors: [okTensor(), { name: 'blk.0.attn_q.weight', ne: [256, 4], type: 99, data: new Uint8Array(64) }] }), /tensor "blk\.0\.attn_q\.weight": unknown ggml tensor type 99/);
  // a known type kvsieve cannot dequantise opens, and fails naming the type when read
  const file = gguf('iq2.gguf', buildGguf({ tensors: [okTensor(), { name: 'blk.0.ffn_up.weight', ne: [256, 2], type: 16, data: new Uint8Array(132) }] }));
  const g = openGgufWeights(file);
  assertKvsieveError(() => g.tensors.readF32('model.layers.0.mlp.up_proj.weight'), /tensor "model\.layers\.0\.mlp\.up_proj\.weight" \(blk\.0\.ffn_up\.weight\): ggml type IQ2_XXS \(16\) cannot be read as float32/);
  assert.equal(g.tensors.readRawTensor('blk.0.ffn_up.weight').data.length, 132);
  g.tensors.close();
});

test('gguf corrupt: tensor data running past the end of the file', () => {
  const bytes = buildGguf({ tensors: [okTensor()] });
  expectOpenError('trunc-data.gguf', bytes.subarray(0, bytes.length - 1), /tensor "token_embd\.weight": truncated: its data \(4096 bytes at byte \d+\) runs past the end of the file/);
});

test('gguf corrupt: misaligned and overlapping offsets, bad dims, bad alignment', () => {
  expectOpenError('misaligned.gguf', buildGguf({ tensors: [{ ...okTensor(), offset: 16 }] }), /tensor "token_embd\.weight": data offset 16 is not a multiple of the alignment 32/);
  expectOpenError(
    'overlap.gguf',
    buildGguf({ tensors: [okTensor(), { name: 'output_norm.weight', ne: [256], type: 0, data: new Uint8Array(1024), offset: 2048 }] }),
    /tensors "token_embd\.weight" and "output_norm\.weight" overlap/,
  );
  expectOpenError('five-dims.gguf', buildGguf({ tensors: [{ ...okTensor(), ne: [256, 1, 1, 1, 4] }] }), /tensor "token_embd\.weight": 5 dimensions/);
  expectOpenError('partial-block.gguf', buildGguf({ tensors: [{ name: 'token_embd.weight', ne: [40, 4], type: 8, data: new Uint8Array(200) }] }), /Q8_0 needs rows of a multiple of 32 values, but ne\[0\] is 40/);
  const kvs: Kv[] = [...tinyKvs(), ['general.alignment', U32, (w) => w.u32(48)]];
  expectOpenError('bad-alignment.gguf', buildGguf({ kvs, tensors: [okTensor()] }), /general\.alignment must be a positive power of two, got 48/);
});

test('gguf corrupt: unknown or missing architecture, missing keys', () => {
  expectOpenError('gemma.gguf', buildGguf({ kvs: tinyKvs('gemma2'), tensors: [okTensor()] }), /unsupported GGUF architecture "gemma2" \(supported: llama, qwen2, qwen3, qwen3moe, gemma3, gpt-oss\)/);
  expectOpenError('no-arch.gguf', buildGguf({ kvs: tinyKvs().slice(1), tensors: [okTensor()] }), /missing metadata key "general\.architecture"/);
  expectOpenError('no-layers.gguf', buildGguf({ kvs: tinyKvs().filter(([k]) => k !== 'qwen2.block_count'), tensors: [okTensor()] }), /missing metadata key "qwen2\.block_count"/);
  expectOpenError('no-embd.gguf', buildGguf({}), /missing 2-D tensor "token_embd\.weight"/);
  const kvs: Kv[] = [...tinyKvs(), ['qwen2.rope.dimension_count', U32, (w) => w.u32(32)]];
  expectOpenError('partial-rope.gguf', buildGguf({ kvs, tensors: [okTensor()] }), /rope\.dimension_count 32 rotates part of a 64-wide head/);
});

test('gguf: a handcrafted minimal file opens with the expected config; lookups of absent tensors fail by name', () => {
  const file = gguf('minimal.gguf', buildGguf({ tensors: [okTensor()] }));
  const g = openGgufWeights(file);
  assert.equal(g.config.architecture, 'qwen2');
  assert.equal(g.config.vocabSize, 4);
  assert.equal(g.config.headDim, 64);
  assert.equal(g.config.rmsNormEps, 1e-6);
  assert.equal(g.config.ropeTheta, 10000);
  assert.equal(g.config.tieWordEmbeddings, true);
  assert.deepEqual(g.tensors.info('model.embed_tokens.weight').shape, [4, 256]);
  assertKvsieveError(() => g.tensors.readF32('lm_head.weight'), /no tensor named "lm_head\.weight"/);
  g.tensors.close();
  assertKvsieveError(() => g.tensors.readF32('model.embed_tokens.weight'), /read after close\(\)/);
  assertKvsieveError(() => openGgufWeights(join(tmp, 'missing.gguf')), /missing\.gguf: cannot open/);
});

test('gguf: a vocabulary-less file has no tokenizer; an unsupported tokenizer model is refused', async () => {
  const none = gguf('no-vocab.gguf', buildGguf({ tensors: [okTensor()] }));
  const g = await openGguf(none);
  assert.equal(g.tokenizer, null);
  g.tensors.close();
  const kvs: Kv[] = [...tinyKvs(), ['tokenizer.ggml.model', S, (w) => w.str('bert')]];
  const bert = gguf('bert-vocab.gguf', buildGguf({ kvs, tensors: [okTensor()] }));
  await assert.rejects(openGguf(bert), (e: unknown) => e instanceof KvsieveError && /tokenizer\.ggml\.model "bert" is not supported/.test(e.message));
});

test('gguf: TokenType values are llama.cpp\'s', () => {
  assert.deepEqual(TokenType, { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 });
  const v = ggufVocabFromLlama2c(stories260K('tok512.bin'), 512);
  assert.deepEqual([v.types[0], v.types[1], v.types[2], v.types[3], v.types[258], v.types[259]], [2, 3, 3, 6, 6, 1]);
  assert.equal(v.tokens[259], '\u2581t');
});
