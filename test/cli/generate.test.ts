import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrace } from '../../src/api/trace.js';
import { kvsieve, tempDir } from '../helpers.js';

test('generate --trace FILE writes a header, one line per step and the result', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'trace.jsonl');
    const args = ['generate', '--threads', '1', '--press', 'streaming-llm', '--budget', '8', '--buffer', '4', '--sinks', '2', '--max-tokens', '12', '--json'];
    const r = kvsieve([...args, '--trace', file, 'Once upon a time']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { generatedIds: number[]; peakKvBytes: number; text: string };
    const t = parseTrace(readFileSync(file, 'utf8'), file);
    assert.equal(t.header.press, 'streaming-llm');
    assert.deepEqual(t.header.compression, { budget: 8, sinks: 2, buffer: 4 });
    assert.deepEqual([t.header.layers, t.header.kvHeads], [5, 4]);
    assert.deepEqual(t.steps.map((s) => s.token), out.generatedIds);
    assert.deepEqual(t.steps.at(-1)!.positions[0]![0], [0, 1, 10, 11, 12, 13, 14, 15]);
    assert.equal(t.result?.peakKvBytes, out.peakKvBytes);
    assert.equal(t.result?.text, out.text);

    const bad = kvsieve([...args, '--trace', join(dir, 'no', 'such', 'dir', 'x.jsonl'), 'Once']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--trace: cannot write .*x\.jsonl/);
  } finally {
    cleanup();
  }
});

test('parseTrace names the line and field at fault', () => {
  assert.throws(() => parseTrace('', 'f'), /^KvsieveError: f: empty/);
  assert.throws(() => parseTrace('{"kind":"x"}', 'f'), /f: line 1: "kind" must be "kvsieve-trace"/);
  const h = '{"kind":"kvsieve-trace","version":1,"layers":1,"kvHeads":2}';
  assert.throws(() => parseTrace(`${h}\n{"kind":"step","positions":[[[0]]]}`, 'f'), /f: line 2: "positions" must be 1 layers of 2 lists/);
  assert.throws(() => parseTrace(`${h}\nnope`, 'f'), /f: line 2: not JSON/);
  assert.equal(parseTrace(`${h}\n{"kind":"step","step":1,"processed":1,"kvBytes":1,"fullKvBytes":1,"positions":[[[0],[0]]]}`).steps.length, 1);
});
