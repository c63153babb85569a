import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scorePredictions } from '../../src/eval/score.js';
import { KvsieveError } from '../../src/core/errors.js';
import { kvsieve, tempDir } from '../helpers.js';

const jsonl = (...rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

function withFiles(files: Record<string, string>, fn: (path: (name: string) => string) => void): void {
  const { dir, cleanup } = tempDir();
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    fn((name) => join(dir, name));
  } finally {
    cleanup();
  }
}

function throwsKv(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `not a KvsieveError: ${String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'message spans several lines');
    return true;
  });
}

const GSM8K = jsonl(
  { question: 'q1', answer: 'work\n#### 72' },
  { question: 'q2', answer: 'work\n#### 1,250' },
  { question: 'q3', answer: 'work\n#### 10' },
  { question: 'q4', answer: 'work\n#### 5' },
);

test('scorePredictions grades GSM8K completions by line-number id', () => {
  withFiles(
    {
      'data.jsonl': GSM8K,
      // id 4 has no prediction; ids may be given as strings.
      'pred.jsonl': jsonl(
        { id: 1, completion: '<think>maybe 70</think>She sold 72 clips in total.' },
        { id: '2', completion: 'Final answer: $1,250.' },
        { id: 3, completion: 'The answer is \\boxed{11}.' },
      ),
    },
    (p) => {
      const r = scorePredictions(p('data.jsonl'), 'gsm8k', p('pred.jsonl'));
      assert.deepEqual(r.items, [
        { id: 1, extracted: '72', correct: true, truth: '72', missing: false },
        { id: 2, extracted: '$1,250', correct: true, truth: '1250', missing: false },
        { id: 3, extracted: '11', correct: false, truth: '10', missing: false },
        { id: 4, extracted: null, correct: false, truth: '5', missing: true },
      ]);
      assert.equal(r.accuracy, 0.5);
      assert.equal(r.correct, 2);
      assert.equal(r.total, 4);
      assert.deepEqual(r.missing, [4]);
    },
  );
});

test('scorePredictions grades MATH-500 completions by id field', () => {
  withFiles(
    {
      'math.jsonl': jsonl(
        { id: 'a', problem: 'p', answer: '\\frac{\\sqrt{2}}{2}' },
        { id: 'b', problem: 'p', answer: '(1,2]' },
        { id: 'c', problem: 'p', answer: '\\text{(C)}' },
      ),
      'pred.jsonl': jsonl(
        { id: 'c', completion: 'Option C. Final answer: \\boxed{C}' },
        { id: 'a', completion: 'So $\\boxed{\\frac{1}{\\sqrt{2}}}$.' },
        { id: 'b', completion: 'Therefore \\boxed{[1,2]}' },
      ),
    },
    (p) => {
      const r = scorePredictions(p('math.jsonl'), 'math500', p('pred.jsonl'));
      // Items come back in dataset order whatever the prediction order.
      assert.deepEqual(
        r.items.map((i) => [i.id, i.extracted, i.correct]),
        [
          ['a', '\\frac{1}{\\sqrt{2}}', true],
          ['b', '[1,2]', false],
          ['c', 'C', true],
        ],
      );
      assert.equal(r.accuracy, 2 / 3);
      assert.deepEqual(r.missing, []);
    },
  );
});

test('scorePredictions rejects bad prediction files, naming the line', () => {
  const data = jsonl({ id: 7, problem: 'p', answer: '3' }, { id: 8, problem: 'p', answer: '4' });
  const cases: [string, RegExp][] = [
    [jsonl({ id: 7, completion: '3' }, { id: 9, completion: '4' }), /pred\.jsonl:2: id 9 is not in the dataset$/],
    [jsonl({ id: 7, completion: '3' }, '', { id: 7, completion: '4' }), /pred\.jsonl:3: second prediction for id 7 \(first on line 1\)$/],
    [jsonl({ completion: '3' }), /pred\.jsonl:1: missing field "id"$/],
    [jsonl({ id: 7 }), /pred\.jsonl:1: missing field "completion"$/],
    [jsonl({ id: 7, completion: 3 }), /pred\.jsonl:1: field "completion" must be a string/],
    [jsonl({ id: 7, completion: '3' }, 'not json'), /pred\.jsonl:2: malformed JSON/],
  ];
  for (const [pred, re] of cases) {
    withFiles({ 'data.jsonl': data, 'pred.jsonl': pred }, (p) => throwsKv(() => scorePredictions(p('data.jsonl'), 'aime', p('pred.jsonl')), re));
  }
});

test('scorePredictions rejects an empty dataset and a missing predictions file', () => {
  withFiles({ 'data.jsonl': '\n\n', 'one.jsonl': jsonl({ problem: 'p', answer: '1' }) }, (p) => {
    throwsKv(() => scorePredictions(p('data.jsonl'), 'aime', p('data.jsonl')), /data\.jsonl: dataset has no items$/);
    throwsKv(() => scorePredictions(p('one.jsonl'), 'aime', p('absent.jsonl')), /absent\.jsonl: cannot read \(ENOENT\)$/);
  });
});

const GSM = [
  { question: 'Tom has 3 apples and buys 4 more. How many apples?', answer: 'He has 3 + 4 = 7.\n#### 7' },
  { question: 'A pen costs $2. How much do 5 pens cost?', answer: '5 * 2 = 10\n#### 10' },
  { question: 'What is 1,000 + 234?', answer: '#### 1,234' },
];
const gsmText = GSM.map((x) => JSON.stringify(x)).join('\n') + '\n';

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
