import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { repoRoot, sharedDir, tempDir } from '../helpers.js';

// The package as a user gets it: `npm pack` of this checkout installed into an empty folder (the
// registry only for its two small dependencies, from npm's cache where it has them), the README's
// library example compiled there under strict settings with no type packages, then run. `npm test`
// builds dist/ first; under `npm run test:only` run `npm run build` before this test.

/** The packages only eval and report use: a library install must not bring them. */
const EVAL_PACKAGES = ['@cortex-js/compute-engine', 'vega', 'vega-lite', '@resvg/resvg-js'];

function run(cmd: string, args: string[], options: SpawnSyncOptions): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 240_000, ...options });
  if (r.error) throw r.error;
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** The README's library example: the first ```ts block of its "## Library" section (or of `heading`). */
function readmeExample(heading = '## Library'): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README.md has a section ${heading}`);
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `README.md has a \`\`\`ts block under ${heading}`);
  return m[1]!;
}

function du(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? du(p) : st.size;
  }
  return total;
}

test('npm pack installs into a fresh folder: no evaluation packages, types that need nothing extra, the README example compiles and runs, source maps resolve, a browser bundle gets the browser entry', { timeout: 600_000 }, async () => {
  assert.ok(existsSync(join(repoRoot, 'dist', 'src', 'index.js')) && existsSync(join(repoRoot, 'dist', 'wasm', 'kernels.wasm')), 'dist/ is built (npm run build)');
  const t = tempDir('kvsieve-consumer-');
  try {
    const env = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
    const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', t.dir], { cwd: repoRoot, env });
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const shipped = new Set(info!.files.map((f) => f.path));
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/eval/index.js', 'dist/wasm/kernels.wasm', 'src/api.ts']) {
      assert.ok(shipped.has(f), `the package holds ${f}`);
    }
    assert.ok(![...shipped].some((f) => f.startsWith('test/') || f.startsWith('dist/test/') || f.startsWith('bench/')), 'no tests or benchmarks');

    const app = join(t.dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const installed = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(t.dir, info!.filename)], { cwd: app, env });
    assert.equal(installed.code, 0, installed.stderr);
    const modules = join(app, 'node_modules');
    for (const p of EVAL_PACKAGES) assert.equal(existsSync(join(modules, p)), false, `${p} is not installed`);
    assert.equal(existsSync(join(modules, '@types')), false, 'no type packages');
    const bytes = du(modules);
    // 37 MB with the evaluation packages as dependencies; kvsieve and its two tokenizer packages now.
    assert.ok(bytes < 8 * 2 ** 20, `installed size ${(bytes / 2 ** 20).toFixed(1)} MB`);
    process.stderr.write(`# installed size: ${(bytes / 2 ** 20).toFixed(2)} MB (${readdirSync(modules).filter((n) => !n.startsWith('.')).length} top-level entries)\n`);

    // Source maps point at files in the package.
    const pkg = join(modules, 'kvsieve');
    const maps: string[] = [];
    const walk = (d: string) => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        if (statSync(p).isDirectory()) walk(p);
        else if (n.endsWith('.js.map')) maps.push(p);
      }
    };
    walk(join(pkg, 'dist'));
    assert.ok(maps.length > 50);
    for (const m of maps) {
      const map = JSON.parse(readFileSync(m, 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const s of map.sources) assert.ok(existsSync(resolve(dirname(m), map.sourceRoot ?? '', s)), `${m}: ${s} resolves`);
    }

    // The README's example, compiled with no @types at all (types: []) and strict settings.
    writeFileSync(join(app, 'main.ts'), readmeExample());
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023', 'DOM'],
          types: [],
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: false,
          outDir: 'out',
        },
        files: ['main.ts'],
      }),
    );
    const tsc = run(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: app });
    assert.equal(tsc.code, 0, `tsc: ${tsc.stdout}${tsc.stderr}`);

    // It runs: the default model from ../shared through KVSIEVE_MODEL_PATH, never the real Hub.
    const runEnv = { PATH: process.env['PATH'] ?? '', HOME: t.dir, KVSIEVE_MODEL_PATH: join(sharedDir, 'models'), HF_HUB_OFFLINE: '1' };
    const ran = run(process.execPath, [join(app, 'out', 'main.js')], { cwd: app, env: runEnv });
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout, /\n [a-z-]+ [\d.]+ tok\/s\n3 \[/);

    // The CLI: generate works; eval and report say which optional packages to install.
    const bin = join(modules, '.bin', 'kvsieve');
    const gen = run(bin, ['generate', '--max-tokens', '8', 'Once upon a time'], { cwd: app, env: runEnv });
    assert.equal(gen.code, 0, gen.stderr);
    assert.ok(gen.stdout.trim().length > 0);
    const report = run(bin, ['report', 'results.jsonl', '--out', 'report'], { cwd: app, env: runEnv });
    assert.equal(report.code, 1);
    assert.match(report.stderr, /^kvsieve: report needs (vega|vega-lite|@resvg\/resvg-js), an optional dependency that is not installed; install the evaluation packages beside kvsieve: npm install @cortex-js\/compute-engine vega vega-lite @resvg\/resvg-js/);
    const evalRun = run(bin, ['eval', 'score', '--help'], { cwd: app, env: runEnv });
    assert.match(evalRun.stderr, /kvsieve: eval needs @cortex-js\/compute-engine, an optional dependency/);

    // A bundler building for the browser takes the `browser` condition: the browser entry, with the
    // kernel modules it finds beside it (new URL(..., import.meta.url)) emitted as assets.
    writeFileSync(join(app, 'worker.js'), "import { serveEngine } from 'kvsieve';\nserveEngine();\n");
    const { build } = await import('vite');
    await build({ configFile: false, root: app, logLevel: 'silent', build: { outDir: 'web', assetsInlineLimit: 0, rollupOptions: { input: join(app, 'worker.js') } } });
    const assets = readdirSync(join(app, 'web', 'assets'));
    assert.deepEqual(assets.filter((f) => f.endsWith('.wasm')).map((f) => f.replace(/-[\w-]{8}\.wasm$/, '')).sort(), ['kernels', 'kernels-relaxed']);
    const js = assets.filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(app, 'web', 'assets', f), 'utf8')).join('\n');
    assert.match(js, /no model loaded: send a load message first/, 'the bundle holds the worker engine');
    assert.doesNotMatch(js, /from\s*["']node:|require\(["']node:/, 'no Node module is imported');

    // The README's browser example type-checks against kvsieve/browser, strict, with no type packages.
    writeFileSync(join(app, 'browser.ts'), readmeExample('### In the browser'));
    const tscBrowser = run(
      process.execPath,
      [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '--ignoreConfig', '--noEmit', '--strict', '--noUncheckedIndexedAccess', '--exactOptionalPropertyTypes', '--skipLibCheck', 'false',
        '--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--lib', 'ES2023,DOM,DOM.Iterable', '--types', '', 'browser.ts'],
      { cwd: app },
    );
    assert.equal(tscBrowser.code, 0, `tsc browser.ts: ${tscBrowser.stdout}${tscBrowser.stderr}`);
  } finally {
    t.cleanup();
  }
});
