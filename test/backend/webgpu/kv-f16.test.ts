// kvDtype f16 on the webgpu backend (K and V as IEEE halves, two to a u32). References: the halves the
// step's append kernel writes equal src/core/kv-rows.ts's f16 encoding (the CPU caches') bit for bit,
// ties, subnormals and out-of-range values included; generation with an f16 cache keeps the same slots
// and gives the same greedy ids as the reference backend's f16 cache, full and under presses scored on
// the GPU (snapkv, r-kv, q-filters), on the CPU from the layer read back (tova) and from the attention's
// running sums (h2o); its bytes are 2 per value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { WebGpuBackend } from '../../../src/backend/webgpu/backend.js';
import { GpuKvCache } from '../../../src/kv/gpu-cache.js';
import { storeRow } from '../../../src/core/kv-rows.js';
import { f16ArrayToF32 } from '../../../src/core/half.js';
import { loadModel, type Model } from '../../../src/api.js';
import type { CompressionSettings } from '../../../src/generate/compression.js';
import type { KvTraceEvent } from '../../../src/generate/sequence.js';
import { rng, stories260K, tinyModel } from '../../helpers.js';
import { withGpu } from './gpu.js';

/** Values whose rounding to a half is delicate: ties both ways, subnormal halves, saturation, tiny and huge. */
const EDGES = [
  1 + 2 ** -11, // tie between 1 and 1 + 2^-10: even is 1
  1 + 3 * 2 ** -11, // tie: even is 1 + 2^-9
  -(1 + 2 ** -11),
  2 ** -24, // smallest subnormal half
  3 * 2 ** -25, // subnormal tie: even is 2^-23
  2 ** -25, // tie with zero: rounds to 0
  -(5 * 2 ** -26),
  6.1e-5, // just below the smallest normal half
  65504,
  65519, // rounds to infinity unsaturated
  65520,
  -1e6,
  1e30,
  0,
  -0,
  0.1,
  1 / 3,
  -2.71828,
  1e-8,
  123.456,
];

test('webgpu f16 KV: the halves the append kernel writes equal kv-rows.ts\'s encoding bit for bit', async (t) => {
  if (!(await withGpu(t))) return;
  const backend = await WebGpuBackend.create();
  try {
    const shape = { numLayers: 1, numKvHeads: 2, headDim: 6, maxSlotsPerHead: 64, initialSlotsPerHead: 4 };
    const cache = new GpuKvCache({ ...shape, kvDtype: 'f16', backend });
    const width = shape.numKvHeads * shape.headDim;
    const r = rng(7);
    const expected = { keys: [[], []] as number[][], values: [[], []] as number[][] };
    let processed = 0;
    // two steps (3 rows, then 5 from slot 3: past the first allocation, so the buffers grow between)
    for (const count of [3, 5]) {
      const total = count + 1; // row 0 is not appended: the kernel reads from `row`
      const k = Float32Array.from({ length: total * width }, (_, i) => (i >= width && i - width < EDGES.length ? EDGES[i - width]! : (r() * 2 - 1) * 10 ** Math.floor(r() * 9 - 4)));
      const v = Float32Array.from({ length: total * width }, (_, i) => (i >= width && i - width < EDGES.length ? -EDGES[i - width]! : (r() * 2 - 1) * 300));
      const kBuf = backend.upload(k);
      const vBuf = backend.upload(v);
      const slots = cache.layerForStep(0, count, Array.from({ length: count }, (_, i) => processed + i));
      const step = backend.beginStep(1);
      step.kvAppend({ k: kBuf, v: vBuf, row: 1, count, kvHeads: shape.numKvHeads, headDim: shape.headDim, ...slots });
      await step.finish(backend.none, 0);
      kBuf.destroy();
      vBuf.destroy();
      for (let h = 0; h < shape.numKvHeads; h++) {
        for (let i = 1; i <= count; i++) {
          for (const [src, out] of [[k, expected.keys[h]!], [v, expected.values[h]!]] as const) {
            const halves = new Uint16Array(shape.headDim);
            storeRow('f16', src, i * width + h * shape.headDim, halves, null, 0, shape.headDim);
            const wide = new Float32Array(shape.headDim);
            f16ArrayToF32(halves, wide);
            out.push(...new Uint32Array(wide.buffer));
          }
        }
      }
      processed += count;
    }
    const read = await cache.readLayer(0);
    for (let h = 0; h < shape.numKvHeads; h++) {
      const head = await cache.readHead(0, h);
      // widening a half is exact and one to one, so equal float32 bits are equal halves
      assert.deepEqual([...new Uint32Array(head.keys.buffer)], expected.keys[h], `keys of head ${h} (readHead)`);
      assert.deepEqual([...new Uint32Array(head.values.buffer)], expected.values[h], `values of head ${h} (readHead)`);
      assert.deepEqual([...new Uint32Array(read.keys[h]!.slice().buffer)], expected.keys[h], `keys of head ${h} (readLayer)`);
      assert.deepEqual([...new Uint32Array(read.values[h]!.slice().buffer)], expected.values[h], `values of head ${h} (readLayer)`);
    }
    // saturation, not infinity, at 65519 (and the test saw a value that rounds)
    const keys = read.keys.flatMap((k) => [...k]);
    assert.ok(keys.includes(65504) && keys.every((x) => Number.isFinite(x)), 'saturated at 65504');
    assert.equal(cache.bytes().live, 8 * shape.numKvHeads * 2 * shape.headDim * 2);
    cache.release();
  } finally {
    backend.dispose();
  }
});

interface Run {
  ids: number[];
  compressions: number;
  held: number[][][][];
  peakKvBytes: number;
}

async function run(model: Model, promptIds: number[], maxTokens: number, kvDtype: 'f32' | 'f16', compression?: CompressionSettings): Promise<Run> {
  const events: KvTraceEvent[] = [];
  const r = await model.complete(null, { promptIds, maxTokens, ignoreEos: true, kvDtype, ...(compression ? { compression } : {}), onTrace: (e) => events.push(e) });
  return { ids: r.generatedIds, compressions: r.compressions, held: events.map((e) => e.positions), peakKvBytes: r.peakKvBytes };
}

/** Filters for q-filters that need no calibration: a fixed direction per (layer, KV head). */
const someFilters = (L: number, H: number, d: number) => Float32Array.from({ length: L * H * d }, (_, i) => Math.cos(i * 0.7) / Math.sqrt(d / 2));

/** Full, snapkv, r-kv and q-filters (scored on the GPU), tova (scored on the CPU from the layer read back), h2o (sums the attention adds on the GPU), f16 on both backends. */
async function compareF16(gpu: Model, ref: Model, promptIds: number[], maxTokens: number): Promise<void> {
  const presses: (CompressionSettings | undefined)[] = [
    undefined,
    { press: 'snapkv', budget: 16, buffer: 8 },
    { press: 'r-kv', budget: 16, buffer: 8, trigger: 'r-kv' },
    { press: 'tova', budget: 16, buffer: 8 },
    { press: 'h2o', budget: 16, buffer: 8 },
    { press: 'q-filters', budget: 16, buffer: 8, window: 8, filters: someFilters(gpu.config.numLayers, gpu.config.numKvHeads, gpu.config.headDim) },
  ];
  const onGpu = await Promise.all(presses.map((c) => run(gpu, promptIds, maxTokens, 'f16', c)));
  for (const [i, c] of presses.entries()) {
    const name = c?.press ?? 'full';
    const want = await run(ref, promptIds, maxTokens, 'f16', c);
    const got = onGpu[i]!;
    if (c) assert.ok(want.compressions >= 2, `${name}: ${want.compressions} compressions on the reference backend`);
    assert.equal(got.compressions, want.compressions, `${name}: compressions`);
    assert.deepEqual(got.held, want.held, `${name}: the slots held after each step`);
    assert.deepEqual(got.ids, want.ids, `${name}: greedy ids`);
    assert.equal(got.peakKvBytes, want.peakKvBytes, `${name}: peak KV bytes`);
  }
  // the full cache at 2 bytes a value: half the f32 cache's bytes
  const f32 = await run(gpu, promptIds, maxTokens, 'f32');
  assert.equal(onGpu[0]!.peakKvBytes * 2, f32.peakKvBytes);
}

test('webgpu stories260K with an f16 KV cache: the reference backend\'s f16 slots and greedy ids, full and pressed', async (t) => {
  if (!(await withGpu(t))) return;
  const gpu = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  const ref = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    await compareF16(gpu, ref, gpu.encodeText('Once upon a time, there was a little girl'), 30);
  } finally {
    gpu.dispose();
    ref.dispose();
  }
});

test('webgpu qwen2 fixture (GQA 4/2) with an f16 KV cache: the reference backend\'s f16 slots and greedy ids', async (t) => {
  if (!(await withGpu(t))) return;
  const dir = tinyModel('qwen2-F32');
  const expected = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'expected.json'), 'utf8')) as { prompt_ids: number[] };
  const gpu = await loadModel(dir, { backend: 'webgpu' });
  const ref = await loadModel(dir, { backend: 'reference' });
  try {
    await compareF16(gpu, ref, expected.prompt_ids.slice(0, 20), 24);
  } finally {
    gpu.dispose();
    ref.dispose();
  }
});
