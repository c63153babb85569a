/**
 * The press table: the one list of built-in presses. Names, the CLI's flags and help, `kvsieve
 * presses`, the server's request validation, the compressor's needs and the throughput planner's
 * budgets all derive from it (or from a table a caller extends with its own `definePress` presses).
 * Adding a built-in press: its file, and one line here.
 */
import { KvsieveError } from '../core/errors.js';
import { adaKv } from './ada-kv.js';
import { checkResolved, compressWith, isScored, scoresWith } from './define.js';
import { full } from './full.js';
import { h2o } from './h2o.js';
import { knorm } from './knorm.js';
import { mixkv } from './mix-kv.js';
import { parseSpecFlag, resolveSpecs } from './options.js';
import { pyramidkv } from './pyramidkv.js';
import { qFilters } from './q-filters.js';
import { randomPp } from './random-pp.js';
import { rkv } from './r-kv.js';
import { snapkv } from './snapkv.js';
import { streamingLlm } from './streaming-llm.js';
import { tova } from './tova.js';
import { triattention } from './triattention.js';
import type { LayerView, PressDefinition, PressOptions, PressOptionSpec, PressOptionsInput, ResolveContext } from './types.js';

export const BUILTIN_PRESSES = [full, streamingLlm, h2o, tova, knorm, snapkv, pyramidkv, adaKv, qFilters, rkv, mixkv, triattention, randomPp] as const;

export type PressName = (typeof BUILTIN_PRESSES)[number]['name'];
export const PRESS_NAMES: readonly PressName[] = BUILTIN_PRESSES.map((p) => p.name);
/** The built-in presses by name. */
export const PRESSES: Readonly<Record<PressName, PressDefinition>> = Object.fromEntries(BUILTIN_PRESSES.map((p) => [p.name, p])) as Record<PressName, PressDefinition>;
/** Built-in presses that compute one score per token (the ones ada-kv can wrap). */
export const SCORED_PRESS_NAMES: readonly PressName[] = BUILTIN_PRESSES.filter(isScored).map((p) => p.name);

/** The resolved options of a built-in press, typed by its option specs. */
export type BuiltinOptions<N extends PressName> = Extract<(typeof BUILTIN_PRESSES)[number], { name: N }> extends PressDefinition<infer O> ? O : PressOptions;

/** A press by name in `presses` (the built-in table by default), or the definition itself. */
export function lookupPress(press: string | PressDefinition, presses: readonly PressDefinition[] = BUILTIN_PRESSES): PressDefinition {
  if (typeof press === 'object' && press !== null && typeof press.name === 'string') return press;
  const def = presses.find((p) => p.name === press);
  if (!def) {
    const shown = typeof press === 'string' ? JSON.stringify(press.slice(0, 40)) : typeof press;
    throw new KvsieveError(`press: unknown press ${shown} (one of: ${presses.map((p) => p.name).join(', ')})`, { option: 'press' });
  }
  return def;
}

/** The name of a press given by name or definition. */
export const pressName = (press: string | PressDefinition): string => (typeof press === 'string' ? press : press.name);

/**
 * The label of a press configuration in results and tables: its name, with "+pp" when it protects
 * the prompt against its default (r-kv+pp) and "-pp" when it does not protect it against its default.
 */
export function pressLabel(settings: { press: string | PressDefinition; inner?: unknown; protectPrompt?: unknown }, presses: readonly PressDefinition[] = BUILTIN_PRESSES): string {
  const name = pressName(settings.press);
  if (typeof settings.protectPrompt !== 'boolean') return name;
  const spec = pressOptionSpecs(lookupPress(settings.press, presses), settings.inner, { presses }).find((s) => s.name === 'protectPrompt');
  const byDefault = spec?.defaultFor('decode', {}) === true;
  return settings.protectPrompt === byDefault ? name : `${name}${settings.protectPrompt ? '+pp' : '-pp'}`;
}

/**
 * The option specs `def` accepts; a wrapper's include every option of its inner press (`inner`: a
 * name, a definition, or undefined for the default).
 */
export function pressOptionSpecs(press: string | PressDefinition, inner?: unknown, ctx?: Partial<ResolveContext>): readonly PressOptionSpec[] {
  const presses = ctx?.presses ?? BUILTIN_PRESSES;
  const def = lookupPress(press, presses);
  if (!def.wraps) return def.options;
  const spec = def.options.find((s) => s.name === 'inner');
  if (!spec) throw new KvsieveError(`${def.name}: a wrapper press needs an "inner" option`);
  const phase = ctx?.phase ?? 'decode';
  const c = { numLayers: 1, numKvHeads: 1, headDim: 1, ...ctx, presses };
  const innerDef = spec.convert(def.name, inner ?? spec.defaultFor(phase, {}), c) as PressDefinition;
  const own = new Set(def.options.map((s) => s.name));
  return [...def.options, ...innerDef.options.filter((s) => !own.has(s.name))];
}

/**
 * Fills defaults (per phase) and validates. Throws a one-line KvsieveError naming the option at fault:
 * unknown press, unknown option, wrong type or range, budget not larger than window + sinks, a missing
 * required option, tensors whose shape does not match the model. Accepts an already resolved object
 * for the same press.
 */
export function resolvePressOptions<N extends PressName>(press: N, partial: PressOptionsInput | PressOptions | undefined, ctx: ResolveContext): BuiltinOptions<N>;
export function resolvePressOptions(press: string | PressDefinition, partial: PressOptionsInput | PressOptions | undefined, ctx: ResolveContext): PressOptions;
export function resolvePressOptions(
  press: string | PressDefinition,
  partial: PressOptionsInput | PressOptions | undefined,
  ctx: ResolveContext,
): PressOptions {
  const presses = ctx.presses ?? BUILTIN_PRESSES;
  const def = lookupPress(press, presses);
  const input = (partial ?? {}) as Readonly<Record<string, unknown>>;
  if ('press' in input && input['press'] !== def.name) {
    throw new KvsieveError(`${def.name}: option "press": these options were resolved for ${JSON.stringify(input['press'])}`, { option: 'press' });
  }
  const c = { ...ctx, presses };
  const o = resolveSpecs(def.name, pressOptionSpecs(def, input['inner'], c), input, c) as PressOptions;
  checkResolved(def, o, c);
  return o;
}

/**
 * One kebab-case CLI flag of a press parsed into its option name and value. A wrapper takes the flags
 * of every scored press (its inner press may be named later on the command line).
 */
export function parsePressFlag(press: string, flag: string, raw: string, inner?: string, ctx?: ResolveContext): { name: string; value: unknown } {
  const presses = ctx?.presses ?? BUILTIN_PRESSES;
  const def = lookupPress(press, presses);
  const c = ctx ?? { numLayers: 1, numKvHeads: 1, headDim: 1 };
  const specs = pressOptionSpecs(def, inner, { ...c, presses });
  const f = flag.replace(/^--?/, '');
  if (def.wraps && !specs.some((s) => s.flag === f)) {
    const other = presses.filter(isScored).flatMap((p) => p.options).find((s) => s.flag === f);
    if (other) return parseSpecFlag(def.name, [other], f, raw, c);
  }
  return parseSpecFlag(def.name, specs, f, raw, c);
}

/** Every CLI flag any press of the table takes (kebab-case, without dashes), in table order. */
export function pressFlags(presses: readonly PressDefinition[] = BUILTIN_PRESSES): string[] {
  const flags = new Set<string>();
  for (const p of presses) for (const s of p.options) if (s.flag !== null && s.name !== 'phase') flags.add(s.flag);
  return [...flags];
}

/** A plain-text table of every press and its options (`kvsieve presses`). */
export function formatPresses(presses: readonly PressDefinition[] = BUILTIN_PRESSES): string {
  const lines: string[] = [];
  for (const p of presses) {
    lines.push(`${p.name}: ${p.summary}`);
    for (const s of p.options) {
      const head = s.flag !== null ? `--${s.flag}` : s.name;
      lines.push(`  ${head} (${s.type}) default ${s.default}; ${s.range}. ${s.description}`);
    }
    if (p.wraps) lines.push('  plus every option of the inner press');
  }
  return lines.join('\n');
}

/**
 * Per KV head, the ascending indices of the slots to keep (`options` from resolvePressOptions for the
 * same press). A head holding n <= budget keeps everything; when budget <= window a head keeps its
 * newest budget tokens; otherwise exactly budget (ada-kv: the layer shares H * budget).
 */
export function compressLayer(press: string | PressDefinition, options: PressOptions, view: LayerView): Int32Array[] {
  return compressWith(lookupPress(press), options, view);
}

/** Scores (higher = keep) of the m = n - min(window, n) oldest slots of KV head h (a wrapper: its inner press's). */
export function pressScores(press: string | PressDefinition, options: PressOptions, view: LayerView, h: number): Float32Array {
  return scoresWith(lookupPress(press), options, view, h);
}
