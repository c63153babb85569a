import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { InternalError } from '../core/errors.js';

/**
 * Charts for `kvsieve report`: Vega-Lite specs compiled by vega-lite, rendered to SVG by vega in
 * Node (no browser, no canvas), and rasterised to PNG by resvg with the system DejaVu fonts.
 */

/** A chart to draw: `name` is the file stem (`name.png`) and the HTML anchor (`chart-name`). */
export interface Chart {
  name: string;
  title: string;
  /** One sentence under the chart saying what it shows. */
  caption: string;
  spec: TopLevelSpec;
}

export interface RenderedChart extends Chart {
  svg: string;
  png: Buffer;
  /** PNG size in pixels. */
  width: number;
  height: number;
}

/** The font stack of every chart: DejaVu Sans where installed (resvg, Linux), then common fallbacks. */
export const CHART_FONT = 'DejaVu Sans, Verdana, Arial, sans-serif';
const FONT_DIRS = ['/usr/share/fonts/truetype/dejavu', '/usr/share/fonts/truetype', '/usr/share/fonts'];

/** Shared look of every chart. */
export const chartConfig = {
  font: CHART_FONT,
  background: 'white',
  padding: 8,
  view: { stroke: '#d0d0d0' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#ececec' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 220 },
  title: { fontSize: 14, anchor: 'start' as const, offset: 10 },
  header: { labelFontSize: 12, titleFontSize: 12 },
};

/** Renders a chart to SVG (vega, headless) and PNG (resvg, `scale` pixels per SVG unit). */
export async function renderChart(chart: Chart, scale = 2): Promise<RenderedChart> {
  let svg: string;
  try {
    const vgSpec = compile({ ...chart.spec, config: { ...chartConfig, ...(chart.spec.config ?? {}) } } as TopLevelSpec).spec;
    const view = new vega.View(vega.parse(vgSpec), { renderer: 'none' });
    try {
      svg = await view.toSVG();
    } finally {
      view.finalize();
    }
  } catch (e) {
    throw new InternalError(`report: chart "${chart.name}" failed to render (${(e as Error).message})`, { cause: e });
  }
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: {
      loadSystemFonts: true,
      fontDirs: FONT_DIRS,
      defaultFontFamily: 'DejaVu Sans',
      sansSerifFamily: 'DejaVu Sans',
    },
  });
  const image = resvg.render();
  return { ...chart, svg, png: image.asPng(), width: image.width, height: image.height };
}

/**
 * Makes an SVG safe to inline next to others in one HTML page: every `id` (vega's clip paths and
 * gradients) gets `prefix`, and so do the references to it.
 */
export function prefixSvgIds(svg: string, prefix: string): string {
  const ids = new Set<string>();
  for (const m of svg.matchAll(/\sid="([^"]+)"/g)) ids.add(m[1]!);
  if (ids.size === 0) return svg;
  return svg
    .replace(/(\sid=")([^"]+)"/g, (_m, a: string, id: string) => `${a}${prefix}${id}"`)
    .replace(/url\(#([^)]+)\)/g, (m, id: string) => (ids.has(id) ? `url(#${prefix}${id})` : m))
    .replace(/(href=")#([^"]+)"/g, (m, a: string, id: string) => (ids.has(id) ? `${a}#${prefix}${id}"` : m));
}

// ---------------------------------------------------------------------------------------------
// Specs. Each takes flat rows prepared by report.ts; `series` is the legend label of a line.

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Log scale (base 2) when the values are positive and span at least a factor of 8, else linear. */
function scaleFor(values: number[]): { type: 'log'; base: number } | { type: 'linear'; zero: boolean } {
  const pos = values.filter((v) => v > 0);
  if (pos.length === values.length && pos.length > 0 && Math.max(...pos) / Math.min(...pos) >= 8) return { type: 'log', base: 2 };
  return { type: 'linear', zero: false };
}

/** Axis ticks at the data's own values when there are few of them (budgets, batch sizes). */
function axisAt(values: number[]): { values?: number[]; labelFlush: boolean } {
  const distinct = [...new Set(values)].sort((a, b) => a - b);
  return distinct.length > 0 && distinct.length <= 12 ? { values: distinct, labelFlush: false } : { labelFlush: false };
}

/** Up to 10 series take category10, more take tableau20. */
function colorScheme(series: string[]): 'category10' | 'tableau20' {
  return new Set(series).size > 10 ? 'tableau20' : 'category10';
}

export interface QualityPoint {
  series: string;
  budget: number | null;
  value: number;
  /** Facet (math dataset); charts get one panel per distinct facet when there are several. */
  facet?: string;
}

/**
 * Quality against KV budget, one line per press; full-cache points (budget null) are drawn as a
 * dashed horizontal rule, the reference the budgeted lines approach.
 */
export function qualityChart(o: { name: string; title: string; caption: string; yTitle: string; points: QualityPoint[] }): Chart {
  const budgets = o.points.filter((p) => p.budget !== null).map((p) => p.budget as number);
  const series = [...new Set(o.points.map((p) => p.series))].sort();
  const color = { field: 'series', type: 'nominal' as const, title: 'press', scale: { scheme: colorScheme(series), domain: series } };
  const y = { field: 'value', type: 'quantitative' as const, title: o.yTitle, scale: { domain: [0, 1] }, axis: { format: '.0%' } };
  const layer = [
    {
      transform: [{ filter: 'datum.budget != null' }],
      mark: { type: 'line' as const, point: { size: 45 }, strokeWidth: 2 },
      encoding: {
        x: { field: 'budget', type: 'quantitative' as const, title: 'KV budget (tokens)', scale: scaleFor(budgets), axis: axisAt(budgets) },
        y,
        color,
        tooltip: [{ field: 'series' }, { field: 'budget' }, { field: 'value', format: '.3f' }],
      },
    },
    {
      transform: [{ filter: 'datum.budget == null' }],
      mark: { type: 'rule' as const, strokeDash: [6, 4], strokeWidth: 1.5 },
      encoding: { y, color },
    },
  ];
  const facets = new Set(o.points.map((p) => p.facet ?? ''));
  const data = { values: o.points.map((p) => ({ ...p, facet: p.facet ?? '' })) };
  const spec: TopLevelSpec =
    facets.size > 1
      ? {
          $schema: SCHEMA,
          title: o.title,
          data,
          facet: { column: { field: 'facet', type: 'nominal', title: null } },
          spec: { width: 300, height: 240, layer },
        }
      : { $schema: SCHEMA, title: o.title, data, width: 460, height: 280, layer };
  return { name: o.name, title: o.title, caption: o.caption, spec };
}

export interface MemoryPoint {
  series: string;
  tokens: number;
  bytes: number;
}

/** Live KV-cache size against generated tokens, one line per press and budget. */
export function memoryChart(points: MemoryPoint[]): Chart {
  const series = [...new Set(points.map((p) => p.series))].sort();
  const title = 'KV-cache memory during generation';
  return {
    name: 'memory',
    title,
    caption: 'Live KV-cache size against generated tokens (mean over prompts at each sampled step), one line per press and budget.',
    spec: {
      $schema: SCHEMA,
      title,
      width: 460,
      height: 280,
      data: { values: points.map((p) => ({ series: p.series, tokens: p.tokens, mib: p.bytes / 2 ** 20 })) },
      mark: { type: 'line', strokeWidth: 2, interpolate: 'linear' },
      encoding: {
        x: { field: 'tokens', type: 'quantitative', title: 'generated tokens' },
        y: { field: 'mib', type: 'quantitative', title: 'live KV cache (MiB)' },
        color: { field: 'series', type: 'nominal', title: 'press (budget)', scale: { scheme: colorScheme(series), domain: series } },
        order: { field: 'tokens', type: 'quantitative' },
      },
    },
  };
}

export interface ThroughputPoint {
  series: string;
  batch: number;
  tokensPerSecond: number;
}

/**
 * Throughput: tokens/s against batch size, one line per press and budget, when some series was
 * measured at several batch sizes; otherwise one bar per press and budget.
 */
export function throughputChart(points: ThroughputPoint[]): Chart {
  const series = [...new Set(points.map((p) => p.series))].sort();
  const batches = new Map<string, Set<number>>();
  for (const p of points) batches.set(p.series, (batches.get(p.series) ?? new Set()).add(p.batch));
  const lines = [...batches.values()].some((b) => b.size > 1);
  const color = { field: 'series', type: 'nominal' as const, title: 'press (budget)', scale: { scheme: colorScheme(series), domain: series } };
  const y = { field: 'tokensPerSecond', type: 'quantitative' as const, title: 'tokens / s' };
  const data = { values: points };
  if (lines) {
    const title = 'Throughput against batch size';
    return {
      name: 'throughput',
      title,
      caption: 'Generated tokens per second against batch size, one line per press and budget.',
      spec: {
        $schema: SCHEMA,
        title,
        width: 460,
        height: 280,
        data,
        mark: { type: 'line', point: { size: 45 }, strokeWidth: 2 },
        encoding: {
          x: {
            field: 'batch',
            type: 'quantitative',
            title: 'batch size',
            scale: scaleFor(points.map((p) => p.batch)),
            axis: axisAt(points.map((p) => p.batch)),
          },
          y,
          color,
        },
      },
    };
  }
  const title = 'Throughput per press';
  return {
    name: 'throughput',
    title,
    caption: 'Generated tokens per second of each press and budget (one batch size each).',
    spec: {
      $schema: SCHEMA,
      title,
      width: { step: 48 },
      height: 280,
      data,
      encoding: { x: { field: 'series', type: 'nominal', title: null, sort: series, axis: { labelAngle: -30 } }, y },
      layer: [
        { mark: { type: 'bar' }, encoding: { color: { ...color, legend: null } } },
        { mark: { type: 'text', dy: -6, fontSize: 10 }, encoding: { text: { field: 'tokensPerSecond', format: '.1f' } } },
      ],
    },
  };
}

export interface MemoryThroughputPoint {
  series: string;
  kvMemoryBytes: number;
  tokensPerSecond: number;
}

/** Aggregate tokens/s against the KV memory limit the runs had, one line per press and budget. */
export function throughputMemoryChart(points: MemoryThroughputPoint[]): Chart {
  const series = [...new Set(points.map((p) => p.series))].sort();
  const title = 'Throughput against KV memory';
  const mib = points.map((p) => ({ ...p, mib: p.kvMemoryBytes / 2 ** 20 }));
  return {
    name: 'throughput-memory',
    title,
    caption: 'Aggregate generated tokens per second of the same requests under each KV memory limit, one line per press and budget.',
    spec: {
      $schema: SCHEMA,
      title,
      width: 460,
      height: 280,
      data: { values: mib },
      mark: { type: 'line', point: { size: 45 }, strokeWidth: 2 },
      encoding: {
        x: { field: 'mib', type: 'quantitative', title: 'KV memory limit (MiB)', scale: scaleFor(mib.map((p) => p.mib)), axis: axisAt(mib.map((p) => p.mib)) },
        y: { field: 'tokensPerSecond', type: 'quantitative', title: 'aggregate tokens / s' },
        color: { field: 'series', type: 'nominal', title: 'press (budget)', scale: { scheme: colorScheme(series), domain: series } },
      },
    },
  };
}

export interface NeedleCell {
  series: string;
  length: number;
  depth: number;
  accuracy: number;
  n: number;
}

/** Needle-in-a-haystack heat map: prompt length × needle depth, colour = accuracy, one panel per press and budget. */
export function needleChart(cells: NeedleCell[]): Chart {
  const series = [...new Set(cells.map((c) => c.series))].sort();
  const title = 'Needle retrieval accuracy';
  return {
    name: 'needle',
    title,
    caption: 'Accuracy of each (prompt length, needle depth) cell, one panel per press and budget; green is found, red is missed.',
    spec: {
      $schema: SCHEMA,
      title,
      data: { values: cells.map((c) => ({ ...c, depthLabel: `${Math.round(c.depth * 100)}%` })) },
      mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
      width: { step: 46 },
      height: { step: 22 },
      encoding: {
        facet: { field: 'series', type: 'nominal', title: null, columns: 3, sort: series },
        x: { field: 'length', type: 'ordinal', title: 'prompt tokens', axis: { labelAngle: 0 } },
        y: { field: 'depthLabel', type: 'ordinal', title: 'needle depth', sort: { field: 'depth', op: 'min' } },
        color: {
          field: 'accuracy',
          type: 'quantitative',
          title: 'accuracy',
          scale: { domain: [0, 1], scheme: 'redyellowgreen' },
          legend: { format: '.0%' },
        },
        tooltip: [{ field: 'series' }, { field: 'length' }, { field: 'depthLabel', title: 'depth' }, { field: 'accuracy', format: '.0%' }, { field: 'n' }],
      },
    },
  };
}
