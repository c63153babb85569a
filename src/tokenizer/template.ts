/**
 * Chat templates rendered with @huggingface/jinja under limits on the work a template may ask for.
 *
 * A chat template comes with the model and is code: `{% for i in range(100000000) %}` makes the engine
 * build a list of 10^8 values (over 4 GB) before the loop starts, loops within loops run for hours, and
 * `{% set l = l + [i] %}` in a loop copies ever longer lists. Templates are therefore rendered by an
 * interpreter that counts what it evaluates:
 * - `range()` gives at most MAX_RANGE values (jinja2's sandbox uses the same bound);
 * - at most MAX_STEPS statements and expressions are evaluated in one render, a loop iteration counting
 *   as ITERATION_STEPS (on a slow core this engine takes about 2 us a step and 16 us an iteration, so a
 *   render stops within about a second); a chat template takes a few dozen steps a message;
 * - the strings and lists built along the way add up to at most MAX_WORK characters and items (each
 *   value counted once per evaluation that produces it: a conversation's text a few times over), and
 *   none exceeds MAX_VALUE; both grow with the size of the conversation given. A template that turns a
 *   short conversation into megabytes of prompt is refused here rather than left to the tokenizer
 *   (which takes seconds per megabyte).
 * Past a limit the render stops with a TemplateLimitError; the caller names the template in its error.
 *
 * The globals are those @huggingface/jinja's Template.render defines (it offers no way to replace one),
 * with `range` bounded and `strftime_now` written out here.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';

export const MAX_RANGE = 100_000;
export const MAX_STEPS = 300_000;
/** Base limits; each grows by a multiple of the characters of the variables rendered (the conversation). */
export const MAX_WORK = 1 << 24;
export const MAX_VALUE = 1 << 18;

/** A render stopped by one of the limits above. */
export class TemplateLimitError extends Error {
  override readonly name = 'TemplateLimitError';
}

/** Python's range(), refusing to produce more than MAX_RANGE values. */
function boundedRange(start: unknown, stop?: unknown, step: unknown = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (typeof start !== 'number' || typeof stop !== 'number' || typeof step !== 'number') {
    throw new Error('range() takes numbers');
  }
  if (step === 0) throw new Error('range() step must not be zero');
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (!Number.isFinite(count) || count > MAX_RANGE) {
    throw new TemplateLimitError(`range() of ${Number.isFinite(count) ? count : 'unbounded'} values (limit ${MAX_RANGE})`);
  }
  return Array.from({ length: count }, (_, i) => start + i * step);
}

/** strftime_now(format) as @huggingface/jinja has it: %Y %m %d %b %B %H %M %%, local time. */
function strftimeNow(format: unknown): string {
  if (typeof format !== 'string') throw new Error('strftime_now() takes a format string');
  const date = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y':
        return String(date.getFullYear());
      case '%m':
        return pad2(date.getMonth() + 1);
      case '%d':
        return pad2(date.getDate());
      case '%b':
        return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B':
        return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H':
        return pad2(date.getHours());
      case '%M':
        return pad2(date.getMinutes());
      default:
        return '%';
    }
  });
}

// The package's declarations import './runtime' without an extension, which NodeNext resolution does not
// follow, so Interpreter and Environment arrive untyped; these are the parts used here.
interface JinjaValue {
  type: string;
  value: unknown;
}
interface JinjaEnvironment {
  set(name: string, value: unknown): unknown;
}
interface JinjaInterpreter {
  run(program: unknown): JinjaValue;
  evaluate(node: unknown, env: JinjaEnvironment): JinjaValue;
  applyFilter(operand: JinjaValue, filter: { type: string }, env: JinjaEnvironment): JinjaValue;
  evaluateArguments(args: unknown[], env: JinjaEnvironment): [JinjaValue[], Map<string, JinjaValue>];
}
const InterpreterBase = Interpreter as new (env: JinjaEnvironment) => JinjaInterpreter;
const EnvironmentClass = Environment as new () => JinjaEnvironment;

/** Steps one loop iteration is charged: the engine sets up a scope and a `loop` object for each (~16 us). */
const ITERATION_STEPS = 8;

interface ForNode {
  type: 'For';
  iterable: { type: string; lhs?: unknown };
}

class BoundedInterpreter extends InterpreterBase {
  private steps = 0;
  private work = 0;
  private readonly maxWork: number;
  private readonly maxValue: number;

  constructor(env: JinjaEnvironment, inputChars: number) {
    super(env);
    this.maxWork = MAX_WORK + 16 * inputChars;
    this.maxValue = MAX_VALUE + 4 * inputChars;
  }
  /** A for loop's iterable, evaluated (and charged) before the engine's own loop asks for it. */
  private iterable: { node: unknown; value: JinjaValue } | null = null;
  /** Set while a filter with arguments starts: its first evaluateArguments call is its own. */
  private filterArgs = false;

  private charge(steps: number): void {
    this.steps += steps;
    if (this.steps > MAX_STEPS) throw new TemplateLimitError(`more than ${MAX_STEPS} evaluation steps`);
  }

  override evaluate(node: unknown, env: JinjaEnvironment): JinjaValue {
    if (this.iterable !== null && node === this.iterable.node) {
      const { value } = this.iterable;
      this.iterable = null;
      return value;
    }
    this.charge(1);
    if ((node as { type?: string } | undefined)?.type === 'For') {
      // The loop's cost is known once its iterable is: charge every iteration up front.
      const f = node as ForNode;
      const it = f.iterable.type === 'SelectExpression' ? f.iterable.lhs : f.iterable;
      const value = this.evaluate(it, env);
      const n = Array.isArray(value.value) ? value.value.length : value.value instanceof Map ? value.value.size : 0;
      this.charge(n * ITERATION_STEPS);
      this.iterable = { node: it, value };
    }
    const v = super.evaluate(node, env);
    const size = typeof v.value === 'string' || Array.isArray(v.value) ? v.value.length : 0;
    if (size > this.maxValue) throw new TemplateLimitError(`a value of ${size} ${typeof v.value === 'string' ? 'characters' : 'items'} (limit ${this.maxValue})`);
    this.work += size;
    if (this.work > this.maxWork) throw new TemplateLimitError(`strings and lists of more than ${this.maxWork} characters and items built`);
    return v;
  }

  // Filters build strings from numbers given to them before any value can be checked: `indent(10**8)` and
  // `tojson(indent=10**8)` repeat a space that often (per line). Their numeric arguments are bounded.
  override applyFilter(operand: JinjaValue, filter: { type: string }, env: JinjaEnvironment): JinjaValue {
    this.filterArgs = filter.type === 'CallExpression';
    try {
      return super.applyFilter(operand, filter, env);
    } finally {
      this.filterArgs = false;
    }
  }

  override evaluateArguments(args: unknown[], env: JinjaEnvironment): [JinjaValue[], Map<string, JinjaValue>] {
    const check = this.filterArgs;
    this.filterArgs = false;
    const out = super.evaluateArguments(args, env);
    if (check) {
      for (const v of [...out[0], ...out[1].values()]) {
        if (typeof v.value === 'number' && !(Math.abs(v.value) <= this.maxValue)) {
          throw new TemplateLimitError(`a filter argument of ${v.value} (limit ${this.maxValue})`);
        }
      }
    }
    return out;
  }
}

/** Characters in the strings of `v` (messages and their fields), walked without recursion. */
function textSize(v: unknown): number {
  let n = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'string') n += x.length;
    else if (x !== null && typeof x === 'object') stack.push(...Object.values(x));
  }
  return n;
}

/** Parses a template (throws the engine's errors for a template that does not parse). */
export function compileTemplate(source: string): Template {
  return new Template(source);
}

/** Renders `template` with `vars` under the limits of this file. */
export function renderTemplate(template: Template, vars: Record<string, unknown>): string {
  const env = new EnvironmentClass();
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: boundedRange,
    strftime_now: strftimeNow,
    ...vars,
  };
  for (const [k, v] of Object.entries(globals)) env.set(k, v);
  const out = new BoundedInterpreter(env, textSize(vars)).run(template.parsed).value;
  if (typeof out !== 'string') throw new Error(`the template gave ${typeof out}, not text`);
  return out;
}
