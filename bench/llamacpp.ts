/**
 * llama.cpp speed anchor (not a test): prefill and decode speed of a GGUF model in llama.cpp (node-llama-cpp,
 * CPU backend, f16 KV cache), to compare kvsieve with. node-llama-cpp is installed on demand (llamacpp-env.ts).
 *
 *   npx tsx bench/llamacpp.ts --model FILE.gguf [--threads 2] [--prompt 512] [--gen 128] [--depth 0] [--runs 3]
 *   npx tsx bench/llamacpp.ts --write-random qwen2.5-0.5b --weight-type Q8_0 --out FILE.gguf   (random weights)
 *   npx tsx bench/llamacpp.ts --model FILE.gguf --greedy 1,403,407 --n 20                      (greedy ids)
 *
 * Prefill: `--prompt` random tokens evaluated in one go (batch 512) after `--depth` tokens already in the cache;
 * the best of `--runs` runs. Decode: `--gen` single-token steps after that; the median step.
 * `--flash-attention auto|on|off` (default auto, llama.cpp's default); `--json` prints one JSON object instead of text.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { KvsieveError } from '../src/core/errors.js';
import { writeGguf, type GgufWeightType } from '../src/formats/gguf.js';
import type { ModelConfig } from '../src/core/model-config.js';
import { MODEL_SHAPES, randomModelTensors, type ModelShape } from '../src/model/random.js';
import { Random } from '../src/core/random.js';
import { optionMap } from './args.js';
import { cpuLlama, type NlcContext, type NlcModel, type Token } from './llamacpp-env.js';

export interface SpeedOptions {
  model: string;
  threads?: number;
  prompt?: number;
  gen?: number;
  depth?: number;
  runs?: number;
  /** Flash attention (llama.cpp's default, 'auto', uses it on CPU when the model allows). */
  flashAttention?: boolean | 'auto';
  seed?: number;
}

export interface SpeedResult {
  model: string;
  threads: number;
  prompt: number;
  gen: number;
  depth: number;
  contextSize: number;
  /** Best of the runs, tokens per second. */
  prefillTokPerS: number;
  prefillRunsTokPerS: number[];
  /** 1 / median step time. */
  decodeTokPerS: number;
  decodeStepMsMedian: number;
  loadSeconds: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function open(modelPath: string, threads: number) {
  if (!existsSync(modelPath)) throw new KvsieveError(`${modelPath}: no such file`);
  const llama = await cpuLlama(threads);
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
  return { llama, model, loadSeconds: (performance.now() - t0) / 1000 };
}

export async function context(model: NlcModel, size: number, threads: number, flash: boolean | 'auto'): Promise<NlcContext> {
  const o: Parameters<NlcModel['createContext']>[0] = {
    contextSize: size,
    batchSize: Math.min(512, size),
    threads: { ideal: threads, min: threads },
    sequences: 1,
    experimentalKvCacheKeyType: 'F16',
    experimentalKvCacheValueType: 'F16',
  };
  if (flash !== 'auto') o.flashAttention = flash;
  return model.createContext(o);
}

/** Prefill / decode speed of a GGUF model in llama.cpp (CPU). */
export async function llamaCppSpeed(o: SpeedOptions): Promise<SpeedResult> {
  const threads = o.threads ?? 2;
  const prompt = o.prompt ?? 512;
  const gen = o.gen ?? 128;
  const depth = o.depth ?? 0;
  const runs = o.runs ?? 3;
  const { llama, model, loadSeconds } = await open(o.model, threads);
  try {
    const ctx = await context(model, depth + prompt + gen + 8, threads, o.flashAttention ?? 'auto');
    const seq = ctx.getSequence();
    const rnd = new Random(o.seed ?? 7);
    const vocab = 256; // byte-range ids exist in every vocabulary; ids are random, content does not matter for speed
    const randomTokens = (n: number): Token[] => Array.from({ length: n }, () => Math.floor(rnd.next() * vocab));
    const prefill: number[] = [];
    for (let r = 0; r < runs; r++) {
      await seq.clearHistory();
      if (depth > 0) await seq.evaluateWithoutGeneratingNewTokens(randomTokens(depth));
      const tokens = randomTokens(prompt);
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(tokens);
      prefill.push(prompt / ((performance.now() - t0) / 1000));
    }
    const steps: number[] = [];
    let last = performance.now();
    for await (const _ of seq.evaluate(randomTokens(1), { temperature: 0 })) {
      const now = performance.now();
      steps.push(now - last);
      last = now;
      if (steps.length >= gen) break;
    }
    const stepMs = median(steps);
    const result: SpeedResult = {
      model: o.model,
      threads,
      prompt,
      gen,
      depth,
      contextSize: ctx.contextSize,
      prefillTokPerS: Math.max(...prefill),
      prefillRunsTokPerS: prefill,
      decodeTokPerS: 1000 / stepMs,
      decodeStepMsMedian: stepMs,
      loadSeconds,
    };
    await ctx.dispose();
    return result;
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

/**
 * Greedy continuation in llama.cpp: feeds `promptIds` as they are (no BOS added) and returns the next `n`
 * argmax ids (EOS does not stop it). For parity checks against kvsieve on a GGUF written by the project.
 */
export async function llamaCppGreedy(modelPath: string, promptIds: readonly number[], n: number, threads = 2): Promise<number[]> {
  const { llama, model } = await open(modelPath, threads);
  try {
    const ctx = await context(model, promptIds.length + n + 8, threads, 'auto');
    const out: number[] = [];
    if (n > 0) {
      for await (const t of ctx.getSequence().evaluate([...promptIds], { temperature: 0 })) {
        out.push(t);
        if (out.length >= n) break;
      }
    }
    await ctx.dispose();
    return out;
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

/** llama.cpp's own tokenizer on `text` (special tokens parsed), without BOS. */
export async function llamaCppTokenize(modelPath: string, text: string): Promise<number[]> {
  const { llama, model } = await open(modelPath, 1);
  try {
    return model.tokenize(text, false);
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

/**
 * Writes a GGUF with random weights in the shape of a published model (src/model/random.ts' shapes and its
 * initialisation: uniform, std 0.02 for matrices, norms around 1, biases std 0.1), tensor by tensor.
 */
export function writeRandomGguf(file: string, shape: ModelShape, weightType: GgufWeightType, seed = 1): ModelConfig {
  const { config, tensors } = randomModelTensors(shape, seed);
  mkdirSync(dirname(file), { recursive: true }); // a fresh checkout has no .cache/bench yet
  writeGguf(file, { config, tensors, weightType, name: `${shape} (random weights)` });
  return config;
}

// ------------------------------------------------------------------------------------------------
// CLI

async function main(): Promise<void> {
  const args = optionMap(process.argv.slice(2));
  const int = (k: string, d: number) => {
    const v = args.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new KvsieveError(`--${k} must be a whole number, got ${v}`);
    return n;
  };
  const json = args.has('json');
  const shape = args.get('write-random');
  if (shape !== undefined) {
    if (!(shape in MODEL_SHAPES)) throw new KvsieveError(`--write-random: unknown shape ${shape} (${Object.keys(MODEL_SHAPES).join(', ')})`);
    const out = args.get('out');
    if (!out) throw new KvsieveError('--write-random needs --out FILE.gguf');
    const wt = (args.get('weight-type') ?? 'Q8_0') as GgufWeightType;
    const t0 = performance.now();
    writeRandomGguf(out, shape as ModelShape, wt, int('seed', 1));
    console.log(`wrote ${out} (${shape}, ${wt}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return;
  }
  const model = args.get('model');
  if (!model) throw new KvsieveError('--model FILE.gguf is required');
  const threads = int('threads', 2);
  const greedy = args.get('greedy');
  if (greedy !== undefined) {
    const ids = greedy.split(',').map((s) => Number(s.trim()));
    if (!ids.every((x) => Number.isInteger(x) && x >= 0)) throw new KvsieveError('--greedy takes comma-separated token ids');
    const out = await llamaCppGreedy(model, ids, int('n', 20), threads);
    console.log(json ? JSON.stringify({ prompt: ids, greedy: out }) : out.join(','));
    return;
  }
  const fa = args.get('flash-attention') ?? 'auto';
  const r = await llamaCppSpeed({
    model,
    threads,
    prompt: int('prompt', 512),
    gen: int('gen', 128),
    depth: int('depth', 0),
    runs: int('runs', 3),
    flashAttention: fa === 'auto' ? 'auto' : fa === 'on' || fa === 'true',
  });
  if (json) console.log(JSON.stringify(r));
  else {
    console.log(
      `llama.cpp CPU ${r.threads} threads, f16 KV, ${model}: prefill(${r.prompt} at depth ${r.depth}) ${r.prefillTokPerS.toFixed(1)} tok/s ` +
        `(runs ${r.prefillRunsTokPerS.map((x) => x.toFixed(1)).join(', ')}), decode ${r.decodeTokPerS.toFixed(2)} tok/s ` +
        `(median of ${r.gen} steps, ${r.decodeStepMsMedian.toFixed(1)} ms), load ${r.loadSeconds.toFixed(1)} s`,
    );
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ''))) {
  main().catch((e: unknown) => {
    console.error(e instanceof KvsieveError ? `error: ${e.message}` : e);
    process.exit(1);
  });
}
