import { InternalError } from '../core/errors.js';

/**
 * Progress of a long run (evaluation items, benchmark configurations), written to stderr.
 *
 * - Interactive (the stream is a TTY and the `CI` environment variable is unset, empty, "0" or
 *   "false"): one line redrawn in place with `\r` (and erase-to-end-of-line), at most once per
 *   `minIntervalMs` (200 ms, so ~5 times a second) plus always on the last item; `done()` draws the
 *   final state and ends the line.
 *   `label  12/40 30% · 153.2 tok/s · ETA 1m05s`
 * - Logs and CI (not a TTY, or `CI` set): one plain line each time the run crosses another 10% of
 *   `total` (so at most 10 lines, the last at 100%); `done()` writes one final line only when the
 *   run stopped short of 100% and it has not been written yet.
 *
 * Speeds count from construction: tokens/s from the `tokens` passed to `tick`, items/s when no
 * tokens were ever passed. Items passed to `skip` (already done in an earlier run) count toward
 * done/total but not toward the speed or the ETA, which extrapolates the time per ticked item.
 */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  label: string;
  stream?: ProgressStream;
  /** Clock in milliseconds (tests inject a fake one). */
  now?: () => number;
  /** Environment consulted for `CI` (default process.env). */
  env?: Record<string, string | undefined>;
  /** Least time between two redraws on a TTY (default 200 ms). */
  minIntervalMs?: number;
}

export class Progress {
  readonly total: number;
  readonly label: string;
  /** True when drawing a live line (TTY, not CI). */
  readonly interactive: boolean;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly minIntervalMs: number;
  private readonly start: number;
  private doneItems = 0;
  private skipped = 0;
  private tokens = 0;
  private sawTokens = false;
  private lastDraw = -Infinity;
  private drawn = false;
  /** Non-interactive: the last 10% step printed (0 = none). */
  private lastDecile = 0;
  private finished = false;

  constructor(o: ProgressOptions) {
    if (!Number.isInteger(o.total) || o.total < 0) throw new InternalError(`Progress: total must be a whole number >= 0, got ${o.total}`);
    this.total = o.total;
    this.label = o.label;
    this.stream = o.stream ?? process.stderr;
    this.now = o.now ?? (() => performance.now());
    this.minIntervalMs = o.minIntervalMs ?? 200;
    const ci = (o.env ?? process.env)['CI'];
    const inCi = ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
    this.interactive = this.stream.isTTY === true && !inCi;
    this.start = this.now();
  }

  /** Items done so far (ticked and skipped). */
  get completed(): number {
    return this.doneItems;
  }

  /** Marks `n` items done, which generated `tokens` tokens between them. */
  tick(n = 1, tokens?: number): void {
    if (this.finished) return;
    this.doneItems += n;
    if (tokens !== undefined) {
      this.tokens += tokens;
      this.sawTokens = true;
    }
    this.update();
  }

  /** Marks `n` items done without work (found in an earlier run's results): no effect on speed or ETA. */
  skip(n = 1): void {
    if (this.finished) return;
    this.doneItems += n;
    this.skipped += n;
    this.update();
  }

  /** Ends the display (idempotent). */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.interactive) {
      if (this.total > 0 || this.drawn) {
        this.draw();
        this.stream.write('\n');
      }
    } else if (this.total > 0 && this.lastDecile < 10) {
      this.stream.write(`${this.line()}\n`);
    }
  }

  /** The status text: `label  done/total pct · speed · ETA` (ETA left out before the first ticked item and at the end). */
  line(): string {
    const elapsed = Math.max(0, this.now() - this.start) / 1000;
    const shown = Math.min(this.doneItems, this.total);
    const pct = this.total === 0 ? 100 : Math.floor((shown / this.total) * 100);
    const parts = [`${this.label}  ${this.doneItems}/${this.total} ${pct}%`];
    const worked = this.doneItems - this.skipped;
    if (elapsed > 0 && (worked > 0 || this.sawTokens)) {
      parts.push(this.sawTokens ? `${(this.tokens / elapsed).toFixed(1)} tok/s` : `${(worked / elapsed).toFixed(2)} items/s`);
    }
    const left = this.total - this.doneItems;
    if (left > 0 && worked > 0) parts.push(`ETA ${formatDuration((elapsed / worked) * left)}`);
    else if (left <= 0) parts.push(`in ${formatDuration(elapsed)}`);
    return parts.join(' · ');
  }

  private update(): void {
    if (this.interactive) {
      const t = this.now();
      if (t - this.lastDraw >= this.minIntervalMs || this.doneItems >= this.total) this.draw();
      return;
    }
    if (this.total === 0) return;
    const decile = Math.min(10, Math.floor((this.doneItems / this.total) * 10 + 1e-9));
    if (decile > this.lastDecile) {
      this.lastDecile = decile;
      this.stream.write(`${this.line()}\n`);
    }
  }

  private draw(): void {
    this.lastDraw = this.now();
    this.drawn = true;
    let text = this.line();
    const width = this.stream.columns;
    if (width !== undefined && width > 1 && text.length > width - 1) text = text.slice(0, width - 1);
    this.stream.write(`\r${text}\x1b[K`);
  }
}

/** 42s, 3m05s, 2h07m. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
