/**
 * The fuzz run: builds the seeds, starts worker processes, hands out cases, and classifies every
 * outcome. A case over the time limit is a hang (its worker is killed and replaced); a worker whose
 * resident memory passes the memory limit is killed too (memory), and so is a case whose reported
 * peak passes it; a worker that dies on its own is a crash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCase } from './cases.js';
import { FULL, LIGHT } from './mutate.js';
import { buildSeeds, FORMATS, repoRoot, seedsFor, type Format, type Seed } from './seeds.js';
import type { CaseReply, CaseRequest, Outcome } from './worker.js';

export const OUTCOMES: readonly Outcome[] = ['ok', 'ok-nonfinite', 'refused', 'bad-message', 'other-error', 'crash', 'hang', 'memory'];
/** Outcomes that are defects: everything but loading fine and a clear KvsieveError. */
export const DEFECTS: readonly Outcome[] = ['bad-message', 'other-error', 'crash', 'hang', 'memory'];

export interface FuzzOptions {
  seed: number;
  /** Cases in all (spread over the formats in turn), or of the one format. */
  cases: number;
  formats?: readonly Format[];
  /** Stop handing out cases after this many seconds. */
  timeLimitS?: number;
  /** Run exactly this case (with `formats` of one format). */
  only?: number;
  workers?: number;
  caseTimeoutMs?: number;
  memoryLimitMb?: number;
  /** Copy the files of the `only` case here. */
  keep?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Examples kept per defect class. */
  examples?: number;
  /** Generated values of at most 100,000 items (mutate.ts LIGHT): the smoke run. */
  light?: boolean;
}

export interface FuzzReport {
  seed: number;
  light: boolean;
  cases: number;
  seconds: number;
  counts: Record<Format, Record<Outcome, number>>;
  /** The first examples of each defect class (and of loads with non-finite logits, for information). */
  examples: Partial<Record<Outcome, CaseReply[]>>;
  /** Every result, when a single case was run. */
  single?: CaseReply;
  maxHwmKb: number;
  slowest: CaseReply[];
  /** The cases with the highest peak resident memory. */
  largest: CaseReply[];
  /** Milliseconds spent in the cases of each format (loading and exercising, not laying out). */
  ms: Record<Format, number>;
}

interface Worker {
  child: ChildProcess;
  ready: boolean;
  busy: { req: CaseRequest; timer: NodeJS.Timeout; start: number } | null;
  stderr: string;
  killedFor: Outcome | null;
}

const WORKER = join(repoRoot, 'scripts', 'fuzz', 'worker.ts');

function rssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Which case (format, index) comes at position k of a run over `formats`. */
export function caseAt(formats: readonly Format[], k: number): { format: Format; index: number } {
  return { format: formats[k % formats.length]!, index: k };
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const formats = o.formats ?? FORMATS;
  const workersWanted = o.only !== undefined ? 1 : Math.max(1, o.workers ?? 2);
  const caseTimeoutMs = o.caseTimeoutMs ?? 10_000;
  const memoryLimitKb = (o.memoryLimitMb ?? 2048) * 1024;
  const maxExamples = o.examples ?? 5;
  const log = o.log ?? (() => {});
  const start = performance.now();

  const counts = Object.fromEntries(formats.map((f) => [f, Object.fromEntries(OUTCOMES.map((x) => [x, 0]))])) as FuzzReport['counts'];
  const examples: FuzzReport['examples'] = {};
  const slowest: CaseReply[] = [];
  const largest: CaseReply[] = [];
  const ms = Object.fromEntries(formats.map((f) => [f, 0])) as FuzzReport['ms'];
  let maxHwmKb = 0;
  let single: CaseReply | undefined;

  // seeds and the workers' scratch directories, removed at the end
  const runDir = mkdtempSync(join(tmpdir(), 'kvsieve-fuzz-'));
  const seedDir = join(runDir, 'seeds');
  buildSeeds(seedDir);

  const queue: CaseRequest[] = [];
  const light = o.light ? { light: true } : {};
  if (o.only !== undefined) queue.push({ runSeed: o.seed, format: formats[0]!, index: o.only, ...light, ...(o.keep ? { keep: o.keep } : {}) });
  let next = 0;
  const total = o.only !== undefined ? 1 : o.cases;
  const takeCase = (): CaseRequest | null => {
    if (queue.length > 0) return queue.shift()!;
    if (o.only !== undefined || next >= total) return null;
    if (o.timeLimitS !== undefined && performance.now() - start > o.timeLimitS * 1000) return null;
    const { format, index } = caseAt(formats, next++);
    return { runSeed: o.seed, format, index, ...light };
  };

  const parentSeeds = new Map<Format, Seed[]>();
  /** The seed and mutations of a case whose worker died before telling: rebuilt from (seed, format, index). */
  const describe = (r: CaseReply): CaseReply => {
    if (r.seedName !== '') return r;
    let s = parentSeeds.get(r.format);
    if (!s) parentSeeds.set(r.format, (s = seedsFor(seedDir, r.format)));
    const c = buildCase(o.seed, r.format, r.index, s, o.light ? LIGHT : FULL);
    return { ...r, seedName: c.seed.name, what: c.what };
  };

  let done = 0;
  let lastLog = performance.now();
  const record = (reply: CaseReply) => {
    const r = DEFECTS.includes(reply.outcome) ? describe(reply) : reply;
    done++;
    counts[r.format][r.outcome]++;
    ms[r.format] += r.ms;
    if (r.outcome !== 'hang' && r.outcome !== 'memory' && r.outcome !== 'crash') maxHwmKb = Math.max(maxHwmKb, r.hwmKb);
    if (DEFECTS.includes(r.outcome) || r.outcome === 'ok-nonfinite') {
      const list = (examples[r.outcome] ??= []);
      if (list.length < maxExamples) list.push(r);
    }
    const top = (list: CaseReply[], key: (x: CaseReply) => number) => {
      list.push(r);
      list.sort((a, b) => key(b) - key(a));
      list.length = Math.min(list.length, 5);
    };
    if (r.outcome !== 'hang') top(slowest, (x) => x.ms);
    if (r.hwmKb > 0) top(largest, (x) => x.hwmKb);
    if (o.only !== undefined) single = r;
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      const defects = formats.reduce((n, f) => n + DEFECTS.reduce((m, x) => m + counts[f][x], 0), 0);
      log(`fuzz: ${done} cases in ${((performance.now() - start) / 1000).toFixed(0)} s, ${defects} defects`);
    }
  };

  try {
    await new Promise<void>((resolveAll, rejectAll) => {
      const workers = new Set<Worker>();
      let finished = false;
      const finishIfIdle = () => {
        if (finished) return;
        if ([...workers].some((w) => w.busy)) return;
        if (queue.length > 0) return;
        finished = true;
        clearInterval(watchdog);
        for (const w of workers) w.child.kill('SIGKILL');
        resolveAll();
      };
      const dispatch = (w: Worker) => {
        const req = takeCase();
        if (req === null) {
          w.child.kill('SIGKILL');
          workers.delete(w);
          finishIfIdle();
          return;
        }
        const timer = setTimeout(() => {
          w.killedFor = 'hang';
          w.child.kill('SIGKILL');
        }, caseTimeoutMs);
        w.busy = { req, timer, start: performance.now() };
        w.child.send(req);
      };
      const spawnWorker = () => {
        const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', '--max-old-space-size=4096', WORKER, seedDir, runDir], {
          cwd: repoRoot,
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        });
        const w: Worker = { child, ready: false, busy: null, stderr: '', killedFor: null };
        workers.add(w);
        child.stderr!.on('data', (d: Buffer) => {
          w.stderr = (w.stderr + d.toString()).slice(-3000);
        });
        child.on('message', (m: CaseReply | { ready: true }) => {
          if ('ready' in m) {
            w.ready = true;
            dispatch(w);
            return;
          }
          if (!w.busy) return;
          clearTimeout(w.busy.timer);
          w.busy = null;
          record(m.hwmKb > memoryLimitKb && m.outcome !== 'crash' ? { ...m, outcome: 'memory', message: `peak RSS ${(m.hwmKb / 1024).toFixed(0)} MiB; then: ${m.message ?? m.outcome}` } : m);
          w.stderr = '';
          if (!m.recycle) dispatch(w); // else it exits, and the exit handler starts another
        });
        child.on('exit', (code, signal) => {
          workers.delete(w);
          if (w.busy) {
            clearTimeout(w.busy.timer);
            const { req, start: t0 } = w.busy;
            const outcome: Outcome = w.killedFor ?? 'crash';
            const what = outcome === 'hang' ? `killed after ${caseTimeoutMs} ms` : outcome === 'memory' ? `killed: resident memory over ${memoryLimitKb / 1024} MiB` : `worker died (code ${code}, signal ${signal})`;
            // the case's mutations, for the report: rebuilt here from (seed, format, index)
            record({ format: req.format, index: req.index, seedName: '', what: [], outcome, message: `${what}${w.stderr ? `: ${w.stderr.trim().split('\n').slice(-6).join(' | ')}` : ''}`, hwmKb: 0, ms: performance.now() - t0 });
            w.busy = null;
          } else if (!w.ready && !finished) {
            // a worker that cannot start is a harness failure, not a case outcome
            finished = true;
            clearInterval(watchdog);
            for (const x of workers) x.child.kill('SIGKILL');
            rejectAll(new Error(`fuzz worker failed to start (code ${code}): ${w.stderr}`));
            return;
          }
          if (!finished && (queue.length > 0 || takeCasePossible())) spawnWorker();
          else finishIfIdle();
        });
      };
      const takeCasePossible = () =>
        o.only === undefined && next < total && (o.timeLimitS === undefined || performance.now() - start <= o.timeLimitS * 1000);
      const watchdog = setInterval(() => {
        for (const w of workers) {
          if (w.busy && w.child.pid !== undefined && rssKb(w.child.pid) > memoryLimitKb) {
            w.killedFor = 'memory';
            w.child.kill('SIGKILL');
          }
        }
      }, 50);
      for (let i = 0; i < Math.min(workersWanted, total); i++) spawnWorker();
      if (total === 0) finishIfIdle();
    });
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
  return { seed: o.seed, light: o.light ?? false, cases: done, seconds: (performance.now() - start) / 1000, counts, examples, ...(single ? { single } : {}), maxHwmKb, slowest, largest, ms };
}

/** The command that reruns one case. */
export function reproCommand(seed: number, r: Pick<CaseReply, 'format' | 'index'>, light = false): string {
  return `npm run fuzz -- --seed ${seed} --case ${r.index} --format ${r.format}${light ? ' --light' : ''}`;
}

/** The report as text: counts per format, then the first examples of each defect class. */
export function formatReport(rep: FuzzReport): string {
  const lines: string[] = [];
  const cols = OUTCOMES;
  const head = ['format', 'cases', ...cols, 'ms/case'];
  const rows: string[][] = [];
  const totals = Object.fromEntries(cols.map((c) => [c, 0])) as Record<Outcome, number>;
  for (const [f, c] of Object.entries(rep.counts)) {
    const n = cols.reduce((s, x) => s + c[x], 0);
    rows.push([f, String(n), ...cols.map((x) => String(c[x])), n > 0 ? (rep.ms[f as Format] / n).toFixed(1) : '-']);
    for (const x of cols) totals[x] += c[x];
  }
  const allMs = Object.values(rep.ms).reduce((a, b) => a + b, 0);
  rows.push(['all', String(rep.cases), ...cols.map((x) => String(totals[x])), rep.cases > 0 ? (allMs / rep.cases).toFixed(1) : '-']);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => (i === 0 ? v.padEnd(width[i]!) : v.padStart(width[i]!))).join('  ');
  lines.push(`fuzz: seed ${rep.seed}${rep.light ? ' (light)' : ''}, ${rep.cases} cases in ${rep.seconds.toFixed(1)} s, peak RSS of a finished case ${(rep.maxHwmKb / 1024).toFixed(0)} MiB`);
  lines.push(fmt(head), ...rows.map(fmt));
  lines.push('(refused = a one-line KvsieveError under 300 characters; ok-nonfinite = loaded, but the logits are not all finite: not a defect by itself)');
  const defects = DEFECTS.reduce((n, x) => n + totals[x], 0);
  lines.push(defects === 0 ? 'no defects' : `${defects} defects`);
  for (const cls of [...DEFECTS, 'ok-nonfinite' as const]) {
    const list = rep.examples[cls];
    if (!list || list.length === 0) continue;
    lines.push('', `${cls}: first ${list.length} of ${totals[cls]}`);
    for (const r of list) {
      lines.push(`  ${reproCommand(rep.seed, r, rep.light)}  (${r.ms.toFixed(0)} ms, ${(r.hwmKb / 1024).toFixed(0)} MiB${r.seedName ? `, seed ${r.seedName}` : ''})`);
      for (const w of r.what) lines.push(`    mutation: ${w}`);
      if (r.message !== undefined) lines.push(`    ${r.errorName ? `${r.errorName}: ` : ''}${r.message.length > 600 ? `${r.message.slice(0, 600)}… (${r.message.length} characters)` : r.message}`);
      if (r.stack) lines.push(...r.stack.split('\n').slice(1, 6).map((s) => `      ${s.trim()}`));
    }
  }
  if (rep.slowest.length > 0) {
    lines.push('', 'slowest cases:');
    for (const r of rep.slowest) lines.push(`  ${r.ms.toFixed(0)} ms  ${r.outcome}  ${reproCommand(rep.seed, r, rep.light)}`);
  }
  if (rep.largest.length > 0) {
    lines.push('', 'largest peak resident memory (of the worker, during the case):');
    for (const r of rep.largest) lines.push(`  ${(r.hwmKb / 1024).toFixed(0)} MiB  ${r.outcome}  ${reproCommand(rep.seed, r, rep.light)}`);
  }
  return lines.join('\n');
}
