// Gemma 3 (text): the engine against a float64 forward of the model's definition (test/model/gemma3.ts),
// from the Hugging Face checkpoint and from the GGUF file kvsieve writes of it. llama.cpp's verdict on
// the same GGUF is in test/formats/gguf-write.llamacpp.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { ggufFromSafetensors, rng, tempDir } from '../helpers.js';
import { GEMMA3_CONFIG, gemma3Logits, writeTinyGemma3 } from './gemma3.js';

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

test('Gemma 3 config.json: local and global layers, the norms, GELU, RoPE per layer kind, the scales', () => {
  const c = parseHfConfig(GEMMA3_CONFIG);
  assert.equal(c.architecture, 'gemma3');
  assert.deepEqual(c.slidingLayers, [true, true, true, true, true, false, true]);
  assert.equal(c.slidingWindow, 6);
  assert.equal(c.ropeLocalTheta, 10000);
  assert.equal(c.ropeLinearFactor, 8);
  assert.equal(c.hiddenAct, 'gelu-tanh');
  assert.equal(c.embedScale, Math.fround(8));
  assert.equal(c.attentionScale, 0.25);
  assert.ok(c.sandwichNorms && c.qkNorm && c.normPlusOne && !c.tieWordEmbeddings);
  assert.equal(parseHfConfig({ ...GEMMA3_CONFIG, tie_word_embeddings: undefined }).tieWordEmbeddings, true);
  assert.throws(() => parseHfConfig({ ...GEMMA3_CONFIG, final_logit_softcapping: 30 }), /"final_logit_softcapping" is set \(30\); soft-capping is not supported/);
});

test('Gemma 3: logits and greedy ids equal the float64 reference, from the HF checkpoint and from its GGUF, on both backends', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const hf = writeTinyGemma3(join(dir, 'hf'));
    const gguf = ggufFromSafetensors(join(dir, 'gemma3-F32.gguf'), join(hf, 'model.safetensors'), { config: parseHfConfig(GEMMA3_CONFIG) });
    const r = rng(5);
    const prompt = Array.from({ length: 17 }, () => 3 + Math.floor(r() * 290));
    const ids = [...prompt];
    for (let i = 0; i < 10; i++) {
      const last = gemma3Logits(hf, ids).at(-1)!;
      ids.push(last.indexOf(Math.max(...last)));
    }
    const want = gemma3Logits(hf, ids);
    for (const file of [hf, gguf]) {
      for (const backend of ['reference', 'wasm'] as const) {
        const model = await loadModel(file, { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) });
        try {
          const label = `${file === hf ? 'HF' : 'GGUF'} ${backend}`;
          assert.deepEqual(model.info().slidingWindow, { tokens: 6, layers: 6 });
          assert.equal(model.info().experts, null);
          const rows = model.logits(ids);
          const worst = Math.max(...rows.map((row, i) => maxDiff(row, want[i]!)));
          assert.ok(worst < 1e-4, `${label}: max |logit diff| ${worst}`);
          for (const prefillBlock of [3, 64]) {
            const out = await model.complete(null, { promptIds: prompt, maxTokens: 10, ignoreEos: true, prefillBlock });
            assert.deepEqual(out.generatedIds, ids.slice(prompt.length), `${label}, prefill block ${prefillBlock}`);
          }
        } finally {
          model.dispose();
        }
      }
    }
  } finally {
    cleanup();
  }
});
