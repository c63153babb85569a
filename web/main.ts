// The demo page: loads a model into the engine's Web Worker, generates with one or two presses side by
// side, and draws what each KV cache holds at every step (the KV inspector), or a trace from a file.
import { EngineClient, parseTrace, PRESS_NAMES, type KvTraceEvent, type ModelSource, type TraceHeader, type TraceResult } from '../src/browser/index.js';
import relaxedUrl from '../dist/wasm/kernels-relaxed.wasm?url';
import simdUrl from '../dist/wasm/kernels.wasm?url';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const wasm = { relaxed: new URL(relaxedUrl, location.href).href, simd: new URL(simdUrl, location.href).href };
const engine = new EngineClient(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));

/** Presses that need no calibration file or inner press. */
const PRESSES = PRESS_NAMES.filter((p) => !['q-filters', 'triattention', 'ada-kv'].includes(p));
const HELD = [31, 78, 121];
const SEEN = [255, 255, 255];
const AHEAD = [241, 243, 245];

function setState(s: 'starting' | 'loading' | 'ready' | 'generating' | 'error'): void {
  document.body.dataset['state'] = s;
  $<HTMLButtonElement>('generate').disabled = s !== 'ready';
  $<HTMLButtonElement>('cancel').disabled = s !== 'generating';
  $<HTMLButtonElement>('load').disabled = s === 'loading' || s === 'generating';
}

const kb = (n: number) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(2)} MiB`);

/** One column: a press's text, its KV gauge and its heat strips. */
class Panel {
  readonly el = document.createElement('section');
  private readonly textEl = document.createElement('div');
  private readonly statusEl = document.createElement('p');
  private readonly gauge = document.createElement('div');
  private readonly gaugeText = document.createElement('div');
  private readonly stripsEl = document.createElement('div');
  private canvases: HTMLCanvasElement[][] = [];
  private pending: KvTraceEvent[] = [];
  private header: TraceHeader | null = null;
  private lines: string[] = [];
  private rows = 0;
  private width = 0;

  constructor(readonly key: string, title: string) {
    this.el.className = 'panel';
    this.el.id = `panel-${key}`;
    const h = document.createElement('h2');
    h.textContent = title;
    this.textEl.className = 'text';
    this.textEl.id = `${key}-text`;
    this.statusEl.className = 'status';
    this.statusEl.id = `${key}-status`;
    this.gauge.className = 'gauge';
    this.gauge.id = `${key}-gauge`;
    this.gauge.innerHTML = '<div class="now"></div><div class="peak"></div>';
    this.gaugeText.className = 'gauge-text';
    this.gaugeText.id = `${key}-gauge-text`;
    this.stripsEl.className = 'strips';
    this.el.append(h, this.textEl, this.statusEl, this.gauge, this.gaugeText, this.stripsEl);
    $('panels').append(this.el);
  }

  /** Sizes the strips for `steps` decode steps after the header's prompt. */
  begin(header: TraceHeader, steps: number): void {
    this.header = header;
    this.lines = [JSON.stringify(header)];
    this.rows = Math.max(1, steps);
    this.width = header.promptIds.length + this.rows;
    this.stripsEl.style.gridTemplateColumns = `repeat(${header.kvHeads}, 1fr)`;
    this.stripsEl.replaceChildren();
    this.canvases = [];
    for (let l = 0; l < header.layers; l++) {
      const row: HTMLCanvasElement[] = [];
      for (let h = 0; h < header.kvHeads; h++) {
        const wrap = document.createElement('div');
        wrap.className = 'strip';
        const c = document.createElement('canvas');
        c.width = this.width;
        c.height = this.rows;
        c.dataset['layer'] = String(l);
        c.dataset['head'] = String(h);
        const label = document.createElement('span');
        label.textContent = `layer ${l} · KV head ${h}`;
        wrap.append(label, c);
        this.stripsEl.append(wrap);
        row.push(c);
      }
      this.canvases.push(row);
    }
    this.statusEl.textContent = `${header.press}${header.compression ? ` ${JSON.stringify(header.compression)}` : ''} · prompt ${header.promptIds.length} tokens`;
    for (const e of this.pending.splice(0)) this.step(e);
  }

  step(e: KvTraceEvent): void {
    if (!this.header) {
      this.pending.push(e);
      return;
    }
    this.lines.push(JSON.stringify({ kind: 'step', ...e }));
    const y = e.step - 1;
    if (y < this.rows) {
      for (const [l, layer] of e.positions.entries()) {
        for (const [h, held] of layer.entries()) {
          const c = this.canvases[l]?.[h];
          const ctx = c?.getContext('2d');
          if (!c || !ctx) continue;
          const img = ctx.createImageData(this.width, 1);
          const mark = new Uint8Array(this.width);
          for (const p of held) if (p < this.width) mark[p] = 1;
          for (let x = 0; x < this.width; x++) {
            const rgb = mark[x] ? HELD : x < e.processed ? SEEN : AHEAD;
            img.data.set([rgb[0]!, rgb[1]!, rgb[2]!, 255], 4 * x);
          }
          ctx.putImageData(img, 0, y);
          c.dataset['held'] = held.join(',');
          c.dataset['step'] = String(e.step);
        }
      }
    }
    const full = Math.max(1, e.fullKvBytes);
    (this.gauge.querySelector('.now') as HTMLElement).style.width = `${(100 * e.kvBytes) / full}%`;
    (this.gauge.querySelector('.peak') as HTMLElement).style.left = `${Math.min(100, (100 * e.peakKvBytes) / full)}%`;
    Object.assign(this.gauge.dataset, { kvBytes: String(e.kvBytes), peakKvBytes: String(e.peakKvBytes), fullKvBytes: String(e.fullKvBytes) });
    this.gaugeText.textContent = `KV ${kb(e.kvBytes)} of ${kb(e.fullKvBytes)} for the full cache (${((100 * e.kvBytes) / full).toFixed(0)}%) · peak ${kb(e.peakKvBytes)} · step ${e.step} · ${e.compressions} compressions`;
  }

  text(t: string): void {
    this.textEl.textContent += t;
  }

  end(r: { stopReason: string; peakKvBytes: number; generatedIds: number[] }, trace: TraceResult | null, speed = ''): void {
    this.el.dataset['stopReason'] = r.stopReason;
    this.el.dataset['generated'] = String(r.generatedIds.length);
    this.gauge.dataset['resultPeakKvBytes'] = String(r.peakKvBytes);
    this.statusEl.textContent += ` · ${r.generatedIds.length} tokens, stop: ${r.stopReason}, peak KV ${kb(r.peakKvBytes)}${speed}`;
    if (trace) {
      this.lines.push(JSON.stringify(trace));
      const a = document.createElement('a');
      a.textContent = ' · save trace';
      a.download = `kvsieve-trace-${this.header?.press ?? 'press'}.jsonl`;
      a.href = URL.createObjectURL(new Blob([this.lines.join('\n') + '\n'], { type: 'application/x-ndjson' }));
      this.statusEl.append(a);
    }
  }
}

let loaded = false;
/** Another Hub (a mirror, or a test's mock Hub): ?hub-endpoint=URL. */
const hubEndpoint = new URLSearchParams(location.search).get('hub-endpoint');
/** A lower cap per wasm memory, in bytes (?max-bytes-per-memory=N): a model past it is split over several. */
const maxBytesPerMemory = new URLSearchParams(location.search).get('max-bytes-per-memory');
let running: { cancel(): void }[] = [];

async function listLocalModels(): Promise<Record<string, string[]>> {
  try {
    const r = await fetch('models.json');
    return r.ok ? ((await r.json()) as Record<string, string[]>) : {};
  } catch {
    return {};
  }
}

function sourceFor(choice: string, local: Record<string, string[]>): Promise<ModelSource> | ModelSource {
  if (choice === 'hub') return { hub: $<HTMLInputElement>('hub-id').value.trim() };
  if (choice === 'files') {
    const list = [...($<HTMLInputElement>('model-files').files ?? [])];
    return Promise.all(list.map(async (f) => [f.name, new Uint8Array(await f.arrayBuffer())] as const)).then((e) => ({ files: Object.fromEntries(e) }));
  }
  // absolute: the worker resolves relative URLs against its own script
  return { urls: Object.fromEntries((local[choice] ?? []).map((f) => [f, new URL(`models/${choice}/${f}`, location.href).href])) };
}

async function load(local: Record<string, string[]>): Promise<void> {
  setState('loading');
  const status = $('model-status');
  try {
    const source = await sourceFor($<HTMLSelectElement>('model-source').value, local);
    const cached = new Set<string>();
    const options = { wasm, ...(hubEndpoint ? { endpoint: hubEndpoint } : {}), ...(maxBytesPerMemory ? { maxBytesPerMemory: Number(maxBytesPerMemory) } : {}) };
    const m = await engine.load(source, options, (p) => {
      if (p.cached) cached.add(p.file);
      status.textContent = `${p.file}: ${p.cached ? 'from the cache' : `${kb(p.bytes)}${p.total ? ` of ${kb(p.total)}` : ''}`}`;
    });
    loaded = true;
    const i = m.info;
    status.textContent = `${i.path}: ${i.architecture}, ${i.parameters.toLocaleString()} parameters, ${i.layers} layers × ${i.kvHeads} KV heads${cached.size ? ' (files from the browser cache)' : ''}`;
    status.dataset['cached'] = [...cached].sort().join(',');
    $('env').textContent = `${i.backend} · ${m.crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated: one thread'}`;
    setState('ready');
  } catch (e) {
    status.textContent = `error: ${(e as Error).message}`;
    setState(loaded ? 'ready' : 'error');
  }
}

function pressSettings(key: 'a' | 'b') {
  const press = $<HTMLSelectElement>(`${key}-press`).value;
  if (press === 'full') return {};
  return { compression: { press, budget: Number($<HTMLInputElement>(`${key}-budget`).value), buffer: Number($<HTMLInputElement>(`${key}-buffer`).value) } };
}

async function generate(): Promise<void> {
  setState('generating');
  $('panels').replaceChildren();
  const keys: ('a' | 'b')[] = $<HTMLInputElement>('compare').checked ? ['a', 'b'] : ['a'];
  const prompt = $<HTMLTextAreaElement>('prompt').value;
  const maxTokens = Number($<HTMLInputElement>('max-tokens').value);
  const base = { maxTokens, temperature: Number($<HTMLInputElement>('temperature').value), ignoreEos: $<HTMLInputElement>('ignore-eos').checked, trace: true };
  const runs = keys.map(async (key) => {
    const panel = new Panel(key, `${key.toUpperCase()}: ${$<HTMLSelectElement>(`${key}-press`).value}`);
    const stream = engine.generate(prompt, { ...base, ...pressSettings(key) }, (e) => panel.step(e));
    running.push(stream);
    const header = await stream.header;
    if (header) panel.begin(header, maxTokens);
    try {
      for await (const chunk of stream) panel.text(chunk.text);
      const r = await stream.result;
      panel.end(r, await stream.traceResult, `, ${r.decodeTokensPerSecond.toFixed(0)} tok/s`);
    } catch (e) {
      panel.text(`\n[error: ${(e as Error).message}]`);
      panel.el.dataset['stopReason'] = 'error';
    }
  });
  await Promise.all(runs);
  running = [];
  setState('ready');
}

async function openTrace(file: File): Promise<void> {
  try {
    const t = parseTrace(await file.text(), file.name);
    $('panels').replaceChildren();
    const panel = new Panel('trace', `trace: ${t.header.press} (${file.name})`);
    panel.begin(t.header, t.steps.length);
    for (const s of t.steps) panel.step(s);
    if (t.result) {
      panel.text(t.result.text);
      panel.end(t.result, null);
    }
  } catch (e) {
    $('model-status').textContent = `error: ${(e as Error).message}`;
  }
}

async function main(): Promise<void> {
  setState('starting');
  for (const key of ['a', 'b']) {
    const sel = $<HTMLSelectElement>(`${key}-press`);
    for (const p of PRESSES) sel.add(new Option(p, p));
    sel.value = key === 'a' ? 'streaming-llm' : 'r-kv';
  }
  const local = await listLocalModels();
  const src = $<HTMLSelectElement>('model-source');
  for (const name of Object.keys(local)) src.add(new Option(`${name} (served locally)`, name));
  src.add(new Option('Hugging Face Hub id', 'hub'));
  src.add(new Option('Files from disk', 'files'));
  const showRows = () => {
    $('hub-row').hidden = src.value !== 'hub';
    $('files-row').hidden = src.value !== 'files';
  };
  src.onchange = showRows;
  showRows();
  $('load').onclick = () => void load(local);
  $('generate').onclick = () => void generate();
  $('cancel').onclick = () => running.forEach((s) => s.cancel());
  $<HTMLInputElement>('trace-file').onchange = (e) => {
    const f = (e.target as HTMLInputElement).files?.[0];
    if (f) void openTrace(f);
  };
  $('env').textContent = crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated: one thread';
  await load(local); // the first choice: stories260K when the demo server has it, else the Hub id
}

void main();
