import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import {
  memoryChart,
  needleChart,
  prefixSvgIds,
  qualityChart,
  renderChart,
  throughputChart,
  throughputMemoryChart,
  type Chart,
  type MemoryPoint,
  type RenderedChart,
} from './charts.js';
import { readResults, type EvalRecord, type FidelityRecord, type MathRecord, type NeedleRecord, type ThroughputRecord } from './records.js';

/**
 * `kvsieve report`: reads JSONL results files (src/eval/records.ts), aggregates them per press and
 * budget, and writes a self-contained HTML page (inline CSS and inline SVG charts, no scripts, no
 * external URLs) plus one PNG per chart.
 *
 * Aggregation (records of all files are pooled; rows are per model × press × budget, and further
 * per dataset for math and per generation length × batch for throughput):
 * - fidelity: means over prompts of identical fraction, first divergence, mean KL and perplexity;
 *   the max of max KL and of peak KV bytes. Null metrics (JSON has no NaN/Infinity) are skipped.
 * - math: pass@1 = mean over problems of the fraction of that problem's samples that are correct;
 *   mean output tokens over all samples; max peak KV bytes.
 * - throughput: mean tokens/s over repeated runs, and its ratio to the `full` press of the same
 *   model, generation length and batch.
 * - needle: accuracy over all cells, and per prompt length.
 */

// ---------------------------------------------------------------------------------------------
// Loading

/** A record that passed validation, with where it came from. */
export interface LoadedRecord<R extends EvalRecord = EvalRecord> {
  record: R;
  file: string;
  line: number;
}

export interface LoadedResults {
  fidelity: FidelityRecord[];
  math: MathRecord[];
  needle: NeedleRecord[];
  throughput: ThroughputRecord[];
  /** Records of kinds the report does not know, counted by kind. */
  ignored: Record<string, number>;
  files: { file: string; records: number }[];
}

const KINDS = ['fidelity', 'math', 'needle', 'throughput'] as const;

/** Reads and validates results files. Missing, empty and malformed files are errors naming the file (and line). */
export function loadResults(files: string[]): LoadedResults {
  if (files.length === 0) throw new KvsieveError('report: give at least one results file');
  const out: LoadedResults = { fidelity: [], math: [], needle: [], throughput: [], ignored: {}, files: [] };
  const seen = new Set<string>();
  for (const file of files) {
    const abs = resolve(file);
    if (seen.has(abs)) throw new KvsieveError(`${file}: results file given twice`);
    seen.add(abs);
    if (!existsSync(file)) throw new KvsieveError(`${file}: results file not found`);
    if (statSync(file).isDirectory()) throw new KvsieveError(`${file}: is a directory, not a results file`);
    const records = readResults(file);
    if (records.length === 0) throw new KvsieveError(`${file}: no results records (empty file)`);
    // readResults keeps one record per non-blank line, in order: map them back to line numbers.
    const lines: number[] = [];
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((l, i) => {
        if (l.trim() !== '') lines.push(i + 1);
      });
    records.forEach((r, i) => {
      const where = `${file}:${lines[i] ?? '?'}`;
      const kind = r.kind as string;
      if (!(KINDS as readonly string[]).includes(kind)) {
        out.ignored[kind] = (out.ignored[kind] ?? 0) + 1;
        return;
      }
      validate(r, where);
      (out[r.kind] as EvalRecord[]).push(r);
    });
    out.files.push({ file, records: records.length });
  }
  return out;
}

function validate(r: EvalRecord, where: string): void {
  const bad = (field: string, what: string): never => {
    throw new KvsieveError(`${where}: ${r.kind} record "${r.key}": "${field}" must be ${what}`);
  };
  const v = r as unknown as Record<string, unknown>;
  const num = (f: string, o: { nullable?: boolean; optional?: boolean; min?: number } = {}) => {
    const x = v[f];
    if (x === undefined && o.optional) return;
    if (x === null && o.nullable) return;
    if (typeof x !== 'number' || !Number.isFinite(x) || (o.min !== undefined && x < o.min)) {
      bad(f, `a number${o.min !== undefined ? ` >= ${o.min}` : ''}${o.nullable ? ' or null' : ''}`);
    }
  };
  const str = (f: string) => typeof v[f] === 'string' || bad(f, 'a string');
  const bool = (f: string) => typeof v[f] === 'boolean' || bad(f, 'true or false');
  str('press');
  if (v['model'] !== undefined) str('model');
  num('budget', { nullable: true, min: 0 });
  switch (r.kind) {
    case 'fidelity': {
      for (const f of ['identical', 'firstDivergence', 'meanKl', 'maxKl', 'perplexity', 'peakKvBytes', 'generated']) {
        num(f, { nullable: true, optional: f === 'generated' });
      }
      const t = v['kvTrace'];
      if (t !== undefined && t !== null) {
        const ok = Array.isArray(t) && t.every((p) => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'number' && Number.isFinite(x)));
        if (!ok) bad('kvTrace', 'a list of [tokens, bytes] number pairs');
      }
      break;
    }
    case 'math':
      bool('correct');
      num('outputTokens', { min: 0 });
      num('peakKvBytes', { nullable: true, optional: true });
      if (v['dataset'] !== undefined) str('dataset');
      if (typeof v['id'] !== 'string' && typeof v['id'] !== 'number') bad('id', 'a string or number');
      break;
    case 'needle':
      num('length', { min: 0 });
      num('depth', { min: 0 });
      bool('correct');
      break;
    case 'throughput':
      num('batch', { min: 1 });
      num('tokensPerSecond', { min: 0 });
      num('peakKvBytes', { nullable: true, optional: true });
      num('genLen', { nullable: true, optional: true });
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Aggregation

export interface Group {
  model: string;
  press: string;
  budget: number | null;
}

export interface FidelityRow extends Group {
  prompts: number;
  identical: number | null;
  firstDivergence: number | null;
  meanKl: number | null;
  maxKl: number | null;
  perplexity: number | null;
  peakKvBytes: number | null;
}

export interface MathRow extends Group {
  dataset: string;
  problems: number;
  samples: number;
  /** pass@1: mean over problems of the fraction of correct samples. */
  accuracy: number;
  meanOutputTokens: number;
  peakKvBytes: number | null;
}

export interface ThroughputRow extends Group {
  genLen: number | null;
  batch: number;
  /** The KV memory limit the runs had (0 or null: none recorded). */
  kvMemoryBytes: number | null;
  runs: number;
  tokensPerSecond: number;
  /** tokens/s over that of press `full` with the same model, genLen and batch (null when none). */
  ratioToFull: number | null;
  peakKvBytes: number | null;
}

export interface NeedleRow extends Group {
  cells: number;
  accuracy: number;
  /** Accuracy per prompt length, ascending by length. */
  byLength: { length: number; accuracy: number; cells: number }[];
}

export interface NeedleCellRow extends Group {
  length: number;
  depth: number;
  n: number;
  accuracy: number;
}

export interface Summary {
  models: string[];
  fidelity: FidelityRow[];
  math: MathRow[];
  throughput: ThroughputRow[];
  needle: NeedleRow[];
  needleCells: NeedleCellRow[];
  /** Mean live KV bytes per generated-token step, per fidelity group. */
  memory: (Group & { tokens: number; bytes: number })[];
}

const modelOf = (r: EvalRecord) => r.model ?? '';

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    const list = m.get(k);
    if (list) list.push(t);
    else m.set(k, [t]);
  }
  return m;
}

const groupKey = (r: EvalRecord) => JSON.stringify([modelOf(r), r.press, r.budget]);
const groupOf = (r: EvalRecord): Group => ({ model: modelOf(r), press: r.press, budget: r.budget });

/** Mean of the finite values (null when there are none). */
function mean(xs: (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
}

function max(xs: (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  return v.length === 0 ? null : Math.max(...v);
}

/** Row order: model, `full` first then presses alphabetically, full cache (null) before budgets ascending. */
export function compareGroups(a: Group, b: Group): number {
  if (a.model !== b.model) return a.model < b.model ? -1 : 1;
  if (a.press !== b.press) {
    if (a.press === 'full') return -1;
    if (b.press === 'full') return 1;
    return a.press < b.press ? -1 : 1;
  }
  if (a.budget === b.budget) return 0;
  if (a.budget === null) return -1;
  if (b.budget === null) return 1;
  return a.budget - b.budget;
}

export function summarize(data: LoadedResults): Summary {
  const all: EvalRecord[] = [...data.fidelity, ...data.math, ...data.needle, ...data.throughput];
  const models = [...new Set(all.map(modelOf))].sort();

  const fidelity: FidelityRow[] = [];
  const memory: Summary['memory'] = [];
  for (const rs of groupBy(data.fidelity, groupKey).values()) {
    fidelity.push({
      ...groupOf(rs[0]!),
      prompts: rs.length,
      identical: mean(rs.map((r) => r.identical)),
      firstDivergence: mean(rs.map((r) => r.firstDivergence)),
      meanKl: mean(rs.map((r) => r.meanKl)),
      maxKl: max(rs.map((r) => r.maxKl)),
      perplexity: mean(rs.map((r) => r.perplexity)),
      peakKvBytes: max(rs.map((r) => r.peakKvBytes)),
    });
    const steps = new Map<number, number[]>();
    for (const r of rs) for (const [t, b] of r.kvTrace ?? []) steps.set(t, [...(steps.get(t) ?? []), b]);
    for (const [tokens, bytes] of [...steps].sort((a, b) => a[0] - b[0])) {
      memory.push({ ...groupOf(rs[0]!), tokens, bytes: mean(bytes)! });
    }
  }

  const math: MathRow[] = [];
  for (const rs of groupBy(data.math, (r) => JSON.stringify([r.dataset ?? '', groupKey(r)])).values()) {
    const problems = groupBy(rs, (r) => String(r.id));
    const perProblem = [...problems.values()].map((ps) => ps.filter((p) => p.correct).length / ps.length);
    math.push({
      ...groupOf(rs[0]!),
      dataset: rs[0]!.dataset ?? '',
      problems: problems.size,
      samples: rs.length,
      accuracy: mean(perProblem)!,
      meanOutputTokens: mean(rs.map((r) => r.outputTokens))!,
      peakKvBytes: max(rs.map((r) => r.peakKvBytes)),
    });
  }

  const throughput: ThroughputRow[] = [];
  for (const rs of groupBy(data.throughput, (r) => JSON.stringify([groupKey(r), r.genLen ?? null, r.batch, r.kvMemoryBytes ?? null])).values()) {
    throughput.push({
      ...groupOf(rs[0]!),
      genLen: rs[0]!.genLen ?? null,
      batch: rs[0]!.batch,
      kvMemoryBytes: rs[0]!.kvMemoryBytes ?? null,
      runs: rs.length,
      tokensPerSecond: mean(rs.map((r) => r.tokensPerSecond))!,
      ratioToFull: null,
      peakKvBytes: max(rs.map((r) => r.peakKvBytes)),
    });
  }
  for (const row of throughput) {
    const full = throughput.find((f) => f.press === 'full' && f.model === row.model && f.genLen === row.genLen && f.batch === row.batch);
    if (full && full.tokensPerSecond > 0) row.ratioToFull = row.tokensPerSecond / full.tokensPerSecond;
  }

  const needle: NeedleRow[] = [];
  const needleCells: NeedleCellRow[] = [];
  for (const rs of groupBy(data.needle, groupKey).values()) {
    const acc = (xs: NeedleRecord[]) => xs.filter((x) => x.correct).length / xs.length;
    needle.push({
      ...groupOf(rs[0]!),
      cells: rs.length,
      accuracy: acc(rs),
      byLength: [...groupBy(rs, (r) => String(r.length)).values()]
        .map((xs) => ({ length: xs[0]!.length, accuracy: acc(xs), cells: xs.length }))
        .sort((a, b) => a.length - b.length),
    });
    for (const xs of groupBy(rs, (r) => `${r.length}/${r.depth}`).values()) {
      needleCells.push({ ...groupOf(xs[0]!), length: xs[0]!.length, depth: xs[0]!.depth, n: xs.length, accuracy: acc(xs) });
    }
  }

  fidelity.sort(compareGroups);
  math.sort((a, b) => (a.dataset !== b.dataset ? (a.dataset < b.dataset ? -1 : 1) : compareGroups(a, b)));
  throughput.sort((a, b) => compareGroups(a, b) || (a.genLen ?? 0) - (b.genLen ?? 0) || a.batch - b.batch);
  needle.sort(compareGroups);
  return { models, fidelity, math, throughput, needle, needleCells, memory };
}

// ---------------------------------------------------------------------------------------------
// Charts

/** Legend label of a group: press, with the budget in parentheses, prefixed by the model when several. */
export function seriesLabel(g: Group, withBudget: boolean, withModel: boolean): string {
  const press = withBudget && g.budget !== null ? `${g.press} (${g.budget})` : g.press;
  return withModel ? `${g.model}: ${press}` : press;
}

/** The charts for the kinds present, in page order. */
export function reportCharts(s: Summary): Chart[] {
  const multi = s.models.length > 1;
  const charts: Chart[] = [];
  if (s.fidelity.some((r) => r.budget !== null && r.identical !== null)) {
    charts.push(
      qualityChart({
        name: 'fidelity-quality',
        title: 'Fidelity to the full cache against KV budget',
        caption: 'Mean fraction of greedy tokens identical to the full-cache run, one line per press; dashed lines are full-cache rows.',
        yTitle: 'identical tokens',
        points: s.fidelity
          .filter((r) => r.identical !== null)
          .map((r) => ({ series: seriesLabel(r, false, multi), budget: r.budget, value: r.identical! })),
      }),
    );
  }
  if (s.memory.length > 0) {
    const points: MemoryPoint[] = s.memory.map((m) => ({ series: seriesLabel(m, true, multi), tokens: m.tokens, bytes: m.bytes }));
    charts.push(memoryChart(points));
  }
  if (s.math.some((r) => r.budget !== null)) {
    charts.push(
      qualityChart({
        name: 'math-accuracy',
        title: 'Math accuracy (pass@1) against KV budget',
        caption: 'pass@1 averaged over samples, one line per press (one panel per dataset when several); dashed lines are full-cache rows.',
        yTitle: 'pass@1',
        points: s.math.map((r) => ({ series: seriesLabel(r, false, multi), budget: r.budget, value: r.accuracy, facet: r.dataset })),
      }),
    );
  }
  if (s.throughput.length > 0) {
    // Several generation lengths would overlap on one batch axis: label them apart.
    const genLens = new Set(s.throughput.map((r) => r.genLen));
    charts.push(
      throughputChart(
        s.throughput.map((r) => ({
          series: seriesLabel(r, true, multi) + (genLens.size > 1 ? `, ${r.genLen ?? '?'} tokens` : ''),
          batch: r.batch,
          tokensPerSecond: r.tokensPerSecond,
        })),
      ),
    );
  }
  const limited = s.throughput.filter((r) => (r.kvMemoryBytes ?? 0) > 0);
  if (new Set(limited.map((r) => r.kvMemoryBytes)).size > 1) {
    charts.push(throughputMemoryChart(limited.map((r) => ({ series: seriesLabel(r, true, multi), kvMemoryBytes: r.kvMemoryBytes!, tokensPerSecond: r.tokensPerSecond }))));
  }
  if (s.needleCells.length > 0) {
    charts.push(needleChart(s.needleCells.map((c) => ({ series: seriesLabel(c, true, multi), length: c.length, depth: c.depth, accuracy: c.accuracy, n: c.n }))));
  }
  return charts;
}

// ---------------------------------------------------------------------------------------------
// HTML

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Table number formats (the raw value is kept in each cell's `data-value`). */
export const fmt = {
  percent: (x: number) => `${(x * 100).toFixed(1)}%`,
  fixed1: (x: number) => x.toFixed(1),
  fixed2: (x: number) => x.toFixed(2),
  /** Three significant digits, plain notation down to 1e-4. */
  sig3: (x: number) => (x !== 0 && Math.abs(x) < 1e-4 ? x.toExponential(2) : Number(x.toPrecision(3)).toString()),
  mib: (x: number) => `${(x / 2 ** 20).toFixed(2)} MiB`,
  ratio: (x: number) => `${x.toFixed(2)}×`,
  int: (x: number) => String(Math.round(x)),
};

type Cell = string | { value: number | null; format: (x: number) => string };

function td(c: Cell): string {
  if (typeof c === 'string') return `<td>${escapeHtml(c)}</td>`;
  if (c.value === null) return '<td class="num" data-value="">—</td>';
  return `<td class="num" data-value="${c.value}">${escapeHtml(c.format(c.value))}</td>`;
}

function table(id: string, head: string[], rows: Cell[][]): string {
  const th = head.map((h) => `<th scope="col">${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map(td).join('')}</tr>`).join('\n');
  return `<table id="${id}"><thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody></table>`;
}

const budgetText = (b: number | null) => (b === null ? 'full' : String(b));
const n = (value: number | null, format: (x: number) => string): Cell => ({ value, format });

function groupCells(g: Group, multi: boolean): Cell[] {
  return [...(multi ? [g.model] : []), g.press, budgetText(g.budget)];
}

function groupHead(multi: boolean): string[] {
  return [...(multi ? ['model'] : []), 'press', 'budget'];
}

function figure(c: RenderedChart): string {
  const svg = prefixSvgIds(c.svg, `${c.name}-`).replace(/^<svg /, `<svg role="img" aria-label="${escapeHtml(c.title)}" `);
  return `<figure class="chart" id="chart-${c.name}">
${svg}
<figcaption>${escapeHtml(c.caption)} <a href="${c.name}.png">PNG</a></figcaption>
</figure>`;
}

const CSS = `
body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; color: #222; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
p.meta, p.note { color: #555; font-size: .9rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e4e4e4; text-align: left; }
th { background: #f5f5f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #fafafa; }
figure.chart { margin: 1.5rem 0; overflow-x: auto; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .85rem; margin-top: .3rem; }
code { font-size: .85rem; }
`;

export function renderHtml(o: { title: string; data: LoadedResults; summary: Summary; charts: RenderedChart[] }): string {
  const { summary: s, charts } = o;
  const multi = s.models.length > 1;
  const chart = (name: string) => charts.filter((c) => c.name === name).map(figure).join('\n');
  const sections: { id: string; title: string; html: string }[] = [];

  if (s.fidelity.length > 0) {
    sections.push({
      id: 'fidelity',
      title: 'Fidelity to the full cache',
      html: `<p>Per press and budget, over ${o.data.fidelity.length} prompt runs: mean fraction of greedy tokens identical to the full-cache run, mean tokens before the first divergence, mean and max KL(full ‖ compressed), mean perplexity of the full-cache continuation, and peak KV-cache bytes.</p>
${table(
  'table-fidelity',
  [...groupHead(multi), 'prompts', 'identical', 'first divergence', 'mean KL', 'max KL', 'perplexity', 'peak KV'],
  s.fidelity.map((r) => [
    ...groupCells(r, multi),
    n(r.prompts, fmt.int),
    n(r.identical, fmt.percent),
    n(r.firstDivergence, fmt.fixed1),
    n(r.meanKl, fmt.sig3),
    n(r.maxKl, fmt.sig3),
    n(r.perplexity, fmt.fixed2),
    n(r.peakKvBytes, fmt.mib),
  ]),
)}
${chart('fidelity-quality')}
${chart('memory')}`,
    });
  }
  if (s.math.length > 0) {
    sections.push({
      id: 'math',
      title: 'Math accuracy',
      html: `<p>pass@1 is the fraction of correct samples of each problem, averaged over problems; output length is the mean over all samples.</p>
${table(
  'table-math',
  ['dataset', ...groupHead(multi), 'problems', 'samples', 'pass@1', 'mean output tokens', 'peak KV'],
  s.math.map((r) => [r.dataset, ...groupCells(r, multi), n(r.problems, fmt.int), n(r.samples, fmt.int), n(r.accuracy, fmt.percent), n(r.meanOutputTokens, fmt.fixed1), n(r.peakKvBytes, fmt.mib)]),
)}
${chart('math-accuracy')}`,
    });
  }
  if (s.throughput.length > 0) {
    sections.push({
      id: 'throughput',
      title: 'Throughput',
      html: `<p>Generated tokens per second (mean over repeated runs) and the ratio to the <code>full</code> press at the same batch size and generation length.</p>
${table(
  'table-throughput',
  [...groupHead(multi), 'gen tokens', 'batch', 'runs', 'tokens/s', 'vs full', 'peak KV'],
  s.throughput.map((r) => [
    ...groupCells(r, multi),
    n(r.genLen, fmt.int),
    n(r.batch, fmt.int),
    n(r.runs, fmt.int),
    n(r.tokensPerSecond, fmt.fixed1),
    n(r.ratioToFull, fmt.ratio),
    n(r.peakKvBytes, fmt.mib),
  ]),
)}
${chart('throughput')}`,
    });
  }
  if (s.needle.length > 0) {
    const lengths = [...new Set(s.needle.flatMap((r) => r.byLength.map((b) => b.length)))].sort((a, b) => a - b);
    sections.push({
      id: 'needle',
      title: 'Needle in a haystack',
      html: `<p>Fraction of cells whose answer contains the needle, overall and per prompt length (tokens).</p>
${table(
  'table-needle',
  [...groupHead(multi), 'cells', 'accuracy', ...lengths.map((l) => `${l} tok`)],
  s.needle.map((r) => [
    ...groupCells(r, multi),
    n(r.cells, fmt.int),
    n(r.accuracy, fmt.percent),
    ...lengths.map((l) => n(r.byLength.find((b) => b.length === l)?.accuracy ?? null, fmt.percent)),
  ]),
)}
${chart('needle')}`,
    });
  }

  const files = o.data.files.map((f) => `<code>${escapeHtml(basename(f.file))}</code> (${f.records})`).join(', ');
  const ignored = Object.entries(o.data.ignored);
  const ignoredNote =
    ignored.length === 0 ? '' : `<p class="note">Ignored records of unknown kinds: ${ignored.map(([k, c]) => `${escapeHtml(k)} (${c})`).join(', ')}.</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(o.title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${escapeHtml(o.title)}</h1>
<p class="meta">Results: ${files}. Model${s.models.length === 1 ? '' : 's'}: ${s.models.map((m) => `<code>${escapeHtml(m || '(unnamed)')}</code>`).join(', ')}.</p>
${ignoredNote}
<nav>${sections.map((x) => `<a href="#${x.id}">${escapeHtml(x.title)}</a>`).join('')}</nav>
</header>
${sections.map((x) => `<section id="${x.id}">\n<h2>${escapeHtml(x.title)}</h2>\n${x.html}\n</section>`).join('\n')}
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------
// Writing

let tmpCounter = 0;

/** Writes `file` through a temporary name in the same directory and a rename. */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}-${tmpCounter++}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new KvsieveError(`${file}: cannot write (${(e as Error).message})`, { cause: e });
  }
}

export interface ReportOptions {
  title?: string;
  /** PNG pixels per SVG unit (default 2). */
  scale?: number;
}

export interface ReportResult {
  html: string;
  /** PNG paths, in page order. */
  pngs: string[];
  charts: string[];
  records: number;
  ignored: Record<string, number>;
}

/**
 * Reads the results files and writes `outDir/index.html` and `outDir/<chart>.png` (creating
 * `outDir`). Each file is written atomically; index.html goes last.
 */
export async function writeReport(files: string[], outDir: string, options: ReportOptions = {}): Promise<ReportResult> {
  const data = loadResults(files);
  const total = KINDS.reduce((a, k) => a + data[k].length, 0);
  if (total === 0) {
    const kinds = Object.keys(data.ignored).join(', ');
    throw new KvsieveError(`${files.join(', ')}: no fidelity, math, needle or throughput records (found only: ${kinds})`);
  }
  const summary = summarize(data);
  const charts: RenderedChart[] = [];
  for (const c of reportCharts(summary)) charts.push(await renderChart(c, options.scale ?? 2));
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw new KvsieveError(`outDir ${outDir}: cannot create directory (${(e as Error).message})`, { cause: e, option: 'outDir' });
  }
  const pngs: string[] = [];
  for (const c of charts) {
    const p = join(outDir, `${c.name}.png`);
    writeFileAtomic(p, c.png);
    pngs.push(p);
  }
  const html = join(outDir, 'index.html');
  writeFileAtomic(html, renderHtml({ title: options.title ?? 'kvsieve evaluation report', data, summary, charts }));
  return { html, pngs, charts: charts.map((c) => c.name), records: total, ignored: data.ignored };
}
