import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { runFidelity, summariseFidelity } from '../../src/eval/fidelity.js';
import { readResults, ResultsFile } from '../../src/eval/records.js';
import { stories260K, tempDir } from '../helpers.js';

test('fidelity on stories260K: the full-cache row agrees perfectly; compressed rows are measured and resumable', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  const { dir, cleanup } = tempDir();
  try {
    const results = new ResultsFile(join(dir, 'f.jsonl'));
    const presses = [{ press: 'r-kv', buffer: 16 }, { press: 'streaming-llm', buffer: 16 }];
    const o = { prompts: ['Once upon a time', 'Tom and Sue'], presses, budgets: [24, 1000], maxTokens: 120, modelLabel: 's', results };
    const records = await runFidelity(model, o);
    assert.equal(records.length, 2 * (1 + 2 * 2));
    const rows = summariseFidelity(records);
    const full = rows.find((r) => r.press === 'full')!;
    assert.deepEqual([full.identical, full.firstDivergence, full.meanKl, full.maxKl], [1, 120, 0, 0]);
    // A budget larger than the run never evicts: identical to the full cache, zero KL, same perplexity.
    for (const p of ['r-kv', 'streaming-llm']) {
      const big = rows.find((r) => r.press === p && r.budget === 1000)!;
      assert.deepEqual([big.identical, big.meanKl], [1, 0], p);
      assert.ok(Math.abs(big.perplexity - full.perplexity) < 1e-9);
      const small = rows.find((r) => r.press === p && r.budget === 24)!;
      assert.ok(small.meanKl > 0 && small.identical < 1, `${p} at 24 evicts and changes something`);
      assert.ok(small.peakKvBytes <= (24 + 16) * 5 * 4 * 8 * 2 * 4);
      assert.ok(small.perplexity >= 1);
    }
    // Perplexity of the full run is that of its own greedy tokens: above 1, and small for greedy text.
    assert.ok(full.perplexity > 1 && full.perplexity < 3, `full ppl ${full.perplexity}`);
    const again = await runFidelity(model, { ...o, results: new ResultsFile(join(dir, 'f.jsonl')) });
    assert.equal(again.length, 0);
  } finally {
    model.dispose();
    cleanup();
  }
});
