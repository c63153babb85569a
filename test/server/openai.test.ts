import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { loadModel, type Model } from '../../src/api.js';
import { InternalError } from '../../src/core/errors.js';
import { createOpenAiServer, listen } from '../../src/server/openai.js';
import { faultyBackend } from '../faulty-backend.js';
import { stories260K, tempDir, writeChatModel } from '../helpers.js';

let model: Model;
let server: Server;
let base: string;
let cleanup: () => void;

before(async () => {
  // stories260K's HF files plus a small chat template, so both endpoints can be exercised.
  const t = tempDir();
  cleanup = t.cleanup;
  model = await loadModel(writeChatModel(t.dir));
  server = createOpenAiServer({ model, modelName: 'stories', defaultMaxTokens: 20 });
  const addr = await listen(server, 0, '127.0.0.1');
  base = `http://127.0.0.1:${addr.port}`;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  model.dispose();
  cleanup();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
const json = (r: Response): Promise<any> => r.json();

const post = (path: string, body: unknown) =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('completions: the same greedy text as the library, usage counted, finish reason length', async () => {
  const lib = await model.complete('Once upon a time', { maxTokens: 30 });
  const res = await post('/v1/completions', { prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
  assert.equal(res.status, 200);
  const body = await json(res);
  assert.equal(body.object, 'text_completion');
  assert.equal(body.choices[0].text, lib.text);
  assert.equal(body.choices[0].finish_reason, 'length');
  assert.deepEqual(body.usage, { prompt_tokens: 5, completion_tokens: 30, total_tokens: 35, prompt_tokens_details: { cached_tokens: 0 } });
  const models = await json(await fetch(base + '/v1/models'));
  assert.equal(models.data[0].id, 'stories');
});

test('chat completions stream server-sent events that add up to the non-streamed answer', async () => {
  const messages = [{ role: 'user', content: 'Tell me a story' }];
  const whole = await json(await post('/v1/chat/completions', { messages, max_tokens: 25, temperature: 0.8, seed: 9 }));
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.kvsieve.seed, 9);
  const res = await post('/v1/chat/completions', { messages, max_tokens: 25, stream: true, temperature: 0.8, seed: 9 });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const events = (await res.text()).split('\n\n').filter(Boolean);
  assert.equal(events.at(-1), 'data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
  const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(text, whole.choices[0].message.content);
  assert.ok(text.length > 20);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
  // The template was applied: the prompt is longer than the user's words alone.
  assert.ok(whole.usage.prompt_tokens > model.encodePrompt('Tell me a story').length);
});

test('concurrent requests with their own compression run in one batch and match running alone', async () => {
  const kv = { press: 'r-kv', budget: 24, buffer: 8 };
  const alone = await json(await post('/v1/completions', { prompt: 'Tom and Sue', max_tokens: 60, kvsieve: kv, temperature: 0 }));
  assert.equal(alone.kvsieve.peak_batch, 1);
  // A long generation keeps the batch running while the requests arrive: they join it.
  const long = model.generate('Once upon a time', { maxTokens: 3000, ignoreEos: true });
  const [a, b, c] = await Promise.all([
    post('/v1/completions', { prompt: 'Tom and Sue', max_tokens: 60, kvsieve: kv, temperature: 0 }).then(json),
    post('/v1/completions', { prompt: 'The sun', max_tokens: 40, temperature: 0 }).then(json),
    post('/v1/completions', { prompt: [1, 403, 407], max_tokens: 10, temperature: 0.9, seed: 3 }).then(json),
  ]);
  assert.equal(a.choices[0].text, alone.choices[0].text);
  assert.ok(a.kvsieve.compressions > 0);
  assert.ok(a.kvsieve.peak_kv_bytes <= (24 + 8) * 5 * 4 * 8 * 2 * 4);
  assert.equal(b.usage.completion_tokens, 40);
  assert.equal(c.usage.prompt_tokens, 3);
  // They shared forward steps with the long generation, and the two longer ones with each other.
  for (const r of [a, b, c]) assert.ok(r.kvsieve.peak_batch >= 2, `peak batch ${r.kvsieve.peak_batch}`);
  assert.ok(Math.max(a.kvsieve.peak_batch, b.kvsieve.peak_batch) >= 3, `peak batches ${a.kvsieve.peak_batch}, ${b.kvsieve.peak_batch}`);
  long.cancel();
  assert.equal((await long.result).stopReason, 'cancelled');
});

test('malformed requests get a 4xx JSON error naming the problem', async () => {
  const cases: [string, unknown, number, RegExp][] = [
    ['/v1/completions', { prompt: 5 }, 400, /"prompt" must be/],
    ['/v1/completions', { prompt: 'x', max_tokens: -1 }, 400, /"max_tokens"/],
    ['/v1/completions', { prompt: 'x', temperature: 'hot' }, 400, /"temperature"/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'r-kv', budget: 4 } }, 400, /budget" \(4\) must be larger than window/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'magic' } }, 400, /unknown press "magic"/],
    ['/v1/completions', { prompt: Array.from({ length: 600 }, () => 5) }, 400, /context is 512/],
    ['/v1/chat/completions', { messages: [] }, 400, /"messages"/],
    ['/v1/nothing', {}, 404, /no route/],
  ];
  for (const [path, body, status, pattern] of cases) {
    const res = await post(path, body);
    assert.equal(res.status, status, `${path} ${JSON.stringify(body).slice(0, 60)}`);
    const j = await json(res);
    assert.match(j.error.message, pattern);
  }
  const bad = await fetch(base + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt": ' });
  assert.equal(bad.status, 400);
  assert.match((await json(bad)).error.message, /not a JSON object/);
  // A body a browser could send cross-site without a preflight (text/plain) is not taken.
  const plain = await fetch(base + '/v1/completions', { method: 'POST', body: '{"prompt": "x"}' });
  assert.equal(plain.status, 415);
  assert.equal((await fetch(base + '/v1/completions')).status, 405);
});

test('bad input is a 400 whose param names the request field, engine-side validation included', async () => {
  const cases: [string, unknown, string, RegExp][] = [
    ['/v1/completions', { prompt: 'x', max_tokens: -1 }, 'max_tokens', /"max_tokens" must be a whole number >= 1/],
    ['/v1/completions', { prompt: 'x', max_completion_tokens: 0 }, 'max_completion_tokens', /"max_completion_tokens"/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'r-kv', budget: 4 } }, 'kvsieve.budget', /^r-kv: option "kvsieve\.budget" \(4\) must be larger than window \(8\)$/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'r-kv', budget: 'lots' } }, 'kvsieve.budget', /option "kvsieve\.budget" must be an integer/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'magic' } }, 'kvsieve.press', /^kvsieve\.press: unknown press "magic"/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'r-kv', budget: 64, schedule: 'often' } }, 'kvsieve.schedule', /option "kvsieve\.schedule" must be one of/],
    ['/v1/completions', { prompt: 'x', kvsieve: { press: 'snapkv', budget: 64, sinks: 4 } }, 'kvsieve.sinks', /unknown option "kvsieve\.sinks"/],
    ['/v1/completions', { prompt: Array.from({ length: 600 }, () => 5) }, 'prompt', /600 tokens but the model's context is 512/],
    ['/v1/completions', { prompt: [1, 9999] }, 'prompt', /9999 is outside the vocabulary/],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], kvsieve: { press: 'h2o', budget: 0 } }, 'kvsieve.budget', /kvsieve\.budget/],
  ];
  for (const [path, body, param, pattern] of cases) {
    const res = await post(path, body);
    const what = `${path} ${JSON.stringify(body).slice(0, 80)}`;
    assert.equal(res.status, 400, what);
    const { error } = await json(res);
    assert.equal(error.type, 'invalid_request_error', what);
    assert.equal(error.param, param, what);
    assert.match(error.message, pattern, what);
    assert.doesNotMatch(error.message, /compression\./, what);
  }
});

test('an internal fault is a 500 server_error, streamed or not; the operator hears of it; the server goes on', async () => {
  const { backend, arm } = faultyBackend();
  const faulty = await loadModel(stories260K('stories260K.bin'), { backend });
  const heard: [InternalError, string][] = [];
  const srv = createOpenAiServer({ model: faulty, modelName: 'faulty', defaultMaxTokens: 5, onInternalError: (e, request) => heard.push([e, request]) });
  const addr = await listen(srv, 0, '127.0.0.1');
  const at = `http://127.0.0.1:${addr.port}`;
  const send = (body: unknown) => fetch(at + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  try {
    arm(() => new InternalError('kv cache: head 7 outside 0..3'));
    const res = await send({ prompt: 'Once upon a time' });
    assert.equal(res.status, 500);
    const { error } = await json(res);
    assert.deepEqual(error, { message: 'internal error: kv cache: head 7 outside 0..3', type: 'server_error', param: null, code: null });
    assert.equal(heard.length, 1);
    assert.ok(heard[0]![0] instanceof InternalError);
    assert.equal(heard[0]![1], 'POST /v1/completions');

    // Any other exception inside generation is internal too.
    arm(() => new TypeError('x is not a function'));
    const res2 = await send({ prompt: 'Once upon a time' });
    assert.equal(res2.status, 500);
    assert.equal((await json(res2)).error.message, 'internal error: generation step failed: TypeError: x is not a function');

    // Streaming: the headers are out, so the fault arrives as an error event that ends the stream.
    const streamed = await send({ prompt: 'Once upon a time', stream: true });
    assert.equal(streamed.status, 200);
    const events = (await streamed.text()).split('\n\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]', 'the stream still ends with its end marker');
    const last = JSON.parse(events.at(-2)!.slice('data: '.length));
    assert.equal(last.error.type, 'server_error');
    assert.match(last.error.message, /^internal error: generation step failed: TypeError/);
    assert.equal(heard.length, 3);

    arm(null);
    const ok = await send({ prompt: 'Once upon a time', max_tokens: 4 });
    assert.equal(ok.status, 200);
    assert.equal((await json(ok)).usage.completion_tokens, 4);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
    faulty.dispose();
  }
});

test('per-request random-pp and triattention: the same text as the library; a request naming the served press takes its statistics', async () => {
  const { calibrateTriAttention } = await import('../../src/calibrate/triattention.js');
  const stats = calibrateTriAttention(model, [model.encodePrompt('Once upon a time there was a girl who liked to play in the park with her dog.')]).stats;
  const served = createOpenAiServer({ model, modelName: 'stories', defaultMaxTokens: 20, compression: { press: 'triattention', budget: 40, stats } });
  const addr = await listen(served, 0, '127.0.0.1');
  const at = (body: unknown) =>
    fetch(`http://127.0.0.1:${addr.port}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(json);
  try {
    const rp = { press: 'random-pp', budget: 24, window: 8, buffer: 8 };
    const viaServer = await at({ prompt: 'Tom and Sue', max_tokens: 80, temperature: 0, seed: 2, kvsieve: rp });
    const lib = await model.complete('Tom and Sue', { maxTokens: 80, seed: 2, compression: rp });
    assert.equal(viaServer.choices[0].text, lib.text);
    assert.ok(viaServer.kvsieve.compressions > 0);
    // triattention named by the request with its own budget: the server's statistics apply
    const tri = await at({ prompt: 'Tom and Sue', max_tokens: 80, temperature: 0, kvsieve: { press: 'triattention', budget: 24, buffer: 8 } });
    const triLib = await model.complete('Tom and Sue', { maxTokens: 80, compression: { press: 'triattention', budget: 24, buffer: 8, stats } });
    assert.equal(tri.choices[0].text, triLib.text);
    assert.ok(tri.kvsieve.compressions > 0);
    // protect-prompt on any press, by request
    const pp = await at({ prompt: 'Tom and Sue', max_tokens: 40, kvsieve: { press: 'snapkv', budget: 24, buffer: 8, window: 4, protectPrompt: true } });
    assert.ok(pp.kvsieve.compressions > 0);
    // a press whose tensor the server does not hold is refused naming it
    const q = await fetch(`http://127.0.0.1:${addr.port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', kvsieve: { press: 'q-filters', budget: 24 } }),
    });
    assert.equal(q.status, 400);
    assert.equal((await json(q)).error.param, 'kvsieve.filters');
  } finally {
    await new Promise<void>((r) => served.close(() => r()));
  }
});
