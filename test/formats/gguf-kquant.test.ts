// Q4_K_M and Q5_K_M GGUF files: the writer's mix of Q4_K (Q5_K) / Q6_K (llama.cpp's choice per tensor), the wasm backend
// holding those matrices at their stored bytes (weightBytes = the file's tensor bytes), and its logits
// against the reference backend on the dequantised weights (float64-free oracle: plain TypeScript f32).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { openGgufWeights, writeGguf } from '../../src/formats/gguf.js';
import { q4KMType } from '../../src/formats/gguf-write.js';
import { tempDir } from '../helpers.js';
import { tinyQ4KMModel } from './kquant-model.js';

const { dir: tmp, cleanup } = tempDir('kvsieve-gguf-kquant-');
after(cleanup);

test('q4KMType: llama.cpp\'s use_more_bits layers get Q6_K for attn_v and ffn_down, output.weight (or a tied token_embd) Q6_K, the rest Q4_K', () => {
  // n = 8: n/8 = 1, 7n/8 = 7: layers 0, 7 and (i - 1) % 3 == 2 -> 3, 6
  const six = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => q4KMType(`blk.${i}.ffn_down.weight`, 8) === 'Q6_K');
  assert.deepEqual(six, [0, 3, 6, 7]);
  // n = 24 (Qwen2.5-0.5B): n/8 = 3, 7n/8 = 21
  const six24 = Array.from({ length: 24 }, (_, i) => i).filter((i) => q4KMType(`blk.${i}.attn_v.weight`, 24) === 'Q6_K');
  assert.deepEqual(six24, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
  assert.equal(q4KMType('output.weight', 8), 'Q6_K');
  assert.equal(q4KMType('token_embd.weight', 8), 'Q4_K');
  assert.equal(q4KMType('token_embd.weight', 8, true), 'Q6_K'); // tied: the embedding is the output
  assert.equal(q4KMType('blk.0.attn_q.weight', 8), 'Q4_K');
  assert.equal(q4KMType('blk.0.ffn_gate.weight', 8), 'Q4_K');
  assert.equal(q4KMType('blk.7.ffn_down_exps.weight', 8), 'Q6_K'); // llama.cpp matches "ffn_down" in the name
  assert.equal(q4KMType('blk.1.ffn_down_exps.weight', 8), 'Q4_K');
});

// Q5_K_M makes Q4_K_M's choice with Q5_K for Q4_K (llama.cpp's file types 15 and 17).
for (const [fileType, base, fileTypeId] of [['Q4_K_M', 'Q4_K', 15], ['Q5_K_M', 'Q5_K', 17]] as const) test(`${fileType} GGUF: types per tensor as llama.cpp mixes them, with Q8_0 / F16 fallbacks for rows that are not whole superblocks`, () => {
  const { config, tensors } = tinyQ4KMModel({ intermediate: 480 }); // ffn_down rows of 480: not a multiple of 256
  const file = join(tmp, `mix-${fileType}.gguf`);
  writeGguf(file, { config, tensors, weightType: fileType });
  const g = openGgufWeights(file);
  try {
    const types = new Map(g.header.tensors.map((t) => [t.name, t.type.name]));
    assert.equal(types.get('token_embd.weight'), base);
    assert.equal(types.get('output.weight'), 'Q6_K');
    assert.equal(types.get('blk.0.attn_v.weight'), 'Q6_K');
    assert.equal(types.get('blk.1.attn_v.weight'), base);
    assert.equal(types.get('blk.1.ffn_gate.weight'), base);
    assert.equal(types.get('blk.0.ffn_down.weight'), 'Q8_0');
    assert.equal(types.get('blk.0.attn_norm.weight'), 'F32');
    assert.equal(g.metadata.get('general.file_type'), fileTypeId);
  } finally {
    g.tensors.close();
  }
});

for (const [fileType, base, share, grows] of [['Q4_K_M', 'Q4_K', 0.6, 1.5], ['Q5_K_M', 'Q5_K', 0.7, 1.3]] as const) test(`${fileType} GGUF in the wasm backend: every matrix at its stored bytes, by default and with weights stored (weightBytes = the file's tensor bytes, under ${share} of a q8_0 copy; weights q8_0 converts), logits near the dequantised reference, the same greedy ids`, async () => {
  const { config, tensors } = tinyQ4KMModel({});
  const file = join(tmp, `tiny-${fileType}.gguf`);
  writeGguf(file, { config, tensors, weightType: fileType });
  const g = openGgufWeights(file);
  let fileBytes = 0;
  const kinds = new Set<string>();
  try {
    for (const t of g.header.tensors) {
      fileBytes += t.byteLength;
      kinds.add(t.type.name);
    }
  } finally {
    g.tensors.close();
  }
  assert.deepEqual([...kinds].sort(), ['F32', base, 'Q6_K']);
  const wasm = await loadModel(file, { backend: 'wasm', weights: 'stored', threads: 1 });
  const ref = await loadModel(file, { backend: 'reference' });
  try {
    assert.equal(wasm.info().weightBytes, fileBytes);
    // By default the K-quant blocks are kept too (the same bytes and logits as 'stored'); weights
    // 'q8_0' converts them.
    const byDefault = await loadModel(file, { backend: 'wasm', threads: 1 });
    const converted = await loadModel(file, { backend: 'wasm', weights: 'q8_0', threads: 1 });
    try {
      assert.equal(byDefault.info().weightBytes, fileBytes);
      // info() names what the matrices are held in, not the q8_0 setting the K-quants bypass
      assert.equal(byDefault.info().backend, `wasm (${base.toLowerCase()}/q6_k weights, 1 thread)`);
      assert.equal(converted.info().backend, 'wasm (q8_0 weights, 1 thread)');
      const p = [3, 1, 4, 1, 5, 9, 2, 6];
      assert.deepEqual(byDefault.logits(p).map((row) => [...row]), wasm.logits(p).map((row) => [...row]));
      assert.ok(converted.info().weightBytes > grows * fileBytes, `${converted.info().weightBytes} bytes as q8_0`);
    } finally {
      byDefault.dispose();
      converted.dispose();
    }
    // what the same matrices took before (dequantised, then re-quantised to q8_0: 34 bytes per 32 values)
    let values = 0;
    let floats = 0;
    for (const t of tensors) (t.shape.length === 2 ? (values += t.shape[0]! * t.shape[1]!) : (floats += t.shape[0]!));
    assert.ok(fileBytes < share * ((values * 34) / 32 + floats * 4), `${fileBytes} bytes`);
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
      // Every product's input rounds to 8 bits per 256 values (at most 1/254 of their largest value
      // per value; rigorous per product in test/backend/wasm/kernels.kquant.test.ts); through 8 layers
      // that stays under a per cent of the logits' scale (0.56-0.81% measured; with the input rounded
      // per 32 values before: 0.5-0.7%; the q8_0 path on the same weights in f32: 0.7-1.1%). 3%
      // catches a wrong block, scale or min (order-one differences).
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
});

test('weights "stored": a Q4_0 GGUF keeps its q4_0 blocks (the same bytes and logits as weights q4_0), and a Q8_0 one its q8_0 blocks', async () => {
  const { config, tensors } = tinyQ4KMModel({});
  for (const type of ['Q4_0', 'Q8_0'] as const) {
    const file = join(tmp, `tiny-${type}.gguf`);
    writeGguf(file, { config, tensors, weightType: type });
    const stored = await loadModel(file, { backend: 'wasm', weights: 'stored', threads: 1 });
    const same = await loadModel(file, { backend: 'wasm', weights: type === 'Q4_0' ? 'q4_0' : 'q8_0', threads: 1 });
    try {
      assert.equal(stored.info().weightBytes, same.info().weightBytes, type);
      const prompt = [1, 17, 300, 5];
      const [a, b] = [stored.logits(prompt), same.logits(prompt)];
      a.forEach((row, t) => assert.deepEqual(Array.from(row), Array.from(b[t]!), `${type}: logits of token ${t}`));
    } finally {
      stored.dispose();
      same.dispose();
    }
  }
});
