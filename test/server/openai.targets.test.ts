// The targets for a server in real use, through the official `openai` client on loopback,
// against the engine thread `kvsieve serve` runs (WorkerEngine) unless the test needs a fault injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError } from 'openai';
import { loadModel } from '../../src/api.js';
import { createOpenAiServer, listen, type ServerOptions } from '../../src/server/openai.js';
import type { WorkerLoadOptions } from '../../src/server/worker-engine.js';
import { faultyBackend } from '../faulty-backend.js';
import { tempDir, THINK_TEMPLATE, writeChatModel } from '../helpers.js';
import { closeServer, serveModel, streamedReply } from './serve.js';

const dirs = tempDir();
const chatModel = writeChatModel(dirs.dir);
test.after(() => dirs.cleanup());

/** The chat model served on an engine thread (as `kvsieve serve` runs it). */
const serve = (load: WorkerLoadOptions = {}, o: Partial<ServerOptions> = {}, path = chatModel) => serveModel(path, load, o);

const health = async (base: string) => (await fetch(`${base}/health`)).json() as Promise<{ running: number; waiting: number; kv: { reserved_bytes: number; used_bytes: number } }>;

const PROMPTS = ['Once upon a time', 'Tom had a red ball', 'The little cat', 'One day', 'Lily and Ben', 'The sun was hot', 'A big dog', 'The girl'];

test('64 concurrent streams are each identical to the same request alone, at temperature 0', async () => {
  const s = await serve();
  try {
    const prompts = Array.from({ length: 64 }, (_, i) => `${PROMPTS[i % 8]} ${['and', 'with', 'saw', 'had', 'went', 'liked', 'said', 'was'][i >> 3]}`);
    const streamed = async (prompt: string) => {
      const stream = await s.client.completions.create({ model: 'stories', prompt, max_tokens: 48, temperature: 0, stream: true });
      let text = '';
      for await (const c of stream) text += c.choices[0]?.text ?? '';
      return text;
    };
    const together = await Promise.all(prompts.map(streamed));
    const alone: string[] = [];
    for (const p of prompts) alone.push(await streamed(p));
    assert.deepEqual(together, alone);
    assert.ok(new Set(alone).size > 32, 'the prompts give different stories');
  } finally {
    await s.stop();
  }
});

test('1,000 requests with 10% aborted mid-stream: no error among the rest, the KV gauge back to 0, the engine idle within 1 s', async () => {
  let closedEarly = 0;
  const s = await serve({}, { maxQueue: 2000, log: (line) => void (line.endsWith('(client closed)') && closedEarly++) });
  try {
    let aborted = 0;
    let finished = 0;
    const errors: unknown[] = [];
    let next = 0;
    const one = async (i: number) => {
      const abort = i % 10 === 3;
      const ac = new AbortController();
      try {
        const stream = await s.client.chat.completions.create(
          { model: 'stories', messages: [{ role: 'user', content: `${PROMPTS[i % 8]} ${i}` }], max_tokens: abort ? 400 : 12 + (i % 9), temperature: 0.8, seed: i, stream: true },
          { signal: ac.signal },
        );
        let chunks = 0;
        let reason: string | null = null;
        for await (const c of stream) {
          if (c.choices[0]?.delta.content) chunks++;
          reason = c.choices[0]?.finish_reason ?? reason;
          if (abort && chunks === 3) {
            // The client gives up mid-stream: its connection closes.
            ac.abort();
            aborted++;
            return;
          }
        }
        assert.ok(!abort, `request ${i} ended before it could be aborted`);
        assert.ok(reason === 'length' || reason === 'stop', `request ${i}: finish reason ${reason}`);
        finished++;
      } catch (e) {
        errors.push(e);
      }
    };
    // 100 clients at a time, each taking the next request when its last one ends.
    await Promise.all(Array.from({ length: 100 }, async () => {
      while (next < 1000) await one(next++);
    }));
    const left = performance.now();
    assert.deepEqual(errors, []);
    assert.equal(aborted, 100);
    assert.equal(finished, 900);
    let h = await health(s.base);
    while ((h.running > 0 || h.kv.reserved_bytes > 0) && performance.now() - left < 1000) {
      await new Promise((r) => setTimeout(r, 20));
      h = await health(s.base);
    }
    assert.deepEqual([h.running, h.waiting, h.kv.reserved_bytes, h.kv.used_bytes], [0, 0, 0, 0], 'the gauge is back to 0 within 1 s');
    // The aborted ones closed their connections mid-stream (but a few whose story ended at once);
    // had they run on to their 400 tokens, the gauge above would not be 0 yet.
    assert.ok(closedEarly >= 90, `${closedEarly} responses cut short by their client`);
    // The engine thread (and this process) then use next to no CPU: nothing left running.
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - left))));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 500));
    const cpu = process.cpuUsage(cpu0);
    const share = (cpu.user + cpu.system) / 1000 / (performance.now() - t0);
    assert.ok(share < 0.1, `the process used ${(share * 100).toFixed(1)}% of a core after the last client left`);
  } finally {
    await s.stop();
  }
});

test('500 requests at once under a small --kv-memory: each succeeds or gets 429 with Retry-After; no 5xx; the server serves on', async () => {
  // Room for about six full-cache sequences of 100 tokens (stories260K: 1280 bytes per token).
  const s = await serve({ kvMemory: 6 * 128 * 1280 }, { maxQueue: 48 });
  try {
    const outcomes = await Promise.all(
      Array.from({ length: 500 }, async (_, i) => {
        try {
          const r = await s.client.completions.create({ model: 'stories', prompt: `${PROMPTS[i % 8]}`, max_tokens: 60, temperature: 0 });
          const kv = (r as unknown as { kvsieve: { stop_reason: string } }).kvsieve;
          assert.notEqual(kv.stop_reason, 'kv-memory');
          return 'ok';
        } catch (e) {
          if (e instanceof APIError && e.status === 429) {
            assert.equal(e.headers?.get('retry-after'), '1');
            return '429';
          }
          return `error ${e instanceof APIError ? e.status : String(e)}`;
        }
      }),
    );
    const count = (k: string) => outcomes.filter((x) => x === k).length;
    assert.deepEqual(outcomes.filter((x) => x !== 'ok' && x !== '429'), []);
    assert.ok(count('ok') >= 48 && count('429') > 0, `${count('ok')} succeeded, ${count('429')} got 429`);
    const h = await health(s.base);
    assert.equal(h.kv.reserved_bytes, 0);
    const after = await s.client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
    assert.equal(after.usage?.completion_tokens, 20);
  } finally {
    await s.stop();
  }
});

test('a forced allocation failure in one sequence fails that request alone; the others and the next succeed', async () => {
  const { backend, failNextAlloc } = faultyBackend();
  const model = await loadModel(chatModel, { backend });
  const server = createOpenAiServer({ model, modelName: 'stories', onInternalError: () => {} });
  const addr = await listen(server, 0, '127.0.0.1');
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${addr.port}/v1`, apiKey: 'none', maxRetries: 0 });
  try {
    const ask = (prompt: string, max = 80) => client.completions.create({ model: 'stories', prompt, max_tokens: max, temperature: 0 });
    const solo = await ask('Once upon a time');
    // The long one is running (its cache allocated at its first step) when the failing one arrives.
    const running = client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 80, temperature: 0, stream: true });
    const stream = await running;
    const texts: string[] = [];
    const reading = (async () => {
      for await (const c of stream) texts.push(c.choices[0]?.text ?? '');
    })();
    while (texts.length < 2) await new Promise((r) => setTimeout(r, 5));
    failNextAlloc();
    await assert.rejects(ask('The sun', 20), (e: unknown) => e instanceof APIError && e.status === 500 && /KV cache allocation failed for this sequence/.test(e.message));
    await reading;
    assert.equal(texts.join(''), solo.choices[0]!.text);
    const next = await ask('The sun', 20);
    assert.equal(next.usage?.completion_tokens, 20);
  } finally {
    await closeServer(server);
    model.dispose();
  }
});

test('a follow-up chat turn resumes the held conversation: its earlier turns are not read again, the reply is the same', async () => {
  const held = await serve();
  const fresh = await serve({}, { sessions: false });
  try {
    const turn1 = [{ role: 'user' as const, content: 'Tell me a story about a cat' }];
    const a = await held.client.chat.completions.create({ model: 'stories', messages: turn1, max_tokens: 40, temperature: 0 });
    const reply = a.choices[0]!.message.content!;
    const turn2 = [...turn1, { role: 'assistant' as const, content: reply }, { role: 'user' as const, content: 'What happened next?' }];
    const b = await held.client.chat.completions.create({ model: 'stories', messages: turn2, max_tokens: 40, temperature: 0 });
    const c = await fresh.client.chat.completions.create({ model: 'stories', messages: turn2, max_tokens: 40, temperature: 0 });
    const cached = b.usage!.prompt_tokens_details!.cached_tokens!;
    // The first turn's prompt and most of its reply come from the held cache (the template may
    // render the reply's last tokens differently from how they were generated).
    assert.ok(cached >= a.usage!.prompt_tokens + 1 && cached < b.usage!.prompt_tokens, `${cached} cached of ${b.usage!.prompt_tokens}`);
    assert.equal(c.usage!.prompt_tokens_details!.cached_tokens, 0);
    assert.equal(b.usage!.prompt_tokens, c.usage!.prompt_tokens);
    assert.equal(b.choices[0]!.message.content, c.choices[0]!.message.content, 'resuming a full cache gives the same reply');
  } finally {
    await held.stop();
    await fresh.stop();
  }
});

test('reasoning_content: <think> output is split from the answer, streamed or not; reasoning_format none leaves it inline', async () => {
  const t = tempDir();
  const s = await serve({}, {}, writeChatModel(t.dir, THINK_TEMPLATE, true));
  try {
    const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
    const whole = await s.client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0 });
    const message = whole.choices[0]!.message as typeof whole.choices[0]['message'] & { reasoning_content?: string };
    assert.ok(message.reasoning_content && message.reasoning_content.length > 5, 'reasoning before the first </think>');
    assert.ok(message.content && message.content.length > 5, 'an answer after it');
    assert.doesNotMatch(message.reasoning_content, /<\/?think>/);
    const { reasoning, content } = await streamedReply(await s.client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0, stream: true }));
    assert.equal(reasoning, message.reasoning_content);
    assert.equal(content, message.content);
    // The round trip: the reply goes back as the assistant's turn (its reasoning too) and the next turn runs.
    const next = await s.client.chat.completions.create({
      model: 'stories',
      messages: [...messages, { role: 'assistant', content: message.content, reasoning_content: message.reasoning_content } as never, { role: 'user', content: 'More' }],
      max_tokens: 10,
    });
    assert.equal(next.choices[0]!.finish_reason, 'length');
    // Switched off, the text comes as the model wrote it.
    const raw = await s.client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0, reasoning_format: 'none' } as never);
    const rawMessage = (raw as typeof whole).choices[0]!.message as { content: string; reasoning_content?: string };
    assert.equal(rawMessage.reasoning_content, undefined);
    assert.ok(rawMessage.content.startsWith(message.reasoning_content) && rawMessage.content.includes('</think>'), rawMessage.content);
  } finally {
    await s.stop();
    t.cleanup();
  }
});
