// Runs every test/**/*.test.ts with Node's test runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [path-filter ...]
// When the run includes a browser test (the report, the demo page), Chromium is found (or installed:
// scripts/chromium.mjs) first and handed to it as KVSIEVE_CHROMIUM.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ensureChromium } from './chromium.mjs';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const env = { ...process.env };
const BROWSER_TESTS = ['test/eval/report.test.ts', 'test/web/demo.test.ts'];
if (files.some((f) => BROWSER_TESTS.some((t) => f.replaceAll('\\', '/').endsWith(t)))) {
  const chromium = ensureChromium();
  if (chromium) env.KVSIEVE_CHROMIUM = chromium;
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
