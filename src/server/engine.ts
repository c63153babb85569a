/**
 * What the HTTP server needs of a model, as messages: submit a request, receive its chunks and
 * results, cancel it, read the batch's gauge. Two implementations: `localEngine` runs a Model on the
 * calling thread (the library's path, tests, custom presses), and `WorkerEngine` (worker-engine.ts)
 * runs the same local engine on a worker thread, so compute never blocks the HTTP event loop.
 * Everything that crosses this interface is plain data (structured-clone safe).
 */
import type { GenerateOptions, Model, ModelInfo } from '../api.js';
import type { ModelConfig } from '../core/model-config.js';
import { InternalError, KvsieveError, classify } from '../core/errors.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { GenerationResult, GenerationStream } from '../generate/batcher.js';
import type { KvPoolStats } from '../generate/pool.js';
import type { TokenLogprob } from '../generate/sequence.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/types.js';

/** Generation options that can cross a thread: no callbacks, no signal; presses by name or definition. */
export type EngineOptions = Omit<GenerateOptions, 'onLogits' | 'signal' | 'promptIds' | 'messages' | 'chat' | 'system' | 'n' | 'forced'>;

export interface EngineRequest {
  /** A text prompt or token ids (completions); null with `messages` (chat). */
  prompt: string | number[] | null;
  /** A conversation rendered through the model's chat template. */
  messages?: ChatMessage[];
  options: EngineOptions;
  /** Samples of the prompt (read once, forked). */
  n: number;
  /**
   * The server splits reasoning from content: a harmony-format model (ModelInfo.harmony) then streams
   * its markers in the text, for the splitter (chat requests only).
   */
  splitReasoning?: boolean;
}

/** A token's log-probability with its text (the server has no tokenizer of its own). */
export interface EngineLogprob {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

export interface EngineChunk {
  text: string;
  ids: number[];
  logprobs?: EngineLogprob[];
}

/** What the engine tells of a request, in this order: start, then chunks and one done per sample, or error. */
export interface EngineSink {
  /**
   * The prompt was accepted: its length, whether the rendered prompt ends inside `<think>`, and whether
   * the text streams a harmony reply's markers (EngineRequest.splitReasoning on a harmony model).
   */
  start(info: { promptTokens: number; thinking: boolean; harmony: boolean }): void;
  chunk(index: number, chunk: EngineChunk): void;
  done(index: number, result: GenerationResult): void;
  /** The request failed (refused, or a sample failed; the other samples are cancelled). */
  error(e: KvsieveError | InternalError): void;
}

export interface EngineInfo {
  info: ModelInfo;
  config: ModelConfig;
}

export type EngineState = 'loading' | 'ready' | 'failed';

export interface Engine {
  readonly state: EngineState;
  /** Resolves when the model is loaded; rejects with why it could not be. */
  readonly ready: Promise<EngineInfo>;
  /** The batch's KV gauge as last known (null before the model is loaded). */
  stats(): KvPoolStats | null;
  /** Starts a request; the returned function cancels it (freeing its cache). */
  submit(request: EngineRequest, sink: EngineSink): () => void;
  close(): Promise<void>;
}

/** An error as plain data, to cross a thread. */
export interface WireError {
  kind: 'bad-input' | 'internal';
  message: string;
  option?: string;
  code?: string;
}

export function toWire(e: unknown): WireError {
  const c = classify(e, 'engine');
  if (c instanceof KvsieveError) {
    return { kind: 'bad-input', message: c.message, ...(c.option !== undefined ? { option: c.option } : {}), ...(c.code !== undefined ? { code: c.code } : {}) };
  }
  return { kind: 'internal', message: c.message };
}

export function fromWire(w: WireError): KvsieveError | InternalError {
  if (w.kind === 'internal') return new InternalError(w.message);
  return new KvsieveError(w.message, { ...(w.option !== undefined ? { option: w.option } : {}), ...(w.code !== undefined ? { code: w.code } : {}) });
}

/** Compression settings with presses by name: what a worker can receive (it knows the built-in table). */
export function compressionByName(c: CompressionSettings | undefined): CompressionSettings | undefined {
  if (!c) return c;
  const name = (p: unknown) => (p && typeof p === 'object' && 'name' in p ? (p as { name: string }).name : p);
  return { ...c, press: name(c.press) as string, ...(c.inner !== undefined ? { inner: name(c.inner) } : {}) };
}

/** A token's text and bytes: byte tokens (`<0xE2>`) are their byte, other pieces their UTF-8. */
function tokenText(tok: Tokenizer | null, id: number): { token: string; bytes: number[] } {
  if (!tok) return { token: '', bytes: [] };
  const piece = tok.tokenString(id) ?? '';
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  const token = tok.decode([id], { skipSpecial: false });
  return { token, bytes: byte ? [parseInt(byte[1]!, 16)] : [...Buffer.from(token, 'utf8')] };
}

function withText(tok: Tokenizer | null, lps: readonly TokenLogprob[]): EngineLogprob[] {
  return lps.map((l) => ({
    ...tokenText(tok, l.id),
    logprob: l.logprob,
    top: l.top.map((t) => ({ ...tokenText(tok, t.id), logprob: t.logprob })),
  }));
}

/** The prompt ends inside a reasoning block: the template opened `<think>` for the model (DeepSeek-R1 style). */
const OPENS_THINKING = /<think>\s*$/;
/** A harmony prompt that leaves the assistant's analysis channel open. */
const OPENS_ANALYSIS = /<\|channel\|>analysis<\|message\|>$/;

/** A Model on this thread as an engine. */
export function localEngine(model: Model): Engine {
  const ready = Promise.resolve({ info: model.info(), config: model.config });
  return {
    state: 'ready',
    ready,
    stats: () => model.kvStats(),
    submit(request, sink) {
      let streams: GenerationStream[] = [];
      try {
        let promptIds: number[];
        let thinking = false;
        const harmony = request.messages !== undefined && request.splitReasoning === true && model.info().harmony;
        if (request.messages) {
          const effort = request.options.reasoningEffort;
          const text = model.renderChat(request.messages, 'messages', effort !== undefined ? { reasoningEffort: effort } : {});
          thinking = (harmony ? OPENS_ANALYSIS : OPENS_THINKING).test(text);
          promptIds = model.encodeText(text, false);
        } else if (typeof request.prompt === 'string') {
          promptIds = model.encodeText(request.prompt);
        } else if (request.prompt) {
          promptIds = request.prompt;
        } else {
          throw new KvsieveError('no prompt', { option: 'prompt' });
        }
        streams = model.generateSamples(promptIds, { ...request.options, n: request.n, ...(harmony ? { keepSpecialTokens: true } : {}) });
        sink.start({ promptTokens: promptIds.length, thinking, harmony });
      } catch (e) {
        sink.error(classify(e, 'request failed'));
        return () => {};
      }
      let failed = false;
      const cancel = () => {
        for (const s of streams) s.cancel();
      };
      streams.forEach((stream, index) => {
        void (async () => {
          try {
            for await (const c of stream) {
              if (failed) return;
              sink.chunk(index, { text: c.text, ids: c.ids, ...(c.logprobs ? { logprobs: withText(model.tokenizer, c.logprobs) } : {}) });
            }
            const r = await stream.result;
            if (!failed) sink.done(index, r);
          } catch (e) {
            if (failed) return;
            failed = true;
            cancel();
            sink.error(classify(e, 'generation failed'));
          }
        })();
      });
      return cancel;
    },
    close: async () => model.dispose(),
  };
}
