/**
 * The compression flags of every command that generates, derived from a press table (the built-in
 * one by default): one flag per press option, the schedule's flags, and their help text.
 */
import { KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import type { CompressionSettings } from '../generate/compression.js';
import { BUILTIN_PRESSES, parsePressFlag, pressFlags } from '../press/table.js';
import type { PressDefinition } from '../press/types.js';
import { numberFlag, type OptionSpec } from './args.js';

const SCHEDULE_FLAGS = ['buffer', 'schedule', 'trigger'] as const;

/** The parseArgs spec of the compression flags of `presses`. */
export function pressFlagSpecFor(presses: readonly PressDefinition[]): OptionSpec {
  return {
    press: { type: 'string' },
    ...Object.fromEntries([...SCHEDULE_FLAGS, ...pressFlags(presses)].map((f) => [f, { type: 'string' as const }])),
  };
}

const METAVAR: Record<string, string> = { integer: 'N', number: 'X', boolean: '[true|false]', press: 'PRESS', tensor: 'VALUE', state: 'VALUE' };

/** The help paragraph of the compression flags of `presses`. */
export function pressFlagHelpFor(presses: readonly PressDefinition[]): string {
  const seen = new Map<string, string>();
  for (const p of presses) {
    for (const s of p.options) {
      if (s.flag === null || s.name === 'phase' || s.name === 'budget' || s.name === 'protectPrompt' || seen.has(s.flag)) continue;
      seen.set(s.flag, `--${s.flag} ${s.choices ? s.choices.join('|') : (METAVAR[s.type] ?? 'VALUE')}`);
    }
  }
  const wrapped: string[] = [];
  let line = ' ';
  for (const f of seen.values()) {
    if (line.length + f.length + 1 > 100) wrapped.push(line), (line = ' ');
    line += ' ' + f;
  }
  wrapped.push(line);
  return `Compression (KV-cache presses; "kvsieve presses" lists them with every option, default and range):
  --press NAME           ${presses.map((p) => p.name).join(', ')}
  --budget N             tokens kept per layer and KV head after a compression (window included)
  --buffer N             tokens the cache may grow past the budget before compressing (default 128; random-pp 64)
  --schedule S           decode (default) | prefill | both
  --trigger T            length (default: cache reaches budget + buffer) | r-kv (processed length a multiple of the buffer)
  --protect-prompt true  never evict the prompt; the budget counts it (every press with a budget; random-pp and
                         triattention protect it by default: --protect-prompt false turns it off)
  press options (each press takes its own; see kvsieve presses):
${wrapped.join('\n')}
`;
}

export const pressFlagSpec: OptionSpec = pressFlagSpecFor(BUILTIN_PRESSES);
export const pressFlagHelp: string = pressFlagHelpFor(BUILTIN_PRESSES);

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/**
 * Compression settings from parsed flags (null: full cache). Each flag is parsed by the option spec
 * of the chosen press; errors name the flag, or the option as a GenerateOptions path
 * (compression.budget) that the CLI prints as its flag.
 */
export function compressionFromFlags(values: Values, config: ModelConfig, presses: readonly PressDefinition[] = BUILTIN_PRESSES): CompressionSettings | null {
  try {
    return settingsFromFlags(values, config, presses);
  } catch (e) {
    // a press option's error names it as a GenerateOptions path (compression.budget), printed as its flag
    throw e instanceof KvsieveError ? e.under('compression') : e;
  }
}

function settingsFromFlags(values: Values, config: ModelConfig, presses: readonly PressDefinition[]): CompressionSettings | null {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const optionFlags = pressFlags(presses);
  const press = str('press');
  const given = [...optionFlags, ...SCHEDULE_FLAGS].filter((f) => values[f] !== undefined);
  if (press === undefined) {
    if (given.length > 0) throw new KvsieveError(`--${given[0]} needs --press (see kvsieve presses)`);
    return null;
  }
  const settings: CompressionSettings = { press };
  const inner = str('inner');
  const ctx = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, numQHeads: config.numHeads, headDim: config.headDim, presses };
  for (const flag of optionFlags) {
    const raw = str(flag);
    if (raw === undefined) continue;
    const { name, value } = parsePressFlag(press, flag, raw, inner, ctx);
    settings[name] = value;
  }
  const buffer = numberFlag('buffer', str('buffer'), { integer: true, min: 1 });
  if (buffer !== undefined) settings.buffer = buffer;
  const schedule = str('schedule');
  if (schedule !== undefined) settings.schedule = schedule as CompressionSettings['schedule'];
  const trigger = str('trigger');
  if (trigger !== undefined) settings.trigger = trigger as CompressionSettings['trigger'];
  return settings;
}
