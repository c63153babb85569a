import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeFailure, EXIT_INTERNAL } from '../../src/cli/errors.js';
import { InternalError, KvsieveError } from '../../src/core/errors.js';
import { wasm } from '../../src/backend/wasm/wasm-api.js';
import { kvsieve, repoRoot, sharedDir, stories260K, tempDir } from '../helpers.js';

const golden = JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')).generations[0];

test('generate with the default model streams the run.c story and --json reports the run', () => {
  const r = kvsieve(['generate', '--weights', 'f32', '--max-tokens', '30', 'Once upon a time']);
  assert.equal(r.code, 0, r.stderr);
  const story = golden.text.slice('Once upon a time'.length);
  assert.ok(story.startsWith(r.stdout.trimEnd()), `stdout: ${r.stdout}`);
  assert.ok(r.stdout.length > 60);

  const j = kvsieve(['generate', '--backend', 'reference', '--json', '--max-tokens', '20', 'Once upon a time']);
  assert.equal(j.code, 0, j.stderr);
  const out = JSON.parse(j.stdout);
  assert.deepEqual([...out.promptIds, ...out.generatedIds], golden.ids.slice(0, 25));
  assert.equal(out.stopReason, 'max-tokens');
  assert.ok(out.prefillTokensPerSecond > 0 && out.decodeTokensPerSecond > 0);
  // 25 tokens fed at most 24 (the last sampled one is never fed): 24 x 1280 bytes per token.
  assert.equal(out.peakKvBytes, 24 * 1280);
});

test('--prompt-ids drives a model without a tokenizer', () => {
  const fixture = join(sharedDir, 'fixtures/tiny-models/qwen3-BF16');
  const expected = JSON.parse(readFileSync(join(fixture, 'expected.json'), 'utf8'));
  const r = kvsieve(['generate', '--model', fixture, '--weights', 'f32', '--json', '--ignore-eos', '--max-tokens', '20', '--prompt-ids', expected.prompt_ids.join(',')]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).generatedIds, expected.greedy_ids);
});

test('info prints architecture, parameters, dtype, context and KV bytes per token', () => {
  const r = kvsieve(['info', '--json', '--model', join(sharedDir, 'fixtures/tiny-models/qwen3-BF16')]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.architecture, 'qwen3');
  assert.equal(info.dtype, 'BF16');
  assert.equal(info.contextLength, 4096);
  // 2 (K,V) x 3 layers x 2 KV heads x 24 head dim x 4 bytes
  assert.equal(info.kvBytesPerToken, 2 * 3 * 2 * 24 * 4);
  // embed 300x64 (tied) + per layer: norms 2x64, q 64x96, k,v 64x48 each, o 96x64, mlp 3x64x160, q/k norm 2x24; final norm 64
  assert.equal(info.parameters, 300 * 64 + 3 * (2 * 64 + 64 * 96 + 2 * 64 * 48 + 96 * 64 + 3 * 64 * 160 + 2 * 24) + 64);
  const text = kvsieve(['info']);
  assert.match(text.stdout, /parameters\s+260,032/);
});

test('errors are one clear line with a non-zero exit; --help works everywhere', () => {
  const bad = kvsieve(['generate', '--max-tokens', 'many', 'hi']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr.trim(), 'kvsieve: --max-tokens must be a whole number in [0, inf], got "many"');
  const unknown = kvsieve(['generate', '--frobnicate', 'hi']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /Unknown option '--frobnicate'/);
  assert.equal(unknown.stderr.trim().split('\n').length, 1);
  const missing = kvsieve(['generate', '--model', '/nonexistent/model', 'hi']);
  assert.equal(missing.code, 1);
  assert.doesNotMatch(missing.stderr, /at .*\.ts:\d+/);
  const debug = kvsieve(['generate', '--model', '/nonexistent/model', '--debug', 'hi']);
  assert.match(debug.stderr, /at .*\(/);
  const long = kvsieve(['generate', '--prompt-ids', Array.from({ length: 600 }, () => 5).join(',')]);
  assert.equal(long.code, 1);
  assert.match(long.stderr, /600 tokens but the model's context is 512/);
  for (const args of [['--help'], ['generate', '--help'], ['info', '--help']]) {
    const h = kvsieve(args);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: kvsieve/);
  }
  assert.equal(kvsieve(['frob']).code, 2);
});

test('generate --press compresses for real: peak KV within budget + buffer; bad press options are named', () => {
  const r = kvsieve(['generate', '--json', '--press', 'r-kv', '--budget', '32', '--buffer', '16', '--max-tokens', '300', '--ignore-eos', 'Once upon a time']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.generatedTokens, 300);
  assert.equal(out.press, 'r-kv');
  assert.ok(out.compressions >= 10);
  assert.ok(out.peakKvBytes <= (32 + 16) * 5 * 4 * 8 * 2 * 4, `peak ${out.peakKvBytes}`);
  const cases: [string[], RegExp][] = [
    [['--press', 'r-kv', '--budget', '8'], /budget" \(8\) must be larger than window \(8\)/],
    [['--press', 'r-kv', '--budget', '64', '--lambda', '1.5'], /lambda/],
    [['--press', 'nope', '--budget', '64'], /unknown press "nope"/],
    [['--press', 'q-filters', '--budget', '100'], /q-filters: option "--q-filters" is required/],
    [['--press', 'snapkv', '--budget', '64', '--sinks', '4'], /unknown option --sinks/],
    [['--budget', '64'], /--budget needs --press/],
    [['--press', 'q-filters', '--budget', '100', '--q-filters', '/nonexistent'], /\/nonexistent: no Q-Filters file/],
  ];
  for (const [flags, pattern] of cases) {
    const bad = kvsieve(['generate', ...flags, 'hi']);
    assert.equal(bad.code, 1, flags.join(' '));
    assert.match(bad.stderr, pattern);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  }
  const list = kvsieve(['presses']);
  for (const p of ['streaming-llm', 'h2o', 'tova', 'knorm', 'snapkv', 'pyramidkv', 'ada-kv', 'q-filters', 'r-kv', 'mix-kv', 'triattention', 'random-pp']) {
    assert.match(list.stdout, new RegExp(`^${p}: `, 'm'));
  }
  assert.match(list.stdout, /--lambda \(number\) default 0\.1/);
});

test('calibrate q-filters writes the published layout that generate --q-filters loads', () => {
  const t = tempDir();
  try {
    const story = golden.text as string;
    writeFileSync(join(t.dir, 'data.txt'), `${story}\n${story.split('').reverse().join('')}\n${story}`);
    const out = join(t.dir, 'qf');
    const cal = kvsieve(['calibrate', 'q-filters', '--data', join(t.dir, 'data.txt'), '--out', out, '--sequences', '3', '--seq-len', '128', '--samples', '100']);
    assert.equal(cal.code, 0, cal.stderr);
    assert.match(cal.stderr, /3 sequences/);
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')), { num_layers: 5, num_kv_heads: 4, kv_head_dim: 8 });
    const gen = kvsieve(['generate', '--json', '--press', 'q-filters', '--q-filters', out, '--budget', '40', '--window', '8', '--buffer', '16', '--max-tokens', '200', '--ignore-eos', 'Once upon a time']);
    assert.equal(gen.code, 0, gen.stderr);
    const r = JSON.parse(gen.stdout);
    assert.ok(r.compressions > 5 && r.peakKvBytes <= 56 * 5 * 4 * 8 * 2 * 4);
    const missing = kvsieve(['calibrate', 'q-filters', '--out', out]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--data FILE\.txt is required/);
  } finally {
    t.cleanup();
  }
});

test('calibrate triattention writes statistics that generate and eval read; --from converts a published .pt', () => {
  const t = tempDir();
  try {
    const story = golden.text as string;
    writeFileSync(join(t.dir, 'data.txt'), `${story}\n${story}`);
    const out = join(t.dir, 'tri.safetensors');
    const cal = kvsieve(['calibrate', 'triattention', '--data', join(t.dir, 'data.txt'), '--out', out, '--max-length', '200', '--sequences', '2']);
    assert.equal(cal.code, 0, cal.stderr);
    assert.match(cal.stderr, /triattention: 2 sequences, \d+ tokens/);
    const gen = kvsieve(['generate', '--json', '--press', 'triattention', '--triattention-stats', out, '--budget', '40', '--buffer', '16', '--max-tokens', '200', '--ignore-eos', 'Once upon a time']);
    assert.equal(gen.code, 0, gen.stderr);
    const r = JSON.parse(gen.stdout);
    assert.ok(r.compressions > 5 && r.peakKvBytes <= 56 * 5 * 4 * 8 * 2 * 4);
    // protect-prompt on another press, random-pp with its defaults scaled down
    const pp = kvsieve(['generate', '--json', '--press', 'snapkv', '--protect-prompt', 'true', '--budget', '40', '--buffer', '16', '--max-tokens', '100', '--ignore-eos', 'Once upon a time']);
    assert.equal(pp.code, 0, pp.stderr);
    const rp = kvsieve(['generate', '--json', '--press', 'random-pp', '--window', '8', '--budget', '40', '--max-tokens', '100', '--ignore-eos', 'Once upon a time']);
    assert.equal(rp.code, 0, rp.stderr);
    assert.ok(JSON.parse(rp.stdout).peakKvBytes <= (40 + 64) * 5 * 4 * 8 * 2 * 4, 'buffer 64 by default');
    // the published layout converts to kvsieve's, value for value
    const conv = join(t.dir, 'conv.safetensors');
    const fixture = join(repoRoot, 'test', 'formats', 'fixtures', 'triattention-tiny.pt');
    const c = kvsieve(['calibrate', 'triattention', '--from', fixture, '--out', conv]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, /2 layers x 4 query heads x 3 bands/);
    // eval takes the statistics and the +pp variants
    const ev = kvsieve(['eval', 'fidelity', '--presses', 'triattention,r-kv+pp,random-pp', '--triattention-stats', out, '--window', '8', '--budgets', '40', '--max-tokens', '60', '--results', join(t.dir, 'f.jsonl')]);
    assert.equal(ev.code, 0, ev.stderr);
    for (const label of ['triattention', 'r-kv+pp', 'random-pp']) assert.match(ev.stdout, new RegExp(`^${label.replace('+', '\\+')} +40 `, 'm'));
    // --seed stays the sampling seed, with and without a press (random-pp's own is --random-seed)
    for (const press of [[], ['--press', 'r-kv', '--budget', '32'], ['--press', 'random-pp', '--window', '8', '--budget', '32', '--random-seed', '4']]) {
      const seeded = kvsieve(['generate', '--seed', '3', '--temperature', '1', '--max-tokens', '5', ...press, 'Once']);
      assert.equal(seeded.code, 0, seeded.stderr);
    }
    const bad = kvsieve(['calibrate', 'triattention', '--out', conv]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /give exactly one of --data FILE\.txt, --prompts FILE\.txt, --from FILE\.pt/);
    const noStats = kvsieve(['eval', 'fidelity', '--presses', 'triattention', '--budgets', '40', '--max-tokens', '10', '--results', join(t.dir, 'g.jsonl')]);
    assert.equal(noStats.code, 1);
    assert.match(noStats.stderr, /--presses triattention needs --triattention-stats/);
  } finally {
    t.cleanup();
  }
});

test('bad flags are named by their flags, also when the library refuses the value', () => {
  const cases: [string[], string][] = [
    [['--kv-dtype', 'q3'], 'kvsieve: --kv-dtype must be one of f32, f16, int8, got "q3"'],
    [['--weights', 'q9'], 'kvsieve: --weights must be one of f32, f16, bf16, q8_0, q4_0, stored, got "q9"'],
    [['--backend', 'gpu'], 'kvsieve: --backend must be "wasm", "reference", "webgpu" or a Backend instance, got "gpu"'],
    [['--backend', 'webgpu', '--weights', 'bf16'], 'kvsieve: --weights bf16 is not available on the webgpu backend (f32, f16, q8_0 or q4_0; bf16 and stored K-quants need the wasm backend)'],
    [['--backend', 'reference', '--weights', 'q4_0'], 'kvsieve: --weights q4_0 needs the wasm backend (the reference backend keeps f32)'],
    [['--press', 'r-kv', '--budget', '64', '--schedule', 'often'], 'kvsieve: option "--schedule" must be one of decode, prefill, both, got "often"'],
    [['--press', 'nope', '--budget', '64'], 'kvsieve: --press: unknown press "nope" (one of: full, streaming-llm, h2o, tova, knorm, snapkv, pyramidkv, ada-kv, q-filters, r-kv, mix-kv, triattention, random-pp)'],
  ];
  for (const [flags, line] of cases) {
    const r = kvsieve(['generate', '--max-tokens', '4', ...flags, 'hi']);
    assert.equal(r.code, 1, flags.join(' '));
    assert.equal(r.stderr, `${line}\n`);
  }
});

/**
 * A kernel module with the built one's ABI and imports whose `run` executes `unreachable`: the model
 * loads (f32 weights need no kernel run), and the first forward step traps inside wasm.
 */
function trappingKernels(): Uint8Array {
  const built = new wasm.Module(readFileSync(join(repoRoot, 'dist/wasm/kernels.wasm')));
  const memory = new wasm.Memory({ initial: 1, maximum: 65536, shared: true });
  const abi = (new wasm.Instance(built, { env: { memory } }).exports['abi_version'] as () => number)();
  const uleb = (n: number): number[] => (n < 0x80 ? [n] : [(n & 0x7f) | 0x80, ...uleb(n >>> 7)]);
  const sleb = (n: number): number[] => (n >= -64 && n < 64 ? [n & 0x7f] : [(n & 0x7f) | 0x80, ...sleb(n >> 7)]);
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const name = (t: string) => [...uleb(t.length), ...Buffer.from(t)];
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const I32 = 0x7f;
  const fn = (params: number, results: number) => [0x60, ...vec(Array.from({ length: params }, () => [I32])), ...vec(Array.from({ length: results }, () => [I32]))];
  const body = (code: number[]) => [...uleb(code.length + 2), 0x00, ...code, 0x0b];
  const constant = (v: number) => body([0x41, ...sleb(v)]);
  const exports: [string, number, number[]][] = [
    // name, type index, body
    ['run', 0, body([0x00])], // unreachable
    ['task_scratch', 1, constant(0)],
    ['heap_base', 2, constant(1024)],
    ['abi_version', 2, constant(abi)],
    ['split_point', 3, constant(0)],
    ['row_bytes', 4, constant(0)],
  ];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([fn(3, 0), fn(1, 1), fn(0, 1), fn(4, 1), fn(2, 1)])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(1), ...uleb(65536)]])),
    ...section(3, vec(exports.map(([, type]) => [type]))),
    ...section(7, vec(exports.map(([n], i) => [...name(n), 0x00, i]))),
    ...section(10, vec(exports.map(([, , b]) => b))),
  ];
  return Uint8Array.from(bytes);
}

test('an internal fault prints "internal error", how to report it, and exits 70; --debug gives the stack', () => {
  const t = tempDir();
  try {
    const trap = join(t.dir, 'trap.wasm');
    writeFileSync(trap, trappingKernels());
    const args = ['generate', '--weights', 'f32', '--threads', '1', '--max-tokens', '5', 'Once upon a time'];
    const r = kvsieve(args, { KVSIEVE_WASM: trap });
    assert.equal(r.code, EXIT_INTERNAL, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stderr);
    assert.equal(lines[0], 'kvsieve: internal error: wasm kernel failed: unreachable');
    assert.match(lines[1]!, /^kvsieve: this is a bug in kvsieve.*--debug.*file an issue/);
    const debug = kvsieve([...args, '--debug'], { KVSIEVE_WASM: trap });
    assert.equal(debug.code, EXIT_INTERNAL);
    assert.match(debug.stderr, /^InternalError: wasm kernel failed: unreachable\n\s+at /);
    assert.match(debug.stderr, /caused by: RuntimeError: unreachable/);

    // A kernel module that does not compile (a broken installation) is internal too, found at load.
    const junk = join(t.dir, 'junk.wasm');
    writeFileSync(junk, 'not wasm at all');
    const j = kvsieve(['generate', '--max-tokens', '5', 'hi'], { KVSIEVE_WASM: junk });
    assert.equal(j.code, EXIT_INTERNAL, j.stderr);
    assert.match(j.stderr, /^kvsieve: internal error: wasm kernels: cannot compile .*junk\.wasm/);
  } finally {
    t.cleanup();
  }
});

test('the CLI error printer: flag names per command, internal faults and unexpected exceptions', () => {
  const budget = new KvsieveError('r-kv: option "budget" (4) must be larger than window (8)', { option: 'budget' }).under('compression');
  assert.deepEqual(describeFailure(budget, 'generate', false), { text: 'kvsieve: r-kv: option "--budget" (4) must be larger than window (8)\n', code: 1 });
  // eval takes the budgets as one list flag
  assert.equal(describeFailure(budget, 'eval', false).text, 'kvsieve: r-kv: option "--budgets" (4) must be larger than window (8)\n');
  const memory = new KvsieveError('kvMemoryBytes (1024 bytes) holds no r-kv sequence (one needs 40960 bytes)', { option: 'kvMemoryBytes' });
  assert.equal(describeFailure(memory, 'bench', false).text, 'kvsieve: --kv-memory (1024 bytes) holds no r-kv sequence (one needs 40960 bytes)\n');
  const unmapped = new KvsieveError('prefillBlock must be a whole number >= 1, got 0', { option: 'prefillBlock' });
  assert.equal(describeFailure(unmapped, 'generate', false).text, 'kvsieve: prefillBlock must be a whole number >= 1, got 0\n');
  for (const e of [new InternalError('kv cache: head 7 outside 0..3'), new TypeError('x is not a function')]) {
    const { text, code } = describeFailure(e, 'generate', false);
    assert.equal(code, 70);
    const [first, second, rest] = text.split('\n');
    assert.match(first!, /^kvsieve: internal error: (kv cache: head 7 outside 0\.\.3|unexpected exception: TypeError: x is not a function)$/);
    assert.match(second!, /rerun the command with --debug/);
    assert.equal(rest, '');
  }
  const debug = describeFailure(new InternalError('outer', { cause: new RangeError('inner') }), 'generate', true);
  assert.equal(debug.code, 70);
  assert.match(debug.text, /^InternalError: outer\n\s+at [^]*\ncaused by: RangeError: inner\n\s+at /);
});
