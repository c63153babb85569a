/**
 * npm run fuzz -- [--seed S] [--cases N] [--time-limit SECONDS] [--format F[,F...]] [--workers W] [--light] [--json FILE]
 * npm run fuzz -- --seed S --case K --format F [--light] [--keep DIR]      rerun one case (and keep its files)
 *
 * Mutates valid seed files of every format kvsieve loads (safetensors, sharded index, GGUF, config.json,
 * tokenizer.json, chat templates, llama2.c .bin and tokenizer) and loads each case through loadModel in
 * worker processes; prints the outcome counts per format and the first examples of each defect class.
 * Exits non-zero when there is a defect. See scripts/fuzz/runner.ts for the classes.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FORMATS, type Format } from './seeds.js';
import { DEFECTS, formatReport, runFuzz } from './runner.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    cases: { type: 'string', default: '1000' },
    'time-limit': { type: 'string' },
    case: { type: 'string' },
    format: { type: 'string' },
    workers: { type: 'string', default: '2' },
    keep: { type: 'string' },
    light: { type: 'boolean' },
    json: { type: 'string' },
    help: { type: 'boolean' },
  },
});

if (values.help) {
  console.log(`npm run fuzz -- [--seed S] [--cases N] [--time-limit S] [--format ${FORMATS.join('|')}[,...]] [--workers W] [--light] [--json FILE]
npm run fuzz -- --seed S --case K --format F [--light] [--keep DIR]
--light: generated values of at most 100,000 items (the smoke run in npm test)`);
  process.exit(0);
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const formats = values.format?.split(',').map((f) => f.trim()) as Format[] | undefined;
for (const f of formats ?? []) {
  if (!FORMATS.includes(f)) {
    console.error(`--format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(f)}`);
    process.exit(2);
  }
}
const only = int('case', values.case);
if (only !== undefined && formats?.length !== 1) {
  console.error('--case needs --format with one format');
  process.exit(2);
}

const report = await runFuzz({
  seed: int('seed', values.seed)!,
  cases: int('cases', values.cases)!,
  ...(formats ? { formats } : {}),
  ...(values['time-limit'] !== undefined ? { timeLimitS: int('time-limit', values['time-limit'])! } : {}),
  ...(only !== undefined ? { only } : {}),
  workers: int('workers', values.workers)!,
  ...(values.keep ? { keep: values.keep } : {}),
  ...(values.light ? { light: true } : {}),
  log: (line) => console.error(line),
});

if (report.single) {
  const r = report.single;
  console.log(`case ${r.index} of ${r.format} (seed ${report.seed}), from seed files ${r.seedName}`);
  for (const w of r.what) console.log(`  mutation: ${w}`);
  console.log(`  outcome: ${r.outcome} in ${r.ms.toFixed(0)} ms, peak RSS ${(r.hwmKb / 1024).toFixed(0)} MiB`);
  if (r.message !== undefined) console.log(`  ${r.errorName ?? 'error'}: ${r.message}`);
  if (r.stack) console.log(r.stack.split('\n').map((l) => `    ${l}`).join('\n'));
  if (values.keep) console.log(`  files kept in ${values.keep}`);
} else {
  console.log(formatReport(report));
}
if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
const defects = Object.values(report.counts).reduce((n, c) => n + DEFECTS.reduce((m, x) => m + c[x], 0), 0);
process.exit(defects > 0 ? 1 : 0);
