import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../api.js';
import { KvsieveError } from '../core/errors.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import type { CompressionSettings } from '../generate/compression.js';
import { parseAnswerFormat } from '../eval/answer.js';
import { loadDataset } from '../eval/datasets.js';
import { runFidelity, summariseFidelity } from '../eval/fidelity.js';
import { datasetLabel, modelCompleter, runMath, summariseMath } from '../eval/math.js';
import { DEFAULT_NEEDLE, runNeedle } from '../eval/needle.js';
import { Progress } from '../eval/progress.js';
import { readResults, ResultsFile } from '../eval/records.js';
import { scorePredictions } from '../eval/score.js';
import { BUILTIN_PRESSES, lookupPress, parsePressFlag } from '../press/table.js';
import type { PressOptionSpec } from '../press/types.js';
import { idListFlag, numberFlag, parseFlags, type OptionSpec } from './args.js';

export const evalHelp = `Usage: kvsieve eval <fidelity|math|needle|score> [options]

  fidelity  compressed vs full-cache generation: first divergence, identical tokens, KL, perplexity, peak KV
            --prompts FILE (one prompt per line) | --prompt TEXT (repeatable) | --prompt-ids 1,2,3
            --max-tokens N (default 256)
  math      reasoning accuracy on GSM8K / MATH-500 / AIME JSONL files
            --dataset FILE.jsonl --format gsm8k|math500|aime [--limit N] [--samples 1] [--temperature 0.6]
            [--top-p 0.95] [--seed 0] [--max-tokens 16384]
  needle    needle in a haystack over a length x depth grid (exact match of the expected text)
            [--lengths 128,256,480] [--depths 0,0.25,0.5,0.75,1] [--needle TEXT --question TEXT --expected TEXT]
            [--filler FILE] [--max-tokens 12]
  score     grade completions produced elsewhere
            --dataset FILE.jsonl --format gsm8k|math500|aime --predictions PRED.jsonl [--json]
            (each prediction line: {"id": ..., "completion": "..."}; ids match the dataset's id, or its line number)

Common options (fidelity, math, needle):
${modelFlagHelp}  --presses a,b,c           presses to compare (default full,r-kv,snapkv,streaming-llm,h2o); full runs once;
                            NAME+pp protects the prompt (r-kv+pp), NAME-pp does not (random-pp-pp)
  --budgets 32,64,128       budgets for every press but full
  --buffer N                decode-time buffer (default: the press's, 128 for most)
  --window N                observation/protected window, for the presses that have one
  --q-filters DIR           calibrated filters (needed for q-filters)
  --triattention-stats F    calibrated query statistics (needed for triattention; kvsieve calibrate triattention)
  --results FILE            JSONL results; finished items are skipped on a rerun (default results/<command>.jsonl)
  --debug --help
Make an HTML report with charts: kvsieve report FILE.jsonl --out DIR
`;

const common = {
  ...modelFlagSpec,
  presses: { type: 'string' },
  budgets: { type: 'string' },
  buffer: { type: 'string' },
  window: { type: 'string' },
  ...Object.fromEntries(requiredFileOptions().map((s) => [s.flag!, { type: 'string' as const }])),
  results: { type: 'string' },
  'max-tokens': { type: 'string' },
  debug: { type: 'boolean' },
  help: { type: 'boolean' },
} as const satisfies OptionSpec;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;
const str = (v: Values, k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);

/** The required options of the built-in presses that the CLI reads from a file (q-filters' filters, triattention's stats). */
function requiredFileOptions(): PressOptionSpec[] {
  return BUILTIN_PRESSES.flatMap((p) => p.options.filter((o) => o.required && o.flag !== null && o.fromFlag !== undefined));
}

/**
 * Press configurations (without budget) from --presses (NAME+pp / NAME-pp: protectPrompt on / off),
 * --buffer, --window and the flags of the presses' required files (--q-filters, --triattention-stats).
 */
export function pressList(values: Values, model: Model, fallback = 'full,r-kv,snapkv,streaming-llm,h2o'): CompressionSettings[] {
  const names = (str(values, 'presses') ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
  const buffer = numberFlag('buffer', str(values, 'buffer'), { integer: true, min: 1 });
  const window = numberFlag('window', str(values, 'window'), { integer: true, min: 0 });
  const c = model.config;
  const ctx = { numLayers: c.numLayers, numKvHeads: c.numKvHeads, numQHeads: c.numHeads, headDim: c.headDim };
  const read = new Map<string, unknown>(); // a file named once is read once, for every press that takes it
  return names.map((entry) => {
    // A press's own name wins (random-pp); otherwise a +pp / -pp suffix sets protectPrompt.
    const pp = BUILTIN_PRESSES.some((p) => p.name === entry) ? null : /[+-]pp$/.exec(entry);
    const press = pp ? entry.slice(0, -3) : entry;
    let def;
    try {
      def = lookupPress(press);
    } catch {
      throw new KvsieveError(`--presses: unknown press "${press}" (see kvsieve presses)`);
    }
    const s: CompressionSettings = { press };
    if (pp) {
      if (!def.options.some((o) => o.name === 'protectPrompt')) throw new KvsieveError(`--presses ${entry}: ${press} has no budget, so no prompt to protect`);
      s.protectPrompt = pp[0] === '+pp';
    }
    if (buffer !== undefined) s.buffer = buffer;
    if (window !== undefined && def.options.some((o) => o.name === 'window')) s.window = window;
    for (const spec of def.options.filter((o) => o.required && o.flag !== null && o.fromFlag !== undefined)) {
      const raw = str(values, spec.flag!);
      if (raw === undefined) throw new KvsieveError(`--presses ${press} needs --${spec.flag} (${spec.description})`);
      if (!read.has(spec.flag!)) read.set(spec.flag!, parsePressFlag(press, spec.flag!, raw, undefined, ctx).value);
      s[spec.name] = read.get(spec.flag!);
    }
    return s;
  });
}

export function budgetList(values: Values, fallback = '32,64,128'): number[] {
  return (idListFlag('budgets', str(values, 'budgets') ?? fallback) ?? []).filter((b) => b > 0);
}

function resultsFile(values: Values, command: string): ResultsFile {
  return new ResultsFile(str(values, 'results') ?? join('results', `${command}.jsonl`));
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

async function fidelity(argv: string[]): Promise<void> {
  const { values } = parseFlags(
    argv,
    { ...common, prompts: { type: 'string' }, prompt: { type: 'string', multiple: true }, 'prompt-ids': { type: 'string' } },
    'eval fidelity',
  );
  if (values.help) return void process.stdout.write(evalHelp);
  const model = await loadModelFromFlags(values);
  try {
    let prompts: (string | number[])[] = [];
    const file = str(values, 'prompts');
    if (file) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new KvsieveError(`--prompts ${file}: cannot read (${(e as Error).message})`);
      }
      prompts = text.split('\n').map((l) => l.trim()).filter(Boolean);
    }
    prompts.push(...((values.prompt as string[] | undefined) ?? []));
    const ids = idListFlag('prompt-ids', str(values, 'prompt-ids'));
    if (ids) prompts.push(ids);
    if (prompts.length === 0) prompts = ['Once upon a time'];
    const presses = pressList(values, model);
    const budgets = budgetList(values);
    const results = resultsFile(values, 'fidelity');
    const maxTokens = numberFlag('max-tokens', str(values, 'max-tokens'), { integer: true, min: 1 }) ?? 256;
    const progress = new Progress({ total: prompts.length * (1 + presses.filter((p) => p.press !== 'full').length * budgets.length), label: 'fidelity' });
    const records = await runFidelity(model, {
      prompts,
      presses: presses.filter((p) => p.press !== 'full'),
      budgets,
      maxTokens,
      modelLabel: model.info().path,
      results,
      onItem: (r) => progress.tick(1, r.generated),
    });
    progress.done();
    const all = readResults(results.file).filter((r) => r.kind === 'fidelity');
    process.stdout.write(`${records.length} new records in ${results.file}\n`);
    process.stdout.write('press          budget  identical  first-div  mean-KL   max-KL    ppl      peak-KV-bytes\n');
    for (const s of summariseFidelity(all as Parameters<typeof summariseFidelity>[0])) {
      process.stdout.write(
        `${s.press.padEnd(14)} ${String(s.budget ?? '-').padStart(6)}  ${pct(s.identical).padStart(9)}  ${s.firstDivergence.toFixed(0).padStart(9)}  ` +
          `${s.meanKl.toFixed(4).padStart(7)}  ${s.maxKl.toFixed(3).padStart(7)}  ${s.perplexity.toFixed(3).padStart(7)}  ${s.peakKvBytes}\n`,
      );
    }
  } finally {
    model.dispose();
  }
}

async function math(argv: string[]): Promise<void> {
  const { values } = parseFlags(
    argv,
    {
      ...common,
      dataset: { type: 'string' },
      format: { type: 'string' },
      limit: { type: 'string' },
      samples: { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
    },
    'eval math',
  );
  if (values.help) return void process.stdout.write(evalHelp);
  const datasetFile = str(values, 'dataset');
  if (!datasetFile) throw new KvsieveError('eval math: --dataset FILE.jsonl is required');
  const format = parseAnswerFormat(str(values, 'format') ?? 'math500', '--format');
  const limit = numberFlag('limit', str(values, 'limit'), { integer: true, min: 1 });
  const items = loadDataset(datasetFile, format).slice(0, limit ?? Infinity);
  const samples = numberFlag('samples', str(values, 'samples'), { integer: true, min: 1 }) ?? 1;
  const sampling = {
    temperature: numberFlag('temperature', str(values, 'temperature'), { min: 0 }) ?? 0.6,
    topP: numberFlag('top-p', str(values, 'top-p'), { min: 0, max: 1 }) ?? 0.95,
    seed: numberFlag('seed', str(values, 'seed'), { integer: true, min: 0 }) ?? 0,
    maxTokens: numberFlag('max-tokens', str(values, 'max-tokens'), { integer: true, min: 1 }) ?? 16384,
  };
  const model = await loadModelFromFlags(values);
  try {
    const presses = pressList(values, model, 'full,r-kv');
    const budgets = budgetList(values, '128');
    const results = resultsFile(values, 'math');
    const configs = presses.reduce((n, p) => n + (p.press === 'full' ? 1 : budgets.length), 0);
    const progress = new Progress({ total: items.length * configs, label: 'math' });
    const settingsKey = `t${sampling.temperature}|p${sampling.topP}|s${sampling.seed}|n${samples}|m${sampling.maxTokens}`;
    const records = await runMath(modelCompleter(model, sampling), {
      items,
      format,
      dataset: datasetLabel(datasetFile),
      modelLabel: model.info().path,
      samples,
      presses,
      budgets,
      settingsKey,
      results,
      onItem: (rs) => progress.tick(1, rs.reduce((a, r) => a + r.outputTokens, 0)),
    });
    progress.done();
    const all = readResults(results.file).filter((r) => r.kind === 'math' && r.dataset === datasetLabel(datasetFile));
    process.stdout.write(`${records.length} new records in ${results.file}\n`);
    process.stdout.write('press          budget  problems  samples  pass@1   mean-output-tokens\n');
    for (const s of summariseMath(all as Parameters<typeof summariseMath>[0])) {
      process.stdout.write(
        `${s.press.padEnd(14)} ${String(s.budget ?? '-').padStart(6)}  ${String(s.problems).padStart(8)}  ${String(s.samples).padStart(7)}  ${pct(s.accuracy).padStart(6)}   ${s.meanOutputTokens.toFixed(1)}\n`,
      );
    }
  } finally {
    model.dispose();
  }
}

async function needle(argv: string[]): Promise<void> {
  const { values } = parseFlags(
    argv,
    {
      ...common,
      lengths: { type: 'string' },
      depths: { type: 'string' },
      needle: { type: 'string' },
      question: { type: 'string' },
      expected: { type: 'string' },
      filler: { type: 'string' },
    },
    'eval needle',
  );
  if (values.help) return void process.stdout.write(evalHelp);
  const depths = (str(values, 'depths') ?? '0,0.25,0.5,0.75,1').split(',').map((x) => {
    const v = Number(x);
    if (x.trim() === '' || !(v >= 0 && v <= 1)) throw new KvsieveError(`--depths must be numbers in [0, 1], got "${x}"`);
    return v;
  });
  const settings = { ...DEFAULT_NEEDLE };
  for (const k of ['needle', 'question', 'expected'] as const) {
    const v = str(values, k);
    if (v !== undefined) settings[k] = v;
  }
  const fillerFile = str(values, 'filler');
  if (fillerFile) {
    try {
      settings.filler = readFileSync(fillerFile, 'utf8');
    } catch (e) {
      throw new KvsieveError(`--filler ${fillerFile}: cannot read (${(e as Error).message})`);
    }
  }
  const model = await loadModelFromFlags(values);
  try {
    const ctx = model.config.maxPositions;
    const lengths = idListFlag('lengths', str(values, 'lengths')) ?? [128, 256, Math.min(ctx - 32, 480)];
    const presses = pressList(values, model);
    const budgets = budgetList(values, '64');
    const results = resultsFile(values, 'needle');
    const configs = presses.reduce((n, p) => n + (p.press === 'full' ? 1 : budgets.length), 0);
    const progress = new Progress({ total: lengths.length * depths.length * configs, label: 'needle' });
    const records = await runNeedle(model, {
      lengths,
      depths,
      settings,
      maxTokens: numberFlag('max-tokens', str(values, 'max-tokens'), { integer: true, min: 1 }) ?? 12,
      presses,
      budgets,
      modelLabel: model.info().path,
      results,
      onItem: () => progress.tick(1),
    });
    progress.done();
    const all = readResults(results.file).filter((r) => r.kind === 'needle');
    process.stdout.write(`${records.length} new records in ${results.file}\n`);
    const groups = new Map<string, boolean[]>();
    for (const r of all) {
      if (r.kind !== 'needle') continue;
      const k = `${r.press} ${r.budget ?? '-'}`;
      groups.set(k, [...(groups.get(k) ?? []), r.correct]);
    }
    for (const [k, v] of groups) process.stdout.write(`${k.padEnd(22)} ${pct(v.filter(Boolean).length / v.length)} of ${v.length} cells\n`);
  } finally {
    model.dispose();
  }
}

async function score(argv: string[]): Promise<void> {
  const { values } = parseFlags(
    argv,
    { dataset: { type: 'string' }, format: { type: 'string' }, predictions: { type: 'string' }, json: { type: 'boolean' }, debug: { type: 'boolean' }, help: { type: 'boolean' } },
    'eval score',
  );
  if (values.help) return void process.stdout.write(evalHelp);
  if (!values.dataset) throw new KvsieveError('eval score: --dataset FILE.jsonl is required');
  if (!values.predictions) throw new KvsieveError('eval score: --predictions PRED.jsonl is required');
  const format = parseAnswerFormat(values.format ?? 'math500', '--format');
  const r = scorePredictions(values.dataset, format, values.predictions);
  if (values.json) {
    process.stdout.write(
      JSON.stringify({ accuracy: r.accuracy, correct: r.correct, total: r.total, missing: r.missing, items: r.items.map((i) => ({ id: i.id, extracted: i.extracted, correct: i.correct })) }) + '\n',
    );
    return;
  }
  for (const i of r.items) process.stdout.write(`${String(i.id).padEnd(12)} ${i.correct ? 'correct' : 'wrong  '}  ${i.extracted ?? '(no answer)'}  [truth ${i.truth}]\n`);
  process.stdout.write(`accuracy ${pct(r.accuracy)} (${r.correct}/${r.total}${r.missing.length ? `, ${r.missing.length} missing` : ''})\n`);
}

const subcommands: Record<string, (argv: string[]) => Promise<void>> = { fidelity, math, needle, score };

export async function evalCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return void process.stdout.write(evalHelp);
  const run = subcommands[sub];
  if (!run) throw new KvsieveError(`eval: unknown evaluation "${sub}" (one of: ${Object.keys(subcommands).join(', ')})`);
  await run(rest);
}
