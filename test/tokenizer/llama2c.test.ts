import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { loadLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import type { Tokenizer } from '../../src/tokenizer/types.js';
import { stories260K, tempDir } from '../helpers.js';

interface EncoderCase {
  text: string;
  ids_with_bos: number[];
}
interface Generation {
  prompt: string;
  prompt_ids: number[];
  ids: number[];
  generated_ids: number[];
  text: string;
  stopped_on_bos: boolean;
}

const encoderCases = (JSON.parse(readFileSync(stories260K('golden', 'encoder_ids.json'), 'utf8')) as { cases: EncoderCase[] })
  .cases;
const generations = (JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')) as { generations: Generation[] })
  .generations;
const tok = loadLlama2cTokenizer(stories260K('tok512.bin'), 512);

function streamAll(t: Tokenizer, ids: number[], previousId?: number): { text: string; chunks: string[] } {
  const d = t.streamDecoder(previousId);
  const chunks = ids.map((id) => d.push(id));
  chunks.push(d.flush());
  return { text: chunks.join(''), chunks };
}

test('llama2c: basic properties of tok512.bin', () => {
  assert.equal(tok.kind, 'llama2c');
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.tokenString(0), '<unk>');
  assert.equal(tok.tokenString(1), '<s>');
  assert.equal(tok.tokenString(2), '</s>');
  assert.equal(tok.tokenString(13), '<0x0A>');
  assert.equal(tok.tokenString(259), ' t'); // first merged piece in the file
  assert.equal(tok.tokenString(507), '\u2122'); // a multi-byte piece (TM sign)
  assert.equal(tok.tokenString(512), undefined);
  assert.equal(tok.tokenString(-1), undefined);
  assert.ok(tok.isSpecial(1) && tok.isSpecial(2) && tok.isSpecial(0) && !tok.isSpecial(3));
});

test('llama2c: encode matches run.c for all 25 golden strings', () => {
  assert.equal(encoderCases.length, 25);
  for (const c of encoderCases) {
    assert.deepEqual(tok.encode(c.text), c.ids_with_bos, JSON.stringify(c.text));
    assert.deepEqual(tok.encode(c.text, { addBos: false }), c.ids_with_bos.slice(1), JSON.stringify(c.text));
  }
});

test('llama2c: decoding the golden encodings gives the text back', () => {
  for (const c of encoderCases) {
    assert.equal(tok.decode(c.ids_with_bos), c.text, JSON.stringify(c.text));
    assert.equal(streamAll(tok, c.ids_with_bos).text, c.text, JSON.stringify(c.text));
  }
});

test('llama2c: decode reproduces run.c stdout for every golden generation', () => {
  assert.ok(generations.length >= 4);
  for (const g of generations) {
    assert.deepEqual(g.ids, [...g.prompt_ids, ...g.generated_ids]);
    assert.deepEqual(tok.encode(g.prompt), g.prompt_ids);
    // run.c prints every piece after BOS, the prompt included; a final BOS (stop) prints nothing
    assert.equal(tok.decode(g.ids), g.text, g.prompt);
    // streaming the whole run one id at a time
    const all = streamAll(tok, g.ids);
    assert.equal(all.text, g.text);
    // the prompt decoded at once, then the generated ids streamed after the prompt's last id
    const promptText = tok.decode(g.prompt_ids);
    assert.equal(promptText, g.prompt);
    const gen = streamAll(tok, g.generated_ids, g.prompt_ids.at(-1));
    assert.equal(promptText + gen.text, g.text);
    // all pieces here are ASCII: each id prints its text immediately (nothing held back)
    assert.equal(gen.chunks.at(-1), '');
    assert.equal(g.stopped_on_bos, g.ids.at(-1) === 1);
  }
});

test('llama2c: decode follows run.c decode() + safe_printf (hand-checked pieces)', () => {
  assert.equal(tok.decode([1, 410]), ''); // " " after BOS loses its space
  assert.equal(tok.decode([410]), ' ');
  assert.equal(tok.decode([259]), ' t');
  assert.equal(tok.decode([1, 259]), 't');
  assert.equal(tok.decode([1, 259, 259]), 't t'); // only the piece right after BOS is stripped
  assert.equal(tok.decode([3 + 0x41]), 'A'); // <0x41>
  assert.equal(tok.decode([3 + 0x0a, 3 + 0x09]), '\n\t'); // whitespace bytes print
  assert.equal(tok.decode([3 + 0x07, 3 + 0x00, 3 + 0x1b, 3 + 0x7f]), ''); // control bytes are skipped
  assert.equal(tok.decode([1, 2]), '');
  assert.equal(tok.decode([1, 2], { skipSpecial: false }), '<s></s>');
  assert.equal(tok.decode([507, 511]), '\u2122\u200a'); // multi-byte pieces print whole
  // byte tokens forming UTF-8 characters (kept, see llama2c.ts): E6 97 A5 = U+65E5
  assert.equal(tok.decode([3 + 0xe6, 3 + 0x97, 3 + 0xa5]), '\u65e5');
  assert.equal(tok.decode([3 + 0xe6]), '\ufffd'); // an incomplete sequence
  assert.throws(() => tok.decode([512]), KvsieveError);
});

test('llama2c: stream decoder holds back incomplete UTF-8', () => {
  // "日本" spelled with byte tokens after BOS and the dummy-prefix space: 日 = E6 97 A5, 本 = E6 9C AC
  const ids = [1, 410, 3 + 0xe6, 3 + 0x97, 3 + 0xa5, 3 + 0xe6, 3 + 0x9c, 3 + 0xac];
  assert.deepEqual(streamAll(tok, ids).chunks, ['', '', '', '', '\u65e5', '', '', '\u672c', '']);
  // an unfinished character comes out on flush as U+FFFD, like decode
  assert.deepEqual(streamAll(tok, [3 + 0x41, 3 + 0xe6, 3 + 0x97]).chunks, ['A', '', '', '\ufffd']);
  assert.equal(tok.decode([3 + 0x41, 3 + 0xe6, 3 + 0x97]), 'A\ufffd');
  // an invalid byte is replaced at once
  assert.deepEqual(streamAll(tok, [3 + 0xff, 3 + 0x41]).chunks, ['\ufffd', 'A', '']);
  // previousId = BOS strips the first piece's space, another previous id does not
  assert.equal(streamAll(tok, [259], 1).text, 't');
  assert.equal(streamAll(tok, [259], 259).text, ' t');
});

test('llama2c: stream decoder equals decode on random id sequences', () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let trial = 0; trial < 300; trial++) {
    const ids: number[] = [];
    const len = 1 + rand(40);
    for (let i = 0; i < len; i++) {
      const r = rand(10);
      // bias towards byte tokens of multi-byte UTF-8, and include BOS / EOS / spaces
      ids.push(r < 4 ? 3 + 0x80 + rand(0x78) : r < 5 ? rand(3) : r < 6 ? 410 : rand(512));
    }
    assert.equal(streamAll(tok, ids).text, tok.decode(ids), JSON.stringify(ids));
    // previousId is context for the BOS rule; a byte token as context is not meaningful (its bytes are not printed)
    const prev = rand(2) === 0 ? rand(3) : 259 + rand(253);
    assert.equal(streamAll(tok, ids, prev).text, tok.decode([prev, ...ids]).slice(tok.decode([prev]).length));
  }
});

// ---- hand-built vocabularies for the merge rule ----

/** Writes a llama2.c tokenizer: <unk>, BOS, EOS, the 256 byte tokens, then `extra` pieces. */
function writeVocab(dir: string, extra: [string, number][]): { file: string; id: (piece: string) => number } {
  const pieces: [Buffer, number][] = [
    [Buffer.from('<unk>'), 0],
    [Buffer.from('\n<s>\n'), 0],
    [Buffer.from('\n</s>\n'), 0],
  ];
  for (let b = 0; b < 256; b++) pieces.push([Buffer.from(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), 0]);
  for (const [p, s] of extra) pieces.push([Buffer.from(p, 'utf8'), s]);
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeInt32LE(Math.max(...pieces.map(([p]) => p.length)));
  parts.push(head);
  for (const [p, s] of pieces) {
    const h = Buffer.alloc(8);
    h.writeFloatLE(s, 0);
    h.writeInt32LE(p.length, 4);
    parts.push(h, p);
  }
  const file = join(dir, `tok${pieces.length}.bin`);
  writeFileSync(file, Buffer.concat(parts));
  return { file, id: (piece) => 259 + extra.findIndex(([p]) => p === piece) };
}

test('llama2c: merge picks the best score, leftmost on ties, and re-evaluates after each merge', () => {
  const { dir, cleanup } = tempDir();
  try {
    // tie between "ab" and "ba" (score 1): the left pair wins -> " " "ab" "a"
    let v = writeVocab(dir, [[' ', -1], ['a', -1], ['b', -1], ['ab', 1], ['ba', 1], [' a', 0.5]]);
    let t = loadLlama2cTokenizer(v.file, 259 + 6);
    assert.deepEqual(t.encode('aba'), [1, v.id(' '), v.id('ab'), v.id('a')]);
    // "ba" better: " " "a" "ba", then " a" merges -> " a" "ba"
    v = writeVocab(dir, [[' ', -1], ['a', -1], ['b', -1], ['ab', 1], ['ba', 2], [' a', 0.5]]);
    t = loadLlama2cTokenizer(v.file, 259 + 6);
    assert.deepEqual(t.encode('aba'), [1, v.id(' a'), v.id('ba')]);
    // a merge creates a pair that is better than everything left: "ab"(2) then "abc"(5), never "bc"(1)
    v = writeVocab(dir, [[' ', -1], ['a', -1], ['b', -1], ['c', -1], ['bc', 1], ['ab', 2], ['abc', 5]]);
    t = loadLlama2cTokenizer(v.file, 259 + 7);
    assert.deepEqual(t.encode('abc'), [1, v.id(' '), v.id('abc')]);
    assert.deepEqual(t.encode('abcbc', { addBos: false }), [v.id(' '), v.id('abc'), v.id('bc')]);
    // scores not above -1e10 never merge (run.c's strict > against its -1e10 start)
    v = writeVocab(dir, [[' ', -1], ['x', -1], ['y', -1], ['xy', -1e10], ['yx', -2e10]]);
    t = loadLlama2cTokenizer(v.file, 259 + 5);
    assert.deepEqual(t.encode('xyx'), [1, v.id(' '), v.id('x'), v.id('y'), v.id('x')]);
    // codepoints in the vocabulary are one piece; others fall back to their UTF-8 bytes (id = byte + 3)
    v = writeVocab(dir, [[' ', -1], ['\u00e9', -1]]);
    t = loadLlama2cTokenizer(v.file, 259 + 2);
    assert.deepEqual(t.encode('\u00e9\u00f1'), [1, v.id(' '), v.id('\u00e9'), 0xc3 + 3, 0xb1 + 3]);
    assert.deepEqual(t.encode(''), [1]);
    assert.deepEqual(t.encode('', { addBos: false }), []);
    // vocab_size smaller than the file: only the first vocab_size pieces exist
    t = loadLlama2cTokenizer(v.file, 259 + 1);
    assert.deepEqual(t.encode('\u00e9', { addBos: false }), [v.id(' '), 0xc3 + 3, 0xa9 + 3]);
  } finally {
    cleanup();
  }
});

/** run.c's encode() merge loop transcribed literally (O(n^2) per merge), as a reference for the heap version. */
function referenceEncode(file: string, vocabSize: number, text: string): number[] {
  const data = readFileSync(file);
  const vocab: string[] = [];
  const scores: number[] = [];
  let off = 4;
  for (let i = 0; i < vocabSize; i++) {
    scores.push(data.readFloatLE(off));
    const len = data.readInt32LE(off + 4);
    vocab.push(data.toString('latin1', off + 8, off + 8 + len));
    off += 8 + len;
  }
  const lookup = (s: string) => vocab.indexOf(s);
  const tokens = [1];
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 0) tokens.push(lookup(' '));
  let buf = '';
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c]! & 0xc0) !== 0x80) buf = '';
    buf += String.fromCharCode(bytes[c]!);
    if (c + 1 < bytes.length && (bytes[c + 1]! & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(buf);
    if (id !== -1) tokens.push(id);
    else for (let i = 0; i < buf.length; i++) tokens.push(buf.charCodeAt(i) + 3);
    buf = '';
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!);
      if (id !== -1 && scores[id]! > bestScore) {
        bestScore = scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

test('llama2c: encode equals a literal transcription of run.c on random text', () => {
  const alphabet = ['a', 'e', 't', 'h', 'o', 'n', 's', ' ', ' ', '  ', ',', '.', '\n', 'T', 'L', "'", '"', 'é', '日', '😀', '™', '1', '0'];
  const words = ['the', 'Once', ' upon', 'Lily', ' said', 'play', 'ing', 'ed', ' and'];
  let seed = 99;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let trial = 0; trial < 150; trial++) {
    let s = '';
    const n = rand(30);
    for (let i = 0; i < n; i++) s += rand(3) === 0 ? words[rand(words.length)] : alphabet[rand(alphabet.length)];
    assert.deepEqual(tok.encode(s), referenceEncode(stories260K('tok512.bin'), 512, s), JSON.stringify(s));
  }
});

test('llama2c: a long text encodes quickly and round-trips', () => {
  const text = encoderCases.map((c) => c.text).join(' ').repeat(40);
  const t0 = performance.now();
  const ids = tok.encode(text);
  const ms = performance.now() - t0;
  assert.ok(ids.length > 10000, `${ids.length} ids`);
  assert.ok(ms < 5000, `encode took ${ms} ms`);
  assert.equal(tok.decode(ids), text);
});

test('llama2c: truncated or unreadable files give a KvsieveError naming the file', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'broken.bin');
    writeFileSync(file, readFileSync(stories260K('tok512.bin')).subarray(0, 100));
    const named = (e: unknown) => e instanceof KvsieveError && e.message.includes(file) && !e.message.includes('\n');
    assert.throws(() => loadLlama2cTokenizer(file, 512), named);
    writeFileSync(file, Buffer.from([1, 0]));
    assert.throws(() => loadLlama2cTokenizer(file, 512), named);
    const missing = join(dir, 'missing.bin');
    assert.throws(
      () => loadLlama2cTokenizer(missing, 512),
      (e: unknown) => e instanceof KvsieveError && e.message.includes(missing),
    );
    // the stories file asked for more pieces than it holds
    assert.throws(
      () => loadLlama2cTokenizer(stories260K('tok512.bin'), 513),
      (e: unknown) => e instanceof KvsieveError && e.message.includes('tok512.bin'),
    );
  } finally {
    cleanup();
  }
});
