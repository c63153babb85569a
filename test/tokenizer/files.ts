// Test helpers for tokenizer files: stories260K's tokenizer.json as an object to mutate, and a
// folder holding a given tokenizer.json (with stories260K's tokenizer_config.json unless one is given).
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stories260K, tempDir } from '../helpers.js';

export const storiesTokenizer = () => JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8')) as any;

export async function withTokenizer(tokenizer: unknown, config: Record<string, unknown> | null, fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    if (config) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    else copyFileSync(stories260K('hf', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    await fn(dir);
  } finally {
    cleanup();
  }
}
