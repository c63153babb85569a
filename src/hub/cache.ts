import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub:
 *
 *   {cache}/models--{org}--{name}/blobs/{etag}            file contents (sha256 for LFS files, git sha1 otherwise)
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{f}   relative symlinks to the blobs
 *   {cache}/models--{org}--{name}/refs/{revision}          the commit sha a branch or tag pointed to
 */

const COMMIT_RE = /^[0-9a-f]{40}$/;

/** The hub cache directory: HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'];
  if (explicit) return explicit;
  return join(hfHome(env), 'hub');
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env['HF_HOME']) return env['HF_HOME'];
  const xdg = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(xdg, 'huggingface');
}

/** Whether `repoId` is a Hub model id: `org/name` (or a bare legacy `name`) of [A-Za-z0-9_.-], no `--` or `..`. */
export function isRepoId(repoId: string): boolean {
  if (repoId.length === 0 || repoId.length > 96) return false;
  if (repoId.includes('--') || repoId.includes('..')) return false;
  const parts = repoId.split('/');
  return parts.length <= 2 && parts.every((p) => /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(p));
}

/** Whether `revision` is a safe branch, tag, `refs/pr/N` or commit name (it becomes a path under refs/). */
export function isRevision(revision: string): boolean {
  if (revision.length === 0 || revision.length > 255) return false;
  return revision.split('/').every((part) => part.length > 0 && part !== '.' && part !== '..' && /^[A-Za-z0-9_.+@-]+$/.test(part));
}

export const isCommitSha = (revision: string) => COMMIT_RE.test(revision);

/** `models--org--name`, the repo's folder in the cache. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}

export interface CacheLookupOptions {
  /** Branch, tag or commit sha (default "main"). */
  revision?: string;
  /** The hub cache directory (default: see hubCacheDir). */
  cacheDir?: string;
  /** Environment used for the default cache directory (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The local snapshot directory of `repoId` at `revision`, without touching the network: a commit sha
 * names its snapshot directly, a branch or tag is read from refs/{revision}. Null when the repo or
 * revision is not in the cache (or the name cannot be a repo id / revision). A snapshot is only
 * referenced from refs/ once every file of the download landed, so a returned directory is complete.
 */
export function resolveCachedRepo(repoId: string, options: CacheLookupOptions = {}): string | null {
  const revision = options.revision ?? 'main';
  if (!isRepoId(repoId) || !isRevision(revision)) return null;
  const repoDir = join(options.cacheDir ?? hubCacheDir(options.env), repoFolderName(repoId));
  let commit: string | null = null;
  if (isCommitSha(revision)) commit = revision;
  else {
    const ref = join(repoDir, 'refs', revision);
    try {
      commit = readFileSync(ref, 'utf8').trim();
    } catch {
      return null;
    }
    if (!COMMIT_RE.test(commit)) return null;
  }
  const snapshot = join(repoDir, 'snapshots', commit);
  return existsSync(snapshot) && statSync(snapshot).isDirectory() ? snapshot : null;
}
