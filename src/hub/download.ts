import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, lstat, mkdir, open, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { hfHome, hubCacheDir, isCommitSha, isRepoId, isRevision, repoFolderName, resolveCachedRepo } from './cache.js';

/**
 * Downloads a model repository from the Hugging Face Hub into the Hugging Face cache layout (see
 * cache.ts), so that files fetched by Python's huggingface_hub are reused and the other way round.
 *
 * Per file: the snapshot link already there → nothing to do; otherwise a HEAD on
 * `{endpoint}/{repo}/resolve/{commit}/{file}` (relative redirects followed, the redirect to the
 * LFS/CDN storage not) gives the blob id (`X-Linked-Etag` for LFS files, which is their sha256,
 * else `ETag`) and size (`X-Linked-Size`, else `Content-Length`). A blob already present is linked;
 * a missing one is fetched into `blobs/{id}.incomplete`, resumed with `Range: bytes=N-` when that
 * file exists, and renamed into place only once its size (and sha256, when the id is one) match.
 * refs/{revision} is written last, so an interrupted pull never makes a half snapshot resolvable.
 */

/** What is fetched when no include patterns are given (GGUF files only when asked for). */
export const DEFAULT_INCLUDE: readonly string[] = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  '*.safetensors',
  'model.safetensors.index.json',
];

const INDEX_FILE = 'model.safetensors.index.json';
const USER_AGENT = 'kvsieve/0.1.0';
const MAX_REDIRECTS = 10;

export interface DownloadProgress {
  /** Path of the file inside the repo. */
  file: string;
  /** Bytes of the file on disk so far (a resumed download starts above 0). */
  bytes: number;
  /** The file's size, when known. */
  total: number | null;
}

export interface DownloadOptions {
  /** Branch, tag or commit sha (default "main"). */
  revision?: string;
  /** The Hub's base URL (default HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Access token for gated or private repos (default HF_TOKEN, else the token saved by `huggingface-cli login`); "" for none. */
  token?: string;
  /** Hub cache directory (default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /**
   * Files to fetch: glob patterns over repo paths (`*` and `?` stay within a folder, `**` crosses
   * folders, `[abc]` a class, `dir/` everything under dir). Default: DEFAULT_INCLUDE, and when the
   * repo has model.safetensors.index.json only the shards it names.
   */
  include?: string[];
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Further attempts after a transfer breaks off (connection lost, 5xx, short body), each resuming (default 3). */
  retries?: number;
  /** Environment for the defaults above and HF_HUB_OFFLINE (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Glob pattern → anchored RegExp over '/'-separated repo paths. */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.endsWith('/') ? `${pattern}**` : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = p.slice(i + 1, end);
        const negate = body.startsWith('!') || body.startsWith('^');
        if (negate) body = body.slice(1);
        re += `[${negate ? '^/' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Whether a repo path matches any of the patterns. */
export function matchesInclude(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => globToRegExp(p).test(path));
}

const isSafeRepoPath = (f: string) =>
  f.length > 0 && !f.startsWith('/') && !f.includes('\\') && !f.includes('\0') && f.split('/').every((s) => s !== '' && s !== '.' && s !== '..');

const isBlobId = (id: string) => /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(id);

/** An error that a later attempt may not repeat (lost connection, 5xx, short body). */
class TransientError extends Error {}

interface Context {
  repoId: string;
  revision: string;
  endpoint: string;
  token: string | null;
  signal: AbortSignal | undefined;
  retries: number;
  onProgress: ((p: DownloadProgress) => void) | undefined;
}

function resolveToken(options: DownloadOptions, env: NodeJS.ProcessEnv): string | null {
  if (options.token !== undefined) return options.token || null;
  const fromEnv = env['HF_TOKEN'] || env['HUGGING_FACE_HUB_TOKEN'];
  if (fromEnv) return fromEnv.trim();
  const file = env['HF_TOKEN_PATH'] || join(hfHome(env), 'token');
  try {
    return readFileSync(file, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function resolveEndpoint(options: DownloadOptions, env: NodeJS.ProcessEnv): string {
  const raw = options.endpoint ?? (env['HF_ENDPOINT'] || 'https://huggingface.co');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new KvsieveError(`HF_ENDPOINT "${raw}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new KvsieveError(`HF_ENDPOINT "${raw}" is not an http(s) URL`);
  return raw.replace(/\/+$/, '');
}

const truthy = (v: string | undefined) => v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());

/** Downloads `repoId` (e.g. "HuggingFaceTB/SmolLM2-135M") and returns its local snapshot directory. */
export async function downloadRepo(repoId: string, options: DownloadOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const revision = options.revision ?? 'main';
  if (!isRepoId(repoId)) throw new KvsieveError(`"${repoId}" is not a Hugging Face repo id (expected ORG/NAME)`);
  if (!isRevision(revision)) throw new KvsieveError(`${repoId}: "${revision}" is not a valid revision (branch, tag or commit sha)`);
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  if (truthy(env['HF_HUB_OFFLINE'])) {
    const cached = resolveCachedRepo(repoId, { revision, cacheDir });
    if (cached) return cached;
    throw new KvsieveError(`${repoId}@${revision}: not in the cache ${cacheDir} and HF_HUB_OFFLINE is set`);
  }
  const ctx: Context = {
    repoId,
    revision,
    endpoint: resolveEndpoint(options, env),
    token: resolveToken(options, env),
    signal: options.signal,
    retries: options.retries ?? 3,
    onProgress: options.onProgress,
  };

  try {
    return await pull(ctx, cacheDir, options.include);
  } catch (e) {
    if (e instanceof TransientError) throw new KvsieveError(`${repoId}: ${e.message}`, { cause: e });
    throw e;
  }
}

async function pull(ctx: Context, cacheDir: string, include: string[] | undefined): Promise<string> {
  const { repoId, revision } = ctx;
  const { commit, files } = await withRetries(ctx, () => listFiles(ctx));
  const useDefault = include === undefined || include.length === 0;
  const patterns = useDefault ? DEFAULT_INCLUDE : include;
  let selected = files.filter((f) => matchesInclude(f, patterns));
  const listing = (names: string[]) => `${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''}`;
  if (useDefault && !selected.some((f) => f.endsWith('.safetensors'))) {
    // Nothing loadable by default: say what is there (a GGUF-only repo needs the file named).
    const ggufs = files.filter((f) => f.endsWith('.gguf'));
    const hint = ggufs.length > 0 ? `; it has GGUF files (${listing(ggufs)}): name one with --include` : ` (it has ${listing(files)})`;
    throw new KvsieveError(`${repoId}@${revision}: no *.safetensors weights${hint}`);
  }
  if (selected.length === 0) throw new KvsieveError(`${repoId}@${revision}: no file matches ${patterns.join(', ')} (it has ${listing(files)})`);
  const unsafe = selected.find((f) => !isSafeRepoPath(f));
  if (unsafe !== undefined) throw new KvsieveError(`${repoId}: refusing file name "${unsafe}" (not a plain relative path)`);

  const repoDir = join(cacheDir, repoFolderName(repoId));
  const snapshot = join(repoDir, 'snapshots', commit);

  const done = new Set<string>();
  if (useDefault && selected.includes(INDEX_FILE)) {
    // A sharded checkpoint: fetch exactly the shards the index names (not e.g. a consolidated copy beside them).
    await fetchFile(ctx, repoDir, snapshot, commit, INDEX_FILE);
    done.add(INDEX_FILE);
    const shards = indexShards(join(snapshot, INDEX_FILE), repoId);
    const missing = [...shards].find((f) => !files.includes(f) || !isSafeRepoPath(f));
    if (missing !== undefined) throw new KvsieveError(`${repoId}: ${INDEX_FILE} names "${missing}", which is not in the repo`);
    selected = [...new Set([...selected.filter((f) => !f.endsWith('.safetensors')), ...shards])];
  }

  for (const file of selected) if (!done.has(file)) await fetchFile(ctx, repoDir, snapshot, commit, file);

  if (revision !== commit) {
    const ref = join(repoDir, 'refs', ...revision.split('/'));
    await disk(ref, async () => {
      await mkdir(dirname(ref), { recursive: true });
      const tmp = `${ref}.${process.pid}.tmp`;
      await writeFile(tmp, commit);
      await rename(tmp, ref);
    });
  }
  return snapshot;
}

function indexShards(path: string, repoId: string): Set<string> {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new KvsieveError(`${repoId}: ${INDEX_FILE} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) throw new KvsieveError(`${repoId}: ${INDEX_FILE} has no weight_map`);
  return new Set(Object.values(map as Record<string, unknown>).filter((v): v is string => typeof v === 'string'));
}

async function listFiles(ctx: Context): Promise<{ commit: string; files: string[] }> {
  const url = `${ctx.endpoint}/api/models/${ctx.repoId}/revision/${encodeURIComponent(ctx.revision)}`;
  const res = await hubFetch(ctx, url, 'GET', {});
  if (!res.ok) {
    await res.body?.cancel();
    throw httpError(ctx, res, url, null);
  }
  let info: { sha?: unknown; siblings?: unknown };
  try {
    info = (await res.json()) as typeof info;
  } catch (e) {
    throw new KvsieveError(`${ctx.repoId}: ${url} did not answer JSON (${(e as Error).message})`);
  }
  const commit = info?.sha;
  if (typeof commit !== 'string' || !isCommitSha(commit)) throw new KvsieveError(`${ctx.repoId}: ${url} gave no commit sha`);
  if (!Array.isArray(info.siblings)) throw new KvsieveError(`${ctx.repoId}: ${url} gave no file list (siblings)`);
  const files = info.siblings
    .map((s: unknown) => (s as { rfilename?: unknown } | null)?.rfilename)
    .filter((f): f is string => typeof f === 'string');
  return { commit, files };
}

const encodePath = (file: string) => file.split('/').map(encodeURIComponent).join('/');

async function fetchFile(ctx: Context, repoDir: string, snapshot: string, commit: string, file: string): Promise<void> {
  const link = join(snapshot, ...file.split('/'));
  if (existsSync(link)) {
    const size = statSync(link).size;
    ctx.onProgress?.({ file, bytes: size, total: size });
    return;
  }
  const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${commit}/${encodePath(file)}`;
  const meta = await withRetries(ctx, () => fileMetadata(ctx, url, file));
  const blob = join(repoDir, 'blobs', meta.id);
  const have = existsSync(blob) ? statSync(blob).size : -1;
  if (have < 0 || (meta.size !== null && have !== meta.size)) await downloadBlob(ctx, url, file, blob, meta);
  else ctx.onProgress?.({ file, bytes: have, total: have });
  await linkSnapshot(blob, link);
}

interface FileMeta {
  /** Blob name: the normalized etag (sha256 for LFS files, git sha1 otherwise). */
  id: string;
  size: number | null;
  /** Expected sha256 (hex) when the id is one. */
  sha256: string | null;
}

const normalizeEtag = (etag: string) => etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');

/** HEAD on the resolve URL, following only relative redirects (a renamed repo), not the one to LFS storage. */
async function fileMetadata(ctx: Context, url: string, file: string): Promise<FileMeta> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await hubFetch(ctx, current, 'HEAD', {});
    const location = res.headers.get('location');
    const redirect = res.status >= 300 && res.status < 400 && location !== null;
    if (redirect && /^\/(?!\/)/.test(location)) {
      current = new URL(location, current).href;
      continue;
    }
    if (!redirect && !res.ok) throw httpError(ctx, res, current, file);
    const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    if (etag === null) throw new KvsieveError(`${ctx.repoId}: ${current} gave no ETag for ${file}`);
    const id = normalizeEtag(etag);
    if (!isBlobId(id)) throw new KvsieveError(`${ctx.repoId}: ${current} gave an unusable ETag "${etag}" for ${file}`);
    const sizeHeader = res.headers.get('x-linked-size') ?? (res.ok ? res.headers.get('content-length') : null);
    const size = sizeHeader !== null && /^\d+$/.test(sizeHeader.trim()) ? Number(sizeHeader) : null;
    return { id, size, sha256: /^[0-9a-f]{64}$/.test(id) ? id : null };
  }
  throw new KvsieveError(`${ctx.repoId}: too many redirects resolving ${file} (${url})`);
}

/** fetch with the headers the Hub expects; the token only goes to the endpoint's own origin. */
async function hubFetch(ctx: Context, url: string, method: 'GET' | 'HEAD', extra: Record<string, string>): Promise<Response> {
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...extra };
  if (ctx.token && new URL(url).origin === new URL(ctx.endpoint).origin) headers['authorization'] = `Bearer ${ctx.token}`;
  try {
    return await fetch(url, { method, headers, redirect: 'manual', signal: ctx.signal ?? null });
  } catch (e) {
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? e;
    throw new TransientError(`cannot reach ${url} (${networkCause(e)})`);
  }
}

function networkCause(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (e as Error).message ?? String(e);
}

function httpError(ctx: Context, res: Response, url: string, file: string | null): Error {
  const code = res.headers.get('x-error-code');
  const serverMsg = res.headers.get('x-error-message');
  const repo = ctx.repoId;
  switch (res.status) {
    case 401:
      return new KvsieveError(
        ctx.token
          ? `${repo}: the Hub refused the token (401): check that HF_TOKEN is valid and can read this repo`
          : `${repo}: authentication required (401): the repo is gated or private (or does not exist); set HF_TOKEN to a Hugging Face access token that can read it`,
      );
    case 403:
      return new KvsieveError(
        ctx.token
          ? `${repo}: access denied (403): the repo is gated; accept its conditions on ${ctx.endpoint}/${repo} with the account of HF_TOKEN`
          : `${repo}: access denied (403): the repo is gated or private; set HF_TOKEN to a Hugging Face access token that can read it`,
      );
    case 404:
      if (code === 'RevisionNotFound') return new KvsieveError(`${repo}: revision "${ctx.revision}" not found (404)`);
      if (file !== null && code !== 'RepoNotFound') return new KvsieveError(`${repo}: file "${file}" not found at revision ${ctx.revision} (404, ${url})`);
      return new KvsieveError(`${repo}: repository not found at ${ctx.endpoint} (404)`);
    case 429:
      return new TransientError(`rate limited by the Hub (429) at ${url}`);
    default: {
      const msg = `${url} answered HTTP ${res.status}${serverMsg ? ` (${serverMsg})` : res.statusText ? ` ${res.statusText}` : ''}`;
      return res.status >= 500 ? new TransientError(msg) : new KvsieveError(`${repo}: ${msg}`);
    }
  }
}

/** Runs a filesystem operation, turning its errors into one-line KvsieveErrors naming the path. */
async function disk<T>(path: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && typeof err.syscall === 'string') {
      const what = err.code === 'ENOSPC' ? 'disk full' : err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied' : err.code === 'EROFS' ? 'read-only file system' : err.code;
      throw new KvsieveError(`cannot write ${path}: ${what} (${err.syscall})`, { cause: e });
    }
    throw e;
  }
}

const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Runs `op`, again after a TransientError (up to ctx.retries more times, backing off). */
async function withRetries<T>(ctx: Context, op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (e) {
      if (ctx.signal?.aborted) throw ctx.signal.reason ?? e;
      if (!(e instanceof TransientError) || attempt >= ctx.retries) throw e;
      await sleep(Math.min(200 * 2 ** attempt, 4000), ctx.signal);
    }
  }
}

async function downloadBlob(ctx: Context, url: string, file: string, blob: string, meta: FileMeta): Promise<void> {
  await disk(dirname(blob), () => mkdir(dirname(blob), { recursive: true }));
  try {
    await withRetries(ctx, () => transfer(ctx, url, file, blob, meta));
  } catch (e) {
    if (e instanceof TransientError) {
      throw new KvsieveError(`${ctx.repoId}: download of ${file} failed: ${e.message}; run again to resume`, { cause: e });
    }
    throw e;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function sha256OfFile(path: string): Promise<ReturnType<typeof createHash>> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash;
}

/** One attempt: fetch the rest of the blob into {blob}.incomplete, then check it and move it into place. */
async function transfer(ctx: Context, url: string, file: string, blob: string, meta: FileMeta): Promise<void> {
  const part = `${blob}.incomplete`;
  let have = await sizeOf(part);
  if (meta.size !== null && have > meta.size) {
    await disk(part, () => rm(part, { force: true }));
    have = 0;
  }
  if (meta.size !== null && have === meta.size) {
    // A previous run got every byte but stopped before the rename.
    if (meta.sha256 === null || (await sha256OfFile(part)).digest('hex') === meta.sha256) {
      await disk(blob, () => rename(part, blob));
      ctx.onProgress?.({ file, bytes: have, total: meta.size });
      return;
    }
    await disk(part, () => rm(part, { force: true }));
    have = 0;
  }

  const res = await getFollowing(ctx, url, have > 0 ? { range: `bytes=${have}-` } : {}, file);
  if (res.status === 416) {
    await res.body?.cancel();
    await disk(part, () => rm(part, { force: true }));
    throw new TransientError(`${url} refused the range bytes=${have}- (416)`);
  }
  const resumed = res.status === 206;
  let total = meta.size;
  if (resumed) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== have) {
      await res.body?.cancel();
      await disk(part, () => rm(part, { force: true }));
      throw new TransientError(`${url} resumed at the wrong offset (Content-Range "${res.headers.get('content-range')}", wanted ${have})`);
    }
    if (total === null && m[3] !== '*') total = Number(m[3]);
  } else {
    // 200: the whole file (a server that ignores Range starts over).
    have = 0;
    const len = res.headers.get('content-length');
    if (total === null && len !== null && /^\d+$/.test(len)) total = Number(len);
  }
  if (total !== null && meta.size !== null && total !== meta.size) {
    await res.body?.cancel();
    throw new KvsieveError(`${ctx.repoId}: ${file} is ${meta.size} bytes by the Hub's metadata but ${total} by ${url}`);
  }

  const hash = meta.sha256 !== null ? (resumed ? await sha256OfFile(part) : createHash('sha256')) : null;
  const fh = await disk(part, () => open(part, resumed ? 'a' : 'w'));
  ctx.onProgress?.({ file, bytes: have, total });
  try {
    if (!res.body) throw new TransientError(`${url} sent no body`);
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        for (let off = 0; off < chunk.byteLength; ) off += (await disk(part, () => fh.write(chunk, off))).bytesWritten;
        hash?.update(chunk);
        have += chunk.byteLength;
        if (total !== null && have > total) throw new TransientError(`${url} sent more than ${total} bytes`);
        ctx.onProgress?.({ file, bytes: have, total });
      }
    } catch (e) {
      if (e instanceof KvsieveError || e instanceof TransientError || ctx.signal?.aborted) throw e;
      throw new TransientError(`interrupted after ${have}${total !== null ? ` of ${total}` : ''} bytes (${url}: ${networkCause(e)})`);
    }
  } finally {
    await fh.close();
  }
  if (total !== null && have > total) {
    await disk(part, () => rm(part, { force: true }));
    throw new TransientError(`${url} sent more than ${total} bytes`);
  }
  if (total !== null && have !== total) throw new TransientError(`${url} ended after ${have} of ${total} bytes`);
  if (hash !== null) {
    const got = hash.digest('hex');
    if (got !== meta.sha256) {
      await disk(part, () => rm(part, { force: true }));
      const msg = `sha256 mismatch for ${file} (expected ${meta.sha256}, got ${got})`;
      // A resumed file may have begun with someone else's bytes: one fresh try; a fresh download is refused.
      if (resumed) throw new TransientError(msg);
      throw new KvsieveError(`${ctx.repoId}: ${msg}; the download was discarded`);
    }
  }
  await disk(blob, () => rename(part, blob));
}

/** GET following every redirect by hand, so the token is sent to the Hub only and not to the storage it redirects to. */
async function getFollowing(ctx: Context, url: string, extra: Record<string, string>, file: string): Promise<Response> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await hubFetch(ctx, current, 'GET', extra);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location !== null) {
      await res.body?.cancel();
      current = new URL(location, current).href;
      continue;
    }
    if (res.status !== 200 && res.status !== 206 && res.status !== 416) {
      await res.body?.cancel();
      throw httpError(ctx, res, current, file);
    }
    return res;
  }
  throw new KvsieveError(`${ctx.repoId}: too many redirects downloading ${file} (${url})`);
}

/** snapshots/{commit}/{file} → a relative symlink to the blob (a copy where symlinks are not allowed). */
async function linkSnapshot(blob: string, link: string): Promise<void> {
  await disk(link, async () => {
    await mkdir(dirname(link), { recursive: true });
    try {
      await lstat(link);
      await unlink(link); // a dangling link left behind by a removed blob
    } catch {
      // not there
    }
    try {
      await symlink(relative(dirname(link), blob), link);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && existsSync(link)) return;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') await copyFile(blob, link);
      else throw e;
    }
  });
}
