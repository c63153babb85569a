/** A GGUF file as a model to load: its weights (src/formats/gguf.ts) and the tokenizer in its metadata. */
import { openGgufWeights, readGgufWeights, type GgufWeights } from '../formats/gguf.js';
import type { ReadOptions } from '../formats/io.js';
import { loadGgufTokenizer } from '../tokenizer/gguf.js';
import type { Tokenizer } from '../tokenizer/types.js';

export interface GgufModel extends GgufWeights {
  tokenizer: Tokenizer | null;
}

export interface GgufOpenOptions extends ReadOptions {
  /** Build the tokenizer (default true; false gives tokenizer null without looking at the vocabulary). */
  tokenizer?: boolean;
}

/** Opens a GGUF file with its tokenizer (null when the file has no vocabulary). */
export async function openGguf(file: string, options: GgufOpenOptions = {}): Promise<GgufModel> {
  return withTokenizer(openGgufWeights(file, options), file, options);
}

/** A GGUF file's bytes with its tokenizer, as openGguf; `name` in errors. */
export async function readGguf(bytes: Uint8Array, name: string, options: GgufOpenOptions = {}): Promise<GgufModel> {
  return withTokenizer(readGgufWeights(bytes, name, options), name, options);
}

async function withTokenizer(w: GgufWeights, file: string, options: GgufOpenOptions): Promise<GgufModel> {
  try {
    const tokenizer = options.tokenizer === false ? null : await loadGgufTokenizer(file, w.header.metadata, w.config.vocabSize);
    return { ...w, tokenizer };
  } catch (e) {
    w.tensors.close();
    throw e;
  }
}
