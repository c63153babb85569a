/**
 * Fidelity of every press against the full cache on stories260K (not a test): for budgets 32/64/128,
 * 500-token greedy generations (EOS ignored), the fraction of tokens identical to the full-cache run,
 * the first divergence, mean KL, and the time spent compressing as a share of decode time; r-kv and
 * snapkv once more with the prompt protected (protectPrompt, the +pp column).
 *
 *   npx tsx bench/fidelity.ts [--tokens 500] [--buffer 128]
 * q-filters and triattention use statistics calibrated here on text the model generates itself;
 * q-filters and random-pp keep a window of 8 (their default 64 does not fit these budgets).
 */
import { loadModel } from '../src/api.js';
import { calibrateQFilters } from '../src/calibrate/q-filters.js';
import { calibrateTriAttention } from '../src/calibrate/triattention.js';
import { runFidelity, summariseFidelity } from '../src/eval/fidelity.js';
import type { CompressionSettings } from '../src/generate/compression.js';
import { stories260K } from '../test/helpers.js';
import { availableParallelism, loadavg } from 'node:os';
import { cpuTimes } from './machine.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const maxTokens = arg('tokens', 500);
const buffer = arg('buffer', 128);
const model = await loadModel(stories260K('stories260K.bin'));

const calibration: string[] = [];
for (let i = 0; i < 8; i++) calibration.push((await model.complete('Once', { maxTokens: 400, temperature: 1, seed: 100 + i })).text);
const calibrationIds = model.tokenizer!.encode(calibration.join('\n'), { addBos: false });
const filters = calibrateQFilters(model, calibrationIds, { sequences: 8, seqLen: 512, samples: 1000 }).filters;
const stats = calibrateTriAttention(model, textPieces(calibrationIds, 512)).stats;

function textPieces(ids: number[], len: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < ids.length; i += len) out.push(ids.slice(i, i + len));
  return out;
}

const names = ['streaming-llm', 'h2o', 'tova', 'knorm', 'snapkv', 'pyramidkv', 'ada-kv', 'q-filters', 'r-kv', 'mix-kv', 'triattention', 'random-pp'];
const presses: CompressionSettings[] = names.map((press) => ({
  press,
  buffer,
  ...(press === 'q-filters' ? { filters, window: 8 } : {}),
  ...(press === 'triattention' ? { stats } : {}),
  ...(press === 'random-pp' ? { window: 8 } : {}),
}));
presses.push({ press: 'r-kv', buffer, protectPrompt: true }, { press: 'snapkv', buffer, protectPrompt: true });
const prompts = ['Once upon a time', 'Lily and Tom went to the park', 'The little dog', 'One day, a girl named Mia'];
const t0 = performance.now();
const [cpu0, own0] = [cpuTimes(), process.cpuUsage()];
const records = await runFidelity(model, { prompts, presses, budgets: [32, 64, 128], maxTokens, modelLabel: 'stories260K' });
const [cpu1, own1] = [cpuTimes(), process.cpuUsage(own0)];
const seconds = (performance.now() - t0) / 1000;
// Other processes' CPU meanwhile: the machine's busy time (/proc/stat, 100 ticks/s) minus this process's.
const others = cpu0 && cpu1 ? ((cpu1.busy - cpu0.busy) / 100 - (own1.user + own1.system) / 1e6) / seconds : NaN;
const load = `${availableParallelism()} cores; other processes used ${others.toFixed(2)} cores on average; load average ${loadavg()[0]!.toFixed(1)}`;
const rows = summariseFidelity(records);
console.log(`stories260K, ${prompts.length} prompts x ${maxTokens} greedy tokens, buffer ${buffer} (${seconds.toFixed(0)} s; ${load})`);
console.log('| press | budget | identical | first divergence | mean KL | compress / decode time | with protect-prompt: identical / mean KL |');
console.log('|---|---|---|---|---|---|---|');
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
for (const r of rows.filter((x) => !x.press.endsWith('+pp'))) {
  const pp = rows.find((x) => x.press === `${r.press}+pp` && x.budget === r.budget);
  console.log(
    `| ${r.press} | ${r.budget ?? '-'} | ${pct(r.identical)} | ${r.firstDivergence.toFixed(0)} | ${r.meanKl.toFixed(4)} | ${pct(r.compressionShare)} | ${pp ? `${pct(pp.identical)} / ${pp.meanKl.toFixed(4)}` : ''} |`,
  );
}
model.dispose();
