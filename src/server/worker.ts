/**
 * The engine thread of `kvsieve serve`: loads the model named in workerData and runs it as a local
 * engine (engine.ts), driven by messages from the HTTP thread (worker-engine.ts):
 *   in:  submit { id, request } | cancel { id } | close
 *   out: ready { info } | failed { error } | start/chunk/done/error { id, ... } | stats { stats }
 * Steps run here; the HTTP thread only parses, validates and writes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadModel, type LoadOptions } from '../api.js';
import type { KvPoolStats } from '../generate/pool.js';
import { localEngine, toWire, type EngineRequest } from './engine.js';

/** Least time between two gauges posted while the batch runs; the idle gauge is always posted. */
const STATS_MS = 50;

export type ToWorker = { t: 'submit'; id: number; request: EngineRequest } | { t: 'cancel'; id: number } | { t: 'close' };

const port = parentPort!;
const { path, load } = workerData as { path: string | undefined; load: Omit<LoadOptions, 'onStep' | 'backend'> & { backend?: 'wasm' | 'reference' | 'webgpu' } };

let lastPost = 0;
let trailing: NodeJS.Timeout | null = null;
let latest: KvPoolStats | null = null;
/** Posts the gauge now, or at most STATS_MS after the last post; an idle batch's gauge goes at once. */
function postStats(s: KvPoolStats): void {
  latest = s;
  const now = performance.now();
  if (s.running + s.waiting === 0 || now - lastPost >= STATS_MS) {
    if (trailing) clearTimeout(trailing), (trailing = null);
    lastPost = now;
    port.postMessage({ t: 'stats', stats: s });
  } else if (!trailing) {
    trailing = setTimeout(() => {
      trailing = null;
      lastPost = performance.now();
      port.postMessage({ t: 'stats', stats: latest });
    }, STATS_MS - (now - lastPost));
  }
}

try {
  const model = await loadModel(path, { ...load, onStep: postStats });
  const engine = localEngine(model);
  const cancels = new Map<number, () => void>();
  port.on('message', (m: ToWorker) => {
    if (m.t === 'submit') {
      const { id } = m;
      let open = 0; // the request's samples still running
      let finished = false;
      const end = () => {
        finished = true;
        cancels.delete(id);
        postStats(model.kvStats());
      };
      const cancel = engine.submit(m.request, {
        start: (info) => {
          open = m.request.n;
          port.postMessage({ t: 'start', id, ...info });
        },
        chunk: (index, chunk) => port.postMessage({ t: 'chunk', id, index, chunk }),
        done: (index, result) => {
          port.postMessage({ t: 'done', id, index, result });
          if (--open === 0) end();
        },
        error: (e) => {
          port.postMessage({ t: 'error', id, error: toWire(e) });
          end();
        },
      });
      if (!finished) cancels.set(id, cancel);
      postStats(model.kvStats());
    } else if (m.t === 'cancel') {
      cancels.get(m.id)?.();
      postStats(model.kvStats());
    } else {
      model.dispose();
      port.close();
    }
  });
  port.postMessage({ t: 'ready', info: { info: model.info(), config: model.config } });
  postStats(model.kvStats());
} catch (e) {
  port.postMessage({ t: 'failed', error: toWire(e) });
}
