import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from './backend/backend.js';
import { ReferenceBackend } from './backend/reference.js';
import { describeValue, jsonErrorReason, oneLine } from './core/describe.js';
import { KvsieveError } from './core/errors.js';
import { openGguf } from './model/open-gguf.js';
import { openLlama2cCheckpoint } from './formats/llama2c.js';
import { openSafetensors } from './formats/safetensors.js';
import type { TensorSource } from './formats/tensors.js';
import { Batcher, type GenerationResult, type GenerationStream } from './generate/batcher.js';
import { compressionFor, type CompressionSettings } from './generate/compression.js';
import { Sequence, type SequenceOptions } from './generate/sequence.js';
import { kvBytesPerToken, type ModelConfig } from './core/model-config.js';
import { parseHfConfig } from './formats/hf-config.js';
import { LlamaModel, type Segment } from './model/llama.js';
import { resolveModel, type ResolvedModel } from './model/resolve.js';
import { loadWeights, parameterCount } from './model/weights.js';
import { loadHfTokenizer } from './tokenizer/hf.js';
import { loadLlama2cTokenizer } from './tokenizer/llama2c.js';
import type { ChatMessage, Tokenizer } from './tokenizer/types.js';

export type WeightStorage = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';

export interface LoadOptions {
  /**
   * Kernel backend: 'wasm' (WebAssembly SIMD on worker threads, the default), 'reference' (plain
   * TypeScript, the oracle), or an instance.
   */
  backend?: 'wasm' | 'reference' | Backend;
  /** wasm: threads in all (default: the number of cores). */
  threads?: number;
  /**
   * wasm: how weights are stored, quantised at load from whatever the checkpoint holds (default
   * q8_0: about 1.06 bytes per parameter; f32 4, f16/bf16 2, q4_0 0.56).
   */
  weights?: WeightStorage;
}

const WEIGHT_STORAGE: readonly WeightStorage[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

async function makeBackend(o: LoadOptions): Promise<Backend> {
  const b = o.backend ?? 'wasm';
  if (typeof b !== 'string') return b;
  if (o.weights !== undefined && !WEIGHT_STORAGE.includes(o.weights)) {
    throw new KvsieveError(`--weights must be one of ${WEIGHT_STORAGE.join(', ')}, got "${String(o.weights)}"`);
  }
  if (b === 'reference') {
    if (o.weights !== undefined && o.weights !== 'f32') throw new KvsieveError(`--weights ${o.weights} needs the wasm backend (the reference backend keeps f32)`);
    return new ReferenceBackend();
  }
  if (b !== 'wasm') throw new KvsieveError(`--backend must be wasm or reference, got "${String(b)}"`);
  const { createKernels } = await import('./backend/wasm/node.js');
  const { WasmBackend } = await import('./backend/wasm/backend.js');
  return new WasmBackend(await createKernels(o.threads !== undefined ? { threads: o.threads } : {}), o.weights ? { weights: o.weights } : {});
}

export interface GenerateOptions extends SequenceOptions {
  /** Feed these token ids instead of encoding a text prompt. */
  promptIds?: readonly number[];
  /** Wrap the prompt in the model's chat template (user turn, generation prompt added). */
  chat?: boolean;
  /** System message for chat mode. */
  system?: string;
  /** Strings that end generation; the text is cut before them. */
  stop?: readonly string[];
  /**
   * KV-cache compression: a press, its budget and options, and the schedule. Left out, the cache
   * keeps every token.
   */
  compression?: CompressionSettings;
}

export interface ModelInfo {
  format: 'hf' | 'llama2c' | 'gguf';
  /** Kernel backend and weight storage. */
  backend: string;
  path: string;
  architecture: string;
  parameters: number;
  dtype: string;
  contextLength: number;
  kvBytesPerToken: number;
  weightBytes: number;
  layers: number;
  hiddenSize: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  tokenizer: 'hf' | 'llama2c' | null;
  chatTemplate: boolean;
}

/** A loaded model: tokenizer, weights on a backend, and generation. */
export class Model {
  private disposed = false;
  private readonly batcher: Batcher;

  constructor(
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer | null,
    private readonly llama: LlamaModel,
    private readonly meta: { format: 'hf' | 'llama2c' | 'gguf'; path: string; dtype: string; backend: string },
  ) {
    this.batcher = new Batcher(llama, tokenizer);
  }

  info(): ModelInfo {
    const c = this.config;
    return {
      format: this.meta.format,
      backend: this.meta.backend,
      path: this.meta.path,
      architecture: c.architecture,
      parameters: parameterCount(c),
      dtype: this.meta.dtype,
      contextLength: c.maxPositions,
      kvBytesPerToken: kvBytesPerToken(c),
      weightBytes: this.llama.weightBytes(),
      layers: c.numLayers,
      hiddenSize: c.hiddenSize,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
      tokenizer: this.tokenizer?.kind ?? null,
      chatTemplate: this.tokenizer?.applyChatTemplate !== undefined,
    };
  }

  /** The prompt's token ids, as `generate` would feed them. */
  encodePrompt(prompt: string | null, options: GenerateOptions = {}): number[] {
    if (options.promptIds) return [...options.promptIds];
    if (prompt === null) throw new KvsieveError('no prompt: give a text prompt or prompt ids');
    const tok = this.requireTokenizer();
    if (options.chat) {
      if (!tok.applyChatTemplate) throw new KvsieveError('this model has no chat template (tokenizer_config.json chat_template); drop --chat');
      const messages: ChatMessage[] = [];
      if (options.system !== undefined) messages.push({ role: 'system', content: options.system });
      messages.push({ role: 'user', content: prompt });
      return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addBos: false });
    }
    return tok.encode(prompt);
  }

  private requireTokenizer(): Tokenizer {
    if (!this.tokenizer) throw new KvsieveError('this model has no tokenizer: pass prompt ids (--prompt-ids 1,2,3)');
    return this.tokenizer;
  }

  private sequence(prompt: string | number[] | null, options: GenerateOptions): Sequence {
    this.checkAlive();
    const ids = Array.isArray(prompt) ? prompt : this.encodePrompt(prompt, options);
    const factory = options.compression ? compressionFor(options.compression, this.config) : null;
    const compressor = factory ? factory(this.config, ids.length, this.llama.backend.scoreKernels) : null;
    return new Sequence(this.config, ids, options, compressor, this.llama.backend);
  }

  /**
   * Generates from one prompt, streaming chunks as tokens are produced. Concurrent calls share the
   * model's continuous batch: each forward step advances every running sequence.
   */
  generate(prompt: string | null, options: GenerateOptions = {}): GenerationStream {
    return this.batcher.submit(this.sequence(prompt, options), options.stop ?? []);
  }

  /** Generates to the end and returns the result. */
  async complete(prompt: string | null, options: GenerateOptions = {}): Promise<GenerationResult> {
    const stream = this.generate(prompt, options);
    for await (const _ of stream);
    return stream.result;
  }

  /**
   * Decodes several prompts together: one forward step advances every sequence, each with its own
   * cache, positions and sampler. Prompts are texts or token id arrays; options are shared or given
   * per prompt.
   */
  async generateBatch(
    prompts: readonly (string | number[])[],
    options: GenerateOptions | readonly GenerateOptions[] = {},
  ): Promise<GenerationResult[]> {
    const per = (i: number): GenerateOptions => (Array.isArray(options) ? (options[i] ?? {}) : (options as GenerateOptions));
    if (Array.isArray(options) && options.length !== prompts.length) {
      throw new KvsieveError(`generateBatch: ${prompts.length} prompts but ${options.length} option sets`);
    }
    const seqs = prompts.map((p, i) => this.sequence(p, per(i)));
    return Promise.all(seqs.map((seq, i) => this.batcher.submit(seq, per(i).stop ?? []).result));
  }

  /** Logits at every position of `ids` (teacher forcing): result[i] predicts ids[i + 1]. */
  logits(ids: readonly number[]): Float32Array[] {
    return this.teacherForce(ids, 'all');
  }

  /**
   * Runs `ids` through the model (prefill only) and hands each layer's query rows, after RoPE, to
   * `onQueries` (rows [T, numHeads * headDim] from `rowOffset`). For calibration.
   */
  traceQueries(ids: readonly number[], onQueries: NonNullable<Segment['onQueries']>): void {
    this.teacherForce(ids, 'none', onQueries);
  }

  /** Feeds `ids` in prefill blocks into a fresh cache; returns the logits rows asked for. */
  private teacherForce(ids: readonly number[], logits: 'all' | 'none', onQueries?: Segment['onQueries']): Float32Array[] {
    this.checkAlive();
    const seq = new Sequence(this.config, ids, { maxTokens: 1 }, null, this.llama.backend);
    const vocab = this.config.vocabSize;
    const rows: Float32Array[] = [];
    try {
      for (let start = 0; start < ids.length; start += seq.prefillBlock) {
        const tokens = ids.slice(start, start + seq.prefillBlock);
        const positions = tokens.map((_, i) => start + i);
        const out = this.llama.forward([{ cache: seq.cache, tokens, positions, logits, onQueries }]);
        if (logits === 'all') for (let i = 0; i < tokens.length; i++) rows.push(out.slice(i * vocab, (i + 1) * vocab));
      }
    } finally {
      seq.cache.release();
    }
    return rows;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.llama.backend.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new KvsieveError('model was disposed');
  }
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

function describe(b: Backend): string {
  const w = b as Backend & { weightType?: string; threads?: number };
  return w.weightType ? `${b.name} (${w.weightType} weights, ${w.threads} threads)` : b.name;
}

function storedDtype(src: TensorSource): string {
  const kinds = new Set(src.list().map((t) => t.dtype));
  return [...kinds].join('+');
}

/**
 * Loads a model: a Hugging Face directory (config.json + safetensors, tokenizer.json), a llama2.c
 * checkpoint (.bin, with its tokenizer beside it), or a name found in the model search path
 * (KVSIEVE_MODEL_PATH). With no name, the default model (stories260K).
 */
export async function loadModel(pathOrName?: string, options: LoadOptions = {}): Promise<Model> {
  const resolved: ResolvedModel = resolveModel(pathOrName);
  const backend = await makeBackend(options);
  try {
    return await loadResolved(resolved, backend);
  } catch (e) {
    if (typeof options.backend !== 'object') backend.dispose();
    throw e;
  }
}

async function loadResolved(resolved: ResolvedModel, backend: Backend): Promise<Model> {
  if (resolved.format === 'hf') {
    const configFile = join(resolved.dir, 'config.json');
    const genFile = join(resolved.dir, 'generation_config.json');
    const config = parseHfConfig(readJson(configFile), configFile, existsSync(genFile) ? readJson(genFile) : null, genFile);
    const src = openSafetensors(resolved.weights);
    try {
      const weights = loadWeights(src, config, backend);
      const tokenizer = await loadHfTokenizer(resolved.dir, config.vocabSize);
      const llama = new LlamaModel(config, weights, backend);
      return new Model(config, tokenizer, llama, { format: 'hf', path: resolved.dir, dtype: storedDtype(src), backend: describe(backend) });
    } finally {
      src.close();
    }
  }
  if (resolved.format === 'gguf') {
    const g = await openGguf(resolved.file);
    try {
      const weights = loadWeights(g.tensors, g.config, backend);
      const llama = new LlamaModel(g.config, weights, backend);
      const dtype = [...new Set(g.tensors.list().map((t) => g.tensors.ggmlType(t.name)))].join('+');
      return new Model(g.config, g.tokenizer, llama, { format: 'gguf', path: resolved.file, dtype, backend: describe(backend) });
    } finally {
      g.tensors.close();
    }
  }
  const { config: base, tensors } = openLlama2cCheckpoint(resolved.checkpoint);
  try {
    // llama2.c's run.c ends a story when the model emits BOS; keep that convention for .bin models.
    const config: ModelConfig = { ...base, eosTokenIds: [...new Set([...base.eosTokenIds, 1])] };
    const weights = loadWeights(tensors, config, backend);
    const tokenizer = resolved.tokenizer ? loadLlama2cTokenizer(resolved.tokenizer, config.vocabSize) : null;
    const llama = new LlamaModel(config, weights, backend);
    return new Model(config, tokenizer, llama, { format: 'llama2c', path: resolved.checkpoint, dtype: 'F32', backend: describe(backend) });
  } finally {
    tensors.close();
  }
}
