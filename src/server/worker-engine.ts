/**
 * The HTTP thread's side of the engine thread (worker.ts): a Worker that loads and owns the model,
 * and an Engine whose calls become messages. Chunks, results and the batch's gauge come back as
 * messages, so the HTTP event loop never waits on a forward step.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { LoadOptions } from '../api.js';
import { InternalError } from '../core/errors.js';
import type { KvPoolStats } from '../generate/pool.js';
import { compressionByName, fromWire, type Engine, type EngineInfo, type EngineRequest, type EngineSink, type EngineState, type WireError } from './engine.js';
import type { ToWorker } from './worker.js';

type FromWorker =
  | { t: 'ready'; info: EngineInfo }
  | { t: 'failed'; error: WireError }
  | { t: 'stats'; stats: KvPoolStats }
  | { t: 'start'; id: number; promptTokens: number; thinking: boolean; harmony: boolean }
  | { t: 'chunk'; id: number; index: number; chunk: Parameters<EngineSink['chunk']>[1] }
  | { t: 'done'; id: number; index: number; result: Parameters<EngineSink['done']>[1] }
  | { t: 'error'; id: number; error: WireError };

/** What the worker is given: the model and how to load it (no callbacks; a backend by name). */
export type WorkerLoadOptions = Omit<LoadOptions, 'onStep' | 'backend'> & { backend?: 'wasm' | 'reference' | 'webgpu' };

/**
 * The worker: worker.js beside this file (built), or, running from source, worker.ts behind tsx's
 * loader, registered in the worker itself (a worker thread does not take the hooks of its parent).
 */
function startWorker(workerData: unknown): Worker {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const tsx = import.meta.resolve('tsx/esm/api');
  const ts = new URL('./worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => m.register()).then(() => import(${JSON.stringify(ts)}))`, { eval: true, workerData });
}

export class WorkerEngine implements Engine {
  state: EngineState = 'loading';
  readonly ready: Promise<EngineInfo>;
  private readonly worker: Worker;
  private latest: KvPoolStats | null = null;
  private readonly sinks = new Map<number, { sink: EngineSink; open: number }>();
  private nextId = 1;

  constructor(path: string | undefined, load: WorkerLoadOptions = {}) {
    this.worker = startWorker({ path, load });
    this.ready = new Promise<EngineInfo>((resolve, reject) => {
      this.worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          this.state = 'ready';
          resolve(m.info);
        } else if (m.t === 'failed') {
          this.state = 'failed';
          reject(fromWire(m.error));
        } else this.receive(m);
      });
      this.worker.on('error', (e: Error) => {
        // The engine thread died: every request in flight fails, later ones are refused.
        const fault = new InternalError(`engine thread failed: ${e.message}`, { cause: e });
        if (this.state === 'loading') reject(fault);
        this.state = 'failed';
        for (const { sink } of this.sinks.values()) sink.error(fault);
        this.sinks.clear();
      });
    });
    this.ready.catch(() => {});
  }

  stats(): KvPoolStats | null {
    return this.latest;
  }

  private receive(m: Exclude<FromWorker, { t: 'ready' | 'failed' }>): void {
    if (m.t === 'stats') {
      this.latest = m.stats;
      return;
    }
    const s = this.sinks.get(m.id);
    if (!s) return; // a request cancelled here whose last messages were already on their way
    if (m.t === 'start') s.sink.start({ promptTokens: m.promptTokens, thinking: m.thinking, harmony: m.harmony });
    else if (m.t === 'chunk') s.sink.chunk(m.index, m.chunk);
    else if (m.t === 'done') {
      if (--s.open === 0) this.sinks.delete(m.id);
      s.sink.done(m.index, m.result);
    } else {
      this.sinks.delete(m.id);
      s.sink.error(fromWire(m.error));
    }
  }

  submit(request: EngineRequest, sink: EngineSink): () => void {
    if (this.state !== 'ready') {
      sink.error(new InternalError(`the engine is ${this.state === 'loading' ? 'still loading the model' : 'not running'}`));
      return () => {};
    }
    const id = this.nextId++;
    this.sinks.set(id, { sink, open: request.n });
    const options = { ...request.options };
    const compression = compressionByName(options.compression);
    if (compression) options.compression = compression;
    this.post({ t: 'submit', id, request: { ...request, options } });
    return () => {
      if (this.sinks.delete(id)) this.post({ t: 'cancel', id });
    };
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  async close(): Promise<void> {
    if (this.state === 'ready') this.post({ t: 'close' });
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    const timer = setTimeout(() => void this.worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
  }
}
