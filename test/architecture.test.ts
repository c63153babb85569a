// The import rules of .dependency-cruiser.cjs (docs/architecture.md, "Layers"), checked with dependency-cruiser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { cruise, type IForbiddenRuleType, type IReporterOutput } from 'dependency-cruiser';
import { tempDir } from './helpers.js';

const require = createRequire(import.meta.url);
const config = require('../.dependency-cruiser.cjs') as { forbidden: IForbiddenRuleType[] };

async function violations(baseDir?: string): Promise<{ rule: string; from: string; to: string }[]> {
  // web/ (the demo page) when it is there: it may reach src/ only through the browser entry
  const roots = ['src', 'web'].filter((d) => existsSync(join(baseDir ?? '.', d)));
  const r: IReporterOutput = await cruise(roots, {
    ruleSet: { forbidden: config.forbidden },
    validate: true,
    tsPreCompilationDeps: true,
    ...(baseDir ? { baseDir } : {}),
  });
  if (typeof r.output === 'string') throw new Error('dependency-cruiser gave text output');
  assert.ok(r.output.summary.totalCruised > 0, 'no module was cruised');
  return r.output.summary.violations.map((v) => ({ rule: v.rule.name, from: v.from, to: v.to }));
}

test('src/ keeps its layers: no import goes up or sideways, no module cycle', async () => {
  assert.deepEqual(await violations(), []);
});

test('the check fails on a forbidden import, a type-only one included', async () => {
  const { dir, cleanup } = tempDir('kvsieve-layers-');
  const file = (path: string, text: string) => {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  file('src/core/errors.ts', 'export class KvsieveError extends Error {}\n');
  file('src/model/llama.ts', "import { KvsieveError } from '../core/errors.js';\nexport class LlamaModel { e = KvsieveError; }\n");
  // formats sits below model: a format may not know the forward, not even its types.
  file('src/formats/gguf.ts', "import type { LlamaModel } from '../model/llama.js';\nexport type M = LlamaModel;\n");
  // rooms of one layer do not import each other
  file('src/press/snapkv.ts', "import { x } from '../kv/cache.js';\nexport const y = x;\n");
  file('src/kv/cache.ts', 'export const x = 1;\n');
  // a folder outside the layer table
  file('src/extras/thing.ts', "import { x } from '../kv/cache.js';\nexport const z = x;\n");
  assert.deepEqual(
    (await violations(dir)).sort((a, b) => a.from.localeCompare(b.from)),
    [
      { rule: 'known-room', from: 'src/extras/thing.ts', to: 'src/kv/cache.ts' },
      { rule: 'layer-formats', from: 'src/formats/gguf.ts', to: 'src/model/llama.ts' },
      { rule: 'layer-press', from: 'src/press/snapkv.ts', to: 'src/kv/cache.ts' },
    ],
  );
  cleanup();
});
