import { KvsieveError } from '../core/errors.js';
import { parseFlags } from './args.js';

export const reportHelp = `Usage: kvsieve report RESULTS.jsonl [MORE.jsonl ...] --out DIR [--title TEXT]

Writes an HTML report of evaluation results (fidelity, math, needle, throughput records) to
DIR/index.html, with one PNG per chart beside it. The page is self-contained: inline CSS and
inline SVG charts, no scripts, no external URLs; it opens offline in any browser.

Tables aggregate per press and budget (records of all files are pooled); charts show quality
against KV budget, KV memory against generated tokens, throughput against batch size and the
needle-in-a-haystack heat map, for whichever kinds are present.

Options:
  --out DIR     output directory (created; index.html and *.png are replaced atomically)
  --title TEXT  page title (default "kvsieve evaluation report")
  --debug       show stack traces on errors
  --help        this text
`;

/** Where the command writes (tests pass their own). */
export interface ReportIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export async function reportCommand(argv: string[], io: ReportIo = process): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    { out: { type: 'string' }, title: { type: 'string' }, debug: { type: 'boolean' }, help: { type: 'boolean' } },
    'report',
  );
  if (values.help) {
    io.stdout.write(reportHelp);
    return;
  }
  if (positionals.length === 0) throw new KvsieveError('report: give at least one RESULTS.jsonl file (see kvsieve report --help)');
  if (values.out === undefined || values.out.trim() === '') throw new KvsieveError('report: --out DIR is required (see kvsieve report --help)');
  // Loaded on demand: vega, vega-lite and resvg are only needed here.
  const { writeReport } = await import('../eval/report.js');
  const r = await writeReport(positionals, values.out, values.title === undefined ? {} : { title: values.title });
  for (const [kind, count] of Object.entries(r.ignored)) {
    io.stderr.write(`kvsieve report: ignored ${count} record${count === 1 ? '' : 's'} of unknown kind "${kind}"\n`);
  }
  io.stdout.write(`wrote ${r.html} (${r.records} records; charts: ${r.charts.join(', ') || 'none'})\n`);
}
