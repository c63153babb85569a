// Compiles the AssemblyScript kernels (asm/*.ts) into dist/wasm/kernels.wasm: SIMD on, threads on,
// memory imported from env.memory and shared (so the main thread and every worker run on one
// WebAssembly.Memory), stub runtime (the kernels never allocate), no assertions.
//
// Usage: node scripts/build-wasm.mjs [--force] [--wat]
// Skips the build when the .wasm is newer than every input; writes through a temporary file and a
// rename, so concurrent builds (parallel test files) never leave a torn module behind.
import { mkdirSync, readdirSync, renameSync, statSync, existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'asm');
const outFile = join(root, 'dist', 'wasm', 'kernels.wasm');
/** 65536 pages = 4 GiB, the wasm32 limit; the host picks its own maximum up to this. */
const MAX_PAGES = 65536;

const force = process.argv.includes('--force');
const wantWat = process.argv.includes('--wat');

function inputs() {
  const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts')).map((f) => join(srcDir, f));
  files.push(fileURLToPath(import.meta.url));
  return files;
}

function upToDate() {
  if (!existsSync(outFile)) return false;
  const built = statSync(outFile).mtimeMs;
  return inputs().every((f) => statSync(f).mtimeMs <= built);
}

if (!force && upToDate()) process.exit(0);

const { default: asc } = await import('assemblyscript/asc');
mkdirSync(dirname(outFile), { recursive: true });
const tmp = `${outFile}.${process.pid}.tmp`;
const args = [
  join(srcDir, 'index.ts'),
  '--outFile', tmp,
  '--optimizeLevel', '3',
  '--shrinkLevel', '0',
  '--noAssert',
  '--runtime', 'stub',
  '--enable', 'simd',
  '--enable', 'threads',
  '--importMemory',
  '--sharedMemory',
  '--initialMemory', '1',
  '--maximumMemory', String(MAX_PAGES),
  '--noExportMemory',
];
if (wantWat) args.push('--textFile', outFile.replace(/\.wasm$/, '.wat'));
let stderr = '';
const { error } = await asc.main(args, {
  stdout: { write: (s) => process.stdout.write(s) },
  stderr: { write: (s) => { stderr += s; } },
});
if (error) {
  rmSync(tmp, { force: true });
  process.stderr.write(stderr);
  console.error(`build-wasm: ${error.message}`);
  process.exit(1);
}
if (stderr.trim()) process.stderr.write(stderr);
renameSync(tmp, outFile);
console.log(`build-wasm: wrote ${outFile} (${statSync(outFile).size} bytes)`);
