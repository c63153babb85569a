import { KvsieveError, classify } from '../core/errors.js';
import { BUILTIN_PRESSES } from '../press/table.js';

/** Exit codes: bad input, a usage error (no or unknown command), an internal fault (sysexits' EX_SOFTWARE). */
export const EXIT_BAD_INPUT = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 70;

/** The flag of each library option (a path of LoadOptions, GenerateOptions, the eval and calibrate options). */
const FLAGS: Readonly<Record<string, string>> = {
  backend: '--backend',
  threads: '--threads',
  weights: '--weights',
  maxTokens: '--max-tokens',
  temperature: '--temperature',
  topK: '--top-k',
  topP: '--top-p',
  minP: '--min-p',
  seed: '--seed',
  stop: '--stop',
  ignoreEos: '--ignore-eos',
  kvDtype: '--kv-dtype',
  promptIds: '--prompt-ids',
  chat: '--chat',
  system: '--system',
  'compression.press': '--press',
  'compression.buffer': '--buffer',
  'compression.schedule': '--schedule',
  'compression.trigger': '--trigger',
  // every press option that is a flag, from the press table (filters is --q-filters)
  ...Object.fromEntries(BUILTIN_PRESSES.flatMap((p) => p.options).flatMap((s) => (s.flag !== null ? [[`compression.${s.name}`, `--${s.flag}`]] : []))),
  sequences: '--sequences',
  seqLen: '--seq-len',
  samples: '--samples',
  kvMemoryBytes: '--kv-memory',
  maxBytesPerMemory: '--max-bytes-per-memory',
  lengths: '--lengths',
  outDir: '--out',
};

/** Commands that spell some options their own way. */
const COMMAND_FLAGS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  eval: { 'compression.press': '--presses', 'compression.budget': '--budgets' },
};

/** The flag `command` takes for a library option, or null where it has none. */
export function flagFor(option: string, command: string): string | null {
  return COMMAND_FLAGS[command]?.[option] ?? FLAGS[option] ?? null;
}

/**
 * The packages only `kvsieve eval` and `kvsieve report` use (grading, charts): optional peer
 * dependencies, so that installing kvsieve as a library leaves their 30 MB out.
 */
export const EVAL_PACKAGES: readonly string[] = ['@cortex-js/compute-engine', 'vega', 'vega-lite', '@resvg/resvg-js'];

/** The optional package whose absence `e` reports (Node's ERR_MODULE_NOT_FOUND), or null. */
function missingEvalPackage(e: unknown): string | null {
  const err = e as { code?: unknown; message?: unknown } | null;
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || typeof err.message !== 'string') return null;
  const m = /Cannot find (?:package|module) '([^']+)'/.exec(err.message);
  const name = m?.[1] ?? '';
  return EVAL_PACKAGES.find((p) => name === p || name.startsWith(`${p}/`)) ?? null;
}

/**
 * What the CLI prints for an error that ended `command`, and its exit code. Bad input: one line, the
 * option at fault named by its flag. Anything else is an internal fault: its message and how to report
 * it. With `debug`, the stack trace (and those of its causes) instead.
 */
export function describeFailure(e: unknown, command: string, debug: boolean): { text: string; code: number } {
  const missing = missingEvalPackage(e);
  if (missing !== null && !debug) {
    return {
      text: `kvsieve: ${command} needs ${missing}, an optional dependency that is not installed; install the evaluation packages beside kvsieve: npm install ${EVAL_PACKAGES.join(' ')} (with -g for a global kvsieve)\n`,
      code: EXIT_BAD_INPUT,
    };
  }
  const failure = classify(e, 'unexpected exception');
  const code = failure instanceof KvsieveError ? EXIT_BAD_INPUT : EXIT_INTERNAL;
  if (debug) return { text: `${stackChain(e)}\n`, code };
  if (failure instanceof KvsieveError) {
    const flag = failure.option !== undefined ? flagFor(failure.option, command) : null;
    return { text: `kvsieve: ${flag ? failure.messageFor(flag) : failure.message}\n`, code };
  }
  return {
    text:
      `kvsieve: internal error: ${failure.message}\n` +
      'kvsieve: this is a bug in kvsieve, not a problem with your input: rerun the command with --debug for the stack trace and file an issue with it\n',
    code,
  };
}

/** The stack of `e` and of each cause under it. */
function stackChain(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, depth = 0; c !== undefined && depth < 8; depth++) {
    parts.push(c instanceof Error ? (c.stack ?? `${c.name}: ${c.message}`) : String(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  return parts.join('\ncaused by: ');
}
