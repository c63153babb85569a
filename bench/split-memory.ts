/**
 * A model past one wasm memory (not a test): a random GGUF of R1-Distill-Qwen-7B's shape (28 layers,
 * hidden 3584, vocabulary 152064, untied) in Q8_0 (8.1 GB, 3 memories by default), Q4_0 (4.3 GB, 2) or
 * Q4_K_M (4.7 GB, llama.cpp's mix of Q4_K and Q6_K, kept as stored),
 * or (--shape gpt-oss-20b) of GPT-OSS-20B's: 24 layers of 32 experts in MXFP4, the other matrices Q8_0
 * (12.1 GB, 4 memories),
 * written into a temporary folder (random ggml blocks, one set per matrix shape shared by every layer,
 * so writing holds a few hundred MB), loaded with the defaults (4 GiB memories) and decoded; prints the
 * plan, each memory's use, the KV pool, the decode tokens/s and the process's peak RSS, then deletes
 * the file. Needs the file's size in free disk and about its size again in RAM.
 *
 *   npx tsx bench/split-memory.ts [--shape r1-distill-qwen-7b|gpt-oss-20b] [--type Q8_0|Q4_0|Q4_K_M] [--threads 2] [--tokens 8] [--dir /tmp] [--depth N] [--llamacpp]
 *
 * --file PATH: the GGUF to use, written there when missing and kept (default: a temporary one, deleted).
 * --only llamacpp|kvsieve: run one engine (in a process of its own, its peak RSS is the process's).
 * --press NAME [--budget 1024] [--buffer 128]: kvsieve decodes under that press (the prompt read in blocks
 * cut back to the budget, as a long reasoning trace would be), and also prints the decode rate with the
 * mean compression's cost spread over `buffer` tokens.
 * --depth N: decode after a prompt of N tokens (default 8). --llamacpp: first the same decode in
 * llama.cpp (node-llama-cpp, same threads, F16 KV cache; kvsieve then uses an f16 KV cache too), with
 * each engine's peak resident memory sampled while it runs (llama.cpp maps the file, kvsieve copies it).
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../src/api.js';
import { f32ToF16 } from '../src/core/half.js';
import type { ModelConfig } from '../src/core/model-config.js';
import { parseHfConfig } from '../src/formats/hf-config.js';
import { MODEL_SHAPES } from '../src/model/random.js';
import { q4KMType, writeGguf, type GgufTensorToWrite } from '../src/formats/gguf-write.js';
import { hfToGgufName } from '../src/formats/gguf-names.js';
import type { SplitBackend } from '../src/backend/wasm/split.js';
import { optionMap } from './args.js';
import { llamaCppSpeed } from './llamacpp.js';

/** Runs fn while sampling this process's resident memory; returns its result and the peak in GiB. */
async function peakRss<T>(fn: () => Promise<T>): Promise<[T, number]> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 100);
  try {
    const r = await fn();
    return [r, Math.max(peak, process.memoryUsage.rss()) / 2 ** 30];
  } finally {
    clearInterval(timer);
  }
}

const o = optionMap(process.argv.slice(2), { names: ['shape', 'type', 'threads', 'tokens', 'dir', 'depth', 'llamacpp', 'file', 'only', 'press', 'budget', 'buffer'], docs: 'bench/split-memory.ts' });
const only = o.get('only');
if (only !== undefined && only !== 'llamacpp' && only !== 'kvsieve') throw new Error(`--only must be llamacpp or kvsieve, got ${only}`);
const shape = o.get('shape') ?? 'r1-distill-qwen-7b';
if (shape !== 'r1-distill-qwen-7b' && shape !== 'gpt-oss-20b') throw new Error(`--shape must be r1-distill-qwen-7b or gpt-oss-20b, got ${shape}`);
const gptOss = shape === 'gpt-oss-20b';
const depth = Number(o.get('depth') ?? 8);
const withLlamaCpp = o.has('llamacpp');
const type = (o.get('type') ?? 'Q8_0') as 'Q8_0' | 'Q4_0' | 'Q4_K_M';
if (type !== 'Q8_0' && type !== 'Q4_0' && type !== 'Q4_K_M') throw new Error(`--type must be Q8_0, Q4_0 or Q4_K_M, got ${type}`);
const threads = Number(o.get('threads') ?? 2);
const tokens = Number(o.get('tokens') ?? 8);
const press = o.get('press');
const budget = Number(o.get('budget') ?? 1024);
const buffer = Number(o.get('buffer') ?? 128);

const c: ModelConfig = gptOss ? parseHfConfig(MODEL_SHAPES['gpt-oss-20b'] as unknown as Record<string, unknown>) : {
  architecture: 'qwen2', hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128,
  vocabSize: 152064, maxPositions: 131072, rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, qkvBias: true, oBias: false,
  mlpBias: false, qkNorm: false, tieWordEmbeddings: false, bosTokenId: 151646, eosTokenIds: [151643],
};

let seed = 12345;
const uniform = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
/** Bytes of one ggml block (a half-float scale, then 32 values: 4-bit pairs or int8). */
const BLOCK = type === 'Q4_0' ? 18 : 34;
/** Block scales giving weights a standard deviation of about 0.02. */
const SCALE = type === 'Q4_0' ? 0.02 / 4.6 : 0.02 / 73;
const shapes = new Map<string, Uint8Array>();
/**
 * Random K-quant superblocks (Q4_K: half d, half dmin, 12 scale bytes, 128 nibble bytes; Q6_K: 192
 * bytes of 6-bit codes, 16 int8 scales, half d) with scales giving weights of a few hundredths.
 */
function kBlocks(kind: 'Q4_K' | 'Q6_K', rows: number, cols: number): Uint8Array {
  const key = `${kind} ${rows}x${cols}`;
  let b = shapes.get(key);
  if (!b) {
    const bytes = kind === 'Q4_K' ? 144 : 210;
    const n = (rows * cols) / 256;
    b = new Uint8Array(n * bytes);
    const view = new DataView(b.buffer);
    for (let i = 0; i < b.length; i++) b[i] = (uniform() * 256) | 0;
    for (let i = 0; i < n; i++) {
      if (kind === 'Q4_K') {
        view.setUint16(i * bytes, f32ToF16(1e-4 * (0.5 + uniform())), true);
        view.setUint16(i * bytes + 2, f32ToF16(1e-4 * (0.5 + uniform())), true);
      } else view.setUint16(i * bytes + 208, f32ToF16(1e-5 * (0.5 + uniform())), true);
    }
    shapes.set(key, b);
  }
  return b;
}

function blocks(rows: number, cols: number): Uint8Array {
  const key = `${rows}x${cols}`;
  let b = shapes.get(key);
  if (!b) {
    const n = (rows * cols) / 32;
    b = new Uint8Array(n * BLOCK);
    const view = new DataView(b.buffer);
    for (let i = 0; i < n; i++) {
      view.setUint16(i * BLOCK, f32ToF16(SCALE * (0.5 + uniform())), true);
      for (let j = 2; j < BLOCK; j++) b[i * BLOCK + j] = (uniform() * 256) | 0;
    }
    shapes.set(key, b);
  }
  return b;
}
const vector = (n: number, mean: number, spread: number) => () => Float32Array.from({ length: n }, () => mean + spread * (2 * uniform() - 1));

/** Random MXFP4 blocks for `count` matrices [rows, cols] (17 bytes per 32 weights: scale 2^-8, random codes), shared per shape. */
function mxfp4Blocks(count: number, rows: number, cols: number): Uint8Array {
  const key = `mxfp4 ${count}x${rows}x${cols}`;
  let b = shapes.get(key);
  if (!b) {
    const n = (count * rows * cols) / 32;
    b = new Uint8Array(n * 17);
    for (let i = 0; i < n; i++) {
      b[i * 17] = 119; // 2^(119 - 127): weights up to 6/256
      for (let j = 1; j < 17; j++) b[i * 17 + j] = (uniform() * 256) | 0;
    }
    shapes.set(key, b);
  }
  return b;
}

/** GPT-OSS-20B's tensors: experts stacked per projection in MXFP4, with biases; attention Q8_0 with biases and sinks. */
function gptOssTensors(matrix: (name: string, rows: number, cols: number) => GgufTensorToWrite): GgufTensorToWrite[] {
  const D = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const { numExperts: E, expertFfn: F } = c.moe!;
  const experts = (name: string, rows: number, cols: number): GgufTensorToWrite => ({ name, shape: [E, rows, cols], data: () => new Float32Array(0), raw: { type: 'MXFP4', data: mxfp4Blocks(E, rows, cols) } });
  const tensors: GgufTensorToWrite[] = [matrix('model.embed_tokens.weight', c.vocabSize, D)];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [D], data: vector(D, 1, 0.1) },
      matrix(`${p}self_attn.q_proj.weight`, q, D), { name: `${p}self_attn.q_proj.bias`, shape: [q], data: vector(q, 0, 0.1) },
      matrix(`${p}self_attn.k_proj.weight`, kv, D), { name: `${p}self_attn.k_proj.bias`, shape: [kv], data: vector(kv, 0, 0.1) },
      matrix(`${p}self_attn.v_proj.weight`, kv, D), { name: `${p}self_attn.v_proj.bias`, shape: [kv], data: vector(kv, 0, 0.1) },
      matrix(`${p}self_attn.o_proj.weight`, D, q), { name: `${p}self_attn.o_proj.bias`, shape: [D], data: vector(D, 0, 0.1) },
      { name: `${p}self_attn.sinks`, shape: [c.numHeads], data: vector(c.numHeads, 0, 1) },
      { name: `${p}post_attention_layernorm.weight`, shape: [D], data: vector(D, 1, 0.1) },
      { name: `${p}mlp.router.weight`, shape: [E, D], data: vector(E * D, 0, 0.05) },
      { name: `${p}mlp.router.bias`, shape: [E], data: vector(E, 0, 0.1) },
      experts(`${p}mlp.experts.gate_proj.weight`, F, D), { name: `${p}mlp.experts.gate_proj.bias`, shape: [E, F], data: vector(E * F, 0, 0.1) },
      experts(`${p}mlp.experts.up_proj.weight`, F, D), { name: `${p}mlp.experts.up_proj.bias`, shape: [E, F], data: vector(E * F, 0, 0.1) },
      experts(`${p}mlp.experts.down_proj.weight`, D, F), { name: `${p}mlp.experts.down_proj.bias`, shape: [E, D], data: vector(E * D, 0, 0.1) },
    );
  }
  tensors.push({ name: 'model.norm.weight', shape: [D], data: vector(D, 1, 0.1) }, matrix('lm_head.weight', c.vocabSize, D));
  return tensors;
}

const kept = o.get('file');
const dir = kept === undefined ? mkdtempSync(join(o.get('dir') ?? tmpdir(), 'kvsieve-split-')) : null;
const file = kept ?? join(dir!, gptOss ? 'gpt-oss-20b-shape-MXFP4.gguf' : `r1-distill-qwen-7b-shape-${type}.gguf`);
try {
  const D = c.hiddenSize;
  const F = c.intermediateSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const matrix = (name: string, rows: number, cols: number): GgufTensorToWrite => {
    if (type !== 'Q4_K_M') return { name, shape: [rows, cols], data: () => new Float32Array(0), raw: { type, data: blocks(rows, cols) } };
    // llama.cpp's Q4_K_M choice per matrix (Q6_K for lm_head and some attn_v / ffn_down)
    const kind = q4KMType(hfToGgufName(name, 'qwen2')!, c.numLayers, c.tieWordEmbeddings);
    return { name, shape: [rows, cols], data: () => new Float32Array(0), raw: { type: kind, data: kBlocks(kind, rows, cols) } };
  };
  const tensors: GgufTensorToWrite[] = gptOss ? gptOssTensors(matrix) : [matrix('model.embed_tokens.weight', c.vocabSize, D)];
  for (let l = 0; l < (gptOss ? 0 : c.numLayers); l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [D], data: vector(D, 1, 0.1) },
      matrix(`${p}self_attn.q_proj.weight`, q, D), { name: `${p}self_attn.q_proj.bias`, shape: [q], data: vector(q, 0, 0.1) },
      matrix(`${p}self_attn.k_proj.weight`, kv, D), { name: `${p}self_attn.k_proj.bias`, shape: [kv], data: vector(kv, 0, 0.1) },
      matrix(`${p}self_attn.v_proj.weight`, kv, D), { name: `${p}self_attn.v_proj.bias`, shape: [kv], data: vector(kv, 0, 0.1) },
      matrix(`${p}self_attn.o_proj.weight`, D, q),
      { name: `${p}post_attention_layernorm.weight`, shape: [D], data: vector(D, 1, 0.1) },
      matrix(`${p}mlp.gate_proj.weight`, F, D), matrix(`${p}mlp.up_proj.weight`, F, D), matrix(`${p}mlp.down_proj.weight`, D, F),
    );
  }
  if (!gptOss) tensors.push({ name: 'model.norm.weight', shape: [D], data: vector(D, 1, 0.1) }, matrix('lm_head.weight', c.vocabSize, D));
  let t = performance.now();
  if (!existsSync(file)) {
    writeGguf(file, { config: c, tensors, weightType: type, name: `random ${shape} shape` });
    console.log(`wrote ${file}: ${statSync(file).size} bytes in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  shapes.clear();

  if (withLlamaCpp && only !== 'kvsieve') {
    const [r, peak] = await peakRss(() => llamaCppSpeed({ model: file, threads, prompt: 16, gen: tokens, depth: Math.max(0, depth - 16), runs: 1 }));
    console.log(`llama.cpp: decode at depth ${depth}: ${r.decodeTokPerS.toFixed(2)} tokens/s; prefill ${r.prefillTokPerS.toFixed(1)} tokens/s; peak RSS ${peak.toFixed(2)} GiB`);
  }
  if (only !== 'llamacpp') {
  const [, kvsievePeak] = await peakRss(async () => {
  t = performance.now();
  // Q4_K_M: the K-quant blocks as stored (the default)
  const model = await loadModel(file, { ...(type === 'Q4_K_M' ? {} : { weights: type === 'Q4_0' ? ('q4_0' as const) : ('q8_0' as const) }), threads });
  try {
    const backend = (model as unknown as { llama: { backend: Partial<SplitBackend> } }).llama.backend;
    const usage = backend.memoryUsage!();
    console.log(`loaded in ${((performance.now() - t) / 1000).toFixed(1)} s: ${model.info().backend}; layers per memory ${JSON.stringify(usage.parts?.map((p) => p.layers) ?? [c.numLayers])}`);
    for (const [i, p] of (usage.parts ?? [usage]).entries()) console.log(`  memory ${i}: ${(p.usedBytes / 2 ** 30).toFixed(2)} GiB used of ${(p.limitBytes / 2 ** 30).toFixed(2)}`);
    console.log(`KV pool: ${(model.kvStats().limitBytes / 2 ** 30).toFixed(2)} GiB`);
    const steps: number[] = [];
    let last = 0;
    const r = await model.complete(null, {
      promptIds: Array.from({ length: depth }, (_, i) => (i === 0 ? 151646 : 100 + ((i * 7919) % 100000))),
      maxTokens: tokens + 1,
      ignoreEos: true,
      ...(withLlamaCpp ? { kvDtype: 'f16' as const } : {}),
      ...(press ? { compression: { press, budget, buffer } } : {}),
      onLogits: () => {
        const now = performance.now();
        if (last) steps.push(now - last);
        last = now;
      },
    });
    const seconds = steps.reduce((a, b) => a + b, 0) / 1000;
    console.log(`kvsieve: decode at depth ${depth}: ${steps.length} tokens, ${(steps.length / seconds).toFixed(2)} tokens/s (ms per token: ${steps.map((s) => s.toFixed(0)).join(' ')}); prefill ${r.prefillTokensPerSecond?.toFixed(1) ?? '?'} tokens/s; ids ${r.generatedIds.slice(0, 8).join(',')}`);
    if (press) {
      // A decode-time press cuts the cache back once per `buffer` tokens; the prompt's blocks were cut
      // the same way, so their mean cost stands for the compressions a longer decode would make.
      const perCompression = r.compressions ? r.compressionSeconds / r.compressions : 0;
      const amortised = 1 / (seconds / steps.length + perCompression / buffer);
      console.log(`kvsieve ${press} ${budget}+${buffer}: ${r.compressions} compressions (${perCompression.toFixed(3)} s each), KV held per head at the end ${r.finalKvTokensPerHead}; decode with one compression per ${buffer} tokens: ${amortised.toFixed(2)} tokens/s`);
    }
  } finally {
    model.dispose();
  }
  });
  console.log(`kvsieve peak RSS ${kvsievePeak.toFixed(2)} GiB (process peak ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB)`);
  }
  console.log(`process peak RSS ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB`);
} finally {
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
}
