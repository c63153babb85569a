// Runs every test/**/*.test.ts with Node's test runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [path-filter ...]
// When the run includes a browser test (the report, the demo page, WebGPU in a page), Chromium is found (or installed:
// scripts/chromium.mjs) first and handed to it as KVSIEVE_CHROMIUM.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
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

/** Whether the dynamic loader finds a Vulkan loader of the system's own (ldconfig's cache). */
function hasSystemVulkan() {
  const r = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('libvulkan.so.1');
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const env = { ...process.env };
const BROWSER_TESTS = ['test/eval/report.test.ts', 'test/web/demo.test.ts', 'test/backend/webgpu/browser.test.ts'];
if (files.some((f) => BROWSER_TESTS.some((t) => f.replaceAll('\\', '/').endsWith(t)))) {
  const chromium = ensureChromium();
  if (chromium) env.KVSIEVE_CHROMIUM = chromium;
}
// WebGPU tests on SwiftShader (.ci/run sets VK_ICD_FILENAMES to Chromium's ICD): where the system has no
// Vulkan loader, Chromium's libvulkan.so.1 beside that ICD is the one Dawn loads.
const icd = env.VK_ICD_FILENAMES;
if (icd && process.platform === 'linux' && !hasSystemVulkan() && existsSync(join(dirname(icd), 'libvulkan.so.1'))) {
  env.LD_LIBRARY_PATH = [dirname(icd), env.LD_LIBRARY_PATH].filter(Boolean).join(':');
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
