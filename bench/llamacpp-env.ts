/**
 * node-llama-cpp for the llama.cpp speed anchor and the llama.cpp parity test (test/formats/gguf-llamacpp.test.ts),
 * installed on demand (it is not a project dependency). `ensureNodeLlamaCpp()` installs a pinned version into
 * `.cache/bench/llamacpp/` from the npm registry with only the CPU prebuilt binary package of this platform
 * (optional dependencies — the CUDA, Vulkan and other platforms' binaries, ~700 MB — and install scripts are
 * skipped, so nothing is downloaded or built outside npm), then imports it from there by absolute path. About
 * 85 MB on disk, ~10 s to install.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';

/** <repo>/.cache/bench/llamacpp (gitignored). Override with KVSIEVE_LLAMACPP_DIR. */
export const LLAMACPP_DIR =
  process.env['KVSIEVE_LLAMACPP_DIR'] ?? resolve(dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'bench', 'llamacpp');

/** The CPU prebuilt binary package of this platform. */
export function prebuiltPackage(platform = process.platform, arch = process.arch): string {
  const names: Record<string, string> = {
    'linux-x64': 'linux-x64',
    'linux-arm64': 'linux-arm64',
    'darwin-arm64': 'mac-arm64-metal',
    'darwin-x64': 'mac-x64',
    'win32-x64': 'win-x64',
    'win32-arm64': 'win-arm64',
  };
  const n = names[`${platform}-${arch}`];
  if (!n) throw new Error(`node-llama-cpp has no prebuilt binary package for ${platform}-${arch}`);
  return `@node-llama-cpp/${n}`;
}

// ---- the subset of node-llama-cpp's API the benchmark uses (it is not installed at type-check time) ----
export type Token = number;
export interface NlcSequence {
  readonly nextTokenIndex: number;
  clearHistory(): Promise<void>;
  evaluateWithoutGeneratingNewTokens(tokens: Token[]): Promise<void>;
  evaluate(tokens: Token[], options?: { temperature?: number }): AsyncGenerator<Token, void, void | Token | Token[]>;
  dispose(): void;
}
export interface NlcContext {
  readonly contextSize: number;
  readonly batchSize: number;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
export interface NlcModel {
  readonly tokens: { bos: Token | null; eos: Token | null };
  readonly trainContextSize: number;
  tokenize(text: string, specialTokens?: boolean): Token[];
  createContext(options: {
    contextSize?: number;
    batchSize?: number;
    threads?: number | { ideal?: number; min?: number };
    flashAttention?: boolean;
    sequences?: number;
    experimentalKvCacheKeyType?: string;
    experimentalKvCacheValueType?: string;
  }): Promise<NlcContext>;
  dispose(): Promise<void>;
}
export interface NlcLlama {
  readonly gpu: string | false;
  readonly buildType: string;
  readonly cpuMathCores: number;
  loadModel(options: { modelPath: string; gpuLayers?: number; useMmap?: boolean; checkTensors?: boolean }): Promise<NlcModel>;
  dispose(): Promise<void>;
}
export interface NodeLlamaCpp {
  getLlama(options: {
    gpu: false;
    build: 'never';
    usePrebuiltBinaries?: boolean;
    skipDownload?: boolean;
    progressLogs?: boolean;
    logLevel?: string;
    maxThreads?: number;
  }): Promise<NlcLlama>;
  LlamaLogLevel: Record<string, string>;
}

function installedVersion(dir: string, pkg: string): string | null {
  const p = join(dir, 'node_modules', ...pkg.split('/'), 'package.json');
  if (!existsSync(p)) return null;
  try {
    return (JSON.parse(readFileSync(p, 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/** Whether the pinned node-llama-cpp and this platform's CPU binary package are installed in LLAMACPP_DIR. */
export function nodeLlamaCppInstalled(dir = LLAMACPP_DIR): boolean {
  const binary = prebuiltPackage();
  return installedVersion(dir, 'node-llama-cpp') === NODE_LLAMA_CPP_VERSION && installedVersion(dir, binary) === NODE_LLAMA_CPP_VERSION;
}

/** Installs (when missing or another version) and imports node-llama-cpp. */
export async function ensureNodeLlamaCpp(log: (msg: string) => void = (m) => console.error(m)): Promise<NodeLlamaCpp> {
  const dir = LLAMACPP_DIR;
  const binary = prebuiltPackage();
  const ready = () => nodeLlamaCppInstalled(dir);
  if (!ready()) {
    mkdirSync(dir, { recursive: true });
    const manifest = join(dir, 'package.json');
    if (!existsSync(manifest)) writeFileSync(manifest, JSON.stringify({ name: 'kvsieve-bench-llamacpp', private: true }, null, 2));
    const args = [
      'install',
      '--prefix',
      dir,
      '--omit=optional',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`,
      `${binary}@${NODE_LLAMA_CPP_VERSION}`,
    ];
    log(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (CPU binary ${binary}) into ${dir} ...`);
    const t0 = Date.now();
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = spawnSync(npm, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0 || !ready()) {
      throw new Error(`npm ${args.join(' ')} failed (exit ${r.status ?? r.signal ?? r.error?.message})`);
    }
    log(`installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  const entry = join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  return (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
}

/** A CPU-only llama.cpp instance (prebuilt binary, never builds or downloads). */
export async function cpuLlama(maxThreads?: number): Promise<NlcLlama> {
  const nlc = await ensureNodeLlamaCpp();
  const options: Parameters<NodeLlamaCpp['getLlama']>[0] = {
    gpu: false,
    build: 'never',
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    logLevel: nlc.LlamaLogLevel['error'] ?? 'error',
  };
  if (maxThreads !== undefined) options.maxThreads = maxThreads;
  return nlc.getLlama(options);
}
