import { formatPresses } from '../press/table.js';
import { parseFlags } from './args.js';

export const pressesHelp = `Usage: kvsieve presses

Lists the KV-cache compression methods (presses) with their options, defaults and ranges.
Options are given to "kvsieve generate" as kebab-case flags (--budget 64 --window 8 ...).
`;

export async function pressesCommand(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, { help: { type: 'boolean' }, debug: { type: 'boolean' } }, 'presses');
  process.stdout.write(values.help ? pressesHelp : formatPresses() + '\n');
}
