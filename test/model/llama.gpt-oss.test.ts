// GPT-OSS: attention sinks, YaRN RoPE, alternating sliding layers, biased router and experts, the
// clamped SwiGLU. The engine against a float64 forward of the model's definition
// (test/model/gpt-oss.ts), from the Hugging Face checkpoint (experts interleaved as transformers stores
// them) and from the GGUF kvsieve writes of it (experts stacked as llama.cpp's), on both CPU backends,
// alone and batched. llama.cpp's verdict on the same GGUF is in test/formats/gguf-write.llamacpp.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { swigluOai } from '../../src/core/activations.js';
import { KvsieveError } from '../../src/core/errors.js';
import type { GgufValue } from '../../src/formats/gguf-format.js';
import { withStackedExperts } from '../../src/formats/gpt-oss.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { ropeInverseFrequencies } from '../../src/model/rope.js';
import { ggufFromSafetensors, rng, tempDir } from '../helpers.js';
import { GPT_OSS_CONFIG, gptOssLogits, writeTinyGptOss, writeTinyGptOssMxfp4, yarn } from './gpt-oss.js';

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

test("GPT-OSS as OpenAI publishes it (MXFP4 experts, *_blocks / *_scales): the same logits as its experts decoded to floats, and the float64 reference's", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = writeTinyGptOss(join(dir, 'base'));
    const [mx, fl] = [join(dir, 'mxfp4'), join(dir, 'float')];
    writeTinyGptOssMxfp4(base, mx, fl);
    const ids = Array.from({ length: 14 }, (_, i) => 3 + ((i * 37) % 290));
    const want = gptOssLogits(fl, ids);
    for (const backend of ['reference', 'wasm'] as const) {
      const options = { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) };
      const [a, b] = [await loadModel(mx, options), await loadModel(fl, options)];
      try {
        const [la, lb] = [a.logits(ids), b.logits(ids)];
        la.forEach((row, i) => assert.deepEqual(Array.from(row), Array.from(lb[i]!), `${backend}: MXFP4 and float checkpoints, token ${i}`));
        const worst = Math.max(...la.map((row, i) => maxDiff(row, want[i]!)));
        assert.ok(worst < 1e-4, `${backend}: max |logit diff| ${worst}`);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
    // Under the default (quantised) weights the wasm backend keeps the experts' MXFP4 blocks as stored:
    // 17 bytes per 32 weights where the float twin's experts become q8_0's 34.
    const [stored, converted] = [await loadModel(mx, { backend: 'wasm' }), await loadModel(fl, { backend: 'wasm' })];
    try {
      const c = GPT_OSS_CONFIG;
      const expertWeights = c.num_hidden_layers * 3 * c.num_local_experts * c.intermediate_size * c.hidden_size;
      assert.equal(converted.info().weightBytes - stored.info().weightBytes, (expertWeights / 32) * (34 - 17));
      // its products round their inputs to 8 bits per 32 values: the argmax stays the reference's
      const rows = stored.logits(ids);
      const same = rows.filter((row, i) => row.indexOf(Math.max(...row)) === want[i]!.indexOf(Math.max(...want[i]!))).length;
      assert.ok(same >= 12, `MXFP4 as stored: the reference's argmax at ${same} of ${ids.length} tokens`);
    } finally {
      stored.dispose();
      converted.dispose();
    }
  } finally {
    cleanup();
  }
});

test('MXFP4 experts: one block by hand, as floats and as ggml blocks; bad shapes named', () => {
  // block of one row, 32 weights: scale 128 (x2); byte 0 = 0x9 | 0x7 << 4 -> weights 0: -0.5 * 2, 1: 6 * 2
  const codes = new Uint8Array(16);
  codes[0] = 0x79;
  codes[15] = 0x1f; // weights 30: code 15 = -6, 31: code 1 = 0.5
  // experts [E 1, F 32, D 32]: gate_up rows 0 and 1 (gate 0, up 0) hold the codes, the others zeros
  const gateUpScales = new Uint8Array(64).fill(127);
  gateUpScales.set([128, 126]);
  const tensors = new Map<string, { shape: number[]; bytes: Uint8Array }>([
    ['model.layers.0.mlp.experts.gate_up_proj_blocks', { shape: [1, 64, 1, 16], bytes: Uint8Array.from([...codes, ...codes, ...new Uint8Array(62 * 16)]) }],
    ['model.layers.0.mlp.experts.gate_up_proj_scales', { shape: [1, 64, 1], bytes: gateUpScales }],
    ['model.layers.0.mlp.experts.down_proj_blocks', { shape: [1, 32, 1, 16], bytes: new Uint8Array(32 * 16) }],
    ['model.layers.0.mlp.experts.down_proj_scales', { shape: [1, 32, 1], bytes: new Uint8Array(32).fill(127) }],
  ]);
  const src = {
    list: () => [...tensors].map(([name, t]) => ({ name, dtype: 'U8' as const, shape: t.shape, file: 'hand' })),
    has: (n: string) => tensors.has(n),
    info: (n: string) => ({ name: n, dtype: 'U8' as const, shape: tensors.get(n)!.shape, file: 'hand' }),
    readF32: (n: string) => Float32Array.from(tensors.get(n)!.bytes),
    close: () => {},
  };
  const stacked = withStackedExperts(src);
  const gate = stacked.readF32('model.layers.0.mlp.experts.gate_proj.weight').subarray(0, 32); // row 0 of gate_up: scale 2
  const up = stacked.readF32('model.layers.0.mlp.experts.up_proj.weight').subarray(0, 32); // row 1: scale 1/2
  assert.deepEqual(stacked.info('model.layers.0.mlp.experts.gate_proj.weight').shape, [1, 32, 32]);
  const row = (s: number) => Array.from({ length: 32 }, (_, i) => (i === 0 ? -0.5 * s : i === 1 ? 6 * s : i === 30 ? -6 * s : i === 31 ? 0.5 * s : 0));
  assert.deepEqual(Array.from(gate), row(2));
  assert.deepEqual(Array.from(up), row(0.5));
  assert.equal(stacked.storedType!('model.layers.0.mlp.experts.gate_proj.weight'), 'MXFP4');
  // ggml: the scale byte, then byte j = weight j (low nibble) | weight j + 16 (high nibble)
  const ggml = stacked.readStored!('model.layers.0.mlp.experts.gate_proj.weight').subarray(0, 17);
  const want = new Uint8Array(17);
  want[0] = 128;
  want[1] = 0x9; // weight 0: code 9, weight 16: 0
  want[2] = 0x7; // weight 1: code 7, weight 17: 0
  want[15] = 0xf0; // weight 14: 0, weight 30: code 15
  want[16] = 0x10; // weight 15: 0, weight 31: code 1
  assert.deepEqual(Array.from(ggml), Array.from(want));
  tensors.set('model.layers.0.mlp.experts.down_proj_scales', { shape: [1, 31, 1], bytes: new Uint8Array(31) });
  assert.throws(() => withStackedExperts(src), (e) => e instanceof KvsieveError && /down_proj_blocks.*down_proj_scales.*not MXFP4 blocks/.test(e.message));
});

test('GPT-OSS GGUF: every other layer slides unless attention.sliding_window_pattern says otherwise (per layer, or a period)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const hf = writeTinyGptOss(join(dir, 'hf'), { ...GPT_OSS_CONFIG, rope_scaling: { ...GPT_OSS_CONFIG.rope_scaling, truncate: true } });
    const config = parseHfConfig(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')));
    const cases: [string, GgufValue | null, boolean[] | string][] = [
      ['default', null, [true, false, true, false]],
      ['flags', { type: 'ARRAY', elementType: 'BOOL', value: [false, true, true, false] }, [false, true, true, false]],
      ['period 3', { type: 'UINT32', value: 3 }, [true, true, false, true]],
      ['too few flags', { type: 'ARRAY', elementType: 'BOOL', value: [true, false] }, 'must be 4 booleans'],
    ];
    for (const [label, value, want] of cases) {
      const file = ggufFromSafetensors(join(dir, `${label}.gguf`), join(hf, 'model.safetensors'), {
        config,
        ...(value ? { metadata: { 'gpt-oss.attention.sliding_window_pattern': value } } : {}),
      });
      if (typeof want === 'string') {
        await assert.rejects(loadModel(file, { backend: 'reference' }), (e) => e instanceof KvsieveError && e.message.includes('sliding_window_pattern') && e.message.includes(want));
        continue;
      }
      const model = await loadModel(file, { backend: 'reference' });
      assert.deepEqual(model.config.slidingLayers, want, label);
      model.dispose();
    }
  } finally {
    cleanup();
  }
});
