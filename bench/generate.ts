/**
 * Prefill and decode speed of the engine (not a test): stories260K, and a random-weight model with
 * the exact shape of Qwen2.5-0.5B that this script writes itself (into .cache/bench/).
 *
 *   npx tsx bench/generate.ts [--quick]
 */
import { join } from 'node:path';
import { loadModel } from '../src/api.js';
import { writeRandomModel } from '../src/model/random.js';
import { repoRoot } from '../test/helpers.js';
import { stories260K } from '../test/helpers.js';

const quick = process.argv.includes('--quick');

async function measure(label: string, path: string, promptLength: number, decodeTokens: number, runs: number) {
  const t0 = performance.now();
  const model = await loadModel(path);
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
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const info = model.info();
  console.log(
    `${label.padEnd(28)} backend ${'reference'.padEnd(10)} load ${loadSeconds.toFixed(1)} s  ` +
      `prefill(${promptLength}) ${med(prefill).toFixed(1)} tok/s  decode ${med(decode).toFixed(2)} tok/s  ` +
      `(median of ${runs}; weights ${(info.weightBytes / 2 ** 20).toFixed(0)} MiB)`,
  );
  model.dispose();
}

await measure('stories260K', stories260K('stories260K.bin'), 256, 200, quick ? 1 : 5);
const dir = writeRandomModel(join(repoRoot, '.cache', 'bench', 'qwen2.5-0.5b-shape'), 'qwen2.5-0.5b', 'BF16');
await measure('Qwen2.5-0.5B shape (random)', dir, quick ? 16 : 64, quick ? 4 : 8, 1);
