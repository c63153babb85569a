// Mixture of experts (Qwen3-MoE): the engine against a float64 forward of the model's definition
// (test/model/qwen3-moe.ts), from the Hugging Face checkpoint and from the GGUF file kvsieve writes of
// it, alone and in a batch. llama.cpp's verdict on the same GGUF is in test/formats/gguf-write.llamacpp.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { Router, type Routing } from '../../src/model/moe.js';
import { ggufFromSafetensors, rng, tempDir } from '../helpers.js';
import { QWEN3_MOE_CONFIG, qwen3MoeLogits, writeTinyQwen3Moe } from './qwen3-moe.js';

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

test('routing: softmax top-k by hand, renormalised or not, grouped by expert', () => {
  // Row 0: logits [0, ln 2, ln 3, -inf-ish] -> probs 1/6, 2/6, 3/6, ~0: top 2 are experts 2 and 1.
  // Row 1: logits [5, 0, 0, 0] -> expert 0 first, then the tie among 1..3 goes to expert 1.
  const logits = Float32Array.from([0, Math.log(2), Math.log(3), -100, 5, 0, 0, 0]);
  // per expert e: its rows and their weights
  const byExpert = ({ offsets, rows, weights }: Routing) => ({
    rows: Array.from({ length: 4 }, (_, e) => Array.from(rows.subarray(offsets[e]!, offsets[e + 1]!))),
    weights: Array.from({ length: 4 }, (_, e) => Array.from(weights.subarray(offsets[e]!, offsets[e + 1]!))),
  });
  const router = new Router(4, 2, true);
  router.route(Float32Array.from({ length: 3 * 4 }, (_, i) => i % 5), 3); // a larger step first: buffers are reused
  const r = byExpert(router.route(logits, 2));
  assert.deepEqual(r.rows, [[1], [0, 1], [0], []]);
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} vs ${b}`);
  close(r.weights[2]![0]!, 3 / 5);
  close(r.weights[1]![0]!, 2 / 5);
  const p0 = Math.exp(5) / (Math.exp(5) + 3);
  const p1 = 1 / (Math.exp(5) + 3);
  close(r.weights[0]![0]!, p0 / (p0 + p1));
  const raw = byExpert(new Router(4, 2, false).route(logits, 2));
  close(raw.weights[2]![0]!, 3 / 6);
  close(raw.weights[0]![0]!, p0);
});

for (const variant of [
  { label: 'every layer sparse, renormalised', config: QWEN3_MOE_CONFIG },
  { label: 'layer 1 dense (mlp_only_layers), not renormalised', config: { ...QWEN3_MOE_CONFIG, mlp_only_layers: [1], norm_topk_prob: false } },
]) {
  test(`Qwen3-MoE (${variant.label}): logits and greedy ids equal the float64 reference, from HF and GGUF, on both backends, alone and batched`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const hf = writeTinyQwen3Moe(join(dir, 'hf'), variant.config);
      const files = [hf];
      if (variant.config === QWEN3_MOE_CONFIG) {
        files.push(ggufFromSafetensors(join(dir, 'moe-F32.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(variant.config) }));
      }
      const r = rng(3);
      const prompts = [11, 4, 7].map((n) => Array.from({ length: n }, () => 3 + Math.floor(r() * 290)));
      const greedy = prompts.map((prompt) => {
        const ids = [...prompt];
        for (let i = 0; i < 8; i++) {
          const last = qwen3MoeLogits(hf, ids).at(-1)!;
          ids.push(last.indexOf(Math.max(...last)));
        }
        return ids;
      });
      const want = qwen3MoeLogits(hf, greedy[0]!);
      for (const file of files) {
        for (const backend of ['reference', 'wasm'] as const) {
          const model = await loadModel(file, { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) });
          try {
            const label = `${file === hf ? 'HF' : 'GGUF'} ${backend}`;
            assert.deepEqual(model.info().experts, { count: 8, perToken: 2, width: 32, layers: variant.config.mlp_only_layers.length ? 2 : 3 });
            const worst = Math.max(...model.logits(greedy[0]!).map((row, i) => maxDiff(row, want[i]!)));
            assert.ok(worst < 1e-4, `${label}: max |logit diff| ${worst}`);
            // Three sequences in one batch route their rows to experts together.
            const batch = await model.generateBatch(prompts, { maxTokens: 8, ignoreEos: true });
            batch.forEach((res, i) => assert.deepEqual(res.generatedIds, greedy[i]!.slice(prompts[i]!.length), `${label}: sequence ${i} in a batch`));
          } finally {
            model.dispose();
          }
        }
      }
    } finally {
      cleanup();
    }
  });
}
