import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadHfTokenizer, MAX_TOKEN_ID } from '../../src/tokenizer/hf.js';
import { oneLineError } from '../helpers.js';
import { storiesTokenizer, withTokenizer } from './files.js';

// tokenizer.json vocabularies that used to load wrongly.

test('a vocabulary of the wrong type or empty is refused (it loaded as the 3 added tokens)', async () => {
  const edits: [(j: any) => void, RegExp][] = [
    [(j) => (j.model.vocab = 5), /model\.vocab must be a non-empty object of token -> id, got 5/],
    [(j) => (j.model.vocab = []), /model\.vocab must be a non-empty object of token -> id, got \[\]/],
    [(j) => (j.model = { type: 'Unigram', vocab: [] }), /model\.vocab must be a non-empty list of \[piece, score\] pairs, got \[\]/],
    [(j) => (j.model = { type: 'Unigram', vocab: [['a', 'x']] }), /model\.vocab\[0\] must be a \[piece, score\] pair, got \["a", "x"\]/],
    [(j) => (j.model.vocab = {}), /model\.vocab must be a non-empty object/],
    [(j) => (j.model.vocab['a'] = -1), /model\.vocab token "a" has id -1, not a token id/],
    [(j) => (j.model.vocab['a'] = '7'), /model\.vocab token "a" has id "7", not a token id/],
    [(j) => (j.model.vocab['a'] = 2 ** 40), new RegExp(`model\\.vocab token "a" has id ${2 ** 40}, outside the limit of ${MAX_TOKEN_ID + 1} ids`)],
    [(j) => (j.model.merges = 'a b'), /model\.merges must be a list, got "a b"/],
    [(j) => (j.model.type = 'Magic'), /model\.type "Magic" is not supported/],
    [(j) => (j.added_tokens = {}), /added_tokens must be a list, got \{\}/],
    [(j) => j.added_tokens.push({ id: 1.5, content: 'x' }), /added token "x" has id 1\.5, not a token id/],
    [(j) => j.added_tokens.push({ id: 3 }), /added_tokens\[3\] must be an object with a "content" string/],
    [(j) => (j.normalizer.normalizers[1].content = new Array(1_000_000).fill(1)), /normalizer setting "content" is a list of 1000000 items \(limit 4096\)/],
    [(j) => (j.decoder.decoders[0].content = 'x'.repeat(100_000)), /decoder setting "content" is a string of 100000 characters/],
    [(j) => (j.model.end_of_word_suffix = new Array(1_000_000).fill(1)), /model setting "end_of_word_suffix" is a list of 1000000 items/],
    [(j) => j.added_tokens.push({ id: 3, content: 'x'.repeat(1_000_000) }), /tokenizer\.json: added_tokens\[3\] is a token of 1000000 characters \(limit 1024\)/],
  ];
  for (const [edit, pattern] of edits) {
    const j = storiesTokenizer();
    edit(j);
    await withTokenizer(j, null, async (dir) => {
      await assert.rejects(loadHfTokenizer(dir), oneLineError(pattern), pattern.source);
    });
  }
  // special tokens of tokenizer_config.json are repeated per message by chat templates: bounded too
  await withTokenizer(storiesTokenizer(), { eos_token: 'x'.repeat(1_000_000) }, async (dir) => {
    await assert.rejects(loadHfTokenizer(dir), oneLineError(/tokenizer_config\.json: eos_token is a token of 1000000 characters \(limit 1024\)/));
  });
  await withTokenizer(storiesTokenizer(), { additional_special_tokens: ['<a>', { content: 'y'.repeat(5000) }] }, async (dir) => {
    await assert.rejects(loadHfTokenizer(dir), oneLineError(/tokenizer_config\.json: additional_special_tokens\[1\] is a token of 5000 characters/));
  });
  // a Unigram vocabulary is a list of [piece, score]
  const unigram = { model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['a', -1], ['b', -2], ['ab', -0.5]] } };
  await withTokenizer(unigram, {}, async (dir) => {
    const tok = (await loadHfTokenizer(dir))!;
    assert.equal(tok.vocabSize, 4);
    assert.deepEqual(tok.encode('ab'), [3]);
  });
  await withTokenizer({ model: { ...unigram.model, unk_id: 9 } }, {}, async (dir) => {
    await assert.rejects(loadHfTokenizer(dir), oneLineError(/model\.unk_id must be an index into model\.vocab, got 9/));
  });
});

test('a model vocabulary bounds the tokenizer ids; the vocabulary size comes from the ids checked', async () => {
  const j = storiesTokenizer();
  await withTokenizer(j, null, async (dir) => {
    assert.equal((await loadHfTokenizer(dir))!.vocabSize, 512);
    assert.equal((await loadHfTokenizer(dir, 512))!.vocabSize, 512);
    await assert.rejects(loadHfTokenizer(dir, 300), oneLineError(/has id \d+, outside the model's vocabulary of 300/));
  });
});
