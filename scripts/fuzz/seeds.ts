/**
 * Seed files for the fuzzer, made from the shared fixtures (../shared: stories260K and the tiny HF
 * checkpoints): valid models of every format kvsieve loads, plus the layout of each binary file (where
 * its lengths, counts, offsets and float data lie) so that mutations can aim at them.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../../src/core/model-config.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { ggufVocabFromLlama2c, syntheticGpt2Vocab, writeGguf, type GgufWeightType } from '../../src/formats/gguf.js';
import { openSafetensors, writeShardedSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import type { BinaryLayout, IntField } from './mutate.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = process.env['KVSIEVE_SHARED'] ?? resolve(repoRoot, '..', 'shared');

function shared(...parts: string[]): string {
  const p = join(sharedDir, ...parts);
  if (!existsSync(p)) throw new Error(`fuzz seeds: test data missing: ${p} (is ../shared beside the repository? KVSIEVE_SHARED overrides)`);
  return p;
}

const TINY = ['llama3-F32', 'qwen2-F32', 'qwen3-BF16', 'mistral-F16'] as const;

/** The formats the fuzzer knows, each with its own seeds and mutations (cases.ts). */
export const FORMATS = ['safetensors', 'sharded', 'gguf', 'config', 'tokenizer', 'chat', 'llama2c', 'tok512'] as const;
export type Format = (typeof FORMATS)[number];

/** A ChatML template like Qwen's, the seed of the chat-template cases. */
export const CHAT_TEMPLATE = [
  "{%- for message in messages %}",
  "{%- if message.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role: ' + message.role) }}{%- endif %}",
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + eos_token + '\\n' }}",
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}",
].join('\n');

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
}

function fixtureTensors(file: string): TensorToWrite[] {
  const src = openSafetensors(file);
  try {
    return src.list().map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: src.readF32(t.name) }));
  } finally {
    src.close();
  }
}

function writeGgufSeed(file: string, hfDir: string, weightType: GgufWeightType, vocab: 'llama2c' | 'gpt2'): void {
  const config: ModelConfig = parseHfConfig(readJson(join(hfDir, 'config.json')), join(hfDir, 'config.json'));
  const src = openSafetensors(join(hfDir, 'model.safetensors'));
  try {
    const tensors = src.list().map((t) => ({ name: t.name, shape: t.shape, data: () => src.readF32(t.name) }));
    const tokenizer =
      vocab === 'llama2c'
        ? { ...ggufVocabFromLlama2c(shared('models', 'stories260K', 'tok512.bin'), config.vocabSize), chatTemplate: CHAT_TEMPLATE }
        : syntheticGpt2Vocab(config.vocabSize, config);
    writeGguf(file, { config, tensors, weightType, tokenizer });
  } finally {
    src.close();
  }
}

/**
 * Writes the seeds into `dir` (one folder per seed, grouped by format) and returns nothing: workers read
 * them with loadSeeds. Takes a second or two; deterministic.
 */
export function buildSeeds(dir: string): void {
  const storiesHf = shared('models', 'stories260K', 'hf');
  const put = (seed: string, name: string, from: string) => {
    mkdirSync(join(dir, seed), { recursive: true });
    copyFileSync(from, join(dir, seed, name));
  };
  for (const name of TINY) {
    put(`hf-${name}`, 'config.json', shared('fixtures', 'tiny-models', name, 'config.json'));
    put(`hf-${name}`, 'model.safetensors', shared('fixtures', 'tiny-models', name, 'model.safetensors'));
  }
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) put('hf-stories', f, join(storiesHf, f));
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
    put('tok-stories', f, join(storiesHf, f));
    put('chat-stories', f, join(storiesHf, f));
  }
  const cfg = readJson(join(storiesHf, 'tokenizer_config.json'));
  writeFileSync(join(dir, 'chat-stories', 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: CHAT_TEMPLATE }, null, 2));
  for (const [name, shards] of [['qwen2-F32', 3], ['mistral-F16', 2]] as const) {
    const d = join(dir, `sharded-${name}`);
    writeShardedSafetensors(d, fixtureTensors(shared('fixtures', 'tiny-models', name, 'model.safetensors')), shards);
    copyFileSync(shared('fixtures', 'tiny-models', name, 'config.json'), join(d, 'config.json'));
  }
  const gguf = (seed: string, hfDir: string, type: GgufWeightType, vocab: 'llama2c' | 'gpt2') => {
    mkdirSync(join(dir, seed), { recursive: true });
    writeGgufSeed(join(dir, seed, 'model.gguf'), hfDir, type, vocab);
  };
  gguf('gguf-stories-F32', storiesHf, 'F32', 'llama2c');
  gguf('gguf-stories-Q8_0', storiesHf, 'Q8_0', 'llama2c');
  gguf('gguf-qwen2-Q4_0', shared('fixtures', 'tiny-models', 'qwen2-F32'), 'Q4_0', 'gpt2');
  gguf('gguf-llama3-F16', shared('fixtures', 'tiny-models', 'llama3-F32'), 'F16', 'gpt2');
  gguf('gguf-qwen3-BF16', shared('fixtures', 'tiny-models', 'qwen3-BF16'), 'BF16', 'gpt2');
  for (const f of ['stories260K.bin', 'tok512.bin']) put('llama2c-stories', f, shared('models', 'stories260K', f));
}

/** One seed: its files in memory, the format it serves, and the path loadModel opens (relative). */
export interface Seed {
  name: string;
  dir: string;
  files: Map<string, Uint8Array>;
  entry: string;
}

/** The seeds of `format` from a directory built by buildSeeds. */
export function seedsFor(dir: string, format: Format): Seed[] {
  const prefix: Record<Format, string[]> = {
    safetensors: ['hf-'],
    sharded: ['sharded-'],
    gguf: ['gguf-'],
    config: ['hf-'],
    tokenizer: ['tok-'],
    chat: ['chat-'],
    llama2c: ['llama2c-'],
    tok512: ['llama2c-'],
  };
  return readdirSync(dir)
    .filter((n) => prefix[format].some((p) => n.startsWith(p)))
    .sort()
    .map((name) => {
      const d = join(dir, name);
      const files = new Map<string, Uint8Array>();
      for (const f of readdirSync(d).sort()) if (statSync(join(d, f)).isFile()) files.set(f, new Uint8Array(readFileSync(join(d, f))));
      const entry = name.startsWith('gguf-') ? 'model.gguf' : name.startsWith('llama2c-') ? 'stories260K.bin' : '';
      return { name, dir: d, files, entry };
    });
}

// ------------------------------------------------------------------------------------------------
// Layouts of the binary files: where mutations should aim

const u64 = (b: Uint8Array, at: number) => Number(Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(at));

/** safetensors: the header length and every tensor's float data. */
export function safetensorsLayout(b: Uint8Array): BinaryLayout {
  const n = u64(b, 0);
  const header = JSON.parse(Buffer.from(b.subarray(8, 8 + n)).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const floats: NonNullable<BinaryLayout['floats']> = [];
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    floats.push({ start: 8 + n + e.data_offsets[0], end: 8 + n + e.data_offsets[1], type: e.dtype as 'F32' | 'F16' | 'BF16' });
  }
  return { headerEnd: 8 + n, fields: [{ at: 0, bytes: 8, what: 'header length' }], floats };
}

/**
 * GGUF: counts, key and string lengths, value and element types, array counts, and per tensor its
 * name length, dimension count, dims, ggml type and offset; the float data of F32/F16/BF16 tensors.
 */
export function ggufLayout(b: Uint8Array): BinaryLayout {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const fields: IntField[] = [];
  let p = 8;
  const field = (bytes: 4 | 8, what: string): number => {
    fields.push({ at: p, bytes, what });
    const v = bytes === 4 ? buf.readUInt32LE(p) : Number(buf.readBigUInt64LE(p));
    p += bytes;
    return v;
  };
  const str = (what: string): string => {
    const len = field(8, `length of ${what}`);
    const s = buf.toString('utf8', p, p + len);
    p += len;
    return s;
  };
  const SCALAR = [1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8];
  const floats: NonNullable<BinaryLayout['floats']> = [];
  /** A value of `type` at p; `sample` keeps only some of a long array's elements as fields. */
  const value = (type: number, what: string, sample = true): void => {
    if (type === 8) str(what);
    else if (type === 9) {
      const el = field(4, `element type of ${what}`);
      const count = field(8, `element count of ${what}`);
      for (let i = 0; i < count; i++) {
        // long arrays (vocabularies): every element would swamp the list; keep a sample
        const keep = i < 8 || i % 97 === 0;
        if (el === 8) {
          const len = Number(buf.readBigUInt64LE(p));
          if (keep) fields.push({ at: p, bytes: 8, what: `length of ${what}[${i}]` });
          p += 8 + len;
        } else value(el, `${what}[${i}]`, keep);
      }
    } else {
      // numbers: integers as fields, float32 values as targets for NaN, infinities, -1, 0
      const bytes = SCALAR[type]!;
      if (sample && (type === 4 || type === 5)) fields.push({ at: p, bytes: 4, what: `value of ${what}` });
      if (sample && (type === 10 || type === 11)) fields.push({ at: p, bytes: 8, what: `value of ${what}` });
      if (sample && type === 6) floats.push({ start: p, end: p + 4, type: 'F32' });
      p += bytes;
    }
  };
  const nTensors = field(8, 'tensor count');
  const nKv = field(8, 'metadata count');
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = str(`metadata key ${i}`);
    const type = field(4, `value type of ${key}`);
    if (key === 'general.alignment') alignment = buf.readUInt32LE(p);
    value(type, key);
  }
  const tensors: { type: number; offset: number; count: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str(`name of tensor ${i}`);
    const nDims = field(4, `dimension count of ${name}`);
    let count = 1;
    for (let d = 0; d < nDims; d++) count *= field(8, `dimension ${d} of ${name}`);
    const type = field(4, `ggml type of ${name}`);
    const offset = field(8, `offset of ${name}`);
    tensors.push({ type, offset, count });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  const WIDTH: Record<number, ['F32' | 'F16' | 'BF16', number]> = { 0: ['F32', 4], 1: ['F16', 2], 30: ['BF16', 2] };
  for (const t of tensors.filter((x) => WIDTH[x.type])) {
    floats.push({ start: dataStart + t.offset, end: dataStart + t.offset + t.count * WIDTH[t.type]![1], type: WIDTH[t.type]![0] });
  }
  return { headerEnd: dataStart, fields, floats };
}

/** llama2.c checkpoint: the seven header int32s, then float32 weights. */
export function llama2cLayout(b: Uint8Array): BinaryLayout {
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  return {
    headerEnd: 28,
    fields: names.map((what, i) => ({ at: 4 * i, bytes: 4 as const, what })),
    floats: [{ start: 28, end: b.length, type: 'F32' }],
  };
}

/** llama2.c tokenizer: max_token_length, then per token a float32 score and an int32 length. */
export function tok512Layout(b: Uint8Array): BinaryLayout {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const fields: IntField[] = [{ at: 0, bytes: 4, what: 'max_token_length' }];
  const floats: NonNullable<BinaryLayout['floats']> = [];
  for (let p = 4, i = 0; p + 8 <= b.length; i++) {
    floats.push({ start: p, end: p + 4, type: 'F32' });
    fields.push({ at: p + 4, bytes: 4, what: `length of token ${i}` });
    p += 8 + buf.readInt32LE(p + 4);
  }
  return { headerEnd: b.length, fields, floats };
}
