/**
 * The browser's model: bytes in, a Model on the wasm kernels out (a Web Worker pool when the page is
 * cross-origin isolated and this runs in a Web Worker, one thread otherwise).
 */
import type { Backend } from '../backend/backend.js';
import { browserThreads, createBrowserKernels, type KernelSource } from '../backend/wasm/browser.js';
import { WasmBackend } from '../backend/wasm/backend.js';
import { ReferenceBackend } from '../backend/reference.js';
import { WebGpuBackend } from '../backend/webgpu/backend.js';
import type { GpuWeightType } from '../backend/webgpu/shaders.js';
import { modelFromFiles, type ModelFiles } from '../api/files.js';
import type { BatchingOptions, Model } from '../api/model.js';
import { KvsieveError } from '../core/errors.js';

export interface BrowserLoadOptions extends BatchingOptions {
  /** The kernel module (URL or bytes, or both builds); default: dist/wasm beside this package's dist/src. */
  wasm?: KernelSource;
  /** 'wasm' (default), 'reference' (plain TypeScript, no wasm) or 'webgpu' (navigator.gpu; f32, f16, q8_0 or q4_0 weights, full cache). */
  backend?: 'wasm' | 'reference' | 'webgpu';
  /** Threads in all (default: browserThreads()). */
  threads?: number;
  /** How weights are stored (default q8_0, as in Node). */
  weights?: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
  /** What info().path shows. */
  name?: string;
}

/** The kernel builds next to this module once compiled into dist/ (dist/src/browser -> dist/wasm). */
export function defaultKernelUrls(): { relaxed: string; simd: string } {
  return {
    relaxed: new URL('../../wasm/kernels-relaxed.wasm', import.meta.url).href,
    simd: new URL('../../wasm/kernels.wasm', import.meta.url).href,
  };
}

/** Loads a model from its files' bytes in a browser (see ModelFiles). */
export async function loadBrowserModel(files: ModelFiles, o: BrowserLoadOptions = {}): Promise<Model> {
  let backend: Backend;
  if (o.backend === 'reference') backend = new ReferenceBackend();
  else if (o.backend === undefined || o.backend === 'wasm') {
    const kernels = await createBrowserKernels({ wasm: o.wasm ?? defaultKernelUrls(), threads: o.threads ?? browserThreads() });
    backend = new WasmBackend(kernels, o.weights ? { weights: o.weights } : {});
  } else if (o.backend === 'webgpu') {
    backend = await WebGpuBackend.create(o.weights ? { weights: o.weights as GpuWeightType } : {});
  } else throw new KvsieveError(`backend must be "wasm", "reference" or "webgpu", got ${JSON.stringify(o.backend)}`, { option: 'backend' });
  try {
    return await modelFromFiles(files, backend, o);
  } catch (e) {
    backend.dispose();
    throw e;
  }
}
