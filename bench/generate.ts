/**
 * Prefill and decode speed of the engine (not a test): stories260K, and a random-weight model with
 * the exact shape of Qwen2.5-0.5B that this script writes itself (into .cache/bench/), on the plain
 * TypeScript reference backend and the wasm backend, measured in the same run.
 *
 *   npx tsx bench/generate.ts [--quick]
 */
import { join } from 'node:path';
import { loadModel, type LoadOptions } from '../src/api.js';
import { writeRandomModel } from '../src/model/random.js';
import { repoRoot, stories260K } from '../test/helpers.js';

const quick = process.argv.includes('--quick');
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(label: string, path: string, load: LoadOptions, promptLength: number, decodeTokens: number, runs: number) {
  const t0 = performance.now();
  const model = await loadModel(path, load);
  const loadSeconds = (performance.now() - t0) / 1000;
  const vocab = model.config.vocabSize;
  const prompt = Array.from({ length: promptLength }, (_, i) => 3 + ((i * 7919) % (vocab - 3)));
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < runs; r++) {
    const res = await model.complete(null, { promptIds: prompt, maxTokens: decodeTokens, ignoreEos: true });
    prefill.push(res.prefillTokensPerSecond);
    decode.push(res.decodeTokensPerSecond);
  }
  const info = model.info();
  console.log(
    `| ${label} | ${info.backend} | ${promptLength} | ${med(prefill).toFixed(1)} | ${med(decode).toFixed(2)} | ` +
      `${(info.weightBytes / 2 ** 20).toFixed(0)} MiB | ${loadSeconds.toFixed(1)} s | ${runs} |`,
  );
  model.dispose();
  return { prefill: med(prefill), decode: med(decode) };
}

console.log('| model | backend | prompt | prefill tok/s | decode tok/s | weights held | load | runs (median) |');
console.log('|---|---|---|---|---|---|---|---|');
const s = stories260K('stories260K.bin');
const sRef = await measure('stories260K', s, { backend: 'reference' }, 256, 200, quick ? 1 : 5);
const sWasm = await measure('stories260K', s, { backend: 'wasm', weights: 'f32' }, 256, 200, quick ? 1 : 5);
const dir = writeRandomModel(join(repoRoot, '.cache', 'bench', 'qwen2.5-0.5b-shape'), 'qwen2.5-0.5b', 'BF16');
const qRef = await measure('Qwen2.5-0.5B shape (random)', dir, { backend: 'reference' }, quick ? 16 : 64, quick ? 4 : 8, 1);
const qWasm = await measure('Qwen2.5-0.5B shape (random)', dir, { backend: 'wasm', weights: 'q8_0' }, quick ? 64 : 256, quick ? 8 : 32, quick ? 1 : 3);
console.log(
  `\nwasm / reference, same run: stories260K prefill ${(sWasm.prefill / sRef.prefill).toFixed(2)}x, decode ${(sWasm.decode / sRef.decode).toFixed(2)}x; ` +
    `Qwen2.5-0.5B shape prefill ${(qWasm.prefill / qRef.prefill).toFixed(1)}x, decode ${(qWasm.decode / qRef.decode).toFixed(1)}x`,
);
