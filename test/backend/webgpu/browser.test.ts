// The webgpu backend in a browser page (headless Chromium's navigator.gpu, SwiftShader): the same
// code as in Node, bundled for the browser; stories260K from its bytes decodes run.c's greedy story.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, stories260K, storiesGoldens } from '../../helpers.js';

const CHROMIUM = process.env['KVSIEVE_CHROMIUM'] || '/usr/bin/chromium';

/** The page's script: loadBrowserModel with backend 'webgpu' on files fetched from the page's origin. */
const ENTRY = `
import { loadBrowserModel } from ${JSON.stringify(join(repoRoot, 'src/browser/engine.ts'))};
window.runStories = async (prompt, maxTokens) => {
  const names = ['stories260K.bin', 'tok512.bin'];
  const bytes = await Promise.all(names.map(async (n) => new Uint8Array(await (await fetch('/models/' + n)).arrayBuffer())));
  const model = await loadBrowserModel(Object.fromEntries(names.map((n, i) => [n, bytes[i]])), { backend: 'webgpu' });
  try {
    const r = await model.complete(prompt, { maxTokens });
    return { backend: model.info().backend, ids: [...r.promptIds, ...r.generatedIds] };
  } finally {
    model.dispose();
  }
};
`;

test('webgpu in a browser page: loadBrowserModel({ backend: "webgpu" }) decodes run.c\'s greedy story', async (t) => {
  if (!existsSync(CHROMIUM)) {
    if (process.env['KVSIEVE_REQUIRE_WEBGPU']) assert.fail(`Chromium is required here: ${CHROMIUM} is missing`);
    t.skip(`no Chromium at ${CHROMIUM}`);
    return;
  }
  const { build } = await import('esbuild');
  // node: modules (the path-based loaders, never called here) become empty stubs, as in the demo's Vite build
  const nodeStubs = {
    name: 'node-stubs',
    setup(b: { onResolve: Function; onLoad: Function }) {
      b.onResolve({ filter: /^node:/ }, (a: { path: string }) => ({ path: a.path, namespace: 'node-stub' }));
      b.onLoad({ filter: /.*/, namespace: 'node-stub' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
    },
  };
  const bundle = await build({
    stdin: { contents: ENTRY, resolveDir: repoRoot, loader: 'js' },
    ...{ bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent', plugins: [nodeStubs as never] },
  });
  const script = bundle.outputFiles[0]!.text;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--no-first-run'] });
  try {
    const page = await browser.newPage();
    // localhost: a secure context (navigator.gpu needs one); every request is answered here, none leaves
    await page.route('http://localhost/**', (route) => {
      const path = new URL(route.request().url()).pathname;
      if (path === '/') return route.fulfill({ contentType: 'text/html', body: '<!doctype html><script type="module" src="/main.js"></script>' });
      if (path === '/main.js') return route.fulfill({ contentType: 'text/javascript', body: script });
      if (path.startsWith('/models/')) return route.fulfill({ contentType: 'application/octet-stream', body: readFileSync(stories260K(path.slice('/models/'.length))) });
      return route.fulfill({ status: 404, body: '' });
    });
    await page.goto('http://localhost/');
    await page.waitForFunction(() => 'runStories' in globalThis);
    const hasAdapter = await page.evaluate(async () => !!(await (globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu?.requestAdapter()));
    if (!hasAdapter) {
      if (process.env['KVSIEVE_REQUIRE_WEBGPU']) assert.fail('Chromium exposes no WebGPU adapter here');
      t.skip('Chromium exposes no WebGPU adapter here');
      return;
    }
    const golden = storiesGoldens().find((g) => g.prompt === 'Once upon a time')!;
    const r = await page.evaluate(([p, n]) => (globalThis as unknown as { runStories(p: string, n: number): Promise<{ backend: string; ids: number[] }> }).runStories(p, n), ['Once upon a time', 30] as const);
    assert.match(r.backend, /^webgpu \(/);
    assert.deepEqual(r.ids, golden.ids.slice(0, r.ids.length));
    assert.equal(r.ids.length, golden.prompt_ids.length + 30);
  } finally {
    await browser.close();
  }
});
