import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GenerateOptions, Model } from '../api.js';
import { InternalError, KvsieveError, classify } from '../core/errors.js';
import type { CompressionSettings } from '../generate/compression.js';
import { BUILTIN_PRESSES } from '../press/table.js';
import type { PressDefinition } from '../press/types.js';
import type { GenerationResult, GenerationStream } from '../generate/batcher.js';
import type { ChatMessage } from '../tokenizer/types.js';

/**
 * An OpenAI-compatible HTTP API over one loaded model:
 *   GET  /v1/models
 *   POST /v1/completions        { prompt: string | number[], max_tokens, temperature, top_p, top_k, min_p, seed, stop, stream }
 *   POST /v1/chat/completions   { messages: [{ role, content }], ...the same }
 * KV compression per request: `kvsieve: { press, budget, buffer, window, ... }` (the press options of
 * `kvsieve presses`, camelCase), else the server's default. Requests run in the model's continuous batch.
 */
export interface ServerOptions {
  model: Model;
  /** Name reported in responses and /v1/models. */
  modelName: string;
  /** Compression used when a request names none (null: full cache). */
  compression?: CompressionSettings | null;
  /** The presses a request may name in `kvsieve.press` (default: the built-in table). */
  presses?: readonly PressDefinition[];
  /** Largest request body accepted (default 4 MiB). */
  maxBodyBytes?: number;
  /** Default max_tokens (default 256). */
  defaultMaxTokens?: number;
  /**
   * Hears of every internal fault answered with a 500 (default: one line on stderr), so the operator
   * sees it; the client gets the message, not the stack.
   */
  onInternalError?: (e: InternalError, request: string) => void;
}

class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

function readBody(req: IncomingMessage, limit: number): Promise<Json> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new RequestError(413, `request body over ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
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

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
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
};

/**
 * The request parameter behind a library option (null: none; the server sets it itself), and the name
 * the message gives it. What a request knows as its prompt is `prompt`, or `messages` for chat.
 */
function requestParam(option: string, request: { chat: boolean; body: Json | null }): { param: string; name: string } | null {
  if (option === 'prompt' || option === 'promptIds') return request.chat ? { param: 'messages', name: 'prompt' } : { param: 'prompt', name: 'prompt' };
  if (option.startsWith('compression.')) {
    const name = `kvsieve.${option.slice('compression.'.length)}`;
    return { param: name, name };
  }
  let param = REQUEST_PARAMS[option];
  if (param === undefined) return null;
  if (param === 'max_tokens' && request.body?.['max_completion_tokens'] != null) param = 'max_completion_tokens';
  return { param, name: param };
}

/**
 * The error answer: a RequestError with its status; bad input (KvsieveError) 400 naming the request
 * parameter; anything else is an internal fault, 500 server_error.
 */
function sendError(res: ServerResponse, e: unknown, request: { chat: boolean; body: Json | null; what: string }, o: ServerOptions): void {
  let status: number;
  let message: string;
  let param: string | null = null;
  if (e instanceof RequestError) {
    status = e.status;
    message = e.message;
    param = e.param;
  } else if (e instanceof KvsieveError) {
    status = 400;
    const p = e.option !== undefined ? requestParam(e.option, request) : null;
    message = p ? e.messageFor(p.name) : e.message;
    param = p?.param ?? null;
  } else {
    const fault = classify(e, 'request failed');
    status = 500;
    message = `internal error: ${fault.message}`;
    try {
      if (o.onInternalError) o.onInternalError(fault as InternalError, request.what);
      else process.stderr.write(`kvsieve serve: ${request.what}: internal error: ${fault.message}\n`);
    } catch {
      // a failing hook must not take the server down; the client still gets its answer
    }
  }
  const type = status >= 500 ? 'server_error' : 'invalid_request_error';
  if (res.headersSent) {
    res.write(`data: ${JSON.stringify({ error: { message, type, param } })}\n\n`);
    res.end();
  } else {
    sendJson(res, status, { error: { message, type, param, code: null } });
  }
}

const finishReason = (r: GenerationResult) => (r.stopReason === 'max-tokens' || r.stopReason === 'context' ? 'length' : 'stop');

/** Checks the generation fields shared by both endpoints and maps them to engine options. */
function generationOptions(body: Json, o: ServerOptions): GenerateOptions {
  const num = (key: string, check: (v: number) => boolean, what: string): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new RequestError(400, `"${key}" must be ${what}`, key);
    return v;
  };
  const maxTokens =
    num('max_completion_tokens', (v) => Number.isInteger(v) && v >= 1, 'a whole number >= 1') ??
    num('max_tokens', (v) => Number.isInteger(v) && v >= 1, 'a whole number >= 1') ??
    o.defaultMaxTokens ??
    256;
  const stopField = body['stop'];
  let stop: string[] = [];
  if (typeof stopField === 'string') stop = [stopField];
  else if (Array.isArray(stopField) && stopField.every((s) => typeof s === 'string')) stop = stopField as string[];
  else if (stopField !== undefined && stopField !== null) throw new RequestError(400, '"stop" must be a string or an array of strings', 'stop');
  num('n', (v) => v === 1, '1 (one choice per request)'); // validated only: one choice per request
  const options: GenerateOptions = { maxTokens, stop };
  const temperature = num('temperature', (v) => v >= 0 && v <= 2, 'a number in [0, 2]');
  if (temperature !== undefined) options.temperature = temperature;
  const topP = num('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  if (topP !== undefined) options.topP = topP;
  const topK = num('top_k', (v) => Number.isInteger(v) && v >= 0, 'a whole number >= 0');
  if (topK !== undefined) options.topK = topK;
  const minP = num('min_p', (v) => v >= 0 && v <= 1, 'a number in [0, 1]');
  if (minP !== undefined) options.minP = minP;
  const seed = num('seed', (v) => Number.isInteger(v) && v >= 0, 'a whole number >= 0');
  if (seed !== undefined) options.seed = seed;
  const kv = body['kvsieve'];
  if (kv !== undefined && kv !== null) {
    if (typeof kv !== 'object' || Array.isArray(kv) || typeof (kv as Json)['press'] !== 'string') {
      throw new RequestError(400, '"kvsieve" must be an object with a "press" name and its options', 'kvsieve');
    }
    if ((kv as Json)['press'] !== 'full') options.compression = pressFromTable(kv as Json, o.presses ?? BUILTIN_PRESSES, o.compression ?? null);
  } else if (o.compression) {
    options.compression = o.compression;
  }
  return options;
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
    else if (Array.isArray(content)) {
      // The text parts of a multi-part message.
      text = content.map((p) => (p && typeof p === 'object' && (p as Json)['type'] === 'text' ? String((p as Json)['text'] ?? '') : '')).join('');
    } else throw new RequestError(400, `messages[${i}].content must be a string`, 'messages');
    return { ...(m as Json), role, content: text };
  });
}

let counter = 0;
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

async function respond(
  req: IncomingMessage,
  res: ServerResponse,
  stream: GenerationStream,
  streaming: boolean,
  shape: { object: string; chunkObject: string; id: string; model: string; created: number; chat: boolean },
): Promise<void> {
  req.on('close', () => {
    if (!res.writableFinished) stream.cancel();
  });
  if (!streaming) {
    for await (const _ of stream);
    const r = await stream.result;
    const choice = shape.chat
      ? { index: 0, message: { role: 'assistant', content: r.text }, finish_reason: finishReason(r) }
      : { index: 0, text: r.text, finish_reason: finishReason(r), logprobs: null };
    sendJson(res, 200, {
      id: shape.id,
      object: shape.object,
      created: shape.created,
      model: shape.model,
      choices: [choice],
      usage: { prompt_tokens: r.promptTokens, completion_tokens: r.generatedTokens, total_tokens: r.promptTokens + r.generatedTokens },
      kvsieve: {
        stop_reason: r.stopReason,
        peak_kv_bytes: r.peakKvBytes,
        compressions: r.compressions,
        decode_tokens_per_second: r.decodeTokensPerSecond,
        peak_batch: r.peakBatchSize,
      },
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const event = (choice: Json) =>
    res.write(`data: ${JSON.stringify({ id: shape.id, object: shape.chunkObject, created: shape.created, model: shape.model, choices: [choice] })}\n\n`);
  if (shape.chat) event({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null });
  for await (const chunk of stream) {
    if (!chunk.text) continue;
    event(shape.chat ? { index: 0, delta: { content: chunk.text }, finish_reason: null } : { index: 0, text: chunk.text, finish_reason: null });
  }
  const r = await stream.result;
  event(shape.chat ? { index: 0, delta: {}, finish_reason: finishReason(r) } : { index: 0, text: '', finish_reason: finishReason(r) });
  res.write('data: [DONE]\n\n');
  res.end();
}

/** Creates the HTTP server (not yet listening). */
export function createOpenAiServer(o: ServerOptions): Server {
  const limit = o.maxBodyBytes ?? 4 * 2 ** 20;
  return createServer((req, res) => {
    void (async () => {
      const request = { chat: false, body: null as Json | null, what: `${req.method} ${req.url}` };
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const path = url.pathname.replace(/\/+$/, '');
        if (path === '/v1/models' || path === '/health') {
          if (req.method !== 'GET') throw new RequestError(405, `${path} takes GET`);
          if (path === '/health') return sendJson(res, 200, { status: 'ok' });
          return sendJson(res, 200, { object: 'list', data: [{ id: o.modelName, object: 'model', created: 0, owned_by: 'kvsieve' }] });
        }
        const chat = path === '/v1/chat/completions';
        request.chat = chat;
        if (!chat && path !== '/v1/completions') throw new RequestError(404, `no route ${req.method} ${url.pathname}`);
        if (req.method !== 'POST') throw new RequestError(405, `${path} takes POST`);
        const body = await readBody(req, limit);
        request.body = body;
        const options = generationOptions(body, o);
        const streaming = body['stream'] === true;
        let stream: GenerationStream;
        if (chat) {
          const messages = parseMessages(body);
          const tok = o.model.tokenizer;
          if (!tok?.applyChatTemplate) throw new RequestError(400, 'this model has no chat template: use /v1/completions', 'messages');
          const text = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
          stream = o.model.generate(null, { ...options, promptIds: tok.encode(text, { addBos: false }) });
        } else {
          const prompt = body['prompt'];
          if (typeof prompt === 'string') stream = o.model.generate(prompt, options);
          else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => Number.isInteger(x))) {
            stream = o.model.generate(null, { ...options, promptIds: prompt as number[] });
          } else throw new RequestError(400, '"prompt" must be a string or an array of token ids', 'prompt');
        }
        await respond(req, res, stream, streaming, {
          object: chat ? 'chat.completion' : 'text_completion',
          chunkObject: chat ? 'chat.completion.chunk' : 'text_completion',
          id: newId(chat ? 'chatcmpl' : 'cmpl'),
          model: o.modelName,
          created: Math.floor(Date.now() / 1000),
          chat,
        });
      } catch (e) {
        sendError(res, e, request, o);
      }
    })();
  });
}

/** Starts listening; resolves with the bound address. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}
