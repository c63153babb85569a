import { test } from 'node:test';
import assert from 'node:assert/strict';
import { answersEqual, extractAnswer, gsm8kTruth, parseAnswerFormat } from '../../src/eval/answer.js';
import { KvsieveError } from '../../src/core/errors.js';
import { EQUIVALENCE_PAIRS, EXTRACTION_CASES } from './answer-pairs.js';

test('the grading table is large and balanced', () => {
  const total = EQUIVALENCE_PAIRS.length + EXTRACTION_CASES.length;
  assert.ok(total >= 100, `only ${total} pairs`);
  assert.ok(EQUIVALENCE_PAIRS.filter((p) => p.equal).length >= 40);
  assert.ok(EQUIVALENCE_PAIRS.filter((p) => !p.equal).length >= 40);
});

test('answersEqual matches the grading table, in both directions', () => {
  const failures: string[] = [];
  for (const p of EQUIVALENCE_PAIRS) {
    const forward = answersEqual(p.prediction, p.truth);
    if (forward !== p.equal) failures.push(`${JSON.stringify(p.prediction)} vs ${JSON.stringify(p.truth)}: got ${forward}`);
    if (!p.asymmetric) {
      const backward = answersEqual(p.truth, p.prediction);
      if (backward !== p.equal) failures.push(`(swapped) ${JSON.stringify(p.truth)} vs ${JSON.stringify(p.prediction)}: got ${backward}`);
    }
  }
  assert.deepEqual(failures, []);
});

test('extractAnswer and grading match the extraction cases', () => {
  const failures: string[] = [];
  for (const c of EXTRACTION_CASES) {
    const got = extractAnswer(c.completion, c.format);
    if (got !== c.extracted) failures.push(`${c.note}: extracted ${JSON.stringify(got)}, want ${JSON.stringify(c.extracted)}`);
    const correct = answersEqual(got, c.truth);
    if (correct !== c.correct) failures.push(`${c.note}: graded ${correct}, want ${c.correct}`);
  }
  assert.deepEqual(failures, []);
});

test('extractAnswer: boxed forms', () => {
  assert.equal(extractAnswer('\\boxed{a{b{c}}d}', 'math500'), 'a{b{c}}d');
  assert.equal(extractAnswer('x \\boxed{1} y \\fbox{2} z', 'math500'), '2');
  assert.equal(extractAnswer('\\boxed  {7}', 'math500'), '7');
  assert.equal(extractAnswer('\\boxed 42,', 'aime'), '42');
  // \boxedfoo is not a box; with no other answer, math500 finds nothing.
  assert.equal(extractAnswer('\\boxedfoo', 'math500'), null);
  assert.equal(extractAnswer('only an open box \\boxed{3', 'math500'), null);
});

test('extractAnswer: final-answer phrasing', () => {
  assert.equal(extractAnswer('Final answer: 42.', 'aime'), '42');
  assert.equal(extractAnswer('final answer:   $\\frac{3}{4}$ .', 'math500'), '\\frac{3}{4}');
  assert.equal(extractAnswer('Final answer: 1\nmore words\nFinal answer: 2', 'math500'), '2');
  assert.equal(extractAnswer('The final answer is $17$.', 'aime'), '17');
  // "final answer" without ':' or 'is' is prose, not an answer marker.
  assert.equal(extractAnswer('Before the final answer, check 3 cases.', 'math500'), null);
  // The marker with nothing after it falls through to the last number for gsm8k.
  assert.equal(extractAnswer('So 3 + 4 = 7. Final answer:', 'gsm8k'), '7');
});

test('extractAnswer: gsm8k last number', () => {
  assert.equal(extractAnswer('He pays $1,200 in rent and -3.5 degrees outside', 'gsm8k'), '-3.5');
  assert.equal(extractAnswer('Total: 12,345 items.', 'gsm8k'), '12345');
  assert.equal(extractAnswer('no digits here', 'gsm8k'), null);
});

test('extractAnswer: </think> preference', () => {
  const text = '<think>\\boxed{1}</think> answer: \\boxed{2}';
  assert.equal(extractAnswer(text, 'math500'), '2');
  // The last </think> is the one that ends the reasoning.
  assert.equal(extractAnswer('<think>a</think> \\boxed{5} <think>b</think> \\boxed{6}', 'math500'), '6');
  // After </think> only prose: gsm8k takes its last number, math500 falls back to the box inside.
  assert.equal(extractAnswer('<think>\\boxed{10}</think> I think 11 is right', 'gsm8k'), '11');
  assert.equal(extractAnswer('<think>\\boxed{10}</think> I think 11 is right', 'math500'), '10');
});

test('gsm8kTruth takes the text after #### without commas', () => {
  assert.equal(gsm8kTruth('Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72'), '72');
  assert.equal(gsm8kTruth('... #### 1,234,000'), '1234000');
  assert.equal(gsm8kTruth('#### -5'), '-5');
  assert.throws(() => gsm8kTruth('The answer is 72'), (e: unknown) => e instanceof KvsieveError && /####/.test(e.message));
});

test('answersEqual: null and empty predictions are wrong', () => {
  assert.equal(answersEqual(null, '5'), false);
  assert.equal(answersEqual('', ''), false);
  assert.equal(answersEqual('   ', '5'), false);
});

test('answersEqual: determinism and scope isolation across calls', () => {
  // Parsing a_{n+1} declares `a` as a list inside the engine; that must not leak into later calls.
  answersEqual('a_{n+1}', 'a_{1+n}');
  assert.equal(answersEqual('a_1+1', '1+a_1'), true);
  assert.equal(answersEqual('\\frac{a}{b}+c', 'c+\\frac{a}{b}'), true);
  assert.equal(answersEqual('\\frac{a}{b}+c', 'c+\\frac{b}{a}'), false);
  for (let k = 0; k < 3; k++) {
    assert.equal(answersEqual('2\\sqrt{3}', '\\sqrt{12}'), true);
    assert.equal(answersEqual('0.33', '\\frac{1}{3}'), false);
  }
});

test('answersEqual: huge inputs are not evaluated', () => {
  const start = Date.now();
  assert.equal(answersEqual('123456!', '123457!'), false);
  assert.equal(answersEqual('x'.repeat(2000), 'y'.repeat(2000)), false);
  assert.ok(Date.now() - start < 2000);
});

test('parseAnswerFormat names the flag on a bad value', () => {
  assert.equal(parseAnswerFormat('aime'), 'aime');
  assert.throws(() => parseAnswerFormat('gsm9k', '--format'), (e: unknown) => e instanceof KvsieveError && e.message.startsWith('--format:') && !e.message.includes('\n'));
});
