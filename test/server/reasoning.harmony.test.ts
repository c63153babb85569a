// The harmony format's reasoning split (GPT-OSS): HarmonySplitter on hand-written replies cut into
// chunks at every position, and the server end to end on a model whose vocabulary has the markers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { HarmonySplitter } from '../../src/server/reasoning.js';
import { stories260K, tempDir, writeChatModel } from '../helpers.js';
import { serveModel, streamedReply } from './serve.js';

/** The splitter's result on `text` given as chunks cut at the positions in `cuts`. */
function split(text: string, cuts: number[], inAnalysis = false): { reasoning: string; content: string } {
  const s = new HarmonySplitter(inAnalysis);
  const out = { reasoning: '', content: '' };
  let from = 0;
  for (const at of [...cuts, text.length]) {
    const p = s.push(text.slice(from, at));
    out.reasoning += p.reasoning;
    out.content += p.content;
    from = at;
  }
  const p = s.flush();
  return { reasoning: out.reasoning + p.reasoning, content: out.content + p.content };
}

const CASES: { what: string; text: string; inAnalysis?: boolean; reasoning: string; content: string }[] = [
  {
    what: 'analysis, then final',
    text: '<|channel|>analysis<|message|>User greets. Reply <b>.<|end|><|start|>assistant<|channel|>final<|message|>Hello | there!<|return|>',
    reasoning: 'User greets. Reply <b>.',
    content: 'Hello | there!',
  },
  { what: 'final only', text: '<|channel|>final<|message|>Just this.<|return|>', reasoning: '', content: 'Just this.' },
  { what: 'commentary with a constraint is content', text: '<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a":1}<|call|>', reasoning: '', content: '{"a":1}' },
  { what: 'no markers at all', text: 'plain text < and |> alone', reasoning: '', content: 'plain text < and |> alone' },
  { what: 'an unknown marker is text', text: '<|channel|>final<|message|>a <|foo|> b<|end|>', reasoning: '', content: 'a <|foo|> b' },
  { what: 'nothing after <|return|>', text: '<|channel|>final<|message|>done<|return|>trailing', reasoning: '', content: 'done' },
  { what: 'the prompt opened analysis', text: 'thinking on<|end|><|start|>assistant<|channel|>final<|message|>answer', inAnalysis: true, reasoning: 'thinking on', content: 'answer' },
  { what: 'cut off inside a marker', text: '<|channel|>final<|message|>abc<|en', reasoning: '', content: 'abc<|en' },
];

test('HarmonySplitter: hand-split replies, whatever the chunking (every single cut and every pair of cuts)', () => {
  for (const c of CASES) {
    const want = { reasoning: c.reasoning, content: c.content };
    assert.deepEqual(split(c.text, [], c.inAnalysis), want, `${c.what}: whole`);
    for (let i = 0; i <= c.text.length; i++) {
      assert.deepEqual(split(c.text, [i], c.inAnalysis), want, `${c.what}: cut at ${i}`);
      for (let j = i; j <= c.text.length; j += 3) assert.deepEqual(split(c.text, [i, j], c.inAnalysis), want, `${c.what}: cuts at ${i}, ${j}`);
    }
    assert.deepEqual(split(c.text, Array.from({ length: c.text.length }, (_, i) => i), c.inAnalysis), want, `${c.what}: one character at a time`);
  }
});

/**
 * stories260K with the harmony markers as special tokens: `<|end|>` over "." (so a story's first
 * sentence closes the analysis message), the others over ids the stories never use, and a template
 * that opens the assistant's analysis channel, as a harmony prompt may.
 */
function writeHarmonyModel(dir: string): string {
  writeChatModel(dir, "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|start|>assistant<|channel|>analysis<|message|>{% endif %}");
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const marker = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  tok.added_tokens.push(marker('<|end|>', tok.model.vocab['.']), marker('<|start|>', 509), marker('<|channel|>', 510), marker('<|message|>', 511));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  return dir;
}

test('server, harmony model: the analysis message in reasoning_content, the rest in content, streamed or not; reasoning_format none has no markers', async () => {
  const t = tempDir();
  const dir = writeHarmonyModel(t.dir);
  const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
  // What the model writes, markers and all, from the library (the same greedy path the server runs)
  const model = await loadModel(dir, { backend: 'wasm', threads: 1 });
  let raw: string;
  try {
    assert.equal(model.info().harmony, true);
    raw = (await model.complete(null, { messages, maxTokens: 40, temperature: 0, keepSpecialTokens: true })).text;
  } finally {
    model.dispose();
  }
  const plain = await loadModel(stories260K('hf'), { backend: 'reference' });
  assert.equal(plain.info().harmony, false);
  plain.dispose();
  const end = raw.indexOf('<|end|>');
  assert.ok(end > 5 && raw.length > end + 20, `a first sentence and more after it: ${JSON.stringify(raw)}`);
  const markers = /<\|[a-z]+\|>/g;
  const squash = (s: string) => s.replace(/\s+/g, '');

  const { client, stop } = await serveModel(dir);
  try {
    const whole = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0 });
    const message = whole.choices[0]!.message as { content: string; reasoning_content?: string };
    assert.equal(message.reasoning_content, raw.slice(0, end));
    // after the analysis message, text outside any message is content (whitespace-only pieces dropped)
    assert.equal(squash(message.content), squash(raw.slice(end).replace(markers, '')));
    assert.doesNotMatch(message.content, markers);
    const { reasoning, content } = await streamedReply(await client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0, stream: true }));
    assert.equal(reasoning, message.reasoning_content);
    assert.equal(content, message.content);
    const off = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 40, temperature: 0, reasoning_format: 'none' } as never);
    const offMessage = (off as typeof whole).choices[0]!.message as { content: string; reasoning_content?: string };
    assert.equal(offMessage.reasoning_content, undefined);
    assert.equal(offMessage.content, raw.replace(markers, ''));
  } finally {
    await stop();
    t.cleanup();
  }
});

test('reasoning_effort reaches the chat template (library and server); a value other than low, medium, high is a 400 naming it', async () => {
  const t = tempDir();
  const dir = writeChatModel(t.dir, "{% if reasoning_effort is defined %}<|system|>Reasoning: {{ reasoning_effort }}. Think it over and over.\n{% endif %}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}");
  const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
  const model = await loadModel(dir, { backend: 'reference' });
  const promptTokens = (o: { reasoningEffort?: 'low' | 'high' }) => model.complete(null, { messages, maxTokens: 1, ...o }).then((r) => r.promptTokens);
  const [none, low, high] = [await promptTokens({}), await promptTokens({ reasoningEffort: 'low' }), await promptTokens({ reasoningEffort: 'high' })];
  const rendered = (effort?: string) => model.encodeText(`${effort ? `<|system|>Reasoning: ${effort}. Think it over and over.\n` : ''}<|user|>Tell me a story\n<|assistant|>`, false).length;
  assert.deepEqual([none, low, high], [rendered(), rendered('low'), rendered('high')]);
  assert.ok(low > none);
  model.dispose();
  const { client, base, stop } = await serveModel(dir);
  try {
    const r = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 1, reasoning_effort: 'high' });
    assert.equal(r.usage?.prompt_tokens, high);
    const bad = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages, reasoning_effort: 'extreme' }) });
    assert.equal(bad.status, 400);
    const body = (await bad.json()) as { error: { param: string; message: string } };
    assert.equal(body.error.param, 'reasoning_effort');
    assert.match(body.error.message, /low, medium, high/);
  } finally {
    await stop();
    t.cleanup();
  }
});
