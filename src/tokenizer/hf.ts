/**
 * Hugging Face tokenizers: `tokenizer.json` through @huggingface/tokenizers, settings and the chat template
 * from `tokenizer_config.json` (or `chat_template.jinja` / `chat_template.json` beside it), templates rendered
 * with @huggingface/jinja.
 *
 * Notes on behaviour:
 * - `clean_up_tokenization_spaces` is never applied (it rewrites " ." to "." and so on, which mangles code and
 *   cannot be streamed consistently); decoded text is exactly what the decoder chain produces.
 * - Only tokens marked special (added tokens with `special: true`, plus `additional_special_tokens`) are skipped
 *   by skipSpecial; reasoning markers such as `<think>` are ordinary added tokens and pass through.
 * - encode() never appends EOS (add_eos_token is ignored): the ids are a prompt for a causal model.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import type { Template } from '@huggingface/jinja';
import { describeValue, jsonErrorReason, oneLine, quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { compileTemplate, renderTemplate } from './template.js';
import type { ChatMessage, ChatTemplateOptions, StreamDecoder, Tokenizer } from './types.js';

type Json = Record<string, unknown>;

/**
 * Largest token id a tokenizer.json may use when no model vocabulary bounds it (the largest real
 * vocabularies have about 2^18 ids): the tokenizer library keeps its vocabulary in an array indexed by
 * id and walks all of it, so one id of 10^9 costs minutes.
 */
export const MAX_TOKEN_ID = (1 << 24) - 1;

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read (${oneLine((e as Error).message, 100)})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KvsieveError(`${file}: invalid JSON (${jsonErrorReason(e)})`, { cause: e });
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Longest text of a special or added token. Real ones are a few dozen characters; the tokenizer library
 * splits every input at them and chat templates repeat them per message, so a megabyte-long one turns
 * every prompt into megabytes.
 */
const MAX_TOKEN_TEXT = 1024;

/** A token setting given as a string or as an AddedToken-like object `{content, ...}`; `where` names it. */
function tokenText(v: unknown, where: string): string | null {
  const text = typeof v === 'string' ? v : isObject(v) && typeof v['content'] === 'string' ? v['content'] : null;
  if (text !== null && text.length > MAX_TOKEN_TEXT) {
    throw new KvsieveError(`${where} is a token of ${text.length} characters (limit ${MAX_TOKEN_TEXT})`);
  }
  return text;
}

/** Picks the chat template: a string, or a list of {name, template} (the one named "default", else the first). */
export function pickTemplate(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter((x): x is Json => isObject(x) && typeof x['template'] === 'string');
    const chosen = named.find((x) => x['name'] === 'default') ?? named[0];
    if (chosen) return chosen['template'] as string;
  }
  throw new KvsieveError(`${where}: chat_template must be a string or a list of {name, template}, got ${describeValue(v)}`);
}

/**
 * Loads `<dir>/tokenizer.json` (+ tokenizer_config.json); null when there is no tokenizer.json. With
 * `modelVocab` (the model's embedding rows), a token id the model has no row for is refused.
 */
export async function loadHfTokenizer(dir: string, modelVocab?: number): Promise<Tokenizer | null> {
  const tokFile = join(dir, 'tokenizer.json');
  if (!existsSync(tokFile)) return null;
  const tokJson = readJson(tokFile);

  const cfgFile = join(dir, 'tokenizer_config.json');
  let config: Json = {};
  if (existsSync(cfgFile)) {
    const c = readJson(cfgFile);
    if (!isObject(c)) throw new KvsieveError(`${cfgFile}: expected a JSON object, got ${describeValue(c)}`);
    config = c;
  }

  // chat template: tokenizer_config.json, else the separate files newer transformers versions write
  let template = pickTemplate(config['chat_template'], cfgFile);
  let templateFile = cfgFile;
  if (template === null && existsSync(join(dir, 'chat_template.jinja'))) {
    templateFile = join(dir, 'chat_template.jinja');
    try {
      template = readFileSync(templateFile, 'utf8');
    } catch (e) {
      throw new KvsieveError(`${templateFile}: cannot read (${oneLine((e as Error).message, 100)})`, { cause: e });
    }
  }
  if (template === null && existsSync(join(dir, 'chat_template.json'))) {
    templateFile = join(dir, 'chat_template.json');
    const c = readJson(templateFile);
    template = pickTemplate(isObject(c) ? c['chat_template'] : undefined, templateFile);
  }
  return hfTokenizerFromObjects(tokJson, config, template, { where: tokFile, configWhere: cfgFile, templateWhere: templateFile, modelVocab });
}

const MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];

/** The pipeline stages of a tokenizer.json around the model, and how large their settings may be. */
const STAGES = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'];
const STAGE_DEPTH = 16;
const STAGE_ITEMS = 4096;
const STAGE_STRING = 4096;
/** Settings that are data, not text: a Precompiled normalizer's character map (base64, often 100s of KB). */
const STAGE_DATA = new Set(['precompiled_charsmap']);

/**
 * Checks the normalizer, pre-tokenizer, post-processor and decoder settings for size: the tokenizer
 * library takes any value where it expects a string (a list of a million numbers becomes a replacement
 * text of two million characters, inserted at every space) and nests stages without limit.
 */
function checkStages(tok: Json, model: Json, file: string): void {
  // the model's own settings (unk_token, end_of_word_suffix, ...) too: all but its vocabulary and merges
  const { vocab: _vocab, merges: _merges, ...modelSettings } = model;
  const stages: [string, unknown][] = [...STAGES.map((s): [string, unknown] => [s, tok[s]]), ['model', modelSettings]];
  for (const [stage, root] of stages) {
    const stack: { v: unknown; depth: number; key: string }[] = [{ v: root, depth: 0, key: stage }];
    while (stack.length > 0) {
      const { v, depth, key } = stack.pop()!;
      if (depth > STAGE_DEPTH) throw new KvsieveError(`${file}: ${stage} is nested more than ${STAGE_DEPTH} deep`);
      if (typeof v === 'string') {
        if (v.length > STAGE_STRING && !STAGE_DATA.has(key)) {
          throw new KvsieveError(`${file}: ${stage} setting ${quoted(key, 40)} is a string of ${v.length} characters (limit ${STAGE_STRING})`);
        }
      } else if (Array.isArray(v)) {
        if (v.length > STAGE_ITEMS) throw new KvsieveError(`${file}: ${stage} setting ${quoted(key, 40)} is a list of ${v.length} items (limit ${STAGE_ITEMS})`);
        for (const x of v) stack.push({ v: x, depth: depth + 1, key });
      } else if (isObject(v)) {
        const entries = Object.entries(v);
        if (entries.length > STAGE_ITEMS) throw new KvsieveError(`${file}: ${stage} setting ${quoted(key, 40)} has ${entries.length} keys (limit ${STAGE_ITEMS})`);
        for (const [k, x] of entries) stack.push({ v: x, depth: depth + 1, key: k });
      }
    }
  }
}

/**
 * Checks the vocabulary of a tokenizer.json (`model.vocab`, `added_tokens`) before the tokenizer library
 * sees it, which takes a vocabulary of the wrong type as empty and any id as an array index. Returns the
 * vocabulary size: the largest id + 1.
 */
function checkVocabulary(tok: Json, model: Json, file: string, modelVocab: number | undefined): number {
  const limit = modelVocab ?? MAX_TOKEN_ID + 1;
  const bound = modelVocab !== undefined ? `the model's vocabulary of ${modelVocab}` : `the limit of ${limit} ids`;
  const type = model['type'];
  if (type !== undefined && (typeof type !== 'string' || !MODEL_TYPES.includes(type))) {
    throw new KvsieveError(`${file}: model.type ${describeValue(type, 40)} is not supported (supported: ${MODEL_TYPES.join(', ')})`);
  }
  const vocab = model['vocab'];
  let size = 0;
  if (type === 'Unigram' || (type === undefined && Array.isArray(vocab))) {
    // Unigram: [piece, score] pairs, the id is the position.
    if (!Array.isArray(vocab) || vocab.length === 0) {
      throw new KvsieveError(`${file}: model.vocab must be a non-empty list of [piece, score] pairs, got ${describeValue(vocab)}`);
    }
    if (vocab.length > limit) throw new KvsieveError(`${file}: model.vocab has ${vocab.length} pieces, more than ${bound}`);
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1])) {
        throw new KvsieveError(`${file}: model.vocab[${i}] must be a [piece, score] pair, got ${describeValue(e)}`);
      }
    });
    const unk = model['unk_id'];
    if (unk !== undefined && unk !== null && !(typeof unk === 'number' && Number.isInteger(unk) && unk >= 0 && unk < vocab.length)) {
      throw new KvsieveError(`${file}: model.unk_id must be an index into model.vocab, got ${describeValue(unk)}`);
    }
    size = vocab.length;
  } else {
    if (!isObject(vocab) || Object.keys(vocab).length === 0) {
      throw new KvsieveError(`${file}: model.vocab must be a non-empty object of token -> id, got ${describeValue(vocab)}`);
    }
    for (const [token, id] of Object.entries(vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new KvsieveError(`${file}: model.vocab token ${quoted(token, 40)} has id ${describeValue(id)}, not a token id`);
      }
      if (id >= limit) throw new KvsieveError(`${file}: model.vocab token ${quoted(token, 40)} has id ${id}, outside ${bound}`);
      if (id >= size) size = id + 1;
    }
    if ((type === 'BPE' || 'merges' in model) && !Array.isArray(model['merges'])) {
      throw new KvsieveError(`${file}: model.merges must be a list, got ${describeValue(model['merges'])}`);
    }
  }
  const added = tok['added_tokens'];
  if (added !== undefined && added !== null && !Array.isArray(added)) {
    throw new KvsieveError(`${file}: added_tokens must be a list, got ${describeValue(added)}`);
  }
  for (const [i, t] of (added ?? []).entries()) {
    if (!isObject(t) || typeof t['content'] !== 'string') {
      throw new KvsieveError(`${file}: added_tokens[${i}] must be an object with a "content" string, got ${describeValue(t)}`);
    }
    tokenText(t, `${file}: added_tokens[${i}]`);
    const id = t['id'];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new KvsieveError(`${file}: added token ${quoted(t['content'], 40)} has id ${describeValue(id)}, not a token id`);
    }
    if (id >= limit) throw new KvsieveError(`${file}: added token ${quoted(t['content'], 40)} has id ${id}, outside ${bound}`);
    if (id >= size) size = id + 1;
  }
  return size;
}

/** Where the parts of a tokenizer come from (for errors), and the model's vocabulary size if known. */
export interface TokenizerSources {
  /** tokenizer.json (or what stands for it). */
  where: string;
  /** tokenizer_config.json; default `where`. */
  configWhere?: string;
  /** The file holding the chat template; default `configWhere`. */
  templateWhere?: string;
  /** The model's embedding rows: token ids must be below it. */
  modelVocab?: number;
}

/**
 * A tokenizer from tokenizer.json and tokenizer_config.json contents already in memory (GGUF
 * vocabularies are converted to these).
 */
export function hfTokenizerFromObjects(tokJson: unknown, config: Json, template: string | null, sources: TokenizerSources): Tokenizer {
  const { where: tokFile, modelVocab } = sources;
  const cfgFile = sources.configWhere ?? tokFile;
  const templateFile = sources.templateWhere ?? cfgFile;
  if (!isObject(tokJson)) throw new KvsieveError(`${tokFile}: expected a JSON object, got ${describeValue(tokJson)}`);
  const model = tokJson['model'];
  if (!isObject(model)) throw new KvsieveError(`${tokFile}: missing "model" object`);
  const vocabSize = checkVocabulary(tokJson, model, tokFile, modelVocab);
  checkStages(tokJson, model, tokFile);
  // The library wants plain-string token settings and every top-level key present.
  const specialStrings: Record<string, string | null> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) specialStrings[key] = tokenText(config[key], `${cfgFile}: ${key}`);
  const additional = Array.isArray(config['additional_special_tokens'])
    ? (config['additional_special_tokens'] as unknown[]).map((t, i) => tokenText(t, `${cfgFile}: additional_special_tokens[${i}]`)).filter((x): x is string => x !== null)
    : [];
  const libConfig: Json = { ...config, ...specialStrings, additional_special_tokens: additional };
  delete libConfig['chat_template'];
  const libTokJson: Json = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...tokJson,
    added_tokens: Array.isArray(tokJson['added_tokens']) ? tokJson['added_tokens'] : [],
  };
  let lib: HfLibTokenizer;
  try {
    lib = new HfLibTokenizer(libTokJson, libConfig);
  } catch (e) {
    throw new KvsieveError(`${tokFile}: unsupported or malformed tokenizer (${libMessage(e)})`, { cause: e });
  }
  return new HfTokenizer(lib, vocabSize, config, specialStrings, additional, template, templateFile, tokFile);
}

class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly applyChatTemplate?: (messages: ChatMessage[], options?: ChatTemplateOptions) => string;
  private readonly special = new Set<number>();
  private readonly defaultAddBos: boolean;

  constructor(
    private readonly lib: HfLibTokenizer,
    vocabSize: number,
    config: Json,
    private readonly specialStrings: Record<string, string | null>,
    additional: string[],
    template: string | null,
    templateFile: string,
    private readonly tokFile: string,
  ) {
    this.vocabSize = vocabSize;
    for (const [id, t] of lib.get_added_tokens_decoder()) if (t.special) this.special.add(id);
    for (const s of additional) {
      const id = lib.token_to_id(s);
      if (id !== undefined) this.special.add(id);
    }
    const idOf = (s: string | null): number | null => (s === null ? null : (lib.token_to_id(s) ?? null));
    // what the post-processor puts around an empty text (e.g. TemplateProcessing prepending <s>)
    let probe: number[];
    try {
      probe = lib.encode('', { add_special_tokens: true }).ids;
    } catch (e) {
      throw new KvsieveError(`${tokFile}: cannot encode with this tokenizer (${libMessage(e)})`, { cause: e });
    }
    const postBos = probe.length > 0 && this.special.has(probe[0]!) ? probe[0]! : null;
    // bos_token from tokenizer_config.json (null there means none); without the key, what the post-processor prepends
    this.bosId = 'bos_token' in config ? idOf(specialStrings['bos_token'] ?? null) : postBos;
    this.eosId = idOf(specialStrings['eos_token'] ?? null);
    if (typeof config['add_bos_token'] === 'boolean') this.defaultAddBos = config['add_bos_token'] && this.bosId !== null;
    else this.defaultAddBos = this.bosId !== null && postBos === this.bosId;
    if (template !== null) {
      const source = template;
      let compiled: Template | null = null;
      this.applyChatTemplate = (messages, options) => {
        try {
          compiled ??= compileTemplate(source);
        } catch (e) {
          throw new KvsieveError(`${templateFile}: chat_template does not parse (${libMessage(e)})`, { cause: e });
        }
        const vars: Json = {
          messages,
          add_generation_prompt: options?.addGenerationPrompt ?? false,
          bos_token: this.specialStrings['bos_token'] ?? '',
          eos_token: this.specialStrings['eos_token'] ?? '',
          unk_token: this.specialStrings['unk_token'] ?? '',
          pad_token: this.specialStrings['pad_token'] ?? '',
        };
        if (options?.enableThinking !== undefined) vars['enable_thinking'] = options.enableThinking;
        if (options?.reasoningEffort !== undefined) vars['reasoning_effort'] = options.reasoningEffort;
        try {
          return renderTemplate(compiled, vars);
        } catch (e) {
          throw new KvsieveError(`${templateFile}: chat_template failed: ${libMessage(e)}`, { cause: e });
        }
      };
    }
  }

  isSpecial(id: number): boolean {
    return this.special.has(id);
  }

  tokenString(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined;
    return this.lib.id_to_token(id);
  }

  encode(text: string, options?: { addBos?: boolean }): number[] {
    let ids: number[];
    try {
      ids = this.lib.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw new KvsieveError(`${this.tokFile}: cannot encode with this tokenizer (${libMessage(e)})`, { cause: e });
    }
    if ((options?.addBos ?? this.defaultAddBos) && this.bosId !== null) ids.unshift(this.bosId);
    return ids;
  }

  /** The decoder chain over ids, nothing skipped, no clean-up. */
  private raw(ids: number[]): string {
    if (ids.length === 0) return '';
    try {
      return this.lib.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new KvsieveError(`${this.tokFile}: cannot decode with this tokenizer (${libMessage(e)})`, { cause: e });
    }
  }

  decode(ids: number[], options?: { skipSpecial?: boolean }): string {
    const skip = options?.skipSpecial ?? true;
    return this.raw(skip ? ids.filter((id) => !this.special.has(id)) : ids);
  }

  /**
   * Decodes a short window of ids: `window[0, read)` has been printed already and anchors the context
   * (leading-space stripping, byte fallback); the text after decode(window[0, read)) is new. New text is
   * emitted once it does not end in U+FFFD (an incomplete UTF-8 sequence); then the window restarts at the
   * ids just printed, so each push costs O(window), independent of the length of the stream. Special ids are
   * left out of the window altogether (the decoder never sees them with skip_special_tokens either).
   */
  streamDecoder(previousId?: number, options?: { skipSpecial?: boolean }): StreamDecoder {
    const skipSpecial = options?.skipSpecial ?? true;
    // Kept specials go through the window like any id (raw() decodes them); skipped ones never enter it.
    const enters = (id: number) => !skipSpecial || !this.special.has(id);
    let window: number[] = previousId !== undefined && enters(previousId) ? [previousId] : [];
    let read = window.length;
    const step = (final: boolean): string => {
      if (window.length === read) return '';
      const before = this.raw(window.slice(0, read));
      const after = this.raw(window);
      if (!final && (after.length <= before.length || after.endsWith('\uFFFD'))) return '';
      const out = after.startsWith(before) ? after.slice(before.length) : after.slice(commonPrefix(before, after));
      window = window.slice(read);
      read = window.length;
      return out;
    };
    return {
      push: (id: number): string => {
        if (!enters(id)) return '';
        window.push(id);
        return step(false);
      },
      flush: (): string => step(true),
    };
  }
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** A library's error (tokenizer, template engine) as a short line for a KvsieveError. */
function libMessage(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e), 120);
}
