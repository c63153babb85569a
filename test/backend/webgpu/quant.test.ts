// q8_0 and q4_0 weights on WebGPU (SwiftShader in CI): the blocks kept on the GPU, dequantised in the
// shaders. References:
//  - kernels: the embedding rows equal src/quant's dequantisation bit for bit (scale * q is exact in
//    float32: an 11-bit significand times an integer of at most 8 bits);
//  - models: the wasm backend with f32 weights over a Q8_0 / Q4_0 GGUF (src/formats/gguf-write.ts)
//    holds exactly the dequantised values the GPU reads, so only the order of float32 sums differs,
//    as in the f16 test (forward.test.ts): 1e-4 on the logits (measured: 1e-5 on stories260K, 4e-6
//    on llama3-F32). The wasm backend's own q8_0/q4_0 kernels are not that reference: they also
//    round the activations to int8 per 32-block (ggml's scheme), which moves these logits by 0.1-0.25
//    and changes greedy ids of these tiny models.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type Model } from '../../../src/api.js';
import { GpuWeight, WebGpuBackend, packQuantBlocks } from '../../../src/backend/webgpu/backend.js';
import { writeGguf, type GgufWeightType } from '../../../src/formats/gguf.js';
import { openSafetensors } from '../../../src/formats/safetensors.js';
import { parseHfConfig } from '../../../src/formats/hf-config.js';
import { dequantizeQ8_0, quantizeQ8_0 } from '../../../src/quant/q8_0.js';
import { dequantizeQ4_0, quantizeQ4_0 } from '../../../src/quant/q4_0.js';
import { lazyTensors, rng, stories260K, storiesHfConfig, tempDir, tinyModel } from '../../helpers.js';
import { withGpu } from './gpu.js';

const tmp = tempDir('kvsieve-webgpu-quant-');
after(() => tmp.cleanup());

test('packQuantBlocks: every scale first (two to a u32), then each block\'s value bytes, moved as stored', () => {
  // three q8_0 blocks: scale bytes (b, 0x3c), values b*32 + j as int8
  const q8 = new Uint8Array(3 * 34);
  for (let b = 0; b < 3; b++) {
    q8[b * 34] = b;
    q8[b * 34 + 1] = 0x3c;
    for (let j = 0; j < 32; j++) q8[b * 34 + 2 + j] = (b * 32 + j) & 0xff;
  }
  const w8 = packQuantBlocks('q8_0', q8, 3);
  assert.equal(w8.length, 2 + 3 * 8);
  assert.deepEqual([...w8.slice(0, 2)], [0x3c013c00, 0x3c02]);
  assert.equal(w8[2], 0x03020100); // block 0, values 0..3 little-endian
  assert.equal(w8[2 + 8 + 7], (63 << 24) | (62 << 16) | (61 << 8) | 60); // block 1, values 28..31
  const q4 = new Uint8Array(2 * 18).map((_, i) => i);
  const w4 = packQuantBlocks('q4_0', q4, 2);
  assert.equal(w4.length, 1 + 2 * 4);
  assert.equal(w4[0], (19 << 24) | (18 << 16) | (1 << 8) | 0);
  assert.equal(w4[1], (5 << 24) | (4 << 16) | (3 << 8) | 2);
  assert.equal(w4[1 + 4], (23 << 24) | (22 << 16) | (21 << 8) | 20);
});

for (const type of ['q8_0', 'q4_0'] as const) {
  test(`webgpu ${type} kernels: embedding rows equal src/quant's dequantisation exactly; matmul and qkv within float32 summation of the float64 dot`, async (t) => {
    if (!(await withGpu(t))) return;
    const be = await WebGpuBackend.create({ weights: type });
    try {
      const random = rng(type === 'q8_0' ? 8 : 4);
      const rows = 40;
      const cols = 96;
      const data = Float32Array.from({ length: rows * cols }, () => (random() - 0.5) * 2);
      const w = be.weight(data, rows, cols, 'w') as GpuWeight;
      assert.equal(w.type, type);
      const blocks = type === 'q8_0' ? quantizeQ8_0(data) : quantizeQ4_0(data);
      const values = type === 'q8_0' ? dequantizeQ8_0(blocks, rows * cols) : dequantizeQ4_0(blocks, rows * cols);
      // embedding rows 39, 0, 17
      const ids = [39, 0, 17];
      const out = be.storage(ids.length * cols * 4);
      let s = be.beginStep(4);
      s.embed(out, w, be.upload(Uint32Array.from(ids)), ids.length);
      const got = await s.finish(out, ids.length * cols);
      ids.forEach((id, i) => assert.deepEqual(got.subarray(i * cols, (i + 1) * cols), values.subarray(id * cols, (id + 1) * cols), `row ${id}`));
      // two tokens through matmul, and through qkv with q = k = v = w
      const tokens = 2;
      const x = Float32Array.from({ length: tokens * cols }, () => random() - 0.5);
      const mm = be.storage(tokens * rows * 4);
      const [q, k, v] = [be.storage(tokens * rows * 4), be.storage(tokens * rows * 4), be.storage(tokens * rows * 4)];
      const xb = be.upload(x);
      s = be.beginStep(4);
      s.matmul({ out: mm, x: xb, w, tokens });
      s.qkv({ x: xb, tokens, q, k, v, wq: w, wk: w, wv: w, biases: [null, null, null] });
      const byMatmul = await s.finish(mm, tokens * rows);
      s = be.beginStep(1);
      const byQkv = await s.finish(v, tokens * rows);
      for (let tok = 0; tok < tokens; tok++) {
        for (let r = 0; r < rows; r++) {
          let dot = 0;
          let abs = 0;
          for (let c = 0; c < cols; c++) {
            dot += values[r * cols + c]! * x[tok * cols + c]!;
            abs += Math.abs(values[r * cols + c]! * x[tok * cols + c]!);
          }
          // float32 sums of cols terms: |error| <= cols * 2^-24 * sum |terms| (plus one rounding per block scale)
          const bound = (cols + 8) * 2 ** -24 * abs;
          assert.ok(Math.abs(byMatmul[tok * rows + r]! - dot) <= bound, `matmul [${tok}, ${r}]: ${byMatmul[tok * rows + r]} vs ${dot}`);
          assert.equal(byQkv[tok * rows + r], byMatmul[tok * rows + r], `qkv v [${tok}, ${r}]`);
        }
      }
    } finally {
      be.dispose();
    }
  });
}

/** A safetensors checkpoint written as a GGUF of `weightType` (rows not of whole 32-blocks: F16). */
function ggufOf(dir: string, config: ReturnType<typeof storiesHfConfig>, weightType: GgufWeightType, name: string): string {
  const src = openSafetensors(join(dir, 'model.safetensors'));
  const file = join(tmp.dir, `${name}-${weightType}.gguf`);
  try {
    writeGguf(file, { config, tensors: lazyTensors(src), weightType });
  } finally {
    src.close();
  }
  return file;
}

function worstDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((row, i) => {
    for (let j = 0; j < row.length; j++) worst = Math.max(worst, Math.abs(row[j]! - b[i]![j]!));
  });
  return worst;
}

const GGUF_TYPE = { q8_0: 'Q8_0', q4_0: 'Q4_0' } as const;

const MODELS = [
  { name: 'stories260K', dir: stories260K('hf'), config: () => storiesHfConfig(), ids: [1, 403, 407, 261, 378, 286, 300, 265, 400, 301, 261, 390, 423, 282, 261, 398, 342] },
  {
    name: 'llama3-F32',
    dir: tinyModel('llama3-F32'),
    config: () => parseHfConfig(JSON.parse(readFileSync(tinyModel('llama3-F32', 'config.json'), 'utf8')), 'config.json'),
    ids: (JSON.parse(readFileSync(tinyModel('llama3-F32', 'expected.json'), 'utf8')) as { prompt_ids: number[] }).prompt_ids,
  },
];

for (const type of ['q8_0', 'q4_0'] as const) {
  for (const m of MODELS) {
    test(`webgpu ${m.name} with ${type} weights: logits within 1e-4 of wasm f32 over the same dequantised values (a ${GGUF_TYPE[type]} GGUF, loaded on webgpu with its blocks as stored), greedy ids equal`, async (t) => {
      if (!(await withGpu(t))) return;
      const file = ggufOf(m.dir, m.config(), GGUF_TYPE[type], m.name);
      let stored = 0;
      const original = WebGpuBackend.prototype.weightFromStored;
      WebGpuBackend.prototype.weightFromStored = function (this: WebGpuBackend, ...a: Parameters<typeof original>) {
        stored++;
        return original.apply(this, a);
      };
      const models: Model[] = [];
      try {
        const fromGguf = await loadModel(file, { backend: 'webgpu', weights: type });
        models.push(fromGguf);
        WebGpuBackend.prototype.weightFromStored = original;
        // every matrix of whole 32-blocks went in as stored (the writer's F16 fallbacks did not)
        const c = m.config();
        const wholeBlocks = c.intermediateSize % 32 === 0 ? 7 : 6;
        assert.equal(stored, c.numLayers * wholeBlocks + (c.tieWordEmbeddings ? 1 : 2), 'matrices taken as stored');
        assert.match(fromGguf.info().backend, new RegExp(`${type} weights`));
        const fromCheckpoint = await loadModel(m.dir, { backend: 'webgpu', weights: type });
        models.push(fromCheckpoint);
        const exact = await loadModel(file, { backend: 'wasm', weights: 'f32', threads: 1 });
        models.push(exact);

        const want = exact.logits(m.ids);
        const got = await fromGguf.logitsAsync(m.ids);
        const worst = worstDiff(got, want);
        console.log(`${m.name} ${type}: GGUF on webgpu vs wasm f32 of the same values: max |logit diff| ${worst}`);
        assert.ok(worst < 1e-4, `max |logit diff| ${worst}`);
        const f32 = (await loadModel(m.dir, { backend: 'wasm', weights: 'f32', threads: 1 }));
        models.push(f32);
        assert.ok(worstDiff(got, f32.logits(m.ids)) > 1e-3, 'the weights were quantised (logits differ from f32)');
        // From the checkpoint: quantised on the CPU by src/quant, as the GGUF writer did, so the same values
        // where the rows are whole blocks; stories260K's down projection (172 columns) stays f32 there but F16 in the file.
        const fromCp = await fromCheckpoint.logitsAsync(m.ids);
        const cpWorst = worstDiff(fromCp, want);
        if (c.intermediateSize % 32 === 0) assert.ok(cpWorst < 1e-4, `checkpoint: max |logit diff| ${cpWorst}`);
        else assert.ok(cpWorst > 1e-4, 'the f32 down projection differs from the file\'s F16 one');
        const greedy = { promptIds: m.ids, maxTokens: 12, ignoreEos: true };
        const reference = (await exact.complete(null, greedy)).generatedIds;
        assert.deepEqual((await fromGguf.complete(null, greedy)).generatedIds, reference, 'greedy ids, GGUF');
        if (c.intermediateSize % 32 === 0) assert.deepEqual((await fromCheckpoint.complete(null, greedy)).generatedIds, reference, 'greedy ids, checkpoint');
      } finally {
        WebGpuBackend.prototype.weightFromStored = original;
        for (const model of models) model.dispose();
      }
    });
  }
}
