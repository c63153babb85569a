/**
 * The server under load (not a test): a random-weight model of Qwen2.5-0.5B's exact shape (written
 * into .cache/bench/ by src/model/random.ts, with stories260K's tokenizer and a chat template so chat
 * requests work; the text is noise, the work is real), served as `kvsieve serve` serves it.
 *
 *   1. /health latency while 8 streams decode: on the engine thread (WorkerEngine, what `kvsieve
 *      serve` runs) and, for comparison, with the model on the HTTP thread (localEngine).
 *   2. Time to first token of a follow-up chat turn: resuming the held conversation, against the same
 *      request on a server that holds none (both on one engine).
 *
 *   npx tsx bench/server.ts [--threads N] [--streams 8] [--tokens 64]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { loadModel } from '../src/api.js';
import { writeRandomModel } from '../src/model/random.js';
import { localEngine, type Engine } from '../src/server/engine.js';
import { createOpenAiServer, listen } from '../src/server/openai.js';
import { WorkerEngine } from '../src/server/worker-engine.js';
import { repoRoot, stories260K } from '../test/helpers.js';

const { values } = parseArgs({ options: { threads: { type: 'string' }, streams: { type: 'string', default: '8' }, tokens: { type: 'string', default: '64' } } });
const threads = values.threads ? Number(values.threads) : undefined;
const streams = Number(values.streams);
const tokens = Number(values.tokens);

const weights = writeRandomModel(join(repoRoot, '.cache', 'bench', 'qwen2.5-0.5b-shape'), 'qwen2.5-0.5b', 'BF16');
const dir = join(repoRoot, '.cache', 'bench', 'qwen2.5-0.5b-shape-chat');
if (!existsSync(join(dir, 'tokenizer_config.json'))) {
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(weights, 'config.json'), join(dir, 'config.json'));
  symlinkSync(resolve(weights, 'model.safetensors'), join(dir, 'model.safetensors'));
  copyFileSync(stories260K('hf', 'tokenizer.json'), join(dir, 'tokenizer.json'));
  const cfg = JSON.parse(readFileSync(stories260K('hf', 'tokenizer_config.json'), 'utf8'));
  const template = '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}';
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: template }));
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const load = { weights: 'q8_0' as const, ...(threads ? { threads } : {}) };

async function healthUnderLoad(engine: Engine, label: string): Promise<void> {
  const server = createOpenAiServer({ engine, modelName: 'm', maxQueue: 1000 });
  const { port } = await listen(server, 0, '127.0.0.1');
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 600_000 });
  const latencies: number[] = [];
  // One probe before the streams: the client's first fetch loads its HTTP stack and opens the
  // connection (100-160 ms here, always the slowest probe), which is this process's start, not the
  // server's answer.
  await (await fetch(`http://127.0.0.1:${port}/health`)).json();
  let decoding = true;
  const probe = (async () => {
    while (decoding) {
      const t0 = performance.now();
      await (await fetch(`http://127.0.0.1:${port}/health`)).json();
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const t0 = performance.now();
  let generated = 0;
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      const prompt = Array.from({ length: 32 }, (_, j) => 3 + ((i * 131 + j * 7919) % 500));
      const s = await client.completions.create({ model: 'm', prompt, max_tokens: tokens, temperature: 0, stream: true });
      for await (const c of s) generated += c.choices[0]?.text !== undefined ? 1 : 0;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  decoding = false;
  await probe;
  console.log(
    `| ${label} | ${streams} | ${latencies.length} | ${pct(latencies, 0.5).toFixed(1)} | ${pct(latencies, 0.99).toFixed(1)} | ${Math.max(...latencies).toFixed(1)} | ${((streams * tokens) / seconds).toFixed(1)} |`,
  );
  await new Promise<void>((r) => (server.close(() => r()), server.closeAllConnections()));
}

console.error(`load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')} (2 cores shared)`);
console.log(`/health while ${streams} streams decode ${tokens} tokens each (32-token prompts), Qwen2.5-0.5B shape, q8_0:\n`);
console.log('| engine | streams | health probes | p50 ms | p99 ms | max ms | decode tok/s (all streams) |');
console.log('|---|---|---|---|---|---|---|');
const worker = new WorkerEngine(dir, load);
await worker.ready;
await healthUnderLoad(worker, 'engine thread (kvsieve serve)');
const model = await loadModel(dir, load);
await healthUnderLoad(localEngine(model), 'HTTP thread (localEngine)');
model.dispose();

// 2. A follow-up turn: a long first turn, then the same second turn on a server that holds the
// conversation and on one that holds none (same engine, so the same weights and threads).
const held = createOpenAiServer({ engine: worker, modelName: 'm' });
const plain = createOpenAiServer({ engine: worker, modelName: 'm', sessions: false });
const clientOf = async (s: typeof held) => new OpenAI({ baseURL: `http://127.0.0.1:${(await listen(s, 0, '127.0.0.1')).port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 600_000 });
const heldClient = await clientOf(held);
const plainClient = await clientOf(plain);
const story = readFileSync(stories260K('SOURCE.md'), 'utf8').replace(/\s+/g, ' ');
console.log('\nTime to first token of a follow-up chat turn (streamed), Qwen2.5-0.5B shape, q8_0:\n');
console.log('| first turn (prompt + reply tokens) | second turn prompt tokens | held: cached tokens | held: TTFT s | not held: TTFT s |');
console.log('|---|---|---|---|---|');
for (const chars of [500, 2000]) {
  const turn1 = [{ role: 'user' as const, content: story.slice(0, chars) }];
  // Streamed, so a long prefill on a loaded host never meets the client's body timeout.
  const firstTurn = await heldClient.chat.completions.create({ model: 'm', messages: turn1, max_tokens: 32, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let reply = '';
  let firstUsage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const ch of firstTurn) {
    reply += ch.choices[0]?.delta.content ?? '';
    firstUsage = ch.usage ?? firstUsage;
  }
  const first = { usage: firstUsage! };
  const turn2 = [...turn1, { role: 'assistant' as const, content: reply }, { role: 'user' as const, content: 'And then?' }];
  const ttft = async (c: OpenAI) => {
    const t0 = performance.now();
    const s = await c.chat.completions.create({ model: 'm', messages: turn2, max_tokens: 4, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let first = 0;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const ch of s) {
      if (!first && ch.choices[0]?.delta.content !== undefined && ch.choices[0]?.delta.role === undefined) first = performance.now() - t0;
      usage = ch.usage ?? usage;
    }
    return { seconds: first / 1000, usage: usage! };
  };
  const a = await ttft(heldClient);
  const b = await ttft(plainClient);
  console.log(
    `| ${first.usage!.prompt_tokens} + ${first.usage!.completion_tokens} | ${a.usage.prompt_tokens} | ${a.usage.prompt_tokens_details?.cached_tokens} | ${a.seconds.toFixed(2)} | ${b.seconds.toFixed(2)} |`,
  );
}
for (const s of [held, plain]) await new Promise<void>((r) => (s.close(() => r()), s.closeAllConnections()));
await worker.close();
