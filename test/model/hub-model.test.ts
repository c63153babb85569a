import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { downloadRepo, type DownloadProgress } from '../../src/hub/download.js';
import { DEFAULT_MODEL_SOURCE, formatHubModelId, modelFiles, parseHubModelId } from '../../src/model/hub-model.js';
import { downloadModel, locateModel, resolveModel } from '../../src/model/resolve.js';
import { stories260K, storiesGoldens } from '../helpers.js';
import { closedEndpoint, REPO, repoDir, runCli, TINYLLAMAS, TINYLLAMAS_MAIN, TINYLLAMAS_PREVIOUS, withHub } from '../hub/mock-hub.js';

// Models named by their Hugging Face id: parsing, which files make a model, first use through
// loadModel and the CLI (the default model included), against the mock Hub of mock-hub.ts.

const STORIES_FILES = ['stories260K/stories260K.bin', 'stories260K/tok512.bin'];

test('Hub ids: ORG/NAME, a folder or file, @revision after the name or at the end, hf: and hf://', () => {
  const id = (s: string) => parseHubModelId(s);
  assert.deepEqual(id('karpathy/tinyllamas'), { repo: 'karpathy/tinyllamas', revision: null, path: null });
  assert.deepEqual(id('karpathy/tinyllamas/stories260K'), { repo: 'karpathy/tinyllamas', revision: null, path: 'stories260K' });
  assert.deepEqual(id('karpathy/tinyllamas/stories260K@v1'), { repo: 'karpathy/tinyllamas', revision: 'v1', path: 'stories260K' });
  assert.deepEqual(id('karpathy/tinyllamas@v1/stories260K'), { repo: 'karpathy/tinyllamas', revision: 'v1', path: 'stories260K' });
  assert.deepEqual(id('Qwen/Qwen2.5-0.5B@refs%2Fpr%2F1'), { repo: 'Qwen/Qwen2.5-0.5B', revision: 'refs/pr/1', path: null });
  assert.deepEqual(id('hf:karpathy/tinyllamas/stories260K/tok512.bin'), { repo: 'karpathy/tinyllamas', revision: null, path: 'stories260K/tok512.bin' });
  assert.deepEqual(id('hf://org/name@main'), { repo: 'org/name', revision: 'main', path: null });
  assert.deepEqual(id('hf:gpt2'), { repo: 'gpt2', revision: null, path: null });
  assert.deepEqual(id(DEFAULT_MODEL_SOURCE), { repo: 'karpathy/tinyllamas', revision: TINYLLAMAS_MAIN, path: 'stories260K' });
  assert.equal(formatHubModelId(id('Qwen/Qwen2.5-0.5B@refs%2Fpr%2F1')!), 'Qwen/Qwen2.5-0.5B@refs%2Fpr%2F1');
  // Not ids: a bare name, paths, two revisions; with hf: that is an error, without it just "not an id".
  for (const s of ['stories260K', './models/x', '/abs/path', 'a//b', 'a/b/../c', 'a/b@x/c@y']) assert.equal(id(s), null, s);
  assert.throws(() => id('hf:a/b/../c'), /"hf:a\/b\/\.\.\/c" is not a Hugging Face model id/);
  assert.throws(() => id('hf:a/b@x/c@y'), /more than one @/);
});

test('modelFiles: a llama2.c folder takes its checkpoint and tokenizer; ambiguous or empty folders say what to name', () => {
  const tiny = ['README.md', 'stories15M.bin', 'stories15M.pt', 'stories42M.bin', 'stories260K/readme.md', 'stories260K/stories260K.bin', 'stories260K/stories260K.pt', 'stories260K/tok512.bin', 'stories260K/tok512.model'];
  assert.deepEqual(modelFiles(tiny, 'stories260K', 'k/t/stories260K'), STORIES_FILES);
  assert.deepEqual(modelFiles(tiny, 'stories260K/stories260K.bin', 'k/t'), STORIES_FILES);
  assert.throws(() => modelFiles(tiny, null, 'k/t'), /^KvsieveError: k\/t: several llama2\.c checkpoints; name one: k\/t\/stories15M\.bin, k\/t\/stories42M\.bin; folders with one: k\/t\/stories260K$/);
  assert.throws(() => modelFiles(tiny, 'nope', 'k/t/nope'), /the repo has no file or folder "nope" \(it has README\.md, stories15M\.bin, .*stories260K\/\)/);
  const hf = ['config.json', 'model.safetensors', 'tokenizer.json', 'README.md', 'original/consolidated.pth', 'm-Q8_0.gguf'];
  assert.deepEqual(modelFiles(hf, null, 'o/m'), ['config.json', 'model.safetensors', 'tokenizer.json']);
  assert.throws(() => modelFiles(['config.json', 'pytorch_model.bin'], null, 'o/m'), /config\.json but no \*\.safetensors weights \(kvsieve reads safetensors, GGUF and llama2\.c \.bin\)/);
  assert.throws(() => modelFiles(['a-Q8_0.gguf', 'a-F16.gguf'], null, 'o/g'), /several GGUF files; name one: o\/g\/a-Q8_0\.gguf, o\/g\/a-F16\.gguf/);
  assert.deepEqual(modelFiles(['a-Q8_0.gguf', 'a-F16.gguf'], 'a-F16.gguf', 'o/g'), ['a-F16.gguf']);
});

/**
 * Runs `fn` with the process environment kvsieve would see on a fresh machine: no
 * KVSIEVE_MODEL_PATH, HOME in a temporary folder, the Hub at the mock, the cache in the temporary
 * folder. (Each test file runs in its own process, so this touches no other test.)
 */
async function freshMachine(hubUrl: string, tmp: string, cache: string, fn: () => Promise<void>) {
  const keys = ['KVSIEVE_MODEL_PATH', 'HOME', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HF_TOKEN', 'HF_HUB_OFFLINE'];
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  for (const k of keys) delete process.env[k];
  Object.assign(process.env, { HOME: tmp, HF_ENDPOINT: hubUrl, HF_HUB_CACHE: cache, HF_HOME: join(tmp, 'hf-home') });
  try {
    await fn();
  } finally {
    for (const k of keys) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

test('loadModel(): the default model is downloaded from karpathy/tinyllamas at the pinned commit on first use, with progress, then read from the cache', async () => {
  const golden = storiesGoldens()[0]!;
  await withHub(async (hub, cache, _opts, tmp) => {
    await freshMachine(hub.url, tmp, cache, async () => {
      const events: DownloadProgress[] = [];
      const model = await loadModel(undefined, { backend: 'reference', onProgress: (p) => events.push(p) });
      try {
        const snapshot = join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_MAIN);
        assert.equal(model.info().path, join(snapshot, 'stories260K', 'stories260K.bin'));
        // Only the two files the model needs; the pin is a commit, so no refs/main.
        assert.deepEqual(
          hub.downloads().filter((e) => e.server === 'hub').map((e) => e.path).sort(),
          STORIES_FILES.map((f) => `/${TINYLLAMAS}/resolve/${TINYLLAMAS_MAIN}/${f}`),
        );
        assert.equal(hub.log.filter((e) => e.server === 'cdn' && e.method === 'GET').length, 2);
        assert.deepEqual(readdirSync(join(snapshot, 'stories260K')).sort(), ['stories260K.bin', 'tok512.bin']);
        assert.equal(existsSync(join(repoDir(cache, TINYLLAMAS), 'refs', 'main')), false);
        // The bytes are the shared copies, and run.c's greedy story comes out of them.
        assert.deepEqual(readFileSync(join(snapshot, 'stories260K', 'stories260K.bin')), readFileSync(stories260K('stories260K.bin')));
        const out = await model.complete(golden.prompt, { maxTokens: 30 });
        assert.deepEqual(out.generatedIds, golden.ids.slice(golden.prompt_ids.length, golden.prompt_ids.length + 30));
      } finally {
        model.dispose();
      }
      const size = (f: string) => readFileSync(stories260K(f)).length;
      const total = size('stories260K.bin') + size('tok512.bin');
      assert.ok(events.length > 2);
      assert.ok(events.every((e) => e.repo === TINYLLAMAS && e.totalBytes === total && e.files === 2));
      assert.deepEqual([events.at(-1)!.doneBytes, events.at(-1)!.filesDone], [total, 2]);

      // Second use: from the cache, without a request; also with the Hub gone.
      hub.log.length = 0;
      const again = await loadModel(undefined, { backend: 'reference', onProgress: () => assert.fail('no download the second time') });
      again.dispose();
      assert.equal(hub.log.length, 0);
      process.env['HF_ENDPOINT'] = await closedEndpoint();
      (await loadModel(undefined, { backend: 'reference' })).dispose();
    });
  });
});

test('loadModel("org/name/folder"), "@revision", "hf:org/name"; offline and unreachable fallbacks', async () => {
  await withHub(async (hub, cache, _opts, tmp) => {
    const hubOpts = { endpoint: hub.url, cacheDir: cache };
    // A folder of the repo at main: refs/main is written; the snapshot folder holds the two files.
    const a = await loadModel('karpathy/tinyllamas/stories260K', { backend: 'reference', hub: hubOpts });
    a.dispose();
    assert.equal(readFileSync(join(repoDir(cache, TINYLLAMAS), 'refs', 'main'), 'utf8'), TINYLLAMAS_MAIN);
    assert.equal(a.info().path, join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_MAIN, 'stories260K', 'stories260K.bin'));
    // A tag and a commit: their own snapshots; the blobs are shared, so nothing is downloaded again.
    hub.log.length = 0;
    const tagged = await locateModel('karpathy/tinyllamas@v1/stories260K', { ...hubOpts, env: {} });
    assert.deepEqual(tagged, {
      format: 'llama2c',
      checkpoint: join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_PREVIOUS, 'stories260K', 'stories260K.bin'),
      tokenizer: join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_PREVIOUS, 'stories260K', 'tok512.bin'),
    });
    assert.equal(readFileSync(join(repoDir(cache, TINYLLAMAS), 'refs', 'v1'), 'utf8'), TINYLLAMAS_PREVIOUS);
    assert.equal(hub.downloads().length, 0);
    assert.equal((await locateModel(`karpathy/tinyllamas/stories260K@${TINYLLAMAS_PREVIOUS}`, { ...hubOpts, env: {} })).format, 'llama2c');
    // The Hugging Face conversion, named with hf:.
    const hf = await loadModel(`hf:${REPO}`, { backend: 'reference', hub: hubOpts });
    assert.equal(hf.info().format, 'hf');
    hf.dispose();

    // resolveModel (no network) finds all of them in the cache now; the Hub may be gone.
    const gone = await closedEndpoint();
    assert.equal(resolveModel('karpathy/tinyllamas/stories260K', {}, { cacheDir: cache }).format, 'llama2c');
    assert.equal((await locateModel(REPO, { endpoint: gone, cacheDir: cache, env: {} })).format, 'hf');
    // Not cached: offline says so; unreachable says what failed.
    await assert.rejects(
      locateModel('karpathy/tinyllamas/stories42M.bin', { endpoint: hub.url, cacheDir: cache, env: { HF_HUB_OFFLINE: '1', HOME: tmp } }),
      /model "karpathy\/tinyllamas\/stories42M\.bin" not found \(searched .*\), and karpathy\/tinyllamas\/stories42M\.bin is not in the Hugging Face cache .*; HF_HUB_OFFLINE is set, so it is not downloaded/,
    );
    await assert.rejects(
      locateModel('hf:test/sharded', { endpoint: gone, cacheDir: cache, env: {} }),
      (e: Error) => e instanceof KvsieveError && /^test\/sharded: cannot reach .*ECONNREFUSED.*\(and main is not in the cache\)$/.test(e.message),
    );
    // A repo whose top holds several checkpoints: the error names them and the folder that has one.
    await assert.rejects(loadModel('karpathy/tinyllamas', { backend: 'reference', hub: hubOpts }), /several llama2\.c checkpoints; name one: .*; folders with one: karpathy\/tinyllamas\/stories260K/);
  });
});

test('kvsieve generate with no model on a fresh machine downloads the default model (progress lines on stderr); pull takes folders and falls back to the cache', async () => {
  const golden = storiesGoldens()[0]!;
  await withHub(async (hub, cache, _opts, tmp) => {
    const env = { HOME: tmp, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache };
    const args = ['generate', '--backend', 'reference', '--max-tokens', '40', golden.prompt];
    const first = await runCli(args, env);
    assert.equal(first.code, 0, first.stderr);
    // run.c's greedy story, from files that came from the (mock) Hub.
    const story = first.stdout.trimEnd();
    assert.ok(story.length > 40 && golden.text.startsWith(golden.prompt + story), first.stdout);
    // Not a terminal: a line per 10% of the download, the last at 100%.
    const lines = first.stderr.split('\n').filter((l) => l.startsWith('karpathy/tinyllamas: '));
    assert.ok(lines.length >= 2 && lines.length <= 11, first.stderr);
    assert.match(lines.at(-1)!, /^karpathy\/tinyllamas: 100% \(1\.01 \/ 1\.01 MB/);
    // Second run: no download, no progress.
    hub.log.length = 0;
    const second = await runCli(args, env);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, first.stdout);
    assert.doesNotMatch(second.stderr, /karpathy\/tinyllamas: /);
    assert.equal(hub.log.length, 0);

    // pull: a folder prints the model's folder; the repo's top says which folder to name.
    const folder = join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_MAIN, 'stories260K');
    const pulled = await runCli(['pull', 'karpathy/tinyllamas/stories260K'], env);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.equal(pulled.stdout, `${folder}\n`);
    const top = await runCli(['pull', 'karpathy/tinyllamas'], env);
    assert.equal(top.code, 1);
    assert.match(top.stderr, /^kvsieve: karpathy\/tinyllamas@main: karpathy\/tinyllamas: several llama2\.c checkpoints; name one: .*; folders with one: karpathy\/tinyllamas\/stories260K\n$/);
    // The Hub unreachable: pull uses the cached snapshot and says so.
    const offline = await runCli(['pull', 'karpathy/tinyllamas/stories260K'], { ...env, HF_ENDPOINT: await closedEndpoint() });
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.stdout, `${folder}\n`);
    assert.match(offline.stderr, /^kvsieve: the Hub could not be reached \(cannot reach .*ECONNREFUSED\)\); using the cached snapshot 0bd21da7698e\n$/);
    // --model with the folder id works from the cache, and HF_HUB_OFFLINE with an empty cache says why it stops.
    const byId = await runCli(['generate', '--backend', 'reference', '--model', 'karpathy/tinyllamas/stories260K', '--max-tokens', '40', golden.prompt], env);
    assert.equal(byId.stdout, first.stdout);
    const empty = await runCli(['generate', '--max-tokens', '4', 'x'], { ...env, HF_HUB_CACHE: join(tmp, 'empty'), HF_HUB_OFFLINE: '1' });
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /model "stories260K" not found .*HF_HUB_OFFLINE is set, so it is not downloaded/);
  });
});

test('files pulled with --include load by their folder id from the cache (the issue\'s stories260K/*.bin case)', async () => {
  await withHub(async (hub, cache, opts) => {
    await downloadRepo(TINYLLAMAS, { ...opts, include: ['stories260K/*.bin'] });
    const gone = await closedEndpoint();
    const found = await locateModel('karpathy/tinyllamas/stories260K', { endpoint: gone, cacheDir: cache, env: {} });
    assert.deepEqual(found, {
      format: 'llama2c',
      checkpoint: join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_MAIN, 'stories260K', 'stories260K.bin'),
      tokenizer: join(repoDir(cache, TINYLLAMAS), 'snapshots', TINYLLAMAS_MAIN, 'stories260K', 'tok512.bin'),
    });
    // The repo's top holds no model in the cache; asked of the Hub, it names the folder to use.
    await assert.rejects(locateModel(TINYLLAMAS, { endpoint: hub.url, cacheDir: cache, env: {} }), /folders with one: karpathy\/tinyllamas\/stories260K/);
  });
});
