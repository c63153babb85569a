import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDataset } from '../../src/eval/datasets.js';
import { runMath, summariseMath, type Completer } from '../../src/eval/math.js';
import { readResults, ResultsFile } from '../../src/eval/records.js';
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
