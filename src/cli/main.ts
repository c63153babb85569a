#!/usr/bin/env node
import { describeFailure, EXIT_USAGE } from './errors.js';
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
Exit status: 0 done, 1 bad input (the message names the flag or file at fault), 2 no or unknown command,
70 internal error (a bug in kvsieve: rerun with --debug and report the stack trace).
Models named without a path are looked up in KVSIEVE_MODEL_PATH (directories separated by ':');
Hugging Face ids (ORG/NAME[/FOLDER][@REVISION]) in the Hugging Face cache, and downloaded into it
when missing (HF_HUB_OFFLINE=1: never). The default model, stories260K, comes from karpathy/tinyllamas
the first time it is needed when it is not found locally.
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
    return command === undefined ? EXIT_USAGE : 0;
  }
  const run = commands[command];
  if (!run) {
    process.stderr.write(`kvsieve: unknown command "${command}" (commands: ${Object.keys(commands).join(', ')})\n`);
    return EXIT_USAGE;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    const { text, code } = describeFailure(e, command, rest.includes('--debug'));
    process.stderr.write(text);
    return code;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
