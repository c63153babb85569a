import type { Env } from '../core/env.js';
import type { DownloadProgress } from '../hub/download.js';

/**
 * A Hub download's progress on stderr, with the rules of eval's progress (src/eval/progress.ts):
 * on a terminal (and `CI` unset), one bar redrawn in place at most every 100 ms and on the last byte:
 *   `karpathy/tinyllamas  [########------------]  41%  0.4 / 1.1 MB  2.3 MB/s  stories260K.bin`
 * in logs and CI, one line each time the download crosses another 10% of its bytes. Nothing is
 * printed for a download whose files were all in the cache; a file that waits for another process's
 * download of it gets one line saying so.
 */

export interface DownloadPrinterStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface DownloadPrinterOptions {
  stream?: DownloadPrinterStream;
  /** Environment consulted for `CI` (default process.env). */
  env?: Env;
  now?: () => number;
}

const MB = 1024 * 1024;
const BAR = 20;

function mb(n: number, digits = 1): string {
  return (n / MB).toFixed(n < 10 * MB ? Math.max(digits, 2) : digits);
}

export interface DownloadPrinter {
  update(p: DownloadProgress): void;
  /** Ends the bar's line (call when the download ends, however it ends). */
  finish(): void;
}

export function downloadPrinter(o: DownloadPrinterOptions = {}): DownloadPrinter {
  const stream = o.stream ?? process.stderr;
  const now = o.now ?? (() => performance.now());
  const ci = (o.env ?? process.env)['CI'];
  const interactive = stream.isTTY === true && (ci === undefined || ci === '' || ci === '0' || ci.toLowerCase() === 'false');
  let active = false;
  let start = 0;
  let startBytes = 0;
  let lastDraw = -Infinity;
  let drawn = false;
  let lastDecile = -1;
  const waited = new Set<string>();

  const rate = (p: DownloadProgress) => {
    const secs = (now() - start) / 1000;
    return secs > 0.3 ? `${((p.doneBytes - startBytes) / MB / secs).toFixed(1)} MB/s` : '';
  };
  const amount = (p: DownloadProgress) => (p.totalBytes !== null ? `${mb(p.doneBytes)} / ${mb(p.totalBytes)} MB` : `${mb(p.doneBytes)} MB`);

  const draw = (p: DownloadProgress) => {
    const share = p.totalBytes ? p.doneBytes / p.totalBytes : null;
    const bar = share !== null ? `[${'#'.repeat(Math.round(share * BAR)).padEnd(BAR, '-')}] ${String(Math.floor(share * 100)).padStart(3)}%  ` : '';
    const file = p.file.slice(p.file.lastIndexOf('/') + 1);
    let line = `${p.repo}  ${bar}${amount(p)}  ${rate(p)}  ${file}`.trimEnd();
    const width = stream.columns ?? 0;
    if (width > 10 && line.length >= width) line = line.slice(0, width - 1);
    stream.write(`\r\x1b[K${line}`);
    drawn = true;
  };

  return {
    update(p) {
      if (p.status === 'cached' && !active) return;
      if (!active) {
        active = true;
        start = now();
        startBytes = p.doneBytes;
      }
      if (p.status === 'wait') {
        if (waited.has(p.file)) return;
        waited.add(p.file);
        if (drawn) stream.write('\n');
        drawn = false;
        stream.write(`${p.repo}: waiting for another download of ${p.file} (its lock is held)\n`);
        return;
      }
      const last = p.totalBytes !== null && p.doneBytes >= p.totalBytes;
      if (interactive) {
        const t = now();
        if (t - lastDraw >= 100 || last) {
          lastDraw = t;
          draw(p);
        }
        return;
      }
      if (p.totalBytes === null || p.totalBytes === 0) return;
      const decile = Math.floor((10 * p.doneBytes) / p.totalBytes);
      if (decile <= lastDecile) return;
      lastDecile = decile;
      const speed = rate(p);
      stream.write(`${p.repo}: ${decile * 10}% (${amount(p)}${speed ? `, ${speed}` : ''})\n`);
    },
    finish() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}
