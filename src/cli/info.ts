import { KvsieveError } from '../core/errors.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { parseFlags } from './args.js';

export const infoHelp = `Usage: kvsieve info [--model DIR|FILE|NAME] [--json]

Prints the model's architecture, parameter count, stored dtype, context length, KV-cache bytes
per token (float32 K and V over all layers and KV heads), and the memory its weights take.

${modelFlagHelp}`;

export async function infoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    { ...modelFlagSpec, json: { type: 'boolean' }, debug: { type: 'boolean' }, help: { type: 'boolean' } },
    'info',
  );
  if (values.help) {
    process.stdout.write(infoHelp);
    return;
  }
  if (positionals.length > 0) throw new KvsieveError(`info: unexpected argument "${positionals[0]}" (use --model)`);
  const model = await loadModelFromFlags(values);
  try {
    const info = model.info();
    if (values.json) {
      process.stdout.write(JSON.stringify(info) + '\n');
      return;
    }
    const rows: [string, string | number][] = [
      ['model', info.path],
      ['format', info.format],
      ['backend', info.backend],
      ['architecture', info.architecture],
      ['parameters', info.parameters.toLocaleString('en-US')],
      ['dtype', info.dtype],
      ['context length', info.contextLength],
      ['layers', info.layers],
      ['hidden size', info.hiddenSize],
      ['heads / KV heads', `${info.heads} / ${info.kvHeads} (head dim ${info.headDim})`],
      ...(info.slidingWindow ? [['sliding window', `${info.slidingWindow.tokens} tokens on ${info.slidingWindow.layers} of ${info.layers} layers`] as [string, string]] : []),
      ...(info.experts ? [['experts', `${info.experts.perToken} of ${info.experts.count} per token (width ${info.experts.width}) on ${info.experts.layers} of ${info.layers} layers`] as [string, string]] : []),
      ['vocabulary', info.vocabSize],
      ['KV bytes per token', `${info.kvBytesPerToken} (float32)`],
      ['weight bytes', `${info.weightBytes.toLocaleString('en-US')} (as the backend holds them)`],
      ['tokenizer', info.tokenizer ?? 'none'],
      ['chat template', info.chatTemplate ? 'yes' : 'no'],
      ...(info.harmony ? [['reply format', 'harmony (reasoning in the analysis channel)'] as [string, string]] : []),
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(20)} ${v}\n`);
  } finally {
    model.dispose();
  }
}
