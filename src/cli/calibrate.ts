import { calibrateQFilters, readCalibrationText } from '../calibrate/q-filters.js';
import { writeQFilters } from '../formats/q-filters.js';
import { KvsieveError } from '../core/errors.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { numberFlag, parseFlags } from './args.js';

export const calibrateHelp = `Usage: kvsieve calibrate q-filters --model M --data FILE.txt --out DIR
                          [--sequences 20] [--seq-len 2048] [--samples 3000] [--seed 0]

Computes Q-Filters for a model: runs it over the calibration text, samples query vectors per layer and
query head, takes the first singular vector of each head's sample (sign rule), averages per KV head,
and writes DIR/model.safetensors (q_filters [layers, kv_heads, head_dim]) with DIR/config.json.
Use them with "kvsieve generate --press q-filters --q-filters DIR".

${modelFlagHelp}`;

export async function calibrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...modelFlagSpec,
      data: { type: 'string' },
      out: { type: 'string' },
      sequences: { type: 'string' },
      'seq-len': { type: 'string' },
      samples: { type: 'string' },
      seed: { type: 'string' },
      debug: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    'calibrate',
  );
  if (values.help) {
    process.stdout.write(calibrateHelp);
    return;
  }
  if (positionals[0] !== 'q-filters' || positionals.length !== 1) {
    throw new KvsieveError('calibrate: the only method is "q-filters" (kvsieve calibrate q-filters --help)');
  }
  if (!values.data) throw new KvsieveError('calibrate q-filters: --data FILE.txt is required');
  if (!values.out) throw new KvsieveError('calibrate q-filters: --out DIR is required');
  const text = readCalibrationText(values.data);
  const model = await loadModelFromFlags(values);
  try {
    if (!model.tokenizer) throw new KvsieveError('calibrate q-filters: the model has no tokenizer to read the calibration text');
    const ids = model.tokenizer.encode(text, { addBos: false });
    const t0 = performance.now();
    const r = calibrateQFilters(model, ids, {
      sequences: numberFlag('sequences', values.sequences, { integer: true, min: 1 }),
      seqLen: numberFlag('seq-len', values['seq-len'], { integer: true, min: 2 }),
      samples: numberFlag('samples', values.samples, { integer: true, min: 1 }),
      seed: numberFlag('seed', values.seed, { integer: true, min: 0 }),
    });
    writeQFilters(values.out, r.filters, model.config);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    process.stderr.write(
      `q-filters: ${r.sequences} sequences, ${r.tokens} tokens, ${r.samplesPerHead} queries per head, ${seconds} s -> ${values.out}\n`,
    );
  } finally {
    model.dispose();
  }
}
