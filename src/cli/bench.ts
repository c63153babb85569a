import { join } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { KV_DTYPES, type KvDtype } from '../core/kv-rows.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { ResultsFile } from '../eval/records.js';
import { kvBytesPerSequence, runThroughput } from '../eval/throughput.js';
import { idListFlag, numberFlag, parseFlags } from './args.js';
import { pressName } from '../press/table.js';
import { compressionFromFlags, pressFlagHelp, pressFlagSpec } from './press-flags.js';

export const benchHelp = `Usage: kvsieve bench throughput --press P --budget B [--model M] [--gen-len 2048] [--kv-memory 2GiB]
                              [--requests N] [--prompt TEXT | --prompt-ids 1,2,3] [--kv-dtype f32|f16|int8]
                              [--results FILE]

Submits --requests sequences of --gen-len tokens each (EOS ignored) at once, first with the full cache,
then with the press, under one KV memory limit (--kv-memory, default 2GiB): the pool runs as many
together as fit (full-cache ones grow and are preempted; compressed ones reserve their budget). Reports
aggregate tokens/s, time to finish them all, the most that ran together, preemptions, peak KV bytes and
peak process memory. --requests defaults to the number of compressed sequences the memory holds.

${pressFlagHelp}
${modelFlagHelp}`;

export async function benchCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return void process.stdout.write(benchHelp);
  if (sub !== 'throughput') throw new KvsieveError(`bench: unknown benchmark "${sub}" (one of: throughput)`);
  const { values } = parseFlags(
    rest,
    {
      ...modelFlagSpec,
      'gen-len': { type: 'string' },
      requests: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'kv-dtype': { type: 'string' },
      results: { type: 'string' },
      debug: { type: 'boolean' },
      help: { type: 'boolean' },
      ...pressFlagSpec,
    },
    'bench throughput',
  );
  if (values.help) return void process.stdout.write(benchHelp);
  const genLen = numberFlag('gen-len', values['gen-len'] as string | undefined, { integer: true, min: 1 }) ?? 2048;
  const requests = numberFlag('requests', values['requests'] as string | undefined, { integer: true, min: 1, max: 4096 });
  const model = await loadModelFromFlags({ ...values, 'kv-memory': (values['kv-memory'] as string | undefined) ?? '2GiB' });
  try {
    const settings = compressionFromFlags(values, model.config);
    if (!settings) throw new KvsieveError('bench throughput: --press is required (full is measured alongside)');
    const promptIds =
      idListFlag('prompt-ids', values['prompt-ids'] as string | undefined) ??
      (model.tokenizer ? model.encodePrompt((values.prompt as string | undefined) ?? 'Once upon a time') : [model.config.bosTokenId ?? 1]);
    if (promptIds.length + genLen > model.config.maxPositions) {
      throw new KvsieveError(`--gen-len ${genLen} plus a ${promptIds.length}-token prompt exceeds the context (${model.config.maxPositions})`);
    }
    const results = new ResultsFile((values.results as string | undefined) ?? join('results', 'throughput.jsonl'));
    const label = model.info().path;
    const kvDtype = ((values['kv-dtype'] as string | undefined) ?? 'f32') as KvDtype;
    if (!KV_DTYPES.includes(kvDtype)) throw new KvsieveError(`--kv-dtype must be one of ${KV_DTYPES.join(', ')}, got "${kvDtype}"`);
    const limit = model.kvStats().limitBytes;
    const n = requests ?? Math.max(1, Math.min(512, Math.floor(limit / kvBytesPerSequence(model, settings, promptIds.length, genLen, kvDtype))));
    const rows = [];
    for (const s of [null, settings]) {
      process.stderr.write(`${s ? pressName(s.press) : 'full'}: ${kvBytesPerSequence(model, s, promptIds.length, genLen, kvDtype)} KV bytes per sequence at most\n`);
      const r = await runThroughput(model, { settings: s, genLen, requests: n, promptIds, modelLabel: label, kvDtype });
      results.append(r);
      rows.push(r);
    }
    const base = rows[0]!.tokensPerSecond;
    process.stdout.write(`${n} requests of ${genLen} tokens, KV memory ${limit} bytes, results in ${results.file}\n`);
    process.stdout.write('press          budget  batch  preempt  tokens/s   vs full  peak-KV-bytes  peak-RSS-MiB  seconds\n');
    for (const r of rows) {
      process.stdout.write(
        `${r.press.padEnd(14)} ${String(r.budget ?? '-').padStart(6)}  ${String(r.batch).padStart(5)}  ${String(r.preemptions).padStart(7)}  ${r.tokensPerSecond.toFixed(1).padStart(8)}  ` +
          `${(r.tokensPerSecond / base).toFixed(2).padStart(6)}x  ${String(r.peakKvBytes).padStart(13)}  ${(r.peakRssBytes / 2 ** 20).toFixed(0).padStart(12)}  ${r.seconds.toFixed(1)}\n`,
      );
    }
  } finally {
    model.dispose();
  }
}
