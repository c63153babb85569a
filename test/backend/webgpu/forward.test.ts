// The f32 forward on WebGPU (SwiftShader in CI) against the same references as the CPU backends:
// run.c's stories260K goldens, the tiny fixtures' independent logits, and batched decode against
// each sequence alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel } from '../../../src/api.js';
import { stories260K, storiesGoldens, TINY_MODELS, tinyModel, type StoriesGolden } from '../../helpers.js';
import { withGpu } from './gpu.js';

const generations = storiesGoldens();
const logitsGolden = JSON.parse(readFileSync(stories260K('golden', 'logits_once_upon_a_time.json'), 'utf8')) as {
  ids: number[];
  entries: { pos: number; logits: number[] }[];
};
const maxNewTokens = (g: StoriesGolden) => g.steps - g.prompt_ids.length + 1;

test('webgpu stories260K: logits within 1e-4 of run.c; every golden greedy generation identical (ids and text), all four decoded in one batch', async (t) => {
  if (!(await withGpu(t))) return;
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  try {
    assert.match(model.info().backend, /^webgpu \(/);
    const rows = await model.logitsAsync(logitsGolden.ids.slice(0, 101));
    for (const e of logitsGolden.entries) {
      let worst = 0;
      for (let j = 0; j < e.logits.length; j++) worst = Math.max(worst, Math.abs(rows[e.pos]![j]! - e.logits[j]!));
      assert.ok(worst < 1e-4, `position ${e.pos}: max |logit diff| ${worst}`);
    }
    // Submitted together: every step advances all unfinished ones (run.c decodes each alone).
    const results = await Promise.all(generations.map((g) => model.complete(g.prompt, { maxTokens: maxNewTokens(g) })));
    assert.ok(results.every((r) => r.peakBatchSize === generations.length), 'the four shared their steps');
    for (const [i, g] of generations.entries()) {
      const r = results[i]!;
      assert.deepEqual([...r.promptIds, ...r.generatedIds], g.ids, `ids of "${g.prompt}" -n ${g.steps}`);
      assert.equal(r.stopReason, g.stopped_on_bos ? 'eos' : 'max-tokens');
      assert.equal(model.tokenizer!.decode(g.prompt_ids) + r.text, g.text);
    }
  } finally {
    model.dispose();
  }
});

test('webgpu stories260K: a batch of sequences of different lengths decodes each to the ids it gets alone', async (t) => {
  if (!(await withGpu(t))) return;
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  try {
    const prompts = [[1], ...generations.map((g) => g.prompt_ids), generations[3]!.ids.slice(0, 40)];
    const alone: number[][] = [];
    for (const ids of prompts) alone.push((await model.complete(null, { promptIds: ids, maxTokens: 16, ignoreEos: true })).generatedIds);
    // Submitted together: one step reads every prompt (a segment each), then they decode as a batch.
    const together = await Promise.all(prompts.map((ids) => model.complete(null, { promptIds: ids, maxTokens: 16, ignoreEos: true })));
    together.forEach((r, i) => assert.deepEqual(r.generatedIds, alone[i], `sequence ${i}`));
    assert.ok(together.every((r) => r.peakBatchSize === prompts.length), 'the sequences shared their steps');
    // A prompt of 150 golden ids (prefill blocks of 64, 64 and 22; the cache grows past its first
    // allocation): greedy decoding continues the golden generation exactly.
    const golden = generations[3]!.ids;
    const long = await model.complete(null, { promptIds: golden.slice(0, 150), maxTokens: 20, ignoreEos: true });
    assert.deepEqual(long.generatedIds, golden.slice(150, 170));
    // Samples of one prompt: read once, the cache copied on the GPU, each equal to its own run.
    const [a, b] = model.generateSamples(null, { promptIds: prompts[2]!, n: 2, maxTokens: 12, temperature: 0.9, seed: 5 });
    const forked = [await a!.result, await b!.result];
    for (const [j, r] of forked.entries()) {
      const own = await model.complete(null, { promptIds: prompts[2]!, maxTokens: 12, temperature: 0.9, seed: 5 + j });
      assert.deepEqual(r.generatedIds, own.generatedIds, `sample ${j}`);
    }
  } finally {
    model.dispose();
  }
});

interface Expected {
  prompt_ids: number[];
  logits: number[][];
  greedy_ids: number[];
}
// The fixtures' README: F32 1e-4; F16/BF16 1e-3 (the reference computed from the stored weights).
const tolerance = (name: string) => (name.endsWith('F32') ? 1e-4 : 1e-3);

for (const name of TINY_MODELS) {
  test(`webgpu ${name}: logits at every position within the fixture's tolerance, greedy ids equal`, async (t) => {
    if (!(await withGpu(t))) return;
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as Expected;
    const model = await loadModel(tinyModel(name), { backend: 'webgpu' });
    try {
      const rows = await model.logitsAsync(expected.prompt_ids);
      assert.equal(rows.length, expected.logits.length);
      let worst = 0;
      rows.forEach((row, i) => {
        for (let j = 0; j < expected.logits[i]!.length; j++) worst = Math.max(worst, Math.abs(row[j]! - expected.logits[i]![j]!));
      });
      assert.ok(worst < tolerance(name), `max |logit diff| ${worst} over tolerance ${tolerance(name)}`);
      const r = await model.complete(null, { promptIds: expected.prompt_ids, maxTokens: expected.greedy_ids.length, ignoreEos: true });
      assert.deepEqual(r.generatedIds, expected.greedy_ids);
    } finally {
      model.dispose();
    }
  });
}

// f16 weights (two halves to a u32, no shader-f16): the same rounded weights as the wasm backend's f16
// storage, so its logits are the reference (only the order of float32 sums differs).
for (const name of ['llama3-F32', 'qwen2-F32'] as const) {
  test(`webgpu ${name} with f16 weights: logits within 1e-4 of the wasm backend's f16 weights, greedy ids equal`, async (t) => {
    if (!(await withGpu(t))) return;
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as Expected;
    const gpu = await loadModel(tinyModel(name), { backend: 'webgpu', weights: 'f16' });
    const cpu = await loadModel(tinyModel(name), { backend: 'wasm', weights: 'f16', threads: 1 });
    try {
      assert.match(gpu.info().backend, /f16 weights/);
      const rows = await gpu.logitsAsync(expected.prompt_ids);
      const want = cpu.logits(expected.prompt_ids);
      let worst = 0;
      let fromF32 = 0;
      rows.forEach((row, i) => {
        for (let j = 0; j < row.length; j++) {
          worst = Math.max(worst, Math.abs(row[j]! - want[i]![j]!));
          fromF32 = Math.max(fromF32, Math.abs(row[j]! - expected.logits[i]![j]!));
        }
      });
      assert.ok(worst < 1e-4, `max |logit diff| from wasm f16 ${worst}`);
      assert.ok(fromF32 > 1e-6, 'the weights were rounded to f16 (logits differ from the f32 reference)');
      const a = await gpu.complete(null, { promptIds: expected.prompt_ids, maxTokens: 12, ignoreEos: true });
      const b = await cpu.complete(null, { promptIds: expected.prompt_ids, maxTokens: 12, ignoreEos: true });
      assert.deepEqual(a.generatedIds, b.generatedIds);
    } finally {
      gpu.dispose();
      cpu.dispose();
    }
  });
}
