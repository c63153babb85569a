/**
 * A model split over several wasm memories (src/backend/wasm/split.ts) against the same model in one
 * memory: the same kernels on the same rows, so logits and greedy ids must be bit for bit equal, with
 * compression on and in a batch. The per-memory cap is made small so that tiny models split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel, wasmWeights, type LoadOptions, type Model } from '../../src/api.js';
import type { Backend } from '../../src/backend/backend.js';
import type { WeightType } from '../../src/backend/wasm/abi.js';
import { planParts, SplitBackend } from '../../src/backend/wasm/split.js';
import { createWasmBackend, createKernels } from '../../src/backend/wasm/node.js';
import { heldWeightType, WasmBackend, type WasmBackendOptions } from '../../src/backend/wasm/backend.js';
import { q4KMType } from '../../src/formats/gguf-write.js';
import { hfToGgufName } from '../../src/formats/gguf-names.js';
import { quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from '../../src/quant/k-quants.js';
import { quantizeMXFP4 } from '../../src/quant/mxfp4.js';
import { quantizeQ8_0 } from '../../src/quant/q8_0.js';
import { quantizeQ4_0 } from '../../src/quant/q4_0.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../../src/core/half.js';
import { KvsieveError } from '../../src/core/errors.js';
import type { ModelConfig } from '../../src/core/model-config.js';
import { SlotCache } from '../../src/kv/cache.js';
import type { LlamaModel } from '../../src/model/llama.js';
import { join } from 'node:path';
import { ggufFromSafetensors, kvsieve, repoRoot, rng, stories260K, storiesGoldens, tempDir, tinyModel } from '../helpers.js';
import { openGgufWeights } from '../../src/formats/gguf.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { writeTinyGemma3 } from './gemma3.js';
import { QWEN3_MOE_CONFIG, writeTinyQwen3Moe } from './qwen3-moe.js';
import { writeTinyGptOss } from './gpt-oss.js';
import { writeTinyQ4KM } from '../formats/kquant-model.js';
import { loadBrowserModel } from '../../src/browser/engine.js';

const MiB = 2 ** 20;

function backendOf(model: Model): Backend {
  return (model as unknown as { llama: LlamaModel }).llama.backend;
}

/**
 * The largest cap per memory (whole 64 KiB pages) that splits the model in at least `parts` parts;
 * heldOf: what loadModel's plan holds each matrix of a GGUF in (its own type where kept as stored).
 */
function capFor(c: ModelConfig, weights: WeightType, threads: number, parts: number, heldOf?: (name: string, cols: number) => WeightType): number {
  for (let cap = 16 * MiB; cap > 0; cap -= 65536) if (planParts(c, weights, cap, threads, 'maxBytesPerMemory', heldOf).parts >= parts) return cap;
  throw new Error('no cap splits the model');
}

/** heldOf for a GGUF file loaded with backend options `o` (loadModel's for its `weights`). */
function heldOfFile(path: string, o: WasmBackendOptions): ((name: string, cols: number) => WeightType) | undefined {
  if (!path.endsWith('.gguf')) return undefined;
  const g = openGgufWeights(path);
  try {
    const types = new Map(g.tensors.list().map((t) => [t.name, g.tensors.ggmlType(t.name)]));
    return (name, cols) => heldWeightType(types.get(name) ?? null, cols, o);
  } finally {
    g.tensors.close();
  }
}

/** The model in one memory and split over at least 3 memories (checked). */
async function pair(path: string, o: LoadOptions & { threads: number }): Promise<{ one: Model; split: Model; backend: SplitBackend; cap: number }> {
  const one = await loadModel(path, o);
  const backendOptions = wasmWeights(o.weights);
  const cap = capFor(one.config, backendOptions.weights ?? 'q8_0', o.threads, 3, heldOfFile(path, backendOptions));
  const split = await loadModel(path, { ...o, maxBytesPerMemory: cap });
  const backend = backendOf(split);
  assert.ok(!(backendOf(one) instanceof SplitBackend), 'the default cap holds a tiny model in one memory');
  assert.ok(backend instanceof SplitBackend, 'a small cap splits the model');
  assert.ok(backend.plan.parts >= 3, `${backend.plan.parts} parts`);
  return { one, split, backend, cap };
}

function assertSameRows(a: Float32Array[], b: Float32Array[]): void {
  assert.equal(a.length, b.length);
  a.forEach((row, i) => assert.deepEqual(b[i], row, `logits row ${i}`));
}

const storiesIds = (n: number): number[] => Array.from({ length: n }, (_, i) => 1 + ((i * 37 + 11) % 500));

test('stories260K over >= 3 memories: logits (two prefill blocks) and greedy ids bit for bit as in one memory, with 2 threads', async () => {
  const { one, split, backend } = await pair(stories260K('stories260K.bin'), { weights: 'f32', threads: 2 });
  try {
    // Consecutive layers per part, every layer placed, the tied head with the embedding.
    const lp = backend.plan.layerPart;
    assert.equal(lp.length, 5);
    for (let l = 1; l < lp.length; l++) assert.ok(lp[l]! === lp[l - 1]! || lp[l]! === lp[l - 1]! + 1);
    assert.equal(backend.plan.headPart, backend.plan.embedPart);
    assert.match(split.info().backend, new RegExp(`^wasm \\(f32 weights, 2 threads, ${backend.plan.parts} memories\\)$`));
    assert.equal(one.info().backend, 'wasm (f32 weights, 2 threads)');
    const ids = storiesIds(90); // prefillBlock 64: the rows cross parts in two blocks
    assertSameRows(one.logits(ids), split.logits(ids));
    // And the split model, like the one-memory one, reproduces llama2.c run.c's greedy ids.
    for (const g of storiesGoldens()) {
      const a = await one.complete(g.prompt, { maxTokens: g.steps - g.prompt_ids.length + 1 });
      const b = await split.complete(g.prompt, { maxTokens: g.steps - g.prompt_ids.length + 1 });
      assert.deepEqual(b.generatedIds, a.generatedIds);
      assert.deepEqual([...b.promptIds, ...b.generatedIds], g.ids, `run.c ids of "${g.prompt}"`);
    }
  } finally {
    one.dispose();
    split.dispose();
  }
});

test('stories260K over >= 3 memories with compression (r-kv: score kernels; h2o: attention sums in each layer\'s memory) and a batch of sequences', async () => {
  const { one, split } = await pair(stories260K('stories260K.bin'), { weights: 'q8_0', threads: 2 });
  try {
    // f16 and int8 caches hand the presses decoded keys, which live in none of the memories
    for (const kvDtype of ['f32', 'f16', 'int8'] as const) {
      for (const compression of [{ press: 'r-kv', budget: 24, buffer: 8 }, { press: 'snapkv', budget: 24, buffer: 8 }, { press: 'h2o', budget: 24, buffer: 8, window: 8 }] as const) {
        const options = { maxTokens: 48, ignoreEos: true, compression, kvDtype };
        const a = await one.complete('Once upon a time', options);
        const b = await split.complete('Once upon a time', options);
        assert.deepEqual(b.generatedIds, a.generatedIds, `${compression.press}, ${kvDtype} KV`);
        assert.ok(b.compressions >= 2, `${compression.press}, ${kvDtype} KV: ${b.compressions} compressions`);
      }
    }
    const prompts = ['Once upon a time', 'The cat', 'Tom had a big red ball', 'One day'];
    const opts = prompts.map((_, i) => ({ maxTokens: 30 + 5 * i, ignoreEos: true, ...(i % 2 ? { compression: { press: 'r-kv', budget: 16, buffer: 8 } } : {}) }));
    const a = await one.generateBatch(prompts, opts);
    const b = await split.generateBatch(prompts, opts);
    b.forEach((r, i) => assert.deepEqual(r.generatedIds, a[i]!.generatedIds, `sequence ${i}`));
  } finally {
    one.dispose();
    split.dispose();
  }
});

for (const [name, weights] of [['llama3-F32', 'f32'], ['qwen3-BF16', 'q8_0'], ['qwen2-F32', 'f32']] as const) {
  test(`${name} (${weights}) over >= 3 memories: logits and greedy ids as in one memory`, async () => {
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
    const { one, split, backend } = await pair(tinyModel(name), { weights, threads: 2 });
    try {
      if (name === 'llama3-F32') assert.notEqual(backend.plan.headPart, backend.plan.embedPart, 'the untied head in a part of its own');
      assertSameRows(one.logits(expected.prompt_ids), split.logits(expected.prompt_ids));
      const a = await one.complete(null, { promptIds: expected.prompt_ids, maxTokens: 24, ignoreEos: true });
      const b = await split.complete(null, { promptIds: expected.prompt_ids, maxTokens: 24, ignoreEos: true });
      assert.deepEqual(b.generatedIds, a.generatedIds);
      if (weights === 'f32') assert.deepEqual(b.generatedIds.slice(0, expected.greedy_ids.length), expected.greedy_ids);
    } finally {
      one.dispose();
      split.dispose();
    }
  });
}

test('split memory accounting: memoryUsage sums its parts, each layer\'s KV slots live in its part, the KV pool default is bounded by the tightest part', async () => {
  const path = stories260K('stories260K.bin');
  const one = await loadModel(path, { weights: 'f32', threads: 1 });
  const cap = capFor(one.config, 'f32', 1, 3);
  one.dispose();
  const model = await loadModel(path, { weights: 'f32', threads: 1, maxBytesPerMemory: cap });
  try {
    const be = backendOf(model) as SplitBackend;
    const usage = be.memoryUsage();
    const parts = usage.parts!;
    assert.equal(parts.length, be.plan.parts);
    assert.equal(usage.usedBytes, parts.reduce((s, p) => s + p.usedBytes, 0));
    assert.ok(parts.length >= 3, `${parts.length} parts`);
    assert.equal(usage.limitBytes, parts.length * cap);
    assert.equal(parts.reduce((s, p) => s + p.layers, 0), 5);
    // Model's default: 70% of the room per layer of the tightest part, times the layers (nothing ran since loading).
    const room = Math.min(...parts.filter((p) => p.layers > 0).map((p) => ((p.limitBytes - p.usedBytes) * 5) / p.layers));
    assert.equal(model.kvStats().limitBytes, Math.floor(0.7 * room));

    const cache = new SlotCache({ numLayers: 5, numKvHeads: 4, headDim: 8, maxSlotsPerHead: 256, initialSlotsPerHead: 100, allocator: be });
    const before = be.memoryUsage().parts!.map((p) => p.usedBytes);
    const k = new Float32Array(3 * 4 * 8).fill(0.5);
    for (let l = 0; l < 5; l++) {
      const heads = cache.append(l, { k, v: k, offset: 0, count: 3, positions: [0, 1, 2] });
      for (const h of heads) assert.ok(be.partFor(l).holds(h.keys) && be.partFor(l).holds(h.values), `layer ${l}'s slots in its part`);
    }
    const after = be.memoryUsage().parts!.map((p) => p.usedBytes);
    // K and V of 100 slots x 4 heads x 8 floats per layer, in whole 64-byte blocks.
    const perLayer = 2 * Math.ceil((100 * 4 * 8 * 4) / 64) * 64;
    after.forEach((u, i) => assert.equal(u - before[i]!, perLayer * parts[i]!.layers, `part ${i}`));
    assert.equal(cache.bytes().allocated, 5 * 100 * 4 * 8 * 4 * 2);
    cache.release();
    assert.deepEqual(be.memoryUsage().parts!.map((p) => p.usedBytes), before);
  } finally {
    model.dispose();
  }
});

const config7B: ModelConfig = {
  architecture: 'qwen2', hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128,
  vocabSize: 152064, maxPositions: 131072, rmsNormEps: 1e-6, ropeTheta: 1e6, ropeScaling: null, qkvBias: true, oBias: false,
  mlpBias: false, qkNorm: false, tieWordEmbeddings: false, bosTokenId: null, eosTokenIds: [151643],
};

test('planParts: a 7B-shaped q4_0 model needs two 4 GiB memories, split evenly in consecutive layers; q8_0 three', () => {
  const q4 = planParts(config7B, 'q4_0', 2 ** 32, 16);
  assert.equal(q4.parts, 2);
  assert.equal(q4.embedPart, 0);
  assert.equal(q4.headPart, 1);
  assert.equal(q4.layerPart.length, 28);
  // Hand count of one layer in q4_0 (18 bytes per 32 values) with its biases and norms:
  const m = (rows: number, cols: number) => Math.ceil(((rows * cols) / 32) * 18 / 64) * 64;
  const layer = m(3584, 3584) + 2 * m(512, 3584) + m(3584, 3584) + 2 * m(18944, 3584) + m(3584, 18944) + 2 * 3584 * 4 + (3584 + 2 * 512) * 4;
  const embed = m(152064, 3584);
  const first = q4.layerPart.filter((p) => p === 0).length;
  // The head: its norm, 64 rows in and their logits, lm_head (as large as the embedding).
  const head = 3584 * 4 + 64 * 3584 * 4 + 64 * 152064 * 4 + embed;
  assert.equal(q4.partBytes[0]! - q4.partBytes[1]!, embed + first * layer - ((28 - first) * layer + head));
  assert.ok(Math.abs(first - 14) <= 1, `${first} layers in part 0`);
  assert.ok(Math.max(...q4.partBytes) <= 2 ** 32);
  const q8 = planParts(config7B, 'q8_0', 2 ** 32, 16);
  assert.equal(q8.parts, 3);
  assert.ok(Math.max(...q8.partBytes) <= 2 ** 32);
});

test('planParts by held types: the 7B shape in Q4_K_M (K-quants kept as stored) needs two 4 GiB memories where q8_0 needs three, the parts\' bytes as counted by hand', () => {
  const kept = (name: string, cols: number): WeightType => {
    const g = hfToGgufName(name, 'qwen2');
    return heldWeightType(g && cols % 256 === 0 ? q4KMType(g, config7B.numLayers, false) : null, cols, { weights: 'q8_0', keepStoredKQuants: true });
  };
  const plan = planParts(config7B, 'q8_0', 2 ** 32, 16, 'maxBytesPerMemory', kept);
  assert.equal(plan.parts, 2);
  assert.ok(Math.max(...plan.partBytes) <= 2 ** 32);
  // By hand, as the q4_0 count above: Q4_K 144 bytes per 256 values, Q6_K 210 (llama.cpp's Q4_K_M
  // choice per matrix), each layer's norms and biases in f32; part 0 the embedding and the first
  // layers, part 1 the rest and the head.
  const kq = (name: string, rows: number, cols: number) => Math.ceil(((rows * cols) / 256) * (q4KMType(name, 28) === 'Q6_K' ? 210 : 144) / 64) * 64;
  const layer = (l: number) => {
    const b = `blk.${l}.`;
    return kq(b + 'attn_q.weight', 3584, 3584) + kq(b + 'attn_k.weight', 512, 3584) + kq(b + 'attn_v.weight', 512, 3584) + kq(b + 'attn_output.weight', 3584, 3584) +
      kq(b + 'ffn_gate.weight', 18944, 3584) + kq(b + 'ffn_up.weight', 18944, 3584) + kq(b + 'ffn_down.weight', 3584, 18944) + 2 * 3584 * 4 + (3584 + 2 * 512) * 4;
  };
  const first = plan.layerPart.filter((p) => p === 0).length;
  let part0 = kq('token_embd.weight', 152064, 3584);
  let part1 = 3584 * 4 + 64 * 3584 * 4 + 64 * 152064 * 4 + kq('output.weight', 152064, 3584);
  for (let l = 0; l < 28; l++) (l < first ? (part0 += layer(l)) : (part1 += layer(l)));
  assert.equal(plan.partBytes[0]! - plan.partBytes[1]!, part0 - part1);
  // held types that are the storage setting's own give the plan without heldOf
  assert.deepEqual(planParts(config7B, 'q8_0', 2 ** 32, 16, 'maxBytesPerMemory', (_, cols) => heldWeightType(null, cols, { weights: 'q8_0' })), planParts(config7B, 'q8_0', 2 ** 32, 16));
});

test('heldWeightType says what the wasm backend holds a matrix in, for every stored type, column count and storage option', async () => {
  const k = await createKernels({ threads: 1, initialBytes: 16 << 20 });
  try {
    const r = rng(3);
    const options: WasmBackendOptions[] = [
      {}, { keepStoredKQuants: true }, { keepStoredQuants: true }, { weights: 'q4_0' }, { weights: 'q4_0', keepStoredQuants: true },
      { weights: 'f32' }, { weights: 'f16', keepStoredKQuants: true }, { weights: 'bf16' },
    ];
    const blocks: Record<string, (x: Float32Array) => Uint8Array> = {
      Q4_K: quantizeQ4_K, Q5_K: quantizeQ5_K, Q6_K: quantizeQ6_K, MXFP4: quantizeMXFP4, Q8_0: quantizeQ8_0, Q4_0: quantizeQ4_0,
      F16: (x) => { const h = new Uint16Array(x.length); f32ArrayToF16(x, h); return new Uint8Array(h.buffer); },
      BF16: (x) => { const h = new Uint16Array(x.length); f32ArrayToBf16(x, h); return new Uint8Array(h.buffer); },
    };
    let checked = 0;
    for (const o of options) {
      for (const stored of [...Object.keys(blocks), null]) {
        for (const cols of [256, 512, 96, 40]) {
          const block = stored === null || stored === 'F16' || stored === 'BF16' ? 1 : /_K$/.test(stored) ? 256 : 32;
          if (cols % block !== 0) continue; // a file cannot store such rows
          const backend = new WasmBackend(k, o);
          const x = Float32Array.from({ length: 2 * cols }, () => r() - 0.5);
          const m0 = k.mark();
          const w = stored !== null && backend.takesStored(stored, cols) ? backend.weightFromStored(stored, blocks[stored]!(x), 2, cols) : backend.weight(x, 2, cols);
          const held = (w as unknown as { matrix: { type: WeightType } }).matrix.type;
          assert.equal(heldWeightType(stored, cols, o), held, `${stored} [2, ${cols}] with ${JSON.stringify(o)}`);
          k.release(m0);
          checked++;
        }
      }
    }
    assert.ok(checked > 100, `${checked} cases`);
  } finally {
    await k.dispose();
  }
});

test('a layer that does not fit one memory on its own is a KvsieveError naming maxBytesPerMemory', async () => {
  assert.throws(() => planParts(config7B, 'f32', 2 ** 30, 16), (e: unknown) => e instanceof KvsieveError && e.option === 'maxBytesPerMemory' && /^maxBytesPerMemory: the embedding needs about \d+ bytes with its activations, more than 75% of one memory's 1073741824 \(the rest is for its KV cache\)$/.test(e.message));
  assert.throws(() => planParts({ ...config7B, vocabSize: 1000 }, 'f32', 2 ** 30, 16), /^KvsieveError: maxBytesPerMemory: layer 0 needs about \d+ bytes/);
  await assert.rejects(createWasmBackend(config7B, { maxBytesPerMemory: 1000 }), /^KvsieveError: maxBytesPerMemory must be a whole number of bytes from 64 KiB to 4 GiB, got 1000$/);
  await assert.rejects(loadModel(stories260K('stories260K.bin'), { maxBytesPerMemory: 2 ** 33 }), (e: unknown) => e instanceof KvsieveError && e.option === 'maxBytesPerMemory');
});

test('kvsieve generate --max-bytes-per-memory: a split run prints the one-memory run\'s story; a cap below 64 KiB is refused naming the flag', async () => {
  const one = await loadModel(stories260K('stories260K.bin'), { weights: 'f32', threads: 1 });
  const cap = capFor(one.config, 'f32', 2, 3);
  one.dispose();
  const args = ['generate', '--model', stories260K('stories260K.bin'), '--weights', 'f32', '--threads', '2', '--max-tokens', '30', 'Once upon a time'];
  const whole = kvsieve(args);
  const split = kvsieve([...args, '--max-bytes-per-memory', String(cap)]);
  assert.equal(whole.code, 0, whole.stderr);
  assert.equal(split.code, 0, split.stderr);
  assert.ok(whole.stdout.length > 40);
  assert.equal(split.stdout, whole.stdout);
  const bad = kvsieve([...args, '--max-bytes-per-memory', '1000']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'kvsieve: --max-bytes-per-memory must be a whole number of bytes from 64 KiB to 4 GiB, got 1000\n');
});

test('Gemma 3 (sliding layers, their own RoPE, sandwich norms), Qwen3-MoE (experts, one dense layer) and GPT-OSS (sinks, biased experts) over >= 3 memories: logits and a batch as in one memory', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const models = [writeTinyGemma3(join(dir, 'gemma3')), writeTinyQwen3Moe(join(dir, 'moe'), { ...QWEN3_MOE_CONFIG, mlp_only_layers: [1] }), writeTinyGptOss(join(dir, 'gpt-oss'))];
    for (const path of models) {
      const { one, split } = await pair(path, { weights: 'f32', threads: 2 });
      try {
        const r = rng(9);
        const prompts = [17, 5, 9].map((n) => Array.from({ length: n }, () => 3 + Math.floor(r() * 290)));
        assertSameRows(one.logits(prompts[0]!), split.logits(prompts[0]!));
        const a = await one.generateBatch(prompts, { maxTokens: 12, ignoreEos: true });
        const b = await split.generateBatch(prompts, { maxTokens: 12, ignoreEos: true });
        b.forEach((res, i) => assert.deepEqual(res.generatedIds, a[i]!.generatedIds, `${path}: sequence ${i}`));
      } finally {
        one.dispose();
        split.dispose();
      }
    }
  } finally {
    cleanup();
  }
});

test('a Qwen3-MoE GGUF with MXFP4 experts (llama.cpp\'s MXFP4_MOE) over >= 3 memories: each part holds its experts as stored, logits and a batch as in one memory', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const moe = QWEN3_MOE_CONFIG; // (every layer sparse: llama.cpp's qwen3moe has no dense layers)
    const hf = writeTinyQwen3Moe(join(dir, 'moe'), moe);
    const file = ggufFromSafetensors(join(dir, 'moe-MXFP4.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(moe), weightType: 'MXFP4_MOE' });
    const { one, split } = await pair(file, { weights: 'q8_0', threads: 2 });
    try {
      // every tensor at its bytes in the file, in both: the experts' MXFP4 blocks, the Q8_0 matrices, the F32 norms
      const g = openGgufWeights(file);
      let fileBytes = 0;
      try {
        assert.ok(g.header.tensors.some((t) => t.type.name === 'MXFP4'));
        for (const t of g.header.tensors) fileBytes += t.byteLength;
      } finally {
        g.tensors.close();
      }
      assert.equal(one.info().weightBytes, fileBytes);
      assert.equal(split.info().weightBytes, fileBytes);
      const r = rng(10);
      const prompts = [17, 5, 9].map((n) => Array.from({ length: n }, () => 3 + Math.floor(r() * 290)));
      assertSameRows(one.logits(prompts[0]!), split.logits(prompts[0]!));
      const a = await one.generateBatch(prompts, { maxTokens: 12, ignoreEos: true });
      const b = await split.generateBatch(prompts, { maxTokens: 12, ignoreEos: true });
      b.forEach((res, i) => assert.deepEqual(res.generatedIds, a[i]!.generatedIds, `sequence ${i}`));
    } finally {
      one.dispose();
      split.dispose();
    }
  } finally {
    cleanup();
  }
});

test('a Q4_K_M GGUF over >= 3 memories, planned at its K-quants\' own bytes: every part holds them as stored, logits and greedy ids as in one memory', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = writeTinyQ4KM(dir);
    const { one, split, backend, cap } = await pair(file, { threads: 2 });
    try {
      // loadModel planned the K-quants at their bytes: sized as q8_0 the same cap takes more parts
      assert.ok(backend.plan.parts < planParts(one.config, 'q8_0', cap, 2).parts, `${backend.plan.parts} parts`);
      assert.equal(split.info().weightBytes, one.info().weightBytes);
      assert.ok(backend.heldTypes.has('q4_k') && backend.heldTypes.has('q6_k'), [...backend.heldTypes].join('/'));
      const prompt = [1, 17, 300, 5, 77, 401, 2, 90];
      assertSameRows(one.logits(prompt), split.logits(prompt));
      const a = await one.complete(null, { promptIds: prompt, maxTokens: 12, ignoreEos: true });
      const b = await split.complete(null, { promptIds: prompt, maxTokens: 12, ignoreEos: true });
      assert.deepEqual(b.generatedIds, a.generatedIds);
    } finally {
      one.dispose();
      split.dispose();
    }
  } finally {
    cleanup();
  }
});

test('the browser entry splits too: stories260K from its files\' bytes over >= 3 memories (loadBrowserModel, maxBytesPerMemory) gives the one-memory logits and greedy ids; a bad cap is refused naming it', async () => {
  const files = { 'stories260K.bin': new Uint8Array(readFileSync(stories260K('stories260K.bin'))), 'tok512.bin': new Uint8Array(readFileSync(stories260K('tok512.bin'))) };
  const wasm = new Uint8Array(readFileSync(join(repoRoot, 'dist', 'wasm', 'kernels.wasm')));
  const one = await loadBrowserModel(files, { wasm, threads: 1, weights: 'q8_0' });
  const cap = capFor(one.config, 'q8_0', 1, 3);
  const split = await loadBrowserModel(files, { wasm, threads: 1, weights: 'q8_0', maxBytesPerMemory: cap });
  try {
    const backend = backendOf(split);
    assert.ok(backend instanceof SplitBackend && backend.plan.parts >= 3, split.info().backend);
    assert.ok(!(backendOf(one) instanceof SplitBackend));
    const ids = storiesIds(70);
    assertSameRows(one.logits(ids), split.logits(ids));
    const a = await one.complete('Once upon a time', { maxTokens: 16, temperature: 0 });
    const b = await split.complete('Once upon a time', { maxTokens: 16, temperature: 0 });
    assert.deepEqual(b.generatedIds, a.generatedIds);
  } finally {
    one.dispose();
    split.dispose();
  }
  await assert.rejects(loadBrowserModel(files, { wasm, threads: 1, maxBytesPerMemory: 1000 }), (e: unknown) => e instanceof KvsieveError && e.option === 'maxBytesPerMemory');
});
