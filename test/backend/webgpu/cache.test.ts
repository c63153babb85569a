// GpuKvCache against SlotCache (the CPU cache, the oracle): the same appends, growth, evictions and
// copies leave the same rows, positions and byte counts; the GPU rows are read back with readHead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebGpuBackend } from '../../../src/backend/webgpu/backend.js';
import { GpuKvCache } from '../../../src/kv/gpu-cache.js';
import { SlotCache, type KvCache } from '../../../src/kv/cache.js';
import { InternalError, KvsieveError } from '../../../src/core/errors.js';
import { rng } from '../../helpers.js';
import { withGpu } from './gpu.js';

const SHAPE = { numLayers: 2, numKvHeads: 3, headDim: 8, maxSlotsPerHead: 200, initialSlotsPerHead: 4 };

function rows(count: number, seed: number) {
  const r = rng(seed);
  const width = SHAPE.numKvHeads * SHAPE.headDim;
  const k = Float32Array.from({ length: (count + 1) * width }, () => r() * 2 - 1);
  const v = Float32Array.from({ length: (count + 1) * width }, () => r() * 2 - 1);
  return { k, v, offset: 1, count };
}

async function assertSame(gpu: GpuKvCache, cpu: KvCache, what: string): Promise<void> {
  for (let l = 0; l < SHAPE.numLayers; l++) {
    for (let h = 0; h < SHAPE.numKvHeads; h++) {
      const { keys, values } = await gpu.readHead(l, h);
      assert.deepEqual(keys, cpu.keysF32(l, h), `${what}: keys of layer ${l} head ${h}`);
      assert.deepEqual(values, cpu.valuesF32(l, h), `${what}: values of layer ${l} head ${h}`);
      assert.deepEqual(gpu.positions(l, h), cpu.positions(l, h), `${what}: positions of layer ${l} head ${h}`);
      assert.equal(gpu.heads(l)[h]!.length, cpu.heads(l)[h]!.length);
    }
  }
  assert.equal(gpu.bytes().live, cpu.bytes().live, `${what}: live bytes`);
}

for (const kvDtype of ['f32', 'f16'] as const) test(`GpuKvCache ${kvDtype}: appends (growing its buffers), evictions, copies and release match SlotCache ${kvDtype}`, async (t) => {
  if (!(await withGpu(t))) return;
  const backend = await WebGpuBackend.create();
  try {
    const gpu = new GpuKvCache({ ...SHAPE, kvDtype, backend });
    const cpu = new SlotCache({ ...SHAPE, kvDtype });
    let processed = 0;
    // 1 + 5 + 1 + 17 rows: the first append allocates 4 slots a head, later ones grow past them
    for (const [i, n] of [1, 5, 1, 17].entries()) {
      const block = { ...rows(n, 10 + i), positions: Array.from({ length: n }, (_, j) => processed + j) };
      for (let l = 0; l < SHAPE.numLayers; l++) {
        gpu.append(l, block);
        cpu.append(l, block);
      }
      processed += n;
    }
    await assertSame(gpu, cpu, 'after appends');
    assert.ok(gpu.bytes().allocated >= gpu.bytes().live);
    // K and V of every (layer, head, slot): headDim values each, 4 bytes (f32) or 2 (f16) a value
    assert.equal(gpu.bytes().live, SHAPE.numLayers * SHAPE.numKvHeads * processed * 2 * SHAPE.headDim * (kvDtype === 'f16' ? 2 : 4));
    assert.equal(gpu.heads(0)[0]!.kvDtype, kvDtype);

    // each head keeps its own slots, compacted in order (runs and single slots)
    const keep = [
      [0, 1, 2, 7, 8, 20, 23],
      [3, 4, 5, 6, 10, 11, 12, 13],
      [0, 23],
    ];
    gpu.evict(0, keep);
    cpu.evict(0, keep);
    const same = Array.from({ length: SHAPE.numKvHeads }, () => [0, 2, 4, 6, 8, 10]);
    gpu.evict(1, same);
    cpu.evict(1, same);
    await assertSame(gpu, cpu, 'after evictions');

    // a fork's copy holds exactly the same rows; the source stays as it was
    const copy = new GpuKvCache({ ...SHAPE, kvDtype, backend });
    const cpuCopy = new SlotCache({ ...SHAPE, kvDtype });
    copy.copyFrom(gpu);
    cpuCopy.copyFrom(cpu);
    await assertSame(copy, cpuCopy, 'the copy');
    // appends after the copy go to the copy alone (equal head lengths: layer 1)
    const more = { ...rows(2, 99), positions: [processed, processed + 1] };
    copy.append(1, more);
    cpuCopy.append(1, more);
    await assertSame(copy, cpuCopy, 'the copy after an append');
    await assertSame(gpu, cpu, 'the source after its copy grew');

    assert.throws(() => gpu.keysF32(0, 0), InternalError);
    assert.throws(() => gpu.evict(0, [[1, 0], [], []]), /must ascend/);
    gpu.release();
    assert.deepEqual(gpu.bytes().live, 0);
    assert.equal(gpu.bytes().allocated, 0);
    assert.ok(gpu.bytes().peakLive >= cpu.bytes().live);
    copy.release();
    assert.throws(() => new GpuKvCache({ ...SHAPE, backend, kvDtype: 'int8' }), (e: unknown) => e instanceof KvsieveError && e.option === 'kvDtype');
  } finally {
    backend.dispose();
  }
});

test('GpuKvCache: the slot limit bounds growth as SlotCache does', async (t) => {
  if (!(await withGpu(t))) return;
  const backend = await WebGpuBackend.create();
  try {
    const gpu = new GpuKvCache({ ...SHAPE, maxSlotsPerHead: 10, backend });
    gpu.append(0, { ...rows(8, 1), positions: Array.from({ length: 8 }, (_, i) => i) });
    assert.throws(() => gpu.append(0, { ...rows(3, 2), positions: [8, 9, 10] }), /may hold at most 30 there/);
    gpu.setSlotLimit(20);
    gpu.append(0, { ...rows(3, 2), positions: [8, 9, 10] });
    assert.equal(gpu.positions(0, 2).length, 11);
    assert.equal(gpu.limitBytes(), 2 * 20 * 3 * 2 * 8 * 4);
  } finally {
    backend.dispose();
  }
});
