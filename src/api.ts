import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from './backend/backend.js';
import { ReferenceBackend } from './backend/reference.js';
import { describeValue, jsonErrorReason, oneLine } from './core/describe.js';
import { KvsieveError } from './core/errors.js';
import { openGguf } from './model/open-gguf.js';
import { openLlama2cCheckpoint } from './formats/llama2c.js';
import { openSafetensors } from './formats/safetensors.js';
import type { BatcherOptions } from './generate/batcher.js';
import type { KvPoolStats } from './generate/pool.js';
import type { ModelConfig } from './core/model-config.js';
import { parseHfConfig } from './formats/hf-config.js';
import { llamaModel } from './model/gpu-llama.js';
import { locateModel, type HubOptions, type ResolvedModel } from './model/resolve.js';
import type { DownloadProgress } from './hub/download.js';
import { loadWeights } from './model/weights.js';
import { loadHfTokenizer } from './tokenizer/hf.js';
import { loadLlama2cTokenizer } from './tokenizer/llama2c.js';
import { batcherOptions, Model } from './api/model.js';
import { backendFor, describeBackend, modelFromFiles, modelFromGguf, recorded, storedDtype, type BackendSource, type ModelFiles } from './api/files.js';

export { ChatSession, Model, type GenerateOptions, type ModelInfo } from './api/model.js';
export type { ModelFiles } from './api/files.js';

/**
 * 'stored': quantised matrices (Q4_K, Q5_K, Q6_K, Q8_0, Q4_0) as the file stores them, the others q8_0.
 * Left out (wasm), a GGUF's Q4_K / Q5_K / Q6_K matrices are kept as stored too (a Q4_K_M file at its own
 * size; Q4_K's kernels are faster per core than q8_0's, Q5_K's and Q6_K's slower) and the rest is q8_0;
 * 'q8_0' converts them all.
 */
export type WeightStorage = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'stored';

export interface LoadOptions {
  /**
   * Kernel backend: 'wasm' (WebAssembly SIMD on worker threads, the default), 'reference' (plain
   * TypeScript, the oracle), 'webgpu' (the GPU through WebGPU: navigator.gpu, or in Node the optional
   * package `webgpu`; f32 (default), f16, q8_0 or q4_0 weights, full cache only for now), or an instance.
   */
  backend?: 'wasm' | 'reference' | 'webgpu' | Backend;
  /** wasm: threads in all (default: the number of cores). */
  threads?: number;
  /**
   * wasm: how weights are stored, quantised at load from whatever the checkpoint holds (default
   * q8_0: about 1.06 bytes per parameter, except a GGUF's Q4_K / Q5_K / Q6_K matrices, kept as stored; f32 4,
   * f16/bf16 2, q4_0 0.56; 'stored': a GGUF's Q4_K, Q5_K, Q6_K, Q8_0 and Q4_0 matrices as they are, the
   * others q8_0; an explicit 'q8_0' converts K-quants to q8_0 too). A GGUF's MXFP4 matrices stay as
   * stored under q8_0, q4_0 and 'stored' (0.53 bytes per parameter, as fast as q8_0).
   */
  weights?: WeightStorage;
  /**
   * Bytes of KV cache the model's batch may hold at once (default: 70% of what the wasm memory has
   * left after loading; a model split over several memories: 70% of the room per layer of the
   * fullest one, times the layers; no limit on the reference backend). Sequences wait for room in arrival order; a compressed one reserves its budget + buffer, a full-cache one grows in
   * blocks and is preempted (its cache freed, recomputed later) when newer ones run out of room.
   */
  kvMemory?: number;
  /**
   * wasm: the most bytes one wasm memory may hold (default and most 4 GiB, wasm32's limit). A model
   * that needs more is split over several memories, consecutive layers in each (mainly for tests:
   * a small cap splits a tiny model).
   */
  maxBytesPerMemory?: number;
  /** Tokens a growing cache is granted at a time (default 128). */
  kvBlockTokens?: number;
  /** Called after every forward step with the KV pool's gauge (diagnostics and tests). */
  onStep?: (stats: KvPoolStats) => void;
  /**
   * Called as a model named by its Hugging Face id downloads (files and bytes so far and in all,
   * and whether a file came from the cache or waits for another process's download of it).
   */
  onProgress?: (progress: DownloadProgress) => void;
  /** Where Hub models come from and are kept (defaults: HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HUB_OFFLINE). */
  hub?: HubOptions;
}

const WEIGHT_STORAGE: readonly WeightStorage[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'stored'];

/** The wasm backend's options for a `weights` choice. */
export function wasmWeights(w: WeightStorage | undefined): { weights?: Exclude<WeightStorage, 'stored'>; keepStoredQuants?: true; keepStoredKQuants?: true } {
  return w === 'stored' ? { weights: 'q8_0', keepStoredQuants: true } : w ? { weights: w } : { keepStoredKQuants: true };
}

/**
 * The backend the options ask for, checked now; the wasm backend is made once the model's config is
 * read (createWasmBackend: one memory, or several for a model that needs more than one holds).
 */
function backendSource(o: LoadOptions): BackendSource {
  const b = o.backend ?? 'wasm';
  if (typeof b === 'object' && b !== null) return b;
  if (o.weights !== undefined && !WEIGHT_STORAGE.includes(o.weights)) {
    throw new KvsieveError(`weights must be one of ${WEIGHT_STORAGE.join(', ')}, got ${JSON.stringify(o.weights)}`, { option: 'weights' });
  }
  if (o.threads !== undefined && !(Number.isInteger(o.threads) && o.threads >= 1 && o.threads <= 256)) {
    throw new KvsieveError(`threads must be a whole number from 1 to 256, got ${JSON.stringify(o.threads)}`, { option: 'threads' });
  }
  if (b === 'reference') {
    if (o.weights !== undefined && o.weights !== 'f32') {
      throw new KvsieveError(`weights ${o.weights} needs the wasm backend (the reference backend keeps f32)`, { option: 'weights' });
    }
    return new ReferenceBackend();
  }
  if (b === 'webgpu') {
    if (o.weights === 'bf16' || o.weights === 'stored') {
      throw new KvsieveError(`weights ${o.weights} is not available on the webgpu backend (f32, f16, q8_0 or q4_0; bf16 and stored K-quants need the wasm backend)`, { option: 'weights' });
    }
    const weights = o.weights;
    return async () => {
      const { WebGpuBackend } = await import('./backend/webgpu/backend.js');
      return WebGpuBackend.create(weights ? { weights } : {});
    };
  }
  if (b !== 'wasm') throw new KvsieveError(`backend must be "wasm", "reference", "webgpu" or a Backend instance, got ${JSON.stringify(b)}`, { option: 'backend' });
  const m = o.maxBytesPerMemory;
  if (m !== undefined && !(Number.isInteger(m) && m >= 2 ** 16 && m <= 2 ** 32)) {
    throw new KvsieveError(`maxBytesPerMemory must be a whole number of bytes from 64 KiB to 4 GiB, got ${JSON.stringify(m)}`, { option: 'maxBytesPerMemory' });
  }
  return async (config, storedType) => {
    const { createWasmBackend } = await import('./backend/wasm/node.js');
    return createWasmBackend(config, {
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      ...wasmWeights(o.weights),
      ...(m !== undefined ? { maxBytesPerMemory: m } : {}),
      ...(storedType ? { storedType } : {}),
    });
  };
}



function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read (${oneLine((e as Error).message, 100)})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KvsieveError(`${file}: invalid JSON (${jsonErrorReason(e)})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new KvsieveError(`${file}: invalid JSON (not an object: ${describeValue(v)})`);
  return v as Record<string, unknown>;
}

/**
 * Loads a model: a Hugging Face directory (config.json + safetensors, tokenizer.json), a GGUF file, a
 * llama2.c checkpoint (.bin, with its tokenizer beside it), a name found in the model search path
 * (KVSIEVE_MODEL_PATH, ~/.cache/kvsieve/models), or a Hugging Face id (`ORG/NAME`, `ORG/NAME/FOLDER`,
 * `...@REVISION`, `hf:ORG/NAME`), downloaded into the Hugging Face cache on first use
 * (`options.onProgress` follows it) and read from there afterwards. With no name, the default model
 * (stories260K), downloaded from karpathy/tinyllamas the first time when it is not found locally.
 */
export async function loadModel(pathOrName?: string, options: LoadOptions = {}): Promise<Model> {
  const batching = batcherOptions(options);
  const resolved: ResolvedModel = await locateModel(pathOrName, {
    ...options.hub,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const { source, made } = recorded(backendSource(options));
  try {
    return await loadResolved(resolved, source, batching);
  } catch (e) {
    if (typeof options.backend !== 'object') made()?.dispose();
    throw e;
  }
}

/**
 * Loads a model from its files' bytes (ModelFiles: the llama2.c `.bin` and `tok*.bin`, or
 * config.json, model.safetensors, tokenizer.json, ...), as the browser build does; `options` as for
 * loadModel (the Hub options aside).
 */
export async function loadModelFromFiles(files: ModelFiles, options: LoadOptions = {}): Promise<Model> {
  const batching = batcherOptions(options);
  const { source, made } = recorded(backendSource(options));
  try {
    return await modelFromFiles(files, source, batching);
  } catch (e) {
    if (typeof options.backend !== 'object') made()?.dispose();
    throw e;
  }
}

async function loadResolved(resolved: ResolvedModel, source: BackendSource, batching: BatcherOptions): Promise<Model> {
  if (resolved.format === 'hf') {
    const configFile = join(resolved.dir, 'config.json');
    const genFile = join(resolved.dir, 'generation_config.json');
    const config = parseHfConfig(readJson(configFile), configFile, existsSync(genFile) ? readJson(genFile) : null, genFile);
    const src = openSafetensors(resolved.weights);
    try {
      const backend = await backendFor(source, config);
      const weights = loadWeights(src, config, backend);
      const tokenizer = await loadHfTokenizer(resolved.dir, config.vocabSize);
      const llama = llamaModel(config, weights, backend);
      return new Model(config, tokenizer, llama, { format: 'hf', path: resolved.dir, dtype: storedDtype(src), backend: describeBackend(backend) }, batching);
    } finally {
      src.close();
    }
  }
  if (resolved.format === 'gguf') {
    const g = await openGguf(resolved.file);
    try {
      return await modelFromGguf(g, source, resolved.file, batching);
    } finally {
      g.tensors.close();
    }
  }
  const { config: base, tensors } = openLlama2cCheckpoint(resolved.checkpoint);
  try {
    // llama2.c's run.c ends a story when the model emits BOS; keep that convention for .bin models.
    const config: ModelConfig = { ...base, eosTokenIds: [...new Set([...base.eosTokenIds, 1])] };
    const backend = await backendFor(source, config);
    const weights = loadWeights(tensors, config, backend);
    const tokenizer = resolved.tokenizer ? loadLlama2cTokenizer(resolved.tokenizer, config.vocabSize) : null;
    const llama = llamaModel(config, weights, backend);
    return new Model(config, tokenizer, llama, { format: 'llama2c', path: resolved.checkpoint, dtype: 'F32', backend: describeBackend(backend) }, batching);
  } finally {
    tensors.close();
  }
}
