import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InternalError, KvsieveError, classify, ensure } from '../../src/core/errors.js';
import * as api from '../../src/index.js';

test('the package exports both error kinds', () => {
  assert.equal(api.KvsieveError, KvsieveError);
  assert.equal(api.InternalError, InternalError);
  const bad = new KvsieveError('maxTokens must be a whole number >= 0, got -1', { option: 'maxTokens' });
  assert.equal(bad.name, 'KvsieveError');
  assert.equal(bad.option, 'maxTokens');
  assert.equal(new KvsieveError('x.json: invalid JSON').option, undefined);
  const fault = new InternalError('kv cache: head 3 outside 0..1');
  assert.equal(fault.name, 'InternalError');
  assert.ok(!(fault instanceof KvsieveError) && !((bad as unknown) instanceof InternalError));
});

test('messageFor spells the option another way, only where the message names its path as a whole word', () => {
  const e = new KvsieveError('maxTokens must be a whole number >= 0, got -1', { option: 'maxTokens' });
  assert.equal(e.messageFor('--max-tokens'), '--max-tokens must be a whole number >= 0, got -1');
  // The press name q-filters holds "filters" as part of a kebab-case word: the option is the quoted one.
  const f = new KvsieveError('q-filters: option "filters" is required (calibrated filters)', { option: 'filters' });
  assert.equal(f.messageFor('--q-filters'), 'q-filters: option "--q-filters" is required (calibrated filters)');
  // Only the first mention is the option at fault; a path is not matched inside a longer path.
  const b = new KvsieveError('r-kv: option "budget" (4) must be larger than window (8); budget counts the window', { option: 'budget' });
  assert.equal(b.messageFor('kvsieve.budget'), 'r-kv: option "kvsieve.budget" (4) must be larger than window (8); budget counts the window');
  assert.equal(new KvsieveError('a.budget is bad', { option: 'budget' }).messageFor('X'), 'X: a.budget is bad');
  // A message that does not name its option gets the name in front; one without an option is left alone.
  assert.equal(new KvsieveError('must be positive', { option: 'topK' }).messageFor('--top-k'), '--top-k: must be positive');
  assert.equal(new KvsieveError('config.json: missing field "x"').messageFor('--y'), 'config.json: missing field "x"');
  // "$" and "." in a name are taken literally.
  assert.equal(new KvsieveError('seed is bad', { option: 'seed' }).messageFor('$&.$1'), '$&.$1 is bad');
});

test('under nests the option and its mention, keeping the original as the cause', () => {
  const inner = new KvsieveError('r-kv: option "budget" (4) must be larger than window (8)', { option: 'budget' });
  const outer = inner.under('compression');
  assert.ok(outer instanceof KvsieveError);
  assert.equal(outer.option, 'compression.budget');
  assert.equal(outer.message, 'r-kv: option "compression.budget" (4) must be larger than window (8)');
  assert.equal(outer.cause, inner);
  assert.equal(outer.messageFor('--budget'), 'r-kv: option "--budget" (4) must be larger than window (8)');
  const plain = new KvsieveError('qf/model.safetensors: no tensor "q_filters"');
  assert.equal(plain.under('compression'), plain);
});

test('classify keeps the two kinds and turns anything else into an internal fault', () => {
  const bad = new KvsieveError('x');
  const fault = new InternalError('y');
  assert.equal(classify(bad, 'ctx'), bad);
  assert.equal(classify(fault, 'ctx'), fault);
  const type = new TypeError("Cannot read properties of undefined (reading 'length')\n    at somewhere");
  const c = classify(type, 'generation step failed');
  assert.ok(c instanceof InternalError);
  assert.equal(c.message, "generation step failed: TypeError: Cannot read properties of undefined (reading 'length')");
  assert.equal(c.cause, type);
  const s = classify('a thrown string', 'ctx');
  assert.ok(s instanceof InternalError && s.message === 'ctx: a thrown string');
  const { RuntimeError } = (globalThis as unknown as { WebAssembly: { RuntimeError: ErrorConstructor } }).WebAssembly;
  const trap = new RuntimeError('unreachable');
  assert.equal(classify(trap, 'step').message, 'step: RuntimeError: unreachable');
});

test('ensure guards internal invariants: it throws an InternalError', () => {
  ensure(true, 'never');
  assert.throws(() => ensure(false, () => 'wasm alloc: bad size -1 / alignment 3'), (e: unknown) => e instanceof InternalError && e.message === 'wasm alloc: bad size -1 / alignment 3');
});
