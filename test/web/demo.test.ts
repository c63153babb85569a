// The demo page (npm run demo) in headless Chromium: built with Vite, served by scripts/demo.mjs on
// loopback with the shared stories260K, driven with playwright-core. Nothing leaves 127.0.0.1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { loadModel, type Model } from '../../src/api.js';
import { planParts } from '../../src/backend/wasm/split.js';
import type { KvTraceEvent } from '../../src/generate/sequence.js';
import { parseTrace, traceHeader, traceResult } from '../../src/api/trace.js';
import { ggufFromSafetensors, shared, stories260K, storiesHfConfig, streamingLlmHeld, tempDir } from '../helpers.js';
import { ggufVocabFromLlama2c } from '../../src/formats/gguf-vocab.js';
import { startHub, tinyllamasRepo, TINYLLAMAS } from '../hub/mock-hub.js';

/** The Chromium scripts/run-tests.mjs found or installed (scripts/chromium.mjs), else Debian's. */
const CHROMIUM = process.env['KVSIEVE_CHROMIUM'] || '/usr/bin/chromium';
const demo = (await import(join('..', '..', 'scripts', 'demo.mjs'))) as {
  buildDemo(out: string, logLevel?: string): Promise<string>;
  serveDemo(o: { dir: string; modelsDir: string; port: number; isolate?: boolean }): Promise<Server>;
};

const tmp = tempDir('kvsieve-demo-');
let server: Server;
let plainServer: Server;
let browser: Browser;
let origin = '';
let plainOrigin = '';
let node: Model;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(
      `Chromium is required for the demo page tests: ${CHROMIUM} is missing. On Debian or Ubuntu, as root: apt-get install chromium fonts-dejavu-core ` +
        '(npm test does this by itself when run as root); elsewhere install a Chromium and set KVSIEVE_CHROMIUM to its executable',
    );
  }
  const dir = await demo.buildDemo(join(tmp.dir, 'site'), 'silent');
  server = await demo.serveDemo({ dir, modelsDir: shared('models'), port: 0 });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  plainServer = await demo.serveDemo({ dir, modelsDir: shared('models'), port: 0, isolate: false });
  plainOrigin = `http://127.0.0.1:${(plainServer.address() as AddressInfo).port}`;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  node = await loadModel(stories260K('stories260K.bin'), { threads: 1 });
});

after(async () => {
  await browser?.close();
  server?.close();
  plainServer?.close();
  node?.dispose();
  tmp.cleanup();
});

/** A fresh page on the demo, its stories260K loaded; `problems` collects console errors, page errors and requests off loopback. */
async function openDemo(at = origin, query = '', allowed: string[] = []): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (![at, ...allowed].some((o) => r.url().startsWith(o)) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) problems.push(`request off loopback: ${r.url()}`);
  });
  await page.goto(`${at}/${query}`);
  await page.waitForFunction('["ready", "error"].includes(document.body.dataset.state)', null, { timeout: 60_000 });
  return { page, problems };
}

interface Settings {
  a: { press: string; budget: number; buffer: number };
  b?: { press: string; budget: number; buffer: number };
  maxTokens: number;
  ignoreEos?: boolean;
}

async function fill(page: Page, s: Settings): Promise<void> {
  await page.fill('#max-tokens', String(s.maxTokens));
  await page.setChecked('#ignore-eos', s.ignoreEos ?? false);
  await page.setChecked('#compare', s.b !== undefined);
  for (const [key, p] of [['a', s.a], ['b', s.b]] as const) {
    if (!p) continue;
    await page.selectOption(`#${key}-press`, p.press);
    await page.fill(`#${key}-budget`, String(p.budget));
    await page.fill(`#${key}-buffer`, String(p.buffer));
  }
}

async function generate(page: Page, s: Settings): Promise<void> {
  await fill(page, s);
  await page.click('#generate');
  await page.waitForFunction('document.body.dataset.state === "ready"', null, { timeout: 120_000 });
}

const attr = async (page: Page, sel: string, name: string) => (await page.getAttribute(sel, name)) ?? '';


test('the demo loads stories260K with no console error, cross-origin isolated, the kernels on a Web Worker pool', async () => {
  const { page, problems } = await openDemo();
  try {
    assert.deepEqual(problems, []);
    assert.equal(await page.evaluate('document.body.dataset.state'), 'ready');
    assert.equal(await page.evaluate('crossOriginIsolated'), true);
    assert.match((await page.textContent('#model-status')) ?? '', /stories260K\.bin: llama, 260,032 parameters, 5 layers × 4 KV heads/);
    const threads = Math.min(8, Number(await page.evaluate('navigator.hardwareConcurrency')));
    assert.match((await page.textContent('#env')) ?? '', new RegExp(`wasm \\(q8_0 weights, ${threads} threads\\) · cross-origin isolated`));
    assert.equal(await attr(page, '#model-status', 'data-cached'), '', 'the first visit fetches the files');
    await page.reload();
    await page.waitForFunction('document.body.dataset.state === "ready"', null, { timeout: 60_000 });
    assert.equal(await attr(page, '#model-status', 'data-cached'), 'stories260K.bin,tok512.bin', 'the second reads them from the Cache API');
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});

test('?max-bytes-per-memory splits the model over several memories in the page (a Web Worker pool over all of them) and the text stays Node\'s', async () => {
  // the largest cap (whole pages) at which the page's plan (q8_0, its threads) takes 3 or more parts
  const probe = await openDemo();
  const threads = Math.min(8, Number(await probe.page.evaluate('navigator.hardwareConcurrency')));
  await probe.page.close();
  let cap = 16 * 2 ** 20;
  while (cap > 65536 && planParts(node.config, 'q8_0', cap, threads).parts < 3) cap -= 65536;
  const parts = planParts(node.config, 'q8_0', cap, threads).parts;
  assert.ok(parts >= 3, `${parts} parts at ${cap}`);
  const { page, problems } = await openDemo(origin, `?max-bytes-per-memory=${cap}`);
  try {
    assert.match((await page.textContent('#env')) ?? '', new RegExp(`wasm \\(q8_0 weights, ${threads} threads, ${parts} memories\\) · cross-origin isolated`));
    const s: Settings = { a: { press: 'r-kv', budget: 24, buffer: 8 }, maxTokens: 60 };
    await generate(page, s);
    const r = await node.complete('Once upon a time', { maxTokens: 60, temperature: 0, compression: { press: 'r-kv', budget: 24, buffer: 8 } });
    assert.equal(await page.textContent('#a-text'), r.text);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});

test("greedy text and peak KV bytes equal Node's for the same settings, two presses side by side", async () => {
  const { page, problems } = await openDemo();
  try {
    const s: Settings = { a: { press: 'streaming-llm', budget: 24, buffer: 8 }, b: { press: 'r-kv', budget: 24, buffer: 8 }, maxTokens: 80 };
    await generate(page, s);
    for (const key of ['a', 'b'] as const) {
      const p = s[key]!;
      const r = await node.complete('Once upon a time', { maxTokens: 80, temperature: 0, compression: { press: p.press as 'r-kv', budget: p.budget, buffer: p.buffer } });
      assert.equal(await page.textContent(`#${key}-text`), r.text, `${p.press}: text`);
      assert.equal(await attr(page, `#panel-${key}`, 'data-generated'), String(r.generatedIds.length));
      assert.equal(await attr(page, `#${key}-gauge`, 'data-peak-kv-bytes'), String(r.peakKvBytes), `${p.press}: the gauge's peak`);
      assert.equal(await attr(page, `#${key}-gauge`, 'data-result-peak-kv-bytes'), String(r.peakKvBytes));
      // The run saved as a trace: the same steps and result, readable by parseTrace.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(`#${key}-status a`)]);
      const saved = parseTrace(readFileSync(await download.path(), 'utf8'), download.suggestedFilename());
      assert.equal(saved.header.press, p.press);
      assert.deepEqual(saved.steps.map((e) => e.token), r.generatedIds);
      assert.equal(saved.result?.text, r.text);
      assert.equal(saved.result?.peakKvBytes, r.peakKvBytes);
    }
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});

test('a Hub id loads in the page (from the mock Hub on loopback) and generates what Node does', async () => {
  const hub = await startHub();
  hub.repos.set(TINYLLAMAS, tinyllamasRepo());
  const cdn = (await fetch(`${hub.url}/${TINYLLAMAS}/resolve/main/stories260K/tok512.bin`, { redirect: 'manual' })).headers.get('location')!;
  const { page, problems } = await openDemo(origin, `?hub-endpoint=${encodeURIComponent(hub.url)}`, [hub.url, new URL(cdn).origin]);
  try {
    await page.selectOption('#model-source', 'hub');
    await page.fill('#hub-id', `${TINYLLAMAS}/stories260K`);
    await page.click('#load');
    await page.waitForFunction(`(document.getElementById('model-status').textContent ?? '').startsWith('${TINYLLAMAS}/stories260K:')`, null, { timeout: 60_000 });
    assert.equal(await page.evaluate('document.body.dataset.state'), 'ready');
    await generate(page, { a: { press: 'h2o', budget: 16, buffer: 8 }, maxTokens: 40 });
    const r = await node.complete('Once upon a time', { maxTokens: 40, temperature: 0, compression: { press: 'h2o', budget: 16, buffer: 8 } });
    assert.equal(await page.textContent('#a-text'), r.text);
    const fetched = hub.downloads().map((d) => d.path);
    assert.ok(fetched.some((p) => p.endsWith('/stories260K/stories260K.bin')) && fetched.some((p) => p.endsWith('/stories260K/tok512.bin')), fetched.join(' '));
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
    await hub.close();
  }
});

/**
 * The files at `paths` picked from disk load in the page (its status line then starts with `status`)
 * and, under `press`, generate what Node does from `nodePath`.
 */
async function assertPickedGeneratesNode(paths: string[], status: string, nodePath: string, press: 'tova' | 'snapkv'): Promise<void> {
  const { page, problems } = await openDemo();
  const fromNode = await loadModel(nodePath, { threads: 1 });
  try {
    await page.selectOption('#model-source', 'files');
    await page.setInputFiles('#model-files', paths);
    await page.click('#load');
    await page.waitForFunction(`(document.getElementById('model-status').textContent ?? '').startsWith(${JSON.stringify(status)})`, null, { timeout: 60_000 });
    await generate(page, { a: { press, budget: 16, buffer: 8 }, maxTokens: 40 });
    const r = await fromNode.complete('Once upon a time', { maxTokens: 40, temperature: 0, compression: { press, budget: 16, buffer: 8 } });
    assert.equal(await page.textContent('#a-text'), r.text);
    assert.deepEqual(problems, []);
  } finally {
    fromNode.dispose();
    await page.close();
  }
}

test("a Hugging Face folder's files picked from disk load in the page and generate what Node does", async () => {
  const hfDir = stories260K('hf');
  await assertPickedGeneratesNode(readdirSync(hfDir).map((f) => join(hfDir, f)), 'config.json:', hfDir, 'tova');
});

test('a GGUF file picked from disk (stories260K in Q8_0 with its own vocabulary) loads in the page and generates what Node does from the path', async () => {
  const file = ggufFromSafetensors(join(tmp.dir, 'stories260K-Q8_0.gguf'), stories260K('hf', 'model.safetensors'), {
    config: storiesHfConfig(),
    weightType: 'Q8_0',
    tokenizer: ggufVocabFromLlama2c(stories260K('tok512.bin'), 512),
    name: 'stories260K',
  });
  await assertPickedGeneratesNode([file], 'stories260K-Q8_0.gguf:', file, 'snapkv');
});

test('without cross-origin isolation the engine runs on one thread and gives the same text', async () => {
  const { page, problems } = await openDemo(plainOrigin);
  try {
    assert.equal(await page.evaluate('crossOriginIsolated'), false);
    assert.match((await page.textContent('#env')) ?? '', /wasm \(q8_0 weights, 1 thread\) · not cross-origin isolated: one thread/);
    await generate(page, { a: { press: 'snapkv', budget: 16, buffer: 8 }, maxTokens: 40 });
    const r = await node.complete('Once upon a time', { maxTokens: 40, temperature: 0, compression: { press: 'snapkv', budget: 16, buffer: 8 } });
    assert.equal(await page.textContent('#a-text'), r.text);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});

/** Per strip (layer, KV head): for each drawn step row, the positions painted as held. */
const READ_STRIPS = `[...document.querySelectorAll('#panel-a canvas')].map((c) => {
  const ctx = c.getContext('2d');
  const rows = [];
  for (let y = 0; y < c.height; y++) {
    const d = ctx.getImageData(0, y, c.width, 1).data;
    const held = [];
    for (let x = 0; x < c.width; x++) if (d[4 * x] === 31 && d[4 * x + 1] === 78 && d[4 * x + 2] === 121) held.push(x);
    rows.push(held);
  }
  return { layer: Number(c.dataset.layer), head: Number(c.dataset.head), rows };
})`;

test('the inspector shows exactly the sinks and the recent window of streaming-llm at every step', async () => {
  const { page } = await openDemo();
  try {
    const steps = 60;
    await generate(page, { a: { press: 'streaming-llm', budget: 12, buffer: 6 }, maxTokens: steps, ignoreEos: true });
    const strips = (await page.evaluate(READ_STRIPS)) as { layer: number; head: number; rows: number[][] }[];
    assert.equal(strips.length, 5 * 4);
    const expected = streamingLlmHeld(5, steps, 12, 6, 4); // "Once upon a time" is 5 tokens; 4 sinks by default
    const lastRow = expected.at(-1)!; // the sinks, then a run of the newest positions up to the last one read
    assert.deepEqual(lastRow.slice(0, 4), [0, 1, 2, 3]);
    assert.deepEqual(lastRow.slice(4), Array.from({ length: lastRow.length - 4 }, (_, i) => 5 + steps - 1 - (lastRow.length - 4) + i));
    assert.ok(lastRow.length >= 12 && lastRow.length < 18);
    for (const s of strips) assert.deepEqual(s.rows, expected, `layer ${s.layer} head ${s.head}`);
  } finally {
    await page.close();
  }
});

test('cancel stops a generation: stop reason cancelled, fewer tokens than asked', async () => {
  const { page, problems } = await openDemo();
  try {
    await fill(page, { a: { press: 'full', budget: 1, buffer: 1 }, maxTokens: 500, ignoreEos: true });
    // Cancel as the first text arrives (stories260K writes 500 tokens in about a second and a half).
    const cancelled = page.evaluate(`new Promise((resolve) => {
      new MutationObserver((_, observer) => {
        if ((document.getElementById('a-text')?.textContent ?? '') === '') return;
        observer.disconnect();
        document.getElementById('cancel').click();
        resolve(true);
      }).observe(document.getElementById('panels'), { childList: true, characterData: true, subtree: true });
    })`);
    await page.click('#generate');
    await cancelled;
    await page.waitForFunction('document.body.dataset.state === "ready"', null, { timeout: 60_000 });
    assert.equal(await attr(page, '#panel-a', 'data-stop-reason'), 'cancelled');
    assert.ok(Number(await attr(page, '#panel-a', 'data-generated')) < 500);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});

test('a trace written in Node (as kvsieve generate --trace writes it) opens in the inspector', async () => {
  const { page, problems } = await openDemo();
  try {
    const options = { maxTokens: 30, temperature: 0, compression: { press: 'snapkv' as const, budget: 10, buffer: 5 } };
    const lines = [JSON.stringify(traceHeader(node, 'Once upon a time', options))];
    const last: KvTraceEvent[] = [];
    const r = await node.complete('Once upon a time', { ...options, onTrace: (e) => (lines.push(JSON.stringify({ kind: 'step', ...e })), last.splice(0, 1, e)) });
    lines.push(JSON.stringify(traceResult(r)));
    const file = join(tmp.dir, 'snapkv.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    await page.setInputFiles('#trace-file', file);
    await page.waitForSelector('#panel-trace canvas[data-layer="4"][data-head="3"]');
    assert.equal(await page.textContent('#trace-text'), r.text);
    const e = last[0]!;
    for (const [l, layer] of e.positions.entries()) {
      for (const [h, held] of layer.entries()) assert.equal(await attr(page, `#panel-trace canvas[data-layer="${l}"][data-head="${h}"]`, 'data-held'), held.join(','));
    }
    assert.equal(await attr(page, '#trace-gauge', 'data-peak-kv-bytes'), String(r.peakKvBytes));
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});
