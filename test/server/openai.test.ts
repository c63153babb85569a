import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { loadModel, type Model } from '../../src/api.js';
import { createOpenAiServer, listen } from '../../src/server/openai.js';
import { stories260K, tempDir } from '../helpers.js';

const TEMPLATE =
  "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

let model: Model;
let server: Server;
let base: string;
let cleanup: () => void;

before(async () => {
  // stories260K's HF files plus a small chat template, so both endpoints can be exercised.
  const t = tempDir();
  cleanup = t.cleanup;
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(stories260K('hf', f), join(t.dir, f));
  const cfg = JSON.parse(readFileSync(stories260K('hf', 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(t.dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: TEMPLATE }));
  model = await loadModel(t.dir);
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
  assert.deepEqual(body.usage, { prompt_tokens: 5, completion_tokens: 30, total_tokens: 35 });
  const models = await json(await fetch(base + '/v1/models'));
  assert.equal(models.data[0].id, 'stories');
});

test('chat completions stream server-sent events that add up to the non-streamed answer', async () => {
  const messages = [{ role: 'user', content: 'Tell me a story' }];
  const whole = await json(await post('/v1/chat/completions', { messages, max_tokens: 25 }));
  assert.equal(whole.object, 'chat.completion');
  const res = await post('/v1/chat/completions', { messages, max_tokens: 25, stream: true });
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
  const alone = await json(await post('/v1/completions', { prompt: 'Tom and Sue', max_tokens: 60, kvsieve: kv }));
  assert.equal(alone.kvsieve.peak_batch, 1);
  // A long generation keeps the batch running while the requests arrive: they join it.
  const long = model.generate('Once upon a time', { maxTokens: 3000, ignoreEos: true });
  const [a, b, c] = await Promise.all([
    post('/v1/completions', { prompt: 'Tom and Sue', max_tokens: 60, kvsieve: kv }).then(json),
    post('/v1/completions', { prompt: 'The sun', max_tokens: 40 }).then(json),
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
  const bad = await fetch(base + '/v1/completions', { method: 'POST', body: '{"prompt": ' });
  assert.equal(bad.status, 400);
  assert.match((await json(bad)).error.message, /not a JSON object/);
  assert.equal((await fetch(base + '/v1/completions')).status, 405);
});
