/**
 * Tokenizer entry point for the model loader.
 *
 *   loadTokenizerFor(path: string, kind: 'hf' | 'llama2c', vocabSize: number): Promise<Tokenizer>
 *
 * - kind 'hf': `path` is the model directory (or its tokenizer.json); reads tokenizer.json and, when present,
 *   tokenizer_config.json / chat_template.jinja / chat_template.json. `vocabSize` is not used (the tokenizer
 *   is often smaller than a padded embedding; compare `tokenizer.vocabSize` yourself if needed).
 * - kind 'llama2c': `path` is the tokenizer .bin file, or a directory holding `tokenizer.bin` or
 *   `tok<vocabSize>.bin` (llama2.c's naming); `vocabSize` is the model header's vocab_size (how many pieces to read).
 *
 * Throws KvsieveError naming the file when the tokenizer is missing or malformed.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { loadHfTokenizer } from './hf.js';
import { loadLlama2cTokenizer } from './llama2c.js';
import type { Tokenizer } from './types.js';

export type { ChatMessage, ChatTemplateOptions, StreamDecoder, Tokenizer } from './types.js';
export { loadHfTokenizer } from './hf.js';
export { loadLlama2cTokenizer, parseLlama2cTokenizer } from './llama2c.js';

export type TokenizerKind = 'hf' | 'llama2c';

export async function loadTokenizerFor(path: string, kind: TokenizerKind, vocabSize: number): Promise<Tokenizer> {
  if (!existsSync(path)) throw new KvsieveError(`${path}: tokenizer path does not exist`);
  const isDir = statSync(path).isDirectory();
  if (kind === 'hf') {
    const dir = isDir ? path : dirname(path);
    if (!isDir && basename(path) !== 'tokenizer.json') {
      throw new KvsieveError(`${path}: expected a model directory or its tokenizer.json`);
    }
    const tok = await loadHfTokenizer(dir);
    if (tok === null) throw new KvsieveError(`${join(dir, 'tokenizer.json')}: not found`);
    return tok;
  }
  let file = path;
  if (isDir) {
    const candidates = [join(path, 'tokenizer.bin'), join(path, `tok${vocabSize}.bin`)];
    const found = candidates.find((c) => existsSync(c));
    if (!found) throw new KvsieveError(`${path}: no llama2.c tokenizer (looked for tokenizer.bin, tok${vocabSize}.bin)`);
    file = found;
  }
  return loadLlama2cTokenizer(file, vocabSize);
}
