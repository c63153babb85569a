#!/usr/bin/env node
import { describeFailure, EXIT_USAGE } from './errors.js';

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

type Command = (argv: string[]) => Promise<void>;

/**
 * Each command is imported when it runs: eval and report need the optional evaluation packages
 * (vega, vega-lite, @resvg/resvg-js, @cortex-js/compute-engine), which the other commands must not.
 */
const commands: Record<string, () => Promise<Command>> = {
  generate: async () => (await import('./generate.js')).generateCommand,
  info: async () => (await import('./info.js')).infoCommand,
  presses: async () => (await import('./presses.js')).pressesCommand,
  calibrate: async () => (await import('./calibrate.js')).calibrateCommand,
  eval: async () => (await import('./eval.js')).evalCommand,
  bench: async () => (await import('./bench.js')).benchCommand,
  report: async () => (await import('./report.js')).reportCommand,
  serve: async () => (await import('./serve.js')).serveCommand,
  pull: async () => (await import('./pull.js')).pullCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(help);
    return command === undefined ? EXIT_USAGE : 0;
  }
  const load = commands[command];
  if (!load) {
    process.stderr.write(`kvsieve: unknown command "${command}" (commands: ${Object.keys(commands).join(', ')})\n`);
    return EXIT_USAGE;
  }
  try {
    const run = await load();
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
