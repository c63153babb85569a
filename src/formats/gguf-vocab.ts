/**
 * GGUF vocabularies (`tokenizer.ggml.*`) as kvsieve writes them: the spec types, their metadata entries, a
 * llama2.c tokenizer as a `llama` vocabulary, and a synthetic byte-level vocabulary of any size for
 * random-weight benchmark models. Reading them back into a tokenizer is src/tokenizer/gguf.ts.
 */
import { readFileSync } from 'node:fs';
import { KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import type { GgufValue } from './gguf-format.js';

const SPIECE = '\u2581';

/** llama.cpp token types (tokenizer.ggml.token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;


/** A vocabulary for `tokenizer.ggml.*`: sentencepiece-style (`llama`) or byte-level BPE (`gpt2`). */
export type GgufTokenizerSpec =
  | {
      model: 'llama';
      tokens: readonly string[];
      scores: ArrayLike<number>;
      /** TokenType per token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
      types: ArrayLike<number>;
      addBos?: boolean;
      chatTemplate?: string;
    }
  | {
      model: 'gpt2';
      tokens: readonly string[];
      /** "left right" pairs in rank order. */
      merges: readonly string[];
      types: ArrayLike<number>;
      /** `tokenizer.ggml.pre`: the pre-tokenizer (e.g. qwen2, llama-bpe, default). */
      pre: string;
      addBos?: boolean;
      chatTemplate?: string;
    };


/** GPT-2's byte -> printable character table (bytes that print as themselves keep their code, the rest get 256+). */
export function byteToUnicode(): string[] {
  const out: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCodePoint(printable ? b : next++);
  }
  return out;
}

/** The `tokenizer.ggml.*` metadata entries of a vocabulary (checked against the model's vocab_size). */
export function tokenizerMetadata(spec: GgufTokenizerSpec, c: ModelConfig): [string, GgufValue][] {
  const n = spec.tokens.length;
  if (n !== c.vocabSize) {
    throw new KvsieveError(`GGUF tokenizer: ${n} tokens but the model's vocab_size is ${c.vocabSize} (llama.cpp needs them equal)`);
  }
  if (spec.types.length !== n) throw new KvsieveError(`GGUF tokenizer: ${spec.types.length} token types for ${n} tokens`);
  const out: [string, GgufValue][] = [
    ['tokenizer.ggml.model', { type: 'STRING', value: spec.model }],
    ['tokenizer.ggml.tokens', { type: 'ARRAY', elementType: 'STRING', value: spec.tokens }],
    ['tokenizer.ggml.token_type', { type: 'ARRAY', elementType: 'INT32', value: Int32Array.from(spec.types) }],
  ];
  if (spec.model === 'llama') {
    if (spec.scores.length !== n) throw new KvsieveError(`GGUF tokenizer: ${spec.scores.length} scores for ${n} tokens`);
    out.push(['tokenizer.ggml.scores', { type: 'ARRAY', elementType: 'FLOAT32', value: Float32Array.from(spec.scores) }]);
    const unk = Array.from(spec.types).indexOf(TokenType.UNKNOWN);
    if (unk >= 0) out.push(['tokenizer.ggml.unknown_token_id', { type: 'UINT32', value: unk }]);
  } else {
    out.push(['tokenizer.ggml.pre', { type: 'STRING', value: spec.pre }]);
    out.push(['tokenizer.ggml.merges', { type: 'ARRAY', elementType: 'STRING', value: spec.merges }]);
  }
  out.push(['tokenizer.ggml.add_bos_token', { type: 'BOOL', value: spec.addBos ?? spec.model === 'llama' }]);
  out.push(['tokenizer.ggml.add_eos_token', { type: 'BOOL', value: false }]);
  if (spec.chatTemplate !== undefined) out.push(['tokenizer.chat_template', { type: 'STRING', value: spec.chatTemplate }]);
  return out;
}

/**
 * A llama2.c tokenizer file (tokenizer.bin / tok512.bin: int32 max_token_length, then per token a float32
 * score, an int32 length and the bytes) as a `llama` GGUF vocabulary: ids 0/1/2 become <unk>, <s>, </s>,
 * spaces become "▁", `<0xXX>` pieces are byte tokens.
 */
export function ggufVocabFromLlama2c(file: string, vocabSize: number): Extract<GgufTokenizerSpec, { model: 'llama' }> {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read llama2.c tokenizer (${(e as Error).message})`, { cause: e });
  }
  const tokens: string[] = [];
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  let off = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (off + 8 > data.length) throw new KvsieveError(`${file}: truncated llama2.c tokenizer at token ${i} of ${vocabSize}`);
    scores[i] = data.readFloatLE(off);
    const len = data.readInt32LE(off + 4);
    off += 8;
    if (len < 0 || off + len > data.length) throw new KvsieveError(`${file}: token ${i} has bad length ${len}`);
    const piece = data.toString('utf8', off, off + len);
    off += len;
    if (i < 3) {
      tokens.push(['<unk>', '<s>', '</s>'][i]!);
      types[i] = i === 0 ? TokenType.UNKNOWN : TokenType.CONTROL;
    } else if (/^<0x[0-9A-F]{2}>$/.test(piece)) {
      tokens.push(piece);
      types[i] = TokenType.BYTE;
    } else {
      tokens.push(piece.replaceAll(' ', SPIECE));
      types[i] = TokenType.NORMAL;
    }
  }
  return { model: 'llama', tokens, scores, types, addBos: true };
}

/**
 * A synthetic byte-level BPE vocabulary of exactly `vocabSize` tokens, for models without a tokenizer
 * (random-weight benchmarks, test fixtures): the 256 byte tokens, then ASCII-letter tokens of growing length
 * ("Ġa", "ab", ..., "abc", ...), each with the merge that builds it. The config's BOS / EOS ids at 256 or
 * above become control tokens.
 */
export function syntheticGpt2Vocab(
  vocabSize: number,
  config?: Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'>,
): Extract<GgufTokenizerSpec, { model: 'gpt2' }> {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new KvsieveError(`synthetic vocabulary: bad size ${vocabSize}`);
  const bytes = byteToUnicode();
  const tokens: string[] = [];
  const types: number[] = [];
  const merges: string[] = [];
  const control = new Map<number, string>();
  if (config?.bosTokenId != null && config.bosTokenId >= 256) control.set(config.bosTokenId, '<|bos|>');
  config?.eosTokenIds.forEach((id, i) => {
    if (id >= 256 && !control.has(id)) control.set(id, i === 0 ? '<|eos|>' : `<|eos_${i}|>`);
  });
  for (let b = 0; b < 256 && tokens.length < vocabSize; b++) {
    tokens.push(bytes[b]!);
    types.push(TokenType.NORMAL);
  }
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  // breadth first: level k holds tokens of k letters (the first may be "Ġ", a space), each = a level k-1 token + a letter
  let level: string[] = ['\u0120', ...letters];
  while (tokens.length < vocabSize) {
    const next: string[] = [];
    for (const left of level) {
      for (const c of letters) {
        while (control.has(tokens.length) && tokens.length < vocabSize) {
          tokens.push(control.get(tokens.length)!);
          types.push(TokenType.CONTROL);
        }
        if (tokens.length >= vocabSize) break;
        const t = left + c;
        tokens.push(t);
        types.push(TokenType.NORMAL);
        merges.push(`${left} ${c}`);
        next.push(t);
      }
      if (tokens.length >= vocabSize) break;
    }
    level = next;
  }
  return { model: 'gpt2', tokens, merges, types, pre: 'default', addBos: false };
}
