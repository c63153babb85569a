/**
 * Reasoning-eval datasets in their standard JSONL layouts, and the evaluation prompt.
 *
 *   gsm8k    {"question": "...", "answer": "... #### 72"}
 *   math500  {"problem": "...", "answer": "\\frac{1}{2}", ...}
 *   aime     {"problem": "...", "answer": "204" | 204, ...}
 *
 * Each item's id is its `id` field when present (string or number), else its 1-based line number.
 */
import { readFileSync } from 'node:fs';
import { KvsieveError } from '../core/errors.js';
import { gsm8kTruth, type AnswerFormat } from './answer.js';

export interface EvalItem {
  /** The `id` field, or the 1-based line number when the file has none. */
  id: string | number;
  problem: string;
  /** The reference final answer (for GSM8K the text after `####`, commas removed). */
  answer: string;
  /** GSM8K only: the full worked solution the answer came from. */
  solution?: string;
  /** 1-based line of the item in its file. */
  line: number;
}

export interface JsonlRecord {
  line: number;
  value: Record<string, unknown>;
}

/**
 * Parses JSONL text into objects, skipping blank lines. `source` names the file in errors, which
 * have the form `<source>:<line>: ...`.
 */
export function parseJsonl(text: string, source: string): JsonlRecord[] {
  const out: JsonlRecord[] = [];
  const lines = text.split('\n');
  for (let k = 0; k < lines.length; k++) {
    const raw = lines[k]!.replace(/\r$/, '');
    if (raw.trim() === '') continue;
    const line = k + 1;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new KvsieveError(`${source}:${line}: malformed JSON (${why})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new KvsieveError(`${source}:${line}: expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
    }
    out.push({ line, value: value as Record<string, unknown> });
  }
  return out;
}

/** Reads a JSONL file (see parseJsonl); a missing or unreadable file names the path. */
export function readJsonl(file: string): JsonlRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new KvsieveError(`${file}: cannot read (${code})`);
  }
  return parseJsonl(text, file);
}

function stringField(rec: JsonlRecord, source: string, name: string, allowNumber: boolean): string {
  const v = rec.value[name];
  if (typeof v === 'string') return v;
  if (allowNumber && typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (v === undefined) throw new KvsieveError(`${source}:${rec.line}: missing field "${name}"`);
  throw new KvsieveError(`${source}:${rec.line}: field "${name}" must be a string${allowNumber ? ' or number' : ''}, got ${JSON.stringify(v)}`);
}

/** The `id` of a record, or `fallback` when it has none; ids must be strings or integers. */
export function recordId(rec: JsonlRecord, source: string, fallback?: number): string | number {
  const v = rec.value['id'];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new KvsieveError(`${source}:${rec.line}: missing field "id"`);
  }
  if (typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v))) return v;
  throw new KvsieveError(`${source}:${rec.line}: field "id" must be a string or integer, got ${JSON.stringify(v)}`);
}

/** Parses dataset JSONL text of the given layout; `source` names the file in errors. */
export function parseDataset(text: string, format: AnswerFormat, source: string): EvalItem[] {
  const items: EvalItem[] = [];
  const seen = new Map<string, number>();
  for (const rec of parseJsonl(text, source)) {
    const id = recordId(rec, source, rec.line);
    const key = String(id);
    const first = seen.get(key);
    if (first !== undefined) throw new KvsieveError(`${source}:${rec.line}: duplicate id ${JSON.stringify(id)} (first on line ${first})`);
    seen.set(key, rec.line);
    if (format === 'gsm8k') {
      const problem = stringField(rec, source, 'question', false);
      const solution = stringField(rec, source, 'answer', false);
      if (!solution.includes('####')) throw new KvsieveError(`${source}:${rec.line}: field "answer" has no '####' final-answer marker`);
      items.push({ id, problem, answer: gsm8kTruth(solution), solution, line: rec.line });
    } else {
      const problem = stringField(rec, source, 'problem', false);
      const answer = stringField(rec, source, 'answer', true).trim();
      if (answer === '') throw new KvsieveError(`${source}:${rec.line}: field "answer" is empty`);
      items.push({ id, problem, answer, line: rec.line });
    }
  }
  return items;
}

/** Reads a dataset file (GSM8K, MATH-500 or AIME JSONL). */
export function loadDataset(file: string, format: AnswerFormat): EvalItem[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new KvsieveError(`${file}: cannot read dataset (${code})`);
  }
  return parseDataset(text, format, file);
}

/**
 * The user prompt of the R-KV style math evaluation; `{problem}` is replaced by the problem text.
 * It ends in the exact answer-format instruction that `extractAnswer` is built to read.
 */
export const MATH_PROMPT_TEMPLATE =
  'You are given a math problem.\n\nProblem: {problem}\n\n' +
  'Solve the problem step by step: first write out your chain of thought, then give the final answer.\n\n' +
  'Provide the final answer in the format: Final answer: \\boxed{}';

/** The evaluation user prompt for one problem (see MATH_PROMPT_TEMPLATE). */
export function buildMathPrompt(problem: string): string {
  // A replacer function, so `$&` and friends in the problem's LaTeX are taken literally.
  return MATH_PROMPT_TEMPLATE.replace('{problem}', () => problem.trim());
}
