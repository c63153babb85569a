/**
 * Answer extraction and equivalence for reasoning evaluations (GSM8K, MATH-500, AIME).
 *
 * `extractAnswer` pulls the final answer out of a model completion; `answersEqual` decides whether
 * a predicted answer is one a grader would accept for the reference answer. Equivalence is
 * decided in layers: string normalisation (LaTeX spacing, units, `\text{}`, `\dfrac`, degrees,
 * percent, thousands separators, ...), structure (tuples, intervals, sets, unions, equations,
 * multiple-choice letters), then numeric/symbolic equality through @cortex-js/compute-engine:
 * both sides are parsed from LaTeX and evaluated numerically, and expressions with free variables
 * are evaluated at fixed sample points. Nothing here depends on time or randomness.
 */
import { ComputeEngine } from '@cortex-js/compute-engine';
import { KvsieveError } from '../core/errors.js';

export type AnswerFormat = 'gsm8k' | 'math500' | 'aime';

export const ANSWER_FORMATS: readonly AnswerFormat[] = ['gsm8k', 'math500', 'aime'];

/** Validates a format name coming from a flag or config (`what` names that flag or field). */
export function parseAnswerFormat(value: string, what = 'format'): AnswerFormat {
  if ((ANSWER_FORMATS as readonly string[]).includes(value)) return value as AnswerFormat;
  throw new KvsieveError(`${what}: unknown answer format "${value}" (expected ${ANSWER_FORMATS.join(', ')})`);
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/**
 * The final answer in a completion, or null when none can be found:
 * the content of the last complete, non-empty `\boxed{...}` / `\fbox{...}` (nested braces
 * allowed; `\boxed 5` without braces too), else the text after the last "Final answer:", else
 * (gsm8k only) the last number in the text. When the completion has a `</think>`, the text after
 * the last one is searched first and the whole completion only when that yields nothing.
 */
export function extractAnswer(completion: string, format: AnswerFormat): string | null {
  const end = completion.lastIndexOf('</think>');
  if (end >= 0) {
    const after = extractFrom(completion.slice(end + '</think>'.length), format);
    if (after !== null) return after;
  }
  return extractFrom(completion, format);
}

function extractFrom(text: string, format: AnswerFormat): string | null {
  const boxed = lastBoxed(text);
  if (boxed !== null) return boxed;
  const final = afterFinalAnswer(text);
  if (final !== null) return final;
  if (format === 'gsm8k') return lastNumber(text);
  return null;
}

const BOX_RE = /\\(?:boxed|fbox)(?![A-Za-z])/g;

/** Content of the last complete, non-empty box; an unterminated or empty box is skipped. */
function lastBoxed(text: string): string | null {
  const starts: number[] = [];
  for (const m of text.matchAll(BOX_RE)) starts.push(m.index + m[0].length);
  for (let k = starts.length - 1; k >= 0; k--) {
    const content = boxContent(text, starts[k]!);
    if (content !== null && content.trim() !== '') return content.trim();
  }
  return null;
}

function boxContent(text: string, pos: number): string | null {
  let i = pos;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  if (text[i] === '{') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const c = text[j];
      if (c === '\\') {
        j++; // skip the escaped character (\{, \}, \\)
        continue;
      }
      if (c === '{') depth++;
      else if (c === '}') {
        depth--;
        if (depth === 0) return text.slice(i + 1, j);
      }
    }
    return null; // unterminated (truncated completion)
  }
  if (i === pos) return null; // `\boxedx` is not a box; `\boxed 5` needs the space
  // `\boxed 5`: the run of characters up to whitespace or a math delimiter.
  const m = /^[^\s$]+/.exec(text.slice(i));
  if (m === null) return null;
  return stripTrailingPunctuation(m[0]);
}

const FINAL_RE = /final\s+answer\s*(?:\*\*)?\s*(?::|is\b)/gi;

function afterFinalAnswer(text: string): string | null {
  let last: RegExpExecArray | null = null;
  for (const m of text.matchAll(FINAL_RE)) last = m as RegExpExecArray;
  if (last === null) return null;
  const rest = text.slice(last.index + last[0].length);
  const lines = rest.split('\n');
  let line = lines[0]!.trim();
  // "Final answer:\n\n42" puts the answer on a following line.
  if (cleanFinal(line) === '') line = lines.slice(1).find((l) => cleanFinal(l) !== '') ?? '';
  const cleaned = cleanFinal(line);
  return cleaned === '' ? null : cleaned;
}

function cleanFinal(line: string): string {
  let s = line.trim().replace(/\*\*/g, '').trim();
  s = stripTrailingPunctuation(s);
  s = stripMathDelimiters(s);
  s = stripTrailingPunctuation(s);
  return s.trim();
}

function stripMathDelimiters(s: string): string {
  let t = s.trim();
  for (;;) {
    const before = t;
    if (t.startsWith('$$') && t.endsWith('$$') && t.length >= 4) t = t.slice(2, -2).trim();
    else if (t.startsWith('$') && t.endsWith('$') && t.length >= 2) t = t.slice(1, -1).trim();
    else if (t.startsWith('\\(') && t.endsWith('\\)')) t = t.slice(2, -2).trim();
    else if (t.startsWith('\\[') && t.endsWith('\\]')) t = t.slice(2, -2).trim();
    if (t === before) return t;
  }
}

/** Drops trailing sentence punctuation ("42." -> "42"); `!` stays, it may be a factorial. */
function stripTrailingPunctuation(s: string): string {
  return s.replace(/[\s.,;:]+$/, '');
}

const NUMBER_RE = /-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+/g;

function lastNumber(text: string): string | null {
  let last: string | null = null;
  for (const m of text.matchAll(NUMBER_RE)) last = m[0];
  return last === null ? null : last.replace(/,/g, '');
}

/** The reference answer of a GSM8K solution: the text after the last `####`, commas removed. */
export function gsm8kTruth(answer: string): string {
  const at = answer.lastIndexOf('####');
  if (at < 0) {
    const snippet = answer.length > 40 ? `${answer.slice(0, 40)}...` : answer;
    throw new KvsieveError(`gsm8k answer: no '####' marker in ${JSON.stringify(snippet)}`);
  }
  return answer.slice(at + 4).trim().replace(/,/g, '');
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

interface Normalized {
  /** Canonical form without whitespace, used for comparisons and parsing. */
  text: string;
  /** The same before whitespace was removed (for words and choice letters). */
  spaced: string;
  /** A percent sign or the word "percent" was present. */
  percent: boolean;
}

const WRAPPERS = 'text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|mathsf|boldsymbol|operatorname';
const UNIT_WORDS = new Set([
  'cm', 'mm', 'km', 'kg', 'mg', 'ml', 'ft', 'lb', 'lbs', 'oz', 'mph', 'hrs', 'sec', 'min', 'cm2', 'm2', 'cm3', 'm3',
]);

/** Index just past the `}` matching the `{` at `open`, or -1. */
function matchBrace(s: string, open: number): number {
  let depth = 0;
  for (let j = open; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      j++;
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  return -1;
}

/** Replaces every `\cmd{...}` (cmd from `names`) with its content, handling nested braces. */
function unwrapCommands(s: string, names: string): string {
  const re = new RegExp(`\\\\(?:${names})\\s*\\{`, 'g');
  let out = s;
  for (let guard = 0; guard < 100; guard++) {
    re.lastIndex = 0;
    const m = re.exec(out);
    if (m === null) break;
    const open = m.index + m[0].length - 1;
    const close = matchBrace(out, open);
    if (close < 0) break;
    out = out.slice(0, m.index) + out.slice(open + 1, close - 1) + out.slice(close);
  }
  return out;
}

function normalize(raw: string): Normalized {
  let s = raw.trim();
  let percent = false;

  s = s.replace(/\u2212/g, '-').replace(/\u221e/g, '\\infty').replace(/\u00b0/g, '^\\circ').replace(/\u03c0/g, '\\pi');
  s = stripMathDelimiters(s);
  s = s.replace(/\\[dtc]frac(?![A-Za-z])/g, '\\frac').replace(/\\[dt]binom(?![A-Za-z])/g, '\\binom');
  s = s.replace(/\\displaystyle(?![A-Za-z])/g, '');
  s = s.replace(/\\(?:left|right)\s*\./g, '');
  s = s.replace(/\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])/g, '');
  s = s.replace(/\\\$/g, '').replace(/\$/g, '');
  // Spacing commands (\! \, \; \: \> and "\ "), leaving the row separator \\ alone.
  s = s.replace(/\\\\|\\[!,;:> ]/g, (m) => (m === '\\\\' ? m : m === '\\ ' ? ' ' : ''));
  s = s.replace(/\\(?:quad|qquad)(?![A-Za-z])/g, ' ').replace(/~/g, ' ');
  // Degrees: 30^\circ, 30^{\circ}, 30\degree.
  s = s.replace(/\^\s*\{\s*\\circ\s*\}/g, '').replace(/\^\s*\\circ(?![A-Za-z])/g, '').replace(/\\degree(?![A-Za-z])/g, '');
  if (/\\%|%/.test(s)) {
    percent = true;
    s = s.replace(/\\%/g, '').replace(/%/g, '');
  }
  s = s.trim();
  s = stripTrailingPunctuation(s);

  // A trailing unit in \text{...}/\mbox{...} after some math: "5\text{ cm}^2" -> "5".
  const unit = new RegExp(`^(.*\\S)\\s*\\\\(?:text|mbox|textrm|textnormal|mathrm)\\s*\\{\\s*([A-Za-z][A-Za-z .]*)\\}\\s*(?:\\^\\s*\\{?[23]\\}?)?$`).exec(s);
  if (unit !== null && !/[=+\-*/^_]$/.test(unit[1]!.trim()) && !/^[A-Za-z]$/.test(unit[2]!.trim())) {
    if (/^percent$/i.test(unit[2]!.trim())) percent = true;
    s = unit[1]!.trim();
  }
  s = unwrapCommands(s, WRAPPERS).trim();
  s = stripMathDelimiters(s);

  // A plain number followed by words: "18 dollars", "3 hours", "18 percent", "5cm".
  const numWords = /^([-+]?(?:\d[\d,]*)?\.?\d+)(\s+[A-Za-z]{2,}[A-Za-z\s.'\-]*|[A-Za-z]+\d?)(?:\s*\^\s*\{?[23]\}?)?$/.exec(s);
  if (numWords !== null) {
    const words = numWords[2]!.trim();
    if (/\s/.test(numWords[2]![0]!) || UNIT_WORDS.has(words.toLowerCase())) {
      if (/^percent\b/i.test(words)) percent = true;
      s = numWords[1]!;
    }
  }
  s = stripTrailingPunctuation(s.trim());
  const spaced = s.replace(/\s+/g, ' ');

  // Drop whitespace, except the one space that ends a command before a letter ("\pi r").
  let t = s.replace(/\s+/g, ' ').replace(/(\\[A-Za-z]+) (?=[A-Za-z])| /g, (_m, cmd: string | undefined) => (cmd ? `${cmd} ` : ''));
  t = t.replace(/\{,\}/g, '');
  if (/^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(t)) t = t.replace(/,/g, '');
  t = t.replace(/\\frac(\d)(\d)/g, '\\frac{$1}{$2}').replace(/\\frac\{([^{}]*)\}(\d)/g, '\\frac{$1}{$2}').replace(/\\frac(\d)\{/g, '\\frac{$1}{');
  t = t.replace(/\\sqrt(\d)/g, '\\sqrt{$1}');
  t = t.replace(/\\varnothing|\\\{\\\}/g, '\\emptyset').replace(/\\infin(?![A-Za-z])/g, '\\infty').replace(/\+\\infty/g, '\\infty');
  t = t.replace(/^\+(?=\d)/, '');
  t = stripTrailingPunctuation(t);
  t = tidyNumber(t);
  t = stripVariableLhs(t);
  return { text: t, spaced, percent };
}

function tidyNumber(t: string): string {
  let m = /^(-?)0*(\d+)(?:\.0*)?$/.exec(t);
  if (m !== null) return m[1]! + m[2]!;
  m = /^(-?\d*\.\d*?[1-9])0+$/.exec(t);
  if (m !== null) return m[1]!;
  return t;
}

/**
 * "x=5" -> "5", "k_1=3" -> "3", "\theta=30" -> "30" (one `=` and a lone variable on the left);
 * "x\in[1,2]" -> "[1,2]".
 */
function stripVariableLhs(t: string): string {
  const m = /^(?:[A-Za-z]|\\(?!text|frac|sqrt)[A-Za-z]+)(?:_\{?\w+\}?)?(?:=|\\in(?![A-Za-z]))([^=]+)$/.exec(t);
  return m === null ? t : m[1]!;
}

// ---------------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------------

interface Token {
  /** Index into the string. */
  at: number;
  /** Length of the bracket token. */
  len: number;
  kind: 'open' | 'close';
  /** Bracket type: '(' '[' '{' (LaTeX group) or 'set' for \{ \}. */
  type: string;
}

function bracketTokens(s: string): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\') {
      const n = s[i + 1];
      if (n === '{') out.push({ at: i, len: 2, kind: 'open', type: 'set' });
      else if (n === '}') out.push({ at: i, len: 2, kind: 'close', type: 'set' });
      i++;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') out.push({ at: i, len: 1, kind: 'open', type: c });
    else if (c === ')') out.push({ at: i, len: 1, kind: 'close', type: '(' });
    else if (c === ']') out.push({ at: i, len: 1, kind: 'close', type: '[' });
    else if (c === '}') out.push({ at: i, len: 1, kind: 'close', type: '{' });
  }
  return out;
}

/** Splits at `sep` where no bracket of any kind is open (so `(1,2]` counts as closed). */
function splitTopLevel(s: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\') {
      if (depth === 0 && s.startsWith(sep, i) && sep.startsWith('\\') && !/[A-Za-z]/.test(s[i + sep.length] ?? '')) {
        parts.push(s.slice(start, i));
        start = i + sep.length;
        i += sep.length - 1;
        continue;
      }
      const n = s[i + 1];
      if (n === '{') depth++;
      else if (n === '}') depth--;
      i++;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && s.startsWith(sep, i)) {
      parts.push(s.slice(start, i));
      start = i + sep.length;
      i += sep.length - 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

interface Structure {
  /** 'ordered' tuples/intervals/vectors compare element-wise; 'unordered' sets and bare lists as multisets. */
  kind: 'ordered' | 'unordered';
  open: string;
  close: string;
  items: string[];
}

/** Outer bracket pair spanning the whole string, if any. */
function outerBrackets(s: string): { open: Token; close: Token } | null {
  const toks = bracketTokens(s);
  if (toks.length < 2) return null;
  const first = toks[0]!;
  const last = toks[toks.length - 1]!;
  if (first.at !== 0 || first.kind !== 'open' || last.kind !== 'close' || last.at + last.len !== s.length) return null;
  let depth = 0;
  for (let k = 0; k < toks.length; k++) {
    depth += toks[k]!.kind === 'open' ? 1 : -1;
    if (depth === 0 && k !== toks.length - 1) return null;
  }
  return depth === 0 ? { open: first, close: last } : null;
}

function matrixToTuple(s: string): string {
  return s.replace(/\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*?)\\end\{\1\}/g, (_m, _env: string, body: string) => {
    const rows = body.split(/\\\\/).map((r) => r.trim()).filter((r) => r !== '');
    return `(${rows.map((r) => `(${r.split('&').join(',')})`).join(',')})`;
  });
}

function structureOf(s: string): Structure | null {
  const outer = outerBrackets(s);
  if (outer !== null) {
    const inner = s.slice(outer.open.len, s.length - outer.close.len);
    const items = splitTopLevel(inner, ',');
    if (outer.open.type === 'set' && outer.close.type === 'set') {
      return { kind: 'unordered', open: 'set', close: 'set', items: inner === '' ? [] : items };
    }
    if (outer.open.type === '{' && outer.close.type === '{') {
      // A LaTeX group: {1,2} reads as the bare list 1,2.
      return items.length >= 2 ? { kind: 'unordered', open: '', close: '', items } : null;
    }
    if (items.length >= 2) {
      const text = (t: Token) => s.slice(t.at, t.at + t.len);
      return { kind: 'ordered', open: text(outer.open), close: text(outer.close), items };
    }
    return null;
  }
  const items = splitTopLevel(s, ',');
  if (items.length >= 2) return { kind: 'unordered', open: '', close: '', items };
  return null;
}

// ---------------------------------------------------------------------------------------------
// Equality
// ---------------------------------------------------------------------------------------------

/** The answer letter of a multiple-choice answer such as "C", "(C)", "\text{(C)}", "C)". */
function choiceLetter(spaced: string, strict: boolean): string | null {
  const re = strict ? /^\(?([A-Z])\)?$/ : /^\(?([A-Z])\)?(?:[.:)]|\s|$)/;
  const m = re.exec(spaced.trim());
  return m === null ? null : m[1]!;
}

function isWordy(s: string): boolean {
  return /^[A-Za-z][A-Za-z\s'\-.,]*$/.test(s) && /[A-Za-z]{3}/.test(s);
}

/**
 * True when `predicted` is an answer a grader would accept for the reference `truth`.
 * Numbers compare within a relative tolerance of 1e-6, so close-but-wrong answers such as
 * 0.33 for 1/3 are rejected; expressions with variables compare at fixed sample points.
 */
export function answersEqual(predicted: string | null, truth: string): boolean {
  if (predicted === null) return false;
  const p = normalize(predicted);
  const t = normalize(truth);
  if (p.text === '' || t.text === '') return false;
  if (p.text === t.text) return true;

  const truthLetter = choiceLetter(t.spaced, true);
  if (truthLetter !== null) return choiceLetter(p.spaced, false) === truthLetter;

  if (isWordy(p.spaced) && isWordy(t.spaced)) {
    const flat = (x: string) => x.toLowerCase().replace(/[^a-z]/g, '');
    return flat(p.spaced) === flat(t.spaced);
  }
  return withEngine(() => equalExpr(matrixToTuple(p.text), matrixToTuple(t.text), p.percent || t.percent, 0));
}

function equalExpr(a: string, b: string, percent: boolean, depth: number): boolean {
  if (a === b) return true;
  if (depth > 8) return false;

  const ua = splitTopLevel(a, '\\cup');
  const ub = splitTopLevel(b, '\\cup');
  if (ua.length > 1 || ub.length > 1) {
    return ua.length === ub.length && multisetEqual(ua, ub, (x, y) => equalExpr(x, y, percent, depth + 1));
  }

  const sa = structureOf(a);
  const sb = structureOf(b);
  if (sa !== null || sb !== null) {
    if (sa === null || sb === null) return false;
    const ia = sa.items.map(elementForm);
    const ib = sb.items.map(elementForm);
    if (sa.kind !== sb.kind || ia.length !== ib.length) return false;
    if (sa.kind === 'unordered') return multisetEqual(ia, ib, (x, y) => equalExpr(x, y, percent, depth + 1));
    if (sa.open !== sb.open || sa.close !== sb.close) return false;
    return ia.every((x, k) => equalExpr(x, ib[k]!, percent, depth + 1));
  }

  const ea = splitTopLevel(a, '=');
  const eb = splitTopLevel(b, '=');
  if (ea.length > 1 || eb.length > 1) {
    if (ea.length !== 2 || eb.length !== 2) return false;
    return equationsEqual(ea[0]!, ea[1]!, eb[0]!, eb[1]!);
  }
  return scalarEqual(a, b, percent);
}

function elementForm(item: string): string {
  return tidyNumber(stripVariableLhs(stripTrailingPunctuation(item)));
}

function multisetEqual(a: string[], b: string[], eq: (x: string, y: string) => boolean): boolean {
  if (a.length !== b.length) return false;
  const used = new Array<boolean>(b.length).fill(false);
  for (const x of a) {
    const k = b.findIndex((y, j) => !used[j] && eq(x, y));
    if (k < 0) return false;
    used[k] = true;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Compute Engine
// ---------------------------------------------------------------------------------------------

type Expr = ReturnType<ComputeEngine['parse']>;

let engine: ComputeEngine | null = null;

/** Runs `fn` inside a fresh scope so that symbols declared while parsing do not leak between calls. */
function withEngine<T>(fn: () => T): T {
  engine ??= new ComputeEngine();
  engine.pushScope();
  try {
    return fn();
  } finally {
    engine.popScope();
  }
}

/** Inputs the engine could spend unbounded time on are not handed to it. */
function tooHeavy(latex: string): boolean {
  if (latex.length > 400) return true;
  // Factorials of large numbers and towers of large exponents.
  if (/\d{4,}\}?\s*!/.test(latex)) return true;
  if (/\^\{?\d{6,}/.test(latex)) return true;
  return false;
}

function parse(latex: string): Expr | null {
  if (tooHeavy(latex) || /\\text|\\binom|\\begin/.test(latex)) return null;
  // Subscripted variables (x_1, a_{n}) become plain symbols; the engine reads x_1 as indexing.
  const source = latex.replace(/(?<![\\A-Za-z])([A-Za-z])_(?:\{([A-Za-z0-9]+)\}|([A-Za-z0-9]))/g, (_m, v: string, b?: string, c?: string) => `\\operatorname{${v}sub${b ?? c}}`);
  try {
    const e = engine!.parse(source);
    if (!e.isValid || JSON.stringify(e.json).includes('Error')) return null;
    return e;
  } catch {
    return null;
  }
}

const REL_TOL = 1e-6;

function close(x: number, y: number): boolean {
  if (x === y) return true;
  const d = Math.abs(x - y);
  return d <= REL_TOL * Math.max(Math.abs(x), Math.abs(y)) || d <= 1e-12;
}

interface Value {
  re: number;
  im: number;
  /** Exact JSON of the numeric value, for magnitudes beyond double range. */
  key: string;
}

function valueOf(e: Expr): Value | null {
  try {
    const n = e.N();
    const re = n.re;
    const im = n.im;
    if (typeof re !== 'number' || Number.isNaN(re)) return null;
    return { re, im: typeof im === 'number' && !Number.isNaN(im) ? im : 0, key: JSON.stringify(n.json) };
  } catch {
    return null;
  }
}

function valuesEqual(a: Value, b: Value): boolean {
  if (Number.isFinite(a.re) && Number.isFinite(b.re) && Number.isFinite(a.im) && Number.isFinite(b.im)) {
    return close(a.re, b.re) && close(a.im, b.im);
  }
  return a.key === b.key;
}

/** Fixed sample points for free variables: irrational-looking values away from common poles. */
const SAMPLES = [0.6180339887, 1.4142135624, 2.2360679775, -0.7320508076, 3.1415926536, -1.9129311828];

function samplePoint(k: number, varIndex: number): number {
  return SAMPLES[(k + 2 * varIndex) % SAMPLES.length]! + 0.1373 * varIndex;
}

function freeVariables(...es: Expr[]): string[] {
  const vars = new Set<string>();
  for (const e of es) for (const v of e.unknowns) vars.add(v);
  return [...vars].sort();
}

function evaluateAt(e: Expr, vars: string[], k: number): Value | null {
  const sub: Record<string, Expr> = {};
  vars.forEach((v, i) => {
    sub[v] = engine!.number(samplePoint(k, i)) as Expr;
  });
  try {
    return valueOf(e.subs(sub));
  } catch {
    return null;
  }
}

function scalarEqual(a: string, b: string, percent: boolean): boolean {
  const ea = parse(a);
  const eb = parse(b);
  if (ea === null || eb === null) return false;
  const vars = freeVariables(ea, eb);
  if (vars.length === 0) {
    const va = valueOf(ea);
    const vb = valueOf(eb);
    if (va === null || vb === null) return false;
    if (valuesEqual(va, vb)) return true;
    if (!percent || va.im !== 0 || vb.im !== 0) return false;
    // "18%" against 0.18: accept either scale when one side carried a percent sign.
    return close(va.re, vb.re * 100) || close(va.re * 100, vb.re);
  }
  if (vars.length > 6) return false;
  let agreeing = 0;
  for (let k = 0; k < SAMPLES.length; k++) {
    const va = evaluateAt(ea, vars, k);
    const vb = evaluateAt(eb, vars, k);
    const finite = (v: Value | null) => v !== null && Number.isFinite(v.re) && Number.isFinite(v.im);
    if (!finite(va) && !finite(vb)) continue;
    if (!finite(va) || !finite(vb) || !valuesEqual(va!, vb!)) return false;
    agreeing++;
  }
  return agreeing >= 3;
}

/** L1=R1 and L2=R2 are equal when L1-R1 is a non-zero constant multiple of L2-R2. */
function equationsEqual(l1: string, r1: string, l2: string, r2: string): boolean {
  if (l1 === l2 && r1 === r2) return true;
  if (l1 === r2 && r1 === l2) return true;
  const d1 = parse(`(${l1})-(${r1})`);
  const d2 = parse(`(${l2})-(${r2})`);
  if (d1 === null || d2 === null) return false;
  const vars = freeVariables(d1, d2);
  if (vars.length === 0 || vars.length > 6) return false;
  let ratio: number | null = null;
  let agreeing = 0;
  for (let k = 0; k < SAMPLES.length; k++) {
    const v1 = evaluateAt(d1, vars, k);
    const v2 = evaluateAt(d2, vars, k);
    if (v1 === null || v2 === null || !Number.isFinite(v1.re) || !Number.isFinite(v2.re)) continue;
    if (v1.im !== 0 || v2.im !== 0) continue;
    if (Math.abs(v2.re) < 1e-12 || Math.abs(v1.re) < 1e-12) {
      if (!close(v1.re, v2.re)) return false;
      continue;
    }
    const r = v1.re / v2.re;
    if (ratio === null) ratio = r;
    else if (!close(ratio, r)) return false;
    agreeing++;
  }
  return agreeing >= 3;
}
