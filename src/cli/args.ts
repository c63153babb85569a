import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseBytes } from '../core/bytes.js';
import { KvsieveError } from '../core/errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with one-line errors that name the flag. */
export function parseFlags<T extends OptionSpec>(args: string[], options: T, command: string) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true } as const);
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '').split('\n')[0];
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
