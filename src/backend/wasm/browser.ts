/**
 * Browser entry to the wasm kernels: compiles the kernel module (the relaxed-SIMD build where the
 * browser validates it, else the SIMD128 one) from a URL or bytes, and for more than one thread
 * starts a pool of Web Workers on the shared memory. Workers can be handed a shared memory only in a
 * cross-origin isolated page, and dispatch waits with Atomics.wait, which a page's main thread refuses:
 * so threads > 1 needs both (browserThreads() says what the context allows). Node's entry is node.ts.
 */
import { KvsieveError } from '../../core/errors.js';
import type { Kernels, KernelsOptions } from './kernels.js';
import { startKernelSet, startKernels, workerSource, type PoolThread, type PoolWorkerData } from './pool.js';
import { relaxedSimdProbe, wasm, type WasmModule } from './wasm-api.js';

/** The slice of the browser's globals used here, typed locally (the project compiles without lib DOM). */
interface WebWorker {
  postMessage(data: unknown): void;
  terminate(): void;
  onerror: ((e: { message?: string }) => void) | null;
}
interface WebGlobals {
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
  Worker?: new (url: string) => WebWorker;
  Blob: new (parts: string[], o: { type: string }) => unknown;
  URL: { createObjectURL(b: unknown): string; revokeObjectURL(u: string): void };
  fetch(url: string): Promise<{ ok: boolean; status: number; arrayBuffer(): Promise<ArrayBuffer> }>;
  document?: unknown;
}
const web = globalThis as unknown as WebGlobals;

/** Whether relaxed SIMD validates here (Chromium 114+, Firefox 120+ have it on). */
export function browserRelaxedSimd(): boolean {
  return wasm.validate(relaxedSimdProbe);
}

/**
 * The threads this context can run the kernels on: the cores (at most 8) in a cross-origin isolated
 * Web Worker, else 1.
 */
export function browserThreads(): number {
  const isolated = web.crossOriginIsolated === true;
  const inWorker = web.document === undefined && typeof web.Worker === 'function';
  if (!isolated || !inWorker) return 1;
  return Math.max(1, Math.min(8, web.navigator?.hardwareConcurrency ?? 1));
}

/** Where the kernel module is: one URL (or its bytes), or both builds to choose from. */
export type KernelSource = string | Uint8Array | { relaxed: string | Uint8Array; simd: string | Uint8Array };

export interface BrowserKernelsOptions extends KernelsOptions {
  /** The .wasm: a URL, its bytes, or both builds ({ relaxed, simd }) to pick by what the browser validates. */
  wasm: KernelSource;
  /** Threads in all (default browserThreads()); more than 1 needs a cross-origin isolated Web Worker. */
  threads?: number;
  /** How long idle threads spin before sleeping, microseconds (default 250). */
  spinMicros?: number;
}

async function compile(source: KernelSource): Promise<WasmModule> {
  const chosen = typeof source === 'string' || source instanceof Uint8Array ? source : browserRelaxedSimd() ? source.relaxed : source.simd;
  let bytes: Uint8Array;
  if (typeof chosen === 'string') {
    const r = await web.fetch(chosen);
    if (!r.ok) throw new KvsieveError(`wasm kernels: ${chosen}: HTTP ${r.status}`, { option: 'wasm' });
    bytes = new Uint8Array(await r.arrayBuffer());
  } else bytes = chosen;
  try {
    return await wasm.compile(bytes);
  } catch (e) {
    throw new KvsieveError(`wasm kernels: cannot compile ${typeof chosen === 'string' ? chosen : 'the given bytes'}: ${(e as Error).message}`, { option: 'wasm' });
  }
}

const WEB_WORKER = workerSource('self.onmessage = (e) => { self.onmessage = null; start(e.data); };');

/** A pool worker on a Web Worker made from the inline script. */
function spawnWebWorker(data: PoolWorkerData): PoolThread {
  const Worker = web.Worker;
  if (!Worker) throw new KvsieveError('threads > 1 needs Web Workers, which this context lacks', { option: 'threads' });
  const url = web.URL.createObjectURL(new web.Blob([WEB_WORKER], { type: 'text/javascript' }));
  const w = new Worker(url);
  web.URL.revokeObjectURL(url);
  const failed = new Promise<never>((_, reject) => {
    w.onerror = (e) => reject(new Error(e.message ?? 'worker error'));
  });
  failed.catch(() => {});
  w.postMessage(data);
  return { failed, stop: async () => w.terminate() };
}

/** Kernels on a fresh shared memory, on Web Workers when threads > 1. Call dispose() when done. */
export async function createBrowserKernels(o: BrowserKernelsOptions): Promise<Kernels> {
  return startKernels(await compile(o.wasm), o, checkedThreads(o), spawnWebWorker);
}

/**
 * `count` kernels, each on a fresh shared memory, served by one pool of Web Workers when threads > 1
 * (a model split over several memories). Call dispose() on each when done.
 */
export async function createBrowserKernelSet(count: number, o: BrowserKernelsOptions): Promise<Kernels[]> {
  return startKernelSet(await compile(o.wasm), o, count, checkedThreads(o), spawnWebWorker);
}

function checkedThreads(o: BrowserKernelsOptions): number {
  const threads = o.threads ?? browserThreads();
  if (!(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    throw new KvsieveError(`threads must be a whole number from 1 to 256, got ${threads}`, { option: 'threads' });
  }
  if (threads > 1 && web.crossOriginIsolated !== true) {
    throw new KvsieveError('threads > 1 needs a cross-origin isolated page (COOP same-origin and COEP require-corp headers)', { option: 'threads' });
  }
  return threads;
}
