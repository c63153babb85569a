import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { hubCacheDir, resolveCachedRepo } from '../hub/cache.js';

/** The model used when none is named: karpathy/tinyllamas' stories260K (llama2.c files). */
export const DEFAULT_MODEL = 'stories260K';

export type ResolvedModel =
  | { format: 'hf'; dir: string; weights: string }
  | { format: 'gguf'; file: string }
  | { format: 'llama2c'; checkpoint: string; tokenizer: string | null };

/** Directories searched for a model named without a path: KVSIEVE_MODEL_PATH, then ~/.cache/kvsieve/models. */
export function modelSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = (env['KVSIEVE_MODEL_PATH'] ?? '').split(delimiter).filter((p) => p.length > 0);
  return [...fromEnv, join(homedir(), '.cache', 'kvsieve', 'models')];
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

/**
 * Turns what the user named into model files: a directory, a file (.bin checkpoint, .safetensors,
 * config.json), or a bare name looked up in the model search path.
 */
export function resolveModel(nameOrPath: string = DEFAULT_MODEL, env: NodeJS.ProcessEnv = process.env): ResolvedModel {
  const path = resolve(nameOrPath);
  if (existsSync(path)) {
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
      return name.endsWith('.safetensors') || name.endsWith('.index.json') ? { ...r, weights: path } as ResolvedModel : r;
    }
    throw new KvsieveError(`${path}: not a model file (expected a directory, .gguf, .bin, .safetensors or config.json)`);
  }
  const looksLikePath = nameOrPath.includes('/') && !/^[\w.-]+\/[\w.-]+$/.test(nameOrPath);
  const searched = modelSearchPath(env);
  if (!looksLikePath) {
    for (const root of searched) {
      const candidate = join(root, nameOrPath);
      if (existsSync(candidate)) return resolveModel(candidate, env);
    }
    // ORG/NAME: a Hugging Face repo in the HF cache (kvsieve pull, or Python's huggingface_hub), refs/main.
    const snapshot = nameOrPath.includes('/') ? resolveCachedRepo(nameOrPath, { env }) : null;
    if (snapshot) return resolveDir(snapshot);
  }
  const hint =
    nameOrPath === DEFAULT_MODEL
      ? ` — download karpathy/tinyllamas stories260K.bin and tok512.bin into <dir>/${DEFAULT_MODEL}/ and set KVSIEVE_MODEL_PATH=<dir>`
      : '';
  const hubHint =
    !looksLikePath && nameOrPath.includes('/')
      ? ` — not in the Hugging Face cache ${hubCacheDir(env)} either: run kvsieve pull ${nameOrPath}`
      : '';
  throw new KvsieveError(`model "${nameOrPath}" not found (searched ${searched.join(', ')})${hint}${hubHint}`);
}
