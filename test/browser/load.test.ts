// The browser's loaders, run in Node (whose fetch is the browser's API): files from a Hub id on the
// loopback mock Hub, parallel Range requests against the demo server, errors naming the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { loadModel, loadModelFromFiles } from '../../src/api.js';
import { fetchFile, fetchModelFiles, hubModelUrls, type FileProgress } from '../../src/browser/load.js';
import { shared, stories260K } from '../helpers.js';
import { startHub, tinyllamasRepo, TINYLLAMAS, TINYLLAMAS_PREVIOUS } from '../hub/mock-hub.js';

const demo = (await import(join('..', '..', 'scripts', 'demo.mjs'))) as {
  serveDemo(o: { dir: string; modelsDir: string; port: number }): Promise<Server>;
};

test('a Hub id gives the URLs of its model files; fetched and loaded, they generate as the files on disk do', async () => {
  const hub = await startHub();
  hub.repos.set(TINYLLAMAS, tinyllamasRepo());
  try {
    const urls = await hubModelUrls(`${TINYLLAMAS}/stories260K`, { endpoint: hub.url });
    assert.deepEqual(urls, {
      'stories260K.bin': `${hub.url}/${TINYLLAMAS}/resolve/main/stories260K/stories260K.bin`,
      'tok512.bin': `${hub.url}/${TINYLLAMAS}/resolve/main/stories260K/tok512.bin`,
    });
    const pinned = await hubModelUrls(`${TINYLLAMAS}/stories260K@${TINYLLAMAS_PREVIOUS}`, { endpoint: hub.url });
    assert.match(pinned['tok512.bin']!, new RegExp(`/resolve/${TINYLLAMAS_PREVIOUS}/stories260K/tok512\\.bin$`));
    const files = await fetchModelFiles(urls, { cache: false });
    assert.deepEqual(files['stories260K.bin'], new Uint8Array(readFileSync(stories260K('stories260K.bin'))));
    const a = await loadModelFromFiles(files, { backend: 'reference' });
    const b = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
    try {
      const o = { maxTokens: 12, temperature: 0 };
      assert.equal((await a.complete('Once upon a time', o)).text, (await b.complete('Once upon a time', o)).text);
    } finally {
      a.dispose();
      b.dispose();
    }
    await assert.rejects(hubModelUrls('nobody/nothing', { endpoint: hub.url }), /^KvsieveError: nobody\/nothing: .*HTTP 404/);
    await assert.rejects(hubModelUrls('not an id', { endpoint: hub.url }), /"not an id" is not a Hugging Face model id/);
  } finally {
    await hub.close();
  }
});

test('a large file comes in parallel Range requests; a missing one is an error naming it', async () => {
  const server = await demo.serveDemo({ dir: join(shared('models'), 'nothing-here'), modelsDir: shared('models'), port: 0 });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/stories260K`;
  try {
    const want = new Uint8Array(readFileSync(stories260K('stories260K.bin')));
    const seen: FileProgress[] = [];
    const got = await fetchFile(`${base}/stories260K.bin`, 'stories260K.bin', { cache: false, chunkBytes: 100_000, parallel: 3, onProgress: (p) => seen.push(p) });
    assert.deepEqual(got, want);
    assert.ok(seen.length >= Math.ceil(want.length / 100_000), `${seen.length} progress events`);
    assert.ok(seen.every((p) => p.total === want.length && !p.cached));
    assert.equal(seen.at(-1)!.bytes, want.length);
    await assert.rejects(fetchFile(`${base}/absent.bin`, 'absent.bin', { cache: false }), /^KvsieveError: absent\.bin: http:.*absent\.bin: HTTP 404 \(no such file\)$/);
  } finally {
    server.close();
  }
});
