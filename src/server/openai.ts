import { randomInt, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Model } from '../api.js';
import { InternalError, KvsieveError, classify } from '../core/errors.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { GenerationResult } from '../generate/batcher.js';
import { BUILTIN_PRESSES } from '../press/table.js';
import type { PressDefinition } from '../press/types.js';
import type { ChatMessage, ReasoningEffort } from '../tokenizer/types.js';
import { localEngine, type Engine, type EngineChunk, type EngineLogprob, type EngineOptions, type EngineRequest } from './engine.js';
import { ServerMetrics } from './metrics.js';
import { HarmonySplitter, ReasoningSplitter, type Splitter } from './reasoning.js';

/**
 * An OpenAI-compatible HTTP API over one model:
 *   GET  /v1/models, /health, /metrics
 *   POST /v1/completions        { prompt: string | number[], max_tokens, temperature, top_p, n, stop, seed, logprobs, stream, ... }
 *   POST /v1/chat/completions   { messages: [{ role, content }], max_completion_tokens, logprobs, top_logprobs, ...the same }
 * KV compression per request: `kvsieve: { press, budget, buffer, window, ... }` (the press options of
 * `kvsieve presses`, camelCase), else the server's default. Requests run in the model's continuous
 * batch, on the engine given: a worker thread's (`kvsieve serve`) or a Model on this thread.
 */
export interface ServerOptions {
  /** The engine requests run on (worker-engine.ts for `kvsieve serve`)... */
  engine?: Engine;
  /** ...or a model on this thread (the library's path; custom presses). One of the two. */
  model?: Model;
  /** Name reported in responses and /v1/models; a request naming another model gets 404. */
  modelName: string;
  /** Compression used when a request names none (null: full cache); read at each request. */
  compression?: CompressionSettings | null;
  /** The presses a request may name in `kvsieve.press` (default: the built-in table; custom ones need `model`). */
  presses?: readonly PressDefinition[];
  /** Largest request body accepted (default 4 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Default max_tokens (default 256). */
  defaultMaxTokens?: number;
  /** Requests accepted and waiting for their first token before new ones get 429 (default 256). */
  maxQueue?: number;
  /** Most samples one request may ask for with `n` (default 16). */
  maxSamples?: number;
  /** Required as `Authorization: Bearer KEY` on /v1/* (not /health, /metrics). */
  apiKey?: string;
  /** Origin allowed to call from a browser ('*' for any); without it there are no CORS headers. */
  cors?: string;
  /** Hold each chat conversation's KV cache for its next turn (default true; evicted LRU under the pool). */
  sessions?: boolean;
  /**
   * Reasoning in chat completions (a `<think>` block, or a harmony model's analysis channel): 'deepseek'
   * (default) in reasoning_content, 'none' left in content (harmony markers left out).
   */
  reasoningFormat?: ReasoningFormat;
  /** Time for a client to send the request headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Time for a client to send the whole request, body included (default 60 s). */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this (default 30 s: longer than a busy client may take to read a response to its end and reuse the connection). */
  keepAliveTimeoutMs?: number;
  /** A client that reads none of a streamed response for this long is disconnected (default 60 s). */
  writeTimeoutMs?: number;
  /** One line per request (method, path, status, tokens, duration); none by default. */
  log?: (line: string) => void;
  /**
   * Hears of every internal fault answered with a 500 (default: one line on stderr), so the operator
   * sees it; the client gets the message, not the stack.
   */
  onInternalError?: (e: InternalError, request: string) => void;
}

export type ReasoningFormat = 'deepseek' | 'none';
const REASONING_FORMATS: readonly ReasoningFormat[] = ['deepseek', 'none'];

class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

/**
 * The body as JSON, at most `limit` bytes: a larger one (by its content-length, or as it arrives) is
 * read to its end without being kept (so the client sees the answer, not a reset) and gets 413.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Json> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new RequestError(413, `request body is over ${limit} bytes`, null, 'request_too_large', { connection: 'close' });
    const declared = Number(req.headers['content-length'] ?? NaN);
    let size = 0;
    let over = declared > limit;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      if (over) {
        chunks.length = 0;
        if (size > 16 * limit) req.destroy(); // not worth reading on
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (over) return reject(tooLarge());
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
        resolve(v as Json);
      } catch (e) {
        reject(new RequestError(400, `request body is not a JSON object (${(e as Error).message})`));
      }
    });
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** Request parameters of the library options whose name differs; compression.X is kvsieve.X. */
const REQUEST_PARAMS: Readonly<Record<string, string>> = {
  maxTokens: 'max_tokens',
  topP: 'top_p',
  topK: 'top_k',
  minP: 'min_p',
  temperature: 'temperature',
  seed: 'seed',
  stop: 'stop',
  n: 'n',
  logprobs: 'logprobs',
};

interface RequestContext {
  chat: boolean;
  body: Json | null;
  what: string;
}

/**
 * The request parameter behind a library option, and the name the message gives it. What a request
 * knows as its prompt is `prompt`, or `messages` for chat; the KV pool's refusal is the prompt's
 * (a full cache reserves its prompt) or kvsieve.budget's (a compressed one reserves its budget).
 */
function requestParam(option: string, request: RequestContext): { param: string; name: string } | null {
  const prompt = request.chat ? { param: 'messages', name: 'prompt' } : { param: 'prompt', name: 'prompt' };
  if (option === 'prompt' || option === 'promptIds' || option === 'messages' || option === 'chat') return prompt;
  if (option === 'kvMemory') return request.body?.['kvsieve'] != null ? { param: 'kvsieve.budget', name: 'kvsieve.budget' } : prompt;
  if (option.startsWith('compression.')) {
    const name = `kvsieve.${option.slice('compression.'.length)}`;
    return { param: name, name };
  }
  let param = REQUEST_PARAMS[option];
  if (param === undefined) return null;
  if (param === 'max_tokens' && request.body?.['max_completion_tokens'] != null) param = 'max_completion_tokens';
  if (param === 'logprobs' && request.chat) param = 'top_logprobs';
  return { param, name: param };
}

/** The OpenAI error object and HTTP status for what a request failed with. */
function errorAnswer(e: unknown, request: RequestContext, o: ServerOptions): { status: number; error: Json; headers: Record<string, string> } {
  if (e instanceof RequestError) {
    const type = e.status === 429 ? 'rate_limit_error' : e.status >= 500 ? 'server_error' : 'invalid_request_error';
    return { status: e.status, error: { message: e.message, type, param: e.param, code: e.code }, headers: e.headers };
  }
  if (e instanceof KvsieveError) {
    const p = e.option !== undefined ? requestParam(e.option, request) : null;
    const message = p ? e.messageFor(p.name) : e.message;
    return { status: 400, error: { message, type: 'invalid_request_error', param: p?.param ?? null, code: e.code ?? null }, headers: {} };
  }
  const fault = classify(e, 'request failed');
  try {
    if (o.onInternalError) o.onInternalError(fault as InternalError, request.what);
    else process.stderr.write(`kvsieve serve: ${request.what}: internal error: ${fault.message}\n`);
  } catch {
    // a failing hook must not take the server down; the client still gets its answer
  }
  return { status: 500, error: { message: `internal error: ${fault.message}`, type: 'server_error', param: null, code: null }, headers: {} };
}

const finishReason = (r: GenerationResult) => (r.stopReason === 'eos' || r.stopReason === 'stop-string' ? 'stop' : 'length');

/** Fields of the OpenAI API kvsieve takes, per endpoint (plus its own: top_k, min_p, kvsieve, reasoning_format). */
const COMMON_FIELDS = ['model', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'stop', 'seed', 'logprobs', 'top_k', 'min_p', 'kvsieve'];
/** Fields that change nothing kvsieve does: accepted and left aside. */
const IGNORED_FIELDS = ['user', 'metadata', 'store', 'service_tier', 'safety_identifier', 'prompt_cache_key', 'parallel_tool_calls'];
/** OpenAI fields kvsieve does not implement, with the value that asks for nothing (accepted). */
const UNSUPPORTED: Readonly<Record<string, (v: unknown) => boolean>> = {
  presence_penalty: (v) => v === 0,
  frequency_penalty: (v) => v === 0,
  logit_bias: (v) => typeof v === 'object' && v !== null && Object.keys(v).length === 0,
  response_format: (v) => typeof v === 'object' && v !== null && (v as Json)['type'] === 'text',
  tools: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === 'none',
  functions: (v) => Array.isArray(v) && v.length === 0,
  function_call: (v) => v === 'none',
  echo: (v) => v === false,
  best_of: (v) => v === 1,
  suffix: (v) => v === '',
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text',
  audio: () => false,
  prediction: () => false,
  web_search_options: () => false,
  verbosity: () => false,
};
const CHAT_FIELDS = new Set([...COMMON_FIELDS, ...IGNORED_FIELDS, 'messages', 'top_logprobs', 'reasoning_format', 'reasoning_effort']);
const REASONING_EFFORTS: readonly ReasoningEffort[] = ['low', 'medium', 'high'];
const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, ...IGNORED_FIELDS, 'prompt']);

/** Refuses fields kvsieve would otherwise ignore silently: unknown ones, and OpenAI features it lacks. */
function checkFields(body: Json, chat: boolean): void {
  const known = chat ? CHAT_FIELDS : COMPLETION_FIELDS;
  for (const [key, value] of Object.entries(body)) {
    if (value === null || value === undefined || known.has(key)) continue;
    const acceptsDefault = UNSUPPORTED[key];
    if (acceptsDefault) {
      if (acceptsDefault(value)) continue;
      throw new RequestError(400, `"${key}" is not supported by kvsieve (leave it out)`, key, 'unsupported_parameter');
    }
    throw new RequestError(400, `unrecognized request argument supplied: ${key}`, key, 'unknown_parameter');
  }
}

interface ParsedRequest {
  engine: EngineRequest;
  stream: boolean;
  includeUsage: boolean;
  /** Top alternatives per token when log-probabilities are asked for; null when they are not. */
  logprobs: number | null;
  seed: number;
  reasoning: ReasoningFormat;
}

/** Checks a request's fields and maps them to an engine request. */
function parseRequest(body: Json, chat: boolean, o: ServerOptions): ParsedRequest {
  checkFields(body, chat);
  const model = body['model'];
  if (model != null && model !== o.modelName) {
    throw new RequestError(404, `the model ${JSON.stringify(String(model).slice(0, 80))} does not exist (this server has ${JSON.stringify(o.modelName)})`, 'model', 'model_not_found');
  }
  const num = (key: string, check: (v: number) => boolean, what: string): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new RequestError(400, `"${key}" must be ${what}`, key);
    return v;
  };
  const bool = (key: string): boolean | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw new RequestError(400, `"${key}" must be true or false`, key);
    return v;
  };
  const whole = (v: number) => Number.isInteger(v) && v >= 1;
  const maxTokens = num('max_completion_tokens', whole, 'a whole number >= 1') ?? num('max_tokens', whole, 'a whole number >= 1') ?? o.defaultMaxTokens ?? 256;
  const stopField = body['stop'];
  let stop: string[] = [];
  if (typeof stopField === 'string') stop = [stopField];
  else if (Array.isArray(stopField) && stopField.length <= 16 && stopField.every((s) => typeof s === 'string')) stop = stopField as string[];
  else if (stopField != null) throw new RequestError(400, '"stop" must be a string or an array of at most 16 strings', 'stop');
  const maxN = o.maxSamples ?? 16;
  const n = num('n', (v) => Number.isInteger(v) && v >= 1 && v <= maxN, `a whole number from 1 to ${maxN}`) ?? 1;
  // OpenAI's defaults: temperature 1; without a seed, a fresh one (kvsieve reports the one it drew).
  const temperature = num('temperature', (v) => v >= 0 && v <= 2, 'a number in [0, 2]') ?? 1;
  const seed = num('seed', (v) => Number.isInteger(v) && v >= 0, 'a whole number >= 0') ?? randomInt(2 ** 31);
  const options: EngineOptions = { maxTokens, stop, temperature, seed };
  const topP = num('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  if (topP !== undefined) options.topP = topP;
  const topK = num('top_k', (v) => Number.isInteger(v) && v >= 0, 'a whole number >= 0');
  if (topK !== undefined) options.topK = topK;
  const minP = num('min_p', (v) => v >= 0 && v <= 1, 'a number in [0, 1]');
  if (minP !== undefined) options.minP = minP;

  let logprobs: number | null = null;
  if (chat) {
    const want = bool('logprobs') ?? false;
    const top = num('top_logprobs', (v) => Number.isInteger(v) && v >= 0 && v <= 20, 'a whole number from 0 to 20');
    if (top !== undefined && !want) throw new RequestError(400, '"top_logprobs" needs "logprobs": true', 'top_logprobs');
    if (want) logprobs = top ?? 0;
  } else {
    const lp = num('logprobs', (v) => Number.isInteger(v) && v >= 0 && v <= 20, 'a whole number from 0 to 20');
    if (lp !== undefined) logprobs = lp;
  }
  if (logprobs !== null) options.logprobs = logprobs;

  const stream = bool('stream') ?? false;
  let includeUsage = false;
  const so = body['stream_options'];
  if (so != null) {
    if (!stream) throw new RequestError(400, '"stream_options" is only allowed with "stream": true', 'stream_options');
    if (typeof so !== 'object' || Array.isArray(so)) throw new RequestError(400, '"stream_options" must be an object', 'stream_options');
    const iu = (so as Json)['include_usage'];
    if (iu != null && typeof iu !== 'boolean') throw new RequestError(400, '"stream_options.include_usage" must be true or false', 'stream_options.include_usage');
    includeUsage = iu === true;
  }

  let reasoning = o.reasoningFormat ?? 'deepseek';
  const rf = body['reasoning_format'];
  if (rf != null) {
    if (!REASONING_FORMATS.includes(rf as ReasoningFormat)) throw new RequestError(400, `"reasoning_format" must be one of ${REASONING_FORMATS.join(', ')}`, 'reasoning_format');
    reasoning = rf as ReasoningFormat;
  }

  // the chat template's reasoning_effort (GPT-OSS's templates put it in the system message)
  const effort = body['reasoning_effort'];
  if (effort != null) {
    if (!REASONING_EFFORTS.includes(effort as ReasoningEffort)) throw new RequestError(400, `"reasoning_effort" must be one of ${REASONING_EFFORTS.join(', ')}`, 'reasoning_effort');
    options.reasoningEffort = effort as ReasoningEffort;
  }

  const kv = body['kvsieve'];
  if (kv != null) {
    if (typeof kv !== 'object' || Array.isArray(kv) || typeof (kv as Json)['press'] !== 'string') {
      throw new RequestError(400, '"kvsieve" must be an object with a "press" name and its options', 'kvsieve');
    }
    if ((kv as Json)['press'] !== 'full') options.compression = pressFromTable(kv as Json, o.presses ?? BUILTIN_PRESSES, o.compression ?? null);
  } else if (o.compression) {
    options.compression = o.compression;
  }
  if (chat && (o.sessions ?? true) && n === 1) options.reuseCache = true;

  let engine: EngineRequest;
  if (chat) engine = { prompt: null, messages: parseMessages(body), options, n };
  else {
    const prompt = body['prompt'];
    if (typeof prompt === 'string') engine = { prompt, options, n };
    else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => Number.isInteger(x))) engine = { prompt: prompt as number[], options, n };
    else throw new RequestError(400, '"prompt" must be a string or an array of token ids', 'prompt');
  }
  if (chat && reasoning === 'deepseek') engine.splitReasoning = true;
  return { engine, stream, includeUsage, logprobs, seed, reasoning };
}

/**
 * A request's compression with its press (and a wrapper's inner press) looked up in the server's table.
 * A request naming the server's own press takes the tensors the server was given for it (q-filters'
 * filters, triattention's stats: files read at start) unless it gives its own.
 */
function pressFromTable(kv: Json, presses: readonly PressDefinition[], served: CompressionSettings | null): CompressionSettings {
  const byName = (name: unknown) => (typeof name === 'string' ? presses.find((p) => p.name === name) : undefined);
  const press = byName(kv['press']);
  if (!press) {
    const name = typeof kv['press'] === 'string' ? JSON.stringify(kv['press'].slice(0, 40)) : 'of the wrong type';
    throw new RequestError(400, `kvsieve.press: unknown press ${name} (one of: ${presses.map((p) => p.name).join(', ')})`, 'kvsieve.press');
  }
  const inner = byName(kv['inner']);
  const servedName = served ? (typeof served.press === 'string' ? served.press : served.press.name) : null;
  const tensors = servedName === press.name ? press.options.filter((s) => s.type === 'tensor' && served![s.name] !== undefined && kv[s.name] === undefined) : [];
  return { ...Object.fromEntries(tensors.map((s) => [s.name, served![s.name]])), ...kv, press, ...(inner ? { inner } : {}) };
}

function parseMessages(body: Json): ChatMessage[] {
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0) throw new RequestError(400, '"messages" must be a non-empty array', 'messages');
  return messages.map((m, i) => {
    if (typeof m !== 'object' || m === null) throw new RequestError(400, `messages[${i}] must be an object`, 'messages');
    const { role, content } = m as Json;
    if (typeof role !== 'string') throw new RequestError(400, `messages[${i}].role must be a string`, 'messages');
    let text: string;
    if (typeof content === 'string') text = content;
    else if (content == null && role === 'assistant') text = '';
    else if (Array.isArray(content)) {
      // The text parts of a multi-part message.
      text = content.map((p) => (p && typeof p === 'object' && (p as Json)['type'] === 'text' ? String((p as Json)['text'] ?? '') : '')).join('');
    } else throw new RequestError(400, `messages[${i}].content must be a string`, 'messages');
    return { ...(m as Json), role, content: text };
  });
}

let counter = 0;
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

/**
 * The body of a response or a stream event as it is written: SSE events are queued while the socket
 * is full (backpressure) and written when it drains; a reader that drains nothing for `timeoutMs` is
 * disconnected (its generation is then cancelled by the response's close).
 */
class EventWriter {
  private queue: string[] = [];
  private waiting = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly res: ServerResponse,
    private readonly timeoutMs: number,
  ) {}

  write(data: string): void {
    if (this.res.destroyed) return;
    if (this.waiting) {
      this.queue.push(data);
      return;
    }
    if (!this.res.write(data)) this.wait();
  }

  private wait(): void {
    this.waiting = true;
    this.timer = setTimeout(() => this.res.destroy(), this.timeoutMs);
    this.timer.unref();
    this.res.once('close', () => clearTimeout(this.timer!));
    this.res.once('drain', () => {
      clearTimeout(this.timer!);
      this.waiting = false;
      const q = this.queue;
      this.queue = [];
      for (let i = 0; i < q.length; i++) {
        if (!this.waiting) {
          if (!this.res.write(q[i]!)) this.wait();
        } else this.queue.push(q[i]!);
      }
      if (this.ended && !this.waiting) this.res.end();
    });
  }

  private ended = false;

  end(data?: string): void {
    if (data) this.write(data);
    this.ended = true;
    if (!this.waiting) this.res.end();
  }
}

/** One choice of a response as it is built: its text, reasoning, log-probabilities and result. */
class Choice {
  text = '';
  reasoning = '';
  logprobs: EngineLogprob[] = [];
  result: GenerationResult | null = null;
  splitter: Splitter | null = null;
}

/** Creates the HTTP server (not yet listening). */
export function createOpenAiServer(o: ServerOptions): Server {
  if (!o.engine && !o.model) throw new KvsieveError('createOpenAiServer: give an engine or a model', { option: 'engine' });
  const engine = o.engine ?? localEngine(o.model!);
  const limit = o.maxBodyBytes ?? 4 * 2 ** 20;
  const maxQueue = o.maxQueue ?? 256;
  let queued = 0;
  const metrics = new ServerMetrics(() => engine.stats(), () => queued);
  const key = o.apiKey ? Buffer.from(`Bearer ${o.apiKey}`) : null;

  const authorized = (req: IncomingMessage) => {
    if (!key) return true;
    const got = Buffer.from(req.headers.authorization ?? '');
    return got.length === key.length && timingSafeEqual(got, key);
  };

  const server = createServer((req, res) => {
    const t0 = performance.now();
    const request: RequestContext = { chat: false, body: null, what: `${req.method} ${req.url}` };
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const endpoint = ['/v1/completions', '/v1/chat/completions', '/v1/models', '/health', '/metrics'].includes(path) ? path : 'other';
    const tokens = { prompt: 0, completion: 0 };
    let cancel: (() => void) | null = null;
    // The response's close is the one signal of a client gone (Node has fired the request's own by
    // the time its body is read): a generation still running then is cancelled, its cache freed.
    res.on('close', () => {
      const gone = !res.writableFinished;
      if (gone) cancel?.();
      const seconds = (performance.now() - t0) / 1000;
      const status = String(res.statusCode);
      metrics.requests.inc({ endpoint, status });
      metrics.duration.observe({ endpoint }, seconds);
      o.log?.(`${req.method} ${url.pathname} ${res.statusCode}${tokens.prompt + tokens.completion > 0 ? ` ${tokens.prompt}+${tokens.completion} tokens` : ''} ${seconds.toFixed(3)}s${gone ? ' (client closed)' : ''}`);
    });
    if (o.cors) {
      res.setHeader('access-control-allow-origin', o.cors);
      if (o.cors !== '*') res.setHeader('vary', 'origin');
    }
    const fail = (e: unknown) => {
      const { status, error, headers } = errorAnswer(e, request, o);
      if (res.headersSent) {
        // The stream has begun: the error is its last event, then the end marker clients wait for.
        if (!res.writableEnded) res.end(`data: ${JSON.stringify({ error })}\n\ndata: [DONE]\n\n`);
      } else sendJson(res, status, { error }, headers);
    };
    void (async () => {
      try {
        if (req.method === 'OPTIONS') {
          if (!o.cors) throw new RequestError(405, `${path} takes no OPTIONS (the server allows no cross-origin calls: see --cors)`);
          res.writeHead(204, {
            'access-control-allow-methods': 'GET, POST, OPTIONS',
            'access-control-allow-headers': req.headers['access-control-request-headers'] ?? 'authorization, content-type',
            'access-control-max-age': '600',
          });
          return void res.end();
        }
        if (path === '/health') {
          if (req.method !== 'GET') throw new RequestError(405, `${path} takes GET`);
          return health(res);
        }
        if (path === '/metrics') {
          if (req.method !== 'GET') throw new RequestError(405, `${path} takes GET`);
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          return void res.end(text);
        }
        if (!authorized(req)) throw new RequestError(401, 'incorrect API key: send it as Authorization: Bearer KEY', null, 'invalid_api_key');
        if (path === '/v1/models') {
          if (req.method !== 'GET') throw new RequestError(405, `${path} takes GET`);
          return sendJson(res, 200, { object: 'list', data: [{ id: o.modelName, object: 'model', created: 0, owned_by: 'kvsieve' }] });
        }
        const chat = path === '/v1/chat/completions';
        request.chat = chat;
        if (!chat && path !== '/v1/completions') throw new RequestError(404, `no route ${req.method} ${url.pathname}`);
        if (req.method !== 'POST') throw new RequestError(405, `${path} takes POST`);
        // A cross-site form or text/plain POST needs no CORS preflight; only JSON is taken.
        if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
          throw new RequestError(415, 'the request body must be JSON, sent with Content-Type: application/json');
        }
        const body = await readBody(req, limit);
        request.body = body;
        if (engine.state !== 'ready') {
          throw new RequestError(503, `the model is ${engine.state === 'loading' ? 'still loading' : 'not available'}`, null, null, { 'retry-after': '5' });
        }
        const parsed = parseRequest(body, chat, o);
        if (queued >= maxQueue) {
          throw new RequestError(429, `the server is busy: ${queued} requests are waiting for their first token (--max-queue ${maxQueue}); retry later`, null, 'queue_full', { 'retry-after': '1' });
        }
        await generate(res, parsed, chat, tokens, (c) => (cancel = c));
      } catch (e) {
        fail(e);
      }
    })();

    /** Runs a completion on the engine and writes it, streamed or whole; resolves when the response ends. */
    function generate(
      res: ServerResponse,
      p: ParsedRequest,
      chat: boolean,
      tokens: { prompt: number; completion: number },
      onCancel: (c: () => void) => void,
    ): Promise<void> {
      const id = newId(chat ? 'chatcmpl' : 'cmpl');
      const created = Math.floor(Date.now() / 1000);
      const n = p.engine.n;
      const choices = Array.from({ length: n }, () => new Choice());
      const writer = new EventWriter(res, o.writeTimeoutMs ?? 60_000);
      const head = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: o.modelName };
      const event = (choice: Json | null, extra: Json = {}) =>
        writer.write(`data: ${JSON.stringify({ ...head, choices: choice ? [choice] : [], ...(p.includeUsage ? { usage: null } : {}), ...extra })}\n\n`);
      let firstToken = true;
      let open = n;
      queued++;
      let inQueue = true;
      const leaveQueue = () => {
        if (inQueue) (inQueue = false), queued--;
      };
      const cached = () => choices[0]!.result?.cachedTokens ?? 0;
      const usage = () => ({
        prompt_tokens: tokens.prompt,
        completion_tokens: tokens.completion,
        total_tokens: tokens.prompt + tokens.completion,
        prompt_tokens_details: { cached_tokens: cached() },
      });
      return new Promise<void>((resolve) => {
        res.once('close', () => {
          leaveQueue();
          resolve();
        });
        const cancel = engine.submit(p.engine, {
          start(info) {
            tokens.prompt = info.promptTokens;
            metrics.promptTokens.inc(info.promptTokens);
            if (chat && p.reasoning === 'deepseek') for (const c of choices) c.splitter = info.harmony ? new HarmonySplitter(info.thinking) : new ReasoningSplitter(info.thinking);
            if (!p.stream) return;
            res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
            if (chat) choices.forEach((_, index) => event({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
          },
          chunk(index, chunk) {
            if (res.destroyed) return;
            if (firstToken && chunk.ids.length > 0) {
              firstToken = false;
              leaveQueue();
              metrics.firstToken.observe({ endpoint: chat ? '/v1/chat/completions' : '/v1/completions' }, (performance.now() - t0) / 1000);
            }
            tokens.completion += chunk.ids.length;
            metrics.generatedTokens.inc(chunk.ids.length);
            const c = choices[index]!;
            const offset = c.text.length;
            const part = c.splitter ? c.splitter.push(chunk.text) : { reasoning: '', content: chunk.text };
            c.text += part.content;
            c.reasoning += part.reasoning;
            if (chunk.logprobs) c.logprobs.push(...chunk.logprobs);
            if (p.stream) streamPart(index, part, chunk, offset);
          },
          done(index, result) {
            if (res.destroyed) return;
            const c = choices[index]!;
            c.result = result;
            metrics.compressions.inc(result.compressions);
            if (index === 0) metrics.cachedTokens.inc(result.cachedTokens);
            if (c.splitter) {
              const rest = c.splitter.flush();
              c.text += rest.content;
              c.reasoning += rest.reasoning;
              if (p.stream && (rest.content || rest.reasoning)) streamPart(index, rest, null, 0);
            }
            if (p.stream) {
              const fr = finishReason(result);
              event(chat ? { index, delta: {}, logprobs: null, finish_reason: fr } : { index, text: '', logprobs: null, finish_reason: fr });
            }
            if (--open > 0) return;
            leaveQueue();
            if (p.stream) {
              if (p.includeUsage) writer.write(`data: ${JSON.stringify({ ...head, choices: [], usage: usage() })}\n\n`);
              writer.end('data: [DONE]\n\n');
            } else sendJson(res, 200, whole());
          },
          error(e) {
            leaveQueue();
            fail(e);
          },
        });
        cancel && onCancel(cancel);
        if (res.destroyed) cancel();
      });

      function streamPart(index: number, part: { reasoning: string; content: string }, chunk: EngineChunk | null, offset: number): void {
        const lps = chunk?.logprobs;
        if (!part.content && !part.reasoning && !lps) return;
        if (chat) {
          const delta: Json = {};
          if (part.reasoning) delta['reasoning_content'] = part.reasoning;
          if (part.content || !part.reasoning) delta['content'] = part.content;
          event({ index, delta, logprobs: lps ? { content: lps.map(chatLogprob) } : null, finish_reason: null });
        } else {
          event({ index, text: part.content, logprobs: lps ? completionLogprobs(lps, offset) : null, finish_reason: null });
        }
      }

      function whole(): Json {
        const r0 = choices[0]!.result!;
        return {
          id,
          object: chat ? 'chat.completion' : 'text_completion',
          created,
          model: o.modelName,
          choices: choices.map((c, index) => {
            const r = c.result!;
            if (chat) {
              const message: Json = { role: 'assistant', content: c.text };
              if (c.splitter?.sawReasoning) message['reasoning_content'] = c.reasoning;
              return { index, message, logprobs: p.logprobs !== null ? { content: c.logprobs.map(chatLogprob) } : null, finish_reason: finishReason(r) };
            }
            return { index, text: c.text, logprobs: p.logprobs !== null ? completionLogprobs(c.logprobs, 0) : null, finish_reason: finishReason(r) };
          }),
          usage: usage(),
          kvsieve: {
            stop_reason: r0.stopReason,
            seed: p.seed,
            cached_tokens: r0.cachedTokens,
            peak_kv_bytes: r0.peakKvBytes,
            compressions: r0.compressions,
            decode_tokens_per_second: r0.decodeTokensPerSecond,
            peak_batch: r0.peakBatchSize,
            preemptions: r0.preemptions,
          },
        };
      }
    }
  });

  function health(res: ServerResponse): void {
    if (engine.state !== 'ready') return sendJson(res, 503, { status: engine.state }, { 'retry-after': '5' });
    const s = engine.stats();
    sendJson(res, 200, {
      status: 'ok',
      model: o.modelName,
      running: s?.running ?? 0,
      waiting: s?.waiting ?? 0,
      queued,
      held_conversations: s?.held ?? 0,
      kv: s
        ? { limit_bytes: Number.isFinite(s.limitBytes) ? s.limitBytes : null, reserved_bytes: s.reservedBytes, used_bytes: s.usedBytes, held_bytes: s.heldBytes }
        : null,
      preemptions: s?.preemptions ?? 0,
    });
  }

  server.headersTimeout = o.headersTimeoutMs ?? 10_000;
  server.requestTimeout = o.requestTimeoutMs ?? 60_000;
  server.keepAliveTimeout = o.keepAliveTimeoutMs ?? 30_000;
  return server;
}

function chatLogprob(l: EngineLogprob): Json {
  return { token: l.token, logprob: l.logprob, bytes: l.bytes, top_logprobs: l.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })) };
}

/** The legacy completions layout: parallel arrays, top alternatives as token -> logprob maps. */
function completionLogprobs(lps: readonly EngineLogprob[], offset: number): Json {
  const text_offset: number[] = [];
  let at = offset;
  for (const l of lps) {
    text_offset.push(at);
    at += l.token.length;
  }
  return {
    tokens: lps.map((l) => l.token),
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) => Object.fromEntries(l.top.map((t) => [t.token, t.logprob]))),
    text_offset,
  };
}

/** Starts listening; resolves with the bound address. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}

export { localEngine, type Engine, type EngineRequest, type EngineSink, type EngineInfo } from './engine.js';
export { WorkerEngine, type WorkerLoadOptions } from './worker-engine.js';
