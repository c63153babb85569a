// Compiles the AssemblyScript kernels (asm/*.ts) twice: dist/wasm/kernels.wasm (SIMD128) and
// dist/wasm/kernels-relaxed.wasm (SIMD128 plus relaxed SIMD, where common.ts's madd is a fused
// multiply-add; the host loads it when the engine accepts relaxed SIMD). Both: threads on, memory
// imported from env.memory and shared (so the main thread and every worker run on one
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
const outDir = join(root, 'dist', 'wasm');
/** Output file -> extra asc features. */
const variants = [
  { file: join(outDir, 'kernels.wasm'), features: [] },
  { file: join(outDir, 'kernels-relaxed.wasm'), features: ['relaxed-simd'] },
];
/** 65536 pages = 4 GiB, the wasm32 limit; the host picks its own maximum up to this. */
const MAX_PAGES = 65536;

const force = process.argv.includes('--force');
const wantWat = process.argv.includes('--wat');

function inputs() {
  const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts')).map((f) => join(srcDir, f));
  files.push(fileURLToPath(import.meta.url));
  return files;
}

function upToDate(outFile) {
  if (!existsSync(outFile)) return false;
  const built = statSync(outFile).mtimeMs;
  return inputs().every((f) => statSync(f).mtimeMs <= built);
}

const { default: asc } = await import('assemblyscript/asc');
mkdirSync(outDir, { recursive: true });
for (const { file, features } of variants) {
  if (force || !upToDate(file)) await build(file, features);
}

async function build(outFile, features) {
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
    ...features.flatMap((f) => ['--enable', f]),
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
}
