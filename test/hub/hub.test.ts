import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { downloadRepo, globToRegExp, matchesInclude, type DownloadOptions } from '../../src/hub/download.js';
import { hubCacheDir, isRepoId, repoFolderName, resolveCachedRepo } from '../../src/hub/cache.js';
import { KvsieveError } from '../../src/core/errors.js';
import { loadModel } from '../../src/api.js';
import { resolveModel } from '../../src/model/resolve.js';
import { repoRoot, stories260K, tempDir } from '../helpers.js';

// ---------------------------------------------------------------------------------------------
// A fake Hub on loopback: the model API, resolve URLs (LFS files redirect to a second server, the
// "CDN", like the real Hub), ETags, Range support, and faults to inject. Each server stops by
// itself after MAX_REQUESTS requests or TIME_LIMIT_MS.
// ---------------------------------------------------------------------------------------------

const MAX_REQUESTS = 200;
const TIME_LIMIT_MS = 20_000;
const REPO = 'karpathy/stories260K';
const HF_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const commitOf = (s: string) => createHash('sha1').update(s).digest('hex');
const isLfs = (f: string) => f.endsWith('.safetensors') || f.endsWith('.gguf');

interface FakeRepo {
  /** What main points to. */
  sha: string;
  /** Every commit that can be named (same files in all of them). */
  commits: Set<string>;
  files: Map<string, Buffer>;
}

interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range: string | undefined;
  auth: string | undefined;
  status: number;
}

interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  log: Logged[];
  faults: {
    /** Files whose next body is cut off halfway (then the entry is removed). */
    cutOnce: Set<string>;
    ignoreRange: boolean;
    /** Files served with one byte flipped (the metadata keeps the true sha256). */
    corrupt: Set<string>;
    /** When set, the hub answers 401 without `Authorization: Bearer <token>`. */
    token: string | null;
  };
  downloads: () => Logged[];
  close: () => Promise<void>;
}

function storiesRepo(): FakeRepo {
  const files = new Map<string, Buffer>();
  for (const f of HF_FILES) files.set(f, readFileSync(stories260K('hf', f)));
  // Files the default selection must leave alone.
  files.set('README.md', Buffer.from('# stories260K\n'));
  files.set('.gitattributes', Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'));
  files.set('stories260K-F32.gguf', Buffer.from('GGUF not really'));
  files.set('original/params.json', Buffer.from('{"dim": 64}'));
  return { sha: commitOf('first'), commits: new Set([commitOf('first')]), files };
}

function shardedRepo(): FakeRepo {
  const shard1 = Buffer.alloc(3000, 1);
  const shard2 = Buffer.alloc(2000, 2);
  const index = {
    metadata: { total_size: 5000 },
    weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' },
  };
  const files = new Map<string, Buffer>([
    ['config.json', Buffer.from('{"model_type": "llama"}')],
    ['model.safetensors.index.json', Buffer.from(JSON.stringify(index))],
    ['model-00001-of-00002.safetensors', shard1],
    ['model-00002-of-00002.safetensors', shard2],
    ['consolidated.safetensors', Buffer.alloc(5000, 3)],
  ]);
  return { sha: commitOf('sharded'), commits: new Set([commitOf('sharded')]), files };
}

async function listenLoopback(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  let count = 0;
  const server = createServer((req, res) => {
    if (++count > MAX_REQUESTS) {
      res.writeHead(503).end();
      server.close();
      return;
    }
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

async function startHub(): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>([
    [REPO, storiesRepo()],
    ['test/sharded', shardedRepo()],
    [
      'test/gguf-only',
      {
        sha: commitOf('gguf'),
        commits: new Set([commitOf('gguf')]),
        files: new Map([
          ['README.md', Buffer.from('hi')],
          ['m-Q8_0.gguf', Buffer.from('q8')],
          ['m-F16.gguf', Buffer.from('f16')],
        ]),
      },
    ],
  ]);
  const log: Logged[] = [];
  const faults: FakeHub['faults'] = { cutOnce: new Set(), ignoreRange: false, corrupt: new Set(), token: null };
  const record = (server: Logged['server'], req: IncomingMessage, res: ServerResponse) => {
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
  const fail = (res: ServerResponse, entry: Logged, status: number, code: string, message: string) => {
    entry.status = status;
    res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
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
    res.end(body);
  };

  let cdnUrl = '';
  const cdn = await listenLoopback((req, res) => {
    const entry = record('cdn', req, res);
    const m = /^\/blobs\/([0-9a-f]{64})$/.exec(entry.path);
    for (const repo of repos.values()) {
      for (const [file, data] of repo.files) {
        if (m && isLfs(file) && sha256(data) === m[1]) return sendBytes(req, res, entry, file, data, { etag: `"${m[1]}"` });
      }
    }
    fail(res, entry, 404, 'EntryNotFound', 'no such blob');
  });
  cdnUrl = cdn.url;

  const hub = await listenLoopback((req, res) => {
    const entry = record('hub', req, res);
    if (faults.token !== null && req.headers.authorization !== `Bearer ${faults.token}`) {
      return fail(res, entry, 401, 'GatedRepo', 'Access to this model is restricted');
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(entry.path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(entry.path);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId !== undefined ? repos.get(repoId) : undefined;
    if ((api || resolve) && !repo) return fail(res, entry, 404, 'RepoNotFound', 'Repository not found');
    const revision = api?.[2] ?? resolve?.[2];
    if (repo && revision !== 'main' && !repo.commits.has(revision!)) return fail(res, entry, 404, 'RevisionNotFound', 'Invalid rev id');
    if (api && repo) {
      entry.status = 200;
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ id: repoId, sha: revision === 'main' ? repo.sha : revision, siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })) }));
    }
    if (resolve && repo) {
      const file = resolve[3]!;
      const data = repo.files.get(file);
      if (!data) return fail(res, entry, 404, 'EntryNotFound', 'Entry not found');
      if (isLfs(file)) {
        const sum = sha256(data);
        entry.status = 302;
        res.writeHead(302, {
          location: `${cdnUrl}/blobs/${sum}`,
          'x-linked-etag': `"${sum}"`,
          'x-linked-size': String(data.length),
          'x-repo-commit': repo.sha,
          etag: `"${gitSha1(Buffer.from('lfs pointer'))}"`,
          'content-length': 0,
        });
        return void res.end();
      }
      return sendBytes(req, res, entry, file, data, { etag: `"${gitSha1(data)}"`, 'x-repo-commit': repo.sha });
    }
    fail(res, entry, 404, 'NotFound', 'no route');
  });

  return {
    url: hub.url,
    repos,
    log,
    faults,
    downloads: () => log.filter((e) => e.method === 'GET' && !e.path.startsWith('/api/')),
    close: async () => {
      await hub.close();
      await cdn.close();
    },
  };
}

/** A hub plus a temporary cache, both cleaned up after `fn`. */
async function withHub(fn: (hub: FakeHub, cache: string, opts: DownloadOptions) => Promise<void>) {
  const hub = await startHub();
  const t = tempDir('kvsieve-hub-');
  const cache = join(t.dir, 'hub');
  try {
    // env: {} keeps the developer's HF_TOKEN / token file out of the tests.
    await fn(hub, cache, { endpoint: hub.url, cacheDir: cache, env: { HF_HOME: join(t.dir, 'home') } });
  } finally {
    await hub.close();
    t.cleanup();
  }
}

const repoDir = (cache: string, repo = REPO) => join(cache, repoFolderName(repo));

function assertIdentical(snapshot: string, files = HF_FILES) {
  for (const f of files) assert.deepEqual(readFileSync(join(snapshot, f)), readFileSync(stories260K('hf', f)), `${f} differs`);
}

// ---------------------------------------------------------------------------------------------

test('a full download lands in the Hugging Face cache layout, byte-identical, default files only', async () => {
  await withHub(async (hub, cache, opts) => {
    const seen = new Map<string, { bytes: number; total: number | null }>();
    const snapshot = await downloadRepo(REPO, { ...opts, onProgress: (p) => seen.set(p.file, p) });
    const sha = hub.repos.get(REPO)!.sha;
    assert.equal(snapshot, join(repoDir(cache), 'snapshots', sha));
    assert.equal(readFileSync(join(repoDir(cache), 'refs', 'main'), 'utf8'), sha);
    assert.deepEqual(readdirSync(snapshot).sort(), [...HF_FILES].sort());
    assertIdentical(snapshot);
    for (const f of HF_FILES) {
      const data = readFileSync(stories260K('hf', f));
      const id = isLfs(f) ? sha256(data) : gitSha1(data);
      assert.ok(lstatSync(join(snapshot, f)).isSymbolicLink(), `${f} is a symlink`);
      assert.equal(readlinkSync(join(snapshot, f)), `../../blobs/${id}`);
      assert.deepEqual(seen.get(f), { file: f, bytes: data.length, total: data.length });
    }
    assert.equal(readdirSync(join(repoDir(cache), 'blobs')).length, HF_FILES.length);
    // The LFS file came from the CDN after the hub's redirect; nothing carried a token.
    assert.ok(hub.log.some((e) => e.server === 'cdn' && e.method === 'GET' && e.status === 200));
    assert.ok(hub.log.every((e) => e.auth === undefined));
    // The downloaded snapshot (symlinks into blobs/) is a model directory kvsieve loads and runs.
    const model = await loadModel(snapshot);
    try {
      assert.equal(model.info().format, 'hf');
      const out = await model.complete('Once upon a time', { maxTokens: 5 });
      assert.ok(out.text.length > 0);
    } finally {
      model.dispose();
    }
  });
});

test('a second download fetches nothing; a new commit with the same files reuses every blob', async () => {
  await withHub(async (hub, cache, opts) => {
    const first = await downloadRepo(REPO, opts);
    hub.log.length = 0;
    assert.equal(await downloadRepo(REPO, opts), first);
    assert.deepEqual(
      hub.log.map((e) => `${e.method} ${e.path}`),
      [`GET /api/models/${REPO}/revision/main`],
    );

    const repo = hub.repos.get(REPO)!;
    repo.sha = commitOf('second');
    repo.commits.add(repo.sha);
    hub.log.length = 0;
    const second = await downloadRepo(REPO, opts);
    assert.equal(second, join(repoDir(cache), 'snapshots', repo.sha));
    assert.equal(hub.downloads().length, 0, 'blobs already in the cache are not downloaded again');
    assert.equal(hub.log.filter((e) => e.method === 'HEAD').length, HF_FILES.length);
    assert.equal(readFileSync(join(repoDir(cache), 'refs', 'main'), 'utf8'), repo.sha);
    assert.equal(readdirSync(join(repoDir(cache), 'blobs')).length, HF_FILES.length);
    assertIdentical(second);
    // Asking for the old commit by sha is served from its snapshot.
    hub.log.length = 0;
    assert.equal(await downloadRepo(REPO, { ...opts, revision: commitOf('first') }), first);
    assert.equal(hub.downloads().length, 0);
  });
});

test('an interrupted download keeps its .incomplete file, exposes nothing, and resumes with Range', async () => {
  await withHub(async (hub, cache, opts) => {
    const weights = readFileSync(stories260K('hf', 'model.safetensors'));
    const blob = join(repoDir(cache), 'blobs', sha256(weights));
    hub.faults.cutOnce.add('model.safetensors');
    await assert.rejects(downloadRepo(REPO, { ...opts, retries: 0 }), (e: Error) => {
      assert.ok(e instanceof KvsieveError);
      assert.match(e.message, /karpathy\/stories260K: download of model\.safetensors failed: interrupted after \d+ of 1176152 bytes/);
      assert.match(e.message, /run again to resume/);
      return true;
    });
    const partial = statSync(`${blob}.incomplete`).size;
    assert.ok(partial > 0 && partial < weights.length, `partial size ${partial}`);
    assert.equal(existsSync(blob), false);
    assert.equal(existsSync(join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha, 'model.safetensors')), false);
    assert.equal(existsSync(join(repoDir(cache), 'refs', 'main')), false);
    assert.equal(resolveCachedRepo(REPO, { cacheDir: cache }), null);

    hub.log.length = 0;
    const snapshot = await downloadRepo(REPO, opts);
    const cdn = hub.log.filter((e) => e.server === 'cdn' && e.method === 'GET');
    assert.deepEqual(
      cdn.map((e) => [e.range, e.status]),
      [[`bytes=${partial}-`, 206]],
    );
    assertIdentical(snapshot);
    assert.equal(existsSync(`${blob}.incomplete`), false);
  });
});

test('a cut connection is retried within the call; a server that ignores Range restarts the file cleanly', async () => {
  await withHub(async (hub, _cache, opts) => {
    hub.faults.cutOnce.add('model.safetensors');
    hub.faults.ignoreRange = true;
    const snapshot = await downloadRepo(REPO, opts);
    const cdn = hub.log.filter((e) => e.server === 'cdn' && e.method === 'GET');
    assert.equal(cdn.length, 2);
    assert.equal(cdn[0]!.range, undefined);
    assert.match(cdn[1]!.range ?? '', /^bytes=\d+-$/);
    assert.equal(cdn[1]!.status, 200);
    assertIdentical(snapshot);
  });
});

test('a wrong sha256 is refused: nothing in snapshots, blobs or refs', async () => {
  await withHub(async (hub, cache, opts) => {
    hub.faults.corrupt.add('model.safetensors');
    const weights = readFileSync(stories260K('hf', 'model.safetensors'));
    await assert.rejects(downloadRepo(REPO, opts), (e: Error) => {
      assert.ok(e instanceof KvsieveError);
      assert.match(e.message, new RegExp(`sha256 mismatch for model\\.safetensors \\(expected ${sha256(weights)}, got [0-9a-f]{64}\\)`));
      return true;
    });
    const snapshot = join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha);
    assert.equal(existsSync(join(snapshot, 'model.safetensors')), false);
    const blobs = readdirSync(join(repoDir(cache), 'blobs'));
    assert.ok(!blobs.some((b) => b.startsWith(sha256(weights))), `blobs: ${blobs.join(', ')}`);
    assert.equal(existsSync(join(repoDir(cache), 'refs', 'main')), false);
    // No retry of a fresh download whose hash is wrong.
    assert.equal(hub.log.filter((e) => e.server === 'cdn').length, 1);
  });
});

test('401 asks for HF_TOKEN; the token goes as a Bearer header to the hub only, not to the CDN', async () => {
  await withHub(async (hub, cache, opts) => {
    hub.faults.token = 'hf_secret';
    await assert.rejects(downloadRepo(REPO, opts), (e: Error) => {
      assert.ok(e instanceof KvsieveError);
      assert.match(e.message, /^karpathy\/stories260K: authentication required \(401\).*set HF_TOKEN/);
      return true;
    });
    await assert.rejects(downloadRepo(REPO, { ...opts, token: 'hf_wrong' }), /refused the token \(401\).*HF_TOKEN/);

    hub.log.length = 0;
    // From the environment, as the CLI gets it.
    const snapshot = await downloadRepo(REPO, { env: { HF_TOKEN: 'hf_secret', HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache } });
    assert.equal(snapshot, join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha));
    assertIdentical(snapshot);
    const fromHub = hub.log.filter((e) => e.server === 'hub');
    const fromCdn = hub.log.filter((e) => e.server === 'cdn');
    assert.ok(fromHub.length > 0 && fromCdn.length > 0);
    assert.ok(fromHub.every((e) => e.auth === 'Bearer hf_secret'));
    assert.ok(fromCdn.every((e) => e.auth === undefined));
  });
});

test('404 names the repo or the revision; an unreachable endpoint names the URL', async () => {
  await withHub(async (hub, _cache, opts) => {
    await assert.rejects(downloadRepo('nobody/nothing', opts), /^KvsieveError: nobody\/nothing: repository not found at http:\/\/127\.0\.0\.1:\d+ \(404\)$/);
    await assert.rejects(downloadRepo(REPO, { ...opts, revision: 'v9' }), /karpathy\/stories260K: revision "v9" not found \(404\)/);
    await assert.rejects(downloadRepo('not a repo', opts), /"not a repo" is not a Hugging Face repo id/);
    await assert.rejects(downloadRepo(REPO, { ...opts, revision: '../x' }), /"\.\.\/x" is not a valid revision/);
    await assert.rejects(downloadRepo(REPO, { ...opts, include: ['*.bin'] }), /karpathy\/stories260K@main: no file matches \*\.bin \(it has config\.json, /);
    await assert.rejects(
      downloadRepo('test/gguf-only', opts),
      /^KvsieveError: test\/gguf-only@main: no \*\.safetensors weights; it has GGUF files \(m-Q8_0\.gguf, m-F16\.gguf\): name one with --include$/,
    );
    assert.equal(hub.downloads().length, 0);
  });
  // A port that was just in use and is closed now.
  const gone = await startHub();
  await gone.close();
  const t = tempDir();
  try {
    await assert.rejects(
      downloadRepo(REPO, { endpoint: gone.url, cacheDir: t.dir, retries: 0, env: {} }),
      (e: Error) => {
        assert.ok(e instanceof KvsieveError);
        assert.ok(e.message.includes(`cannot reach ${gone.url}/api/models/${REPO}/revision/main (ECONNREFUSED)`), e.message);
        return true;
      },
    );
  } finally {
    t.cleanup();
  }
});

test('resolveCachedRepo finds the snapshot offline; HF_HUB_OFFLINE serves from the cache', async () => {
  const t = tempDir();
  try {
    const cache = join(t.dir, 'hub');
    let snapshot = '';
    let sha = '';
    await withHub(async (hub, _c, opts) => {
      snapshot = await downloadRepo(REPO, { ...opts, cacheDir: cache });
      sha = hub.repos.get(REPO)!.sha;
    });
    // The hub is gone now.
    assert.equal(resolveCachedRepo(REPO, { cacheDir: cache }), snapshot);
    assert.equal(resolveCachedRepo(REPO, { cacheDir: cache, revision: sha }), snapshot);
    assert.equal(resolveCachedRepo(REPO, { env: { HF_HOME: t.dir } }), snapshot);
    assert.equal(resolveCachedRepo(REPO, { cacheDir: cache, revision: 'v2' }), null);
    assert.equal(resolveCachedRepo('karpathy/other', { cacheDir: cache }), null);
    assert.equal(resolveCachedRepo('../etc', { cacheDir: cache }), null);
    assert.equal(await downloadRepo(REPO, { env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' } }), snapshot);
    await assert.rejects(downloadRepo('karpathy/other', { cacheDir: cache, env: { HF_HUB_OFFLINE: '1' } }), /karpathy\/other@main: not in the cache/);
    assert.deepEqual(resolveModel(snapshot), { format: 'hf', dir: snapshot, weights: join(snapshot, 'model.safetensors') });
  } finally {
    t.cleanup();
  }
});

test('a layout written by Python huggingface_hub is reused: existing blobs are linked, not fetched', async () => {
  await withHub(async (hub, cache, opts) => {
    // What huggingface_hub leaves after fetching only config.json and the weights of this commit.
    const sha = hub.repos.get(REPO)!.sha;
    const blobs = join(repoDir(cache), 'blobs');
    mkdirSync(blobs, { recursive: true });
    const config = readFileSync(stories260K('hf', 'config.json'));
    const weights = readFileSync(stories260K('hf', 'model.safetensors'));
    writeFileSync(join(blobs, gitSha1(config)), config);
    writeFileSync(join(blobs, sha256(weights)), weights);
    const snapshot = await downloadRepo(REPO, opts);
    assert.equal(snapshot, join(repoDir(cache), 'snapshots', sha));
    assert.deepEqual(hub.downloads().map((e) => e.path).sort(), HF_FILES.filter((f) => f !== 'config.json' && f !== 'model.safetensors').map((f) => `/${REPO}/resolve/${sha}/${f}`).sort());
    assertIdentical(snapshot);
  });
});

test('include patterns; a sharded repo fetches the shards its index names and not a consolidated copy', async () => {
  assert.ok(globToRegExp('*.safetensors').test('model.safetensors'));
  assert.ok(!globToRegExp('*.safetensors').test('original/model.safetensors'));
  assert.ok(globToRegExp('**/*.json').test('original/params.json'));
  assert.ok(globToRegExp('**/*.json').test('config.json'));
  assert.ok(globToRegExp('original/').test('original/params.json'));
  assert.ok(globToRegExp('model-0000[1-2]-of-?????.safetensors').test('model-00002-of-00002.safetensors'));
  assert.ok(!globToRegExp('config.json').test('configXjson'));
  assert.ok(matchesInclude('a.gguf', ['*.json', '*.gguf']));
  assert.ok(isRepoId('Qwen/Qwen2.5-0.5B-Instruct') && isRepoId('gpt2') && !isRepoId('a/b/c') && !isRepoId('a--b/c') && !isRepoId('../x'));
  assert.equal(hubCacheDir({ HF_HOME: '/h' }), join('/h', 'hub'));
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');

  await withHub(async (hub, _cache, opts) => {
    const only = await downloadRepo(REPO, { ...opts, include: ['*.json', 'original/'] });
    assert.deepEqual(readdirSync(only).sort(), ['config.json', 'generation_config.json', 'original', 'tokenizer.json', 'tokenizer_config.json']);
    assert.equal(readFileSync(join(only, 'original', 'params.json'), 'utf8'), '{"dim": 64}');
    assert.equal(readlinkSync(join(only, 'original', 'params.json')), `../../../blobs/${gitSha1(Buffer.from('{"dim": 64}'))}`);
    const gguf = await downloadRepo(REPO, { ...opts, include: ['*.gguf'] });
    assert.equal(readFileSync(join(gguf, 'stories260K-F32.gguf'), 'utf8'), 'GGUF not really');

    const sharded = await downloadRepo('test/sharded', opts);
    assert.deepEqual(readdirSync(sharded).sort(), [
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    assert.deepEqual(readFileSync(join(sharded, 'model-00002-of-00002.safetensors')), Buffer.alloc(2000, 2));
    assert.ok(!hub.log.some((e) => e.path.includes('consolidated')));
  });
});

test('an aborted download rejects with the abort reason and leaves no snapshot file', async () => {
  await withHub(async (hub, cache, opts) => {
    const ac = new AbortController();
    await assert.rejects(
      downloadRepo(REPO, {
        ...opts,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.file === 'model.safetensors' && p.bytes > 0) ac.abort();
        },
      }),
      { name: 'AbortError' },
    );
    const snapshot = join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha);
    assert.equal(existsSync(join(snapshot, 'model.safetensors')), false);
    assert.equal(existsSync(join(repoDir(cache), 'refs', 'main')), false);
  });
});

function runPull(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', 'import("./src/cli/pull.ts").then((m) => m.pullCommand(process.argv.slice(1))).catch((e) => { process.stderr.write(e.message + "\\n"); process.exitCode = 1; })', ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill(), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('kvsieve pull prints the snapshot path on stdout; flag errors name the flag', async () => {
  await withHub(async (hub, cache) => {
    const r = await runPull([REPO, '--include', 'config.json', '--cache-dir', cache], { HF_ENDPOINT: hub.url, HF_HOME: cache });
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const snapshot = join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha);
    assert.equal(r.stdout, `${snapshot}\n`);
    assert.deepEqual(readdirSync(snapshot), ['config.json']);
    const bad = await runPull([REPO, '--revison', 'x'], { HF_ENDPOINT: hub.url, HF_HOME: cache });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^pull: Unknown option '--revison' \(see kvsieve pull --help\)\n$/);
  });
});
