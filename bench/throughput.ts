/**
 * Throughput from freed memory (not a test): the R-KV experiment on this engine, in one run, on a
 * random-weight model with the exact shape of Qwen2.5-0.5B (or --shape), both engines on the same GGUF:
 *
 *   A. aggregate decode tokens/s at batch 1, 2, 4, 8, 16 (full cache, a short prompt, EOS ignored),
 *      beside the engine's own 512-token prefill rate, and llama.cpp's (node-llama-cpp, one context
 *      with that many sequences decoding together) at the same batches;
 *   B. reasoning-length work under a fixed KV memory: --requests requests of --gen-len generated
 *      tokens with a KV limit that holds two full-cache sequences: kvsieve's full cache and r-kv
 *      (--budget + --buffer) in the same pool, and llama.cpp's full cache with the same KV bytes
 *      (two sequences of context at a time, f16 KV as llama.cpp keeps it: so it holds as many
 *      tokens as kvsieve's f32 pool holds twice over); aggregate tokens/s and time to finish all;
 *   C. a chart of aggregate tokens/s against batch size and against KV memory (an HTML report with
 *      PNG copies, through kvsieve's report machinery);
 *   D. a burst: --burst requests (default 200) submitted at once under a --burst-kv pool (default
 *      64MiB), full cache, in a child process of its own: all must finish; its peak RSS against the
 *      weights + pool.
 *
 *   npm run bench:throughput [-- --shape qwen2.5-0.5b] [--weights q8_0] [--threads 2] [--batches 1,2,4,8,16]
 *        [--decode-tokens 64] [--requests 16] [--gen-len 4096] [--budget 512] [--buffer 128]
 *        [--memories 2] [--burst 200] [--burst-kv 64MiB] [--burst-tokens 64]
 *        [--skip-llamacpp] [--skip-a] [--skip-b] [--skip-d] [--out reports/throughput]
 *
 * --memories: part B's KV limits, as the number of full-cache sequences each holds (several draw the
 * chart against KV memory; llama.cpp runs that many sequences at a time).
 *
 * Prints markdown tables with ratios and the load the machine saw in each phase (the busy cores
 * other processes used meanwhile: on a shared machine figures mean something only where that stays
 * near 0), and ends with one JSON line holding every number.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, type Model, type WeightStorage as AnyWeightStorage } from '../src/api.js';
import { parseBytes } from '../src/core/bytes.js';
import { slotBytes } from '../src/core/kv-rows.js';
import type { GgufWeightType } from '../src/formats/gguf.js';
import { MODEL_SHAPES, type ModelShape } from '../src/model/random.js';
import type { ThroughputRecord } from '../src/eval/records.js';
import { writeReport } from '../src/eval/report.js';
import { writeRandomGguf } from './llamacpp.js';
import { cpuLlama, type NlcSequence } from './llamacpp-env.js';
import { optionMap } from './args.js';
import { cpuTimes } from './machine.js';

/** The storages a benchmark writes its random GGUF in ('stored' keeps a file's own: not a format). */
type WeightStorage = Exclude<AnyWeightStorage, 'stored'>;

const REPO = resolve(fileURLToPath(import.meta.url), '..', '..');
const CACHE = join(REPO, '.cache', 'bench');
const GGUF_TYPE: Record<WeightStorage, GgufWeightType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' };

interface Options {
  shape: ModelShape;
  weights: WeightStorage;
  threads: number;
  batches: number[];
  decodeTokens: number;
  requests: number;
  genLen: number;
  budget: number;
  buffer: number;
  /** KV limits of part B, in full-cache sequences they hold. */
  memories: number[];
  skipLlamaCpp: boolean;
  skipA: boolean;
  skipB: boolean;
  skipD: boolean;
  burst: number;
  burstKv: number;
  burstTokens: number;
  out: string;
}

function options(argv: string[]): Options {
  const m = optionMap(argv, {
    names: ['shape', 'weights', 'threads', 'batches', 'decode-tokens', 'requests', 'gen-len', 'budget', 'buffer', 'memories', 'burst', 'burst-kv', 'burst-tokens', 'skip-llamacpp', 'skip-a', 'skip-b', 'skip-d', 'out'],
    docs: 'the top of bench/throughput.ts',
  });
  const int = (k: string, d: number) => {
    const v = Number(m.get(k) ?? d);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a whole number >= 1`);
    return v;
  };
  const shape = (m.get('shape') ?? 'qwen2.5-0.5b') as ModelShape;
  if (!(shape in MODEL_SHAPES)) throw new Error(`--shape must be one of ${Object.keys(MODEL_SHAPES).join(', ')}`);
  return {
    shape,
    weights: (m.get('weights') ?? 'q8_0') as WeightStorage,
    threads: int('threads', 2),
    batches: (m.get('batches') ?? '1,2,4,8,16').split(',').map(Number),
    decodeTokens: int('decode-tokens', 64),
    requests: int('requests', 16),
    genLen: int('gen-len', 4096),
    budget: int('budget', 512),
    buffer: int('buffer', 128),
    memories: (m.get('memories') ?? '2').split(',').map(Number),
    skipLlamaCpp: m.has('skip-llamacpp'),
    skipA: m.has('skip-a'),
    skipB: m.has('skip-b'),
    skipD: m.has('skip-d'),
    burst: int('burst', 200),
    burstKv: parseBytes(m.get('burst-kv') ?? '64MiB') ?? 64 * 2 ** 20,
    burstTokens: int('burst-tokens', 64),
    out: m.get('out') ?? join(REPO, 'reports', 'throughput'),
  };
}

/** Runs `fn`, reporting the cores other processes kept busy meanwhile (the machine's busy time minus ours). */
async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number; otherCores: number }> {
  const m0 = cpuTimes();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const m1 = cpuTimes();
  const own = process.cpuUsage(own0);
  // /proc/stat counts jiffies of 10 ms; cpuUsage microseconds
  const machineBusy = m0 && m1 ? (m1.busy - m0.busy) / 100 : NaN;
  const ownSeconds = (own.user + own.system) / 1e6;
  return { value, seconds, otherCores: Math.max(0, (machineBusy - ownSeconds) / seconds) };
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');
const ids = (n: number, seed: number, vocab: number) => Array.from({ length: n }, (_, i) => 300 + ((seed * 7919 + i * 104729) % (vocab - 400)));

/** Aggregate decode tokens/s of `batch` sequences of `tokens` tokens each, together (a 16-token prompt). */
async function kvsieveBatch(model: Model, batch: number, tokens: number) {
  const vocab = model.config.vocabSize;
  const r = await measured(() => model.generateBatch(Array.from({ length: batch }, (_, i) => ids(16, i, vocab)), { maxTokens: tokens, ignoreEos: true }));
  const decodeSeconds = Math.max(...r.value.map((x) => x.decodeSeconds));
  const generated = r.value.reduce((a, x) => a + x.generatedTokens - 1, 0);
  return { tokPerS: generated / decodeSeconds, otherCores: r.otherCores };
}

async function llamaCppBatch(gguf: string, threads: number, batches: number[], tokens: number) {
  const llama = await cpuLlama(threads);
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: true });
  const out: Record<number, { tokPerS: number; otherCores: number }> = {};
  try {
    for (const b of batches) {
      const ctx = await model.createContext({ contextSize: b * (tokens + 32), batchSize: 512, threads: { ideal: threads, min: threads }, sequences: b });
      const seqs = Array.from({ length: b }, () => ctx.getSequence());
      // Decode time only: every sequence reads its prompt first, then all decode together.
      await Promise.all(seqs.map((s, i) => s.evaluateWithoutGeneratingNewTokens(ids(16, i, 256))));
      const r = await measured(() => Promise.all(seqs.map((s) => decodeN(s, tokens))));
      out[b] = { tokPerS: (b * tokens) / r.seconds, otherCores: r.otherCores };
      for (const s of seqs) s.dispose();
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
  return out;
}

async function decodeN(seq: NlcSequence, n: number): Promise<void> {
  let k = 0;
  for await (const _ of seq.evaluate([300], { temperature: 0 })) if (++k >= n) break;
}

/** llama.cpp under the same KV bytes: `parallel` sequences of context at a time, in waves. */
async function llamaCppWaves(gguf: string, threads: number, requests: number, genLen: number, parallel: number) {
  const llama = await cpuLlama(threads);
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: true });
  try {
    const ctx = await model.createContext({ contextSize: parallel * (genLen + 32), batchSize: 512, threads: { ideal: threads, min: threads }, sequences: parallel });
    const r = await measured(async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: parallel }, async () => {
          const seq = ctx.getSequence();
          while (next < requests) {
            const i = next++;
            await seq.clearHistory();
            await seq.evaluateWithoutGeneratingNewTokens(ids(16, i, 256));
            await decodeN(seq, genLen);
          }
          seq.dispose();
        }),
      );
    });
    await ctx.dispose();
    return { tokPerS: (requests * genLen) / r.seconds, seconds: r.seconds, otherCores: r.otherCores };
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  mkdirSync(CACHE, { recursive: true });
  const gguf = join(CACHE, `${o.shape}-random-${GGUF_TYPE[o.weights]}.gguf`);
  if (!existsSync(gguf)) {
    console.error(`writing ${gguf} (random weights) ...`);
    writeRandomGguf(gguf, o.shape, GGUF_TYPE[o.weights]);
  }
  const lines: string[] = [`# kvsieve throughput (${o.shape}, ${o.weights}, ${o.threads} threads on ${availableParallelism()} cores)`, ''];
  const json: Record<string, unknown> = { options: o };
  const records: ThroughputRecord[] = [];
  const record = (r: Omit<ThroughputRecord, 'kind' | 'key' | 'time' | 'model'>) =>
    records.push({ kind: 'throughput', key: `${r.press}|${r.budget}|${r.batch}|${r.kvMemoryBytes}`, time: new Date().toISOString(), model: o.shape, ...r });

  if (!o.skipA) {
    const model = await loadModel(gguf, { weights: o.weights, threads: o.threads });
    const prompt = ids(512, 99, model.config.vocabSize);
    const prefill = await measured(() => model.complete(null, { promptIds: prompt, maxTokens: 1 }));
    const prefillTokPerS = prefill.value.prefillTokensPerSecond;
    const kv: Record<number, { tokPerS: number; otherCores: number }> = {};
    for (const b of o.batches) {
      kv[b] = await kvsieveBatch(model, b, o.decodeTokens);
      console.error(`kvsieve batch ${b}: ${fmt(kv[b]!.tokPerS)} tok/s`);
      record({ press: 'full', budget: null, genLen: o.decodeTokens, kvMemoryBytes: 0, requests: b, batch: b, preemptions: 0, tokensPerSecond: kv[b]!.tokPerS, seconds: 0, peakKvBytes: 0, peakRssBytes: 0 });
    }
    model.dispose();
    const lc = o.skipLlamaCpp ? null : await llamaCppBatch(gguf, o.threads, o.batches, o.decodeTokens);
    lines.push(`## A. Batched decode (full cache, ${o.decodeTokens} tokens per sequence) against the engine's own 512-token prefill`, '');
    lines.push(`kvsieve prefill, 512 tokens: ${fmt(prefillTokPerS)} tok/s (others busy ${fmt(prefill.otherCores, 2)} cores)`, '');
    lines.push('| batch | kvsieve tok/s | vs its batch 1 | vs its prefill | llama.cpp tok/s | kvsieve / llama.cpp | others busy (cores) |', '|---|---|---|---|---|---|---|');
    for (const b of o.batches) {
      const k = kv[b]!;
      const l = lc?.[b];
      lines.push(`| ${b} | ${fmt(k.tokPerS)} | ${ratio(k.tokPerS, kv[o.batches[0]!]!.tokPerS)} | ${ratio(k.tokPerS, prefillTokPerS)} | ${l ? fmt(l.tokPerS) : '-'} | ${l ? ratio(k.tokPerS, l.tokPerS) : '-'} | ${fmt(k.otherCores, 2)}${l ? ` / ${fmt(l.otherCores, 2)}` : ''} |`);
    }
    lines.push('');
    json['batched'] = { prefillTokPerS, kvsieve: kv, llamacpp: lc };
  }

  if (!o.skipB) {
    const probe = await loadModel(gguf, { weights: o.weights, threads: o.threads });
    const c = probe.config;
    probe.dispose();
    // A limit holding `k` full-cache sequences of prompt + gen-len tokens (f32 K and V, the engine's default).
    const perToken = c.numLayers * c.numKvHeads * slotBytes('f32', c.headDim);
    const fullSeqBytes = Math.ceil((16 + o.genLen + 1) / 128) * 128 * perToken;
    const memory: Record<number, unknown> = {};
    for (const k of o.memories) {
      const limit = k * fullSeqBytes;
      const model = await loadModel(gguf, { weights: o.weights, threads: o.threads, kvMemory: limit });
      const runs: Record<string, { tokPerS: number; seconds: number; batch: number; preemptions: number; otherCores: number }> = {};
      for (const [label, compression] of [
        ['full', undefined],
        [`r-kv ${o.budget}+${o.buffer}`, { press: 'r-kv', budget: o.budget, buffer: o.buffer }],
      ] as const) {
        const r = await measured(() =>
          model.generateBatch(
            Array.from({ length: o.requests }, (_, i) => ids(16, i, c.vocabSize)),
            { maxTokens: o.genLen, ignoreEos: true, ...(compression ? { compression } : {}) },
          ),
        );
        const tokens = r.value.reduce((a, x) => a + x.generatedTokens, 0);
        const run = {
          tokPerS: tokens / r.seconds,
          seconds: r.seconds,
          batch: Math.max(...r.value.map((x) => x.peakBatchSize)),
          preemptions: r.value.reduce((a, x) => a + x.preemptions, 0),
          otherCores: r.otherCores,
        };
        runs[label] = run;
        console.error(`${k} sequences of KV, ${label}: ${fmt(run.tokPerS)} tok/s, ${fmt(r.seconds)} s`);
        record({
          press: compression ? 'r-kv' : 'full',
          budget: compression ? o.budget : null,
          genLen: o.genLen,
          kvMemoryBytes: limit,
          requests: o.requests,
          batch: run.batch,
          preemptions: run.preemptions,
          tokensPerSecond: run.tokPerS,
          seconds: r.seconds,
          peakKvBytes: 0,
          peakRssBytes: 0,
        });
      }
      model.dispose();
      const lc = o.skipLlamaCpp ? null : await llamaCppWaves(gguf, o.threads, o.requests, o.genLen, k);
      const full = runs['full']!;
      lines.push(`## B. ${o.requests} requests of ${o.genLen} tokens under ${(limit / 2 ** 20).toFixed(1)} MiB of KV memory (${k} full-cache sequences)`, '');
      lines.push('| engine, cache | ran together (most) | preemptions | aggregate tok/s | time to finish all (s) | vs kvsieve full | vs llama.cpp full | others busy (cores) |', '|---|---|---|---|---|---|---|---|');
      for (const [label, r] of Object.entries(runs)) {
        lines.push(`| kvsieve, ${label} | ${r.batch} | ${r.preemptions} | ${fmt(r.tokPerS)} | ${fmt(r.seconds)} | ${ratio(r.tokPerS, full.tokPerS)} | ${lc ? ratio(r.tokPerS, lc.tokPerS) : '-'} | ${fmt(r.otherCores, 2)} |`);
      }
      if (lc) lines.push(`| llama.cpp, full (f16 KV), ${k} at a time | ${k} | - | ${fmt(lc.tokPerS)} | ${fmt(lc.seconds)} | ${ratio(lc.tokPerS, full.tokPerS)} | 1.00x | ${fmt(lc.otherCores, 2)} |`);
      lines.push('');
      memory[k] = { limitBytes: limit, kvsieve: runs, llamacpp: lc };
    }
    json['memory'] = memory;
  }

  if (!o.skipD) {
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--burst-child', JSON.stringify({ gguf, o })], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const line = child.stdout.split('\n').find((l) => l.startsWith(BURST_TAG));
    if (!line) throw new Error(`burst child failed: ${child.stderr.slice(-2000)}`);
    const b = JSON.parse(line.slice(BURST_TAG.length)) as BurstResult;
    const MiB = 2 ** 20;
    lines.push(`## D. ${o.burst} requests of ${o.burstTokens} tokens at once under a ${(o.burstKv / MiB).toFixed(0)} MiB KV pool (full cache)`, '');
    lines.push('| finished | out of memory | other errors | most running | most waiting | preemptions | time (s) | peak RSS (MiB) | weights + pool (MiB) | overhead (MiB) |', '|---|---|---|---|---|---|---|---|---|---|');
    lines.push(`| ${b.finished} of ${o.burst} | ${b.outOfMemory} | ${b.errors} | ${b.maxRunning} | ${b.maxWaiting} | ${b.preemptions} | ${fmt(b.seconds)} | ${fmt(b.peakRss / MiB)} | ${fmt((b.weightBytes + o.burstKv) / MiB)} | ${fmt((b.peakRss - b.weightBytes - o.burstKv) / MiB)} |`, '');
    json['burst'] = b;
  }

  if (records.length > 0) {
    mkdirSync(o.out, { recursive: true });
    const file = join(o.out, 'throughput.jsonl');
    writeFileSync(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = await writeReport([file], o.out, { title: `kvsieve throughput, ${o.shape}` });
    lines.push(`Report: ${r.html} (charts: ${r.charts.join(', ')})`, '');
  }
  console.log(lines.join('\n'));
  console.log(JSON.stringify(json));
}

const BURST_TAG = '@@burst ';

interface BurstResult {
  finished: number;
  outOfMemory: number;
  errors: number;
  maxRunning: number;
  maxWaiting: number;
  preemptions: number;
  seconds: number;
  peakRss: number;
  weightBytes: number;
}

/** Part D in a process of its own, so that its peak RSS is its own. */
async function burstChild(arg: string): Promise<void> {
  const { gguf, o } = JSON.parse(arg) as { gguf: string; o: Options };
  let maxRunning = 0;
  let maxWaiting = 0;
  const model = await loadModel(gguf, {
    weights: o.weights,
    threads: o.threads,
    kvMemory: o.burstKv,
    onStep: (s) => ((maxRunning = Math.max(maxRunning, s.running)), (maxWaiting = Math.max(maxWaiting, s.waiting))),
  });
  const vocab = model.config.vocabSize;
  const t0 = performance.now();
  const outcomes = await Promise.allSettled(Array.from({ length: o.burst }, (_, i) => model.complete(null, { promptIds: ids(16 + (i % 48), i, vocab), maxTokens: o.burstTokens, ignoreEos: true })));
  const seconds = (performance.now() - t0) / 1000;
  const failed = outcomes.filter((x) => x.status === 'rejected').map((x) => String((x as PromiseRejectedResult).reason));
  const done = outcomes.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  const result: BurstResult = {
    finished: done.filter((r) => r.generatedTokens === o.burstTokens).length,
    outOfMemory: failed.filter((f) => /memory/i.test(f)).length + done.filter((r) => r.stopReason === 'kv-memory').length,
    errors: failed.length,
    maxRunning,
    maxWaiting,
    preemptions: model.kvStats().preemptions,
    seconds,
    peakRss: hwm ? Number(hwm[1]) * 1024 : process.memoryUsage().rss,
    weightBytes: model.info().weightBytes,
  };
  model.dispose();
  console.log(BURST_TAG + JSON.stringify(result));
}

const burstArg = process.argv.indexOf('--burst-child');
void (burstArg >= 0 ? burstChild(process.argv[burstArg + 1]!) : main());
