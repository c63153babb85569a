import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, lstat, mkdir, open, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { Env } from '../core/env.js';
import { KvsieveError } from '../core/errors.js';
import {
  blobLockPath,
  hfHome,
  hubCacheDir,
  isCommitSha,
  isRepoId,
  isRevision,
  repoFolderName,
  resolveCachedRepo,
  snapshotFiles,
} from './cache.js';
import { withFileLock } from './lock.js';

/**
 * Downloads a model repository from the Hugging Face Hub into the Hugging Face cache layout (see
 * cache.ts), so that files fetched by Python's huggingface_hub are reused and the other way round.
 *
 * 1. The file list and commit: `GET {endpoint}/api/models/{repo}/revision/{revision}`.
 * 2. The files wanted: `include` patterns, a `select` function, or DEFAULT_INCLUDE; a selected
 *    `model.safetensors.index.json` is fetched first and narrows its folder's weights to the shards
 *    it names (unless `include` was given).
 * 3. Per file: the snapshot link already there → nothing to fetch; otherwise a HEAD on
 *    `{endpoint}/{repo}/resolve/{commit}/{file}` gives the blob id (`X-Linked-Etag` for LFS files,
 *    which is their sha256, else `ETag`) and size (`X-Linked-Size`, else `Content-Length`). Every
 *    size is known before the first byte moves, so progress has a total.
 * 4. A blob already present is linked; a missing one is fetched under its lock file (lock.ts, the
 *    path Python uses) into `blobs/{id}.incomplete`, resumed with `Range: bytes=N-` when that file
 *    exists, and renamed into place only once its size (and sha256, when the id is one) match.
 * 5. refs/{revision} is written last, so an interrupted pull never makes a half snapshot resolvable.
 *
 * Every request follows the Hub's relative redirects (a renamed repo answers 307 with a relative
 * Location); the file GET also follows the redirect to the LFS/CDN storage, without the token. With
 * HF_HUB_OFFLINE, or when the Hub cannot be reached (connection refused, 5xx, 429 after retries), a
 * cached snapshot of the revision that holds the wanted files is returned instead.
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
  /** The repo id, as asked for. */
  repo: string;
  /** Path of the file inside the repo this event is about. */
  file: string;
  /** Bytes of that file on disk so far (a resumed download starts above 0). */
  bytes: number;
  /** That file's size, when known. */
  total: number | null;
  /** Bytes of every file of this download on disk so far, cached ones included. */
  doneBytes: number;
  /** The size of every file of this download together; null until every size is known. */
  totalBytes: number | null;
  /** Files finished (fetched, or found in the cache), and files in all (null until the list is final). */
  filesDone: number;
  files: number | null;
  /**
   * `download`: bytes are arriving; `cached`: the file was in the cache already; `wait`: another
   * process (kvsieve, or Python's huggingface_hub) is downloading this blob and holds its lock.
   */
  status: 'download' | 'cached' | 'wait';
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
  /**
   * Picks the files to fetch from the repo's file list, instead of `include` (a KvsieveError it
   * throws says why nothing fits). A `model.safetensors.index.json` it picks narrows the weights of
   * its folder to the shards it names.
   */
  select?: (files: readonly string[]) => string[];
  /** Work from the cache only, as HF_HUB_OFFLINE=1 does (default: HF_HUB_OFFLINE). */
  offline?: boolean;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Further attempts after a transfer breaks off (connection lost, 5xx, short body), each resuming (default 3). */
  retries?: number;
  /** Environment for the defaults above (default process.env). */
  env?: Env;
}

/** A downloaded (or cached) revision of a repo. */
export interface RepoSnapshot {
  /** The snapshot directory: {cache}/models--{org}--{name}/snapshots/{commit}. */
  dir: string;
  commit: string;
  /** The repo paths fetched or found, in the order fetched. */
  files: string[];
  /**
   * Set when the Hub was not asked and the cache stood in: `offline` (HF_HUB_OFFLINE or the option)
   * or `unreachable` (`message` says what failed).
   */
  fromCache: { reason: 'offline' | 'unreachable'; message: string } | null;
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

/** An error that a later attempt may not repeat (lost connection, 5xx, 429, short body). */
class TransientError extends Error {}

/** Counts files and bytes across one download for DownloadProgress. */
class Tally {
  files: number | null = null;
  totalBytes: number | null = null;
  filesDone = 0;
  /** Bytes of the files finished so far. */
  finishedBytes = 0;

  constructor(
    private readonly repo: string,
    private readonly listener: ((p: DownloadProgress) => void) | undefined,
  ) {}

  emit(file: string, bytes: number, total: number | null, status: DownloadProgress['status']): void {
    this.listener?.({
      repo: this.repo,
      file,
      bytes,
      total,
      doneBytes: this.finishedBytes + bytes,
      totalBytes: this.totalBytes,
      filesDone: this.filesDone,
      files: this.files,
      status,
    });
  }

  /** `file` is complete with `size` bytes: the event that says so counts it done. */
  finish(file: string, size: number, status: DownloadProgress['status']): void {
    this.filesDone++;
    this.finishedBytes += size;
    this.listener?.({
      repo: this.repo,
      file,
      bytes: size,
      total: size,
      doneBytes: this.finishedBytes,
      totalBytes: this.totalBytes,
      filesDone: this.filesDone,
      files: this.files,
      status,
    });
  }
}

interface Context {
  repoId: string;
  revision: string;
  endpoint: string;
  token: string | null;
  cacheDir: string;
  signal: AbortSignal | undefined;
  retries: number;
  tally: Tally;
}

function resolveToken(options: DownloadOptions, env: Env): string | null {
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

function resolveEndpoint(options: DownloadOptions, env: Env): string {
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

/** Whether HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) asks for the cache only. */
export function isOffline(env: Env = process.env): boolean {
  return truthy(env['HF_HUB_OFFLINE']) || truthy(env['TRANSFORMERS_OFFLINE']);
}

/** Downloads `repoId` (e.g. "HuggingFaceTB/SmolLM2-135M") and returns its local snapshot directory. */
export async function downloadRepo(repoId: string, options: DownloadOptions = {}): Promise<string> {
  return (await downloadSnapshot(repoId, options)).dir;
}

/** downloadRepo, telling which files it got and whether the cache stood in for the Hub. */
export async function downloadSnapshot(repoId: string, options: DownloadOptions = {}): Promise<RepoSnapshot> {
  const env = options.env ?? process.env;
  const revision = options.revision ?? 'main';
  if (!isRepoId(repoId)) throw new KvsieveError(`"${repoId}" is not a Hugging Face repo id (expected ORG/NAME)`);
  if (!isRevision(revision)) throw new KvsieveError(`${repoId}: "${revision}" is not a valid revision (branch, tag or commit sha)`);
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const want = selection(options);
  if (options.offline ?? isOffline(env)) {
    const cached = cachedSnapshot(repoId, revision, cacheDir, want);
    if (cached.files) return { dir: cached.dir!, commit: cached.commit!, files: cached.files, fromCache: { reason: 'offline', message: 'HF_HUB_OFFLINE is set' } };
    throw new KvsieveError(`${repoId}@${revision}: ${cached.why} in the cache ${cacheDir}, and HF_HUB_OFFLINE is set (the Hub is not asked)`);
  }
  const ctx: Context = {
    repoId,
    revision,
    endpoint: resolveEndpoint(options, env),
    token: resolveToken(options, env),
    cacheDir,
    signal: options.signal,
    retries: options.retries ?? 3,
    tally: new Tally(repoId, options.onProgress),
  };

  let listing: { commit: string; files: string[] };
  try {
    listing = await withRetries(ctx, () => listFiles(ctx));
  } catch (e) {
    if (!(e instanceof TransientError)) throw e;
    // The Hub is unreachable (or failing): a cached snapshot of this revision with the files stands in.
    const cached = cachedSnapshot(repoId, revision, cacheDir, want);
    if (cached.files) return { dir: cached.dir!, commit: cached.commit!, files: cached.files, fromCache: { reason: 'unreachable', message: e.message } };
    throw new KvsieveError(`${repoId}: ${e.message} (and ${revision} is not ${cached.why === 'not' ? 'in the cache' : `complete in the cache: ${cached.why}`})`, { cause: e });
  }
  try {
    const files = await pull(ctx, listing, want);
    return { dir: join(cacheDir, repoFolderName(repoId), 'snapshots', listing.commit), commit: listing.commit, files, fromCache: null };
  } catch (e) {
    if (e instanceof TransientError) throw new KvsieveError(`${repoId}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** What to fetch from a file list, and whether safetensors index files narrow their folder's weights. */
interface Selection {
  /** The files wanted from a list; throws a KvsieveError saying why when none fit. */
  pick(files: readonly string[]): string[];
  shards: boolean;
}

function selection(options: DownloadOptions): Selection {
  if (options.select) return { pick: options.select, shards: true };
  const explicit = options.include !== undefined && options.include.length > 0;
  const patterns = explicit ? options.include! : DEFAULT_INCLUDE;
  const listing = (names: readonly string[]) => `${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''}`;
  return {
    shards: !explicit,
    pick: (files) => {
      const picked = files.filter((f) => matchesInclude(f, patterns));
      if (!explicit && !picked.some((f) => f.endsWith('.safetensors'))) {
        // Nothing loadable by default: say what is there (a GGUF-only repo needs the file named).
        const ggufs = files.filter((f) => f.endsWith('.gguf'));
        const hint = ggufs.length > 0 ? `; it has GGUF files (${listing(ggufs)}): name one with --include` : ` (it has ${listing(files)})`;
        throw new KvsieveError(`no *.safetensors weights${hint}`);
      }
      if (picked.length === 0) throw new KvsieveError(`no file matches ${patterns.join(', ')} (it has ${listing(files)})`);
      return picked;
    },
  };
}

/**
 * The cached snapshot of `revision` when it holds every file the selection picks from what is there
 * (and every shard its index files name); otherwise `why` says what is missing.
 */
function cachedSnapshot(repoId: string, revision: string, cacheDir: string, want: Selection): { dir?: string; commit?: string; files?: string[]; why: string } {
  const dir = resolveCachedRepo(repoId, { revision, cacheDir });
  if (dir === null) return { why: 'not' };
  let files: string[];
  try {
    files = want.pick(snapshotFiles(dir));
  } catch (e) {
    if (e instanceof KvsieveError) return { why: e.message };
    throw e;
  }
  if (want.shards) {
    for (const index of files.filter(isIndexFile)) {
      const folder = index.slice(0, index.length - INDEX_FILE.length);
      const missing = [...indexShards(join(dir, index), repoId, index)].find((s) => !existsSync(join(dir, folder + s)));
      if (missing !== undefined) return { why: `${folder}${missing} is missing` };
    }
  }
  return { dir, commit: dir.split(/[\\/]/).pop()!, files, why: '' };
}

const isIndexFile = (f: string) => f === INDEX_FILE || f.endsWith(`/${INDEX_FILE}`);

async function pull(ctx: Context, listing: { commit: string; files: string[] }, want: Selection): Promise<string[]> {
  const { repoId, revision } = ctx;
  const { commit, files } = listing;
  let selected: string[];
  try {
    selected = [...new Set(want.pick(files))];
  } catch (e) {
    throw e instanceof KvsieveError ? new KvsieveError(`${repoId}@${revision}: ${e.message}`, { cause: e }) : e;
  }
  const unsafe = selected.find((f) => !isSafeRepoPath(f));
  if (unsafe !== undefined) throw new KvsieveError(`${repoId}: refusing file name "${unsafe}" (not a plain relative path)`);
  const absent = selected.find((f) => !files.includes(f));
  if (absent !== undefined) throw new KvsieveError(`${repoId}@${revision}: "${absent}" is not in the repo`);

  const repoDir = join(ctx.cacheDir, repoFolderName(repoId));
  const snapshot = join(repoDir, 'snapshots', commit);
  const fetched: string[] = [];

  if (want.shards) {
    // A sharded checkpoint: fetch exactly the shards the index names (not e.g. a consolidated copy
    // beside them). The index comes first; its bytes count before the total is known.
    for (const index of selected.filter(isIndexFile)) {
      const [plan] = await planFiles(ctx, repoDir, snapshot, commit, [index]);
      await fetchPlanned(ctx, repoDir, plan!);
      fetched.push(index);
      const folder = index.slice(0, index.length - INDEX_FILE.length);
      const shards = [...indexShards(join(snapshot, index), repoId, index)].map((s) => folder + s);
      const missing = shards.find((f) => !files.includes(f) || !isSafeRepoPath(f));
      if (missing !== undefined) throw new KvsieveError(`${repoId}: ${index} names "${missing.slice(folder.length)}", which is not in the repo`);
      const inFolder = (f: string) => f.startsWith(folder) && !f.slice(folder.length).includes('/');
      selected = [...new Set([...selected.filter((f) => !(f.endsWith('.safetensors') && inFolder(f))), ...shards])];
    }
  }

  const rest = selected.filter((f) => !fetched.includes(f));
  const plans = await planFiles(ctx, repoDir, snapshot, commit, rest);
  ctx.tally.files = fetched.length + plans.length;
  ctx.tally.totalBytes = plans.every((p) => p.size !== null) ? ctx.tally.finishedBytes + plans.reduce((s, p) => s + p.size!, 0) : null;
  for (const plan of plans) {
    await fetchPlanned(ctx, repoDir, plan);
    fetched.push(plan.file);
  }

  if (revision !== commit) {
    const ref = join(repoDir, 'refs', ...revision.split('/'));
    await disk(ref, async () => {
      await mkdir(dirname(ref), { recursive: true });
      // Unique per call: two pulls of one repo in one process must not share a temporary file.
      const tmp = `${ref}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      await writeFile(tmp, commit);
      await rename(tmp, ref);
    });
  }
  return fetched;
}

function indexShards(path: string, repoId: string, name: string): Set<string> {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new KvsieveError(`${repoId}: ${name} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) throw new KvsieveError(`${repoId}: ${name} has no weight_map`);
  return new Set(Object.values(map as Record<string, unknown>).filter((v): v is string => typeof v === 'string'));
}

async function listFiles(ctx: Context): Promise<{ commit: string; files: string[] }> {
  const url = `${ctx.endpoint}/api/models/${ctx.repoId}/revision/${encodeURIComponent(ctx.revision)}`;
  const res = await hubRequest(ctx, url, 'GET', {});
  if (!res.ok) {
    await res.body?.cancel();
    throw httpError(ctx, res, res.url || url, null);
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

/** One file to fetch: its snapshot link, and the blob behind it (null when the link is there already). */
interface Plan {
  file: string;
  link: string;
  url: string;
  meta: FileMeta | null;
  size: number | null;
}

async function planFiles(ctx: Context, repoDir: string, snapshot: string, commit: string, files: string[]): Promise<Plan[]> {
  const plans: Plan[] = [];
  for (const file of files) {
    const link = join(snapshot, ...file.split('/'));
    const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${commit}/${encodePath(file)}`;
    if (existsSync(link)) {
      plans.push({ file, link, url, meta: null, size: statSync(link).size });
      continue;
    }
    const meta = await withRetries(ctx, () => fileMetadata(ctx, url, file));
    plans.push({ file, link, url, meta, size: meta.size });
  }
  return plans;
}

async function fetchPlanned(ctx: Context, repoDir: string, plan: Plan): Promise<void> {
  const { file, meta } = plan;
  if (meta === null) return ctx.tally.finish(file, plan.size ?? 0, 'cached');
  const blob = join(repoDir, 'blobs', meta.id);
  const complete = () => existsSync(blob) && (meta.size === null || statSync(blob).size === meta.size);
  let status: DownloadProgress['status'] = 'cached';
  if (!complete()) {
    await disk(dirname(blob), () => mkdir(dirname(blob), { recursive: true }));
    const lock = blobLockPath(ctx.cacheDir, ctx.repoId, meta.id);
    await disk(dirname(lock), () => mkdir(dirname(lock), { recursive: true }));
    await withFileLock(
      lock,
      async () => {
        // Whoever held the lock before may have finished this very blob.
        if (complete()) return;
        status = 'download';
        await downloadBlob(ctx, plan.url, file, blob, meta);
      },
      { signal: ctx.signal, onWait: () => ctx.tally.emit(file, 0, meta.size, 'wait') },
    );
  }
  await linkSnapshot(blob, plan.link);
  ctx.tally.finish(file, statSync(blob).size, status);
}

interface FileMeta {
  /** Blob name: the normalized etag (sha256 for LFS files, git sha1 otherwise). */
  id: string;
  size: number | null;
  /** Expected sha256 (hex) when the id is one. */
  sha256: string | null;
}

const normalizeEtag = (etag: string) => etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');

/** HEAD on the resolve URL: the headers of its answer, or of the redirect to the LFS storage (not followed). */
async function fileMetadata(ctx: Context, url: string, file: string): Promise<FileMeta> {
  const res = await hubRequest(ctx, url, 'HEAD', {});
  const redirect = res.status >= 300 && res.status < 400 && res.headers.get('location') !== null;
  const at = res.url || url;
  if (!redirect && !res.ok) throw httpError(ctx, res, at, file);
  const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
  if (etag === null) throw new KvsieveError(`${ctx.repoId}: ${at} gave no ETag for ${file}`);
  const id = normalizeEtag(etag);
  if (!isBlobId(id)) throw new KvsieveError(`${ctx.repoId}: ${at} gave an unusable ETag "${etag}" for ${file}`);
  const sizeHeader = res.headers.get('x-linked-size') ?? (res.ok ? res.headers.get('content-length') : null);
  const size = sizeHeader !== null && /^\d+$/.test(sizeHeader.trim()) ? Number(sizeHeader) : null;
  return { id, size, sha256: /^[0-9a-f]{64}$/.test(id) ? id : null };
}

/**
 * A Hub request following relative redirects (a renamed or moved repo: `Location: /new/name/...`),
 * by hand so the token goes along only while the origin stays the Hub's. An absolute redirect (to
 * the LFS storage) is returned as it is; getFollowing takes it further. The answer's `url` is set to
 * the URL that gave it, for messages.
 */
async function hubRequest(ctx: Context, url: string, method: 'GET' | 'HEAD', extra: Record<string, string>): Promise<Response> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await hubFetch(ctx, current, method, extra);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location !== null && /^\/(?!\/)/.test(location)) {
      await res.body?.cancel();
      current = new URL(location, current).href;
      continue;
    }
    Object.defineProperty(res, 'url', { value: current });
    return res;
  }
  throw new KvsieveError(`${ctx.repoId}: too many redirects from ${url}`);
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

/**
 * The error for a failed Hub answer. The Hub's `X-Error-Code` tells the cases apart that the status
 * does not: a missing repo and a private one both answer 401 RepoNotFound to a caller without
 * access, a gated one 401 or 403 GatedRepo.
 */
function httpError(ctx: Context, res: Response, url: string, file: string | null): Error {
  const code = res.headers.get('x-error-code');
  const serverMsg = res.headers.get('x-error-message');
  const repo = ctx.repoId;
  const page = `${ctx.endpoint}/${repo}`;
  switch (code) {
    case 'RepoNotFound':
      return new KvsieveError(
        ctx.token
          ? `${repo}: repository not found at ${ctx.endpoint} (${res.status}), or the account of HF_TOKEN cannot read it`
          : `${repo}: repository not found at ${ctx.endpoint} (${res.status}); if it is private, set HF_TOKEN to an access token that can read it`,
      );
    case 'GatedRepo':
      return new KvsieveError(
        ctx.token
          ? `${repo}: the repo is gated (${res.status}): accept its conditions on ${page} with the account of HF_TOKEN`
          : `${repo}: the repo is gated (${res.status}): accept its conditions on ${page}, then set HF_TOKEN to an access token of that account`,
      );
    case 'RevisionNotFound':
      return new KvsieveError(`${repo}: revision "${ctx.revision}" not found (${res.status})`);
    case 'EntryNotFound':
      return new KvsieveError(`${repo}: file "${file ?? url}" not found at revision ${ctx.revision} (${res.status}, ${url})`);
    default:
      if (serverMsg === 'Access to this resource is disabled.') return new KvsieveError(`${repo}: the repo is disabled on ${ctx.endpoint} (${res.status})`);
  }
  switch (res.status) {
    case 401:
      return new KvsieveError(
        ctx.token
          ? `${repo}: the Hub refused the token (401${serverMsg ? `: ${serverMsg}` : ''}): check that HF_TOKEN is valid and can read this repo`
          : `${repo}: authentication required (401): the repo is gated or private (or does not exist); set HF_TOKEN to a Hugging Face access token that can read it`,
      );
    case 403:
      return new KvsieveError(
        ctx.token
          ? `${repo}: access denied (403): the repo is gated; accept its conditions on ${page} with the account of HF_TOKEN`
          : `${repo}: access denied (403): the repo is gated or private; set HF_TOKEN to a Hugging Face access token that can read it`,
      );
    case 404:
      if (file !== null) return new KvsieveError(`${repo}: file "${file}" not found at revision ${ctx.revision} (404, ${url})`);
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
    const err = e as Error & { code?: unknown; syscall?: unknown };
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
      ctx.tally.emit(file, have, meta.size, 'download');
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
  ctx.tally.emit(file, have, total, 'download');
  try {
    if (!res.body) throw new TransientError(`${url} sent no body`);
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        for (let off = 0; off < chunk.byteLength; ) off += (await disk(part, () => fh.write(chunk, off))).bytesWritten;
        hash?.update(chunk);
        have += chunk.byteLength;
        if (total !== null && have > total) throw new TransientError(`${url} sent more than ${total} bytes`);
        ctx.tally.emit(file, have, total, 'download');
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
      const code = (e as { code?: string }).code;
      if (code === 'EEXIST' && existsSync(link)) return;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') await copyFile(blob, link);
      else throw e;
    }
  });
}
