import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
import type { ChatMessage, Tokenizer } from '../../src/tokenizer/types.js';
import { stories260K, tempDir } from '../helpers.js';

// A ChatML (Qwen-style) template written for this test: drops the reasoning of earlier assistant turns,
// opens a <think> block for the generation prompt (or an empty one when thinking is switched off).
const TEMPLATE = [
  "{%- for message in messages %}",
  "{%- if message.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role: ' + message.role) }}{%- endif %}",
  "{%- set content = message.content %}",
  "{%- if message.role == 'assistant' and '</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}",
  "{{- '<|im_start|>' + message.role + '\\n' + content + eos_token + '\\n' }}",
  '{%- endfor %}',
  '{%- if add_generation_prompt %}',
  "{{- '<|im_start|>assistant\\n' }}",
  "{%- if enable_thinking is defined and not enable_thinking %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- else %}{{- '<think>\\n' }}{%- endif %}",
  '{%- endif %}',
].join('\n');

const IM_START = 512;
const IM_END = 513;
const THINK = 514;
const END_THINK = 515;

/** The stories tokenizer.json plus ChatML markers (special) and <think>/</think> (ordinary added tokens). */
function writeChatTokenizer(dir: string, config: Record<string, unknown>): void {
  const tj = JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8')) as { added_tokens: unknown[] };
  const added = (id: number, content: string, special: boolean) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special,
  });
  tj.added_tokens.push(
    added(IM_START, '<|im_start|>', true),
    added(IM_END, '<|im_end|>', true),
    added(THINK, '<think>', false),
    added(END_THINK, '</think>', false),
  );
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
}

const baseConfig = {
  bos_token: null,
  eos_token: { content: '<|im_end|>', special: true },
  pad_token: '<|im_end|>',
  add_bos_token: false,
  chat_template: TEMPLATE,
};

const { dir, cleanup } = tempDir();
after(cleanup);
writeChatTokenizer(dir, baseConfig);
const tok = (await loadHfTokenizer(dir))!;

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: '<think>\nThey greet me.\n</think>\n\nHello!' },
  { role: 'user', content: 'Again' },
];
const rendered =
  '<|im_start|>system\nYou are terse.<|im_end|>\n' +
  '<|im_start|>user\nHi<|im_end|>\n' +
  '<|im_start|>assistant\nHello!<|im_end|>\n' +
  '<|im_start|>user\nAgain<|im_end|>\n';

test('chat: tokenizer with ChatML markers and <think> loads', () => {
  assert.equal(tok.vocabSize, 516);
  assert.equal(tok.bosId, null);
  assert.equal(tok.eosId, IM_END);
  assert.ok(tok.isSpecial(IM_START) && tok.isSpecial(IM_END));
  assert.ok(!tok.isSpecial(THINK) && !tok.isSpecial(END_THINK));
  assert.equal(tok.tokenString(THINK), '<think>');
  assert.equal(typeof tok.applyChatTemplate, 'function');
});

test('chat: template renders exactly, with and without the generation prompt', () => {
  const apply = tok.applyChatTemplate!.bind(tok);
  assert.equal(apply(conversation), rendered);
  assert.equal(apply(conversation, { addGenerationPrompt: false }), rendered);
  assert.equal(apply(conversation, { addGenerationPrompt: true }), rendered + '<|im_start|>assistant\n<think>\n');
  assert.equal(
    apply(conversation, { addGenerationPrompt: true, enableThinking: false }),
    rendered + '<|im_start|>assistant\n<think>\n\n</think>\n\n',
  );
  assert.equal(
    apply([{ role: 'user', content: '2+2?' }], { addGenerationPrompt: true }),
    '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n',
  );
  assert.equal(
    apply([
      { role: 'system', content: 'Be kind.' },
      { role: 'user', content: 'Hello' },
    ]),
    '<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n',
  );
});

test('chat: raise_exception in a template becomes a one-line KvsieveError naming the file', () => {
  assert.throws(
    () => tok.applyChatTemplate!([{ role: 'tool', content: 'x' }]),
    (e: unknown) =>
      e instanceof KvsieveError &&
      e.message.includes('unknown role: tool') &&
      e.message.includes(join(dir, 'tokenizer_config.json')) &&
      !e.message.includes('\n'),
  );
});

test('chat: markers encode as single tokens; <think> survives decoding and streaming', () => {
  const plain = (s: string) => tok.encode(s, { addBos: false });
  // sections between added tokens are encoded on their own (each gets the sentencepiece prefix space)
  assert.deepEqual(plain('<|im_start|>user\nHi'), [IM_START, ...plain('user\nHi')]);
  assert.deepEqual(plain('<think>\nOnce</think>'), [THINK, ...plain('\nOnce'), END_THINK]);
  assert.ok(!plain('\nOnce').includes(THINK));
  const prompt = plain(tok.applyChatTemplate!(conversation, { addGenerationPrompt: true }));
  assert.equal(prompt.filter((id) => id === IM_START).length, 5);
  assert.equal(prompt.filter((id) => id === IM_END).length, 4);
  const tail = [IM_START, ...plain('assistant\n'), THINK, ...plain('\n')];
  assert.deepEqual(prompt.slice(-tail.length), tail);

  // 403 = "▁Once", 13 = <0x0A>
  const gen = [THINK, 13, 403, END_THINK, 13, 403, IM_END];
  assert.equal(tok.decode(gen), '<think>\n Once</think>\n Once');
  assert.equal(tok.decode(gen, { skipSpecial: false }), '<think>\n Once</think>\n Once<|im_end|>');
  const d = tok.streamDecoder(IM_START);
  const chunks = gen.map((id) => d.push(id));
  chunks.push(d.flush());
  assert.deepEqual(chunks, ['<think>', '\n', ' Once', '</think>', '\n', ' Once', '', '']);
  // specials kept (a harmony model's markers): their text streams too, and the whole is decode's with them kept
  const kept = tok.streamDecoder(IM_START, { skipSpecial: false });
  const keptChunks = [...gen.map((id) => kept.push(id)), kept.flush()];
  assert.equal(keptChunks.at(-2), '<|im_end|>');
  const withSpecials = (ids: number[]) => tok.decode(ids, { skipSpecial: false });
  assert.equal(keptChunks.join(''), withSpecials([IM_START, ...gen]).slice(withSpecials([IM_START]).length));
  assert.equal(keptChunks.join(''), '<think>\n Once</think>\n Once<|im_end|>');
});

test('chat: template lists, chat_template.jinja, and models without a template', async () => {
  const other = tempDir();
  try {
    writeChatTokenizer(other.dir, {
      ...baseConfig,
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: '{{ messages[0].content }}|{{ add_generation_prompt }}' },
      ],
    });
    let t: Tokenizer = (await loadHfTokenizer(other.dir))!;
    assert.equal(t.applyChatTemplate!([{ role: 'user', content: 'x' }], { addGenerationPrompt: true }), 'x|true');

    const { chat_template: _unused, ...noTemplate } = baseConfig;
    writeChatTokenizer(other.dir, noTemplate);
    t = (await loadHfTokenizer(other.dir))!;
    assert.equal(t.applyChatTemplate, undefined);

    writeFileSync(join(other.dir, 'chat_template.jinja'), '{{ bos_token }}[{{ messages | length }}]{{ eos_token }}');
    t = (await loadHfTokenizer(other.dir))!;
    assert.equal(t.applyChatTemplate!(conversation), '[4]<|im_end|>');
    rmSync(join(other.dir, 'chat_template.jinja'));

    writeFileSync(join(other.dir, 'chat_template.json'), JSON.stringify({ chat_template: '{{ messages[1].role }}' }));
    t = (await loadHfTokenizer(other.dir))!;
    assert.equal(t.applyChatTemplate!(conversation), 'user');

    // a template that does not parse fails on use, with the file named
    writeChatTokenizer(other.dir, { ...baseConfig, chat_template: '{% for m in messages %}{{ m.content }' });
    t = (await loadHfTokenizer(other.dir))!;
    assert.throws(
      () => t.applyChatTemplate!(conversation),
      (e: unknown) => e instanceof KvsieveError && e.message.includes('tokenizer_config.json') && !e.message.includes('\n'),
    );
  } finally {
    other.cleanup();
  }
});
