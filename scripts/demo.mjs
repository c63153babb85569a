// `npm run demo`: builds the demo page (web/) with Vite into dist/demo and serves it on loopback with
// the headers that make the page cross-origin isolated (COOP same-origin, COEP require-corp), so the
// engine's Web Worker runs the wasm kernels on several threads. The models of --models DIR (default
// ../shared/models beside the repository, when it is there) are served under /models/ (Range requests
// answered) and listed in /models.json, which the page offers first.
// Usage: node scripts/demo.mjs [--port 5173] [--host 127.0.0.1] [--models DIR] [--no-build] [--no-isolation]
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const DEMO_DIR = join(root, 'dist', 'demo');
export const DEFAULT_MODELS = resolve(root, '..', 'shared', 'models');

/** Builds web/ into `outDir` (dist/wasm must exist: npm run build). */
export async function buildDemo(outDir = DEMO_DIR, logLevel = 'warn') {
  for (const f of ['kernels.wasm', 'kernels-relaxed.wasm']) {
    if (!existsSync(join(root, 'dist', 'wasm', f))) throw new Error(`demo: dist/wasm/${f} is missing (run npm run build first)`);
  }
  const { build, createLogger } = await import('vite');
  // Two kinds of Vite warning are expected here and said once, not 30 times. Vite notes each node:
  // import it replaces with an empty module: they belong to the path-based loaders (files by path, the
  // CLI's calibration-file flags) that the browser build never calls, and the bundle imports no Node
  // module (test/package/consumer.test.ts checks it). And the browser entry's default kernel URLs
  // point from dist/src/browser to dist/wasm: built from src/ they point nowhere, and the page passes
  // the dist/wasm URLs itself.
  const logger = createLogger(logLevel);
  const { warn, warnOnce } = logger;
  const kernelUrl = (msg) => /wasm\/kernels(-relaxed)?\.wasm.*doesn't exist at build time/.test(msg);
  const externalized = (msg) => msg.includes('externalized for browser compatibility');
  let noted = false;
  const filtered = (pass) => (msg, o) => {
    if (kernelUrl(msg)) return;
    if (!externalized(msg)) return pass(msg, o);
    if (!noted && logLevel === 'info') logger.info('demo: node: imports of the path-based loaders are left out of the browser build');
    noted = true;
  };
  logger.warn = filtered(warn);
  logger.warnOnce = filtered(warnOnce);
  await build({
    configFile: false,
    customLogger: logger,
    root: join(root, 'web'),
    base: './',
    logLevel,
    build: { outDir, emptyOutDir: true, target: 'es2022', assetsInlineLimit: 0 },
    worker: { format: 'es' },
  });
  return outDir;
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};
/** The files that make a model, as the page loads them. */
const MODEL_FILE = /^(config\.json|generation_config\.json|model\.safetensors|tokenizer\.json|tokenizer_config\.json|.*\.bin)$/;

/** { name: [files] } for each folder of `dir` holding a llama2.c checkpoint or a Hugging Face model. */
export function listModels(dir) {
  const out = {};
  if (!dir || !existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const d = join(dir, name);
    if (!statSync(d).isDirectory()) continue;
    const files = readdirSync(d).filter((f) => MODEL_FILE.test(f) && statSync(join(d, f)).isFile());
    if (files.some((f) => f.endsWith('.bin') && !f.startsWith('tok')) || files.includes('config.json')) out[name] = files;
  }
  return out;
}

function inside(base, rel) {
  const p = normalize(join(base, rel));
  return p === base || p.startsWith(base + sep) ? p : null;
}

/**
 * Serves `dir` (and the models of `modelsDir` under /models/) on host:port; resolves to the server once
 * listening. `isolate: false` leaves out the cross-origin isolation headers (the page then runs the
 * kernels on one thread).
 */
export function serveDemo({ dir = DEMO_DIR, modelsDir = DEFAULT_MODELS, port = 5173, host = '127.0.0.1', isolate = true } = {}) {
  const ISOLATION = isolate ? ISOLATION_HEADERS : {};
  const server = createServer((req, res) => {
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { ...ISOLATION, 'Content-Type': type });
      res.end(body);
    };
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, 'bad path\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    if (path === '/models.json') return send(200, JSON.stringify(listModels(modelsDir)), TYPES['.json']);
    const file = path.startsWith('/models/') ? (modelsDir ? inside(modelsDir, path.slice('/models/'.length)) : null) : inside(dir, path === '/' ? 'index.html' : path.slice(1));
    if (!file || !existsSync(file) || !statSync(file).isFile()) return send(404, 'not found\n');
    const size = statSync(file).size;
    const headers = { ...ISOLATION, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(size - 1, range[2] ? Number(range[2]) : size - 1);
      if (start >= size || end < start) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
        return res.end();
      }
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
      return req.method === 'HEAD' ? res.end() : createReadStream(file, { start, end }).pipe(res);
    }
    res.writeHead(200, { ...headers, 'Content-Length': size });
    return req.method === 'HEAD' ? res.end() : createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok(server));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' }, models: { type: 'string' }, 'no-build': { type: 'boolean' }, 'no-isolation': { type: 'boolean' } } });
  const host = values.host ?? '127.0.0.1';
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) console.error(`demo: serving on ${host}, not only on loopback`);
  if (!values['no-build']) await buildDemo(DEMO_DIR, 'info');
  const modelsDir = values.models ? resolve(values.models) : existsSync(DEFAULT_MODELS) ? DEFAULT_MODELS : null;
  const server = await serveDemo({ modelsDir, port: Number(values.port ?? 5173), host, isolate: !values['no-isolation'] });
  const { port } = server.address();
  console.log(`demo: http://${host.includes(':') ? `[${host}]` : host}:${port}/  (models: ${modelsDir ?? 'none; the page loads from the Hub'}; Ctrl-C stops)`);
}
