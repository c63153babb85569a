// MXFP4 in GGUF files: the writer's per-tensor choice (tensorType, llama.cpp's MXFP4_MOE mix), the reader's
// dequantisation (bit for bit src/quant/mxfp4.ts of the blocks written), the loader's refusal of blocks
// that overflow float32, and the wasm backend holding MXFP4 matrices at their stored bytes under the
// default weights, with logits near the reference backend on the dequantised weights and the same ids.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { openGgufWeights, writeGguf } from '../../src/formats/gguf.js';
import { dequantizeMXFP4, quantizeMXFP4 } from '../../src/quant/mxfp4.js';
import { KvsieveError } from '../../src/core/errors.js';
import { ggufFromSafetensors, tempDir } from '../helpers.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { tinyQ4KMModel } from './kquant-model.js';
import { QWEN3_MOE_CONFIG, writeTinyQwen3Moe } from '../model/qwen3-moe.js';

const { dir: tmp, cleanup } = tempDir('kvsieve-gguf-mxfp4-');
after(cleanup);

const FFN_MXFP4 = (name: string) => (/\.ffn_(gate|up|down)\.weight$/.test(name) ? ('MXFP4' as const) : undefined);

test('GGUF writer: tensorType puts a matrix in MXFP4, the reader dequantises it bit for bit as src/quant (and hands its raw blocks on)', () => {
  const { config, tensors } = tinyQ4KMModel({ seed: 3 });
  const file = join(tmp, 'ffn.gguf');
  writeGguf(file, { config, tensors, weightType: 'Q8_0', tensorType: FFN_MXFP4 });
  const g = openGgufWeights(file);
  try {
    const types = new Map(g.header.tensors.map((t) => [t.name, t.type.name]));
    assert.equal(types.get('blk.0.ffn_gate.weight'), 'MXFP4');
    assert.equal(types.get('blk.7.ffn_down.weight'), 'MXFP4');
    assert.equal(types.get('blk.0.attn_q.weight'), 'Q8_0');
    assert.equal(types.get('blk.0.attn_norm.weight'), 'F32');
    const src = tensors.find((t) => t.name === 'model.layers.2.mlp.up_proj.weight')!;
    const want = dequantizeMXFP4(quantizeMXFP4(src.data as Float32Array), (src.data as Float32Array).length);
    assert.deepEqual(g.tensors.readF32('model.layers.2.mlp.up_proj.weight'), want);
    const raw = g.tensors.readRawTensor('blk.2.ffn_up.weight');
    assert.equal(raw.type, 'MXFP4');
    assert.equal(raw.typeId, 39);
    assert.deepEqual(raw.data, quantizeMXFP4(src.data as Float32Array));
  } finally {
    g.tensors.close();
  }
  assert.throws(() => writeGguf(join(tmp, 'bad.gguf'), { config, tensors, weightType: 'F32', tensorType: () => 'Q5_1' as never }),
    (e: unknown) => e instanceof KvsieveError && /tensorType/.test(e.message) && /Q5_1/.test(e.message));
});

test('GGUF writer: MXFP4_MOE (file type 38) stores the stacked experts as MXFP4 and the other matrices as Q8_0', () => {
  const hf = writeTinyQwen3Moe(join(tmp, 'qwen3moe'));
  const file = ggufFromSafetensors(join(tmp, 'moe.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(QWEN3_MOE_CONFIG), weightType: 'MXFP4_MOE' });
  const g = openGgufWeights(file);
  try {
    const types = new Map(g.header.tensors.map((t) => [t.name, t.type.name]));
    for (const p of ['gate', 'up', 'down']) assert.equal(types.get(`blk.0.ffn_${p}_exps.weight`), 'MXFP4', p);
    assert.equal(types.get('blk.0.attn_q.weight'), 'Q8_0');
    assert.equal(types.get('blk.0.ffn_gate_inp.weight'), 'Q8_0');
    assert.equal(g.metadata.get('general.file_type'), 38);
  } finally {
    g.tensors.close();
  }
});

test('MXFP4 GGUF in the wasm backend: the MXFP4 matrices at their stored bytes under the default weights (17 bytes per 32 values, half a q8_0 copy), logits near the dequantised reference, the same greedy ids; an overflowing block refused naming the tensor', async () => {
  const { config, tensors } = tinyQ4KMModel({ seed: 5 });
  const file = join(tmp, 'ffn-f32.gguf');
  writeGguf(file, { config, tensors, weightType: 'F32', tensorType: FFN_MXFP4 });
  let mxfp4Bytes = 0;
  let mxfp4Values = 0;
  let otherValues = 0;
  let normBytes = 0;
  const g = openGgufWeights(file);
  try {
    for (const t of g.header.tensors) {
      const n = t.ne.reduce((a, b) => a * b, 1);
      if (t.type.name === 'MXFP4') {
        mxfp4Bytes += t.byteLength;
        mxfp4Values += n;
      } else if (t.ne.length === 2) otherValues += n;
      else normBytes += 4 * n;
    }
  } finally {
    g.tensors.close();
  }
  assert.equal(mxfp4Bytes, (mxfp4Values / 32) * 17);
  const wasm = await loadModel(file, { backend: 'wasm', threads: 1 }); // default weights q8_0: F32 matrices -> q8_0, MXFP4 kept
  const ref = await loadModel(file, { backend: 'reference' });
  try {
    const q8Others = (otherValues / 32) * 34;
    // the MXFP4 matrices as stored, the others q8_0, the norms f32
    assert.equal(wasm.info().weightBytes, mxfp4Bytes + q8Others + normBytes);
    const converted = await loadModel(file, { backend: 'wasm', weights: 'f16', threads: 1 });
    try {
      assert.equal(converted.info().weightBytes, 2 * (mxfp4Values + otherValues) + normBytes);
    } finally {
      converted.dispose();
    }
    const prompt = [1, 17, 300, 5, 77, 401, 2, 90];
    const a = wasm.logits(prompt);
    const b = ref.logits(prompt);
    for (let t = 0; t < prompt.length; t++) {
      let maxAbs = 0;
      let maxDiff = 0;
      for (let i = 0; i < a[t]!.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(b[t]![i]!));
        maxDiff = Math.max(maxDiff, Math.abs(a[t]![i]! - b[t]![i]!));
      }
      // the products' inputs rounded to 8 bits per 32-block (rigorous per product in
      // test/backend/wasm/kernels.mxfp4.test.ts) and the other matrices in q8_0: about a per cent of the
      // logits' scale through 8 layers; 3% catches a wrong code, nibble or scale (order-one differences).
      assert.ok(maxDiff <= 0.03 * maxAbs, `token ${t}: logits differ by ${maxDiff}, scale ${maxAbs}`);
    }
    const n = 24;
    const fromWasm = await wasm.complete(null, { promptIds: prompt, maxTokens: n, ignoreEos: true });
    const fromRef = await ref.complete(null, { promptIds: prompt, maxTokens: n, ignoreEos: true });
    assert.deepEqual(fromWasm.generatedIds, fromRef.generatedIds);
  } finally {
    wasm.dispose();
    ref.dispose();
  }
  // One block of blk.4.ffn_down.weight with scale byte 255 and a code of magnitude 1: 2 * 2^127 overflows.
  const bytes = readFileSync(file);
  const h = openGgufWeights(file);
  let at = 0;
  try {
    const t = h.header.tensors.find((x) => x.name === 'blk.4.ffn_down.weight')!;
    at = t.position + 17 * 5;
  } finally {
    h.tensors.close();
  }
  bytes[at] = 255;
  bytes[at + 1] = 0x02;
  const broken = join(tmp, 'broken.gguf');
  writeFileSync(broken, bytes);
  for (const options of [{ backend: 'wasm' as const, threads: 1 }, { backend: 'reference' as const }]) {
    await assert.rejects(loadModel(broken, options),
      (e: unknown) => e instanceof KvsieveError && /down_proj|ffn_down/.test(e.message) && /non-finite/.test(e.message), options.backend);
  }
});
