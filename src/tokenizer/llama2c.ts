/**
 * llama2.c's tokenizer (`tokenizer.bin` / `tok512.bin`): int32 max_token_length, then for each of the
 * model's vocab_size tokens a float32 score, an int32 byte length and the piece's bytes (little endian).
 *
 * encode() gives exactly the ids of run.c's `encode(text, bos, eos=0)`; decode() gives the text run.c prints
 * through `decode(prev, token)` + `safe_printf`, with one deliberate difference: run.c (C locale) treats every
 * single byte >= 0x80 as unprintable and drops it, which loses any character the model spells with byte
 * tokens; here such bytes are kept and the printed bytes are read as UTF-8. ASCII control bytes other than
 * whitespace are still skipped, as in run.c.
 */
import { readFileSync } from 'node:fs';
import { KvsieveError } from '../core/errors.js';
import type { StreamDecoder, Tokenizer } from './types.js';

const UNK_ID = 0;
const BOS_ID = 1;
const EOS_ID = 2;
const SPECIAL_NAMES: Record<number, string> = { [UNK_ID]: '<unk>', [BOS_ID]: '<s>', [EOS_ID]: '</s>' };
/** run.c starts its best-score search at -1e10 and only takes strictly greater scores. */
const MIN_SCORE = -1e10;

/** Reads a llama2.c tokenizer file holding at least `vocabSize` tokens. */
export function loadLlama2cTokenizer(file: string, vocabSize: number): Tokenizer {
  let data: Uint8Array;
  try {
    data = readFileSync(file);
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read llama2.c tokenizer (${(e as Error).message})`, { cause: e });
  }
  return parseLlama2cTokenizer(data, vocabSize, file);
}

/**
 * Bytes as ISO-8859-1 text, one character per byte (as Node's 'latin1'; a browser's TextDecoder
 * would read 'latin1' as windows-1252, which differs in 0x80-0x9f).
 */
function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return s;
}

/** Parses the bytes of a llama2.c tokenizer file; `name` is used in error messages. */
export function parseLlama2cTokenizer(data: Uint8Array, vocabSize: number, name: string): Tokenizer {
  if (!Number.isInteger(vocabSize) || vocabSize < 3) {
    throw new KvsieveError(`${name}: vocab_size ${vocabSize} is too small for a llama2.c tokenizer (needs >= 3)`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength < 4) throw new KvsieveError(`${name}: too short for a llama2.c tokenizer (no max_token_length)`);
  let off = 4; // max_token_length is not needed: pieces are stored with their lengths
  const pieces: Uint8Array[] = new Array(vocabSize);
  const keys: string[] = new Array(vocabSize);
  const scores = new Float64Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    if (off + 8 > data.byteLength) {
      throw new KvsieveError(`${name}: truncated llama2.c tokenizer at token ${i} of ${vocabSize}`);
    }
    scores[i] = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    if (len < 0 || off + len > data.byteLength) {
      throw new KvsieveError(`${name}: token ${i} has bad length ${len} (file truncated or not a llama2.c tokenizer)`);
    }
    pieces[i] = data.slice(off, off + len);
    keys[i] = latin1(data.subarray(off, off + len));
    off += len;
  }
  return new Llama2cTokenizer(pieces, keys, scores);
}

function isPrintOrSpace(b: number): boolean {
  // C-locale isprint (0x20..0x7e) or isspace (\t \n \v \f \r); bytes >= 0x80 are kept (see the file comment).
  return (b >= 0x20 && b !== 0x7f) || (b >= 0x09 && b <= 0x0d);
}

/** Max-heap entry for the merge loop: best score first, then leftmost position (run.c's strict > scan). */
interface MergeCandidate {
  score: number;
  left: number;
  right: number;
  leftTok: number;
  rightTok: number;
  merged: number;
}

function better(a: MergeCandidate, b: MergeCandidate): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

class CandidateHeap {
  private items: MergeCandidate[] = [];
  get size(): number {
    return this.items.length;
  }
  push(c: MergeCandidate): void {
    const h = this.items;
    h.push(c);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): MergeCandidate {
    const h = this.items;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && better(h[l]!, h[m]!)) m = l;
        if (r < h.length && better(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

class Llama2cTokenizer implements Tokenizer {
  readonly kind = 'llama2c' as const;
  readonly vocabSize: number;
  readonly bosId = BOS_ID;
  readonly eosId = EOS_ID;
  /** piece (bytes as a latin1 string) -> id; the lowest id wins for duplicate pieces */
  private readonly lookup = new Map<string, number>();
  /** for `<0xXX>` pieces, the byte; -1 otherwise */
  private readonly byteValue: Int16Array;
  private readonly textDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(
    private readonly pieces: Uint8Array[],
    private readonly keys: string[],
    private readonly scores: Float64Array,
  ) {
    this.vocabSize = pieces.length;
    this.byteValue = new Int16Array(pieces.length).fill(-1);
    for (let i = 0; i < keys.length; i++) {
      if (!this.lookup.has(keys[i]!)) this.lookup.set(keys[i]!, i);
      this.byteValue[i] = parseBytePiece(keys[i]!);
    }
  }

  isSpecial(id: number): boolean {
    return id === UNK_ID || id === BOS_ID || id === EOS_ID;
  }

  tokenString(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined;
    return SPECIAL_NAMES[id] ?? this.textDecoder.decode(this.pieces[id]!);
  }

  encode(text: string, options?: { addBos?: boolean }): number[] {
    const addBos = options?.addBos ?? true;
    const bytes = new TextEncoder().encode(text);
    const toks: number[] = [];
    if (addBos) toks.push(BOS_ID);
    if (bytes.length > 0) {
      // add_dummy_prefix: run.c looks up " " (a vocabulary without it would be unusable there)
      toks.push(this.lookup.get(' ') ?? 0x20 + 3);
    }
    // UTF-8 codepoints (a start byte and up to 3 continuation bytes, as run.c groups them)
    for (let i = 0; i < bytes.length; ) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j]! & 0xc0) === 0x80 && j - i < 4) j++;
      const id = this.lookup.get(latin1(bytes.subarray(i, j)));
      if (id !== undefined) toks.push(id);
      else for (let k = i; k < j; k++) toks.push(bytes[k]! + 3); // byte fallback: <0x00> is id 3
      i = j;
    }
    return this.merge(toks);
  }

  /**
   * run.c repeatedly merges the adjacent pair whose concatenated piece is in the vocabulary with the best
   * score, taking the leftmost on ties. Same result via a heap over a linked list (stale entries skipped).
   */
  private merge(toks: number[]): number[] {
    const n = toks.length;
    if (n < 2) return toks;
    const tok = Int32Array.from(toks);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new CandidateHeap();
    const consider = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const merged = this.lookup.get(this.keys[tok[left]!]! + this.keys[tok[right]!]!);
      if (merged === undefined) return;
      const score = this.scores[merged]!;
      if (!(score > MIN_SCORE)) return;
      heap.push({ score, left, right, leftTok: tok[left]!, rightTok: tok[right]!, merged });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const c = heap.pop();
      if (!alive[c.left] || next[c.left] !== c.right || tok[c.left] !== c.leftTok || tok[c.right] !== c.rightTok) {
        continue;
      }
      tok[c.left] = c.merged;
      alive[c.right] = 0;
      const after = next[c.right]!;
      next[c.left] = after;
      if (after >= 0) prev[after] = c.left;
      consider(prev[c.left]!, c.left);
      consider(c.left, after);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  /** The bytes run.c prints for `id` after `prev` (undefined: no previous token), or null for nothing. */
  private printed(prev: number | undefined, id: number, skipSpecial: boolean): Uint8Array | null {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new KvsieveError(`token id ${id} is outside the llama2.c vocabulary (size ${this.vocabSize})`);
    }
    if (this.isSpecial(id)) return skipSpecial ? null : Uint8Array.from(SPECIAL_NAMES[id]!, (c) => c.charCodeAt(0));
    let piece = this.pieces[id]!;
    let byte = this.byteValue[id]!;
    if (prev === BOS_ID && piece[0] === 0x20) {
      // after BOS, sentencepiece's decoder drops the leading space of the piece
      piece = piece.subarray(1);
      byte = parseBytePiece(latin1(piece));
    }
    if (byte >= 0) piece = Uint8Array.of(byte);
    if (piece.length === 0) return null;
    if (piece.length === 1 && !isPrintOrSpace(piece[0]!)) return null; // safe_printf
    return piece;
  }

  decode(ids: number[], options?: { skipSpecial?: boolean }): string {
    const skipSpecial = options?.skipSpecial ?? true;
    const parts: Uint8Array[] = [];
    let prev: number | undefined;
    for (const id of ids) {
      const p = this.printed(prev, id, skipSpecial);
      if (p) parts.push(p);
      prev = id;
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return this.textDecoder.decode(all);
  }

  streamDecoder(previousId?: number, options?: { skipSpecial?: boolean }): StreamDecoder {
    const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
    const skipSpecial = options?.skipSpecial ?? true;
    let prev = previousId;
    return {
      push: (id: number): string => {
        const p = this.printed(prev, id, skipSpecial);
        prev = id;
        return p ? utf8.decode(p, { stream: true }) : '';
      },
      flush: (): string => utf8.decode(),
    };
  }
}

/** The byte of a `<0xXX>` piece, or -1. */
function parseBytePiece(key: string): number {
  if (key.length !== 6 || !key.startsWith('<0x') || key[5] !== '>') return -1;
  const hex = key.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : -1;
}
