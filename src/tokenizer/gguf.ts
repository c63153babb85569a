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
 * The vocabularies kvsieve writes into GGUF files are src/formats/gguf-vocab.ts.
 */
import { quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import type { GgufValue } from '../formats/gguf-format.js';
import { byteToUnicode, TokenType } from '../formats/gguf-vocab.js';
import { hfTokenizerFromObjects } from './hf.js';
import type { Tokenizer } from './types.js';

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
    throw new KvsieveError(`${file}: tokenizer.ggml.model ${quoted(model.value, 40)} is not supported (supported: llama, gpt2)`);
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

/**
 * Pieces longer than this give no merges: splitting a piece looks up every prefix and suffix, a cost of its
 * length squared, and sentencepiece's pieces are 16 characters at most by default (user-defined tokens,
 * which may be longer, are added tokens and need no merges).
 */
const MAX_MERGED_PIECE = 256;

/** HF merges of a sentencepiece BPE vocabulary (see the file comment). */
export function sentencepieceMerges(tokens: readonly string[], scores: ArrayLike<number>): [string, string][] {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!idOf.has(t)) idOf.set(t, i);
  });
  const all: { l: string; r: string; score: number; order: number }[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const piece = tokens[i]!;
    if (piece.length > MAX_MERGED_PIECE || idOf.get(piece) !== i) continue;
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
        `${file}: tokenizer.ggml.pre ${quoted(v.pre, 40)} is not supported (supported: ${Object.keys(PRE_TOKENIZERS).join(', ')})`,
      );
    }
    const merges = v.merges!.map((m, i): [string, string] => {
      const sp = m.indexOf(' ', 1);
      if (sp < 0) throw new KvsieveError(`${file}: tokenizer.ggml.merges[${i}] ${quoted(m, 40)} is not "left right"`);
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
 * for malformed or unsupported vocabularies, and, given the model's vocabulary size (token_embd.weight's
 * rows), for more tokens than the model has rows.
 */
export async function loadGgufTokenizer(file: string, md: Map<string, GgufValue>, modelVocab?: number): Promise<Tokenizer | null> {
  const json = ggufTokenizerJson(file, md);
  if (json === null) return null;
  const tokens = md.get('tokenizer.ggml.tokens')?.value as unknown[];
  if (modelVocab !== undefined && tokens.length > modelVocab) {
    throw new KvsieveError(`${file}: tokenizer.ggml.tokens has ${tokens.length} tokens but token_embd.weight only ${modelVocab} rows`);
  }
  const template = typeof json.config['chat_template'] === 'string' ? (json.config['chat_template'] as string) : null;
  return hfTokenizerFromObjects(json.tokenizer, json.config, template, { where: `${file} (GGUF tokenizer)`, modelVocab });
}

