import assert from 'node:assert/strict';
import { KvsieveError } from '../src/core/errors.js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGguf, type GgufTensorToWrite, type GgufWriteOptions } from '../src/formats/gguf.js';
import { openSafetensors } from '../src/formats/safetensors.js';
import type { TensorSource } from '../src/formats/tensors.js';
import { withStackedExperts } from '../src/formats/gpt-oss.js';
import { parseHfConfig } from '../src/formats/hf-config.js';
import { type ModelConfig } from '../src/core/model-config.js';

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

/** Deterministic uniform [0, 1) generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One of run.c's greedy generations in stories260K/golden/generations.json. */
export interface StoriesGolden {
  prompt: string;
  steps: number;
  prompt_ids: number[];
  ids: number[];
  stopped_on_bos: boolean;
  text: string;
}

export function storiesGoldens(): StoriesGolden[] {
  return (JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')) as { generations: StoriesGolden[] }).generations;
}

/** stories260K's Hugging Face config (with its generation_config.json). */
export function storiesHfConfig(): ModelConfig {
  const gen = JSON.parse(readFileSync(stories260K('hf', 'generation_config.json'), 'utf8'));
  return parseHfConfig(JSON.parse(readFileSync(stories260K('hf', 'config.json'), 'utf8')), 'config.json', gen);
}

/** A checkpoint's tensors for writeGguf, each read (as f32) only when the writer gets to it. */
export function lazyTensors(src: TensorSource): GgufTensorToWrite[] {
  return src.list().map((i) => ({ name: i.name, shape: i.shape, data: () => src.readF32(i.name) }));
}

/**
 * Writes the tensors of a safetensors file as the GGUF `file` (F32 unless said otherwise; GPT-OSS's
 * experts restacked as llama.cpp stores them); returns `file`.
 */
export function ggufFromSafetensors(file: string, safetensors: string, options: Omit<GgufWriteOptions, 'tensors' | 'weightType'> & { weightType?: GgufWriteOptions['weightType'] }): string {
  const src = openSafetensors(safetensors);
  try {
    writeGguf(file, { weightType: 'F32', ...options, tensors: lazyTensors(withStackedExperts(src)) });
  } finally {
    src.close();
  }
  return file;
}

/** A chat template in the shape of most: role tags, the assistant's turn opened at the end. */
export const TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** A DeepSeek-R1-style template: the assistant's turn opens a reasoning block for the model. */
export const THINK_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}";

/**
 * stories260K's Hugging Face files in `dir` with a chat template. `closesThinking`: the token "."
 * decodes as `</think>` (an added token over its id), so the model ends its reasoning block at its
 * first full stop: a reasoning model from a story model, with the same weights.
 */
export function writeChatModel(dir: string, template = TEMPLATE, closesThinking = false): string {
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) copyFileSync(stories260K('hf', f), join(dir, f));
  const tok = JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8'));
  if (closesThinking) {
    tok.added_tokens.push({ id: tok.model.vocab['.'], content: '</think>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false });
  }
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  const cfg = JSON.parse(readFileSync(stories260K('hf', 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: template }));
  return dir;
}

/**
 * An assert.throws / rejects validator: a KvsieveError whose message is one line under 300 characters
 * and matches `pattern` (the project's rule for bad input).
 */
export function oneLineError(pattern: RegExp): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `expected a KvsieveError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n') && e.message.length < 300, `one short line: ${e.message.length} characters: ${e.message.slice(0, 80)}`);
    assert.match(e.message, pattern);
    return true;
  };
}

/**
 * streaming-llm by its definition: the cache grows to budget + buffer positions per (layer, KV head),
 * then keeps the first `sinks` positions and the newest budget - sinks. Per step (the prompt's
 * first), the positions held, ascending.
 */
export function streamingLlmHeld(promptLength: number, steps: number, budget: number, buffer: number, sinks: number): number[][] {
  const out: number[][] = [];
  let held: number[] = [];
  let next = 0;
  const feed = (n: number) => {
    for (let i = 0; i < n; i++) {
      held.push(next++);
      if (held.length >= budget + buffer) held = [...held.slice(0, sinks), ...held.slice(held.length - (budget - sinks))];
    }
  };
  feed(promptLength);
  out.push([...held]);
  for (let s = 1; s < steps; s++) {
    feed(1);
    out.push([...held]);
  }
  return out;
}
