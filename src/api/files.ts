/**
 * A model from its files' bytes, with no file system: the llama2.c pair (a `.bin` checkpoint and its
 * `tok*.bin` tokenizer), a Hugging Face folder's files (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json, generation_config.json), or one GGUF file (its tokenizer
 * in its metadata). The browser build loads models this
 * way (src/browser/load.ts fetches the bytes); `loadModelFromFiles` (src/api.ts) is the same in Node.
 */
import type { Backend } from '../backend/backend.js';
import { describeValue, jsonErrorReason } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import { parseHfConfig } from '../formats/hf-config.js';
import { readLlama2cCheckpoint } from '../formats/llama2c.js';
import { readSafetensors } from '../formats/safetensors.js';
import type { TensorSource } from '../formats/tensors.js';
import { llamaModel } from '../model/gpu-llama.js';
import { loadWeights } from '../model/weights.js';
import { hfTokenizerFromObjects, pickTemplate } from '../tokenizer/hf.js';
import { parseLlama2cTokenizer } from '../tokenizer/llama2c.js';
import { readGguf, type GgufModel } from '../model/open-gguf.js';
import type { BatcherOptions } from '../generate/batcher.js';
import { batcherOptions, Model, type BatchingOptions } from './model.js';

/** A model's files by name (the last part of the path only): their bytes. */
export type ModelFiles = Readonly<Record<string, Uint8Array>>;

/** Which files of `files` make a model, or a one-line error naming what is missing. */
export function modelFormatOf(files: ModelFiles): { format: 'hf' } | { format: 'gguf'; file: string } | { format: 'llama2c'; checkpoint: string; tokenizer: string | null } {
  const names = Object.keys(files);
  if (names.includes('config.json')) return { format: 'hf' };
  const ggufs = names.filter((n) => n.endsWith('.gguf'));
  if (ggufs.length === 1) return { format: 'gguf', file: ggufs[0]! };
  if (ggufs.length > 1) throw new KvsieveError(`model files: one GGUF file at a time, got ${ggufs.map((n) => JSON.stringify(n)).join(', ')}`, { option: 'files' });
  const bins = names.filter((n) => n.endsWith('.bin'));
  const tokenizers = bins.filter((n) => /^tok.*\.bin$/.test(n));
  const checkpoints = bins.filter((n) => !tokenizers.includes(n));
  if (checkpoints.length === 1) return { format: 'llama2c', checkpoint: checkpoints[0]!, tokenizer: tokenizers[0] ?? null };
  const got = names.length === 0 ? 'no files' : names.map((n) => JSON.stringify(n)).join(', ');
  throw new KvsieveError(
    `model files: expected config.json + model.safetensors (+ tokenizer.json), one .gguf file, or one llama2.c .bin checkpoint (+ its tok*.bin tokenizer), got ${got}`,
    { option: 'files' },
  );
}

function json(files: ModelFiles, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(files[name]));
  } catch (e) {
    throw new KvsieveError(`${name}: invalid JSON (${jsonErrorReason(e)})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new KvsieveError(`${name}: invalid JSON (not an object: ${describeValue(v)})`);
  return v as Record<string, unknown>;
}

/**
 * A backend, or how to make one once the model's config is read (the wasm backend in Node sizes its
 * memories, and how many, by the model).
 */
export type BackendSource = Backend | ((config: ModelConfig, storedType?: (name: string) => string | null) => Promise<Backend>);

/** `source`, remembering the backend it makes so that a failed load can dispose of it. */
export function recorded(source: BackendSource): { source: BackendSource; made: () => Backend | null } {
  if (typeof source !== 'function') return { source, made: () => source };
  let made: Backend | null = null;
  return { source: async (c, storedType) => (made = await source(c, storedType)), made: () => made };
}

/**
 * The backend of `source` for a model of config `c`; storedType: the ggml type a GGUF stores each
 * matrix as, by HF name (the wasm backend sizes its memories by what it keeps as stored).
 */
export async function backendFor(source: BackendSource, c: ModelConfig, storedType?: (name: string) => string | null): Promise<Backend> {
  return typeof source === 'function' ? source(c, storedType) : source;
}

/** The backend as info() shows it. */
export function describeBackend(b: Backend): string {
  const w = b as Backend & { weightType?: string; heldTypes?: ReadonlySet<string>; threads?: number; description?: string };
  if (w.description) return w.description;
  const parts = b.memoryUsage?.().parts?.length;
  const memories = parts ? `, ${parts} memories` : '';
  // What the matrices are held in (a K-quant file keeps its own types under the q8_0 default); f32
  // fallbacks of a quantised setting (rows that do not split into blocks) are left to `unquantised`.
  const held = [...(w.heldTypes ?? [])].filter((t) => t === w.weightType || t !== 'f32');
  const types = held.length ? held.join('/') : w.weightType;
  return w.weightType ? `${b.name} (${types} weights, ${w.threads} thread${w.threads === 1 ? '' : 's'}${memories})` : b.name;
}

/** The element types a checkpoint stores its tensors in. */
export function storedDtype(src: TensorSource): string {
  return [...new Set(src.list().map((t) => t.dtype))].join('+');
}

/**
 * Builds a Model on `backend` from `files` (see ModelFiles; `name` is what info().path shows). Bad
 * input is a KvsieveError naming the file and field.
 */
export async function modelFromFiles(files: ModelFiles, source: BackendSource, options: BatchingOptions & { name?: string } = {}): Promise<Model> {
  const batching = batcherOptions(options);
  const found = modelFormatOf(files);
  if (found.format === 'hf') {
    if (!files['model.safetensors']) {
      throw new KvsieveError('model files: config.json but no model.safetensors (sharded checkpoints load from a folder in Node)', { option: 'files' });
    }
    const gen = files['generation_config.json'] ? json(files, 'generation_config.json') : null;
    const config = parseHfConfig(json(files, 'config.json'), 'config.json', gen, 'generation_config.json');
    const src = readSafetensors(files['model.safetensors'], 'model.safetensors');
    try {
      const backend = await backendFor(source, config);
      const weights = loadWeights(src, config, backend);
      let tokenizer = null;
      if (files['tokenizer.json']) {
        const tc = files['tokenizer_config.json'] ? json(files, 'tokenizer_config.json') : {};
        const template = files['chat_template.jinja']
          ? new TextDecoder().decode(files['chat_template.jinja'])
          : pickTemplate(tc['chat_template'], 'tokenizer_config.json');
        const templateWhere = files['chat_template.jinja'] ? 'chat_template.jinja' : 'tokenizer_config.json';
        tokenizer = hfTokenizerFromObjects(json(files, 'tokenizer.json'), tc, template, {
          where: 'tokenizer.json',
          configWhere: 'tokenizer_config.json',
          templateWhere,
          modelVocab: config.vocabSize,
        });
      }
      const llama = llamaModel(config, weights, backend);
      const meta = { format: 'hf' as const, path: options.name ?? 'config.json', dtype: storedDtype(src), backend: describeBackend(backend) };
      return new Model(config, tokenizer, llama, meta, batching);
    } finally {
      src.close();
    }
  }
  if (found.format === 'gguf') {
    const g = await readGguf(files[found.file]!, found.file);
    try {
      return await modelFromGguf(g, source, options.name ?? found.file, batching);
    } finally {
      g.tensors.close();
    }
  }
  const { config: base, tensors } = readLlama2cCheckpoint(files[found.checkpoint]!, found.checkpoint);
  try {
    // llama2.c's run.c ends a story when the model emits BOS; keep that convention for .bin models.
    const config: ModelConfig = { ...base, eosTokenIds: [...new Set([...base.eosTokenIds, 1])] };
    const backend = await backendFor(source, config);
    const weights = loadWeights(tensors, config, backend);
    const tokenizer = found.tokenizer ? parseLlama2cTokenizer(files[found.tokenizer]!, config.vocabSize, found.tokenizer) : null;
    const llama = llamaModel(config, weights, backend);
    const meta = { format: 'llama2c' as const, path: options.name ?? found.checkpoint, dtype: 'F32', backend: describeBackend(backend) };
    return new Model(config, tokenizer, llama, meta, batching);
  } finally {
    tensors.close();
  }
}

/**
 * The Model of an opened GGUF file (from a path or from bytes) on `source`'s backend, which learns each
 * matrix's stored type (the wasm backend plans its memories by what it keeps as stored). The caller
 * closes g.tensors.
 */
export async function modelFromGguf(g: GgufModel, source: BackendSource, path: string, batching: BatcherOptions): Promise<Model> {
  const backend = await backendFor(source, g.config, (name) => (g.tensors.has(name) ? g.tensors.ggmlType(name) : null));
  const weights = loadWeights(g.tensors, g.config, backend);
  const llama = llamaModel(g.config, weights, backend);
  const dtype = [...new Set(g.tensors.list().map((t) => g.tensors.ggmlType(t.name)))].join('+');
  return new Model(g.config, g.tokenizer, llama, { format: 'gguf', path, dtype, backend: describeBackend(backend) }, batching);
}
