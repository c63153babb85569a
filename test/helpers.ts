import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file lives in <root>/test). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** `../shared` beside the repository (override with KVSIEVE_SHARED). */
export const sharedDir = process.env['KVSIEVE_SHARED'] ?? resolve(repoRoot, '..', 'shared');

export function shared(...parts: string[]): string {
  const p = join(sharedDir, ...parts);
  if (!existsSync(p)) throw new Error(`test data missing: ${p} (is ../shared beside the repository?)`);
  return p;
}

export const stories260K = (...parts: string[]) => shared('models', 'stories260K', ...parts);
export const tinyModel = (name: string, ...parts: string[]) => shared('fixtures', 'tiny-models', name, ...parts);
export const TINY_MODELS = ['llama3-F32', 'qwen2-F32', 'qwen3-BF16', 'mistral-F16'] as const;

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'kvsieve-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the CLI from source (tsx) with the shared models on the search path. */
export function kvsieve(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, KVSIEVE_MODEL_PATH: join(sharedDir, 'models'), ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
