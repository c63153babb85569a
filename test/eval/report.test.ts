import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateSync } from 'node:zlib';
import { reportCommand } from '../../src/cli/report.js';
import { KvsieveError } from '../../src/core/errors.js';
import { loadResults, writeReport } from '../../src/eval/report.js';
import { tempDir } from '../helpers.js';

const MiB = 2 ** 20;
/** The Chromium scripts/run-tests.mjs found or installed (scripts/chromium.mjs), else Debian's. */
const CHROMIUM = process.env['KVSIEVE_CHROMIUM'] || '/usr/bin/chromium';

// ---------------------------------------------------------------------------------------------
// Synthetic results: all four kinds, realistic magnitudes, written out of table order.

const base = (kind: string, key: string, press: string, budget: number | null, model = 'Qwen3-0.6B') => ({
  kind,
  key,
  model,
  press,
  budget,
  time: '2025-06-01T12:00:00.000Z',
});

/** KV bytes per token of the pretend model (28 layers x 8 KV heads x 128 x 2 x fp32 / 56 ...): 16 KiB. */
const PER_TOKEN = 16384;

function fidelityRecords(): object[] {
  // [identical, firstDivergence, meanKl, maxKl, perplexity, peak MiB] per prompt
  const cfg: [string, number | null, (number | null)[][]][] = [
    ['snapkv', 256, [[0.7, 30, 0.05, 1, 1.5, 5], [0.8, 50, 0.07, 2, 1.7, 5]]],
    // perplexity null: an infinite value written by JSON.stringify; the mean skips it
    ['snapkv', 128, [[0.5, 10, 0.1, 3, 2.0, 3], [0.6, 21, 0.2, 4, null, 3]]],
    ['r-kv', 256, [[0.9, 100, 0.01, 0.8, 1.2, 5], [0.96, 140, 0.012, 0.6, 1.22, 4]]],
    ['r-kv', 128, [[0.75, 40, 0.02, 1.5, 1.3, 3], [0.85, 60, 0.04, 2.5, 1.5, 2]]],
    ['full', null, [[1, 512, 0, 0, 1.1, 8], [1, 512, 0, 0, 1.14, 8]]],
  ];
  const out: object[] = [];
  for (const [press, budget, prompts] of cfg) {
    prompts.forEach(([identical, firstDivergence, meanKl, maxKl, perplexity, peak], prompt) => {
      // prompt of 200 tokens; r-kv keeps budget + 64 buffer tokens, snapkv the budget
      const cap = budget === null ? Infinity : press === 'r-kv' ? budget + 64 : budget;
      const kvTrace = [0, 64, 128, 192, 256, 320, 384, 448, 512].map((t) => [t, Math.min(200 + t, cap + (t % 128 === 64 ? 32 : 0)) * PER_TOKEN]);
      out.push({
        ...base('fidelity', `fidelity/${press}/${budget}/${prompt}`, press, budget),
        prompt,
        generated: 512,
        firstDivergence,
        identical,
        meanKl,
        maxKl,
        perplexity,
        peakKvBytes: peak! * MiB,
        kvTrace,
        compressionSeconds: 0.12,
        decodeSeconds: 6.4,
      });
    });
  }
  return out;
}

function mathRecords(): object[] {
  // [dataset, press, budget, problem id, correct, output tokens, peak MiB]
  const rows: [string, string, number | null, string | number, boolean, number, number][] = [
    ['gsm8k', 'r-kv', 128, 'p1', true, 800, 4],
    ['gsm8k', 'r-kv', 128, 'p1', false, 900, 4],
    ['gsm8k', 'r-kv', 128, 'p2', false, 1000, 4],
    ['gsm8k', 'r-kv', 128, 'p2', false, 1100, 4],
    ['gsm8k', 'r-kv', 128, 'p3', true, 700, 4],
    ['gsm8k', 'full', null, 'p1', true, 500, 10],
    ['gsm8k', 'full', null, 'p1', true, 520, 10],
    ['gsm8k', 'full', null, 'p2', true, 610, 11],
    ['gsm8k', 'full', null, 'p2', false, 700, 12.5],
    ['gsm8k', 'full', null, 'p3', true, 450, 9],
    ['gsm8k', 'r-kv', 256, 'p1', true, 600, 6],
    ['gsm8k', 'r-kv', 256, 'p1', true, 620, 6],
    ['gsm8k', 'r-kv', 256, 'p2', false, 700, 6],
    ['gsm8k', 'r-kv', 256, 'p2', false, 680, 6],
    ['gsm8k', 'r-kv', 256, 'p3', true, 500, 6],
    ['math500', 'full', null, 7, true, 1500, 25],
    ['math500', 'full', null, 8, true, 1700, 28.5],
    ['math500', 'r-kv', 128, 7, true, 1900, 4],
    ['math500', 'r-kv', 128, 8, false, 2100, 4],
  ];
  return rows.map(([dataset, press, budget, id, correct, outputTokens, peak], i) => ({
    ...base('math', `math/${dataset}/${press}/${budget}/${id}/${i}`, press, budget),
    dataset,
    format: 'boxed',
    id,
    sample: i % 2,
    extracted: correct ? '42' : '41',
    truth: '42',
    correct,
    outputTokens,
    stopReason: 'eos',
    peakKvBytes: peak * MiB,
  }));
}

function throughputRecords(): object[] {
  // [press, budget, batch, tokens/s]
  const rows: [string, number | null, number, number][] = [
    ['r-kv', 128, 8, 216],
    ['full', null, 1, 39],
    ['full', null, 1, 41],
    ['full', null, 4, 120],
    ['full', null, 8, 180],
    ['r-kv', 128, 1, 38],
    ['r-kv', 128, 4, 132],
    ['snapkv', 128, 8, 200],
    ['snapkv', 128, 16, 310],
  ];
  return rows.map(([press, budget, batch, tokensPerSecond], i) => ({
    ...base('throughput', `throughput/${i}`, press, budget),
    genLen: 1024,
    kvMemoryBytes: 0,
    batch,
    tokensPerSecond,
    seconds: (1024 * batch) / tokensPerSecond,
    peakKvBytes: batch * (budget ?? 1024) * PER_TOKEN,
    peakRssBytes: 1.5e9,
  }));
}

function needleRecords(): object[] {
  const out: object[] = [];
  for (const [press, budget] of [['snapkv', 128], ['full', null]] as const) {
    for (const length of [1024, 2048, 4096]) {
      for (const depth of [0, 0.5, 1]) {
        // snapkv(128) misses (2048, 50%), (4096, 0%) and (4096, 50%)
        const correct = press === 'full' || length === 1024 || (length === 2048 && depth !== 0.5) || (length === 4096 && depth === 1);
        out.push({
          ...base('needle', `needle/${press}/${length}/${depth}`, press, budget),
          length,
          depth,
          expected: '7421',
          answer: correct ? 'The magic number is 7421.' : 'I could not find it.',
          correct,
        });
      }
    }
  }
  return out;
}

const jsonl = (records: object[]) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

// ---------------------------------------------------------------------------------------------
// Helpers

/** The cells of an HTML table (header row first), entities decoded. */
function tableRows(html: string, id: string): string[][] {
  const m = html.match(new RegExp(`<table id="${id}">([\\s\\S]*?)</table>`));
  assert.ok(m, `table #${id} missing`);
  const decode = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
  return [...m[1]!.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((r) => [...r[1]!.matchAll(/<t[hd][^>]*>([\s\S]*?)<\/t[hd]>/g)].map((c) => decode(c[1]!)));
}

/** Decodes an 8-bit RGB/RGBA non-interlaced PNG into RGBA pixels. */
function decodePng(buf: Buffer): { width: number; height: number; rgba: Uint8Array } {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  let pos = 8;
  let width = 0;
  let height = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth');
      colorType = data[9]!;
      assert.ok(colorType === 6 || colorType === 2, `colour type ${colorType}`);
      assert.equal(data[12], 0, 'interlace');
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const channels = colorType === 6 ? 4 : 3;
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), 'IDAT size');
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x]!;
      const a = x >= channels ? px[y * stride + x - channels]! : 0;
      const b = y > 0 ? px[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels]! : 0;
      let p: number;
      if (filter === 0) p = 0;
      else if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else {
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + x] = (v + p) & 0xff;
    }
  }
  if (channels === 4) return { width, height, rgba: px };
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) rgba.set([px[i * 3]!, px[i * 3 + 1]!, px[i * 3 + 2]!, 255], i * 4);
  return { width, height, rgba };
}

/** Counts pixels matching a predicate on (r, g, b). */
function countPixels(img: { rgba: Uint8Array }, pred: (r: number, g: number, b: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < img.rgba.length; i += 4) if (pred(img.rgba[i]!, img.rgba[i + 1]!, img.rgba[i + 2]!)) n++;
  return n;
}

/** Runs reportCommand with stdout and stderr captured; returns stdout (stderr goes to `lastStderr`). */
let lastStderr = '';
async function runReport(argv: string[]): Promise<string> {
  let out = '';
  lastStderr = '';
  await reportCommand(argv, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (lastStderr += s) } });
  return out;
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), re: RegExp): Promise<void> {
  await assert.rejects(
    async () => (typeof p === 'function' ? p() : p),
    (e: unknown) => {
      assert.ok(e instanceof KvsieveError, `expected KvsieveError, got ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one-line message');
      return true;
    },
  );
}

// ---------------------------------------------------------------------------------------------

const tmp = tempDir('kvsieve-report-');
const fileA = join(tmp.dir, 'quality.jsonl');
const fileB = join(tmp.dir, 'speed.jsonl');
const out = join(tmp.dir, 'report', 'nested');
let html = '';
let stdout = '';
let stderr = '';
const CHARTS = ['fidelity-quality', 'memory', 'math-accuracy', 'throughput', 'needle'];

before(async () => {
  // A blank line and a record of a kind the report does not know must be tolerated.
  writeFileSync(fileA, jsonl(fidelityRecords()) + '\n' + jsonl(mathRecords()) + JSON.stringify({ ...base('calibration', 'cal/0', 'q-filters', null) }) + '\n');
  writeFileSync(fileB, jsonl(throughputRecords()) + jsonl(needleRecords()));
  stdout = await runReport([fileA, fileB, '--out', out, '--title', 'Qwen3 <budget> sweep & co']);
  stderr = lastStderr;
  html = readFileSync(join(out, 'index.html'), 'utf8');
});

after(() => tmp.cleanup());

test('report writes index.html and one PNG per chart, atomically (no temp files left)', () => {
  assert.match(stdout, /^wrote .*index\.html \(56 records; charts: fidelity-quality, memory, math-accuracy, throughput, needle\)\n$/);
  assert.deepEqual(readdirSync(out).sort(), ['index.html', ...CHARTS.map((c) => `${c}.png`)].sort());
  assert.equal(stderr, 'kvsieve report: ignored 1 record of unknown kind "calibration"\n');
  assert.match(html, /<title>Qwen3 &lt;budget&gt; sweep &amp; co<\/title>/);
  assert.match(html, /Ignored records of unknown kinds: calibration \(1\)/);
  // self-contained: no scripts, no external resources, every chart inline and its PNG linked
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i);
  assert.doesNotMatch(html, /<link /i);
  for (const c of CHARTS) {
    assert.match(html, new RegExp(`<figure class="chart" id="chart-${c}">\\s*<svg `), c);
    assert.ok(html.includes(`<a href="${c}.png">`), c);
  }
  // ids of the inlined SVGs are unique across the page
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length, 'duplicate ids');
});

test('fidelity table: per press x budget means over prompts, sorted full first', () => {
  assert.deepEqual(tableRows(html, 'table-fidelity'), [
    ['press', 'budget', 'prompts', 'identical', 'first divergence', 'mean KL', 'max KL', 'perplexity', 'peak KV'],
    ['full', 'full', '2', '100.0%', '512.0', '0', '0', '1.12', '8.00 MiB'],
    ['r-kv', '128', '2', '80.0%', '50.0', '0.03', '2.5', '1.40', '3.00 MiB'],
    ['r-kv', '256', '2', '93.0%', '120.0', '0.011', '0.8', '1.21', '5.00 MiB'],
    // perplexity: (2.0 + null) -> 2.00, the null skipped
    ['snapkv', '128', '2', '55.0%', '15.5', '0.15', '4', '2.00', '3.00 MiB'],
    ['snapkv', '256', '2', '75.0%', '40.0', '0.06', '2', '1.60', '5.00 MiB'],
  ]);
});

test('math table: pass@1 averages per-problem accuracy over problems, not over samples', () => {
  assert.deepEqual(tableRows(html, 'table-math'), [
    ['dataset', 'press', 'budget', 'problems', 'samples', 'pass@1', 'mean output tokens', 'peak KV'],
    // p1 2/2, p2 1/2, p3 1/1 -> (1 + 0.5 + 1) / 3 (4/5 over samples would be 80.0%)
    ['gsm8k', 'full', 'full', '3', '5', '83.3%', '556.0', '12.50 MiB'],
    // p1 1/2, p2 0/2, p3 1/1 -> 0.5 (2/5 = 40.0% over samples)
    ['gsm8k', 'r-kv', '128', '3', '5', '50.0%', '900.0', '4.00 MiB'],
    // p1 2/2, p2 0/2, p3 1/1 -> 2/3 (3/5 = 60.0% over samples)
    ['gsm8k', 'r-kv', '256', '3', '5', '66.7%', '620.0', '6.00 MiB'],
    ['math500', 'full', 'full', '2', '2', '100.0%', '1600.0', '28.50 MiB'],
    ['math500', 'r-kv', '128', '2', '2', '50.0%', '2000.0', '4.00 MiB'],
  ]);
});

test('throughput table: mean tok/s over repeated runs and the ratio to full at the same batch', () => {
  assert.deepEqual(tableRows(html, 'table-throughput'), [
    ['press', 'budget', 'gen tokens', 'batch', 'runs', 'tokens/s', 'vs full', 'peak KV'],
    ['full', 'full', '1024', '1', '2', '40.0', '1.00×', '16.00 MiB'],
    ['full', 'full', '1024', '4', '1', '120.0', '1.00×', '64.00 MiB'],
    ['full', 'full', '1024', '8', '1', '180.0', '1.00×', '128.00 MiB'],
    ['r-kv', '128', '1024', '1', '1', '38.0', '0.95×', '2.00 MiB'],
    ['r-kv', '128', '1024', '4', '1', '132.0', '1.10×', '8.00 MiB'],
    ['r-kv', '128', '1024', '8', '1', '216.0', '1.20×', '16.00 MiB'],
    ['snapkv', '128', '1024', '8', '1', '200.0', '1.11×', '16.00 MiB'],
    // no full run at batch 16
    ['snapkv', '128', '1024', '16', '1', '310.0', '—', '32.00 MiB'],
  ]);
});

test('needle table: accuracy overall and per prompt length', () => {
  assert.deepEqual(tableRows(html, 'table-needle'), [
    ['press', 'budget', 'cells', 'accuracy', '1024 tok', '2048 tok', '4096 tok'],
    ['full', 'full', '9', '100.0%', '100.0%', '100.0%', '100.0%'],
    ['snapkv', '128', '9', '66.7%', '100.0%', '66.7%', '33.3%'],
  ]);
});

test('PNG charts are real images: signature, size, several colours, the series colours present', () => {
  const images = new Map<string, ReturnType<typeof decodePng>>();
  for (const c of CHARTS) {
    const buf = readFileSync(join(out, `${c}.png`));
    assert.ok(buf.length > 10_000, `${c}.png is only ${buf.length} bytes`);
    const img = decodePng(buf);
    assert.ok(img.width >= 500 && img.height >= 300, `${c}.png is ${img.width}x${img.height}`);
    const white = countPixels(img, (r, g, b) => r === 255 && g === 255 && b === 255);
    const dark = countPixels(img, (r, g, b) => r < 80 && g < 80 && b < 80); // text and axes
    const total = img.width * img.height;
    assert.ok(white > total * 0.4 && white < total * 0.995, `${c}.png: ${white}/${total} white pixels`);
    assert.ok(dark > 500, `${c}.png: only ${dark} dark (text) pixels`);
    images.set(c, img);
  }
  // category10 orange (#ff7f0e) and green (#2ca02c) lines: r-kv and snapkv in the fidelity chart
  const near = (R: number, G: number, B: number) => (r: number, g: number, b: number) => Math.abs(r - R) + Math.abs(g - G) + Math.abs(b - B) < 30;
  const fq = images.get('fidelity-quality')!;
  assert.ok(countPixels(fq, near(0xff, 0x7f, 0x0e)) > 200, 'orange r-kv line');
  assert.ok(countPixels(fq, near(0x2c, 0xa0, 0x2c)) > 200, 'green snapkv line');
  // the needle heat map has missed (red) and found (green) cells: 3 of 18 cells are red
  const needle = images.get('needle')!;
  const red = countPixels(needle, (r, g, b) => r > 140 && g < 60 && b < 60);
  const green = countPixels(needle, (r, g, b) => g > 80 && r < 60 && b < 90);
  assert.ok(red > 2000, `red cells: ${red} px`);
  assert.ok(green > red * 3, `green cells: ${green} px vs red ${red}`);
});

test('the page renders in headless Chromium: no errors, every chart drawn with its marks', async (t) => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(
      `Chromium is required for the report browser test: ${CHROMIUM} is missing. On Debian or Ubuntu, as root: apt-get install chromium fonts-dejavu-core ` +
        '(npm test does this by itself when run as root); elsewhere install a Chromium and set KVSIEVE_CHROMIUM to its executable',
    );
  }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('request', (r) => requests.push(r.url()));
  const url = pathToFileURL(join(out, 'index.html')).href;
  await page.goto(url, { waitUntil: 'load' });
  assert.deepEqual(errors, []);
  assert.deepEqual(requests, [url], 'the page loads nothing but itself');

  // Browser-side code as source text: tsx would wrap named functions in a helper the page lacks.
  const charts = (await page.evaluate(`[...document.querySelectorAll('figure.chart')].map((f) => {
      const svg = f.querySelector('svg');
      const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      const count = (sel) => f.querySelectorAll(sel).length;
      return {
        id: f.id,
        width: box.width,
        height: box.height,
        lines: count('g.mark-line.role-mark path'),
        rules: count('g.mark-rule.role-mark line'),
        cells: count('g.mark-rect.role-mark path'),
        paths: count('svg path'),
        legend: [...f.querySelectorAll('g.role-legend-label text')].map((x) => x.textContent),
      };
    })`)) as { id: string; width: number; height: number; lines: number; rules: number; cells: number; paths: number; legend: string[] }[];
  assert.deepEqual(
    charts.map((c) => c.id),
    CHARTS.map((c) => `chart-${c}`),
  );
  for (const c of charts) {
    assert.ok(c.width > 300 && c.height > 150, `${c.id}: ${c.width}x${c.height}`);
    assert.ok(c.paths > 5, `${c.id}: ${c.paths} paths`);
  }
  const byId = new Map(charts.map((c) => [c.id.replace('chart-', ''), c]));
  // quality vs budget: a line per compressed press, a dashed rule for the full cache
  assert.equal(byId.get('fidelity-quality')!.lines, 2);
  assert.equal(byId.get('fidelity-quality')!.rules, 1);
  assert.deepEqual(byId.get('fidelity-quality')!.legend, ['full', 'r-kv', 'snapkv']);
  // math: one panel per dataset, each with an r-kv line and a full rule
  assert.equal(byId.get('math-accuracy')!.lines, 2);
  assert.equal(byId.get('math-accuracy')!.rules, 2);
  // memory: one line per press/budget
  assert.equal(byId.get('memory')!.lines, 5);
  assert.deepEqual(byId.get('memory')!.legend, ['full', 'r-kv (128)', 'r-kv (256)', 'snapkv (128)', 'snapkv (256)']);
  // throughput against batch: three series
  assert.equal(byId.get('throughput')!.lines, 3);
  // needle: 3 lengths x 3 depths x 2 panels
  assert.equal(byId.get('needle')!.cells, 18);

  const tables = await page.evaluate(`[...document.querySelectorAll('table')].map((x) => [x.id, x.getBoundingClientRect().height > 40])`);
  assert.deepEqual(tables, [
    ['table-fidelity', true],
    ['table-math', true],
    ['table-throughput', true],
    ['table-needle', true],
  ]);

  const shot = join(tmp.dir, 'report-screenshot.png');
  await page.screenshot({ path: shot, fullPage: true });
  const img = decodePng(readFileSync(shot));
  assert.ok(statSync(shot).size > 50_000, `screenshot ${statSync(shot).size} bytes`);
  assert.equal(img.width, 1200);
  assert.ok(img.height > 2000, `full page height ${img.height}`);
  assert.ok(countPixels(img, (r, g, b) => r < 80 && g < 80 && b < 80) > 5000, 'text drawn');
});

test('only the kinds present appear; a rerun replaces the files; one batch per press gives a bar chart', async () => {
  const single = join(tmp.dir, 'single-batch.jsonl');
  const recs = throughputRecords().filter((r) => (r as { batch: number }).batch === 8);
  writeFileSync(single, jsonl(recs));
  const before = statSync(join(out, 'throughput.png')).size;
  await writeReport([single], out, { title: 'Batch 8' });
  const page = readFileSync(join(out, 'index.html'), 'utf8');
  assert.match(page, /<h1>Batch 8<\/h1>/);
  for (const gone of ['table-fidelity', 'table-math', 'table-needle', 'chart-needle', 'chart-memory', 'chart-fidelity-quality']) {
    assert.ok(!page.includes(gone), `${gone} should be left out`);
  }
  assert.ok(!page.includes('Ignored records'));
  assert.deepEqual(tableRows(page, 'table-throughput').slice(1), [
    ['full', 'full', '1024', '8', '1', '180.0', '1.00×', '128.00 MiB'],
    ['r-kv', '128', '1024', '8', '1', '216.0', '1.20×', '16.00 MiB'],
    ['snapkv', '128', '1024', '8', '1', '200.0', '1.11×', '16.00 MiB'],
  ]);
  // bars, one per press, labelled with tok/s
  const fig = page.match(/<figure class="chart" id="chart-throughput">([\s\S]*?)<\/figure>/)![1]!;
  const bars = fig.match(/<g class="mark-rect role-mark[^"]*"[^>]*>([\s\S]*?)<\/g>/)![1]!;
  assert.equal(bars.match(/<path /g)?.length, 3);
  for (const label of ['180.0', '216.0', '200.0']) assert.ok(fig.includes(`>${label}</text>`), label);
  assert.notEqual(statSync(join(out, 'throughput.png')).size, before, 'throughput.png replaced');
  assert.deepEqual(
    readdirSync(out).filter((f) => f.includes('.tmp-')),
    [],
  );
});

test('errors name the file and line, and nothing is written', async () => {
  const dir = join(tmp.dir, 'errors');
  const outDir = join(dir, 'out');
  const f = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text);
    return p;
  };
  const good = JSON.stringify(needleRecords()[0]);
  const empty = f('empty.jsonl', '\n\n');
  await rejectsWith(writeReport([empty], outDir), /empty\.jsonl: no results records/);
  const missing = join(tmp.dir, 'missing.jsonl');
  await rejectsWith(writeReport([missing], outDir), /missing\.jsonl: results file not found/);
  const broken = f('broken.jsonl', `${good}\n\n{"kind": "needle", "key": \n`);
  await rejectsWith(writeReport([broken], outDir), /broken\.jsonl:3: invalid JSON/);
  const notRecord = f('not-record.jsonl', `${good}\n[1, 2]\n`);
  await rejectsWith(writeReport([notRecord], outDir), /not-record\.jsonl:2: not a results record/);
  const badField = f('bad-field.jsonl', `${good}\n${JSON.stringify({ ...(fidelityRecords()[0] as object), identical: 'most' })}\n`);
  await rejectsWith(writeReport([badField], outDir), /bad-field\.jsonl:2: fidelity record "fidelity\/snapkv\/256\/0": "identical" must be a number/);
  const badBudget = f('bad-budget.jsonl', `\n${JSON.stringify({ ...(needleRecords()[0] as object), budget: '128' })}\n`);
  await rejectsWith(writeReport([badBudget], outDir), /bad-budget\.jsonl:2: needle record .*"budget" must be a number >= 0 or null/);
  const unknownOnly = f('unknown.jsonl', JSON.stringify({ kind: 'calibration', key: 'c' }) + '\n');
  await rejectsWith(writeReport([unknownOnly], outDir), /unknown\.jsonl: no fidelity, math, needle or throughput records \(found only: calibration\)/);
  await rejectsWith(writeReport([fileB, fileB], outDir), /speed\.jsonl: results file given twice/);
  // --out that is a file
  await rejectsWith(writeReport([fileB], fileA), /outDir .*quality\.jsonl: cannot create directory/);
  assert.equal(existsSync(dir), false, 'a failed report creates nothing');
  // validation also runs without rendering
  assert.throws(() => loadResults([]), /at least one results file/);

  // CLI flags
  await rejectsWith(runReport([fileB]), /^report: --out DIR is required/);
  await rejectsWith(runReport(['--out', outDir]), /^report: give at least one RESULTS\.jsonl file/);
  await rejectsWith(runReport([fileB, '--out', outDir, '--colour', 'x']), /^report: .*--colour/);
  assert.match(await runReport(['--help']), /^Usage: kvsieve report RESULTS\.jsonl/);
  assert.equal(existsSync(dir), false);
});
