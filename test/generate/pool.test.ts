// The KV memory pool: admission in arrival order, growth in blocks, preemption with recompute.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type GenerateOptions } from '../../src/api.js';
import { parseBytes } from '../../src/core/bytes.js';
import type { KvPoolStats } from '../../src/generate/pool.js';
import { rng, stories260K } from '../helpers.js';

/** stories260K: 5 layers x 4 KV heads x head dim 8, f32 K and V: 1280 bytes per token. */
const TOKEN_BYTES = 5 * 4 * 8 * 2 * 4;

test('memory sizes: bytes, binary and decimal units', () => {
  assert.equal(parseBytes('65536'), 65536);
  assert.equal(parseBytes('2GiB'), 2 * 2 ** 30);
  assert.equal(parseBytes('64M'), 64 * 2 ** 20);
  assert.equal(parseBytes('1.5 KB'), 1500);
  assert.equal(parseBytes('1e9'), 1e9);
  for (const bad of ['', 'lots', '-1', '0', '2 GiBs']) assert.equal(parseBytes(bad), null, bad);
});

for (const backend of ['reference', 'wasm'] as const) {
  test(`${backend}: under a small pool, random arrivals finish with exactly their solo tokens; reservations never pass the limit`, async () => {
    const r = rng(backend === 'wasm' ? 7 : 11);
    // Room for about four full-cache sequences of 150 tokens: the growing ones must take turns.
    const limit = 600 * TOKEN_BYTES;
    const steps: KvPoolStats[] = [];
    const load = (kvMemory?: number) =>
      loadModel(stories260K('stories260K.bin'), {
        backend,
        ...(backend === 'wasm' ? { weights: 'q8_0' as const } : {}),
        ...(kvMemory ? { kvMemory, kvBlockTokens: 32, onStep: (s: KvPoolStats) => steps.push(s) } : {}),
      });
    const pooled = await load(limit);
    const solo = await load();
    try {
      const prompts = ['Once upon a time', 'Tom had a red ball', 'The little cat', 'One day', 'Lily and Ben', 'The sun was hot'];
      const jobs: { prompt: string; options: GenerateOptions }[] = Array.from({ length: 14 }, (_, i) => {
        const compressed = r() < 0.35;
        return {
          prompt: prompts[i % prompts.length]!,
          options: {
            maxTokens: 40 + Math.floor(r() * 200),
            ignoreEos: true,
            ...(compressed ? { compression: { press: r() < 0.5 ? 'r-kv' : 'snapkv', budget: 32, buffer: 16 } } : {}),
          },
        };
      });
      // Arrivals: some at once, the rest while the batch runs.
      const results = await Promise.all(
        jobs.map(async (j, i) => {
          if (i >= 5) await new Promise((res) => setTimeout(res, Math.floor(r() * 60)));
          return pooled.complete(j.prompt, j.options);
        }),
      );
      for (const [i, j] of jobs.entries()) {
        const alone = await solo.complete(j.prompt, j.options);
        assert.deepEqual(results[i]!.generatedIds, alone.generatedIds, `${backend} job ${i} (${results[i]!.preemptions} preemptions)`);
        assert.equal(results[i]!.stopReason, 'max-tokens');
      }
      assert.ok(steps.length > 100);
      for (const s of steps) {
        assert.ok(s.reservedBytes <= limit, `reserved ${s.reservedBytes} > ${limit}`);
        assert.ok(s.allocatedBytes <= s.reservedBytes, `allocated ${s.allocatedBytes} > reserved ${s.reservedBytes}`);
        assert.ok(s.usedBytes <= s.allocatedBytes);
      }
      const preemptions = results.reduce((a, x) => a + x.preemptions, 0);
      console.log(`${backend}: ${steps.length} steps, ${preemptions} preemptions, most waiting ${Math.max(...steps.map((s) => s.waiting))}, most running ${Math.max(...steps.map((s) => s.running))}`);
      assert.ok(preemptions > 0, 'the pool was tight enough to preempt');
      assert.equal(steps.at(-1)!.preemptions, preemptions);
      assert.ok(Math.max(...steps.map((s) => s.waiting)) > 0, 'sequences waited for room');
      assert.ok(Math.max(...steps.map((s) => s.running)) >= 3, 'several ran together');
      assert.deepEqual([pooled.kvStats().running, pooled.kvStats().waiting, pooled.kvStats().reservedBytes], [0, 0, 0]);
    } finally {
      pooled.dispose();
      solo.dispose();
    }
  });
}

test('a sequence that cannot start in the pool is refused by name; one that outgrows it alone ends with kv-memory', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { backend: 'reference', kvMemory: 64 * TOKEN_BYTES, kvBlockTokens: 16 });
  try {
    const compressed = { press: 'r-kv', budget: 64, buffer: 32 };
    assert.throws(() => model.generate('Once upon a time', { compression: compressed }), /kvMemory: the sequence needs 122880 bytes of KV cache for its budget \+ buffer in every layer, the pool holds 81920/);
    await assert.rejects(model.generateBatch(['x', 'y'], { compression: compressed }), /kvMemory/);
    const r = await model.complete('Once upon a time', { maxTokens: 200, ignoreEos: true });
    assert.equal(r.stopReason, 'kv-memory');
    assert.equal(r.promptTokens + r.generatedTokens, 64 + 1, 'it stops when the 64 slots the pool holds are full');
    assert.ok(r.peakKvAllocatedBytes <= 64 * TOKEN_BYTES);
  } finally {
    model.dispose();
  }
});
