import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * An exclusive lock on a file, held across processes the way Python's huggingface_hub holds its
 * download locks (filelock's UnixFileLock: flock(2) on `{cache}/.locks/models--org--name/{blob}.lock`),
 * so that two downloads of one blob, by kvsieve or by Python, wait for each other instead of writing
 * one `.incomplete` file together.
 *
 * Node has no flock(2), so a child process holds the lock: util-linux's `flock` (Debian and Ubuntu
 * have it in every install, busybox has one too) running `cat`. `flock` starts `cat` only once the
 * lock is held, and `cat` echoes the newline written to it: that echo says the lock is ours.
 * Closing cat's stdin ends it, and the lock with it; so does the death of this process (the pipe
 * closes), so a crash never leaves a lock held.
 *
 * Without a `flock` command (macOS, Windows) the lock is a directory beside the lock file,
 * `{lock}.kvsieve`, made with mkdir (atomic: one maker wins) and removed on release; it names its
 * owner (pid, host), and one left by a dead process of this host is taken over. That keeps kvsieve
 * processes apart, but Python does not see it.
 *
 * Within one process, callers of one path queue on a promise before any of this.
 */

export type LockMethod = 'flock' | 'dir';

export interface LockOptions {
  signal?: AbortSignal;
  /** Called once if the lock is not had at once (another holder), as this call starts to wait. */
  onWait?: () => void;
  /** How to lock (default: `flock` where the command exists, else `dir`). */
  method?: LockMethod;
}

interface Held {
  release(): Promise<void>;
}

/** How long a lock may take before the caller is told it waits (a free flock takes a few ms). */
const WAIT_NOTICE_MS = 300;
const DIR_POLL_MS = 100;

const queues = new Map<string, Promise<void>>();
let flockMissing = false;

/** Runs `fn` holding the lock file `path` (created, with its folder, when missing; never deleted). */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const before = queues.get(path);
  let leave!: () => void;
  const mine = new Promise<void>((r) => (leave = r));
  const tail = (before ?? Promise.resolve()).then(() => mine);
  queues.set(path, tail);
  let waited = false;
  const notice = () => {
    if (!waited) {
      waited = true;
      options.onWait?.();
    }
  };
  try {
    if (before) {
      notice();
      await abortable(before, options.signal);
    }
    await mkdir(dirname(path), { recursive: true });
    const timer = setTimeout(notice, WAIT_NOTICE_MS);
    let held: Held;
    try {
      held = await acquire(path, options);
    } finally {
      clearTimeout(timer);
    }
    try {
      return await fn();
    } finally {
      await held.release();
    }
  } finally {
    leave();
    if (queues.get(path) === tail) queues.delete(path);
  }
}

async function acquire(path: string, options: LockOptions): Promise<Held> {
  const method = options.method ?? (flockMissing ? 'dir' : 'flock');
  if (method === 'flock') {
    const held = await acquireFlock(path, options.signal);
    if (held !== null) return held;
    if (options.method === 'flock') throw new Error('the flock command is not installed');
    flockMissing = true;
  }
  return acquireDir(path, options.signal);
}

/** flock(1) holding `path` while `cat` runs; null when there is no flock command. */
function acquireFlock(path: string, signal: AbortSignal | undefined): Promise<Held | null> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const child = spawn('flock', ['--exclusive', path, 'cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let state: 'waiting' | 'held' | 'failed' = 'waiting';
    let stderr = '';
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    const onAbort = () => {
      if (state !== 'waiting') return;
      state = 'failed';
      child.kill();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdin.on('error', () => {}); // EPIPE when flock ends before reading: its exit says why
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (e: Error & { code?: string }) => {
      if (state !== 'waiting') return;
      state = 'failed';
      signal?.removeEventListener('abort', onAbort);
      if (e.code === 'ENOENT') resolve(null);
      else reject(e);
    });
    child.stdout.once('data', () => {
      if (state !== 'waiting') return;
      state = 'held';
      signal?.removeEventListener('abort', onAbort);
      resolve({
        release: async () => {
          child.stdin.end();
          await closed;
        },
      });
    });
    child.once('close', (code) => {
      if (state !== 'waiting') return;
      state = 'failed';
      signal?.removeEventListener('abort', onAbort);
      reject(new Error(`flock ${path} failed (exit ${code}): ${stderr.trim()}`));
    });
    child.stdin.write('\n');
  });
}

interface Owner {
  pid: number;
  host: string;
}

/** The directory lock: `{path}.kvsieve`, holding `owner` (pid and host). */
async function acquireDir(path: string, signal: AbortSignal | undefined): Promise<Held> {
  const dir = `${path}.kvsieve`;
  const me: Owner = { pid: process.pid, host: hostname() };
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    try {
      await mkdir(dir);
      await writeFile(join(dir, 'owner'), JSON.stringify(me));
      return { release: () => rm(dir, { recursive: true, force: true }) };
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
    }
    // Two waiters may both find a dead owner and both remove its directory; the mkdir above still
    // lets one of them in, and the loser of a rare double removal only waits a round longer.
    if (await abandoned(dir, me.host)) await rm(dir, { recursive: true, force: true });
    else await sleep(DIR_POLL_MS, signal);
  }
}

/** Whether the lock directory's owner is a process of this host that is gone. */
async function abandoned(dir: string, host: string): Promise<boolean> {
  let owner: Owner;
  try {
    owner = JSON.parse(await readFile(join(dir, 'owner'), 'utf8')) as Owner;
  } catch {
    // Made but not yet written, or written by a process that died in between: only the latter is old.
    try {
      return Date.now() - (await stat(dir)).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
  if (owner.host !== host || !Number.isInteger(owner.pid)) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (e) {
    return (e as { code?: string }).code === 'ESRCH';
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return abortable(new Promise<void>((r) => setTimeout(r, ms)), signal);
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
