// The page <-> worker protocol in one Node process: serveEngine on a fake worker scope, EngineClient on
// a fake Worker, the messages structured-cloned across as postMessage does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { EngineClient, EngineError } from '../../src/browser/client.js';
import type { FromEngine, ToEngine } from '../../src/browser/protocol.js';
import { serveEngine } from '../../src/browser/worker.js';
import type { KvTraceEvent } from '../../src/generate/sequence.js';
import { stories260K } from '../helpers.js';

function connected(): EngineClient {
  let toPage: ((e: { data: FromEngine }) => void) | null = null;
  const scope = {
    onmessage: null as ((e: { data: ToEngine }) => void) | null,
    postMessage: (m: FromEngine) => setImmediate(() => toPage?.({ data: structuredClone(m) })),
  };
  serveEngine(scope);
  return new EngineClient({
    postMessage: (m: ToEngine) => setImmediate(() => scope.onmessage?.({ data: structuredClone(m) })),
    addEventListener: (_type: 'message', l: (e: { data: FromEngine }) => void) => (toPage = l),
    terminate: () => {},
  });
}

const files = () => ({ 'stories260K.bin': new Uint8Array(readFileSync(stories260K('stories260K.bin'))), 'tok512.bin': new Uint8Array(readFileSync(stories260K('tok512.bin'))) });

test('load, generate with a trace, cancel: chunks, trace events and results cross as plain data', async () => {
  const engine = connected();
  await assert.rejects(engine.generate('Once', { maxTokens: 2 }).result, (e) => e instanceof EngineError && /no model loaded/.test(e.message));
  const loaded = await engine.load({ files: files() }, { backend: 'reference' });
  assert.equal(loaded.info.format, 'llama2c');
  assert.equal(loaded.threads, 1);

  const events: KvTraceEvent[] = [];
  const compression = { press: 'streaming-llm', budget: 8, buffer: 4 };
  const stream = engine.generate('Once upon a time', { maxTokens: 20, temperature: 0, compression, trace: true }, (e) => events.push(e));
  let text = '';
  for await (const chunk of stream) text += chunk.text;
  const r = await stream.result;
  assert.equal(text, r.text);
  assert.equal((await stream.header)?.press, 'streaming-llm');
  assert.deepEqual(events.map((e) => e.token), r.generatedIds);
  assert.ok(events.every((e) => e.positions.every((l) => l.every((h) => h.length <= 12))));
  assert.equal((await stream.traceResult).peakKvBytes, r.peakKvBytes);

  const long = engine.generate('Once upon a time', { maxTokens: 400, ignoreEos: true });
  for await (const _ of long) {
    long.cancel();
    break;
  }
  const c = await long.result;
  assert.equal(c.stopReason, 'cancelled');
  assert.ok(c.generatedTokens < 400);

  const left = engine.generate('Once upon a time', { maxTokens: 400, ignoreEos: true });
  for await (const _ of left) break; // leaving the loop cancels
  assert.equal((await left.result).stopReason, 'cancelled');
});

test('bad model files reach the page as one-line errors naming the file', async () => {
  const engine = connected();
  const f = files();
  await assert.rejects(
    engine.load({ files: { 'stories260K.bin': f['stories260K.bin'].subarray(0, 999) } }, { backend: 'reference' }),
    (e) => e instanceof EngineError && e.kind === 'KvsieveError' && /^stories260K\.bin: truncated/.test(e.message) && !e.message.includes('\n'),
  );
  await assert.rejects(engine.load({ files: { 'notes.txt': new Uint8Array(3) } }, { backend: 'reference' }), /model files: expected config\.json/);
});
