/**
 * Decode speed with MXFP4 weights (not a test): one random GGUF whose matrices are all MXFP4 (the
 * embedding, tied to the output, included), run by kvsieve with the blocks as stored (asm/mxfp4.ts, the
 * default) and with them dequantised at load and re-quantised to q8_0 (twice the bytes), one thread each,
 * alternating over --rounds rounds in one process, so both see the same load on a shared machine.
 *
 * Figures are generated tokens per CPU-second of this process (process.cpuUsage over the completion, the
 * decode's share by wall-clock time), and the wall-clock rate beside them.
 *
 *   node --import tsx bench/mxfp4.ts [--shape qwen2.5-0.5b] [--file X.gguf] [--rounds 3] [--tokens 32] [--llama]
 *
 * --llama adds llama.cpp (node-llama-cpp, one thread, installed on demand as for bench/kquant.ts) on the
 * same file to each round.
 *
 * The file (default .cache/bench/<shape>-random-MXFP4.gguf) is written first when missing.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/api.js';
import { KvsieveError } from '../src/core/errors.js';
import { writeGguf } from '../src/formats/gguf.js';
import { MODEL_SHAPES, randomModelTensors, type ModelShape } from '../src/model/random.js';
import { WasmBackend } from '../src/backend/wasm/backend.js';
import { createKernels } from '../src/backend/wasm/node.js';
import { optionMap } from './args.js';
import { cpuLlama } from './llamacpp-env.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = optionMap(process.argv.slice(2), { names: ['shape', 'file', 'rounds', 'tokens', 'llama'], docs: 'bench/mxfp4.ts' });
const shape = (args.get('shape') ?? 'qwen2.5-0.5b') as ModelShape;
if (!(shape in MODEL_SHAPES)) throw new KvsieveError(`--shape: unknown shape ${shape} (${Object.keys(MODEL_SHAPES).join(', ')})`);
const file = args.get('file') ?? join(REPO, '.cache', 'bench', `${shape}-random-MXFP4.gguf`);
const rounds = Number(args.get('rounds') ?? 3);
const tokens = Number(args.get('tokens') ?? 32);
if (!existsSync(file)) {
  mkdirSync(dirname(file), { recursive: true });
  console.log(`writing ${file} (random weights, every matrix MXFP4) ...`);
  const { config, tensors } = randomModelTensors(shape);
  writeGguf(file, { config, tensors, weightType: 'F32', tensorType: (_, s) => (s[s.length - 1]! % 32 === 0 ? 'MXFP4' : undefined), name: `${shape} (random weights, MXFP4)` });
}

/** The wasm backend with MXFP4 matrices dequantised and quantised to q8_0, as they were before asm/mxfp4.ts. */
class ConvertingBackend extends WasmBackend {
  override takesStored(type: string, cols: number): boolean {
    return type === 'MXFP4' ? false : super.takesStored(type, cols);
  }
}

const promptIds = Array.from({ length: 16 }, (_, i) => 1000 + i);
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function kvsieve(asStored: boolean): Promise<void> {
  const kernels = await createKernels({ threads: 1 });
  const backend = asStored ? new WasmBackend(kernels) : new ConvertingBackend(kernels);
  const m = await loadModel(file, { backend });
  try {
    await m.complete(null, { promptIds, maxTokens: 2, ignoreEos: true });
    const c0 = cpuSeconds();
    const r = await m.complete(null, { promptIds, maxTokens: tokens + 1, ignoreEos: true });
    const cpu = (cpuSeconds() - c0) * (r.decodeSeconds / (r.decodeSeconds + r.prefillSeconds));
    const prefill = promptIds.length / r.prefillSeconds;
    const label = asStored ? 'MXFP4 as stored       ' : 'converted to q8_0     ';
    console.log(
      `  ${label} decode ${(tokens / cpu).toFixed(2)} tok/CPU-s (wall ${r.decodeTokensPerSecond.toFixed(2)} tok/s), ` +
        `prefill ${prefill.toFixed(1)} tok/s, weights ${(m.info().weightBytes / 2 ** 20).toFixed(0)} MiB`,
    );
  } finally {
    m.dispose();
  }
}

const llama = args.has('llama') ? await cpuLlama(1) : null;

async function llamaCpp(): Promise<void> {
  const model = await llama!.loadModel({ modelPath: file, gpuLayers: 0 });
  try {
    const ctx = await model.createContext({ contextSize: 128, batchSize: 64, threads: { ideal: 1, min: 1 }, sequences: 1 });
    const seq = ctx.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(promptIds);
    let n = 0;
    let c0 = 0;
    let w0 = 0;
    for await (const _ of seq.evaluate([5], { temperature: 0 })) {
      if (n === 0) {
        c0 = cpuSeconds();
        w0 = performance.now();
      }
      if (++n > tokens) break;
    }
    const cpu = cpuSeconds() - c0;
    const wall = (performance.now() - w0) / 1000;
    console.log(`  llama.cpp              decode ${(tokens / cpu).toFixed(2)} tok/CPU-s (wall ${(tokens / wall).toFixed(2)} tok/s)`);
    await ctx.dispose();
  } finally {
    await model.dispose();
  }
}

for (let i = 0; i < rounds; i++) {
  console.log(`round ${i + 1} of ${rounds} (${shape}, every matrix MXFP4, 1 thread, ${tokens} decode steps after a 16-token prompt)`);
  // alternate which goes first, so neither always runs on the warmer machine
  await kvsieve(i % 2 === 0);
  await kvsieve(i % 2 !== 0);
  if (llama) await llamaCpp();
}
await llama?.dispose();
