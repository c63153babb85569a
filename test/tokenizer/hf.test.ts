import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
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
}

const encoderCases = (JSON.parse(readFileSync(stories260K('golden', 'encoder_ids.json'), 'utf8')) as { cases: EncoderCase[] })
  .cases;
const generations = (JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')) as { generations: Generation[] })
  .generations;
const hf = (await loadHfTokenizer(stories260K('hf')))!;
const l2c = loadLlama2cTokenizer(stories260K('tok512.bin'), 512);

function streamAll(t: Tokenizer, ids: number[], previousId?: number): { text: string; chunks: string[] } {
  const d = t.streamDecoder(previousId);
  const chunks = ids.map((id) => d.push(id));
  chunks.push(d.flush());
  return { text: chunks.join(''), chunks };
}

test('hf: stories260K tokenizer.json loads with the right ids', () => {
  assert.ok(hf);
  assert.equal(hf.kind, 'hf');
  assert.equal(hf.vocabSize, 512);
  assert.equal(hf.bosId, 1);
  assert.equal(hf.eosId, 2);
  assert.equal(hf.tokenString(1), '<s>');
  assert.equal(hf.tokenString(13), '<0x0A>');
  assert.equal(hf.tokenString(259), '\u2581t');
  assert.equal(hf.tokenString(512), undefined);
  assert.ok(hf.isSpecial(0) && hf.isSpecial(1) && hf.isSpecial(2) && !hf.isSpecial(3));
  assert.equal(hf.applyChatTemplate, undefined); // stories ships no chat template
});

test('hf: encode agrees with run.c on the golden strings except literal special-token text', () => {
  const mismatched: string[] = [];
  for (const c of encoderCases) {
    const ids = hf.encode(c.text);
    if (JSON.stringify(ids) !== JSON.stringify(c.ids_with_bos)) mismatched.push(c.text);
    else assert.deepEqual(hf.encode(c.text, { addBos: false }), c.ids_with_bos.slice(1));
  }
  // the documented difference: "<s>", "</s>", "<unk>" in the text are read as special tokens by HF
  assert.deepEqual(mismatched, ['<s> </s> <unk> <0x41>']);
  const special = hf.encode('<s> </s> <unk> <0x41>');
  assert.deepEqual(special.slice(0, 2), [1, 1]);
  assert.ok(special.includes(2) && special.includes(0));
});

test('hf: decoding the golden generations gives run.c text, as the llama2c path does', () => {
  for (const g of generations) {
    assert.equal(hf.decode(g.ids), g.text, g.prompt);
    assert.equal(hf.decode(g.ids), l2c.decode(g.ids));
    assert.equal(streamAll(hf, g.ids).text, g.text);
    const promptText = hf.decode(g.prompt_ids);
    assert.equal(promptText, g.prompt);
    const gen = streamAll(hf, g.generated_ids, g.prompt_ids.at(-1));
    assert.equal(promptText + gen.text, g.text);
    // streaming emits text as it goes: no chunk ever holds more than a few tokens' worth
    assert.ok(gen.chunks.every((c) => c.length <= 20));
    assert.equal(gen.text, streamAll(l2c, g.generated_ids, g.prompt_ids.at(-1)).text);
  }
});

test('hf: decode details (special skipping, leading space, byte fallback)', () => {
  assert.equal(hf.decode([]), '');
  assert.equal(hf.decode([1, 259]), 't'); // the decoder strips one leading space
  assert.equal(hf.decode([259, 259]), 't t');
  assert.equal(hf.decode([1, 259, 2], { skipSpecial: false }), '<s> t</s>');
  assert.equal(hf.decode([3 + 0xe6, 3 + 0x97, 3 + 0xa5]), '\u65e5');
  assert.equal(hf.decode([403, 3 + 0xe6]), 'Once\ufffd');
});

test('hf: stream decoder holds back byte-fallback pieces until the character is complete', () => {
  // "Once 日本" ; 日 = E6 97 A5, 本 = E6 9C AC
  const ids = [1, 403, 410, 3 + 0xe6, 3 + 0x97, 3 + 0xa5, 3 + 0xe6, 3 + 0x9c, 3 + 0xac, 378];
  const { chunks } = streamAll(hf, ids);
  assert.deepEqual(chunks, ['', 'Once', ' ', '', '', '\u65e5', '', '', '\u672c', ' time', '']);
  assert.equal(chunks.join(''), hf.decode(ids));
  // incomplete at the end: flush gives what decode gives
  assert.deepEqual(streamAll(hf, [403, 3 + 0xe6, 3 + 0x97]).chunks, ['Once', '', '', '\ufffd']);
  // context: after BOS the leading space goes, after a word it stays
  assert.equal(streamAll(hf, [259], 1).text, 't');
  assert.equal(streamAll(hf, [259], 403).text, ' t');
});

test('hf: stream decoder equals decode on random id sequences', () => {
  let seed = 4242;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let trial = 0; trial < 300; trial++) {
    const ids: number[] = [];
    const len = 1 + rand(40);
    for (let i = 0; i < len; i++) {
      const r = rand(10);
      ids.push(r < 4 ? 3 + 0x80 + rand(0x78) : r < 5 ? rand(3) : r < 6 ? 410 : rand(512));
    }
    assert.equal(streamAll(hf, ids).text, hf.decode(ids), JSON.stringify(ids));
    const prev = 259 + rand(253);
    assert.equal(
      streamAll(hf, ids, prev).text,
      hf.decode([prev, ...ids]).slice(hf.decode([prev]).length),
      JSON.stringify([prev, ...ids]),
    );
  }
});

test('hf: decode agrees with the llama2c decoder on random printable sequences after BOS', () => {
  let seed = 777;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  // leave out what the two decoders define differently: control bytes (run.c skips them), the space byte
  // token right after BOS (HF strips it, run.c only strips a piece's own leading space) and mid-text BOS
  const printableByte = () => 3 + 0x21 + rand(0x7f - 0x21);
  for (let trial = 0; trial < 300; trial++) {
    const ids = [1];
    const len = 1 + rand(30);
    for (let i = 0; i < len; i++) ids.push(rand(4) === 0 ? printableByte() : 259 + rand(253));
    assert.equal(hf.decode(ids), l2c.decode(ids), JSON.stringify(ids));
  }
});

test('hf: missing tokenizer.json gives null; malformed files give a KvsieveError naming the file', async () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.equal(await loadHfTokenizer(dir), null);
    const tokFile = join(dir, 'tokenizer.json');
    const named = (file: string) => (e: unknown) =>
      e instanceof KvsieveError && e.message.includes(file) && !e.message.includes('\n');
    writeFileSync(tokFile, '{"model": {"type": "BPE", "vocab": {');
    await assert.rejects(loadHfTokenizer(dir), named(tokFile));
    writeFileSync(tokFile, '[1, 2, 3]');
    await assert.rejects(loadHfTokenizer(dir), named(tokFile));
    writeFileSync(tokFile, JSON.stringify({ added_tokens: [], model: { type: 'NoSuchModel' } }));
    await assert.rejects(loadHfTokenizer(dir), named(tokFile));
    // a good tokenizer.json with a broken tokenizer_config.json
    writeFileSync(tokFile, readFileSync(stories260K('hf', 'tokenizer.json')));
    const cfgFile = join(dir, 'tokenizer_config.json');
    writeFileSync(cfgFile, '{"bos_token": "<s>",');
    await assert.rejects(loadHfTokenizer(dir), named(cfgFile));
    writeFileSync(cfgFile, JSON.stringify({ chat_template: 42 }));
    await assert.rejects(loadHfTokenizer(dir), named(cfgFile));
  } finally {
    cleanup();
  }
});

test('hf: add_bos_token and token settings given as objects', async () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'tokenizer.json'), readFileSync(stories260K('hf', 'tokenizer.json')));
    // no tokenizer_config.json: BOS is the special token the post-processor prepends
    let t = (await loadHfTokenizer(dir))!;
    assert.equal(t.bosId, 1);
    assert.equal(t.eosId, null);
    assert.deepEqual(t.encode('Once upon a time'), [1, 403, 407, 261, 378]);
    assert.deepEqual(t.encode('Once upon a time', { addBos: false }), [403, 407, 261, 378]);
    // bos as an object, add_bos_token false
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: { content: '<s>', special: true }, eos_token: { content: '</s>' }, add_bos_token: false }),
    );
    t = (await loadHfTokenizer(dir))!;
    assert.equal(t.bosId, 1);
    assert.equal(t.eosId, 2);
    assert.deepEqual(t.encode('Once upon a time'), [403, 407, 261, 378]);
    assert.deepEqual(t.encode('Once upon a time', { addBos: true }), [1, 403, 407, 261, 378]);
    // no add_bos_token: follow the post-processor (TemplateProcessing prepends <s>)
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
    t = (await loadHfTokenizer(dir))!;
    assert.deepEqual(t.encode('Once upon a time'), [1, 403, 407, 261, 378]);
    assert.deepEqual(t.encode(''), [1]);
  } finally {
    cleanup();
  }
});
