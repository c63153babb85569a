/** A GGUF file as a model to load: its weights (src/formats/gguf.ts) and the tokenizer in its metadata. */
import { openGgufWeights, type GgufWeights } from '../formats/gguf.js';
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
  const w = openGgufWeights(file, options);
  try {
    const tokenizer = options.tokenizer === false ? null : await loadGgufTokenizer(file, w.header.metadata, w.config.vocabSize);
    return { ...w, tokenizer };
  } catch (e) {
    w.tensors.close();
    throw e;
  }
}
