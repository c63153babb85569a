// Finds (and, as root on Debian or Ubuntu, installs) what the browser tests need beyond Node: a
// Chromium to render the HTML report in (test/eval/report.test.ts) and to drive the demo page in
// (test/web/demo.test.ts), and the DejaVu fonts the report's PNG charts are drawn with.
// scripts/run-tests.mjs calls ensureChromium() before a run that includes either test; .ci/run
// installs the same two Debian packages itself.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const DEBIAN_PACKAGES = ['chromium', 'fonts-dejavu-core'];
const NAMES = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome'];
const DEJAVU = '/usr/share/fonts/truetype/dejavu';

export const HOW_TO_GET =
  'the browser tests (report, demo page) need Chromium and the DejaVu fonts: on Debian or Ubuntu, as root, ' +
  `apt-get install ${DEBIAN_PACKAGES.join(' ')} (npm test does this by itself when run as root); ` +
  'elsewhere install a Chromium and set KVSIEVE_CHROMIUM to its executable';

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** KVSIEVE_CHROMIUM, else the first Chromium on PATH; null when there is none. */
export function findChromium() {
  const explicit = process.env.KVSIEVE_CHROMIUM;
  if (explicit) return existsSync(explicit) ? explicit : null;
  for (const n of NAMES) {
    const p = onPath(n);
    if (p) return p;
  }
  return null;
}

/**
 * The Chromium to use, installing Chromium and the fonts with apt-get when either is missing, this
 * process is root and apt-get exists (KVSIEVE_NO_INSTALL=1 forbids it). Returns null, having said
 * how to get them, when they are still missing.
 */
export function ensureChromium(log = (line) => process.stderr.write(`${line}\n`)) {
  let chromium = findChromium();
  const fonts = existsSync(DEJAVU);
  if (chromium && fonts) return chromium;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root && onPath('apt-get') && !process.env.KVSIEVE_NO_INSTALL && !process.env.KVSIEVE_CHROMIUM) {
    log(`run-tests: installing ${DEBIAN_PACKAGES.join(' ')} with apt-get for the browser tests (KVSIEVE_NO_INSTALL=1 to skip)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install =
      update.status === 0
        ? spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...DEBIAN_PACKAGES], { stdio: ['ignore', 'ignore', 'inherit'], env })
        : update;
    if (install.status !== 0) log(`run-tests: apt-get failed (exit ${install.status}); ${HOW_TO_GET}`);
    chromium = findChromium();
  }
  if (chromium && existsSync(DEJAVU)) return chromium;
  log(`run-tests: ${chromium ? 'the DejaVu fonts are missing' : 'no Chromium found'}; ${HOW_TO_GET}`);
  return chromium;
}
