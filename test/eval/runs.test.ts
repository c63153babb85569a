import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { parseDataset } from '../../src/eval/datasets.js';
import { runFidelity, summariseFidelity } from '../../src/eval/fidelity.js';
import { runMath, summariseMath, type Completer } from '../../src/eval/math.js';
import { buildNeedlePrompt, DEFAULT_NEEDLE } from '../../src/eval/needle.js';
import { readResults, ResultsFile } from '../../src/eval/records.js';
import { kvBytesPerSequence, runThroughput } from '../../src/eval/throughput.js';
import { kvsieve, stories260K, tempDir } from '../helpers.js';

const GSM = [
  { question: 'Tom has 3 apples and buys 4 more. How many apples?', answer: 'He has 3 + 4 = 7.\n#### 7' },
  { question: 'A pen costs $2. How much do 5 pens cost?', answer: '5 * 2 = 10\n#### 10' },
  { question: 'What is 1,000 + 234?', answer: '#### 1,234' },
];
const gsmText = GSM.map((x) => JSON.stringify(x)).join('\n') + '\n';

test('math scoring with scripted model outputs: extraction, grading, pass@1 over samples, resume', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const items = parseDataset(gsmText, 'gsm8k', 'gsm.jsonl');
    // Scripted completions per problem (2 samples each): some right, some wrong, one without an answer.
    const scripted: Record<string, string[]> = {
      Tom: ['<think>3+4 is 8? no, 7</think> Final answer: \\boxed{7}', 'The total is 8. Final answer: \\boxed{8}'],
      pen: ['5 pens cost $10.00. Final answer: \\boxed{\\$10}', 'so 10 dollars'],
      '1,000': ['I am not sure.', 'Final answer: \\boxed{1234}'],
    };
    let calls = 0;
    const complete: Completer = async (prompt, samples, compression) => {
      calls++;
      assert.match(prompt, /Provide the final answer in the format: Final answer: \\boxed\{\}$/);
      const key = Object.keys(scripted).find((k) => prompt.includes(k))!;
      return scripted[key]!.slice(0, samples).map((text) => ({ text, outputTokens: text.length, stopReason: 'eos', peakKvBytes: compression ? 1 : 2 }));
    };
    const results = new ResultsFile(join(dir, 'math.jsonl'));
    const o = {
      items, format: 'gsm8k' as const, dataset: 'gsm.jsonl', modelLabel: 'scripted', samples: 2,
      presses: [{ press: 'full' }, { press: 'r-kv' }], budgets: [64], settingsKey: 'x', results,
    };
    const records = await runMath(complete, o);
    assert.equal(records.length, 3 * 2 * 2);
    assert.equal(calls, 6);
    const full = summariseMath(records).find((s) => s.press === 'full')!;
    // correct: Tom s0, pen s0, pen s1 (last number 10), 1,000 s1 => 4 of 6
    assert.equal(full.accuracy, 4 / 6);
    assert.deepEqual(records.filter((r) => r.press === 'full').map((r) => r.extracted), ['7', '8', '\\$10', '10', null, '1234']);
    // A rerun finds everything recorded and asks the model nothing.
    const again = await runMath(complete, { ...o, results: new ResultsFile(join(dir, 'math.jsonl')) });
    assert.equal(again.length, 0);
    assert.equal(calls, 6);
    assert.equal(readResults(join(dir, 'math.jsonl')).length, 12);
  } finally {
    cleanup();
  }
});

test('eval math runs end to end on stories260K with a fixture dataset, resumes and reports', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'gsm.jsonl'), gsmText);
    const args = ['eval', 'math', '--dataset', join(dir, 'gsm.jsonl'), '--format', 'gsm8k', '--samples', '2', '--max-tokens', '24',
      '--presses', 'full,r-kv', '--budgets', '16', '--buffer', '8', '--results', join(dir, 'r.jsonl')];
    const first = kvsieve(args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /12 new records/);
    const recs = readResults(join(dir, 'r.jsonl'));
    assert.equal(recs.length, 12);
    for (const r of recs) {
      assert.equal(r.kind, 'math');
      if (r.kind !== 'math') continue;
      assert.ok(r.outputTokens > 0 && r.outputTokens <= 24);
      if (r.press === 'r-kv') assert.ok(r.peakKvBytes <= (16 + 8) * 5 * 4 * 8 * 2 * 4);
    }
    const second = kvsieve(args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /0 new records/);
    assert.equal(readResults(join(dir, 'r.jsonl')).length, 12);
  } finally {
    cleanup();
  }
});

test('eval score grades predictions from elsewhere (--json)', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'gsm.jsonl'), gsmText);
    writeFileSync(join(dir, 'pred.jsonl'), [
      { id: 1, completion: 'Final answer: \\boxed{7}' }, { id: 3, completion: 'it is 1234' },
    ].map((x) => JSON.stringify(x)).join('\n'));
    const r = kvsieve(['eval', 'score', '--dataset', join(dir, 'gsm.jsonl'), '--format', 'gsm8k', '--predictions', join(dir, 'pred.jsonl'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.accuracy, 2 / 3);
    assert.deepEqual(out.items.map((i: { correct: boolean }) => i.correct), [true, false, true]);
    writeFileSync(join(dir, 'bad.jsonl'), '{"id": 9, "completion": "x"}\n');
    const bad = kvsieve(['eval', 'score', '--dataset', join(dir, 'gsm.jsonl'), '--format', 'gsm8k', '--predictions', join(dir, 'bad.jsonl')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /bad\.jsonl:1/);
  } finally {
    cleanup();
  }
});

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

test('needle prompts place the needle at the asked depth; throughput fits the batch to the KV memory', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const tok = model.tokenizer!;
    for (const depth of [0, 0.5, 1]) {
      const ids = buildNeedlePrompt(model, DEFAULT_NEEDLE, 200, depth);
      assert.ok(ids.length <= 200 && ids.length > 150, `length ${ids.length}`);
      const text = tok.decode(ids);
      const at = text.indexOf(DEFAULT_NEEDLE.needle) / text.indexOf(DEFAULT_NEEDLE.question);
      assert.ok(Math.abs(at - depth) < 0.1, `depth ${depth}: needle at ${at.toFixed(2)}`);
      assert.ok(text.endsWith(DEFAULT_NEEDLE.question));
    }
    const settings = { press: 'r-kv', budget: 32, buffer: 16 };
    const perSeq = kvBytesPerSequence(model, settings, 5, 100);
    assert.equal(perSeq, 5 * (32 + 16) * 4 * 8 * 2 * 4);
    const fullPerSeq = kvBytesPerSequence(model, null, 5, 100);
    assert.equal(fullPerSeq, 105 * 5 * 4 * 8 * 2 * 4);
    // Under a pool that holds three full-cache sequences, six requests: the full cache runs three at a
    // time (its blocks of 128 tokens: 105 tokens fit one), r-kv all six at once.
    const limit = 3 * 128 * 5 * 4 * 8 * 2 * 4;
    const pooled = await loadModel(stories260K('stories260K.bin'), { kvMemory: limit });
    try {
      const run = (s: typeof settings | null) => runThroughput(pooled, { settings: s, genLen: 100, requests: 6, promptIds: [1, 403, 407, 261, 378], modelLabel: 's' });
      const full = await run(null);
      const rkv = await run(settings);
      assert.equal(full.batch, 3);
      assert.equal(rkv.batch, 6);
      for (const r of [full, rkv]) {
        assert.equal(r.requests, 6);
        assert.equal(r.kvMemoryBytes, limit);
        assert.ok(r.peakKvBytes <= limit && r.tokensPerSecond > 0 && r.seconds > 0);
      }
    } finally {
      pooled.dispose();
    }
  } finally {
    model.dispose();
  }
});
