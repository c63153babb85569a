/**
 * Node entry to the wasm kernels: finds and compiles dist/wasm/kernels.wasm, creates the shared
 * memory and, for more than one thread, the worker pool.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { KvsieveError } from '../../errors.js';
import { Kernels, type KernelsOptions } from './kernels.js';
import { WorkerPool } from './pool.js';
import { wasm, type WasmModule } from './wasm-api.js';

/**
 * Where the built module is: $KVSIEVE_WASM, else dist/wasm/kernels.wasm of this package (found
 * from src/backend/wasm/ when run from source, from dist/src/backend/wasm/ when compiled).
 */
export function kernelWasmPath(): string {
  const env = process.env['KVSIEVE_WASM'];
  if (env) return env;
  const candidates = [
    new URL('../../../dist/wasm/kernels.wasm', import.meta.url),
    new URL('../../../wasm/kernels.wasm', import.meta.url),
  ].map((u) => fileURLToPath(u));
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

const modules = new Map<string, Promise<WasmModule>>();

/** Compiles (once per path) the kernel module. */
export function loadKernelModule(path = kernelWasmPath()): Promise<WasmModule> {
  const cached = modules.get(path);
  if (cached) return cached;
  if (!existsSync(path)) {
    return Promise.reject(new KvsieveError(`wasm kernels: ${path} is missing (build it with: node scripts/build-wasm.mjs)`));
  }
  const m = wasm.compile(readFileSync(path));
  modules.set(path, m);
  m.catch(() => modules.delete(path));
  return m;
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
    throw new KvsieveError(`wasm kernels: threads must be an integer 1..256, got ${threads}`);
  }
  const module = await loadKernelModule(o.wasmPath);
  const k = new Kernels(module, o);
  if (threads > 1) {
    const pool = await WorkerPool.start({
      module,
      memory: k.memory,
      threads,
      runShare: k.runShare,
      ...(o.spinMicros !== undefined ? { spinMicros: o.spinMicros } : {}),
    });
    k.setDispatcher(pool);
  }
  return k;
}
