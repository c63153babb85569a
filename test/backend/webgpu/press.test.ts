// Compression on the webgpu backend (SwiftShader in CI) against the reference backend: every built-in
// press keeps the same slots (the positions each layer and KV head holds after every step, from
// onTrace) and so generates the same greedy ids, on stories260K (8 query heads over 4 KV heads) and a
// tiny qwen2 fixture (GQA 4/2, q/k/v biases); the r-kv memory bound; a user's definePress press;
// forked samples of a compressed prompt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel, type Model } from '../../../src/api.js';
import type { CompressionSettings } from '../../../src/generate/compression.js';
import type { KvTraceEvent } from '../../../src/generate/sequence.js';
import { BUDGET, definePress, PRESS_NAMES } from '../../../src/press/index.js';
import { stories260K, tinyModel } from '../../helpers.js';
import { withGpu } from './gpu.js';

/** Filters for q-filters that need no calibration: a fixed direction per (layer, KV head). */
const someFilters = (L: number, H: number, d: number) => Float32Array.from({ length: L * H * d }, (_, i) => Math.cos(i * 0.7) / Math.sqrt(d / 2));
/** TriAttention statistics that need no calibration: fixed mean queries per (layer, query head, band). */
const someStats = (L: number, Hq: number, F: number) => ({
  qMeanRe: Float32Array.from({ length: L * Hq * F }, (_, i) => Math.cos(i * 0.3)),
  qMeanIm: Float32Array.from({ length: L * Hq * F }, (_, i) => Math.sin(i * 0.7)),
  qAbsMean: Float32Array.from({ length: L * Hq * F }, () => 1.5),
});

/** Settings of `press` small enough that a short run compresses several times (r-kv on its own trigger). */
function settings(press: string, model: Model, budget: number, buffer: number): CompressionSettings {
  const c = model.config;
  return {
    press,
    budget,
    buffer,
    ...(press === 'q-filters' ? { filters: someFilters(c.numLayers, c.numKvHeads, c.headDim), window: 8 } : {}),
    ...(press === 'triattention' ? { stats: someStats(c.numLayers, c.numHeads, c.headDim / 2) } : {}),
    ...(press === 'random-pp' ? { window: 8 } : {}),
    ...(press === 'r-kv' ? { trigger: 'r-kv' as const } : {}),
  };
}

interface Run {
  ids: number[];
  compressions: number;
  /** Per step: positions[layer][kvHead], the slots' original positions. */
  held: number[][][][];
  peakKvBytes: number;
  peakKvAllocatedBytes: number;
}

async function run(model: Model, promptIds: number[], maxTokens: number, compression: CompressionSettings): Promise<Run> {
  const events: KvTraceEvent[] = [];
  const r = await model.complete(null, { promptIds, maxTokens, ignoreEos: true, compression, onTrace: (e) => events.push(e) });
  return { ids: r.generatedIds, compressions: r.compressions, held: events.map((e) => e.positions), peakKvBytes: r.peakKvBytes, peakKvAllocatedBytes: r.peakKvAllocatedBytes };
}

/**
 * knorm scores a slot by its key's norm, which RoPE does not change: in layer 0 (keys from the token
 * alone) a token seen twice ties exactly, and the last bits of each backend's rotation break the tie
 * either way. So knorm reads a prompt of distinct ids and samples once (the sampled token is never fed
 * back): its compressions all happen while the prompt is read, in blocks, and no two keys tie.
 */
function runOf(press: string, promptIds: number[], maxTokens: number, distinctIds: number[]): [number[], number] {
  return press === 'knorm' ? [distinctIds, 1] : [promptIds, maxTokens];
}

/** Every built-in press but full: on the GPU all in one batch (a segment and a compressor each), on the reference backend one at a time. */
async function compareEveryPress(gpu: Model, ref: Model, promptIds: number[], maxTokens: number, budget: number, buffer: number, distinctIds: number[]): Promise<void> {
  const presses = PRESS_NAMES.filter((p) => p !== 'full');
  const onGpu = await Promise.all(presses.map((p) => run(gpu, ...runOf(p, promptIds, maxTokens, distinctIds), settings(p, gpu, budget, buffer))));
  for (const [i, press] of presses.entries()) {
    const want = await run(ref, ...runOf(press, promptIds, maxTokens, distinctIds), settings(press, ref, budget, buffer));
    const got = onGpu[i]!;
    assert.ok(want.compressions >= 2, `${press}: ${want.compressions} compressions on the reference backend`);
    assert.equal(got.compressions, want.compressions, `${press}: compressions`);
    assert.deepEqual(got.held, want.held, `${press}: the slots held after each step`);
    assert.deepEqual(got.ids, want.ids, `${press}: greedy ids`);
    if (press === 'ada-kv') {
      const uneven = got.held.some((step) => step.some((layer) => layer.some((head) => head.length !== layer[0]!.length)));
      assert.ok(uneven, 'ada-kv: some layer\'s heads hold different counts (per-head slot bases on the GPU)');
    }
  }
}

test('webgpu stories260K: every press keeps the same slots as the reference backend after each step, and generates the same ids', async (t) => {
  if (!(await withGpu(t))) return;
  const gpu = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  const ref = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    const prompt = gpu.encodeText('Once upon a time, there was a little girl');
    await compareEveryPress(gpu, ref, prompt, 30, 16, 8, Array.from({ length: 48 }, (_, i) => 300 + i));
  } finally {
    gpu.dispose();
    ref.dispose();
  }
});

test('webgpu qwen2 fixture (GQA 4/2, biases): every press keeps the same slots as the reference backend', async (t) => {
  if (!(await withGpu(t))) return;
  const dir = tinyModel('qwen2-F32');
  const expected = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'expected.json'), 'utf8')) as { prompt_ids: number[] };
  const gpu = await loadModel(dir, { backend: 'webgpu' });
  const ref = await loadModel(dir, { backend: 'reference' });
  try {
    await compareEveryPress(gpu, ref, expected.prompt_ids.slice(0, 20), 24, 16, 8, Array.from({ length: 48 }, (_, i) => 100 + i));
  } finally {
    gpu.dispose();
    ref.dispose();
  }
});

test('webgpu r-kv: the cache never holds more than budget + buffer slots per (layer, KV head), live or allocated', async (t) => {
  if (!(await withGpu(t))) return;
  const gpu = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  try {
    const c = gpu.config;
    const budget = 24;
    const buffer = 8;
    const slotBytes = 2 * c.headDim * 4; // f32 K and V
    const bound = (budget + buffer) * c.numLayers * c.numKvHeads * slotBytes;
    const prompt = gpu.encodeText('Once upon a time');
    for (const trigger of ['r-kv', 'length'] as const) {
      const r = await run(gpu, prompt, 100, { press: 'r-kv', budget, buffer, trigger });
      assert.ok(r.compressions >= 8, `${trigger}: ${r.compressions} compressions`);
      assert.ok(r.peakKvBytes <= bound, `${trigger}: peak live ${r.peakKvBytes} > ${bound}`);
      assert.ok(r.peakKvAllocatedBytes <= bound, `${trigger}: peak allocated ${r.peakKvAllocatedBytes} > ${bound}`);
      for (const step of r.held) for (const layer of step) for (const head of layer) assert.ok(head.length <= budget + buffer, `${trigger}: a head holds ${head.length}`);
    }
  } finally {
    gpu.dispose();
  }
});

test('webgpu: a user press (definePress) and forked samples of a compressed prompt run as on the reference backend', async (t) => {
  if (!(await withGpu(t))) return;
  const gpu = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  const ref = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    // Scores each slot by its key's first coordinate minus its value's last: reads keys and values.
    const keyMinusValue = definePress({
      name: 'key-minus-value',
      summary: 'a test press reading keys and values',
      options: [BUDGET],
      needs: { queries: () => 4 },
      score(_o, view, h, m, out) {
        const { keys, values } = view.heads[h]!;
        const d = view.headDim;
        for (let j = 0; j < m; j++) out[j] = keys[j * d]! - values[j * d + d - 1]! + view.queries[0]![0]! * 0;
      },
    });
    const prompt = gpu.encodeText('Once upon a time');
    const compression: CompressionSettings = { press: keyMinusValue, budget: 12, buffer: 4 };
    const got = await run(gpu, prompt, 30, compression);
    const want = await run(ref, prompt, 30, compression);
    assert.ok(want.compressions >= 3);
    assert.deepEqual(got.held, want.held);
    assert.deepEqual(got.ids, want.ids);

    // Two greedy samples of one prompt compressed when read (schedule both): the prompt is read once, the
    // forked sample copies the compressed cache and the observation rings, and both continue as one run alone.
    const both: CompressionSettings = { press: 'snapkv', budget: 8, buffer: 4, window: 4, schedule: 'both' };
    const alone = await run(ref, prompt, 20, both);
    const samples = gpu.generateSamples(null, { promptIds: prompt, n: 2, maxTokens: 20, ignoreEos: true, compression: both });
    for (const s of samples) {
      const r = await s.result;
      assert.deepEqual(r.generatedIds, alone.ids);
      assert.equal(r.compressions, alone.compressions);
    }
  } finally {
    gpu.dispose();
    ref.dispose();
  }
});
