/** The benchmarks' command lines: `--name value`, `--name=value`, or a bare `--flag` (read as 'true'). */
import { KvsieveError } from '../src/core/errors.js';

/** Every option by name; `known`, when given, refuses any other (naming the file that documents them). */
export function optionMap(argv: readonly string[], known?: { names: readonly string[]; docs: string }): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new KvsieveError(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    if (eq > 0) {
      m.set(a.slice(2, eq), a.slice(eq + 1));
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) m.set(a.slice(2), 'true');
    else m.set(a.slice(2), (i++, next));
  }
  if (known) {
    const names = new Set(known.names);
    for (const k of m.keys()) if (!names.has(k)) throw new KvsieveError(`unknown option --${k} (see ${known.docs})`);
  }
  return m;
}
