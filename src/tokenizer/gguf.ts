/**
 * Tokenizers stored in GGUF metadata (`tokenizer.ggml.*`), loaded through the Hugging Face tokenizer path:
 * the vocabulary is turned into the equivalent tokenizer.json / tokenizer_config.json and handed to
 * `loadHfTokenizer` (src/tokenizer/hf.ts), so encoding, decoding, streaming and chat templates behave exactly
 * like a Hugging Face checkpoint's.
 *
 * - `llama` (sentencepiece BPE with scores, byte fallback): a BPE model whose merges are derived from the
 *   scores the way Hugging Face converts sentencepiece models: every piece that splits into two vocabulary
 *   pieces gives one merge per split (splits of one piece ordered by the ids of their halves), and all merges
 *   are stably sorted by the merged piece's score, best first. "▁" is prepended (`add_space_prefix`, default
 *   true) and spaces become "▁"; the decoder undoes both and applies byte fallback.
 * - `gpt2` (byte-level BPE with `merges`): the pre-tokenizer regex is chosen by `tokenizer.ggml.pre` as llama.cpp
 *   does (qwen2 / deepseek-r1-qwen, llama-bpe / llama3, default / gpt2).
 * Control and unknown tokens become special added tokens, user-defined ones plain added tokens.
 *
 * Also here: the vocabularies kvsieve writes into GGUF files (a llama2.c tokenizer as a `llama` vocabulary, and a
 * synthetic byte-level vocabulary of any size for random-weight benchmark models).
 */
import { readFileSync } from 'node:fs';
import { KvsieveError } from '../errors.js';
import type { GgufValue } from '../formats/gguf-format.js';
import type { GgufTokenizerSpec } from '../formats/gguf-write.js';
import type { ModelConfig } from '../model/config.js';
import { hfTokenizerFromObjects } from './hf.js';
import type { Tokenizer } from './types.js';

/** llama.cpp token types (tokenizer.ggml.token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

const SPIECE = '\u2581';

type Json = Record<string, unknown>;

/** Pre-tokenizer regexes of byte-level BPE vocabularies, as the models' tokenizer.json files have them. */
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function splitThenBytes(regex: string): Json {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  };
}

const PRE_TOKENIZERS: Record<string, { pre: Json; ignoreMerges: boolean }> = {
  default: { pre: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, ignoreMerges: false },
  'gpt-2': { pre: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, ignoreMerges: false },
  qwen2: { pre: splitThenBytes(QWEN2_REGEX), ignoreMerges: false },
  'deepseek-r1-qwen': { pre: splitThenBytes(QWEN2_REGEX), ignoreMerges: false },
  'llama-bpe': { pre: splitThenBytes(LLAMA3_REGEX), ignoreMerges: true },
  llama3: { pre: splitThenBytes(LLAMA3_REGEX), ignoreMerges: true },
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

/** The tokenizer metadata of a GGUF file, checked. */
interface GgufVocab {
  model: string;
  tokens: string[];
  types: Int32Array;
  scores: Float32Array | null;
  merges: string[] | null;
  pre: string;
  bos: number | null;
  eos: number | null;
  unk: number | null;
  pad: number | null;
  addBos: boolean | null;
  addSpacePrefix: boolean;
  chatTemplate: string | null;
}

function readVocab(file: string, md: Map<string, GgufValue>): GgufVocab | null {
  const get = (k: string) => md.get(`tokenizer.ggml.${k}`);
  const model = get('model');
  if (model === undefined) return null;
  if (typeof model.value !== 'string') throw new KvsieveError(`${file}: tokenizer.ggml.model must be a string`);
  if (model.value === 'none' || model.value === 'no_vocab') return null;
  if (model.value !== 'llama' && model.value !== 'gpt2') {
    throw new KvsieveError(`${file}: tokenizer.ggml.model ${JSON.stringify(model.value)} is not supported (supported: llama, gpt2)`);
  }
  const tokens = get('tokens');
  if (!tokens || !Array.isArray(tokens.value) || tokens.elementType !== 'STRING') {
    throw new KvsieveError(`${file}: tokenizer.ggml.tokens must be an array of strings`);
  }
  const n = tokens.value.length;
  const numArray = (k: string, required: boolean): ArrayLike<number> | null => {
    const e = get(k);
    if (e === undefined) {
      if (required) throw new KvsieveError(`${file}: missing metadata key "tokenizer.ggml.${k}"`);
      return null;
    }
    const v = e.value as ArrayLike<unknown>;
    if (e.type !== 'ARRAY' || !ArrayBuffer.isView(v) || v instanceof BigInt64Array || v instanceof BigUint64Array) {
      throw new KvsieveError(`${file}: tokenizer.ggml.${k} must be a numeric array`);
    }
    if (v.length !== n) throw new KvsieveError(`${file}: tokenizer.ggml.${k} has ${v.length} entries for ${n} tokens`);
    return v as ArrayLike<number>;
  };
  const id = (k: string): number | null => {
    const e = get(k);
    if (e === undefined) return null;
    const v = e.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new KvsieveError(`${file}: tokenizer.ggml.${k} must be a token id`);
    return v < n ? v : null; // llama.cpp also ignores ids outside the vocabulary
  };
  const bool = (k: string): boolean | null => {
    const e = get(k);
    if (e === undefined) return null;
    if (typeof e.value !== 'boolean') throw new KvsieveError(`${file}: tokenizer.ggml.${k} must be a bool`);
    return e.value;
  };
  const typesRaw = numArray('token_type', false);
  const types = typesRaw ? Int32Array.from(typesRaw) : new Int32Array(n).fill(TokenType.NORMAL);
  let merges: string[] | null = null;
  if (model.value === 'gpt2') {
    const m = get('merges');
    if (!m || !Array.isArray(m.value) || m.elementType !== 'STRING') {
      throw new KvsieveError(`${file}: tokenizer.ggml.merges must be an array of strings for a gpt2 tokenizer`);
    }
    merges = m.value as string[];
  }
  const pre = md.get('tokenizer.ggml.pre')?.value;
  const template = md.get('tokenizer.chat_template')?.value;
  const scores = numArray('scores', model.value === 'llama');
  return {
    model: model.value,
    tokens: tokens.value as string[],
    types,
    scores: scores ? Float32Array.from(scores) : null,
    merges,
    pre: typeof pre === 'string' ? pre : 'default',
    bos: id('bos_token_id'),
    eos: id('eos_token_id'),
    unk: id('unknown_token_id'),
    pad: id('padding_token_id'),
    addBos: bool('add_bos_token'),
    addSpacePrefix: bool('add_space_prefix') ?? true,
    chatTemplate: typeof template === 'string' ? template : null,
  };
}

/** HF merges of a sentencepiece BPE vocabulary (see the file comment). */
export function sentencepieceMerges(tokens: readonly string[], scores: ArrayLike<number>): [string, string][] {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!idOf.has(t)) idOf.set(t, i);
  });
  const all: { l: string; r: string; score: number; order: number }[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const piece = tokens[i]!;
    if (idOf.get(piece) !== i) continue;
    const local: { l: string; r: string; li: number; ri: number }[] = [];
    for (let k = 1; k < piece.length; k++) {
      const l = piece.slice(0, k);
      const r = piece.slice(k);
      const li = idOf.get(l);
      const ri = idOf.get(r);
      if (li !== undefined && ri !== undefined) local.push({ l, r, li, ri });
    }
    local.sort((a, b) => a.li - b.li || a.ri - b.ri);
    for (const m of local) all.push({ l: m.l, r: m.r, score: scores[i]!, order: all.length });
  }
  all.sort((a, b) => b.score - a.score || a.order - b.order);
  return all.map((m) => [m.l, m.r]);
}

function addedTokens(v: GgufVocab): Json[] {
  const out: Json[] = [];
  v.types.forEach((t, id) => {
    const special = t === TokenType.CONTROL || t === TokenType.UNKNOWN;
    if (!special && t !== TokenType.USER_DEFINED) return;
    out.push({ id, content: v.tokens[id]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  });
  return out;
}

function vocabObject(tokens: readonly string[]): Json {
  const vocab: Json = {};
  tokens.forEach((t, i) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = i;
  });
  return vocab;
}

/**
 * The tokenizer.json and tokenizer_config.json objects equivalent to a GGUF file's tokenizer metadata,
 * or null when the file has no vocabulary.
 */
export function ggufTokenizerJson(file: string, md: Map<string, GgufValue>): { tokenizer: Json; config: Json } | null {
  const v = readVocab(file, md);
  if (v === null) return null;
  const text = (id: number | null) => (id === null ? null : v.tokens[id]!);
  let tokenizer: Json;
  if (v.model === 'llama') {
    const unk = v.unk ?? (v.types.indexOf(TokenType.UNKNOWN) >= 0 ? v.types.indexOf(TokenType.UNKNOWN) : null);
    const normalizers: Json[] = [];
    if (v.addSpacePrefix) normalizers.push({ type: 'Prepend', prepend: SPIECE });
    normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: SPIECE });
    const decoders: Json[] = [{ type: 'Replace', pattern: { String: SPIECE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }];
    if (v.addSpacePrefix) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
    tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: addedTokens(v),
      normalizer: { type: 'Sequence', normalizers },
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Sequence', decoders },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: text(unk),
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: v.types.includes(TokenType.BYTE),
        ignore_merges: false,
        vocab: vocabObject(v.tokens),
        merges: sentencepieceMerges(v.tokens, v.scores!),
      },
    };
  } else {
    const pre = PRE_TOKENIZERS[v.pre];
    if (!pre) {
      throw new KvsieveError(
        `${file}: tokenizer.ggml.pre ${JSON.stringify(v.pre)} is not supported (supported: ${Object.keys(PRE_TOKENIZERS).join(', ')})`,
      );
    }
    const merges = v.merges!.map((m, i): [string, string] => {
      const sp = m.indexOf(' ', 1);
      if (sp < 0) throw new KvsieveError(`${file}: tokenizer.ggml.merges[${i}] ${JSON.stringify(m)} is not "left right"`);
      return [m.slice(0, sp), m.slice(sp + 1)];
    });
    tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: addedTokens(v),
      normalizer: null,
      pre_tokenizer: pre.pre,
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre.ignoreMerges,
        vocab: vocabObject(v.tokens),
        merges,
      },
    };
  }
  const config: Json = {
    bos_token: text(v.bos),
    eos_token: text(v.eos),
    unk_token: text(v.unk),
    pad_token: text(v.pad),
    add_bos_token: v.addBos ?? v.model === 'llama',
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
  };
  if (v.chatTemplate !== null) config['chat_template'] = v.chatTemplate;
  return { tokenizer, config };
}

/**
 * The Tokenizer of a GGUF file's metadata (null when it has none). Throws a KvsieveError naming the file
 * for malformed or unsupported vocabularies.
 */
export async function loadGgufTokenizer(file: string, md: Map<string, GgufValue>): Promise<Tokenizer | null> {
  const json = ggufTokenizerJson(file, md);
  if (json === null) return null;
  const template = typeof json.config['chat_template'] === 'string' ? (json.config['chat_template'] as string) : null;
  return hfTokenizerFromObjects(json.tokenizer, json.config, template, `${file} (GGUF tokenizer)`);
}

// ------------------------------------------------------------------------------------------------
// Vocabularies for writing

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
