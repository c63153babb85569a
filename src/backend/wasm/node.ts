/**
 * Node entry to the wasm kernels: finds and compiles the kernel module (the relaxed-SIMD build
 * where the engine takes it, else the SIMD128 one), creates the shared memory and, for more than
 * one thread, the worker pool.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { InternalError, KvsieveError } from '../../core/errors.js';
import type { ModelConfig } from '../../core/model-config.js';
import type { Kernels, KernelsOptions } from './kernels.js';
import { createPlannedBackend, SplitBackend, type WasmBackendFor } from './split.js';
import type { WasmBackend } from './backend.js';
import { startKernelSet, startKernels, workerSource, type PoolThread, type PoolWorkerData } from './pool.js';
import { relaxedSimdProbe, wasm, type WasmModule } from './wasm-api.js';

let relaxed: boolean | undefined;

/**
 * Whether this engine accepts relaxed SIMD (f32x4.relaxed_madd). V8 ships it from 11.4 (Node 22);
 * Node 20's V8 11.3 implements it behind --experimental-wasm-relaxed-simd, which is turned on here
 * once, before any kernel module is compiled (it only widens what the wasm validator accepts).
 * KVSIEVE_RELAXED_SIMD=0 keeps the SIMD128 build.
 */
export function relaxedSimdAvailable(): boolean {
  if (relaxed !== undefined) return relaxed;
  if (process.env['KVSIEVE_RELAXED_SIMD'] === '0') return (relaxed = false);
  relaxed = wasm.validate(relaxedSimdProbe);
  if (!relaxed) {
    setFlagsFromString('--experimental-wasm-relaxed-simd');
    relaxed = wasm.validate(relaxedSimdProbe);
  }
  return relaxed;
}

/**
 * Where the built module is: $KVSIEVE_WASM, else dist/wasm/kernels-relaxed.wasm (where relaxed SIMD
 * is available, see relaxedSimdAvailable) or dist/wasm/kernels.wasm of this package (found from
 * src/backend/wasm/ when run from source, from dist/src/backend/wasm/ when compiled).
 */
export function kernelWasmPath(): string {
  const env = process.env['KVSIEVE_WASM'];
  if (env) return env;
  const file = relaxedSimdAvailable() ? 'kernels-relaxed.wasm' : 'kernels.wasm';
  const candidates = [
    new URL(`../../../dist/wasm/${file}`, import.meta.url),
    new URL(`../../../wasm/${file}`, import.meta.url),
  ].map((u) => fileURLToPath(u));
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

const modules = new Map<string, Promise<WasmModule>>();

/** Compiles (once per path) the kernel module. */
export function loadKernelModule(path = kernelWasmPath()): Promise<WasmModule> {
  const cached = modules.get(path);
  if (cached) return cached;
  if (!existsSync(path)) {
    return Promise.reject(new InternalError(`wasm kernels: ${path} is missing (build it with: node scripts/build-wasm.mjs)`));
  }
  relaxedSimdAvailable(); // before any compile: turns relaxed SIMD on where it needs the flag
  const m = wasm.compile(readFileSync(path)).catch((e: unknown) => {
    throw new InternalError(`wasm kernels: cannot compile ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  });
  modules.set(path, m);
  m.catch(() => modules.delete(path));
  return m;
}

const NODE_WORKER = workerSource("start(require('node:worker_threads').workerData);");

/** A pool worker on a Node worker thread. */
export function spawnNodeWorker(data: PoolWorkerData): PoolThread {
  const w = new Worker(NODE_WORKER, { eval: true, workerData: data });
  const failed = new Promise<never>((_, reject) => w.once('error', reject));
  failed.catch(() => {}); // seen by the pool while it starts; later errors surface as dispatch failures
  return {
    failed,
    unref: () => w.unref(),
    stop: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => void w.terminate().then(() => resolve()), 5000);
        w.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

export interface CreateKernelsOptions extends KernelsOptions {
  /** Threads in all (the calling one plus threads - 1 workers); default: the number of cores. */
  threads?: number;
  /** How long idle threads spin before sleeping, microseconds (default 250; see WorkerPoolOptions). */
  spinMicros?: number;
  /** The .wasm to load (default kernelWasmPath()). */
  wasmPath?: string;
}

/** Kernels on a fresh shared memory, multi-threaded unless threads is 1. Call dispose() when done. */
export async function createKernels(o: CreateKernelsOptions = {}): Promise<Kernels> {
  const threads = o.threads ?? availableParallelism();
  if (!(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    throw new KvsieveError(`threads must be a whole number from 1 to 256, got ${threads}`, { option: 'threads' });
  }
  return startKernels(await loadKernelModule(o.wasmPath), o, threads, spawnNodeWorker);
}

/**
 * `count` Kernels, each on a fresh shared memory of its own (o.maxBytes each), all served by one pool
 * of worker threads: the parts of a model larger than one wasm memory (split.ts).
 */
export async function createKernelSet(count: number, o: CreateKernelsOptions = {}): Promise<Kernels[]> {
  const threads = o.threads ?? availableParallelism();
  if (!(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    throw new KvsieveError(`threads must be a whole number from 1 to 256, got ${threads}`, { option: 'threads' });
  }
  return startKernelSet(await loadKernelModule(o.wasmPath), o, count, threads, spawnNodeWorker);
}

/**
 * The wasm backend for a model of config `c`: one WasmBackend over one memory when the model fits it,
 * else a SplitBackend over as many memories as its plan needs, with one worker pool for all of them.
 */
export async function createWasmBackend(c: ModelConfig, o: WasmBackendFor = {}): Promise<WasmBackend | SplitBackend> {
  const threads = o.threads ?? availableParallelism();
  return createPlannedBackend(c, { ...o, threads }, async (count, maxBytes) =>
    count === 1 ? [await createKernels({ maxBytes, threads })] : createKernelSet(count, { maxBytes, threads }));
}
