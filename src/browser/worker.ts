/**
 * The engine's side of a Web Worker: `serveEngine()` answers the page's messages (protocol.ts): load a
 * model (fetched by Hub id or URLs, or from bytes), generate with streamed chunks and an optional KV
 * trace, cancel. A page's main thread may not block in Atomics.wait, so the multi-threaded kernels
 * run only here.
 */
import type { Model } from '../api/model.js';
import { traceHeader, traceResult } from '../api/trace.js';
import { browserThreads } from '../backend/wasm/browser.js';
import type { GenerationStream } from '../generate/batcher.js';
import { loadBrowserModel } from './engine.js';
import { fetchModelFiles, hubModelUrls } from './load.js';
import type { FromEngine, ToEngine } from './protocol.js';

interface WorkerScope {
  onmessage: ((e: { data: ToEngine }) => void) | null;
  postMessage(m: FromEngine): void;
  crossOriginIsolated?: boolean;
}

/** Serves the engine on this worker's messages (call it once, in the worker's script). */
export function serveEngine(scope: WorkerScope = globalThis as unknown as WorkerScope): void {
  let model: Model | null = null;
  const streams = new Map<number, GenerationStream>();
  const post = (m: FromEngine) => scope.postMessage(m);
  const fail = (id: number | null, e: unknown) =>
    post({ type: 'error', id, message: e instanceof Error ? e.message : String(e), name: e instanceof Error ? e.name : 'Error' });

  async function load(m: Extract<ToEngine, { type: 'load' }>): Promise<void> {
    const { cache, endpoint, ...options } = m.options;
    const fetchOptions = { onProgress: (progress: import('./load.js').FileProgress) => post({ type: 'progress', progress }), ...(cache !== undefined ? { cache } : {}), ...(endpoint ? { endpoint } : {}) };
    const src = m.source;
    const files = 'files' in src ? src.files : await fetchModelFiles('urls' in src ? src.urls : await hubModelUrls(src.hub, fetchOptions), fetchOptions);
    for (const s of streams.values()) s.cancel();
    model?.dispose();
    model = null;
    const threads = options.threads ?? browserThreads();
    model = await loadBrowserModel(files, { ...options, threads, ...('hub' in src ? { name: src.hub } : {}) });
    post({ type: 'loaded', model: { info: model.info(), threads: options.backend === 'reference' ? 1 : threads, crossOriginIsolated: scope.crossOriginIsolated === true } });
  }

  async function generate(m: Extract<ToEngine, { type: 'generate' }>): Promise<void> {
    if (!model) throw new Error('no model loaded: send a load message first');
    const { trace, ...options } = m.options;
    if (trace) post({ type: 'header', id: m.id, header: traceHeader(model, m.prompt, options) });
    const stream = model.generate(m.prompt, { ...options, ...(trace ? { onTrace: (event) => post({ type: 'trace', id: m.id, event }) } : {}) });
    streams.set(m.id, stream);
    try {
      for await (const chunk of stream) post({ type: 'chunk', id: m.id, text: chunk.text, ids: chunk.ids });
      const result = await stream.result;
      post({ type: 'done', id: m.id, result, trace: traceResult(result) });
    } finally {
      streams.delete(m.id);
    }
  }

  scope.onmessage = (e) => {
    const m = e.data;
    if (m.type === 'load') load(m).catch((err) => fail(null, err));
    else if (m.type === 'generate') generate(m).catch((err) => fail(m.id, err));
    else if (m.type === 'cancel') streams.get(m.id)?.cancel();
  };
}
