// GGUF files written by kvsieve load in llama.cpp (node-llama-cpp, CPU) and decode greedily to exactly the same
// token ids as kvsieve on the same file (f32 weights, f32 KV cache, both backends), and as llama2.c's run.c
// (stories260K golden) or the fixtures' float64 reference (tiny models).
//
// node-llama-cpp is not a project dependency: bench/llamacpp-env.ts installs a pinned version into
// .cache/bench/llamacpp/ from the npm registry on first use (~85 MB, ~10 s). Without a registry the tests fail
// naming the cause; KVSIEVE_SKIP_LLAMACPP=1 skips them instead (when it is not installed already).
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LoadOptions } from '../../src/api.js';
import { writeGguf } from '../../src/formats/gguf.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { ggufVocabFromLlama2c } from '../../src/formats/gguf-vocab.js';
import {
  cpuLlama,
  ensureNodeLlamaCpp,
  LLAMACPP_DIR,
  NODE_LLAMA_CPP_VERSION,
  nodeLlamaCppInstalled,
  type NlcLlama,
  type NlcModel,
} from '../../bench/llamacpp-env.js';
import { tinyQ4KMModel } from './kquant-model.js';
import { ggufFromSafetensors, rng, stories260K, storiesGoldens, storiesHfConfig, tempDir, tinyModel, TINY_MODELS } from '../helpers.js';
import { GEMMA3_CONFIG, writeTinyGemma3 } from '../model/gemma3.js';
import { QWEN3_MOE_CONFIG, writeTinyQwen3Moe } from '../model/qwen3-moe.js';
import { GPT_OSS_CONFIG, writeTinyGptOss } from '../model/gpt-oss.js';

const { dir: tmp, cleanup } = tempDir('kvsieve-gguf-llamacpp-');
process.on('exit', cleanup);

/** Installation may take a while on a slow registry; decoding itself takes a few seconds. */
const TIMEOUT_MS = 300_000;

/**
 * One thread each, for llama.cpp and the wasm backend: with models this small, two threads on a 2-core machine
 * (beside Node's main thread) make every decode step many times slower (llama.cpp ~13 ms instead of ~0.5 ms;
 * kvsieve wasm 5.5 s instead of 0.6 s for the stories260K runs), as the workers wait on each other.
 */
const LLAMA_THREADS = 1;

/** kvsieve configurations compared with llama.cpp: f32 weights, f32 KV cache (the default). */
const KVSIEVE: { label: string; options: LoadOptions }[] = [
  { label: 'reference', options: { backend: 'reference' } },
  { label: 'wasm f32', options: { backend: 'wasm', weights: 'f32', threads: 1 } },
];

// ---------------------------------------------------------------------------------------------
// node-llama-cpp, installed and started once for the file

type Llama = { llama: NlcLlama } | { skip: string };
let llamaPromise: Promise<Llama> | null = null;

async function startLlama(): Promise<Llama> {
  const skipWanted = process.env['KVSIEVE_SKIP_LLAMACPP'] === '1';
  const installed = () => {
    try {
      return nodeLlamaCppInstalled();
    } catch {
      return false; // no prebuilt binary for this platform: ensureNodeLlamaCpp() below names it
    }
  };
  if (skipWanted && !installed()) {
    return { skip: `KVSIEVE_SKIP_LLAMACPP=1 and node-llama-cpp ${NODE_LLAMA_CPP_VERSION} is not installed in ${LLAMACPP_DIR} (install not attempted)` };
  }
  try {
    await ensureNodeLlamaCpp();
  } catch (e) {
    const cause = e instanceof Error ? e.message : String(e);
    const msg =
      `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} could not be installed into ${LLAMACPP_DIR} from the npm registry ` +
      `or imported from there: ${cause}. The llama.cpp parity tests need it; set KVSIEVE_SKIP_LLAMACPP=1 to skip them where there is no registry.`;
    if (skipWanted) return { skip: msg };
    throw new Error(msg, { cause: e });
  }
  // Installed: a llama.cpp that does not start is a failure whatever KVSIEVE_SKIP_LLAMACPP says.
  return { llama: await cpuLlama(LLAMA_THREADS) };
}

/** The shared llama.cpp instance, or null when the test was skipped (KVSIEVE_SKIP_LLAMACPP=1 and no install). */
async function llamaOrSkip(t: TestContext): Promise<NlcLlama | null> {
  llamaPromise ??= startLlama();
  const r = await llamaPromise;
  if ('skip' in r) {
    t.skip(r.skip);
    return null;
  }
  return r.llama;
}

// Without this the native llama.cpp state keeps the test process alive.
after(async () => {
  if (!llamaPromise) return;
  const r = await llamaPromise.catch(() => null);
  if (r && 'llama' in r) await r.llama.dispose();
});

/**
 * Greedy continuation in llama.cpp: `promptIds` fed as they are (no BOS added), then the next `n` argmax ids;
 * EOS and BOS do not stop it. f32 KV cache, no flash attention: the plain f32 path, as kvsieve's.
 */
async function llamaCppGreedy(llama: NlcLlama, file: string, prompts: readonly (readonly number[])[], n: number): Promise<number[][]> {
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  try {
    const longest = Math.max(...prompts.map((p) => p.length));
    const ctx = await model.createContext({
      contextSize: Math.min(model.trainContextSize, longest + n + 8),
      batchSize: 512,
      threads: { ideal: LLAMA_THREADS, min: LLAMA_THREADS },
      sequences: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    try {
      const seq = ctx.getSequence();
      const outs: number[][] = [];
      for (const prompt of prompts) {
        await seq.clearHistory();
        const out: number[] = [];
        for await (const id of seq.evaluate([...prompt], { temperature: 0 })) {
          out.push(id);
          if (out.length >= n) break;
        }
        outs.push(out);
      }
      return outs;
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

async function kvsieveGreedy(file: string, options: LoadOptions, prompts: readonly (readonly number[])[], n: number): Promise<number[][]> {
  const model = await loadModel(file, options);
  try {
    const outs: number[][] = [];
    for (const promptIds of prompts) {
      const r = await model.complete(null, { promptIds, maxTokens: n, ignoreEos: true });
      assert.equal(r.stopReason, 'max-tokens');
      outs.push(r.generatedIds);
    }
    return outs;
  } finally {
    model.dispose();
  }
}

/** Index of the first difference of two id lists (over the shorter length), or -1. */
function firstDiff(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Asserts identical ids with a message that says where they part. */
function assertSameIds(got: readonly number[], want: readonly number[], what: string): void {
  const i = firstDiff(got, want);
  assert.ok(
    i < 0 && got.length === want.length,
    `${what}: ${i < 0 ? `lengths ${got.length} and ${want.length}` : `first difference at generated token ${i}: ${got[i]} vs ${want[i]}`}`,
  );
}

const readJson = <T>(file: string) => JSON.parse(readFileSync(file, 'utf8')) as T;

// ---------------------------------------------------------------------------------------------
// stories260K: its HF conversion written as an F32 GGUF with its own (sentencepiece) vocabulary

function writeStories(): string {
  return ggufFromSafetensors(join(tmp, 'stories260K-F32.gguf'), stories260K('hf', 'model.safetensors'), {
    config: storiesHfConfig(),
    tokenizer: ggufVocabFromLlama2c(stories260K('tok512.bin'), 512),
    name: 'stories260K',
  });
}

test('llama.cpp parity: stories260K F32 GGUF, greedy ids of llama.cpp = kvsieve (reference, wasm f32) = run.c golden', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const file = writeStories();
  const goldens = storiesGoldens();
  // One run per distinct prompt, as long as run.c's longest (-n 500: 500 forward passes after BOS, prompt
  // included), plus BOS alone. EOS/BOS do not stop either engine, so every run fills (almost) the 512 context.
  const prompts = [...new Map(goldens.map((g) => [g.prompt_ids.join(','), g.prompt_ids])).values(), [1]];
  const n = 500 - Math.max(...prompts.map((p) => p.length)) + 1;
  assert.ok(n >= 480);

  const fromLlama = await llamaCppGreedy(llama, file, prompts, n);
  prompts.forEach((p, i) => assert.equal(fromLlama[i]!.length, n, `llama.cpp produced ${fromLlama[i]!.length} of ${n} tokens for [${p.join(',')}]`));

  // run.c's golden ids (its runs stop at BOS or after `steps` passes: a prefix of the longer continuation)
  for (const g of goldens) {
    const i = prompts.findIndex((p) => p.join(',') === g.prompt_ids.join(','));
    const want = g.ids.slice(g.prompt_ids.length);
    assert.ok(want.length > 200);
    assertSameIds(fromLlama[i]!.slice(0, want.length), want, `llama.cpp vs run.c, "${g.prompt}" -n ${g.steps}`);
  }
  for (const { label, options } of KVSIEVE) {
    const fromKvsieve = await kvsieveGreedy(file, options, prompts, n);
    prompts.forEach((p, i) => assertSameIds(fromKvsieve[i]!, fromLlama[i]!, `kvsieve ${label} vs llama.cpp, prompt [${p.join(',')}]`));
  }
});

test('llama.cpp parity: llama.cpp tokenizes with the stories260K GGUF vocabulary as run.c does', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const file = writeStories();
  const model: NlcModel = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  try {
    assert.equal(model.tokens.bos, 1);
    assert.equal(model.tokens.eos, 2);
    const cases = readJson<{ cases: { text: string; ids_with_bos: number[] }[] }>(stories260K('golden', 'encoder_ids.json')).cases;
    assert.equal(cases.length, 25);
    // special-token text ("<s>") is plain text here, as in run.c
    for (const c of cases) assert.deepEqual([1, ...model.tokenize(c.text, false)], c.ids_with_bos, JSON.stringify(c.text));
    for (const g of storiesGoldens()) {
      assert.deepEqual([1, ...model.tokenize(g.prompt, false)], g.prompt_ids, g.prompt);
    }
  } finally {
    await model.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// Tiny random fixtures (llama3 rope scaling, qwen2 biases, qwen3 q/k norm, mistral), written as F32 GGUFs
// with the writer's synthetic vocabulary

test('llama.cpp parity: tiny fixture F32 GGUFs, greedy ids of llama.cpp = kvsieve (reference, wasm f32) = reference', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const n = 200;
  for (const name of TINY_MODELS) {
    const config = parseHfConfig(readJson(tinyModel(name, 'config.json')), tinyModel(name, 'config.json'));
    const file = ggufFromSafetensors(join(tmp, `${name}-F32.gguf`), tinyModel(name, 'model.safetensors'), { config });
    const expected = readJson<{ prompt_ids: number[]; greedy_ids: number[] }>(tinyModel(name, 'expected.json'));
    const [fromLlama] = await llamaCppGreedy(llama, file, [expected.prompt_ids], n);
    assert.equal(fromLlama!.length, n, name);
    // the fixture's float64 reference covers the first 20 tokens (all with margins >= 3e-3)
    assertSameIds(fromLlama!.slice(0, expected.greedy_ids.length), expected.greedy_ids, `${name}: llama.cpp vs the fixture's reference`);
    for (const { label, options } of KVSIEVE) {
      const [fromKvsieve] = await kvsieveGreedy(file, options, [expected.prompt_ids], n);
      assertSameIds(fromKvsieve!, fromLlama!, `${name}: kvsieve ${label} vs llama.cpp`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Gemma 3: sliding-window layers (window 6, five of every six layers), their own RoPE base, linear
// scaling on the global layer, four norms per layer, GELU, the embedding scale

test('llama.cpp parity: a tiny random Gemma 3 written as an F32 GGUF, greedy ids of llama.cpp = kvsieve (reference, wasm f32)', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const hf = writeTinyGemma3(join(tmp, 'gemma3-hf'));
  const file = ggufFromSafetensors(join(tmp, 'gemma3-F32.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(GEMMA3_CONFIG) });
  const r = rng(9);
  const prompts = [0, 1, 2].map((i) => Array.from({ length: 5 + 7 * i }, () => 3 + Math.floor(r() * 290)));
  const n = 100;
  const fromLlama = await llamaCppGreedy(llama, file, prompts, n);
  // llama.cpp computes GELU from an f16 table: its logits are off by up to ~1e-2 here, so where two
  // tokens are that close its greedy path may part from an exact engine's. So its path is fed to
  // kvsieve, and at every step llama.cpp's choice must be kvsieve's argmax or within 2e-2 of it (logits
  // are a few units); nearly all must be the argmax itself. A window off by one fails at once.
  for (const { label, options } of KVSIEVE) {
    const model = await loadModel(file, options);
    try {
      let steps = 0;
      let exact = 0;
      prompts.forEach((p, i) => {
        // node-llama-cpp ends a generation at a token it takes for end-of-generation, whatever we ask
        const got = fromLlama[i]!;
        assert.ok(got.length >= 50, `llama.cpp gave ${got.length} tokens for prompt ${i}`);
        const rows = model.logits([...p, ...got.slice(0, -1)]).slice(p.length - 1);
        rows.forEach((row, step) => {
          const gap = Math.max(...row) - row[got[step]!]!;
          assert.ok(gap <= 2e-2, `gemma3 ${label}, prompt ${i}, step ${step}: llama.cpp chose ${got[step]}, ${gap} below kvsieve's best`);
          steps++;
          if (gap === 0) exact++;
        });
      });
      assert.ok(exact >= 0.95 * steps, `gemma3 ${label}: llama.cpp chose kvsieve's argmax at ${exact} of ${steps} steps`);
      t.diagnostic(`${label}: llama.cpp's choice was kvsieve's argmax at ${exact} of ${steps} steps, within 2e-2 at the others`);
    } finally {
      model.dispose();
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Qwen3-MoE: the router's top 2 of 8 experts on every layer, renormalised

/**
 * llama.cpp's greedy ids on an F32 GGUF written from the HF checkpoint `hf` are kvsieve's, for three
 * random prompts from `seed`. node-llama-cpp ends a generation at EOS; kvsieve ignores it, so it must
 * have chosen EOS right there.
 */
async function assertGreedyParity(t: TestContext, llama: NlcLlama, what: string, hf: string, config: Record<string, unknown> & { eos_token_id: number }, seed: number): Promise<void> {
  const file = ggufFromSafetensors(join(tmp, `${what}-F32.gguf`), join(hf, 'model.safetensors'), { config: parseHfConfig(config) });
  const r = rng(seed);
  const prompts = [0, 1, 2].map((i) => Array.from({ length: 4 + 9 * i }, () => 3 + Math.floor(r() * 290)));
  const n = 100;
  const fromLlama = await llamaCppGreedy(llama, file, prompts, n);
  const compared = fromLlama.reduce((a, g) => a + g.length, 0);
  assert.ok(compared >= 150, `llama.cpp gave ${fromLlama.map((g) => g.length).join(', ')} tokens`);
  for (const { label, options } of KVSIEVE) {
    const fromKvsieve = await kvsieveGreedy(file, options, prompts, n);
    prompts.forEach((p, i) => {
      const got = fromLlama[i]!;
      assertSameIds(fromKvsieve[i]!.slice(0, got.length), got, `${what}: kvsieve ${label} vs llama.cpp, prompt ${i}`);
      if (got.length < n) assert.equal(fromKvsieve[i]![got.length], config.eos_token_id, `prompt ${i}: llama.cpp stopped, kvsieve's next is EOS`);
    });
  }
  t.diagnostic(`${compared} ids compared per configuration`);
}

test('llama.cpp parity: a tiny random Qwen3-MoE written as an F32 GGUF, greedy ids of llama.cpp = kvsieve (reference, wasm f32)', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  await assertGreedyParity(t, llama, 'qwen3moe', writeTinyQwen3Moe(join(tmp, 'qwen3-moe-hf')), QWEN3_MOE_CONFIG, 4);
});

// GPT-OSS: attention sinks, YaRN (llama.cpp's rounded correction range), every other layer sliding over
// 6 positions, the biased router's top 2 of 4 experts, biased experts with the clamped SwiGLU

test('llama.cpp parity: a tiny random GPT-OSS written as an F32 GGUF, greedy ids of llama.cpp = kvsieve (reference, wasm f32)', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const config = { ...GPT_OSS_CONFIG, rope_scaling: { ...GPT_OSS_CONFIG.rope_scaling, truncate: true } };
  await assertGreedyParity(t, llama, 'gpt-oss', writeTinyGptOss(join(tmp, 'gpt-oss-hf'), config), config, 6);
});

// A tiny random llama written as Q4_K_M (Q4_K and Q6_K matrices) and as Q5_K_M (Q5_K and Q6_K): the wasm
// backend keeps the blocks as stored (asm/kquant.ts), llama.cpp runs its own K-quant kernels on the same bytes.

for (const fileType of ['Q4_K_M', 'Q5_K_M'] as const) test(`llama.cpp parity: tiny random ${fileType} GGUF, greedy ids of llama.cpp = kvsieve (wasm with the K-quant blocks as stored, reference on them dequantised)`, { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const { config, tensors } = tinyQ4KMModel({});
  const file = join(tmp, `tiny-${fileType}.gguf`);
  writeGguf(file, { config, tensors, weightType: fileType });
  const prompts = [[1, 17, 300, 5, 77, 401, 2, 90], [1, 250]];
  // Both engines round each product's input to 8 bits (llama.cpp per 256 values, kvsieve per 32), so the
  // logits differ by about a per cent of their scale: the first 24 tokens have the margins for that.
  const n = 24;
  const fromLlama = await llamaCppGreedy(llama, file, prompts, n);
  for (const options of [{ backend: 'wasm', weights: 'stored', threads: 1 }, { backend: 'reference' }] as LoadOptions[]) {
    const fromKvsieve = await kvsieveGreedy(file, options, prompts, n);
    prompts.forEach((p, i) => assertSameIds(fromKvsieve[i]!, fromLlama[i]!, `kvsieve ${options.backend} vs llama.cpp, ${fileType}, prompt [${p.join(',')}]`));
  }
});

// A tiny random llama whose FFN matrices are MXFP4 (the rest F32): llama.cpp runs its MXFP4 kernels on the
// blocks kvsieve wrote; kvsieve's wasm backend keeps them as stored (asm/mxfp4.ts), the reference backend
// reads them dequantised.

test('llama.cpp parity: tiny random llama with MXFP4 FFN matrices, greedy ids of llama.cpp = kvsieve (wasm with the blocks as stored, reference on them dequantised)', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const { config, tensors } = tinyQ4KMModel({ seed: 11 });
  const file = join(tmp, 'tiny-mxfp4-ffn.gguf');
  writeGguf(file, { config, tensors, weightType: 'F32', tensorType: (name) => (/\.ffn_(gate|up|down)\.weight$/.test(name) ? 'MXFP4' : undefined) });
  const prompts = [[1, 17, 300, 5, 77, 401, 2, 90], [1, 250]];
  // llama.cpp rounds the FFN products' input to q8_0 blocks (as kvsieve's wasm kernels do; the reference
  // multiplies in float32): the first 24 tokens have the margins for that.
  const n = 24;
  const fromLlama = await llamaCppGreedy(llama, file, prompts, n);
  for (const options of [{ backend: 'wasm', weights: 'f32', threads: 1 }, { backend: 'wasm', threads: 1 }, { backend: 'reference' }] as LoadOptions[]) {
    const fromKvsieve = await kvsieveGreedy(file, options, prompts, n);
    prompts.forEach((p, i) => assertSameIds(fromKvsieve[i]!, fromLlama[i]!, `kvsieve ${options.backend} ${options.weights ?? ''} vs llama.cpp, MXFP4 FFN, prompt [${p.join(',')}]`));
  }
});

// GPT-OSS as it is published: the tiny GPT-OSS written as MXFP4_MOE (experts MXFP4, the other matrices
// Q8_0); kvsieve's wasm backend keeps both as stored.

test('llama.cpp parity: the tiny GPT-OSS written as MXFP4_MOE (MXFP4 experts), llama.cpp\'s greedy choices are kvsieve\'s argmax along its generations (wasm with the blocks as stored, reference)', { timeout: TIMEOUT_MS }, async (t) => {
  const llama = await llamaOrSkip(t);
  if (!llama) return;
  const config = { ...GPT_OSS_CONFIG, rope_scaling: { ...GPT_OSS_CONFIG.rope_scaling, truncate: true } };
  const hf = writeTinyGptOss(join(tmp, 'gpt-oss-hf-mxfp4'), config);
  const file = ggufFromSafetensors(join(tmp, 'gpt-oss-MXFP4_MOE.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(config), weightType: 'MXFP4_MOE' });
  const r = rng(5);
  const prompts = [0, 1, 2].map((i) => Array.from({ length: 4 + 9 * i }, () => 3 + Math.floor(r() * 290)));
  // Free-running generations part at the first near tie: both engines round the products' inputs to 8
  // bits per 32 values (kvsieve's reference does not), and a router whose top 2 changes moves the logits
  // by an order one. So along llama.cpp's own generation (teacher forcing), kvsieve's logits must rank
  // llama.cpp's choice first at nearly every step and never far below the first.
  const fromLlama = await llamaCppGreedy(llama, file, prompts, 48);
  for (const options of [{ backend: 'wasm', weights: 'stored', threads: 1 }, { backend: 'reference' }] as LoadOptions[]) {
    const model = await loadModel(file, options);
    try {
      let steps = 0;
      let exact = 0;
      let worst = 0;
      prompts.forEach((p, i) => {
        const got = fromLlama[i]!;
        assert.ok(got.length >= 24, `llama.cpp gave ${got.length} tokens for prompt ${i}`);
        const rows = model.logits([...p, ...got.slice(0, -1)]).slice(p.length - 1);
        rows.forEach((row, step) => {
          const gap = Math.max(...row) - row[got[step]!]!;
          worst = Math.max(worst, gap);
          steps++;
          if (gap === 0) exact++;
        });
      });
      t.diagnostic(`${options.backend}: llama.cpp's choice was kvsieve's argmax at ${exact} of ${steps} steps, at most ${worst.toFixed(4)} below it`);
      assert.ok(exact >= 0.9 * steps, `MXFP4_MOE ${options.backend}: llama.cpp chose kvsieve's argmax at ${exact} of ${steps} steps`);
      // Where a router's top 2 of 4 flips under the rounding of the products' inputs, the step runs other
      // experts (an order-one move in this tiny model, clamped SwiGLU at work): seen 4.5 below the argmax
      // at one step of 144 (wasm), 1.2 (reference). A file with every matrix Q8_0 and no MXFP4 parts the
      // same way (131 of 144 exact on wasm, 2.3 at worst on the reference), so it is the rounding, not the
      // MXFP4 kernels; the F32 file above agrees at every step.
      assert.ok(worst <= 6, `MXFP4_MOE ${options.backend}: llama.cpp's choice ${worst} below kvsieve's argmax`);
    } finally {
      model.dispose();
    }
  }
});
