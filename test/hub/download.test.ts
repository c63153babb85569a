import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { downloadRepo, downloadSnapshot, globToRegExp, matchesInclude, type DownloadProgress } from '../../src/hub/download.js';
import { hubCacheDir, isRepoId, resolveCachedRepo } from '../../src/hub/cache.js';
import { KvsieveError } from '../../src/core/errors.js';
import { loadModel } from '../../src/api.js';
import { resolveModel } from '../../src/model/resolve.js';
import { stories260K, tempDir } from '../helpers.js';
import { assertIdentical, closedEndpoint, commitOf, gitSha1, HF_FILES, isLfs, REPO, repoDir, runCli, sha256, startHub, withHub } from './mock-hub.js';

// ---------------------------------------------------------------------------------------------

test('a full download lands in the Hugging Face cache layout, byte-identical, default files only', async () => {
  await withHub(async (hub, cache, opts) => {
    const seen = new Map<string, DownloadProgress>();
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
      const last = seen.get(f)!;
      assert.deepEqual([last.repo, last.bytes, last.total, last.status], [REPO, data.length, data.length, 'download']);
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

test('a gated repo asks for HF_TOKEN (X-Error-Code GatedRepo); the token goes as a Bearer header to the hub only, not to the CDN', async () => {
  await withHub(async (hub, cache, opts) => {
    hub.faults.token = 'hf_secret';
    await assert.rejects(downloadRepo(REPO, opts), (e: Error) => {
      assert.ok(e instanceof KvsieveError);
      assert.match(e.message, /^karpathy\/stories260K: the repo is gated \(401\): accept its conditions on http:\/\/127\.0\.0\.1:\d+\/karpathy\/stories260K, then set HF_TOKEN/);
      return true;
    });
    await assert.rejects(downloadRepo(REPO, { ...opts, token: 'hf_wrong' }), /refused the token \(401: Invalid credentials in Authorization header\).*HF_TOKEN/);

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
    await assert.rejects(downloadRepo('nobody/nothing', opts), /^KvsieveError: nobody\/nothing: repository not found at http:\/\/127\.0\.0\.1:\d+ \(404\); if it is private, set HF_TOKEN/);
    // The real Hub answers 401 RepoNotFound for a repo that is missing or private: the code, not the status, says which.
    hub.faults.hideMissing = true;
    await assert.rejects(downloadRepo('nobody/nothing', opts), /^KvsieveError: nobody\/nothing: repository not found at http:\/\/127\.0\.0\.1:\d+ \(401\); if it is private, set HF_TOKEN/);
    await assert.rejects(downloadRepo('nobody/nothing', { ...opts, token: 'hf_x' }), /nobody\/nothing: repository not found .* \(401\), or the account of HF_TOKEN cannot read it/);
    hub.faults.hideMissing = false;
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
  const gone = await closedEndpoint();
  const t = tempDir();
  try {
    await assert.rejects(
      downloadRepo(REPO, { endpoint: gone, cacheDir: t.dir, retries: 0, env: {} }),
      (e: Error) => {
        assert.ok(e instanceof KvsieveError);
        assert.ok(e.message.includes(`cannot reach ${gone}/api/models/${REPO}/revision/main (ECONNREFUSED)`), e.message);
        assert.ok(e.message.endsWith('(and main is not in the cache)'), e.message);
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
    await assert.rejects(downloadRepo('karpathy/other', { cacheDir: cache, env: { HF_HUB_OFFLINE: '1' } }), /karpathy\/other@main: not in the cache .*, and HF_HUB_OFFLINE is set/);
    // Offline, the cached snapshot must hold what is asked for: only the default files are there.
    await assert.rejects(
      downloadRepo(REPO, { cacheDir: cache, include: ['*.gguf'], env: { HF_HUB_OFFLINE: '1' } }),
      /karpathy\/stories260K@main: no file matches \*\.gguf \(it has config\.json, .*\) in the cache .*, and HF_HUB_OFFLINE is set/,
    );
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

test('kvsieve pull prints the snapshot path on stdout; flag errors name the flag', async () => {
  await withHub(async (hub, cache, _opts, tmp) => {
    const env = { HF_ENDPOINT: hub.url, HF_HOME: join(tmp, 'home'), HOME: tmp };
    const r = await runCli(['pull', REPO, '--include', 'config.json', '--cache-dir', cache], env);
    assert.equal(r.code, 0, r.stderr);
    const snapshot = join(repoDir(cache), 'snapshots', hub.repos.get(REPO)!.sha);
    assert.equal(r.stdout, `${snapshot}\n`);
    assert.deepEqual(readdirSync(snapshot), ['config.json']);
    // Not a terminal: one line per 10% of the bytes.
    assert.match(r.stderr, /^karpathy\/stories260K: 0% \(0\.00 \/ 0\.00 MB\)\n(karpathy\/stories260K: \d+0% .*\n)*karpathy\/stories260K: 100% \(0\.00 \/ 0\.00 MB.*\)\n$/);
    const bad = await runCli(['pull', REPO, '--revison', 'x'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^kvsieve: pull: Unknown option '--revison' \(see kvsieve pull --help\)\n$/);
  });
});

test('progress: every size is known before the first byte; bytes and files add up to the totals, cached files count as cached', async () => {
  await withHub(async (_hub, _cache, opts) => {
    const events: DownloadProgress[] = [];
    await downloadRepo(REPO, { ...opts, onProgress: (p) => events.push(p) });
    const sizes = HF_FILES.map((f) => statSync(stories260K('hf', f)).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(events.length > HF_FILES.length);
    for (const e of events) {
      assert.equal(e.totalBytes, total, 'the total is known from the first event');
      assert.equal(e.files, HF_FILES.length);
      assert.ok(e.doneBytes <= total && e.bytes <= (e.total ?? Infinity));
    }
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.doneBytes >= events[i - 1]!.doneBytes, 'doneBytes never goes back');
    const last = events.at(-1)!;
    assert.deepEqual([last.doneBytes, last.filesDone], [total, HF_FILES.length]);
    assert.ok(events.every((e) => e.status === 'download'));

    // Again with one more file: the five are cached, the new one downloads.
    const again: DownloadProgress[] = [];
    await downloadRepo(REPO, { ...opts, include: [...HF_FILES, 'README.md'], onProgress: (p) => again.push(p) });
    assert.deepEqual(
      again.filter((e) => e.status === 'cached').map((e) => e.file).sort(),
      [...HF_FILES].sort(),
    );
    assert.ok(again.some((e) => e.file === 'README.md' && e.status === 'download'));
    assert.equal(again.at(-1)!.doneBytes, total + '# stories260K\n'.length);
  });
});

test('a renamed repo: the API and resolve calls follow the Hub\'s 307 with a relative Location', async () => {
  await withHub(async (hub, cache, opts) => {
    hub.renames.set('karpathy/old-stories', REPO);
    const snapshot = await downloadRepo('karpathy/old-stories', opts);
    // Cached under the name asked for, as huggingface_hub does.
    assert.equal(snapshot, join(repoDir(cache, 'karpathy/old-stories'), 'snapshots', hub.repos.get(REPO)!.sha));
    assertIdentical(snapshot);
    const redirects = hub.log.filter((e) => e.status === 307);
    assert.ok(redirects.some((e) => e.path === '/api/models/karpathy/old-stories/revision/main'));
    assert.ok(redirects.some((e) => e.method === 'HEAD' && e.path.startsWith('/karpathy/old-stories/resolve/')));
    assert.ok(hub.log.some((e) => e.path === `/api/models/${REPO}/revision/main` && e.status === 200));
  });
});

test('the Hub unreachable or failing: a cached snapshot with the files stands in; one without them is an error naming both', async () => {
  await withHub(async (hub, cache, opts) => {
    const first = await downloadSnapshot(REPO, opts);
    assert.equal(first.fromCache, null);
    const gone = await closedEndpoint();
    const cached = await downloadSnapshot(REPO, { ...opts, endpoint: gone, retries: 0 });
    assert.equal(cached.dir, first.dir);
    assert.deepEqual(cached.fromCache?.reason, 'unreachable');
    assert.match(cached.fromCache!.message, /cannot reach .*ECONNREFUSED/);
    assert.deepEqual(cached.files.sort(), [...HF_FILES].sort());
    // What the snapshot does not hold cannot stand in.
    await assert.rejects(
      downloadSnapshot(REPO, { ...opts, endpoint: gone, retries: 0, include: ['README.md'] }),
      /karpathy\/stories260K: cannot reach .* \(and main is not complete in the cache: no file matches README\.md/,
    );
    // A Hub answering 503 is as good as unreachable (after its retries).
    hub.faults.status = 503;
    const failing = await downloadSnapshot(REPO, { ...opts, retries: 1 });
    assert.equal(failing.fromCache?.reason, 'unreachable');
    assert.match(failing.fromCache!.message, /answered HTTP 503 \(the Hub is having a bad day\)/);
    assert.equal(hub.log.filter((e) => e.status === 503).length, 2);
    assert.equal(resolveCachedRepo(REPO, { cacheDir: cache }), first.dir);
  });
});

test('two downloads of one repo at once, in one process: both succeed, each blob is fetched once', async () => {
  await withHub(async (hub, cache, opts) => {
    // Whichever gets to the weights' lock first downloads them, held open until the other waits.
    let open!: () => void;
    hub.faults.gate = new Promise<void>((r) => (open = r));
    const waits: string[] = [];
    const onProgress = (p: DownloadProgress) => {
      if (p.status !== 'wait') return;
      waits.push(p.file);
      open();
    };
    const [a, b] = await Promise.all([downloadRepo(REPO, { ...opts, onProgress }), downloadRepo(REPO, { ...opts, onProgress })]);
    assert.equal(a, b);
    assertIdentical(a);
    const weights = hub.log.filter((e) => e.server === 'cdn' && e.method === 'GET');
    assert.equal(weights.length, 1, 'model.safetensors downloaded once');
    assert.ok(waits.includes('model.safetensors'), `one download waited for the other: ${waits.join(', ')}`);
    assert.deepEqual(readdirSync(join(repoDir(cache), 'blobs')).filter((f) => f.endsWith('.incomplete')), []);
    // The lock files sit where huggingface_hub keeps them.
    const locks = readdirSync(join(cache, '.locks', 'models--karpathy--stories260K')).sort();
    assert.ok(locks.includes(`${sha256(readFileSync(stories260K('hf', 'model.safetensors')))}.lock`), locks.join(', '));
  });
});

test('two kvsieve pull processes at once both succeed; a blob whose lock another process (Python) holds is waited for, not fetched', async () => {
  const until = async (what: () => boolean) => {
    for (let i = 0; i < 600 && !what(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(what(), 'timed out');
  };
  await withHub(async (hub, cache, _opts, tmp) => {
    // The first pull's weights download is held open until the second pull has reached their lock.
    let open!: () => void;
    hub.faults.gate = new Promise<void>((r) => (open = r));
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: join(tmp, 'home'), HOME: tmp };
    const a = runCli(['pull', REPO], env);
    await until(() => hub.log.some((e) => e.server === 'cdn' && e.method === 'GET'));
    let bSays = '';
    const b = runCli(['pull', REPO], env, 60_000, (s) => (bSays = s));
    await until(() => bSays.includes('waiting for another download of model.safetensors (its lock is held)'));
    open();
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(ra.stdout, rb.stdout);
    assertIdentical(ra.stdout.trim());
    assert.equal(hub.log.filter((e) => e.server === 'cdn' && e.method === 'GET').length, 1, 'the weights were downloaded once');
    assert.match(rb.stderr, /waiting for another download of model\.safetensors \(its lock is held\)/);
  });

  if (spawnSync('flock', ['--version']).error) return; // no flock command: Python's lock cannot be played here
  await withHub(async (hub, cache, _opts, tmp) => {
    // Python's huggingface_hub holds flock(2) on .locks/models--org--name/{blob}.lock while it writes
    // the blob: hold it the same way (the flock command), write the blob meanwhile, then let go.
    const weights = readFileSync(stories260K('hf', 'model.safetensors'));
    const id = sha256(weights);
    const lock = join(cache, '.locks', 'models--karpathy--stories260K', `${id}.lock`);
    mkdirSync(join(cache, '.locks', 'models--karpathy--stories260K'), { recursive: true });
    const holder = spawn('flock', ['--exclusive', lock, 'cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
    holder.stdin.write('\n');
    await new Promise((r) => holder.stdout.once('data', r));
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: join(tmp, 'home'), HOME: tmp };
    let says = '';
    const pulling = runCli(['pull', REPO], env, 60_000, (s) => (says = s));
    // Once the pull waits at the lock, finish "Python's" download and let go.
    await until(() => says.includes('waiting for another download of model.safetensors'));
    mkdirSync(join(repoDir(cache), 'blobs'), { recursive: true });
    writeFileSync(join(repoDir(cache), 'blobs', id), weights);
    holder.stdin.end();
    const r = await pulling;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /waiting for another download of model\.safetensors \(its lock is held\)/);
    assert.equal(hub.log.filter((e) => e.server === 'cdn').length, 0, 'the blob written under the lock was not downloaded again');
    assertIdentical(r.stdout.trim());
  });
});
