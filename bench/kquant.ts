/**
 * Decode speed on a random Q4_K_M (--type Q5_K_M: Q5_K_M) GGUF (not a test): llama.cpp on the file,
 * kvsieve with the K-quant blocks as stored (asm/kquant.ts), and kvsieve as before them (the K-quant
 * matrices dequantised at load and re-quantised to q8_0), one thread each, in turn over --rounds rounds
 * in one process.
 *
 * Figures are generated tokens per CPU-second of this process (process.cpuUsage over the decode), and
 * the wall-clock rate beside them: on a machine shared with other work the wall figures move with the
 * load, the CPU-second ones much less (one thread each, so CPU time is the work done). kvsieve's CPU
 * time over a completion is split into prefill and decode by their wall-clock shares.
 *
 *   node --import tsx bench/kquant.ts [--shape r1-distill-qwen-1.5b] [--type Q4_K_M|Q5_K_M] [--file X.gguf] [--rounds 2] [--tokens 24]
 *
 * With --alternate N it leaves llama.cpp out and loads kvsieve twice, once with the K-quant blocks
 * as stored (the default) and once converted to q8_0 (weights 'q8_0'), both kept loaded, then runs
 * N decodes of --tokens steps on each in turn (stored, q8_0, stored, ...), printing every run and
 * the median of each: the two sides see the same moments of a shared machine's load.
 *
 * The file (default .cache/bench/<shape>-random-<type>.gguf, the name npm run bench -- --gguf Q4_K_M
 * uses) is written first when missing (minutes for the 1.5B shape).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/api.js';
import { KvsieveError } from '../src/core/errors.js';
import { MODEL_SHAPES, type ModelShape } from '../src/model/random.js';
import { optionMap } from './args.js';
import { cpuLlama } from './llamacpp-env.js';
import { writeRandomGguf } from './llamacpp.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = optionMap(process.argv.slice(2));
const shape = (args.get('shape') ?? 'r1-distill-qwen-1.5b') as ModelShape;
if (!(shape in MODEL_SHAPES)) throw new KvsieveError(`--shape: unknown shape ${shape} (${Object.keys(MODEL_SHAPES).join(', ')})`);
const type = args.get('type') ?? 'Q4_K_M';
if (type !== 'Q4_K_M' && type !== 'Q5_K_M') throw new KvsieveError(`--type must be Q4_K_M or Q5_K_M, got ${type}`);
const file = args.get('file') ?? join(REPO, '.cache', 'bench', `${shape}-random-${type}.gguf`);
const rounds = Number(args.get('rounds') ?? 2);
const tokens = Number(args.get('tokens') ?? 24);
if (!existsSync(file)) {
  mkdirSync(dirname(file), { recursive: true });
  console.log(`writing ${file} (random weights, ${type}) ...`);
  writeRandomGguf(file, shape, type);
}
const promptIds = Array.from({ length: 16 }, (_, i) => 1000 + i);
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const llama = await cpuLlama(1);

async function llamaCpp(): Promise<void> {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
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
    console.log(`  llama.cpp                   ${(tokens / cpu).toFixed(2)} tok/CPU-s  (wall ${(tokens / wall).toFixed(2)} tok/s)`);
    await ctx.dispose();
  } finally {
    await model.dispose();
  }
}

async function kvsieve(asStored: boolean): Promise<void> {
  // weights 'stored': the K-quant blocks as the file holds them; q8_0: dequantised and quantised to q8_0
  const m = await loadModel(file, { backend: 'wasm', weights: asStored ? 'stored' : 'q8_0', threads: 1 });
  try {
    await m.complete(null, { promptIds, maxTokens: 2, ignoreEos: true });
    const c0 = cpuSeconds();
    const r = await m.complete(null, { promptIds, maxTokens: tokens + 1, ignoreEos: true });
    const cpu = (cpuSeconds() - c0) * (r.decodeSeconds / (r.decodeSeconds + r.prefillSeconds));
    const label = asStored ? 'kvsieve, K-quants as stored' : 'kvsieve, re-quantised q8_0 ';
    console.log(`  ${label} ${(tokens / cpu).toFixed(2)} tok/CPU-s  (wall ${r.decodeTokensPerSecond.toFixed(2)} tok/s; weights ${(m.info().weightBytes / 2 ** 20).toFixed(0)} MiB)`);
  } finally {
    m.dispose();
  }
}

const alternate = args.get('alternate');
if (alternate !== undefined) {
  await llama.dispose();
  const n = Number(alternate);
  const models = [
    { label: 'stored (default)', m: await loadModel(file, { backend: 'wasm', threads: 1 }), rates: [] as number[] },
    { label: 'q8_0            ', m: await loadModel(file, { backend: 'wasm', weights: 'q8_0', threads: 1 }), rates: [] as number[] },
  ];
  for (const s of models) await s.m.complete(null, { promptIds, maxTokens: 2, ignoreEos: true });
  for (let i = 0; i < n; i++) {
    for (const s of models) {
      const c0 = cpuSeconds();
      const r = await s.m.complete(null, { promptIds, maxTokens: tokens + 1, ignoreEos: true });
      const cpu = (cpuSeconds() - c0) * (r.decodeSeconds / (r.decodeSeconds + r.prefillSeconds));
      s.rates.push(tokens / cpu);
      console.log(`  run ${i + 1}: kvsieve ${s.label} ${(tokens / cpu).toFixed(2)} tok/CPU-s  (wall ${r.decodeTokensPerSecond.toFixed(2)} tok/s; weights ${(s.m.info().weightBytes / 2 ** 20).toFixed(0)} MiB)`);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  for (const s of models) console.log(`median of ${n}: kvsieve ${s.label} ${median(s.rates).toFixed(2)} tok/CPU-s`);
  for (const s of models) s.m.dispose();
} else {
  for (let i = 0; i < rounds; i++) {
    console.log(`round ${i + 1} of ${rounds} (${shape}, ${type}, 1 thread each, ${tokens} decode steps)`);
    await llamaCpp();
    await kvsieve(true);
    await kvsieve(false);
  }
  await llama.dispose();
}
