import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseBytes } from '../core/bytes.js';
import { oneLine } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** A value that starts with a dash but is a number: "-1", "-0.5", "-.5", "-1e-3", "-inf". */
const NEGATIVE_NUMBER = /^-(\d|\.\d|inf(inity)?$)/i;

/**
 * Joins a flag that takes a value with a negative number after it (`--budget -1` -> `--budget=-1`):
 * parseArgs would take "-1" for a flag and refuse the pair as ambiguous, and the range check of the
 * flag's own parser gives the better message.
 */
function joinNegativeValues(args: string[], options: OptionSpec): string[] {
  const takesValue = (arg: string): string | null => {
    if (arg.startsWith('--') && !arg.includes('=')) return options[arg.slice(2)]?.type === 'string' ? arg : null;
    if (/^-[^-]$/.test(arg)) {
      const long = Object.entries(options).find(([, o]) => o.short === arg.slice(1));
      return long && long[1].type === 'string' ? `--${long[0]}` : null;
    }
    return null;
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const flag = takesValue(arg);
    const next = args[i + 1];
    if (flag !== null && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${flag}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** parseArgs with one-line errors that name the flag. */
export function parseFlags<T extends OptionSpec>(args: string[], options: T, command: string) {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, allowPositionals: true, strict: true } as const);
  } catch (e) {
    const msg = oneLine((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''), 200);
    throw new KvsieveError(`${command}: ${msg} (see kvsieve ${command} --help)`);
  }
}

/** Parses a numeric flag value, naming the flag when it is not a number in range. */
export function numberFlag(
  flag: string,
  value: string | undefined,
  o: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  const bad =
    value.trim() === '' ||
    !Number.isFinite(v) ||
    (o.integer && !Number.isInteger(v)) ||
    (o.min !== undefined && v < o.min) ||
    (o.max !== undefined && v > o.max);
  if (bad) {
    const kind = o.integer ? 'a whole number' : 'a number';
    const range = o.min !== undefined || o.max !== undefined ? ` in [${o.min ?? '-inf'}, ${o.max ?? 'inf'}]` : '';
    throw new KvsieveError(`--${flag} must be ${kind}${range}, got "${value}"`);
  }
  return v;
}

/** Parses "1,2,3" into ids. */
export function idListFlag(flag: string, value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split(',').map((s) => s.trim());
  return parts.map((p) => {
    const v = Number(p);
    if (p === '' || !Number.isInteger(v) || v < 0) throw new KvsieveError(`--${flag} must be comma-separated token ids, got "${value}"`);
    return v;
  });
}

/** Parses a memory size flag (2GiB, 512MiB, 1.5GB, a number of bytes), naming the flag when it is not one. */
export function bytesFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = parseBytes(value);
  if (v === null) throw new KvsieveError(`--${flag} must be a size like 2GiB, 512MiB or a number of bytes, got ${JSON.stringify(value.slice(0, 40))}`);
  return v;
}
