#!/usr/bin/env node
import { KvsieveError } from '../core/errors.js';
import { generateCommand } from './generate.js';
import { infoCommand } from './info.js';
import { calibrateCommand } from './calibrate.js';
import { pressesCommand } from './presses.js';
import { evalCommand } from './eval.js';
import { benchCommand } from './bench.js';
import { reportCommand } from './report.js';
import { serveCommand } from './serve.js';
import { pullCommand } from './pull.js';

const help = `kvsieve — LLM inference with a compressed KV cache

Usage: kvsieve <command> [options]

Commands:
  generate   generate text from a prompt (streams to stdout), with or without KV compression
  info       describe a model
  pull       download a model from the Hugging Face Hub into its cache (kvsieve pull ORG/NAME)
  presses    list the KV-cache compression methods and their options
  calibrate  compute Q-Filters for a model (calibrate q-filters)
  eval       fidelity against the full cache, reasoning accuracy, needle in a haystack, scoring
  bench      throughput: the largest batch that fits a KV memory limit, against the full cache
  serve      OpenAI-compatible HTTP server (completions, chat completions, streaming)
  report     write an HTML report (tables and charts, PNG copies) from eval results files

Run "kvsieve <command> --help" for a command's options.
Models named without a path are looked up in KVSIEVE_MODEL_PATH (directories separated by ':');
models named ORG/NAME are also looked up in the Hugging Face cache (see kvsieve pull).
`;

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  generate: generateCommand,
  info: infoCommand,
  presses: pressesCommand,
  calibrate: calibrateCommand,
  eval: evalCommand,
  bench: benchCommand,
  report: (argv) => reportCommand(argv),
  serve: serveCommand,
  pull: pullCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(help);
    return command === undefined ? 2 : 0;
  }
  const run = commands[command];
  if (!run) {
    process.stderr.write(`kvsieve: unknown command "${command}" (commands: ${Object.keys(commands).join(', ')})\n`);
    return 2;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    if (rest.includes('--debug')) process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    else if (e instanceof KvsieveError) process.stderr.write(`kvsieve: ${e.message}\n`);
    else process.stderr.write(`kvsieve: internal error: ${(e as Error).message ?? String(e)} (rerun with --debug)\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
