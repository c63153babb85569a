/**
 * The page's side of the engine in a Web Worker: `EngineClient` sends load, generate and cancel
 * messages (protocol.ts) and turns the replies into promises and streams.
 */
import type { TraceHeader, TraceResult } from '../api/trace.js';
import type { GenerationChunk, GenerationResult } from '../generate/batcher.js';
import type { KvTraceEvent } from '../generate/sequence.js';
import type { FileProgress } from './load.js';
import type { FromEngine, LoadedModel, ModelSource, PlainGenerateOptions, ToEngine } from './protocol.js';

/** The slice of a Web Worker the client uses. */
export interface WorkerLike {
  postMessage(m: ToEngine, transfer: ArrayBuffer[]): void;
  addEventListener(type: 'message', listener: (e: { data: FromEngine }) => void): void;
  terminate(): void;
}

/** An error the engine reported (its message; `kind` is the engine-side class name: KvsieveError, InternalError, ...). */
export class EngineError extends Error {
  constructor(
    message: string,
    readonly kind: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

/** A generation in the worker: chunks as they come, the result, and cancel() (leaving the loop early cancels too). */
export interface EngineStream extends AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
  /** The trace's header (with options.trace) once the engine has sent it. */
  readonly header: Promise<TraceHeader | null>;
  /** The trace's result line, for saving the trace. */
  readonly traceResult: Promise<TraceResult>;
  cancel(): void;
}

interface Pending {
  chunks: GenerationChunk[];
  wake: (() => void) | null;
  done: boolean;
  error: EngineError | null;
  onTrace?: (e: KvTraceEvent) => void;
  resolve(r: GenerationResult, t: TraceResult): void;
  reject(e: EngineError): void;
  header(h: TraceHeader | null): void;
}

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private loading: { resolve(m: LoadedModel): void; reject(e: EngineError): void; onProgress?: (p: FileProgress) => void } | null = null;

  constructor(readonly worker: WorkerLike) {
    worker.addEventListener('message', (e) => this.receive(e.data));
  }

  /** Loads a model in the worker (replacing the one it has); `onProgress` follows the downloads. */
  load(source: ModelSource, options: Extract<ToEngine, { type: 'load' }>['options'] = {}, onProgress?: (p: FileProgress) => void): Promise<LoadedModel> {
    if (this.loading) return Promise.reject(new EngineError('a model is already loading', 'KvsieveError'));
    return new Promise<LoadedModel>((resolve, reject) => {
      this.loading = { resolve, reject, ...(onProgress ? { onProgress } : {}) };
      // the files' buffers move to the worker (a file input's bytes are not needed here afterwards)
      const transfer = 'files' in source ? Object.values(source.files).map((b) => b.buffer as ArrayBuffer) : [];
      this.worker.postMessage({ type: 'load', source, options }, transfer);
    });
  }

  /** Generates in the worker; `onTrace` receives the KV trace when options.trace is set. */
  generate(prompt: string, options: PlainGenerateOptions = {}, onTrace?: (e: KvTraceEvent) => void): EngineStream {
    const id = this.nextId++;
    let resolve!: (r: GenerationResult) => void;
    let reject!: (e: EngineError) => void;
    let resolveTrace!: (t: TraceResult) => void;
    let rejectTrace!: (e: EngineError) => void;
    let header!: (h: TraceHeader | null) => void;
    const result = new Promise<GenerationResult>((res, rej) => ((resolve = res), (reject = rej)));
    const traceResult = new Promise<TraceResult>((res, rej) => ((resolveTrace = res), (rejectTrace = rej)));
    const headerP = new Promise<TraceHeader | null>((res) => (header = res));
    result.catch(() => {});
    traceResult.catch(() => {});
    const p: Pending = {
      chunks: [],
      wake: null,
      done: false,
      error: null,
      ...(onTrace ? { onTrace } : {}),
      resolve: (r, t) => {
        resolve(r);
        resolveTrace(t);
      },
      reject: (e) => {
        reject(e);
        rejectTrace(e);
      },
      header,
    };
    this.pending.set(id, p);
    this.worker.postMessage({ type: 'generate', id, prompt, options }, []);
    if (!options.trace) header(null);
    const worker = this.worker;
    return {
      result,
      header: headerP,
      traceResult,
      cancel: () => worker.postMessage({ type: 'cancel', id }, []),
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const c = p.chunks.shift();
            if (c) {
              yield c;
              continue;
            }
            if (p.error) throw p.error;
            if (p.done) return;
            await new Promise<void>((r) => (p.wake = r));
          }
        } finally {
          // leaving the loop early (break, return, a throw) cancels, as the library's streams do
          if (!p.done && !p.error) worker.postMessage({ type: 'cancel', id }, []);
        }
      },
    };
  }

  /** Stops the worker (and its model). */
  terminate(): void {
    this.worker.terminate();
  }

  private receive(m: FromEngine): void {
    if (m.type === 'progress') this.loading?.onProgress?.(m.progress);
    else if (m.type === 'loaded') {
      this.loading?.resolve(m.model);
      this.loading = null;
    } else if (m.type === 'error' && m.id === null) {
      this.loading?.reject(new EngineError(m.message, m.name));
      this.loading = null;
    } else {
      const id = m.id as number; // an error without id was the load's, handled above
      const p = this.pending.get(id);
      if (!p) return;
      if (m.type === 'header') p.header(m.header);
      else if (m.type === 'trace') p.onTrace?.(m.event);
      else if (m.type === 'chunk') p.chunks.push({ text: m.text, ids: m.ids });
      else if (m.type === 'done') {
        p.done = true;
        p.resolve(m.result, m.trace);
        this.pending.delete(id);
      } else if (m.type === 'error') {
        p.error = new EngineError(m.message, m.name);
        p.reject(p.error);
        p.header(null);
        this.pending.delete(id);
      }
      p.wake?.();
      p.wake = null;
    }
  }
}
