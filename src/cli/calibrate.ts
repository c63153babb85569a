import { calibrateQFilters, readCalibrationText } from '../calibrate/q-filters.js';
import { calibrateTriAttention, generatedSequences, textSequences } from '../calibrate/triattention.js';
import { writeQFilters } from '../formats/q-filters.js';
import { readPublishedStats, writeTriAttentionStats } from '../formats/triattention.js';
import { KvsieveError } from '../core/errors.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { numberFlag, parseFlags } from './args.js';

export const calibrateHelp = `Usage: kvsieve calibrate q-filters --model M --data FILE.txt --out DIR
                          [--sequences 20] [--seq-len 2048] [--samples 3000] [--seed 0]
       kvsieve calibrate triattention --model M --data FILE.txt --out FILE.safetensors [--max-length 32768] [--sequences 1]
       kvsieve calibrate triattention --model M --prompts FILE.txt --out FILE.safetensors
                          [--max-tokens 4096] [--samples 1] [--temperature 0.6] [--top-p 0.95] [--seed 0] [--chat]
       kvsieve calibrate triattention --from PUBLISHED.pt --out FILE.safetensors [--model M]

q-filters: runs the model over the calibration text, samples query vectors per layer and query head,
takes the first singular vector of each head's sample (sign rule), averages per KV head, and writes
DIR/model.safetensors (q_filters [layers, kv_heads, head_dim]) with DIR/config.json.
Use them with "kvsieve generate --press q-filters --q-filters DIR".

triattention: per layer, query head and frequency band, the complex mean and the mean magnitude of the
query as RoPE receives it (after q_norm), over every position of the calibration sequences: the text
(no chat template; --sequences pieces of --max-length tokens, the first one by default), or the
model's own generations from the prompts in --prompts (one per line; each trace is prompt +
generation; the published statistics were made from reasoning traces). Writes one safetensors file
(q_mean_re, q_mean_im, q_abs_mean [layers, query heads, head_dim / 2]). --from converts a published
statistics file (torch.save .pt) instead; --model then checks it against a model. Use them with
"kvsieve generate --press triattention --triattention-stats FILE" (a published .pt is read too).

${modelFlagHelp}`;

export async function calibrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...modelFlagSpec,
      data: { type: 'string' },
      prompts: { type: 'string' },
      from: { type: 'string' },
      out: { type: 'string' },
      sequences: { type: 'string' },
      'seq-len': { type: 'string' },
      'max-length': { type: 'string' },
      'max-tokens': { type: 'string' },
      samples: { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      chat: { type: 'boolean' },
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
  const method = positionals[0];
  if ((method !== 'q-filters' && method !== 'triattention') || positionals.length !== 1) {
    throw new KvsieveError('calibrate: the methods are "q-filters" and "triattention" (kvsieve calibrate --help)');
  }
  if (method === 'triattention') return triattention(values);
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

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

async function triattention(values: Values): Promise<void> {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const out = str('out');
  if (!out) throw new KvsieveError('calibrate triattention: --out FILE.safetensors is required');
  const sources = (['data', 'prompts', 'from'] as const).filter((k) => str(k) !== undefined);
  if (sources.length !== 1) throw new KvsieveError('calibrate triattention: give exactly one of --data FILE.txt, --prompts FILE.txt, --from FILE.pt');
  const from = str('from');
  if (from !== undefined) {
    const model = str('model') !== undefined ? await loadModelFromFlags(values) : null;
    try {
      const c = model?.config;
      const stats = readPublishedStats(from, c ? { numLayers: c.numLayers, numQHeads: c.numHeads, headDim: c.headDim } : {});
      writeTriAttentionStats(out, stats, { source: from, ...(model ? { model: model.info().path } : {}) });
      process.stderr.write(`triattention: ${stats.numLayers} layers x ${stats.numQHeads} query heads x ${stats.bands} bands from ${from} -> ${out}\n`);
    } finally {
      model?.dispose();
    }
    return;
  }
  const model = await loadModelFromFlags(values);
  try {
    const t0 = performance.now();
    let sequences: number[][];
    const data = str('data');
    if (data !== undefined) {
      sequences = textSequences(
        model,
        readCalibrationText(data),
        numberFlag('max-length', str('max-length'), { integer: true, min: 1 }) ?? 32768,
        numberFlag('sequences', str('sequences'), { integer: true, min: 1 }) ?? 1,
      );
    } else {
      const file = str('prompts')!;
      const prompts = readCalibrationText(file).split('\n').map((l) => l.trim()).filter(Boolean);
      if (prompts.length === 0) throw new KvsieveError(`--prompts ${file}: no prompt (one per line)`);
      sequences = await generatedSequences(model, prompts, {
        maxTokens: numberFlag('max-tokens', str('max-tokens'), { integer: true, min: 1 }) ?? 4096,
        samples: numberFlag('samples', str('samples'), { integer: true, min: 1 }) ?? 1,
        temperature: numberFlag('temperature', str('temperature'), { min: 0 }) ?? 0.6,
        topP: numberFlag('top-p', str('top-p'), { min: 0, max: 1 }) ?? 0.95,
        seed: numberFlag('seed', str('seed'), { integer: true, min: 0 }) ?? 0,
        ...(values['chat'] === true ? { chat: true } : {}),
      });
    }
    const r = calibrateTriAttention(model, sequences);
    writeTriAttentionStats(out, r.stats, { model: model.info().path, source: data ?? str('prompts')!, tokens: r.tokens });
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    process.stderr.write(`triattention: ${r.sequences} sequences, ${r.tokens} tokens, ${seconds} s -> ${out}\n`);
  } finally {
    model.dispose();
  }
}
