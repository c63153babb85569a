// Operating the server: health while loading, metrics, API key, CORS, body limits, and the OpenAI
// semantics clients rely on (n, logprobs, usage in streams, unknown models and fields, context length).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import OpenAI, { APIError } from 'openai';
import { loadModel } from '../../src/api.js';
import { createOpenAiServer, listen, type ServerOptions } from '../../src/server/openai.js';
import { WorkerEngine } from '../../src/server/worker-engine.js';
import { tempDir, writeChatModel } from '../helpers.js';

const t = tempDir();
const dir = writeChatModel(t.dir);
const model = await loadModel(dir, { backend: 'reference', kvMemory: 300 * 1280 });
const lines: string[] = [];
const servers: Server[] = [];
async function start(o: Partial<ServerOptions> = {}) {
  const server = createOpenAiServer({ model, modelName: 'stories', log: (l) => lines.push(l), ...o });
  servers.push(server);
  const addr = await listen(server, 0, '127.0.0.1');
  return `http://127.0.0.1:${addr.port}`;
}
const base = await start();
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
test.after(async () => {
  for (const s of servers) await new Promise<void>((r) => (s.close(() => r()), s.closeAllConnections()));
  model.dispose();
  t.cleanup();
});

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

test('/health is 503 while the engine thread loads the model, then reports the batch', async () => {
  const engine = new WorkerEngine(dir, { backend: 'reference' });
  const at = await start({ engine });
  try {
    const loading = await fetch(`${at}/health`);
    assert.equal(loading.status, 503);
    assert.deepEqual(await loading.json(), { status: 'loading' });
    assert.equal((await post(`${at}/v1/completions`, { prompt: 'x' })).status, 503);
    await engine.ready;
    const ok = (await (await fetch(`${at}/health`)).json()) as Record<string, unknown>;
    assert.equal(ok['status'], 'ok');
    assert.equal(ok['running'], 0);
  } finally {
    await engine.close();
  }
});

test('/metrics speaks Prometheus: requests, latency, tokens and the KV gauge', async () => {
  await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 7, temperature: 0 });
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /^kvsieve_requests_total\{endpoint="\/v1\/completions",status="200"\} [1-9]/m);
  assert.match(text, /^kvsieve_request_duration_seconds_count\{endpoint="\/v1\/completions"\} [1-9]/m);
  assert.match(text, /^kvsieve_time_to_first_token_seconds_count\{endpoint="\/v1\/completions"\} [1-9]/m);
  assert.match(text, /^kvsieve_generated_tokens_total [1-9]/m);
  assert.match(text, /^kvsieve_kv_limit_bytes 384000$/m);
  assert.match(text, /^kvsieve_sequences_running 0$/m);
  assert.ok(lines.some((l) => /^POST \/v1\/completions 200 5\+7 tokens \d+\.\d{3}s$/.test(l)), lines.join('\n'));
});

test('n samples share one prompt; logprobs and usage in the stream; seeds reported', async () => {
  const r = await client.chat.completions.create({ model: 'stories', messages: [{ role: 'user', content: 'Tell me a story' }], n: 3, max_tokens: 12, seed: 4, logprobs: true, top_logprobs: 2 });
  assert.equal(r.choices.length, 3);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage!.completion_tokens, 36);
  for (const c of r.choices) {
    assert.equal(c.logprobs!.content!.length, 12);
    for (const l of c.logprobs!.content!) {
      assert.ok(l.logprob <= 0 && l.top_logprobs.length === 2 && l.top_logprobs[0]!.logprob >= l.top_logprobs[1]!.logprob);
      assert.deepEqual(l.bytes, l.token.startsWith('<0x') ? l.bytes : [...Buffer.from(l.token)]);
    }
  }
  assert.ok(new Set(r.choices.map((c) => c.message.content)).size > 1, 'samples differ (seed + index)');
  const stream = await client.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 6, stream: true, stream_options: { include_usage: true }, logprobs: 1, temperature: 0 });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const last = chunks.at(-1)!;
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage!.completion_tokens, 6);
  assert.equal(chunks.flatMap((c) => c.choices[0]?.logprobs?.tokens ?? []).length, 6);
  // Without a seed, temperature 1 (OpenAI's default) gives different text run to run.
  const texts = new Set<string>();
  for (let i = 0; i < 4; i++) texts.add((await client.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 12 })).choices[0]!.text);
  assert.ok(texts.size > 1);
});

test('refusals name the field: unknown model 404, unsupported and unknown fields, context length, KV pool', async () => {
  const cases: [unknown, number, string | null, string | null, RegExp][] = [
    [{ model: 'gpt-4o', prompt: 'x' }, 404, 'model', 'model_not_found', /model "gpt-4o" does not exist/],
    [{ prompt: 'x', logit_bias: { 5: 10 } }, 400, 'logit_bias', 'unsupported_parameter', /"logit_bias" is not supported/],
    [{ prompt: 'x', presence_penalty: 0.5 }, 400, 'presence_penalty', 'unsupported_parameter', /presence_penalty/],
    [{ prompt: 'x', echo: true }, 400, 'echo', 'unsupported_parameter', /echo/],
    [{ prompt: 'x', frequency_penalty: 0, logit_bias: {}, user: 'me' }, 200, null, null, /./],
    [{ prompt: 'x', temprature: 0.5 }, 400, 'temprature', 'unknown_parameter', /unrecognized request argument supplied: temprature/],
    [{ prompt: 'x', n: 0 }, 400, 'n', null, /"n" must be/],
    [{ prompt: 'x', stream_options: { include_usage: true } }, 400, 'stream_options', null, /only allowed with "stream": true/],
    [{ prompt: 'Once upon a time '.repeat(200) }, 400, 'prompt', 'context_length_exceeded', /context is 512/],
    [{ prompt: 'Once upon a time '.repeat(4000) }, 400, 'prompt', 'context_length_exceeded', /more than 512 tokens/],
    [{ prompt: 'x', kvsieve: { press: 'r-kv', budget: 300, buffer: 100 } }, 400, 'kvsieve.budget', null, /kvsieve\.budget: the sequence needs \d+ bytes of KV cache for its budget/],
  ];
  for (const [body, status, param, code, pattern] of cases) {
    const res = await post(`${base}/v1/completions`, { max_tokens: 2, ...(body as object) });
    const what = JSON.stringify(body).slice(0, 80);
    assert.equal(res.status, status, what);
    if (status === 200) continue;
    const { error } = (await res.json()) as { error: { param: string | null; code: string | null; message: string } };
    assert.equal(error.param, param, what);
    assert.equal(error.code, code, what);
    assert.match(error.message, pattern, what);
  }
  const chat = await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f' } }] });
  assert.equal(chat.status, 400);
  assert.equal(((await chat.json()) as { error: { param: string } }).error.param, 'tools');
});

test('a body over the limit gets a 413 JSON answer, not a reset', async () => {
  const at = await start({ maxBodyBytes: 1000 });
  const res = await post(`${at}/v1/completions`, { prompt: 'x'.repeat(5000) });
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'request_too_large');
});

test('--api-key guards /v1 (not /health); --cors answers preflights and labels responses', async () => {
  const at = await start({ apiKey: 'sesame', cors: 'https://app.example' });
  assert.equal((await post(`${at}/v1/completions`, { prompt: 'x', max_tokens: 2 })).status, 401);
  assert.equal((await post(`${at}/v1/completions`, { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer wrong' })).status, 401);
  const ok = await post(`${at}/v1/completions`, { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer sesame' });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.equal((await fetch(`${at}/health`)).status, 200);
  const pre = await fetch(`${at}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  assert.equal(pre.status, 204);
  assert.match(pre.headers.get('access-control-allow-methods')!, /POST/);
  const keyed = new OpenAI({ baseURL: `${at}/v1`, apiKey: 'sesame', maxRetries: 0 });
  assert.equal((await keyed.models.list()).data[0]!.id, 'stories');
  await assert.rejects(new OpenAI({ baseURL: `${at}/v1`, apiKey: 'nope', maxRetries: 0 }).models.list(), (e: unknown) => e instanceof APIError && e.status === 401);
  // Without --cors there is no preflight to pass.
  assert.equal((await fetch(`${base}/v1/completions`, { method: 'OPTIONS' })).status, 405);
});
