/**
 * Fidelity of every press against the full cache on stories260K (not a test): for budgets 32/64/128,
 * 500-token greedy generations (EOS ignored), the fraction of tokens identical to the full-cache run,
 * the first divergence, mean KL, and the time spent compressing as a share of decode time.
 *
 *   npx tsx bench/fidelity.ts [--tokens 500] [--buffer 128]
 * q-filters uses filters calibrated here on text the model generates itself, with window 8.
 */
import { loadModel } from '../src/api.js';
import { calibrateQFilters } from '../src/calibrate/q-filters.js';
import { runFidelity, summariseFidelity } from '../src/eval/fidelity.js';
import { stories260K } from '../test/helpers.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const maxTokens = arg('tokens', 500);
const buffer = arg('buffer', 128);
const model = await loadModel(stories260K('stories260K.bin'));

const calibration: string[] = [];
for (let i = 0; i < 8; i++) calibration.push((await model.complete('Once', { maxTokens: 400, temperature: 1, seed: 100 + i })).text);
const filters = calibrateQFilters(model, model.tokenizer!.encode(calibration.join('\n'), { addBos: false }), {
  sequences: 8,
  seqLen: 512,
  samples: 1000,
}).filters;

const presses = ['streaming-llm', 'h2o', 'tova', 'knorm', 'snapkv', 'pyramidkv', 'ada-kv', 'q-filters', 'r-kv', 'mix-kv'].map((press) => ({
  press,
  buffer,
  ...(press === 'q-filters' ? { filters, window: 8 } : {}),
}));
const prompts = ['Once upon a time', 'Lily and Tom went to the park', 'The little dog', 'One day, a girl named Mia'];
const t0 = performance.now();
const records = await runFidelity(model, { prompts, presses, budgets: [32, 64, 128], maxTokens, modelLabel: 'stories260K' });
const rows = summariseFidelity(records);
console.log(`stories260K, ${prompts.length} prompts x ${maxTokens} greedy tokens, buffer ${buffer} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
console.log('| press | budget | identical | first divergence | mean KL | compress / decode time |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.press} | ${r.budget ?? '-'} | ${(100 * r.identical).toFixed(1)}% | ${r.firstDivergence.toFixed(0)} | ${r.meanKl.toFixed(4)} | ${(100 * r.compressionShare).toFixed(1)}% |`,
  );
}
model.dispose();
