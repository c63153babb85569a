import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Env } from '../core/env.js';

/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub:
 *
 *   {cache}/models--{org}--{name}/blobs/{etag}            file contents (sha256 for LFS files, git sha1 otherwise)
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{f}   relative symlinks to the blobs
 *   {cache}/models--{org}--{name}/refs/{revision}          the commit sha a branch or tag pointed to
 *   {cache}/.locks/models--{org}--{name}/{etag}.lock       held while that blob downloads (see lock.ts)
 */

const COMMIT_RE = /^[0-9a-f]{40}$/;

/** The hub cache directory: HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: Env = process.env): string {
  const explicit = env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'];
  if (explicit) return explicit;
  return join(hfHome(env), 'hub');
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (~ is the environment's HOME, else the user's home). */
export function hfHome(env: Env = process.env): string {
  if (env['HF_HOME']) return env['HF_HOME'];
  const xdg = env['XDG_CACHE_HOME'] || join(env['HOME'] || homedir(), '.cache');
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
  env?: Env;
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

/** The lock file held while blob `blobId` of `repoId` downloads (huggingface_hub's path for it). */
export function blobLockPath(cacheDir: string, repoId: string, blobId: string): string {
  return join(cacheDir, '.locks', repoFolderName(repoId), `${blobId}.lock`);
}

/** Every file under a snapshot directory, as '/'-separated repo paths (links followed; dangling ones left out). */
export function snapshotFiles(snapshot: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      let st;
      try {
        st = statSync(path);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(path, `${prefix}${name}/`);
      else out.push(`${prefix}${name}`);
    }
  };
  walk(snapshot, '');
  return out;
}
