// The demo's engine worker: the engine answers the page's load / generate / cancel messages here, off
// the page's main thread (where the multi-threaded kernels could not wait on their workers).
import { serveEngine } from '../src/browser/index.js';

serveEngine();
