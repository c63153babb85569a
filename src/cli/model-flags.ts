import { loadModel, type LoadOptions, type Model, type WeightStorage } from '../api.js';
import { bytesFlag, numberFlag, type OptionSpec } from './args.js';
import { downloadPrinter } from './download-progress.js';

/** Flags that choose the model and how it runs, shared by every command that loads one. */
export const modelFlagSpec = {
  model: { type: 'string' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  weights: { type: 'string' },
  'kv-memory': { type: 'string' },
  'max-bytes-per-memory': { type: 'string' },
} as const satisfies OptionSpec;

export const modelFlagHelp = `  --model M              a model directory, .gguf/.bin/.safetensors file, a name in KVSIEVE_MODEL_PATH,
                         or a Hugging Face id ORG/NAME[/FOLDER][@REVISION] (hf:ORG/NAME: never a
                         path), downloaded into the Hugging Face cache on first use (default:
                         stories260K, from karpathy/tinyllamas when not found locally)
  --backend wasm|reference|webgpu  kernels: WebAssembly SIMD on worker threads (default), plain
                         TypeScript, or the GPU through WebGPU (Node: the optional package webgpu;
                         --weights f32 (default), f16, q8_0 or q4_0, full cache only for now)
  --threads N            wasm: threads in all (default: the number of cores)
  --weights T            wasm: weight storage f32|f16|bf16|q8_0|q4_0, quantised at load (default q8_0:
                         ~1.06 bytes per parameter; f32 4, f16/bf16 2, q4_0 0.56; by default a GGUF's
                         Q4_K/Q5_K/Q6_K matrices stay as stored: a Q4_K_M or Q5_K_M file at its own
                         size; --weights q8_0 converts them), or stored: a GGUF's
                         Q4_K/Q5_K/Q6_K/Q8_0/Q4_0 matrices as the file holds them, the others q8_0; MXFP4
                         matrices (GPT-OSS's experts) stay as stored under q8_0, q4_0 and stored
  --kv-memory SIZE       KV cache the batch may hold at once (2GiB, 512MiB, bytes; default: what the
                         backend's memory leaves): sequences wait for room, compressed ones reserve their
                         budget, full-cache ones grow in blocks and the newest is preempted and recomputed
  --max-bytes-per-memory SIZE  wasm: the most one wasm memory holds (default and most 4GiB); a larger
                         model is split over several memories, consecutive layers in each
`;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The load options the flags give (the model path is `--model`); what `kvsieve serve` hands its engine thread. */
export function loadOptionsFromFlags(values: Values): LoadOptions & { backend?: 'wasm' | 'reference' | 'webgpu' } {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const o: LoadOptions & { backend?: 'wasm' | 'reference' | 'webgpu' } = {};
  const backend = str('backend');
  if (backend !== undefined) o.backend = backend as 'wasm' | 'reference' | 'webgpu';
  const threads = numberFlag('threads', str('threads'), { integer: true, min: 1, max: 256 });
  if (threads !== undefined) o.threads = threads;
  const weights = str('weights');
  if (weights !== undefined) o.weights = weights as WeightStorage;
  const kvMemory = bytesFlag('kv-memory', str('kv-memory'));
  if (kvMemory !== undefined) o.kvMemory = kvMemory;
  const perMemory = bytesFlag('max-bytes-per-memory', str('max-bytes-per-memory'));
  if (perMemory !== undefined) o.maxBytesPerMemory = perMemory;
  return o;
}

/** Loads the model the flags name, showing a download's progress on stderr. */
export async function loadModelFromFlags(values: Values): Promise<Model> {
  const o = loadOptionsFromFlags(values);
  const progress = downloadPrinter();
  o.onProgress = (p) => progress.update(p);
  try {
    return await loadModel(typeof values['model'] === 'string' ? values['model'] : undefined, o);
  } finally {
    progress.finish();
  }
}
