import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildMathPrompt, loadDataset, MATH_PROMPT_TEMPLATE, parseDataset } from '../../src/eval/datasets.js';
import { KvsieveError } from '../../src/core/errors.js';
import { tempDir } from '../helpers.js';

const jsonl = (...rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

/** Asserts a one-line KvsieveError whose message matches `re`. */
function throwsKv(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `not a KvsieveError: ${String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'message spans several lines');
    return true;
  });
}

test('loadDataset reads GSM8K with line-number ids', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'gsm8k.jsonl');
    writeFileSync(
      file,
      jsonl(
        { question: 'Natalia sold clips to 48 friends...', answer: 'She sold 48+24 = <<48+24=72>>72 clips.\n#### 72' },
        '',
        { question: 'A farm has 1,000 cows...', answer: 'Total 1,250\n#### 1,250' },
      ),
    );
    const items = loadDataset(file, 'gsm8k');
    assert.equal(items.length, 2);
    assert.deepEqual(
      items.map((i) => [i.id, i.answer, i.line]),
      [
        [1, '72', 1],
        [3, '1250', 3],
      ],
    );
    assert.equal(items[0]!.problem, 'Natalia sold clips to 48 friends...');
    assert.match(items[1]!.solution ?? '', /#### 1,250$/);
  } finally {
    cleanup();
  }
});

test('parseDataset reads MATH-500 and AIME layouts with id fields', () => {
  const math = parseDataset(
    jsonl(
      { id: 'test/algebra/1.json', problem: 'Solve $x+1=2$.', answer: '1', subject: 'Algebra', level: 1 },
      { id: 'test/geometry/9.json', problem: 'Find the area.', answer: '\\frac{\\sqrt{3}}{4}' },
    ),
    'math500',
    'math.jsonl',
  );
  assert.deepEqual(
    math.map((i) => [i.id, i.answer]),
    [
      ['test/algebra/1.json', '1'],
      ['test/geometry/9.json', '\\frac{\\sqrt{3}}{4}'],
    ],
  );
  // AIME answers are often JSON numbers.
  const aime = parseDataset(jsonl({ id: 60, problem: 'Every morning Aya...', answer: 204 }, { problem: 'Let p be...', answer: '033' }), 'aime', 'aime.jsonl');
  assert.deepEqual(
    aime.map((i) => [i.id, i.answer]),
    [
      [60, '204'],
      [2, '033'],
    ],
  );
});

test('parseDataset accepts CRLF line endings', () => {
  const items = parseDataset('{"problem":"p1","answer":"1"}\r\n{"problem":"p2","answer":"2"}\r\n', 'math500', 'crlf.jsonl');
  assert.deepEqual(
    items.map((i) => [i.id, i.answer]),
    [
      [1, '1'],
      [2, '2'],
    ],
  );
});

test('dataset errors name the file and line', () => {
  throwsKv(() => parseDataset(jsonl({ problem: 'p', answer: '1' }, '{"problem": "p", "answer": '), 'math500', 'm.jsonl'), /^m\.jsonl:2: malformed JSON/);
  throwsKv(() => parseDataset(jsonl({ problem: 'p', answer: '1' }, '[1,2]'), 'math500', 'm.jsonl'), /^m\.jsonl:2: expected a JSON object/);
  throwsKv(() => parseDataset(jsonl({ problem: 'p' }), 'math500', 'm.jsonl'), /^m\.jsonl:1: missing field "answer"/);
  throwsKv(() => parseDataset(jsonl({ question: 'q', answer: '1' }), 'aime', 'a.jsonl'), /^a\.jsonl:1: missing field "problem"/);
  throwsKv(() => parseDataset(jsonl({ problem: 'q', answer: ['1'] }), 'aime', 'a.jsonl'), /^a\.jsonl:1: field "answer" must be a string or number/);
  throwsKv(() => parseDataset(jsonl({ problem: 'q', answer: '  ' }), 'aime', 'a.jsonl'), /^a\.jsonl:1: field "answer" is empty/);
  throwsKv(() => parseDataset(jsonl({ question: 'q', answer: 'no marker 5' }), 'gsm8k', 'g.jsonl'), /^g\.jsonl:1: field "answer" has no '####'/);
  throwsKv(() => parseDataset(jsonl({ problem: 'q', answer: 5 }), 'gsm8k', 'g.jsonl'), /^g\.jsonl:1: missing field "question"/);
  throwsKv(() => parseDataset(jsonl({ question: 'q', answer: 72 }), 'gsm8k', 'g.jsonl'), /^g\.jsonl:1: field "answer" must be a string,/);
  throwsKv(() => parseDataset(jsonl({ id: 1.5, problem: 'q', answer: '1' }), 'aime', 'a.jsonl'), /^a\.jsonl:1: field "id" must be a string or integer/);
  throwsKv(
    () => parseDataset(jsonl({ id: 'x', problem: 'q', answer: '1' }, { id: 'y', problem: 'q', answer: '1' }, { id: 'x', problem: 'q', answer: '2' }), 'aime', 'a.jsonl'),
    /^a\.jsonl:3: duplicate id "x" \(first on line 1\)/,
  );
  throwsKv(() => loadDataset('/nonexistent/kvsieve/data.jsonl', 'aime'), /^\/nonexistent\/kvsieve\/data\.jsonl: cannot read dataset \(ENOENT\)/);
});

test('buildMathPrompt wraps the problem in the R-KV evaluation prompt', () => {
  const problem = 'If $f(x) = \\frac{3x-2}{x-2}$, what is $f(-2)$? Note: $& and $$ stay as written.';
  const prompt = buildMathPrompt(problem);
  assert.ok(prompt.endsWith('Provide the final answer in the format: Final answer: \\boxed{}'));
  assert.ok(prompt.includes(`Problem: ${problem}\n`), 'problem text is inserted literally');
  assert.ok(!prompt.includes('{problem}'));
  assert.equal(prompt, MATH_PROMPT_TEMPLATE.split('{problem}').join(problem));
  assert.equal(MATH_PROMPT_TEMPLATE.split('{problem}').length, 2, 'the template has exactly one placeholder');
});
