// The webgpu backend through the library and the CLI: what it refuses for now (one line naming the
// option), and `kvsieve generate --backend webgpu` reproducing run.c's story.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../../src/api.js';
import { KvsieveError } from '../../../src/core/errors.js';
import { kvsieve, stories260K, storiesGoldens, tempDir } from '../../helpers.js';
import { writeTinyGemma3 } from '../../model/gemma3.js';
import { writeTinyQwen3Moe } from '../../model/qwen3-moe.js';
import { writeTinyGptOss } from '../../model/gpt-oss.js';
import { withGpu } from './gpu.js';

const names = (option: string) => (e: unknown) => e instanceof KvsieveError && e.option === option && !e.message.includes('\n');

test('webgpu: bf16 and stored weights, an int8 KV cache (compressed or not) and the synchronous logits are refused with the option named', async (t) => {
  if (!(await withGpu(t))) return;
  // q8_0 and q4_0 run on the GPU (quant.test.ts); bf16 and 'stored' (K-quants as stored) do not
  for (const weights of ['bf16', 'stored'] as const) {
    await assert.rejects(loadModel(stories260K('stories260K.bin'), { backend: 'webgpu', weights }), (e: unknown) => names('weights')(e) && (e as Error).message.includes(`weights ${weights} is not available on the webgpu backend`));
  }
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'webgpu' });
  try {
    // compression and an f16 cache run (press.test.ts, kv-f16.test.ts); an int8 cache does not, with or without compression
    assert.throws(() => model.generate('Once', { kvDtype: 'int8' }), (e: unknown) => names('kvDtype')(e) && (e as Error).message.includes('kvDtype int8 is not available on the webgpu backend'));
    assert.throws(() => model.generate('Once', { kvDtype: 'int8', compression: { press: 'snapkv', budget: 16 } }), names('kvDtype'));
    assert.throws(() => model.logits([1, 2]), names('backend'));
    // nothing was left half-done: the model still generates
    const r = await model.complete('Once upon a time', { maxTokens: 3 });
    assert.equal(r.generatedIds.length, 3);
  } finally {
    model.dispose();
  }
});

test('kvsieve generate --backend webgpu: the greedy story of run.c', async (t) => {
  if (!(await withGpu(t))) return;
  const golden = storiesGoldens().find((g) => g.prompt === 'Once upon a time')!;
  const r = kvsieve(['generate', '--backend', 'webgpu', '--json', '--max-tokens', '20', 'Once upon a time']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { promptIds: number[]; generatedIds: number[] };
  assert.deepEqual([...out.promptIds, ...out.generatedIds], golden.ids.slice(0, out.promptIds.length + 20));
});

test('webgpu: models with features the GPU forward lacks yet (Gemma 3, mixture of experts, GPT-OSS) are refused at load', async (t) => {
  if (!(await withGpu(t))) return;
  const dir = tempDir();
  try {
    const gemma = writeTinyGemma3(`${dir.dir}/gemma`);
    await assert.rejects(loadModel(gemma, { backend: 'webgpu' }), (e: unknown) => names('backend')(e) && /sliding-window layers, the gelu-tanh gate, Gemma features .* are not on the GPU yet/.test((e as Error).message));
    const moe = writeTinyQwen3Moe(`${dir.dir}/moe`);
    await assert.rejects(loadModel(moe, { backend: 'webgpu' }), (e: unknown) => names('backend')(e) && /mixture of experts is not on the GPU yet/.test((e as Error).message));
    const gptOss = writeTinyGptOss(`${dir.dir}/gpt-oss`);
    await assert.rejects(loadModel(gptOss, { backend: 'webgpu' }), (e: unknown) => names('backend')(e) && /the swiglu-oai gate, attention sinks, YaRN RoPE .*not on the GPU yet/.test((e as Error).message));
  } finally {
    dir.cleanup();
  }
});
