import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { DownloadOptions } from '../../src/hub/download.js';
import { repoFolderName } from '../../src/hub/cache.js';
import { repoRoot, stories260K, tempDir } from '../helpers.js';

// ---------------------------------------------------------------------------------------------
// A fake Hub on loopback: the model API, resolve URLs (LFS files redirect to a second server, the
// "CDN", like the real Hub), ETags, Range support, renamed repos (307 with a relative Location),
// X-Error-Code answers, CORS headers (a page may fetch from it), and faults to inject. Each server stops by itself after MAX_REQUESTS
// requests or TIME_LIMIT_MS, so a test that goes wrong cannot leave it running.
// ---------------------------------------------------------------------------------------------

const MAX_REQUESTS = 400;
const TIME_LIMIT_MS = 120_000;
export const REPO = 'karpathy/stories260K';
export const TINYLLAMAS = 'karpathy/tinyllamas';
/** main of the real karpathy/tinyllamas, the commit kvsieve pins its default model to. */
export const TINYLLAMAS_MAIN = '0bd21da7698eaf29a0d7de3992de8a46ef624add';
/** The commit before it on the real repo (here with the same files). */
export const TINYLLAMAS_PREVIOUS = 'cbffbc90324256436c13dc6b4592c82c1e716354';
export const HF_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const commitOf = (s: string) => createHash('sha1').update(s).digest('hex');
export const isLfs = (f: string) => /\.(safetensors|gguf|bin|pt|model)$/.test(f);

export interface FakeRepo {
  /** What main points to. */
  sha: string;
  /** Every commit that can be named (same files in all of them). */
  commits: Set<string>;
  /** Tags and branches other than main, to their commit. */
  refs: Map<string, string>;
  files: Map<string, Buffer>;
}

export interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range: string | undefined;
  auth: string | undefined;
  status: number;
}

export interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  /** Old repo id → new one: requests for the old id answer 307 with a relative Location. */
  renames: Map<string, string>;
  log: Logged[];
  faults: {
    /** Files whose next body is cut off halfway (then the entry is removed). */
    cutOnce: Set<string>;
    ignoreRange: boolean;
    /** Files served with one byte flipped (the metadata keeps the true sha256). */
    corrupt: Set<string>;
    /**
     * When set, the hub answers 401 GatedRepo to a request without a token and 401 "Invalid
     * credentials" (no error code) to one with another token than this.
     */
    token: string | null;
    /** Missing repos answer 401 RepoNotFound, as the real Hub does to a caller without a token. */
    hideMissing: boolean;
    /** When set, every hub answer has this status (a failing Hub: 503). */
    status: number | null;
    /** CDN bodies go out in pieces of `chunk` bytes, `delayMs` apart (to make downloads overlap). */
    throttle: { chunk: number; delayMs: number } | null;
    /** While set, CDN bodies wait for it after their headers (a download held open at will). */
    gate: Promise<void> | null;
  };
  /** GETs of file contents (not the API). */
  downloads: () => Logged[];
  close: () => Promise<void>;
}

function fakeRepo(name: string, files: Map<string, Buffer>): FakeRepo {
  return { sha: commitOf(name), commits: new Set([commitOf(name)]), refs: new Map(), files };
}

export function storiesRepo(): FakeRepo {
  const files = new Map<string, Buffer>();
  for (const f of HF_FILES) files.set(f, readFileSync(stories260K('hf', f)));
  // Files the default selection must leave alone.
  files.set('README.md', Buffer.from('# stories260K\n'));
  files.set('.gitattributes', Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'));
  files.set('stories260K-F32.gguf', Buffer.from('GGUF not really'));
  files.set('original/params.json', Buffer.from('{"dim": 64}'));
  const repo = fakeRepo('first', files);
  return repo;
}

/** karpathy/tinyllamas as it is on the Hub: llama2.c checkpoints at the top, stories260K in a folder. */
export function tinyllamasRepo(): FakeRepo {
  const files = new Map<string, Buffer>([
    ['.gitattributes', Buffer.from('*.bin filter=lfs diff=lfs merge=lfs -text\n')],
    ['README.md', Buffer.from('---\nlicense: mit\n---\n')],
    // Stand-ins for the 60-440 MB checkpoints: never fetched by a test that passes.
    ['stories15M.bin', Buffer.from('not the 15M model')],
    ['stories15M.pt', Buffer.from('not the 15M model either')],
    ['stories42M.bin', Buffer.from('not the 42M model')],
    ['stories110M.bin', Buffer.from('not the 110M model')],
    ['stories260K/readme.md', Buffer.from('# stories260K\n')],
    ['stories260K/stories260K.bin', readFileSync(stories260K('stories260K.bin'))],
    ['stories260K/stories260K.pt', Buffer.from('a pytorch checkpoint')],
    ['stories260K/tok512.bin', readFileSync(stories260K('tok512.bin'))],
    ['stories260K/tok512.model', Buffer.from('a sentencepiece model')],
  ]);
  return { sha: TINYLLAMAS_MAIN, commits: new Set([TINYLLAMAS_MAIN, TINYLLAMAS_PREVIOUS]), refs: new Map([['v1', TINYLLAMAS_PREVIOUS]]), files };
}

function shardedRepo(): FakeRepo {
  const shard1 = Buffer.alloc(3000, 1);
  const shard2 = Buffer.alloc(2000, 2);
  const index = {
    metadata: { total_size: 5000 },
    weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' },
  };
  return fakeRepo(
    'sharded',
    new Map<string, Buffer>([
      ['config.json', Buffer.from('{"model_type": "llama"}')],
      ['model.safetensors.index.json', Buffer.from(JSON.stringify(index))],
      ['model-00001-of-00002.safetensors', shard1],
      ['model-00002-of-00002.safetensors', shard2],
      ['consolidated.safetensors', Buffer.alloc(5000, 3)],
    ]),
  );
}

async function listenLoopback(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  let count = 0;
  const server = createServer((req, res) => {
    if (++count > MAX_REQUESTS) {
      res.writeHead(503).end();
      server.close();
      return;
    }
    // As the real Hub and its CDN do: readable from a page of another origin (the demo's Hub ids).
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-expose-headers', 'content-range, content-length, etag, x-repo-commit, x-linked-size, x-linked-etag, x-error-code');
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const timer = setTimeout(() => {
    server.closeAllConnections();
    server.close();
  }, TIME_LIMIT_MS);
  timer.unref();
  const close = () =>
    new Promise<void>((r) => {
      clearTimeout(timer);
      server.closeAllConnections();
      server.close(() => r());
    });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close };
}

export async function startHub(): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>([
    [REPO, storiesRepo()],
    [TINYLLAMAS, tinyllamasRepo()],
    ['test/sharded', shardedRepo()],
    [
      'test/gguf-only',
      fakeRepo(
        'gguf',
        new Map([
          ['README.md', Buffer.from('hi')],
          ['m-Q8_0.gguf', Buffer.from('q8')],
          ['m-F16.gguf', Buffer.from('f16')],
        ]),
      ),
    ],
  ]);
  const renames = new Map<string, string>();
  const log: Logged[] = [];
  const faults: FakeHub['faults'] = { cutOnce: new Set(), ignoreRange: false, corrupt: new Set(), token: null, hideMissing: false, status: null, throttle: null, gate: null };
  const record = (server: Logged['server'], req: IncomingMessage) => {
    const entry: Logged = {
      server,
      method: req.method ?? '',
      path: decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname),
      range: req.headers.range,
      auth: req.headers.authorization,
      status: 0,
    };
    log.push(entry);
    return entry;
  };
  const fail = (res: ServerResponse, entry: Logged, status: number, code: string | null, message: string) => {
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code } : {}), 'x-error-message': message });
    res.end(JSON.stringify({ error: message }));
  };

  /** Serves `data` with ETag and Range support, applying the injected faults. */
  const sendBytes = (req: IncomingMessage, res: ServerResponse, entry: Logged, file: string, original: Buffer, headers: Record<string, string>) => {
    let data = original;
    if (faults.corrupt.has(file)) {
      data = Buffer.from(original);
      data[data.length >> 1] = data[data.length >> 1]! ^ 0xff;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    let status = 200;
    const h: Record<string, string | number> = { ...headers, 'accept-ranges': 'bytes' };
    if (m && !faults.ignoreRange) {
      start = Number(m[1]);
      if (start >= data.length) {
        entry.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      status = 206;
      h['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    h['content-length'] = body.length;
    entry.status = status;
    res.writeHead(status, h);
    if (req.method === 'HEAD') return void res.end();
    if (faults.cutOnce.has(file)) {
      faults.cutOnce.delete(file);
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 30));
      return;
    }
    const throttle = faults.throttle;
    if (throttle && body.length > throttle.chunk) {
      let off = 0;
      const next = () => {
        if (res.destroyed) return;
        const piece = body.subarray(off, off + throttle.chunk);
        off += piece.length;
        if (off >= body.length) return void res.end(piece);
        res.write(piece, () => setTimeout(next, throttle.delayMs));
      };
      return next();
    }
    res.end(body);
  };

  const cdn = await listenLoopback((req, res) => {
    const entry = record('cdn', req);
    const m = /^\/blobs\/([0-9a-f]{64})$/.exec(entry.path);
    for (const repo of repos.values()) {
      for (const [file, data] of repo.files) {
        if (m && isLfs(file) && sha256(data) === m[1]) {
          const send = () => sendBytes(req, res, entry, file, data, { etag: `"${m[1]}"` });
          return void (faults.gate && req.method === 'GET' ? faults.gate.then(send) : send());
        }
      }
    }
    fail(res, entry, 404, 'EntryNotFound', 'no such blob');
  });

  const hub = await listenLoopback((req, res) => {
    const entry = record('hub', req);
    if (faults.status !== null) return fail(res, entry, faults.status, null, 'the Hub is having a bad day');
    if (faults.token !== null && req.headers.authorization !== `Bearer ${faults.token}`) {
      if (req.headers.authorization === undefined) return fail(res, entry, 401, 'GatedRepo', 'Access to this model is restricted');
      return fail(res, entry, 401, null, 'Invalid credentials in Authorization header');
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(entry.path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(entry.path);
    const repoId = api?.[1] ?? resolve?.[1];
    const renamed = repoId !== undefined ? renames.get(repoId) : undefined;
    if (renamed !== undefined) {
      // The Hub's answer to an old name: a relative redirect to the same path under the new one.
      const rawPath = new URL(req.url ?? '/', 'http://x').pathname;
      const location = api ? rawPath.replace(`/api/models/${repoId}/`, `/api/models/${renamed}/`) : rawPath.replace(`/${repoId}/`, `/${renamed}/`);
      entry.status = 307;
      res.writeHead(307, { location, 'content-length': 0 });
      return void res.end();
    }
    const repo = repoId !== undefined ? repos.get(repoId) : undefined;
    if ((api || resolve) && !repo) {
      return faults.hideMissing
        ? fail(res, entry, 401, 'RepoNotFound', 'Repository not found')
        : fail(res, entry, 404, 'RepoNotFound', 'Repository not found');
    }
    const revision = api?.[2] ?? resolve?.[2];
    const commit = revision === 'main' ? repo?.sha : repo?.refs.get(revision!) ?? (repo?.commits.has(revision!) ? revision : undefined);
    if (repo && commit === undefined) return fail(res, entry, 404, 'RevisionNotFound', 'Invalid rev id');
    if (api && repo) {
      entry.status = 200;
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ id: repoId, sha: commit, siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })) }));
    }
    if (resolve && repo) {
      const file = resolve[3]!;
      const data = repo.files.get(file);
      if (!data) return fail(res, entry, 404, 'EntryNotFound', 'Entry not found');
      if (isLfs(file)) {
        const sum = sha256(data);
        entry.status = 302;
        res.writeHead(302, {
          location: `${cdn.url}/blobs/${sum}`,
          'x-linked-etag': `"${sum}"`,
          'x-linked-size': String(data.length),
          'x-repo-commit': commit!,
          etag: `"${gitSha1(Buffer.from('lfs pointer'))}"`,
          'content-length': 0,
        });
        return void res.end();
      }
      return sendBytes(req, res, entry, file, data, { etag: `"${gitSha1(data)}"`, 'x-repo-commit': commit! });
    }
    fail(res, entry, 404, 'NotFound', 'no route');
  });

  return {
    url: hub.url,
    repos,
    renames,
    log,
    faults,
    downloads: () => log.filter((e) => e.method === 'GET' && !e.path.startsWith('/api/')),
    close: async () => {
      await hub.close();
      await cdn.close();
    },
  };
}

/** The URL of a port that was just in use and is closed now: an unreachable Hub. */
export async function closedEndpoint(): Promise<string> {
  const gone = await startHub();
  await gone.close();
  return gone.url;
}

/** A hub plus a temporary cache, both cleaned up after `fn`. */
export async function withHub(fn: (hub: FakeHub, cache: string, opts: DownloadOptions, tmp: string) => Promise<void>) {
  const hub = await startHub();
  const t = tempDir('kvsieve-hub-');
  const cache = join(t.dir, 'hub');
  try {
    // env: only HF_HOME, which keeps the developer's HF_TOKEN / token file out of the tests.
    await fn(hub, cache, { endpoint: hub.url, cacheDir: cache, env: { HF_HOME: join(t.dir, 'home') } }, t.dir);
  } finally {
    await hub.close();
    t.cleanup();
  }
}

export const repoDir = (cache: string, repo = REPO) => join(cache, repoFolderName(repo));

export function assertIdentical(snapshot: string, files = HF_FILES) {
  for (const f of files) assert.deepEqual(readFileSync(join(snapshot, f)), readFileSync(stories260K('hf', f)), `${f} differs`);
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI from source in a child process whose environment holds only PATH and `env` (no
 * KVSIEVE_MODEL_PATH, HF_TOKEN or HF_* of the developer's), so what it finds is what the test set up.
 */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000, onStderr?: (soFar: string) => void): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr);
    });
    const timer = setTimeout(() => child.kill(), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
