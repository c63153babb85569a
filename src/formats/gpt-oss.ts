/**
 * GPT-OSS's experts as Hugging Face stores them, seen under kvsieve's stacked names.
 *
 * Per layer, transformers' GptOssExperts holds (x a row of the layer's normed input):
 *   gate_up_proj       [E, D, 2F]  x @ gate_up_proj[e] gives the gate and up outputs interleaved:
 *                                  column 2f is gate f, column 2f + 1 is up f
 *   gate_up_proj_bias  [E, 2F]     interleaved the same way
 *   down_proj          [E, F, D]   h @ down_proj[e]
 *   down_proj_bias     [E, D]
 * kvsieve (and llama.cpp's GGUF) keep each projection as weight rows, PyTorch's [out, in]:
 *   mlp.experts.gate_proj.weight [E, F, D], .bias [E, F]; up_proj likewise; down_proj.weight [E, D, F],
 *   .bias [E, D].
 * `withStackedExperts` presents the second form of a source holding the first; the loader and the GGUF
 * writer then read GPT-OSS like any stacked-expert model.
 */
import { KvsieveError } from '../core/errors.js';
import type { TensorInfo, TensorSource } from './tensors.js';

const HF_EXPERTS = /^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|gate_up_proj_bias|down_proj|down_proj_bias)$/;

/** How one stacked tensor is made from an HF tensor: its name, shape, and the rearrangement. */
interface Derived {
  info: TensorInfo;
  from: string;
  make(src: Float32Array): Float32Array;
}

/** [E, rows, cols] -> [E, cols, rows]. */
function transposeEach(a: Float32Array, E: number, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let e = 0; e < E; e++) {
    const base = e * rows * cols;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[base + c * rows + r] = a[base + r * cols + c]!;
  }
  return out;
}

/** Of [E, D, 2F] interleaved columns: the [E, F, D] rows of parity `half` (0 gate, 1 up). */
function gateUpRows(a: Float32Array, E: number, D: number, F: number, half: 0 | 1): Float32Array {
  const out = new Float32Array(E * F * D);
  for (let e = 0; e < E; e++) {
    for (let i = 0; i < D; i++) {
      const row = (e * D + i) * 2 * F;
      for (let f = 0; f < F; f++) out[(e * F + f) * D + i] = a[row + 2 * f + half]!;
    }
  }
  return out;
}

/** Of [E, 2F] interleaved: the [E, F] entries of parity `half`. */
function gateUpBias(a: Float32Array, E: number, F: number, half: 0 | 1): Float32Array {
  const out = new Float32Array(E * F);
  for (let e = 0; e < E; e++) for (let f = 0; f < F; f++) out[e * F + f] = a[e * 2 * F + 2 * f + half]!;
  return out;
}

/**
 * `src` with each layer's HF GPT-OSS expert tensors replaced by kvsieve's stacked ones (made when
 * read); `src` itself when it holds none. Refuses a layer whose four tensors disagree in shape.
 */
export function withStackedExperts(src: TensorSource): TensorSource {
  const byLayer = new Map<string, Map<string, TensorInfo>>();
  for (const t of src.list()) {
    const m = HF_EXPERTS.exec(t.name);
    if (!m) continue;
    if (!byLayer.has(m[1]!)) byLayer.set(m[1]!, new Map());
    byLayer.get(m[1]!)!.set(m[2]!, t);
  }
  if (byLayer.size === 0) return src;
  const derived = new Map<string, Derived>();
  for (const [layer, parts] of byLayer) {
    const p = `model.layers.${layer}.mlp.experts.`;
    const gateUp = parts.get('gate_up_proj');
    const down = parts.get('down_proj');
    if (!gateUp || !down || gateUp.shape.length !== 3 || down.shape.length !== 3) {
      const t = gateUp ?? down ?? [...parts.values()][0]!;
      throw new KvsieveError(`${t.file}: layer ${layer}'s experts need 3-D tensors "${p}gate_up_proj" [E, D, 2F] and "${p}down_proj" [E, F, D]`);
    }
    const [E, D, F2] = gateUp.shape as [number, number, number];
    const F = F2 / 2;
    if (F2 % 2 !== 0 || down.shape[0] !== E || down.shape[1] !== F || down.shape[2] !== D) {
      throw new KvsieveError(`${down.file}: tensor "${p}down_proj" has shape [${down.shape.join(', ')}]; "${p}gate_up_proj" [${gateUp.shape.join(', ')}] implies [${E}, ${F}, ${D}]`);
    }
    const add = (name: string, shape: number[], from: TensorInfo, make: Derived['make']) =>
      derived.set(p + name, { info: { name: p + name, dtype: from.dtype, shape, file: from.file }, from: from.name, make });
    add('gate_proj.weight', [E, F, D], gateUp, (a) => gateUpRows(a, E, D, F, 0));
    add('up_proj.weight', [E, F, D], gateUp, (a) => gateUpRows(a, E, D, F, 1));
    add('down_proj.weight', [E, D, F], down, (a) => transposeEach(a, E, F, D));
    const gateUpB = parts.get('gate_up_proj_bias');
    if (gateUpB) {
      if (gateUpB.shape.join() !== [E, F2].join()) throw new KvsieveError(`${gateUpB.file}: tensor "${gateUpB.name}" has shape [${gateUpB.shape.join(', ')}], expected [${E}, ${F2}]`);
      add('gate_proj.bias', [E, F], gateUpB, (a) => gateUpBias(a, E, F, 0));
      add('up_proj.bias', [E, F], gateUpB, (a) => gateUpBias(a, E, F, 1));
    }
    const downB = parts.get('down_proj_bias');
    if (downB) add('down_proj.bias', downB.shape, downB, (a) => a);
  }
  const hidden = (name: string) => HF_EXPERTS.test(name);
  const own = (name: string) => derived.get(name);
  return {
    list: () => [...src.list().filter((t) => !hidden(t.name)), ...[...derived.values()].map((d) => d.info)],
    has: (name) => own(name) !== undefined || (!hidden(name) && src.has(name)),
    info: (name) => own(name)?.info ?? src.info(name),
    readF32: (name) => {
      const d = own(name);
      return d ? d.make(src.readF32(d.from)) : src.readF32(name);
    },
    storedType: (name) => (own(name) ? null : (src.storedType?.(name) ?? null)),
    ...(src.readStored ? { readStored: (name: string) => src.readStored!(name) } : {}),
    close: () => src.close(),
  };
}
