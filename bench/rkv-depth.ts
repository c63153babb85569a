/**
 * kvsieve under R-KV against llama.cpp's full cache at a reasoning depth, on the same GGUF, in one
 * process (not a test). The two engines' decode steps are interleaved in rounds (--rounds of --steps
 * steps each, alternating which engine goes first), so the host's slow and fast phases fall on both:
 * on a time-shared VM the same build moves by 10-30% between runs minutes apart.
 *
 *   - llama.cpp (node-llama-cpp, installed on demand) reads --depth random tokens (default 8192) with
 *     its full F16 cache, then decodes;
 *   - kvsieve reads --kvsieve-depth tokens (default: --depth) under r-kv (--budget 1024, --buffer 128,
 *     f16 cache), then decodes; each round resumes its held cache (reuseCache).
 *
 * Under r-kv the cache holds at most budget + buffer slots per head however deep the trace, so its
 * step costs the same at any depth past budget + buffer; --kvsieve-depth below --depth saves
 * kvsieve's long read (the printed depth says which was run). The decode figure charges each step the
 * mean compression's cost spread over `buffer` tokens (one compression per buffer tokens).
 *
 *   npx tsx bench/rkv-depth.ts --file MODEL.gguf [--depth 8192] [--kvsieve-depth N] [--budget 1024]
 *                              [--buffer 128] [--steps 8] [--rounds 3] [--threads 2]
 */
import { loadModel } from '../src/api.js';
import { Random } from '../src/core/random.js';
import { optionMap } from './args.js';
import { context, open } from './llamacpp.js';

const o = optionMap(process.argv.slice(2), { names: ['file', 'depth', 'kvsieve-depth', 'budget', 'buffer', 'steps', 'rounds', 'threads'], docs: 'bench/rkv-depth.ts' });
const file = o.get('file');
if (!file) throw new Error('--file MODEL.gguf is required');
const depth = Number(o.get('depth') ?? 8192);
const kvDepth = Number(o.get('kvsieve-depth') ?? depth);
const budget = Number(o.get('budget') ?? 1024);
const buffer = Number(o.get('buffer') ?? 128);
const steps = Number(o.get('steps') ?? 8);
const rounds = Number(o.get('rounds') ?? 3);
const threads = Number(o.get('threads') ?? 2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const stamp = () => new Date().toISOString().slice(11, 19);

// llama.cpp: the full cache filled to depth
const rnd = new Random(7);
const randomToken = () => Math.floor(rnd.next() * 256);
const { model: lModel } = await open(file, threads);
const ctx = await context(lModel, depth + rounds * (steps + 2) + 16, threads, 'auto');
const seq = ctx.getSequence();
let t = performance.now();
await seq.evaluateWithoutGeneratingNewTokens(Array.from({ length: depth }, randomToken));
console.log(`${stamp()} llama.cpp read ${depth} tokens in ${((performance.now() - t) / 1000).toFixed(0)} s`);

// kvsieve: r-kv over kvDepth tokens
const model = await loadModel(file, { threads });
console.log(`${stamp()} kvsieve: ${model.info().backend}`);
let ids = Array.from({ length: kvDepth }, (_, i) => (i === 0 ? 151646 : 100 + ((i * 7919) % 100000)));
const compression = { press: 'r-kv', budget, buffer } as const;
let compressions = 0;
let compressionSeconds = 0;
async function kvsieveRound(n: number): Promise<number[]> {
  const times: number[] = [];
  let last = 0;
  const r = await model.complete(null, {
    promptIds: ids,
    maxTokens: n + 2, // n + 1 decode intervals; the first, after the resumed read, is dropped as llama.cpp's is
    ignoreEos: true,
    kvDtype: 'f16',
    compression,
    reuseCache: true,
    onLogits: () => {
      const now = performance.now();
      if (last) times.push(now - last);
      last = now;
    },
  });
  ids = [...ids, ...r.generatedIds];
  compressions += r.compressions;
  compressionSeconds += r.compressionSeconds;
  return times.slice(1);
}
t = performance.now();
await kvsieveRound(1);
console.log(`${stamp()} kvsieve read ${kvDepth} tokens under r-kv ${budget}+${buffer} in ${((performance.now() - t) / 1000).toFixed(0)} s (${compressions} compressions, ${(compressionSeconds / Math.max(1, compressions)).toFixed(3)} s each)`);

async function llamaRound(n: number): Promise<number[]> {
  const times: number[] = [];
  let last = performance.now();
  for await (const _ of seq.evaluate([randomToken()], { temperature: 0 })) {
    const now = performance.now();
    times.push(now - last);
    last = now;
    if (times.length >= n) break;
  }
  return times.slice(1); // the first includes reading the round's first token
}

const ll: number[] = [];
const kv: number[] = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ['llama.cpp', 'kvsieve'] : ['kvsieve', 'llama.cpp'];
  for (const who of order) {
    const times = who === 'kvsieve' ? await kvsieveRound(steps) : await llamaRound(steps + 1);
    (who === 'kvsieve' ? kv : ll).push(...times);
    console.log(`${stamp()} round ${r + 1} ${who.padEnd(9)} ms per step: ${times.map((x) => x.toFixed(0)).join(' ')}`);
  }
}
const perCompression = compressions ? compressionSeconds / compressions : 0;
const kvRate = 1000 / median(kv);
const kvAmortised = 1 / (median(kv) / 1000 + perCompression / buffer);
const llRate = 1000 / median(ll);
console.log(`llama.cpp, full cache at depth ${depth}: ${llRate.toFixed(2)} tok/s (median step)`);
console.log(`kvsieve, r-kv ${budget}+${buffer} at depth ${kvDepth}: ${kvRate.toFixed(2)} tok/s (median step); with one compression (${perCompression.toFixed(3)} s) per ${buffer} tokens: ${kvAmortised.toFixed(2)} tok/s`);
console.log(`ratio: ${(kvAmortised / llRate).toFixed(2)}x (${(kvRate / llRate).toFixed(2)}x without compressions)`);
model.dispose();
await ctx.dispose();
await lModel.dispose();
