// A bounded run of the fuzzer (scripts/fuzz; `npm run fuzz` runs it at length): mutated files of every
// format, loaded through loadModel in worker processes, must each load or fail with a one-line
// KvsieveError under 300 characters; no other error, crash, hang or memory blow-up. Light scale: values
// of up to 100,000 items (a million-item one costs half a second to parse), about 25 s on 2 cores.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFECTS, formatReport, runFuzz } from '../../scripts/fuzz/runner.js';
import { buildCase } from '../../scripts/fuzz/cases.js';
import { buildSeeds, FORMATS, seedsFor } from '../../scripts/fuzz/seeds.js';
import { tempDir } from '../helpers.js';

const SMOKE_SEED = 20240607;
const SMOKE_CASES = 2000;

test(`fuzz smoke: ${SMOKE_CASES} mutated checkpoints, configs, tokenizers and templates give no defect`, { timeout: 240_000 }, async () => {
  const report = await runFuzz({ seed: SMOKE_SEED, cases: SMOKE_CASES, workers: 2, light: true });
  assert.equal(report.cases, SMOKE_CASES);
  const defects = Object.values(report.counts).reduce((n, c) => n + DEFECTS.reduce((m, x) => m + c[x], 0), 0);
  assert.equal(defects, 0, formatReport(report));
  for (const f of FORMATS) {
    const c = report.counts[f];
    // every format both loads and is refused: the mutations reach past the first check, and not all break it
    assert.ok(c.ok + c['ok-nonfinite'] > 0 && c.refused > 0, `${f}: ${JSON.stringify(c)}`);
  }
  assert.ok(report.maxHwmKb < 2 * 1024 * 1024);
});

test('fuzz harness: a case over the time limit counts as a hang and one over the memory limit as memory; workers are replaced', { timeout: 120_000 }, async () => {
  const hangs = await runFuzz({ seed: 1, cases: 3, formats: ['llama2c'], workers: 1, caseTimeoutMs: 1 });
  assert.equal(hangs.counts.llama2c.hang, 3, formatReport(hangs));
  assert.equal(hangs.examples.hang?.[0]?.seedName, 'llama2c-stories');
  const memory = await runFuzz({ seed: 1, cases: 2, formats: ['tok512'], workers: 1, memoryLimitMb: 16 });
  assert.equal(memory.counts.tok512.memory, 2, formatReport(memory));
});

test('fuzz harness: a case is a function of (seed, format, index), so --case reruns it alone', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    buildSeeds(dir);
    const seeds = seedsFor(dir, 'tokenizer');
    const a = buildCase(3, 'tokenizer', 5, seeds);
    assert.deepEqual(buildCase(3, 'tokenizer', 5, seeds), a);
    assert.notDeepEqual(buildCase(4, 'tokenizer', 5, seeds).what, a.what);
    const one = await runFuzz({ seed: 3, cases: 0, formats: ['tokenizer'], only: 5 });
    assert.equal(one.single?.index, 5);
    assert.deepEqual(one.single?.what, a.what);
  } finally {
    cleanup();
  }
});
