/**
 * A fuzz worker: a child process that takes cases from its parent (runner.ts) over IPC, lays each one
 * out in its own scratch directory, loads it through the public path and reports how it went.
 *
 * Run as: node --import tsx --expose-gc worker.ts SEED_DIR RUN_DIR. The parent enforces the time limit and
 * watches the resident memory; the worker reports its peak resident memory per case (VmHWM, reset
 * between cases through /proc/self/clear_refs when it grew).
 */
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { buildCase } from './cases.js';
import { FULL, LIGHT } from './mutate.js';
import { seedsFor, type Format, type Seed } from './seeds.js';

export type Outcome = 'ok' | 'ok-nonfinite' | 'refused' | 'bad-message' | 'other-error' | 'crash' | 'hang' | 'memory';

export interface CaseRequest {
  runSeed: number;
  format: Format;
  index: number;
  /** Copy the case's files here (reproduction). */
  keep?: string;
  /** Smaller generated values (the smoke run). */
  light?: boolean;
}

export interface CaseReply {
  format: Format;
  index: number;
  seedName: string;
  what: string[];
  outcome: Outcome;
  errorName?: string;
  message?: string;
  stack?: string;
  /** Peak resident memory during the case, KiB. */
  hwmKb: number;
  ms: number;
  /** The worker exits after this reply (its memory stayed high); the parent starts another. */
  recycle?: boolean;
}

/** Longest message a KvsieveError may have (one line naming the file and field). */
export const MAX_MESSAGE = 300;

const seedDir = process.argv[2]!;
// under the run's directory, which the parent removes at the end (a worker killed for a hang cannot clean up)
const scratch = join(process.argv[3] ?? tmpdir(), `w${process.pid}`);
const seedCache = new Map<Format, Seed[]>();

function seeds(format: Format): Seed[] {
  let s = seedCache.get(format);
  if (!s) {
    s = seedsFor(seedDir, format);
    seedCache.set(format, s);
  }
  return s;
}

function status(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Resets the peak-RSS mark (Linux 4.0+); after a gc, so the next case starts from what is live. */
function resetPeak(): void {
  (globalThis as { gc?: () => void }).gc?.();
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not permitted here: the mark only grows, which overstates later cases, never understates
  }
}

/** Loads the case's model through loadModel and exercises it: logits, a short generation, the tokenizer, the chat template. */
async function exercise(path: string): Promise<boolean> {
  const model = await loadModel(path, { backend: 'reference' });
  try {
    const V = model.config.vocabSize;
    const ids = [1, 2, 3].map((i) => Math.min(i, V - 1));
    const rows = model.logits(ids);
    let finite = rows.every((r) => r.every(Number.isFinite));
    await model.complete(null, { promptIds: ids, maxTokens: 2, ignoreEos: true });
    const tok = model.tokenizer;
    if (tok) {
      const enc = tok.encode('Once upon a time, there was a little girl named Lily. 123 ünï');
      tok.decode(enc);
      const d = tok.streamDecoder(enc[0]);
      for (const id of enc.slice(1)) d.push(id);
      d.flush();
      for (let i = 0; i < Math.min(V, 8); i++) tok.tokenString(i);
      if (tok.applyChatTemplate) {
        const prompt = model.encodePrompt('Hello there', { chat: true, system: 'Be brief.' });
        finite &&= prompt.every((id) => Number.isInteger(id) && id >= 0 && id < V);
      }
    }
    return finite;
  } finally {
    model.dispose();
  }
}

function layOut(dir: string, seed: Seed, files: Map<string, Uint8Array>): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const name of seed.files.keys()) {
    const changed = files.get(name);
    if (changed) writeFileSync(join(dir, name), changed);
    else symlinkSync(join(seed.dir, name), join(dir, name));
  }
}

async function run(req: CaseRequest): Promise<CaseReply> {
  const c = buildCase(req.runSeed, req.format, req.index, seeds(req.format), req.light ? LIGHT : FULL);
  const dir = join(scratch, 'case');
  layOut(dir, c.seed, c.files);
  if (req.keep) {
    rmSync(req.keep, { recursive: true, force: true });
    cpSync(dir, req.keep, { recursive: true, dereference: true });
  }
  const base = { format: req.format, index: req.index, seedName: c.seed.name, what: c.what };
  const start = performance.now();
  let reply: Omit<CaseReply, 'hwmKb' | 'ms'>;
  try {
    const finite = await exercise(join(dir, c.entry));
    reply = { ...base, outcome: finite ? 'ok' : 'ok-nonfinite' };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const message = err.message.length > 4000 ? `${err.message.slice(0, 4000)}… (${err.message.length} characters)` : err.message;
    const fine = e instanceof KvsieveError && !err.message.includes('\n') && err.message.length < MAX_MESSAGE;
    reply = {
      ...base,
      outcome: e instanceof KvsieveError ? (fine ? 'refused' : 'bad-message') : 'other-error',
      errorName: err.name,
      message,
      ...(e instanceof KvsieveError && fine ? {} : { stack: (err.stack ?? '').split('\n').slice(0, 12).join('\n') }),
    };
  }
  const ms = performance.now() - start;
  const hwmKb = status('VmHWM');
  if (hwmKb > 512 * 1024) {
    resetPeak();
    // memory the engine keeps after a gc would count against the next cases: start afresh instead
    if (status('VmRSS') > 384 * 1024) recycle = true;
  }
  return { ...reply, hwmKb, ms, ...(recycle ? { recycle } : {}) };
}

/** Set when this worker should exit after its reply (the parent starts another). */
let recycle = false;

process.on('message', (msg: CaseRequest) => {
  run(msg).then(
    (r) => process.send!(r, () => {
      if (recycle) process.exit(0);
    }),
    (e: unknown) => {
      // a failure of the harness itself (laying out files): reported as a crash with its stack
      process.send!({ format: msg.format, index: msg.index, seedName: '?', what: [], outcome: 'crash', message: String((e as Error).stack ?? e), hwmKb: 0, ms: 0 });
    },
  );
});
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
mkdirSync(scratch, { recursive: true });
resetPeak();
process.send!({ ready: true });
