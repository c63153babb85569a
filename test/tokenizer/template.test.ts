import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { loadHfTokenizer } from '../../src/tokenizer/hf.js';
import { compileTemplate, MAX_RANGE, renderTemplate, TemplateLimitError } from '../../src/tokenizer/template.js';
import { oneLineError, stories260K } from '../helpers.js';
import { storiesTokenizer, withTokenizer } from './files.js';

// Chat templates that used to run away.

test('chat templates: range() is bounded, loops are charged per iteration, and outputs cannot balloon', () => {
  const run = (source: string, vars: Record<string, unknown> = { messages: [] }) => {
    const t0 = performance.now();
    let out: string | Error;
    try {
      out = renderTemplate(compileTemplate(source), vars);
    } catch (e) {
      out = e as Error;
    }
    return { out, ms: performance.now() - t0 };
  };
  const limited = (source: string, pattern: RegExp) => {
    const { out, ms } = run(source);
    assert.ok(out instanceof TemplateLimitError, `${source}: ${String(out).slice(0, 100)}`);
    assert.match(out.message, pattern);
    assert.ok(ms < 5000, `${source} stopped in ${ms.toFixed(0)} ms`);
  };
  limited('{% for i in range(100000000) %}x{% endfor %}', /range\(\) of 100000000 values \(limit 100000\)/);
  limited('{% for i in range(0, 10 ** 300) %}x{% endfor %}', /range\(\) of 1e\+300 values/);
  limited('{{ range(10, 0, -0.000001) | length }}', /range\(\) of 10000000 values/);
  limited('{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}', /more than 300000 evaluation steps/);
  limited('{% set l = [] %}{% for i in range(50000) %}{% set l = l + [i] %}{% endfor %}', /(more than \d+ evaluation steps|characters and items built)/);
  limited("{% set s = namespace(v='ab') %}{% for i in range(30) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}", /a value of \d+ characters \(limit \d+\)/);
  // filters that repeat a space as often as an argument says (per line): the argument is bounded
  limited('{{ messages | tojson(indent=100000000) }}', /a filter argument of 100000000/);
  limited("{{ 'a\nb' | indent(10 ** 9) }}", /a filter argument of 1000000000/);
  assert.equal(run("{{ 'a\nb' | indent(2) }}|{{ [1] | tojson(indent=2) }}").out, 'a\n  b|[\n  1\n]');
  assert.equal(run(`{{ range(${MAX_RANGE}) | length }}`).out, String(MAX_RANGE));
  assert.equal(run('{% for i in range(3) %}{{ i }}{% endfor %}{{ range(5, 0, -2) | join(",") }}').out, '0125,3,1');
  // a long conversation is not a runaway template: the limits grow with what is rendered
  const chatml = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}";
  const messages = Array.from({ length: 2000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'word '.repeat(200) }));
  const { out } = run(chatml, { messages });
  assert.equal(typeof out === 'string' ? out.length : out, 2000 * 1000 + 1000 * ('<|im_start|>user\n<|im_end|>\n'.length + '<|im_start|>assistant\n<|im_end|>\n'.length));
  assert.match(run("{{ strftime_now('%Y') }}").out as string, /^\d{4}$/);
});

test('a runaway chat template fails as a one-line KvsieveError naming the template file', async () => {
  const config = JSON.parse(readFileSync(stories260K('hf', 'tokenizer_config.json'), 'utf8'));
  config.chat_template = "{% for i in range(100000000) %}{{ messages[0]['content'] }}{% endfor %}";
  await withTokenizer(storiesTokenizer(), config, async (dir) => {
    const tok = (await loadHfTokenizer(dir))!;
    assert.throws(() => tok.applyChatTemplate!([{ role: 'user', content: 'hi' }]), oneLineError(/tokenizer_config\.json: chat_template failed: range\(\) of 100000000 values \(limit 100000\)$/));
  });
  config.chat_template = `{{ ${'('.repeat(100_000)}1${')'.repeat(100_000)} }}`;
  await withTokenizer(storiesTokenizer(), config, async (dir) => {
    const tok = (await loadHfTokenizer(dir))!;
    assert.throws(() => tok.applyChatTemplate!([{ role: 'user', content: 'hi' }]), oneLineError(/tokenizer_config\.json: chat_template (does not parse|failed)/));
  });
});

test('an unreadable chat_template.jinja is a KvsieveError naming it', async () => {
  await withTokenizer(storiesTokenizer(), {}, async (dir) => {
    mkdirSync(join(dir, 'chat_template.jinja'));
    await assert.rejects(loadHfTokenizer(dir), oneLineError(/chat_template\.jinja: cannot read \(EISDIR/));
  });
});
