import { join } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { KV_DTYPES, type KvDtype } from '../core/kv-rows.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { ResultsFile } from '../eval/records.js';
import { kvBytesPerSequence, runThroughput } from '../eval/throughput.js';
import { idListFlag, numberFlag, parseFlags } from './args.js';
import { compressionFromFlags, pressFlagHelp, pressFlagSpec } from './press-flags.js';

export const benchHelp = `Usage: kvsieve bench throughput --press P --budget B [--model M] [--gen-len 2048] [--kv-memory 2GiB]
                              [--prompt TEXT | --prompt-ids 1,2,3] [--max-batch N] [--kv-dtype f32|f16|int8]
                              [--results FILE]

Finds the largest batch of sequences whose KV cache fits --kv-memory for the press and budget, decodes
--gen-len tokens per sequence (EOS ignored) in one batch, and reports aggregate tokens/s, batch size and
peak memory, side by side with the full cache measured in the same run.

${pressFlagHelp}
${modelFlagHelp}`;

/** Parses sizes like 2GiB, 512MiB, 1.5GB, 1000000. */
export function parseBytes(flag: string, raw: string): number {
  const m = /^\s*([\d.]+)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(raw);
  const units: Record<string, number> = { b: 1, kb: 1e3, kib: 2 ** 10, mb: 1e6, mib: 2 ** 20, gb: 1e9, gib: 2 ** 30, tb: 1e12, tib: 2 ** 40 };
  const v = m ? Number(m[1]) * units[(m[2] ?? 'b').toLowerCase()]! : NaN;
  if (!Number.isFinite(v) || v <= 0) throw new KvsieveError(`--${flag} must be a size like 2GiB or 512MiB, got "${raw}"`);
  return Math.floor(v);
}

export async function benchCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return void process.stdout.write(benchHelp);
  if (sub !== 'throughput') throw new KvsieveError(`bench: unknown benchmark "${sub}" (one of: throughput)`);
  const { values } = parseFlags(
    rest,
    {
      ...modelFlagSpec,
      'gen-len': { type: 'string' },
      'kv-memory': { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'max-batch': { type: 'string' },
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
  const kvMemoryBytes = parseBytes('kv-memory', (values['kv-memory'] as string | undefined) ?? '2GiB');
  const maxBatch = numberFlag('max-batch', values['max-batch'] as string | undefined, { integer: true, min: 1 });
  const model = await loadModelFromFlags(values);
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
    const rows = [];
    for (const s of [null, settings]) {
      const kvDtype = ((values['kv-dtype'] as string | undefined) ?? 'f32') as KvDtype;
      if (!KV_DTYPES.includes(kvDtype)) throw new KvsieveError(`--kv-dtype must be one of ${KV_DTYPES.join(', ')}, got "${kvDtype}"`);
      const perSeq = kvBytesPerSequence(model, s, promptIds.length, genLen, kvDtype);
      process.stderr.write(`${s?.press ?? 'full'}: ${perSeq} KV bytes per sequence\n`);
      const r = await runThroughput(model, { settings: s, genLen, kvMemoryBytes, promptIds, modelLabel: label, kvDtype, ...(maxBatch ? { maxBatch } : {}) });
      results.append(r);
      rows.push(r);
    }
    const base = rows[0]!.tokensPerSecond;
    process.stdout.write(`gen-len ${genLen}, KV memory ${kvMemoryBytes} bytes, results in ${results.file}\n`);
    process.stdout.write('press          budget  batch  tokens/s   vs full  peak-KV-bytes  peak-RSS-MiB  seconds\n');
    for (const r of rows) {
      process.stdout.write(
        `${r.press.padEnd(14)} ${String(r.budget ?? '-').padStart(6)}  ${String(r.batch).padStart(5)}  ${r.tokensPerSecond.toFixed(1).padStart(8)}  ` +
          `${(r.tokensPerSecond / base).toFixed(2).padStart(6)}x  ${String(r.peakKvBytes).padStart(13)}  ${(r.peakRssBytes / 2 ** 20).toFixed(0).padStart(12)}  ${r.seconds.toFixed(1)}\n`,
      );
    }
  } finally {
    model.dispose();
  }
}
