/**
 * Press options: the spec of one option (its type, default per phase, range, help, CLI flag) with the
 * typed builders every press file uses, the options shared by several presses, and the generic
 * machinery over a press's spec list: resolution (defaults per phase, validation with one-line
 * errors naming the option), CLI flag parsing, the printed table.
 */
import { KvsieveError } from '../core/errors.js';
import type { BaseOptions, Phase, PressOptions, PressOptionSpec, ResolveContext } from './types.js';

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

/** A short description of a bad value for an error message (never the whole value: it may be huge). */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${(v as Float32Array).length}`;
  if (v !== null && typeof v === 'object') return 'an object';
  return String(v);
}

interface Common<N extends string> {
  name: N;
  description: string;
  /** Printed default; derived from a constant default when left out. */
  defaultText?: string;
  /** Printed range; derived when left out. */
  range?: string;
  /** CLI flag (default: the kebab-case name). */
  flag?: string | null;
}

type DefaultRule<T> = T | ((phase: Phase, given: Readonly<Record<string, unknown>>) => T);
const ruleOf = <T>(d: DefaultRule<T> | undefined): ((phase: Phase, given: Readonly<Record<string, unknown>>) => T | undefined) =>
  typeof d === 'function' ? (d as (phase: Phase, given: Readonly<Record<string, unknown>>) => T) : () => d;

function bad(press: string, name: string, what: string, v: unknown): KvsieveError {
  return new KvsieveError(`${press}: option "${name}" must be ${what}, got ${describeValue(v)}`, { option: name });
}

function flagNumber(press: string, flag: string, raw: string, integer: boolean): number {
  const t = raw.trim();
  if (integer ? !/^[+-]?\d+$/.test(t) : t === '' || !Number.isFinite(Number(t))) {
    throw new KvsieveError(`${press}: --${flag} must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(raw)}`);
  }
  return Number(t);
}

/** Typed builders of option specs. */
export const option = {
  /** A whole number in [min, max] (odd: odd values only). */
  integer<const N extends string>(o: Common<N> & { default: DefaultRule<number>; min: number; max?: number; odd?: boolean }): PressOptionSpec<N, number> {
    const range = o.range ?? (o.max !== undefined ? `integer in [${o.min}, ${o.max}]` : `${o.odd ? 'odd ' : ''}integer >= ${o.min}`);
    return {
      name: o.name,
      flag: o.flag === undefined ? kebab(o.name) : o.flag,
      type: 'integer',
      description: o.description,
      default: o.defaultText ?? String(o.default),
      range,
      defaultFor: ruleOf(o.default),
      convert(press, v) {
        if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(press, o.name, `an integer (${range})`, v);
        if (v < o.min || (o.max !== undefined && v > o.max) || (o.odd && v % 2 === 0)) {
          throw new KvsieveError(`${press}: option "${o.name}" is out of range (${range}), got ${v}`, { option: o.name });
        }
        return v;
      },
      fromFlag: (press, raw) => flagNumber(press, kebab(o.name), raw, true),
    };
  },
  /** A finite number in [min, max]. */
  number<const N extends string>(o: Common<N> & { default: DefaultRule<number>; min: number; max?: number }): PressOptionSpec<N, number> {
    const range = o.range ?? (o.max !== undefined ? `[${o.min}, ${o.max}]` : `number >= ${o.min}`);
    return {
      name: o.name,
      flag: o.flag === undefined ? kebab(o.name) : o.flag,
      type: 'number',
      description: o.description,
      default: o.defaultText ?? String(o.default),
      range,
      defaultFor: ruleOf(o.default),
      convert(press, v) {
        if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(press, o.name, `a finite number (${range})`, v);
        if (v < o.min || (o.max !== undefined && v > o.max)) throw new KvsieveError(`${press}: option "${o.name}" is out of range (${range}), got ${v}`, { option: o.name });
        return v;
      },
      fromFlag: (press, raw) => flagNumber(press, kebab(o.name), raw, false),
    };
  },
  boolean<const N extends string>(o: Common<N> & { default: boolean }): PressOptionSpec<N, boolean> {
    return {
      name: o.name,
      flag: o.flag === undefined ? kebab(o.name) : o.flag,
      type: 'boolean',
      description: o.description,
      default: o.defaultText ?? String(o.default),
      range: 'true | false',
      defaultFor: () => o.default,
      convert(press, v) {
        if (typeof v !== 'boolean') throw bad(press, o.name, 'true or false', v);
        return v;
      },
      fromFlag(press, raw) {
        const r = raw.trim().toLowerCase();
        if (['', 'true', '1', 'yes'].includes(r)) return true;
        if (['false', '0', 'no'].includes(r)) return false;
        throw new KvsieveError(`${press}: --${kebab(o.name)} must be true or false, got ${JSON.stringify(raw)}`);
      },
    };
  },
  /** One of a fixed list of strings. */
  choice<const N extends string, const C extends string>(o: Common<N> & { choices: readonly C[]; default: DefaultRule<C> | undefined }): PressOptionSpec<N, C> {
    return {
      name: o.name,
      flag: o.flag === undefined ? kebab(o.name) : o.flag,
      type: 'enum',
      description: o.description,
      default: o.defaultText ?? (typeof o.default === 'string' ? o.default : 'none'),
      range: o.range ?? o.choices.join(' | '),
      choices: o.choices,
      defaultFor: ruleOf(o.default),
      convert(press, v) {
        if (typeof v !== 'string' || !(o.choices as readonly string[]).includes(v)) throw bad(press, o.name, `one of ${o.choices.join(', ')}`, v);
        return v as C;
      },
      fromFlag: (_press, raw) => raw,
    };
  },
  /**
   * Anything else (tensors, per-slot state, a press): `convert` checks and converts; `fromFlag`, when
   * given, makes it a CLI flag (reading a file, parsing a list). Without `required`, the resolved
   * value is null when the option is not given and has no default.
   */
  custom<const N extends string, T, R extends boolean = false>(o: Common<N> & {
    type: 'tensor' | 'state' | 'press';
    defaultText: string;
    range: string;
    required?: R;
    defaultFor?: (phase: Phase, given: Readonly<Record<string, unknown>>) => T | undefined;
    convert(press: string, value: unknown, ctx: ResolveContext): T;
    fromFlag?(press: string, raw: string, ctx: ResolveContext): unknown;
    choices?: readonly string[];
  }): PressOptionSpec<N, R extends true ? T : T | null> {
    return {
      name: o.name,
      flag: o.fromFlag ? (o.flag === undefined ? kebab(o.name) : o.flag) : null,
      type: o.type,
      description: o.description,
      default: o.defaultText,
      range: o.range,
      ...(o.choices ? { choices: o.choices } : {}),
      ...(o.required ? { required: true } : {}),
      defaultFor: o.defaultFor ?? (() => undefined),
      convert: o.convert,
      ...(o.fromFlag ? { fromFlag: o.fromFlag } : {}),
    };
  },
};

const byPhase = (prefill: number, decode: number) => (phase: Phase) => (phase === 'prefill' ? prefill : decode);
const phaseText = (prefill: number, decode: number) => (prefill === decode ? `${prefill}` : `${prefill} (prefill), ${decode} (decode)`);

// ---- options shared by several presses -------------------------------------------------------------

export const PHASE = option.choice({
  name: 'phase',
  description: 'when the compression runs; picks the phase-dependent defaults',
  choices: ['prefill', 'decode'],
  default: undefined,
  defaultText: 'the run (prefill after the prompt, decode while generating)',
});

export const BUDGET = option.integer({
  name: 'budget',
  description: 'tokens kept per (layer, KV head) after a compression, window included',
  default: 1024,
  min: 1,
  range: 'integer >= 1, larger than window + sinks',
});

/** The newest slots every compression keeps; `prefill`/`decode` are the defaults per phase. */
export const window = (prefill: number, decode: number, min: number, what = 'newest tokens always kept (their queries are the observation queries)') =>
  option.integer({ name: 'window', description: what, default: byPhase(prefill, decode), defaultText: phaseText(prefill, decode), min });

export const SINKS = option.integer({ name: 'sinks', description: 'first tokens always kept (attention sinks)', default: 4, min: 0 });

export const POOLING = option.choice({
  name: 'pooling',
  description: 'pooling of the scores along the tokens (avg: zero padding counted; max: -inf padding)',
  choices: ['avg', 'max'],
  default: 'avg',
});

export const KERNEL_BY_POOLING = option.integer({
  name: 'kernel',
  description: 'pooling kernel (stride 1, floor(kernel/2) padding each side)',
  default: (_p, given) => (given['pooling'] === 'max' ? 7 : 5),
  defaultText: '5 (avg pooling), 7 (max pooling)',
  range: 'odd integer >= 1 (1: no pooling)',
  min: 1,
  odd: true,
});

export const GQA = option.choice({
  name: 'gqa',
  description: "GQA reduction: mean of the query heads' attention, or max over the group on the logits",
  choices: ['mean', 'max-logits'],
  default: 'mean',
});

/** A flat Float32Array from a nested number array of `shape`, or from a Float32Array of its product. */
export function flatTensor(press: string, name: string, v: unknown, shape: number[], dims: string[]): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const where = `${press}: option "${name}"`;
  const want = `[${dims.map((d, i) => `${d}=${shape[i]}`).join('][')}]`;
  let out: Float32Array;
  if (v instanceof Float32Array) {
    if (v.length !== size) throw new KvsieveError(`${where} must hold ${want} = ${size} values for this model, got ${v.length}`, { option: name });
    out = v;
  } else {
    out = new Float32Array(size);
    let p = 0;
    const walk = (x: unknown, depth: number): void => {
      if (depth === shape.length) {
        if (typeof x !== 'number') throw new KvsieveError(`${where} must be numbers of shape ${want}`, { option: name });
        out[p++] = x;
        return;
      }
      if (!Array.isArray(x) || x.length !== shape[depth]) {
        throw new KvsieveError(`${where} must have shape ${want} for this model; dimension ${dims[depth]} has ${Array.isArray(x) ? x.length : 'no array'}`, {
          option: name,
        });
      }
      for (const y of x) walk(y, depth + 1);
    };
    walk(v, 0);
  }
  for (const x of out) if (!Number.isFinite(x)) throw new KvsieveError(`${where} holds a non-finite value (${x})`, { option: name });
  return out;
}

// ---- resolution over a spec list -------------------------------------------------------------------

/**
 * Fills defaults (per phase) and validates the `given` options against `specs`. Throws a one-line
 * KvsieveError naming the option: unknown option, wrong type or range, missing required option.
 * A resolved object (it carries `press`) may hold options of other presses as nulls: they are skipped.
 */
export function resolveSpecs(press: string, specs: readonly PressOptionSpec[], input: Readonly<Record<string, unknown>>, ctx: ResolveContext): Record<string, unknown> {
  const isResolved = 'press' in input;
  const known = new Set<string>(specs.map((s) => s.name));
  const given: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) {
    if (v === undefined || k === 'press') continue;
    if (!known.has(k)) {
      if (isResolved) continue;
      throw new KvsieveError(`${press}: unknown option "${k}" (options: ${[...known].join(', ')})`, { option: k });
    }
    if (isResolved && v === null) continue;
    given[k] = v;
  }
  const phase = (given['phase'] ?? ctx.phase ?? 'decode') as Phase;
  const out: Record<string, unknown> = { press, phase, budget: Infinity };
  for (const s of specs) {
    if (s.name === 'phase') {
      out['phase'] = s.convert(press, phase, ctx);
      continue;
    }
    const v = given[s.name] !== undefined ? given[s.name] : s.defaultFor(phase, given);
    if (v === undefined) {
      if (s.required) throw new KvsieveError(`${press}: option "${s.name}" is required (${s.description})`, { option: s.name });
      out[s.name] = null;
      continue;
    }
    out[s.name] = s.convert(press, v, ctx);
  }
  return out;
}

/** The one-line check every windowed press shares: the budget must exceed what is always kept. */
export function checkBudgetAboveReserved(press: string, o: PressOptions): void {
  const w = typeof o['window'] === 'number' ? o['window'] : 0;
  const s = typeof o['sinks'] === 'number' ? o['sinks'] : 0;
  const reserved = w + s;
  if (reserved > 0 && !(o.budget > reserved)) {
    const what = w > 0 && s > 0 ? 'window + sinks' : s > 0 ? 'sinks' : 'window';
    throw new KvsieveError(`${press}: option "budget" (${o.budget}) must be larger than ${what} (${reserved})`, { option: 'budget' });
  }
}

/** One kebab-case CLI flag of a spec list parsed into its option name and value. */
export function parseSpecFlag(press: string, specs: readonly PressOptionSpec[], flag: string, raw: string, ctx: ResolveContext): { name: string; value: unknown } {
  const f = flag.replace(/^--?/, '');
  const s = specs.find((x) => x.flag === f);
  if (!s) {
    const flags = specs.filter((x) => x.flag !== null).map((x) => '--' + x.flag);
    throw new KvsieveError(`${press}: unknown option --${f} (options: ${flags.join(', ')})`);
  }
  if (!s.fromFlag) throw new KvsieveError(`${press}: --${f} is a ${s.type}, not a flag value: pass it as the "${s.name}" option`);
  return { name: s.name, value: s.fromFlag(press, raw, ctx) };
}
