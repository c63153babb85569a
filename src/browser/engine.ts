/**
 * The browser's model: bytes in, a Model on the wasm kernels out (a Web Worker pool when the page is
 * cross-origin isolated and this runs in a Web Worker, one thread otherwise).
 */
import { browserThreads, createBrowserKernelSet, createBrowserKernels, type KernelSource } from '../backend/wasm/browser.js';
import { createPlannedBackend } from '../backend/wasm/split.js';
import { ReferenceBackend } from '../backend/reference.js';
import { WebGpuBackend } from '../backend/webgpu/backend.js';
import type { GpuWeightType } from '../backend/webgpu/shaders.js';
import { modelFromFiles, recorded, type BackendSource, type ModelFiles } from '../api/files.js';
import type { BatchingOptions, Model } from '../api/model.js';
import { KvsieveError } from '../core/errors.js';

export interface BrowserLoadOptions extends BatchingOptions {
  /** The kernel module (URL or bytes, or both builds); default: dist/wasm beside this package's dist/src. */
  wasm?: KernelSource;
  /** 'wasm' (default), 'reference' (plain TypeScript, no wasm) or 'webgpu' (navigator.gpu; f32, f16, q8_0 or q4_0 weights, full cache). */
  backend?: 'wasm' | 'reference' | 'webgpu';
  /** Threads in all (default: browserThreads()). */
  threads?: number;
  /** How weights are stored (default q8_0 with a GGUF's K-quant matrices kept as stored, as in Node). */
  weights?: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
  /**
   * wasm: bytes one memory may hold (default and most: 4 GiB). A model that needs more is split over
   * several memories, as in Node.
   */
  maxBytesPerMemory?: number;
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
  // The wasm backend is made once the config is read: its memories, and how many, depend on the model.
  let source: BackendSource;
  if (o.backend === 'reference') source = new ReferenceBackend();
  else if (o.backend === undefined || o.backend === 'wasm') {
    const wasm = o.wasm ?? defaultKernelUrls();
    const threads = o.threads ?? browserThreads();
    // as in Node: left out, q8_0 with a GGUF's K-quant matrices kept as stored
    const backendOptions = { threads, ...(o.weights ? { weights: o.weights } : { keepStoredKQuants: true }), ...(o.maxBytesPerMemory !== undefined ? { maxBytesPerMemory: o.maxBytesPerMemory } : {}) };
    source = (config) =>
      createPlannedBackend(config, backendOptions, async (count, maxBytes) =>
        count === 1 ? [await createBrowserKernels({ wasm, threads, maxBytes })] : createBrowserKernelSet(count, { wasm, threads, maxBytes }));
  } else if (o.backend === 'webgpu') {
    source = await WebGpuBackend.create(o.weights ? { weights: o.weights as GpuWeightType } : {});
  } else throw new KvsieveError(`backend must be "wasm", "reference" or "webgpu", got ${JSON.stringify(o.backend)}`, { option: 'backend' });
  const { source: loading, made } = recorded(source);
  try {
    return await modelFromFiles(files, loading, o);
  } catch (e) {
    made()?.dispose();
    throw e;
  }
}
