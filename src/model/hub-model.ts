import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { isRepoId, isRevision, resolveCachedRepo, snapshotFiles } from '../hub/cache.js';
import { DEFAULT_INCLUDE, matchesInclude } from '../hub/download.js';

/**
 * Models named by their Hugging Face Hub id, and which files of a repo make a model kvsieve loads.
 *
 * An id is `ORG/NAME`, with a folder or file of the repo after it (`ORG/NAME/PATH`), and a revision
 * (branch, tag or commit) after an `@`, at the end or after the name (`ORG/NAME/PATH@REV`,
 * `ORG/NAME@REV/PATH`, the form of huggingface_hub's `hf://` paths); a revision holding '/'
 * (`refs/pr/1`) is written percent-encoded (`refs%2Fpr%2F1`). `hf:` before it (`hf:ORG/NAME`,
 * `hf://ORG/NAME`) says it is an id and never a local path, and allows a legacy one-word repo (`hf:gpt2`).
 */

/** The default model's source: stories260K in karpathy/tinyllamas, pinned to main's commit. */
export const DEFAULT_MODEL_SOURCE =
  // main of karpathy/tinyllamas since August 2023 ("Changed the schema for the tokenizer.bin files"):
  // its stories260K/stories260K.bin (LFS sha256 b0a507e7...) and stories260K/tok512.bin (037cb335...)
  // are the files in ../shared/models/stories260K that the golden tests check.
  'karpathy/tinyllamas/stories260K@0bd21da7698eaf29a0d7de3992de8a46ef624add';

export interface HubModelId {
  /** `org/name` (or a legacy one-word repo). */
  repo: string;
  /** Branch, tag or commit sha; null for the default branch (main). */
  revision: string | null;
  /** A folder or file inside the repo ('/'-separated); null for the repo's top. */
  path: string | null;
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** The Hub id `spec` names, or null when it is not one (a malformed `hf:` id is an error). */
export function parseHubModelId(spec: string): HubModelId | null {
  const prefixed = spec.startsWith('hf:');
  const body = prefixed ? spec.slice(3).replace(/^\/\//, '') : spec;
  const fail = (why: string): null => {
    if (prefixed) throw new KvsieveError(`"${spec}" is not a Hugging Face model id (${why}; expected hf:ORG/NAME[/PATH][@REVISION])`);
    return null;
  };
  const segs = body.split('/');
  if (segs.length < (prefixed ? 1 : 2)) return fail('no ORG/NAME');
  let revision: string | null = null;
  const take = (seg: string): string | null => {
    const at = seg.indexOf('@');
    if (at < 0) return seg;
    if (revision !== null) return null;
    try {
      revision = decodeURIComponent(seg.slice(at + 1));
    } catch {
      return null;
    }
    return seg.slice(0, at);
  };
  // A one-word repo (hf:gpt2) has no org; otherwise the first two segments are the repo.
  const repoSegs = prefixed && (segs.length === 1 || (segs.length >= 2 && segs[0]!.includes('@'))) ? 1 : 2;
  const path = segs.slice(repoSegs);
  const last = repoSegs - 1;
  const name = take(segs[last]!);
  if (name === null) return fail('more than one @');
  if (path.length > 0) {
    const tail = take(path[path.length - 1]!);
    if (tail === null) return fail('more than one @');
    path[path.length - 1] = tail;
  }
  const repo = repoSegs === 1 ? name : `${segs[0]}/${name}`;
  if (!isRepoId(repo) || !repo.split('/').every((s) => SEGMENT.test(s))) return fail(`"${repo}" is not a repo name`);
  if (!path.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')) return fail('a path segment is empty or not a plain name');
  if (revision !== null && !isRevision(revision)) return fail(`"${revision}" is not a revision`);
  return { repo, revision, path: path.length > 0 ? path.join('/') : null };
}

/** An id as text: `org/name[/path][@revision]` (a revision with '/' percent-encoded). */
export function formatHubModelId(id: HubModelId): string {
  const rev = id.revision !== null ? `@${id.revision.includes('/') ? encodeURIComponent(id.revision) : id.revision}` : '';
  return `${id.repo}${id.path !== null ? `/${id.path}` : ''}${rev}`;
}

const base = (f: string) => f.slice(f.lastIndexOf('/') + 1);
const folderOf = (f: string) => f.slice(0, f.lastIndexOf('/') + 1);
const isTokenizerBin = (name: string) => /^(tok.*|tokenizer.*)\.bin$/i.test(name);
const isModelFile = (name: string) => name === 'config.json' || name.endsWith('.gguf') || (name.endsWith('.bin') && !isTokenizerBin(name));
const list = (names: readonly string[]) => `${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''}`;

/**
 * The files of a repo (its `files`, '/'-separated) that make the model at `path` (null: the top),
 * in the first form that fits, looking only at the folder's own files, not its subfolders:
 * - Hugging Face: config.json with safetensors weights, tokenizer and generation files beside it
 *   (a model.safetensors.index.json narrows the weights to its shards when downloading);
 * - one GGUF file (several: name one);
 * - a llama2.c checkpoint, one `.bin` that is not a tokenizer, with its `tok*.bin` when there is one.
 * `path` may name a file: a .gguf, a llama2.c .bin (its tokenizer comes along), or a .safetensors /
 * config.json of a Hugging Face folder. `id` is the model's name in messages.
 */
export function modelFiles(files: readonly string[], path: string | null, id: string): string[] {
  const repo = id.replace(/@.*$/, '');
  if (path !== null && files.includes(path)) {
    const name = base(path);
    const folder = folderOf(path);
    const siblings = files.filter((f) => folderOf(f) === folder);
    if (name.endsWith('.gguf')) return [path];
    if (name.endsWith('.bin') && !isTokenizerBin(name)) {
      const toks = siblings.filter((f) => isTokenizerBin(base(f)));
      return toks.length === 1 ? [path, toks[0]!] : [path];
    }
    if (name.endsWith('.safetensors') || name === 'config.json' || name.endsWith('.index.json')) {
      const hf = modelFiles(files, folder === '' ? null : folder.slice(0, -1), id);
      return name.endsWith('.safetensors') && !hf.includes(path) ? [...hf.filter((f) => !f.endsWith('.safetensors') && !f.endsWith('.index.json')), path] : hf;
    }
    throw new KvsieveError(`${id}: "${path}" is not a model file (expected a folder, .gguf, .bin, .safetensors or config.json)`);
  }
  const folder = path !== null ? `${path}/` : '';
  const own = files.filter((f) => f.startsWith(folder) && !f.slice(folder.length).includes('/'));
  if (own.length === 0 && !files.some((f) => f.startsWith(folder))) {
    throw new KvsieveError(`${id}: the repo has no file or folder "${path}" (it has ${list(topLevel(files))})`);
  }
  const names = own.map(base);
  if (names.includes('config.json')) {
    const picked = own.filter((f) => matchesInclude(base(f), DEFAULT_INCLUDE));
    if (!picked.some((f) => f.endsWith('.safetensors'))) {
      const ggufs = own.filter((f) => f.endsWith('.gguf'));
      const alt = ggufs.length > 0 ? `; it has GGUF files: name one, e.g. ${repo}/${ggufs[0]}` : ' (kvsieve reads safetensors, GGUF and llama2.c .bin)';
      throw new KvsieveError(`${id}: config.json but no *.safetensors weights${alt}`);
    }
    return picked;
  }
  const ggufs = own.filter((f) => f.endsWith('.gguf'));
  if (ggufs.length === 1) return ggufs;
  if (ggufs.length > 1) throw new KvsieveError(`${id}: several GGUF files; name one: ${list(ggufs.map((f) => `${repo}/${f}`))}`);
  const checkpoints = own.filter((f) => f.endsWith('.bin') && !isTokenizerBin(base(f)));
  const toks = own.filter((f) => isTokenizerBin(base(f)));
  if (checkpoints.length === 1) return toks.length === 1 ? [checkpoints[0]!, toks[0]!] : [checkpoints[0]!];
  const inside = [...new Set(files.filter((f) => f.startsWith(folder) && f.slice(folder.length).includes('/') && isModelFile(base(f))).map((f) => folderOf(f).slice(0, -1)))];
  const elsewhere = inside.length > 0 ? `; folders with one: ${list(inside.map((d) => `${repo}/${d}`))}` : '';
  if (checkpoints.length > 1) throw new KvsieveError(`${id}: several llama2.c checkpoints; name one: ${list(checkpoints.map((f) => `${repo}/${f}`))}${elsewhere}`);
  throw new KvsieveError(
    `${id}: no model in ${path !== null ? `"${path}"` : 'the top folder'} (expected config.json with safetensors, a .gguf file, or a llama2.c .bin checkpoint)${elsewhere}`,
  );
}

function topLevel(files: readonly string[]): string[] {
  return [...new Set(files.map((f) => (f.includes('/') ? `${f.slice(0, f.indexOf('/'))}/` : f)))];
}

/**
 * The local path of `id` in the Hugging Face cache (no network): the snapshot of its revision (refs/main
 * by default), when it holds the model's files (and every shard a safetensors index names); else null.
 */
export function cachedHubModel(id: HubModelId, cacheDir: string): string | null {
  const snapshot = resolveCachedRepo(id.repo, { revision: id.revision ?? 'main', cacheDir });
  if (snapshot === null) return null;
  let files: string[];
  try {
    files = modelFiles(snapshotFiles(snapshot), id.path, formatHubModelId(id));
  } catch (e) {
    if (e instanceof KvsieveError) return null;
    throw e;
  }
  for (const index of files.filter((f) => f.endsWith('.safetensors.index.json'))) {
    let shards: unknown;
    try {
      shards = (JSON.parse(readFileSync(join(snapshot, index), 'utf8')) as { weight_map?: Record<string, unknown> }).weight_map;
    } catch {
      return null;
    }
    const folder = folderOf(index);
    if (typeof shards !== 'object' || shards === null) return null;
    if (!Object.values(shards).every((s) => typeof s === 'string' && existsSync(join(snapshot, folder + s)))) return null;
  }
  return id.path !== null ? join(snapshot, ...id.path.split('/')) : snapshot;
}
