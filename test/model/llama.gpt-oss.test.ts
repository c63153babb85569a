// GPT-OSS: attention sinks, YaRN RoPE, alternating sliding layers, biased router and experts, the
// clamped SwiGLU. The engine against a float64 forward of the model's definition
// (test/model/gpt-oss.ts), from the Hugging Face checkpoint (experts interleaved as transformers stores
// them) and from the GGUF kvsieve writes of it (experts stacked as llama.cpp's), on both CPU backends,
// alone and batched. llama.cpp's verdict on the same GGUF is in test/formats/gguf-write.llamacpp.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { swigluOai } from '../../src/core/activations.js';
import { KvsieveError } from '../../src/core/errors.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { ropeInverseFrequencies } from '../../src/model/rope.js';
import { ggufFromSafetensors, rng, tempDir } from '../helpers.js';
import { GPT_OSS_CONFIG, gptOssLogits, writeTinyGptOss, yarn } from './gpt-oss.js';

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

test('GPT-OSS config.json: YaRN, sinks, alternating windows, biased experts', () => {
  const c = parseHfConfig(GPT_OSS_CONFIG);
  assert.equal(c.architecture, 'gpt_oss');
  assert.deepEqual(c.ropeScaling, { type: 'yarn', factor: 32, betaFast: 32, betaSlow: 1, originalMaxPositionEmbeddings: 256, truncate: false, attentionFactor: 0.1 * Math.log(32) + 1 });
  assert.deepEqual(c.slidingLayers, [true, false, true, false]);
  assert.equal(c.slidingWindow, 6);
  assert.equal(c.hiddenAct, 'swiglu-oai');
  assert.equal(c.attentionSinks, true);
  assert.ok(c.qkvBias && c.oBias);
  assert.deepEqual(c.moe, { numExperts: 4, expertsPerToken: 2, expertFfn: 32, normTopK: true, routerBias: true, expertBias: true, layers: [true, true, true, true] });
  // YaRN's bands against the test's own transcription of transformers' formula, truncated or not
  for (const truncate of [false, true]) {
    const cfg = { ...GPT_OSS_CONFIG, rope_scaling: { ...GPT_OSS_CONFIG.rope_scaling, truncate } };
    const got = ropeInverseFrequencies(parseHfConfig(cfg));
    const want = yarn(cfg).inv;
    assert.ok(maxDiff(got, want) < 1e-15, `truncate ${truncate}`);
  }
  assert.throws(() => parseHfConfig({ ...GPT_OSS_CONFIG, swiglu_limit: 8 }), (e) => e instanceof KvsieveError && /swiglu_limit/.test(e.message));
});

test('clamped SwiGLU by hand: the clamps at 7 on both inputs', () => {
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  assert.equal(swigluOai(0, 3), 0);
  assert.ok(Math.abs(swigluOai(1, 0) - sig(1.702)) < 1e-15);
  assert.ok(Math.abs(swigluOai(20, 20) - 7 * sig(1.702 * 7) * 8) < 1e-12); // gate and up both clamped to 7
  assert.ok(Math.abs(swigluOai(2, -20) - 2 * sig(3.404) * -6) < 1e-12); // up clamped to -7: (-7 + 1)
  assert.ok(Math.abs(swigluOai(-3, 1) - -3 * sig(-5.106) * 2) < 1e-12); // a negative gate is not clamped
});

for (const truncate of [false, true]) {
  test(`GPT-OSS (YaRN truncate ${truncate}): logits and greedy ids equal the float64 reference, from HF${truncate ? ' and GGUF' : ''}, on both backends, alone and batched`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const config = { ...GPT_OSS_CONFIG, rope_scaling: { ...GPT_OSS_CONFIG.rope_scaling, truncate } };
      const hf = writeTinyGptOss(join(dir, 'hf'), config);
      const files = [hf];
      // llama.cpp's YaRN always rounds the correction range outward: only that config can be written
      if (truncate) files.push(ggufFromSafetensors(join(dir, 'gpt-oss-F32.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(config) }));
      const r = rng(9);
      const prompts = [13, 4, 8].map((n) => Array.from({ length: n }, () => 3 + Math.floor(r() * 290)));
      const greedy = prompts.map((prompt) => {
        const ids = [...prompt];
        for (let i = 0; i < 8; i++) {
          const last = gptOssLogits(hf, ids).at(-1)!;
          ids.push(last.indexOf(Math.max(...last)));
        }
        return ids;
      });
      const want = gptOssLogits(hf, greedy[0]!);
      for (const file of files) {
        for (const backend of ['reference', 'wasm'] as const) {
          const model = await loadModel(file, { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) });
          try {
            const label = `${file === hf ? 'HF' : 'GGUF'} ${backend}`;
            assert.equal(model.info().architecture, 'gpt_oss');
            const worst = Math.max(...model.logits(greedy[0]!).map((row, i) => maxDiff(row, want[i]!)));
            assert.ok(worst < 1e-4, `${label}: max |logit diff| ${worst}`);
            // prompt blocks of 3: the sliding layers drop slots while the prompt is read
            const batch = await model.generateBatch(prompts, { maxTokens: 8, ignoreEos: true, prefillBlock: 3 });
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
