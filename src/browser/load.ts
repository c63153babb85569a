/**
 * Model files for the browser: fetched from URLs (large files in parallel Range requests), from the
 * Hugging Face Hub by id (the repo's file list picks the files, as the Node loader does), kept in the
 * Cache API so a second visit reads them from disk; or taken from bytes (a file input).
 */
import type { ModelFiles } from '../api/files.js';
import { KvsieveError } from '../core/errors.js';
import { DEFAULT_MODEL_SOURCE, formatHubModelId, modelFiles, parseHubModelId } from '../model/hub-model.js';

/** The fetch API's slice used here, typed locally (the project compiles without lib DOM). */
interface FetchResponse {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;
  arrayBuffer(): Promise<ArrayBuffer>;
  json(): Promise<unknown>;
  clone(): FetchResponse;
}
interface CacheLike {
  match(url: string): Promise<FetchResponse | undefined>;
  put(url: string, response: unknown): Promise<void>;
}
interface FetchGlobals {
  fetch(url: string, init?: { headers?: Record<string, string>; signal?: AbortSignal }): Promise<FetchResponse>;
  caches?: { open(name: string): Promise<CacheLike> };
  Response: new (body: Uint8Array, init?: { headers?: Record<string, string> }) => unknown;
}
const web = globalThis as unknown as FetchGlobals;

export const HUB_ENDPOINT = 'https://huggingface.co';
export const MODEL_CACHE = 'kvsieve-models';

/** How a file is coming along: bytes so far of `total` (null until known); `cached`: read from the Cache API. */
export interface FileProgress {
  file: string;
  bytes: number;
  total: number | null;
  cached: boolean;
}

export interface FetchOptions {
  onProgress?: (p: FileProgress) => void;
  signal?: AbortSignal;
  /** The Cache API cache to keep files in (default 'kvsieve-models'); false: fetch every time. */
  cache?: string | false;
  /** Files larger than this come in parallel Range requests of this size (default 16 MiB). */
  chunkBytes?: number;
  /** Range requests in flight at once (default 4). */
  parallel?: number;
  /** The Hub (default https://huggingface.co). */
  endpoint?: string;
}

function httpError(name: string, url: string, status: number): KvsieveError {
  const why = status === 401 || status === 403 ? ' (gated or private?)' : status === 404 ? ' (no such file)' : '';
  return new KvsieveError(`${name}: ${url}: HTTP ${status}${why}`, { option: 'url' });
}

/** The total size from a 206's Content-Range ("bytes 0-99/1234"), else null. */
function rangeTotal(r: FetchResponse): number | null {
  const m = /\/(\d+)\s*$/.exec(r.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : null;
}

/** Reads a response body into `out` from `offset`, reporting each piece. */
async function readInto(r: FetchResponse, out: Uint8Array, offset: number, onBytes: (n: number) => void): Promise<void> {
  if (!r.body) {
    const b = new Uint8Array(await r.arrayBuffer());
    out.set(b, offset);
    onBytes(b.length);
    return;
  }
  const reader = r.body.getReader();
  for (let at = offset; ; ) {
    const { done, value } = await reader.read();
    if (done) return;
    if (value) {
      if (at + value.length > out.length) throw new KvsieveError(`response larger than announced (${out.length} bytes)`);
      out.set(value, at);
      at += value.length;
      onBytes(value.length);
    }
  }
}

/** A whole body of unknown length, piece by piece. */
async function readAll(r: FetchResponse, onBytes: (n: number) => void): Promise<Uint8Array> {
  if (!r.body) {
    const b = new Uint8Array(await r.arrayBuffer());
    onBytes(b.length);
    return b;
  }
  const parts: Uint8Array[] = [];
  const reader = r.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (value) {
      parts.push(value);
      onBytes(value.length);
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Fetches one file: from the Cache API when it holds it, else over the network, the first request
 * asking for the first chunk only: a server that answers 206 with the file's size gets the rest in
 * parallel Range requests, one that answers 200 streams the whole file. `name` names it in errors.
 */
export async function fetchFile(url: string, name: string, o: FetchOptions = {}): Promise<Uint8Array> {
  const cacheName = o.cache === undefined ? MODEL_CACHE : o.cache;
  const cache = cacheName !== false && web.caches ? await web.caches.open(cacheName).catch(() => null) : null;
  const hit = cache ? await cache.match(url) : undefined;
  if (hit) {
    const b = new Uint8Array(await hit.arrayBuffer());
    o.onProgress?.({ file: name, bytes: b.length, total: b.length, cached: true });
    return b;
  }
  const chunk = o.chunkBytes ?? 16 << 20;
  const init = (headers: Record<string, string>) => ({ headers, ...(o.signal ? { signal: o.signal } : {}) });
  let got = 0;
  let total: number | null = null;
  const onBytes = (n: number) => {
    got += n;
    o.onProgress?.({ file: name, bytes: got, total, cached: false });
  };
  let first: FetchResponse;
  try {
    first = await web.fetch(url, init({ Range: `bytes=0-${chunk - 1}` }));
  } catch (e) {
    if (o.signal?.aborted) throw e;
    throw new KvsieveError(`${name}: ${url}: cannot fetch (${(e as Error).message})`, { option: 'url' });
  }
  if (!first.ok) throw httpError(name, url, first.status);
  let bytes: Uint8Array;
  total = first.status === 206 ? rangeTotal(first) : Number(first.headers.get('content-length') ?? NaN) || null;
  if (first.status === 206 && total !== null) {
    bytes = new Uint8Array(total);
    await readInto(first, bytes, 0, onBytes);
    const starts: number[] = [];
    for (let s = chunk; s < total; s += chunk) starts.push(s);
    const next = async (): Promise<void> => {
      for (let s = starts.shift(); s !== undefined; s = starts.shift()) {
        const end = Math.min(total!, s + chunk) - 1;
        const r = await web.fetch(url, init({ Range: `bytes=${s}-${end}` }));
        if (r.status !== 206) throw new KvsieveError(`${name}: ${url}: a Range request for bytes ${s}-${end} got HTTP ${r.status}`, { option: 'url' });
        await readInto(r, bytes, s, onBytes);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, o.parallel ?? 4) }, next));
    if (got !== total) throw new KvsieveError(`${name}: ${url}: got ${got} of ${total} bytes`, { option: 'url' });
  } else {
    bytes = await readAll(first, onBytes);
  }
  if (cache) await cache.put(url, new web.Response(bytes, { headers: { 'content-length': String(bytes.length) } })).catch(() => {});
  return bytes;
}

/** Fetches files by name from their URLs (one after the other, each possibly in parallel ranges). */
export async function fetchModelFiles(urls: Readonly<Record<string, string>>, o: FetchOptions = {}): Promise<ModelFiles> {
  const out: Record<string, Uint8Array> = {};
  for (const [name, url] of Object.entries(urls)) out[name] = await fetchFile(url, name, o);
  return out;
}

/**
 * The URLs of the files that make the model `id` on the Hub (ORG/NAME[/FOLDER][@REVISION]; the
 * default model when left out): the repo's file list (the Hub's model API) chooses them as the Node
 * loader does (a Hugging Face folder's config, tokenizer and safetensors, else a llama2.c checkpoint
 * and its tokenizer).
 */
export async function hubModelUrls(id: string = DEFAULT_MODEL_SOURCE, o: FetchOptions = {}): Promise<Record<string, string>> {
  const parsed = parseHubModelId(id);
  if (!parsed) throw new KvsieveError(`"${id}" is not a Hugging Face model id (ORG/NAME[/FOLDER][@REVISION])`, { option: 'model' });
  const endpoint = (o.endpoint ?? HUB_ENDPOINT).replace(/\/$/, '');
  const rev = encodeURIComponent(parsed.revision ?? 'main');
  const api = `${endpoint}/api/models/${parsed.repo}/revision/${rev}`;
  let r: FetchResponse;
  try {
    r = await web.fetch(api, o.signal ? { signal: o.signal } : {});
  } catch (e) {
    throw new KvsieveError(`${id}: cannot reach the Hub (${(e as Error).message})`, { option: 'model' });
  }
  if (!r.ok) throw httpError(id, api, r.status);
  const info = (await r.json()) as { siblings?: unknown };
  if (!Array.isArray(info.siblings)) throw new KvsieveError(`${id}: the Hub's answer has no file list ("siblings")`, { option: 'model' });
  const paths = info.siblings.filter((e): e is { rfilename: string } => typeof e?.rfilename === 'string').map((e) => e.rfilename);
  const chosen = modelFiles(paths, parsed.path, formatHubModelId(parsed));
  return Object.fromEntries(chosen.map((p) => [p.slice(p.lastIndexOf('/') + 1), `${endpoint}/${parsed.repo}/resolve/${rev}/${p}`]));
}
