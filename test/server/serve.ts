// A model served as `kvsieve serve` serves it (WorkerEngine on its own thread), with an `openai` client.
import type { Server } from 'node:http';
import OpenAI from 'openai';
import { createOpenAiServer, listen, type ServerOptions } from '../../src/server/openai.js';
import { WorkerEngine, type WorkerLoadOptions } from '../../src/server/worker-engine.js';

/** Closes `server` and every connection it holds. */
export const closeServer = (server: Server) =>
  new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });

/** A server on an engine thread for the model at `path`, its client, and a way to stop both. */
export async function serveModel(path: string, load: WorkerLoadOptions = {}, o: Partial<ServerOptions> = {}) {
  const engine = new WorkerEngine(path, { backend: 'wasm', threads: 1, ...load });
  await engine.ready;
  const server = createOpenAiServer({ engine, modelName: 'stories', ...o });
  const addr = await listen(server, 0, '127.0.0.1');
  const base = `http://127.0.0.1:${addr.port}`;
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 0, timeout: 60_000 });
  return { engine, server, base, client, stop: () => closeServer(server).then(() => engine.close()) };
}

/** A streamed chat reply's reasoning_content and content, each its deltas joined. */
export async function streamedReply(stream: AsyncIterable<{ choices: { delta?: unknown }[] }>): Promise<{ reasoning: string; content: string }> {
  let reasoning = '';
  let content = '';
  for await (const c of stream) {
    const d = c.choices[0]?.delta as { content?: string | null; reasoning_content?: string } | undefined;
    reasoning += d?.reasoning_content ?? '';
    content += d?.content ?? '';
  }
  return { reasoning, content };
}
