/**
 * Option resolution (defaults per phase, validation with one-line errors naming the option) and CLI flag parsing.
 */
import { KvsieveError } from '../core/errors.js';
import { pyramidLayerBudget } from './pyramidkv.js';
import { PRESSES, pressInfo, pressOptionSpecs, type OptionName, type PressOptionSpec, type ResolveContext } from './registry.js';
import { PRESS_NAMES, SCORED_PRESS_NAMES, type Phase, type PressName, type PressOptions, type PressOptionsInput } from './types.js';

const NEUTRAL: Omit<PressOptions, 'press' | 'phase'> = {
  budget: 0,
  window: 0,
  sinks: 0,
  kernel: 1,
  pooling: 'avg',
  gqa: 'mean',
  lambda: 0,
  threshold: 0,
  alpha: 0,
  beta: 1,
  filters: null,
  headRedundancy: null,
  accumulatedAttention: null,
  normalize: false,
  forceNewest: false,
  inner: null,
};

/**
 * Fills defaults (per phase) and validates. Throws a one-line KvsieveError naming the option at fault: unknown
 * press, unknown option, wrong type or range, budget not larger than window + sinks, q-filters without filters,
 * tensors whose shape does not match the model. Accepts an already resolved object for the same press.
 */
export function resolvePressOptions(press: string, partial: PressOptionsInput | PressOptions | undefined, ctx: ResolveContext): PressOptions {
  const info = pressInfo(press);
  const given: Record<string, unknown> = {};
  const input = (partial ?? {}) as unknown as Record<string, unknown>;
  const isResolved = 'press' in input;
  if (isResolved && input['press'] !== press) {
    throw new KvsieveError(`${press}: option "press": these options were resolved for ${JSON.stringify(input['press'])}`, { option: 'press' });
  }
  const specs = pressOptionSpecs(press, info.wraps ? (input['inner'] as string | undefined) : undefined);
  const known = new Set<string>(specs.map((s) => s.name));
  for (const [k, v] of Object.entries(input)) {
    if (v === undefined || k === 'press') continue;
    if (!known.has(k)) {
      if (isResolved) continue; // neutral fields of a resolved object
      throw new KvsieveError(`${press}: unknown option "${k}" (options: ${[...known].join(', ')})`, { option: k });
    }
    if (isResolved && v === null) continue;
    given[k] = v;
  }
  const phase = (given['phase'] ?? ctx.phase ?? 'decode') as Phase;
  const out: Record<string, unknown> = { ...NEUTRAL, press, phase };
  if (press === 'full') out['budget'] = Infinity;
  for (const s of specs) {
    if (s.name === 'phase') {
      checkValue(press, s, phase);
      continue;
    }
    const v = given[s.name] !== undefined ? given[s.name] : s.defaultFor(phase, given as PressOptionsInput);
    if (v === undefined) {
      if (s.required) throw new KvsieveError(`${press}: option "${s.name}" is required (${s.description})`, { option: s.name });
      continue;
    }
    out[s.name] = convert(press, s, v, ctx);
  }
  const o = out as unknown as PressOptions;
  crossCheck(press, o, ctx);
  return o;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${(v as Float32Array).length}`;
  return String(v);
}

function checkValue(press: string, s: PressOptionSpec, v: unknown): void {
  const bad = (what: string) => new KvsieveError(`${press}: option "${s.name}" must be ${what}, got ${describeValue(v)}`, { option: s.name });
  switch (s.type) {
    case 'integer':
    case 'number': {
      if (typeof v !== 'number' || !Number.isFinite(v) || (s.type === 'integer' && !Number.isInteger(v))) throw bad(`${s.type === 'integer' ? 'an integer' : 'a finite number'} (${s.range})`);
      if ((s.min !== undefined && v < s.min) || (s.max !== undefined && v > s.max) || (s.odd && v % 2 === 0)) {
        throw new KvsieveError(`${press}: option "${s.name}" is out of range (${s.range}), got ${v}`, { option: s.name });
      }
      return;
    }
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return;
    case 'enum':
    case 'press':
      if (typeof v !== 'string' || !s.choices!.includes(v)) throw bad(`one of ${s.choices!.join(', ')}`);
      return;
    default:
      return;
  }
}

function convert(press: string, s: PressOptionSpec, v: unknown, ctx: ResolveContext): unknown {
  checkValue(press, s, v);
  if (s.name === 'filters') return flatTensor(press, s.name, v, [ctx.numLayers, ctx.numKvHeads, ctx.headDim], ['layers', 'kvHeads', 'headDim']);
  if (s.name === 'headRedundancy') {
    const H = ctx.numKvHeads;
    const L = ctx.numLayers;
    const isNestedLayers = Array.isArray(v) && v.length > 0 && Array.isArray(v[0]);
    const flatLen = ArrayBuffer.isView(v) ? (v as Float32Array).length : -1;
    let t: Float32Array;
    if (isNestedLayers || flatLen === L * H) t = flatTensor(press, s.name, v, [L, H], ['layers', 'kvHeads']);
    else {
      const one = flatTensor(press, s.name, v, [H], ['kvHeads']);
      t = new Float32Array(L * H);
      for (let l = 0; l < L; l++) t.set(one, l * H);
    }
    for (const x of t) if (x < 0 || x > 1) throw new KvsieveError(`${press}: option "headRedundancy" values must lie in [0, 1], got ${x}`, { option: 'headRedundancy' });
    return t;
  }
  if (s.name === 'accumulatedAttention') {
    if (!Array.isArray(v) || v.length !== ctx.numKvHeads) {
      throw new KvsieveError(`${press}: option "accumulatedAttention" must hold one array per KV head (${ctx.numKvHeads}), got ${describeValue(v)}`, {
        option: 'accumulatedAttention',
      });
    }
    return v.map((row: unknown, h) => {
      if (!(row instanceof Float32Array) && !(Array.isArray(row) && row.every((x) => typeof x === 'number' && Number.isFinite(x)))) {
        throw new KvsieveError(`${press}: option "accumulatedAttention" of KV head ${h} must be a Float32Array or an array of finite numbers`, {
          option: 'accumulatedAttention',
        });
      }
      return row instanceof Float32Array ? row : Float32Array.from(row as number[]);
    });
  }
  return v;
}

/** A nested number array of `shape`, or a Float32Array of its product, as one flat Float32Array. */
function flatTensor(press: string, name: string, v: unknown, shape: number[], dims: string[]): Float32Array {
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

function crossCheck(press: string, o: PressOptions, ctx: ResolveContext): void {
  if (press === 'full') return;
  const target = o.inner ?? press;
  if (target === 'tova') return; // any budget >= 1 works (B = 1 keeps the newest token)
  const reserved = o.window + o.sinks;
  if (reserved > 0 && !(o.budget > reserved)) {
    const what = o.window > 0 && o.sinks > 0 ? 'window + sinks' : o.sinks > 0 ? 'sinks' : 'window';
    throw new KvsieveError(`${press}: option "budget" (${o.budget}) must be larger than ${what} (${reserved})`, { option: 'budget' });
  }
  if (target === 'pyramidkv' && ctx.numLayers > 1 && pyramidLayerBudget(o.budget, ctx.numLayers, o.beta, ctx.numLayers - 1) < 1) {
    throw new KvsieveError(`${press}: option "beta" (${o.beta}) leaves the last layer no token: budget / beta must be at least 0.5`, { option: 'beta' });
  }
}

/** Parses one kebab-case CLI flag of a press into its option name and value. Tensors and state are not flags. */
export function parsePressFlag(press: string, flag: string, raw: string, inner?: string): { name: OptionName; value: unknown } {
  const f = flag.replace(/^--?/, '');
  const s = pressOptionSpecs(press, inner).find((x) => x.flag === f) ?? (PRESSES[press as PressName]?.wraps ? allScoredSpecs().find((x) => x.flag === f) : undefined);
  if (!s) throw new KvsieveError(`${press}: unknown option --${f} (options: ${pressOptionSpecs(press, inner).map((x) => '--' + x.flag).join(', ')})`);
  const bad = (what: string) => new KvsieveError(`${press}: --${f} must be ${what}, got ${JSON.stringify(raw)}`);
  switch (s.type) {
    case 'integer':
      if (!/^[+-]?\d+$/.test(raw.trim())) throw bad('an integer');
      return { name: s.name, value: Number(raw) };
    case 'number': {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v)) throw bad('a number');
      return { name: s.name, value: v };
    }
    case 'boolean': {
      const r = raw.trim().toLowerCase();
      if (['', 'true', '1', 'yes'].includes(r)) return { name: s.name, value: true };
      if (['false', '0', 'no'].includes(r)) return { name: s.name, value: false };
      throw bad('true or false');
    }
    case 'enum':
    case 'press':
      return { name: s.name, value: raw };
    default:
      throw new KvsieveError(`${press}: --${f} is a ${s.type}, not a flag value: load it and pass it as the "${s.name}" option`);
  }
}

function allScoredSpecs(): PressOptionSpec[] {
  return SCORED_PRESS_NAMES.flatMap((p) => [...PRESSES[p].options]);
}

/** A plain-text table of every press and its options (for `kvsieve presses`). */
export function formatPresses(): string {
  const lines: string[] = [];
  for (const name of PRESS_NAMES) {
    const info = PRESSES[name];
    lines.push(`${name}: ${info.description}`);
    for (const s of info.options) {
      lines.push(`  --${s.flag} (${s.type}) default ${s.default}; ${s.range}. ${s.description}`);
    }
    if (info.wraps) lines.push('  plus every option of the inner press');
  }
  return lines.join('\n');
}
