/**
 * The Llama-family forward on a GPU: the same steps as LlamaModel.forward (llama.ts), line for line,
 * recorded into one command buffer over activations that stay in GPU buffers, submitted once; the
 * logits rows the segments ask for are the one readback, hence `forwardAsync`. Steps are serialised
 * (one in flight), so every step reads the caches the previous one left.
 */
import type { Backend } from '../backend/backend.js';
import { GpuWeight, WebGpuBackend, type GpuStep } from '../backend/webgpu/backend.js';
import { InternalError, KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import { GpuKvCache } from '../kv/gpu-cache.js';
import { LlamaModel, type LayerObserver, type ModelWeights, type Segment } from './llama.js';
import { ropeInverseFrequencies, ropeTables } from './rope.js';

/**
 * What the GPU forward asks of a segment's observer (the compressor, on the webgpu backend) instead of
 * LayerObserver's CPU arrays: the observation queries go to a ring on the GPU, and the attention adds
 * into the cache's running sums (GpuKvCache.sumsForStep). Nothing is read back during the step.
 */
export interface GpuLayerObserver {
  /**
   * Where the last of the segment's `T` query rows of `layer` (after RoPE) go: `rows` of them into
   * ring slots start, start + 1, ... (mod window) of `ring` ([window, numHeads * headDim] float32);
   * null when the layer keeps none. Called once per layer and step: the observer counts them as stored.
   */
  gpuQueryRing(layer: number, T: number): { ring: GPUBuffer; window: number; start: number; rows: number } | null;
  /** Whether `layer`'s attention adds its probabilities into the cache's running sums. */
  gpuAttentionSums(layer: number): boolean;
}

function gpuObserver(o: LayerObserver | undefined): GpuLayerObserver | null {
  if (!o) return null;
  if (!('gpuQueryRing' in o)) throw new KvsieveError('query tracing and calibration need the wasm or reference backend (the webgpu forward keeps its queries on the GPU)', { option: 'backend' });
  return o as LayerObserver & GpuLayerObserver;
}

/** Activation buffers for T rows, grown on demand and reused across steps. */
class GpuActivations {
  rows = 0;
  logitRows = 0;
  x!: GPUBuffer; // [T, D] residual stream
  xb!: GPUBuffer; // [T, D] normed input
  q!: GPUBuffer; // [T, H*d]
  k!: GPUBuffer; // [T, Hkv*d]
  v!: GPUBuffer; // [T, Hkv*d]
  att!: GPUBuffer; // [T, H*d]
  gate!: GPUBuffer; // [T, F]
  ids!: GPUBuffer; // [T] u32
  cos!: GPUBuffer; // [T, d/2]
  sin!: GPUBuffer; // [T, d/2]
  logitRowIds!: GPUBuffer; // [rows needing logits] u32: their rows in x
  lmIn!: GPUBuffer; // [rows needing logits, D]
  logits!: GPUBuffer; // [rows needing logits, V]
  stats!: GPUBuffer; // [T, H, 2] each (row, head)'s softmax maximum and sum (running attention sums)

  constructor(private readonly be: WebGpuBackend) {}

  ensure(T: number, c: ModelConfig): void {
    if (T <= this.rows) return;
    const f = 4;
    const old = this.rows > 0 ? [this.x, this.xb, this.q, this.k, this.v, this.att, this.gate, this.ids, this.cos, this.sin, this.stats] : [];
    this.x = this.be.storage(T * c.hiddenSize * f, 'x');
    this.xb = this.be.storage(T * c.hiddenSize * f, 'xb');
    this.q = this.be.storage(T * c.numHeads * c.headDim * f, 'q');
    this.k = this.be.storage(T * c.numKvHeads * c.headDim * f, 'k');
    this.v = this.be.storage(T * c.numKvHeads * c.headDim * f, 'v');
    this.att = this.be.storage(T * c.numHeads * c.headDim * f, 'att');
    this.gate = this.be.storage(T * c.intermediateSize * f, 'gate');
    this.ids = this.be.storage(T * 4, 'ids');
    this.cos = this.be.storage((T * c.headDim * f) / 2, 'cos');
    this.sin = this.be.storage((T * c.headDim * f) / 2, 'sin');
    this.stats = this.be.storage(T * c.numHeads * 2 * f, 'attention stats');
    for (const b of old) b.destroy();
    this.rows = T;
  }

  ensureLogits(rows: number, c: ModelConfig): void {
    if (rows <= this.logitRows) return;
    const old = this.logitRows > 0 ? [this.logitRowIds, this.lmIn, this.logits] : [];
    this.logitRowIds = this.be.storage(rows * 4, 'logit rows');
    this.lmIn = this.be.storage(rows * c.hiddenSize * 4, 'lm in');
    this.logits = this.be.storage(rows * c.vocabSize * 4, 'logits');
    for (const b of old) b.destroy();
    this.logitRows = rows;
  }
}

function gpuWeight(w: unknown, name: string): GpuWeight {
  if (!(w instanceof GpuWeight)) throw new InternalError(`gpu forward: weight ${name} is not on the GPU`);
  return w;
}

export class GpuLlamaModel extends LlamaModel {
  private readonly gpu: WebGpuBackend;
  private readonly act: GpuActivations;
  private readonly inverseFrequencies: Float64Array;
  /** The step in flight: the next one is recorded after it. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(config: ModelConfig, weights: ModelWeights, backend: WebGpuBackend) {
    const missing = unsupportedOnGpu(config);
    if (missing.length > 0) throw new KvsieveError(`backend webgpu: this model's ${missing.join(', ')} not on the GPU yet (use the wasm backend)`, { option: 'backend' });
    super(config, weights, backend);
    this.gpu = backend;
    this.act = new GpuActivations(backend);
    this.inverseFrequencies = ropeInverseFrequencies(config);
  }

  override get stepsAsync(): boolean {
    return true;
  }

  override forward(): Float32Array {
    throw new InternalError('gpu forward: a GPU step is awaited (forwardAsync)');
  }

  override forwardAsync(segments: Segment[]): Promise<Float32Array> {
    const run = this.tail.then(() => this.step(segments));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The forward of llama.ts, recorded: see LlamaModel.forward for the math of each line. */
  private async step(segments: Segment[]): Promise<Float32Array> {
    const c = this.config;
    const D = c.hiddenSize;
    const d = c.headDim;
    const T = segments.reduce((n, seg) => n + seg.tokens.length, 0);
    if (T === 0) return new Float32Array(0);
    const observers = segments.map((seg) => {
      if (!(seg.cache instanceof GpuKvCache)) throw new InternalError('gpu forward: a segment\'s cache is not a GpuKvCache');
      return gpuObserver(seg.observer);
    });
    const a = this.act;
    a.ensure(T, c);
    const ids = new Uint32Array(T);
    const positions = new Int32Array(T);
    let row = 0;
    for (const seg of segments) {
      for (let t = 0; t < seg.tokens.length; t++, row++) {
        const id = seg.tokens[t]!;
        if (!(Number.isInteger(id) && id >= 0 && id < c.vocabSize)) throw new InternalError(`gpu forward: token id ${id} outside the vocabulary`);
        ids[row] = id;
        positions[row] = seg.positions[t]!;
      }
    }
    const cos = new Float32Array((T * d) / 2);
    const sin = new Float32Array((T * d) / 2);
    ropeTables(this.inverseFrequencies, positions, T, cos, sin);
    const queue = this.gpu.device.queue;
    queue.writeBuffer(a.ids, 0, ids);
    queue.writeBuffer(a.cos, 0, cos);
    queue.writeBuffer(a.sin, 0, sin);

    const w = this.weights;
    // embed; per layer 7, qwen3's 2 and 2 per segment (4 with an observer); then gather, norm and lm_head
    const s = this.gpu.beginStep(4 + c.numLayers * (9 + 4 * segments.length));
    try {
      s.embed(a.x, gpuWeight(w.embed, 'embed'), a.ids, T);
      for (let l = 0; l < c.numLayers; l++) {
        const lw = w.layers[l]!;
        // attention block
        s.rmsnorm(a.xb, a.x, lw.inputNorm, T, D, c.rmsNormEps);
        s.qkv({
          x: a.xb,
          tokens: T,
          ...{ q: a.q, k: a.k, v: a.v },
          ...{ wq: gpuWeight(lw.q, 'q'), wk: gpuWeight(lw.k, 'k'), wv: gpuWeight(lw.v, 'v') },
          biases: [lw.qBias, lw.kBias, lw.vBias],
        });
        if (lw.qNorm && lw.kNorm) {
          s.rmsnorm(a.q, a.q, lw.qNorm, T * c.numHeads, d, c.rmsNormEps);
          s.rmsnorm(a.k, a.k, lw.kNorm, T * c.numKvHeads, d, c.rmsNormEps);
        }
        s.rope({ q: a.q, k: a.k, tokens: T, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: d, cos: a.cos, sin: a.sin });

        // per segment: its keys and values into its cache, then its attention over that cache
        // (and for a compressed segment, its last query rows into its observation ring, and its
        // attention's probabilities into the cache's running sums)
        let r0 = 0;
        segments.forEach((seg, i) => {
          const n = seg.tokens.length;
          const gpuCache = seg.cache as GpuKvCache;
          const observer = observers[i];
          const ring = observer?.gpuQueryRing(l, n);
          if (ring && ring.rows > 0) s.ringStore({ x: a.q, row: r0 + n - ring.rows, count: ring.rows, width: c.numHeads * d, ring: ring.ring, window: ring.window, start: ring.start });
          const slots = gpuCache.layerForStep(l, n, seg.positions);
          const cache = { keys: slots.keys, values: slots.values, capacity: slots.capacity, bases: slots.bases, kvStore: slots.kvStore };
          const shape = { row: r0, count: n, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: d };
          const sums = observer?.gpuAttentionSums(l) ? gpuCache.sumsForStep(l) : null;
          s.kvAppend({ k: a.k, v: a.v, ...shape, ...cache });
          s.attention({ q: a.q, out: a.att, ...shape, ...cache, ...(sums ? { stats: a.stats } : {}) });
          if (sums) s.attentionSums({ q: a.q, ...shape, keys: cache.keys, capacity: cache.capacity, bases: cache.bases, kvStore: cache.kvStore, stats: a.stats, sums });
          r0 += n;
        });
        s.matmul({ out: a.x, add: true, x: a.att, w: gpuWeight(lw.o, 'o'), bias: lw.oBias, tokens: T }); // x += attn Wo

        // feed-forward block: x += down(silu(h Wgate) * (h Wup))
        s.rmsnorm(a.xb, a.x, lw.postNorm, T, D, c.rmsNormEps);
        s.gateUp({ out: a.gate, x: a.xb, gate: gpuWeight(lw.gate, 'gate'), up: gpuWeight(lw.up, 'up'), gateBias: lw.gateBias, upBias: lw.upBias, tokens: T });
        s.matmul({ out: a.x, add: true, x: a.gate, w: gpuWeight(lw.down, 'down'), bias: lw.downBias, tokens: T });
      }

      // Gather the rows that need logits, then one final norm and lm_head over just those.
      const wanted: number[] = [];
      row = 0;
      for (const seg of segments) {
        const n = seg.tokens.length;
        const first = seg.logits === 'all' ? 0 : seg.logits === 'last' ? n - 1 : n;
        for (let t = first; t < n; t++) wanted.push(row + t);
        row += n;
      }
      if (wanted.length === 0) return await this.submit(s, a.x, 0);
      a.ensureLogits(wanted.length, c);
      queue.writeBuffer(a.logitRowIds, 0, Uint32Array.from(wanted));
      s.gatherRows(a.lmIn, a.x, a.logitRowIds, wanted.length, D);
      s.rmsnorm(a.lmIn, a.lmIn, w.finalNorm, wanted.length, D, c.rmsNormEps);
      s.matmul({ out: a.logits, x: a.lmIn, w: gpuWeight(w.lmHead, 'lm_head'), tokens: wanted.length });
      return await this.submit(s, a.logits, wanted.length * c.vocabSize);
    } catch (e) {
      if (!submitted.has(s)) s.abandon();
      throw e;
    }
  }

  private async submit(s: GpuStep, result: GPUBuffer, floats: number): Promise<Float32Array> {
    submitted.add(s);
    return s.finish(result, floats);
  }
}

/** The features of `c` the GPU forward does not have yet (the llama / mistral / qwen2 / qwen3 forward it has). */
function unsupportedOnGpu(c: ModelConfig): string[] {
  const out: string[] = [];
  if (c.slidingWindow !== undefined) out.push('sliding-window layers');
  if (c.moe) out.push('mixture of experts');
  if (c.hiddenAct !== undefined && c.hiddenAct !== 'silu') out.push(`the ${c.hiddenAct} gate`);
  if (c.attentionSinks) out.push('attention sinks');
  if (c.ropeScaling?.type === 'yarn') out.push('YaRN RoPE');
  if (c.embedScale !== undefined || c.sandwichNorms || c.attentionScale !== undefined || c.normPlusOne || c.ropeLocalTheta !== undefined || c.ropeLinearFactor !== undefined) {
    out.push('Gemma features (embedding scale, sandwich norms, attention scale, 1 + w norms, local RoPE)');
  }
  if (out.length === 0) return out;
  out[out.length - 1] += out.length === 1 ? ' is' : ' are';
  return out;
}

/** Steps handed to finish (their error scope is closed there). */
const submitted = new WeakSet<GpuStep>();

/** The model for `backend`: the GPU forward on the webgpu backend, LlamaModel on the CPU ones. */
export function llamaModel(config: ModelConfig, weights: ModelWeights, backend: Backend): LlamaModel {
  return backend instanceof WebGpuBackend ? new GpuLlamaModel(config, weights, backend) : new LlamaModel(config, weights, backend);
}
