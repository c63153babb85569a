/**
 * The loaded model's interface (Model, ChatSession, the generation options), free of any file or
 * Node-only call: src/api.ts loads models from paths and Hub ids in Node, src/api/files.ts from
 * bytes (the browser build, src/browser/).
 */
import type { Backend } from '../backend/backend.js';
import { KvsieveError } from '../core/errors.js';
import { Batcher, type BatcherOptions, type GenerationResult, type GenerationStream, type SubmitOptions } from '../generate/batcher.js';
import type { KvPoolStats } from '../generate/pool.js';
import { compressionFor, sequenceIdOf, type CompressionSettings } from '../generate/compression.js';
import { Sequence, type SequenceOptions } from '../generate/sequence.js';
import { kvBytesPerToken, type ModelConfig } from '../core/model-config.js';
import type { LayerObserver, LlamaModel, Segment } from '../model/llama.js';
import { parameterCount } from '../model/weights.js';
import type { ChatMessage, ChatTemplateOptions, ReasoningEffort, Tokenizer } from '../tokenizer/types.js';

/**
 * Share of a bounded backend memory left after loading that the KV pool takes by default: the rest
 * is headroom for activations, attention scratch, compressor state and a layer's re-layout.
 */
const DEFAULT_KV_SHARE = 0.7;

/**
 * The KV pool's limit when none is given: a share of what the backend's memory has left, or none. A
 * memory split in parts holds each layer's KV in its layer's part, so a sequence's bytes are spread
 * like the layers: the pool is what the part with the least room per layer allows over all layers.
 */
export function defaultKvMemory(backend: Backend, numLayers: number): number | undefined {
  const m = backend.memoryUsage?.();
  if (!m) return undefined;
  let room = m.limitBytes - m.usedBytes;
  if (m.parts) {
    room = Infinity;
    for (const p of m.parts) if (p.layers > 0) room = Math.min(room, ((p.limitBytes - p.usedBytes) * numLayers) / p.layers);
  }
  return Math.max(1, Math.floor(DEFAULT_KV_SHARE * room));
}

/** How the model's batch holds KV memory (LoadOptions' kvMemory, kvBlockTokens, onStep). */
export interface BatchingOptions {
  kvMemory?: number;
  kvBlockTokens?: number;
  onStep?: (stats: KvPoolStats) => void;
}

/** The batcher's options from the load options, checked. */
export function batcherOptions(o: BatchingOptions): BatcherOptions {
  const out: BatcherOptions = {};
  if (o.kvMemory !== undefined) {
    if (typeof o.kvMemory !== 'number' || !(o.kvMemory > 0)) {
      throw new KvsieveError(`kvMemory must be a number of bytes > 0, got ${JSON.stringify(o.kvMemory)}`, { option: 'kvMemory' });
    }
    out.kvMemory = o.kvMemory;
  }
  if (o.kvBlockTokens !== undefined) {
    if (!Number.isInteger(o.kvBlockTokens) || o.kvBlockTokens < 1) {
      throw new KvsieveError(`kvBlockTokens must be a whole number >= 1, got ${JSON.stringify(o.kvBlockTokens)}`, { option: 'kvBlockTokens' });
    }
    out.kvBlockTokens = o.kvBlockTokens;
  }
  if (o.onStep) out.onStep = o.onStep;
  return out;
}

/** compressionFor, its errors naming their option as a GenerateOptions path ('compression.budget'). */
function compressionIn(settings: CompressionSettings, config: ModelConfig): ReturnType<typeof compressionFor> {
  try {
    return compressionFor(settings, config);
  } catch (e) {
    throw e instanceof KvsieveError ? e.under('compression') : e;
  }
}

export interface GenerateOptions extends SequenceOptions {
  /** Feed these token ids instead of encoding a text prompt. */
  promptIds?: readonly number[];
  /** A conversation rendered through the model's chat template (generation prompt added) as the prompt. */
  messages?: readonly ChatMessage[];
  /** Wrap the prompt in the model's chat template (user turn, generation prompt added). */
  chat?: boolean;
  /** System message for chat mode. */
  system?: string;
  /** With `messages` or `chat`: the template's `reasoning_effort` (GPT-OSS's templates read it). */
  reasoningEffort?: ReasoningEffort;
  /** Strings that end generation; the text is cut before them. */
  stop?: readonly string[];
  /**
   * The streamed text (and the result's text) include special tokens' text: a harmony-format model's
   * `<|channel|>` ... markers, which say what is reasoning. Default false.
   */
  keepSpecialTokens?: boolean;
  /**
   * generateBatch: samples of each prompt (default 1). The prompt is read once, then forked: each
   * sample keeps its own cache and compresses on its own; sample j draws with seed (seed ?? 0) + j.
   */
  n?: number;
  /**
   * KV-cache compression: a press, its budget and options, and the schedule. Left out, the cache
   * keeps every token.
   */
  compression?: CompressionSettings;
  /** Cancels the generation when it aborts (as `stream.cancel()`): the result has stop reason 'cancelled'. */
  signal?: AbortSignal;
  /**
   * Keep this generation's cache when it ends (held in the KV pool, evicted least recently used first
   * when running sequences need the room), and start from a held cache whose prompt this prompt
   * extends (the next turn of a conversation) instead of reading those tokens again. A full cache
   * resumes from the common prefix; a compressed one only when the prompt extends all it read.
   */
  reuseCache?: boolean;
}

/**
 * A conversation with the model that keeps its KV cache between turns: each `send` adds the user's
 * message, generates the reply from the cache the previous turn left (only the new tokens are read),
 * and adds the reply to `messages` when it ends.
 */
export class ChatSession {
  readonly messages: ChatMessage[] = [];
  private busy = false;
  private lastIds: number[] = [];

  constructor(
    private readonly model: Model,
    private readonly defaults: GenerateOptions = {},
  ) {
    if (defaults.system !== undefined) this.messages.push({ role: 'system', content: defaults.system });
  }

  /** Sends the user's message; the stream's result is the reply (added to `messages` as it ends). */
  send(content: string, options: GenerateOptions = {}): GenerationStream {
    if (this.busy) throw new KvsieveError('chat session: the previous turn is still generating (await its result first)');
    const messages = [...this.messages, { role: 'user', content }];
    const { system: _system, chat: _chat, ...defaults } = this.defaults;
    const stream = this.model.generate(null, { ...defaults, ...options, messages, reuseCache: true });
    this.busy = true;
    this.messages.push({ role: 'user', content });
    stream.result.then(
      (r) => {
        this.busy = false;
        this.lastIds = [...r.promptIds, ...r.generatedIds];
        this.messages.push({ role: 'assistant', content: r.text });
      },
      () => {
        this.busy = false;
        this.messages.pop(); // the turn failed: the conversation is as it was
      },
    );
    return stream;
  }

  /** Frees the cache the conversation holds (the messages stay; a later send reads them again). */
  close(): void {
    this.model.forgetCache(this.lastIds);
  }
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
  /** The sliding window and how many layers attend through it (the others see the whole cache); null: none. */
  slidingWindow: { tokens: number; layers: number } | null;
  /** A mixture of experts: experts per sparse layer, chosen per token, each one's width, sparse layers. */
  experts: { count: number; perToken: number; width: number; layers: number } | null;
  /**
   * The vocabulary has the harmony format's markers (`<|start|>`, `<|channel|>`, `<|message|>`,
   * `<|end|>`) as special tokens (GPT-OSS): its replies say in-band which text is reasoning.
   */
  harmony: boolean;
}

const HARMONY_MARKERS = ['<|start|>', '<|channel|>', '<|message|>', '<|end|>'];

/** A loaded model: tokenizer, weights on a backend, and generation. */
export class Model {
  private disposed = false;
  private readonly batcher: Batcher;

  constructor(
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer | null,
    private readonly llama: LlamaModel,
    private readonly meta: { format: 'hf' | 'llama2c' | 'gguf'; path: string; dtype: string; backend: string },
    batching: BatcherOptions = {},
  ) {
    const kvMemory = batching.kvMemory ?? defaultKvMemory(llama.backend, config.numLayers);
    this.batcher = new Batcher(llama, tokenizer, { ...batching, ...(kvMemory !== undefined ? { kvMemory } : {}) });
  }

  /** The KV memory pool's gauge: limit, reserved and used bytes, running and waiting sequences, preemptions. */
  kvStats(): KvPoolStats {
    return this.batcher.stats();
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
      slidingWindow: c.slidingWindow !== undefined ? { tokens: c.slidingWindow, layers: (c.slidingLayers ?? []).filter(Boolean).length } : null,
      experts: c.moe ? { count: c.moe.numExperts, perToken: c.moe.expertsPerToken, width: c.moe.expertFfn, layers: c.moe.layers.filter(Boolean).length } : null,
      harmony: this.harmony,
    };
  }

  private harmonyFound: boolean | null = null;

  /** Whether each harmony marker encodes as one special token (ModelInfo.harmony); found once. */
  private get harmony(): boolean {
    if (this.harmonyFound === null) {
      const tok = this.tokenizer;
      this.harmonyFound =
        tok !== null &&
        HARMONY_MARKERS.every((m) => {
          const ids = tok.encode(m, { addBos: false });
          return ids.length === 1 && tok.isSpecial(ids[0]!);
        });
    }
    return this.harmonyFound;
  }

  /** The prompt's token ids, as `generate` would feed them. */
  encodePrompt(prompt: string | null, options: GenerateOptions = {}): number[] {
    if (options.promptIds) return [...options.promptIds];
    const effort = options.reasoningEffort !== undefined ? { reasoningEffort: options.reasoningEffort } : {};
    if (options.messages) return this.encodeText(this.renderChat(options.messages, 'messages', effort), false);
    if (prompt === null) throw new KvsieveError('no prompt: give a text prompt or promptIds', { option: 'promptIds' });
    if (options.chat) {
      const messages: ChatMessage[] = [];
      if (options.system !== undefined) messages.push({ role: 'system', content: options.system });
      messages.push({ role: 'user', content: prompt });
      return this.encodeText(this.renderChat(messages, 'chat', effort), false);
    }
    return this.encodeText(prompt);
  }

  /** The text the chat template makes of `messages`, generation prompt added. */
  renderChat(messages: readonly ChatMessage[], option = 'messages', template: Omit<ChatTemplateOptions, 'addGenerationPrompt'> = {}): string {
    const tok = this.requireTokenizer();
    if (!tok.applyChatTemplate) {
      throw new KvsieveError(`${option}: this model has no chat template (tokenizer_config.json chat_template)`, { option });
    }
    return tok.applyChatTemplate([...messages], { ...template, addGenerationPrompt: true });
  }

  /**
   * Encodes a prompt, refusing one that cannot fit the context before tokenising all of it (a
   * megabyte prompt would hold the engine for seconds): past the longest token times the context it
   * cannot fit; past 8 characters per token of context, a prefix of that length is encoded first
   * and a prefix already longer than the context (with room for its cut) settles it.
   */
  encodeText(text: string, addBos?: boolean): number[] {
    const tok = this.requireTokenizer();
    const ctx = this.config.maxPositions;
    const tooLong = (what: string) =>
      new KvsieveError(`prompt has ${what} but the model's context is ${ctx} (max_position_embeddings); shorten it`, { option: 'prompt', code: 'context_length_exceeded' });
    if (text.length > ctx * this.longestToken()) throw tooLong(`${text.length} characters, more than ${ctx} tokens`);
    if (text.length > ctx * 8) {
      const head = tok.encode(text.slice(0, ctx * 8), addBos === undefined ? {} : { addBos }).length;
      if (head > ctx + 16) throw tooLong(`more than ${ctx} tokens (${head} in its first ${ctx * 8} characters)`);
    }
    return tok.encode(text, addBos === undefined ? {} : { addBos });
  }

  private longest = 0;

  /** Characters of the longest vocabulary piece: no token covers more of a text. */
  private longestToken(): number {
    if (this.longest === 0) {
      const tok = this.requireTokenizer();
      let m = 1;
      for (let id = 0; id < tok.vocabSize; id++) m = Math.max(m, tok.tokenString(id)?.length ?? 0);
      this.longest = m;
    }
    return this.longest;
  }

  private requireTokenizer(): Tokenizer {
    if (!this.tokenizer) {
      throw new KvsieveError('this model has no tokenizer: give the prompt as token ids (promptIds)', { option: 'promptIds' });
    }
    return this.tokenizer;
  }

  private sequence(prompt: string | number[] | null, options: GenerateOptions): Sequence {
    this.checkAlive();
    checkPrompt(prompt);
    const ids = Array.isArray(prompt) ? prompt : this.encodePrompt(prompt, options);
    const factory = options.compression ? compressionIn(options.compression, this.config) : null;
    const backend = this.llama.backend;
    const kernels = backend.scoreKernels ? { kernels: backend.scoreKernels } : {};
    const sequence = { promptLength: ids.length, sequenceId: sequenceIdOf(ids, options.seed ?? 0) };
    const compressor = factory ? factory({ config: this.config, allocator: backend, ...kernels, ...sequence }) : null;
    return new Sequence(this.config, ids, options, compressor, backend);
  }

  /**
   * Generates from one prompt, streaming chunks as tokens are produced. Concurrent calls share the
   * model's continuous batch: each forward step advances every running sequence.
   */
  generate(prompt: string | null, options: GenerateOptions = {}): GenerationStream {
    return this.submit(this.sequence(prompt, options), options);
  }

  /**
   * Streams `options.n` samples of one prompt (default 1), read once and forked as in generateBatch:
   * sample j draws with seed (seed ?? 0) + j. `signal` cancels them all.
   */
  generateSamples(prompt: string | number[] | null, options: GenerateOptions = {}): GenerationStream[] {
    const seqs = this.samples(prompt ?? this.encodePrompt(null, options), options);
    for (const seq of seqs) this.batcher.check(seq);
    return seqs.map((seq, j) => this.submit(seq, j === 0 ? options : { ...options, reuseCache: false }));
  }

  /** A chat session: a conversation whose KV cache is kept between turns (see ChatSession). */
  chatSession(options: GenerateOptions = {}): ChatSession {
    return new ChatSession(this, options);
  }

  /** Frees held caches whose tokens are a prefix of `ids` (ChatSession.close). */
  forgetCache(ids: readonly number[]): void {
    this.batcher.forget(ids);
  }

  /** Queues a sequence in the batcher, wired to the options' signal and cache reuse. */
  private submit(seq: Sequence, options: GenerateOptions): GenerationStream {
    const o: SubmitOptions = {
      ...(options.reuseCache ? { reuseKey: reuseKey(options) } : {}),
      ...(options.keepSpecialTokens ? { keepSpecialTokens: true } : {}),
    };
    const stream = this.batcher.submit(seq, options.stop ?? [], o);
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) stream.cancel();
      else {
        const onAbort = () => stream.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
        stream.result.then(
          () => signal.removeEventListener('abort', onAbort),
          () => signal.removeEventListener('abort', onAbort),
        );
      }
    }
    return stream;
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
    prompts: string | readonly (string | number[])[],
    options: GenerateOptions | readonly GenerateOptions[] = {},
  ): Promise<GenerationResult[]> {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    const per = (i: number): GenerateOptions => (Array.isArray(options) ? (options[i] ?? {}) : (options as GenerateOptions));
    if (Array.isArray(options) && options.length !== list.length) {
      throw new KvsieveError(`generateBatch: ${list.length} prompts but ${options.length} option sets`);
    }
    const groups = list.map((p, i) => this.samples(p, per(i)));
    for (const seq of groups.flat()) this.batcher.check(seq);
    return Promise.all(groups.flatMap((g, i) => g.map((seq) => this.submit(seq, { ...per(i), reuseCache: false }).result)));
  }

  /**
   * The `n` samples of one prompt (options.n, default 1): sample j draws with seed (seed ?? 0) + j, so
   * it equals a run of its own with that seed; all but the first wait for the first to read the
   * prompt and take a copy of its cache (one prefill for all).
   */
  private samples(prompt: string | number[], options: GenerateOptions): Sequence[] {
    checkPrompt(prompt);
    const n = options.n ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new KvsieveError(`n must be a whole number from 1 to 1024, got ${JSON.stringify(n)}`, { option: 'n' });
    const ids = Array.isArray(prompt) ? prompt : this.encodePrompt(prompt, options);
    const seqs = Array.from({ length: n }, (_, j) => this.sequence(ids, j === 0 ? options : { ...options, seed: (options.seed ?? 0) + j }));
    for (const s of seqs.slice(1)) s.forkOf = seqs[0]!;
    return seqs;
  }

  /** Logits at every position of `ids` (teacher forcing): result[i] predicts ids[i + 1]. */
  logits(ids: readonly number[]): Float32Array[] {
    return this.teacherForce(ids, 'all');
  }

  /** `logits`, awaited: the one form a GPU model (backend 'webgpu') answers; any backend takes it. */
  async logitsAsync(ids: readonly number[]): Promise<Float32Array[]> {
    if (!this.llama.stepsAsync) return this.logits(ids);
    this.checkAlive();
    const blocks = this.prefillBlocks(ids, 'all');
    for (let b = blocks.next(); ; ) {
      if (b.done) return b.value;
      b = blocks.next(await this.llama.forwardAsync([b.value]));
    }
  }

  /**
   * Runs `ids` through the model (prefill only) and hands each layer's query rows to `onQueries` (rows
   * [T, numHeads * headDim] from `rowOffset`): after RoPE (default), or as RoPE receives them
   * (`at: 'rope-input'`: after q_norm, before the rotation). For calibration.
   */
  traceQueries(ids: readonly number[], onQueries: NonNullable<LayerObserver['queries']>, at: 'after-rope' | 'rope-input' = 'after-rope'): void {
    this.teacherForce(ids, 'none', at === 'rope-input' ? { ropeInputQueries: onQueries } : { queries: onQueries });
  }

  /** Feeds `ids` in prefill blocks into a fresh cache; returns the logits rows asked for. */
  private teacherForce(ids: readonly number[], logits: 'all' | 'none', observer?: LayerObserver): Float32Array[] {
    this.checkAlive();
    if (this.llama.stepsAsync) {
      throw new KvsieveError(`the ${this.meta.backend} backend's steps are awaited: use logitsAsync (query tracing needs the wasm or reference backend)`, { option: 'backend' });
    }
    const blocks = this.prefillBlocks(ids, logits, observer);
    for (let b = blocks.next(); ; ) {
      if (b.done) return b.value;
      b = blocks.next(this.llama.forward([b.value]));
    }
  }

  /**
   * `ids` in prefill blocks over a fresh cache: yields each block's segment, takes its logits back
   * (synchronous or awaited forwards alike), and returns the rows asked for.
   */
  private *prefillBlocks(ids: readonly number[], logits: 'all' | 'none', observer?: LayerObserver): Generator<Segment, Float32Array[], Float32Array> {
    const seq = new Sequence(this.config, ids, { maxTokens: 1 }, null, this.llama.backend);
    const vocab = this.config.vocabSize;
    const rows: Float32Array[] = [];
    try {
      for (let start = 0; start < ids.length; start += seq.prefillBlock) {
        const tokens = ids.slice(start, start + seq.prefillBlock);
        const positions = tokens.map((_, i) => start + i);
        const out = yield { cache: seq.cache, tokens, positions, logits, ...(observer ? { observer } : {}) };
        if (logits === 'all') for (let i = 0; i < tokens.length; i++) rows.push(out.slice(i * vocab, (i + 1) * vocab));
      }
    } finally {
      seq.release();
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

/**
 * A prompt is text or token ids. Anything else (a chat message array, as an OpenAI client would send)
 * would reach the tokenizer or the vocabulary check as objects: say what to pass instead.
 */
function checkPrompt(prompt: unknown): void {
  if (prompt === null || typeof prompt === 'string') return;
  if (Array.isArray(prompt) && prompt.every((x) => typeof x === 'number')) return;
  const isMessage = (x: unknown) => typeof x === 'object' && x !== null && 'role' in x && 'content' in x;
  if (isMessage(prompt) || (Array.isArray(prompt) && prompt.some(isMessage))) {
    throw new KvsieveError(
      'prompt must be a string or token ids, not chat messages ({ role, content }): pass the user message as the prompt with { chat: true } (and system: "..."), which applies the chat template',
      { option: 'prompt' },
    );
  }
  const got = Array.isArray(prompt) ? `an array holding ${typeof prompt.find((x) => typeof x !== 'number')}` : typeof prompt;
  throw new KvsieveError(`prompt must be a string or an array of token ids, got ${got}`, { option: 'prompt' });
}

/**
 * The identity of a generation's cache settings: a held cache is resumed only by a sequence whose
 * cache has the same dtype and compression (press by name, options as given).
 */
function reuseKey(o: GenerateOptions): string {
  const c = o.compression;
  const compression = c ? { ...c, press: typeof c.press === 'string' ? c.press : c.press.name, ...(c.inner ? { inner: typeof c.inner === 'string' ? c.inner : (c.inner as { name: string }).name } : {}) } : null;
  return JSON.stringify({ kvDtype: o.kvDtype ?? 'f32', compression });
}
