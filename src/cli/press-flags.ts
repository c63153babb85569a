import { KvsieveError } from '../core/errors.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { ModelConfig } from '../core/model-config.js';
import { readQFilters } from '../calibrate/q-filters.js';
import { parsePressFlag } from '../press/options.js';
import { numberFlag, type OptionSpec } from './args.js';

/** Press flags taken by every command that generates (kebab-case forms of the press options). */
export const PRESS_OPTION_FLAGS = ['budget', 'window', 'sinks', 'kernel', 'pooling', 'gqa', 'lambda', 'threshold', 'alpha', 'beta', 'inner', 'normalize', 'force-newest'] as const;

export const pressFlagSpec: OptionSpec = {
  press: { type: 'string' },
  buffer: { type: 'string' },
  schedule: { type: 'string' },
  trigger: { type: 'string' },
  'q-filters': { type: 'string' },
  'head-redundancy': { type: 'string' },
  ...Object.fromEntries(PRESS_OPTION_FLAGS.map((f) => [f, { type: 'string' as const }])),
};

export const pressFlagHelp = `Compression (KV-cache presses; "kvsieve presses" lists them with every option and default):
  --press NAME           full, streaming-llm, h2o, tova, knorm, snapkv, pyramidkv, ada-kv, q-filters, r-kv, mix-kv
  --budget N             tokens kept per layer and KV head after a compression (window included)
  --buffer N             tokens the cache may grow past the budget before compressing (default 128)
  --schedule S           decode (default) | prefill | both
  --trigger T            length (default: cache reaches budget + buffer) | r-kv (processed length a multiple of the buffer)
  --window N --sinks N --kernel N --pooling max|avg --gqa mean|max-logits --lambda X --threshold X
  --alpha X --beta X --inner PRESS --normalize --force-newest   press options (see kvsieve presses)
  --q-filters DIR        calibrated Q-Filters (model.safetensors with q_filters [layers, kv_heads, head_dim])
  --head-redundancy X,Y  mix-kv: calibrated per-KV-head redundancy (else computed online)
`;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/**
 * Compression settings from parsed flags (null: full cache). Errors name the flag, or the option as a
 * GenerateOptions path (compression.press) that the CLI prints as its flag.
 */
export function compressionFromFlags(values: Values, config: ModelConfig): CompressionSettings | null {
  try {
    return settingsFromFlags(values, config);
  } catch (e) {
    throw e instanceof KvsieveError ? e.under('compression') : e;
  }
}

function settingsFromFlags(values: Values, config: ModelConfig): CompressionSettings | null {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const press = str('press');
  const given = [...PRESS_OPTION_FLAGS, 'buffer', 'schedule', 'trigger', 'q-filters', 'head-redundancy'].filter((f) => values[f] !== undefined);
  if (press === undefined) {
    if (given.length > 0) throw new KvsieveError(`--${given[0]} needs --press (see kvsieve presses)`);
    return null;
  }
  const settings: CompressionSettings = { press };
  const inner = str('inner');
  for (const flag of PRESS_OPTION_FLAGS) {
    const raw = str(flag);
    if (raw === undefined) continue;
    const { name, value } = parsePressFlag(press, flag, raw, inner);
    (settings as unknown as Record<string, unknown>)[name] = value;
  }
  const buffer = numberFlag('buffer', str('buffer'), { integer: true, min: 1 });
  if (buffer !== undefined) settings.buffer = buffer;
  const schedule = str('schedule');
  if (schedule !== undefined) settings.schedule = schedule as CompressionSettings['schedule'];
  const trigger = str('trigger');
  if (trigger !== undefined) settings.trigger = trigger as CompressionSettings['trigger'];
  const filters = str('q-filters');
  if (filters !== undefined) settings.filters = readQFilters(filters, config);
  const redundancy = str('head-redundancy');
  if (redundancy !== undefined) {
    settings.headRedundancy = redundancy.split(',').map((x) => {
      const v = Number(x);
      if (x.trim() === '' || !Number.isFinite(v)) throw new KvsieveError(`--head-redundancy must be comma-separated numbers, got "${redundancy}"`);
      return v;
    });
  }
  return settings;
}
