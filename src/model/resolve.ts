import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import type { Env } from '../core/env.js';
import { hubCacheDir } from '../hub/cache.js';
import { downloadSnapshot, isOffline, type DownloadProgress, type RepoSnapshot } from '../hub/download.js';
import { cachedHubModel, DEFAULT_MODEL_SOURCE, formatHubModelId, modelFiles, parseHubModelId, type HubModelId } from './hub-model.js';

/**
 * The model used when none is named: karpathy/tinyllamas' stories260K (llama2.c files), found in the
 * model search path, else in the Hugging Face cache, else downloaded (DEFAULT_MODEL_SOURCE).
 */
export const DEFAULT_MODEL = 'stories260K';

export type ResolvedModel =
  | { format: 'hf'; dir: string; weights: string }
  | { format: 'gguf'; file: string }
  | { format: 'llama2c'; checkpoint: string; tokenizer: string | null };

/** Directories searched for a model named without a path: KVSIEVE_MODEL_PATH, then ~/.cache/kvsieve/models (~: HOME). */
export function modelSearchPath(env: Env = process.env): string[] {
  const fromEnv = (env['KVSIEVE_MODEL_PATH'] ?? '').split(delimiter).filter((p) => p.length > 0);
  return [...fromEnv, join(env['HOME'] || homedir(), '.cache', 'kvsieve', 'models')];
}

const isTokenizerBin = (name: string) => /^(tok.*|tokenizer.*)\.bin$/i.test(name);

function resolveDir(dir: string): ResolvedModel {
  if (existsSync(join(dir, 'config.json'))) {
    const index = join(dir, 'model.safetensors.index.json');
    const single = join(dir, 'model.safetensors');
    if (existsSync(index)) return { format: 'hf', dir, weights: index };
    if (existsSync(single)) return { format: 'hf', dir, weights: single };
    const any = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
    if (any.length === 1) return { format: 'hf', dir, weights: join(dir, any[0]!) };
    throw new KvsieveError(`${dir}: has config.json but no model.safetensors or model.safetensors.index.json`);
  }
  const ggufs = readdirSync(dir).filter((f) => f.endsWith('.gguf'));
  if (ggufs.length === 1) return { format: 'gguf', file: join(dir, ggufs[0]!) };
  if (ggufs.length > 1) throw new KvsieveError(`${dir}: several GGUF files (${ggufs.join(', ')}); name the file`);
  const bins = readdirSync(dir).filter((f) => f.endsWith('.bin'));
  const checkpoints = bins.filter((f) => !isTokenizerBin(f));
  const tokenizers = bins.filter(isTokenizerBin);
  if (checkpoints.length === 1) {
    return {
      format: 'llama2c',
      checkpoint: join(dir, checkpoints[0]!),
      tokenizer: tokenizers.length === 1 ? join(dir, tokenizers[0]!) : null,
    };
  }
  if (checkpoints.length > 1) {
    throw new KvsieveError(`${dir}: several llama2.c checkpoints (${checkpoints.join(', ')}); name the file`);
  }
  throw new KvsieveError(
    `${dir}: no model found (expected config.json with safetensors, a .gguf file, or a llama2.c .bin checkpoint with its tokenizer)`,
  );
}

function resolvePath(path: string): ResolvedModel {
  if (statSync(path).isDirectory()) return resolveDir(path);
  const name = basename(path);
  if (name.endsWith('.gguf')) return { format: 'gguf', file: path };
  if (name.endsWith('.bin')) {
    const dir = dirname(path);
    const tokenizers = readdirSync(dir).filter(isTokenizerBin);
    return { format: 'llama2c', checkpoint: path, tokenizer: tokenizers.length === 1 ? join(dir, tokenizers[0]!) : null };
  }
  if (name.endsWith('.safetensors') || name === 'config.json' || name.endsWith('.index.json')) {
    const r = resolveDir(dirname(path));
    return name.endsWith('.safetensors') || name.endsWith('.index.json') ? ({ ...r, weights: path } as ResolvedModel) : r;
  }
  throw new KvsieveError(`${path}: not a model file (expected a directory, .gguf, .bin, .safetensors or config.json)`);
}

/** Where Hub models are fetched from and kept; each left out comes from the environment (HF_*). */
export interface HubOptions {
  /** The Hub's base URL (default HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Access token for gated or private repos (default HF_TOKEN, else huggingface-cli's saved token); "" for none. */
  token?: string;
  /** The Hugging Face cache (default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Use the cache only, never the network (default HF_HUB_OFFLINE). */
  offline?: boolean;
}

/** What a name found: a model on disk, or a Hub id that is not in the cache (null: not a Hub id either). */
type Found = { model: ResolvedModel } | { hub: HubModelId | null };

/**
 * Local first: an existing path; a bare name in the model search path; then a Hub id (`hf:ORG/NAME`,
 * `ORG/NAME[/PATH][@REV]`, or the default model's source for DEFAULT_MODEL) in the Hugging Face cache.
 */
function findModel(nameOrPath: string, env: Env, cacheDir: string): Found {
  const hubFirst = nameOrPath.startsWith('hf:');
  if (!hubFirst) {
    const path = resolve(nameOrPath);
    if (existsSync(path)) return { model: resolvePath(path) };
    const looksLikePath = nameOrPath.includes('/') && !/^[\w.-]+\/[\w.-]+$/.test(nameOrPath);
    if (!looksLikePath) {
      for (const root of modelSearchPath(env)) {
        const candidate = join(root, nameOrPath);
        if (existsSync(candidate)) return { model: resolvePath(candidate) };
      }
    }
  }
  const hub = parseHubModelId(nameOrPath === DEFAULT_MODEL ? DEFAULT_MODEL_SOURCE : nameOrPath);
  if (hub === null) return { hub: null };
  const cached = cachedHubModel(hub, cacheDir);
  return cached !== null ? { model: resolvePath(cached) } : { hub };
}

function notFound(nameOrPath: string, env: Env, cacheDir: string, hub: HubModelId | null, offline = false): KvsieveError {
  const searched = modelSearchPath(env).join(', ');
  if (hub === null) return new KvsieveError(`model "${nameOrPath}" not found (searched ${searched}, and it is not a Hugging Face id ORG/NAME)`);
  const id = formatHubModelId(hub);
  const local = nameOrPath.startsWith('hf:') ? '' : ` (searched ${searched})`;
  if (offline) return new KvsieveError(`model "${nameOrPath}" not found${local}, and ${id} is not in the Hugging Face cache ${cacheDir}; HF_HUB_OFFLINE is set, so it is not downloaded`);
  return new KvsieveError(`model "${nameOrPath}" not found${local}, and ${id} is not in the Hugging Face cache ${cacheDir}: run kvsieve pull ${id}, or load it with loadModel, which downloads it`);
}

/**
 * Turns what the user named into model files on disk, without the network: a directory, a file
 * (.bin checkpoint, .gguf, .safetensors, config.json), a bare name in the model search path, or a
 * Hugging Face id already in the cache. locateModel downloads what is not there.
 */
export function resolveModel(nameOrPath: string = DEFAULT_MODEL, env: Env = process.env, hub: HubOptions = {}): ResolvedModel {
  const cacheDir = hub.cacheDir ?? hubCacheDir(env);
  const found = findModel(nameOrPath, env, cacheDir);
  if ('model' in found) return found.model;
  throw notFound(nameOrPath, env, cacheDir, found.hub);
}

export interface LocateOptions extends HubOptions {
  /** Environment for KVSIEVE_MODEL_PATH and the HF_* defaults (default process.env). */
  env?: Env;
  /** Called as a Hub model downloads. */
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
}

/**
 * resolveModel, downloading a Hugging Face model that is not in the cache (into the cache, as
 * `kvsieve pull` does). A model already in the cache is used as it is, without asking the Hub for
 * a newer commit of its branch (`kvsieve pull` or downloadModel updates it).
 */
export async function locateModel(nameOrPath: string = DEFAULT_MODEL, options: LocateOptions = {}): Promise<ResolvedModel> {
  const env = options.env ?? process.env;
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const found = findModel(nameOrPath, env, cacheDir);
  if ('model' in found) return found.model;
  const offline = options.offline ?? isOffline(env);
  if (found.hub === null || offline) throw notFound(nameOrPath, env, cacheDir, found.hub, offline);
  return resolvePath((await fetchHubModel(found.hub, { ...options, cacheDir })).path);
}

export interface DownloadedModel {
  /** What to load: the model's folder in the snapshot, or its file. */
  path: string;
  /** The snapshot: its directory, commit, the files fetched, and whether the cache stood in for the Hub. */
  snapshot: RepoSnapshot;
}

/**
 * Downloads the model a Hub id names (`ORG/NAME[/PATH][@REV]`, `hf:` allowed) into the Hugging Face
 * cache, fetching only what loading it needs (modelFiles), and returns where it is. The Hub is asked
 * for the revision's current commit; with HF_HUB_OFFLINE, or when it cannot be reached, a cached
 * snapshot with the files stands in (`snapshot.fromCache` says so).
 */
export async function downloadModel(id: string, options: LocateOptions = {}): Promise<DownloadedModel> {
  const hub = parseHubModelId(id.startsWith('hf:') ? id : `hf:${id}`)!;
  return fetchHubModel(hub, options);
}

async function fetchHubModel(hub: HubModelId, options: LocateOptions): Promise<DownloadedModel> {
  const name = formatHubModelId(hub);
  const snapshot = await downloadSnapshot(hub.repo, {
    ...(hub.revision !== null ? { revision: hub.revision } : {}),
    select: (files) => modelFiles(files, hub.path, name),
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.offline !== undefined ? { offline: options.offline } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.env ? { env: options.env } : {}),
  });
  return { path: hub.path !== null ? join(snapshot.dir, ...hub.path.split('/')) : snapshot.dir, snapshot };
}
