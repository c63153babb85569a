import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel } from '../../src/api.js';
import { TINY_MODELS, tinyModel } from '../helpers.js';

interface Expected {
  prompt_ids: number[];
  logits: number[][];
  greedy_ids: number[];
  layer0_last_key: number[][];
  layer0_last_value: number[][];
}

// Tolerances from the fixtures' README: F32 1e-4; F16/BF16 1e-3 (reference computed from the stored weights).
const tolerance = (name: string) => (name.endsWith('F32') ? 1e-4 : 1e-3);

/** The oracle backend, and the fast one with unquantised weights: both must meet the references. */
const BACKENDS = [
  { label: 'reference', options: { backend: 'reference' as const } },
  { label: 'wasm f32', options: { backend: 'wasm' as const, weights: 'f32' as const } },
];

for (const name of TINY_MODELS) for (const { label, options } of BACKENDS) {
  test(`${name} (${label}): logits at every position and greedy ids match the independent reference`, async () => {
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as Expected;
    const model = await loadModel(tinyModel(name), options);
    try {
      const rows = model.logits(expected.prompt_ids);
      assert.equal(rows.length, expected.logits.length);
      let worst = 0;
      rows.forEach((row, i) => {
        const want = expected.logits[i]!;
        assert.equal(row.length, want.length);
        for (let j = 0; j < want.length; j++) worst = Math.max(worst, Math.abs(row[j]! - want[j]!));
      });
      assert.ok(worst < tolerance(name), `max |logit diff| ${worst} over tolerance ${tolerance(name)}`);

      const result = await model.complete(null, {
        promptIds: expected.prompt_ids,
        maxTokens: expected.greedy_ids.length,
        ignoreEos: true,
      });
      assert.deepEqual(result.generatedIds, expected.greedy_ids);
    } finally {
      model.dispose();
    }
  });
}
