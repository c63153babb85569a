// Cancellation (cancel, break, AbortSignal), one sequence's memory failure, cache reuse across turns,
// log-probabilities and streamed samples: the library side of the server's needs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { InternalError } from '../../src/core/errors.js';
import { faultyBackend } from '../faulty-backend.js';
import { stories260K, tempDir, writeChatModel } from '../helpers.js';

const model = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
test.after(() => model.dispose());

const idle = () => {
  const s = model.kvStats();
  return { running: s.running, waiting: s.waiting, reservedBytes: s.reservedBytes, usedBytes: s.usedBytes };
};

test('leaving a for-await loop early cancels the generation and frees its cache at once', async () => {
  const other = model.generate('The sun', { maxTokens: 60, ignoreEos: true });
  const stream = model.generate('Once upon a time', { maxTokens: 400, ignoreEos: true });
  let chunks = 0;
  for await (const _ of stream) if (++chunks === 5) break;
  // No step has run since the break: the cache is already gone from the pool's books.
  assert.equal(model.kvStats().running, 1);
  const r = await stream.result;
  assert.equal(r.stopReason, 'cancelled');
  assert.equal(r.generatedTokens, 5);
  const solo = await model.complete('The sun', { maxTokens: 60, ignoreEos: true });
  assert.deepEqual((await other.result).generatedIds, solo.generatedIds, 'the other sequence is unaffected');
  assert.deepEqual(idle(), { running: 0, waiting: 0, reservedBytes: 0, usedBytes: 0 });
});

test('an AbortSignal cancels generate, complete and generateBatch; an aborted one never runs', async () => {
  const ac = new AbortController();
  const stream = model.generate('Once upon a time', { maxTokens: 400, ignoreEos: true, signal: ac.signal });
  let n = 0;
  for await (const c of stream) if (c.ids.length && ++n === 3) ac.abort();
  const r = await stream.result;
  assert.equal(r.stopReason, 'cancelled');
  assert.ok(r.generatedTokens >= 3 && r.generatedTokens <= 4, `${r.generatedTokens} tokens`);

  const done = await model.complete('Once upon a time', { maxTokens: 50, signal: AbortSignal.abort() });
  assert.equal(done.stopReason, 'cancelled');
  assert.equal(done.generatedTokens, 0);

  const ac2 = new AbortController();
  const batch = model.generateBatch(['Tom', 'Lily'], { maxTokens: 400, ignoreEos: true, n: 2, signal: ac2.signal });
  setTimeout(() => ac2.abort(), 30);
  const results = await batch;
  assert.equal(results.length, 4);
  for (const x of results) assert.equal(x.stopReason, 'cancelled');
  assert.deepEqual(idle(), { running: 0, waiting: 0, reservedBytes: 0, usedBytes: 0 });
});

test("a failed allocation ends that sequence alone; the batch and the next request go on", async () => {
  const { backend, failNextAlloc } = faultyBackend();
  const m = await loadModel(stories260K('stories260K.bin'), { backend });
  try {
    const solo = await m.complete('Once upon a time', { maxTokens: 100, ignoreEos: true });
    // Under 128 tokens in all, its cache is allocated once at its first step and never again.
    const a2 = m.generate('Once upon a time', { maxTokens: 100, ignoreEos: true });
    await new Promise((r) => setTimeout(r, 20));
    failNextAlloc();
    const b = m.generate('The sun', { maxTokens: 20 });
    await assert.rejects(b.result, (e: unknown) => e instanceof InternalError && /^KV cache allocation failed for this sequence: .*Array buffer allocation failed/.test(e.message));
    assert.deepEqual((await a2.result).generatedIds, solo.generatedIds);
    const c = await m.complete('The sun', { maxTokens: 20 });
    assert.equal(c.generatedTokens > 0, true);
    assert.equal(m.kvStats().running, 0);
  } finally {
    m.dispose();
  }
});

test('logprobs: the chosen token and the top alternatives under the model, greedy picks the top one', async () => {
  const r = model.generate('Once upon a time', { maxTokens: 6, logprobs: 3 });
  const lps = [];
  for await (const c of r) lps.push(...(c.logprobs ?? []));
  const res = await r.result;
  assert.deepEqual(lps.map((l) => l.id), res.generatedIds);
  for (const l of lps) {
    assert.equal(l.top.length, 3);
    assert.equal(l.top[0]!.id, l.id);
    assert.equal(l.top[0]!.logprob, l.logprob);
    assert.ok(l.logprob <= 0 && l.top[1]!.logprob <= l.top[0]!.logprob && l.top[2]!.logprob <= l.top[1]!.logprob);
  }
  // The same numbers as a log-softmax of the teacher-forced logits.
  const rows = model.logits([...res.promptIds, ...res.generatedIds]);
  const row = rows[res.promptIds.length - 1]!;
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
  assert.ok(Math.abs(row[res.generatedIds[0]!]! - lse - lps[0]!.logprob) < 1e-4);
  assert.throws(() => model.generate('x', { logprobs: 21 }), /logprobs must be a whole number from 0 to 20/);
});

test('generateSamples streams n samples of one prompt read once, each equal to its own run', async () => {
  const streams = model.generateSamples('Tom went', { n: 3, maxTokens: 20, temperature: 0.9, seed: 5 });
  const results = await Promise.all(streams.map((s) => s.result));
  for (let j = 0; j < 3; j++) {
    const alone = await model.complete('Tom went', { maxTokens: 20, temperature: 0.9, seed: 5 + j });
    assert.deepEqual(results[j]!.generatedIds, alone.generatedIds, `sample ${j}`);
  }
});

test('a chat session resumes each turn from the cache the previous turn left, with the same tokens as reading it all', async () => {
  const t = tempDir();
  try {
    const m = await loadModel(writeChatModel(t.dir), { backend: 'reference' });
    try {
      const chat = m.chatSession({ maxTokens: 30, system: 'Tell stories.' });
      const first = await chat.send('Once upon a time').result;
      assert.equal(first.cachedTokens, 0);
      assert.equal(m.kvStats().held, 1);
      const second = await chat.send('And then?').result;
      // The first turn's prompt and reply (but its last token, never fed) were not read again.
      assert.equal(second.cachedTokens, first.promptTokens + first.generatedTokens - 1);
      const fresh = await m.complete(null, { messages: chat.messages.slice(0, -1), maxTokens: 30 });
      assert.deepEqual(second.promptIds, fresh.promptIds);
      assert.deepEqual(second.generatedIds, fresh.generatedIds, 'resuming a full cache is exact');
      assert.equal(chat.messages.length, 5);
      chat.close();
      assert.equal(m.kvStats().held, 0);
      assert.equal(m.kvStats().heldBytes, 0);
    } finally {
      m.dispose();
    }
  } finally {
    t.cleanup();
  }
});

test('held caches are evicted, least recently held first, when running sequences need the room', async () => {
  const TOKEN = 5 * 4 * 8 * 2 * 4;
  const m = await loadModel(stories260K('stories260K.bin'), { backend: 'reference', kvMemory: 300 * TOKEN, kvBlockTokens: 16 });
  try {
    const a = await m.complete('Once upon a time', { maxTokens: 60, ignoreEos: true, reuseCache: true });
    const b = await m.complete('The sun was hot', { maxTokens: 60, ignoreEos: true, reuseCache: true });
    let s = m.kvStats();
    assert.equal(s.held, 2);
    assert.ok(s.heldBytes > 0 && s.reservedBytes === 0);
    // A long one grows into the room they hold: the older held cache goes (and only it).
    const long = await m.complete('Lily', { maxTokens: 150, ignoreEos: true });
    assert.equal(long.preemptions, 0);
    s = m.kvStats();
    assert.equal(s.held, 1, 'one held cache was evicted');
    // The survivor is the newer conversation: extending it resumes from its cache.
    const more = await m.complete(null, { promptIds: [...b.promptIds, ...b.generatedIds, 403], maxTokens: 5, reuseCache: true });
    const fromA = await m.complete(null, { promptIds: [...a.promptIds, ...a.generatedIds, 403], maxTokens: 5, reuseCache: true });
    assert.equal(more.cachedTokens, b.promptTokens + b.generatedTokens - 1, 'the newer one is still held');
    assert.equal(fromA.cachedTokens, 0, 'the older one was evicted');
  } finally {
    m.dispose();
  }
});
