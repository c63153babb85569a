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
 *
 * OpenAI's published checkpoints hold the expert matrices in MXFP4 instead, already as weight rows:
 *   gate_up_proj_blocks [E, 2F, D/32, 16] U8, gate_up_proj_scales [E, 2F, D/32] U8 (rows interleaved:
 *   row 2f is gate f, 2f + 1 is up f); down_proj_blocks [E, D, F/32, 16], down_proj_scales [E, D, F/32].
 * A block of 32 weights is a scale byte s and 16 bytes of 4-bit E2M1 codes, byte j holding weight 2j in
 * its low nibble and 2j + 1 in its high one; weight = E2M1(code) * 2^(s - 127). These read as float32, or
 * as stored ggml MXFP4 blocks (17 bytes: s, then byte j holding weight j low and j + 16 high) for a
 * backend that keeps them (storedType 'MXFP4').
 */
import { KvsieveError } from '../core/errors.js';
import type { TensorInfo, TensorSource } from './tensors.js';

const HF_EXPERTS = /^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|gate_up_proj_bias|down_proj|down_proj_bias|gate_up_proj_blocks|gate_up_proj_scales|down_proj_blocks|down_proj_scales)$/;

/** How one stacked tensor is made from HF tensors: its name, shape, and the float32 values (and the stored blocks, for MXFP4). */
interface Derived {
  info: TensorInfo;
  read(): Float32Array;
  stored?: { type: 'MXFP4'; read(): Uint8Array };
}

/** E2M1 codes as values: sign bit 3, magnitude 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
const E2M1 = Float32Array.from({ length: 16 }, (_, c) => (c & 8 ? -1 : 1) * [0, 0.5, 1, 1.5, 2, 3, 4, 6][c & 7]!);
const MXFP4_BLOCK_BYTES = 17;

/** One HF MXFP4 matrix of a layer's experts: its blocks and scales, every expert's rows [E, R, C]. */
interface Mxfp4Experts {
  blocks: TensorInfo;
  scales: TensorInfo;
  E: number;
  R: number;
  C: number;
}

function mxfp4Experts(blocks: TensorInfo, scales: TensorInfo): Mxfp4Experts {
  const [E, R, nb, sixteen] = blocks.shape as [number, number, number, number];
  if (blocks.shape.length !== 4 || sixteen !== 16 || blocks.dtype !== 'U8' || scales.dtype !== 'U8' || scales.shape.join() !== [E, R, nb].join()) {
    throw new KvsieveError(`${blocks.file}: tensors "${blocks.name}" [${blocks.shape.join(', ')}] ${blocks.dtype} and "${scales.name}" [${scales.shape.join(', ')}] ${scales.dtype} are not MXFP4 blocks [E, rows, cols/32, 16] and scales [E, rows, cols/32] of U8`);
  }
  return { blocks, scales, E, R, C: nb * 32 };
}

/** A U8 tensor's bytes: as stored where the source hands them out, else from its float32 reading. */
function bytesOf(src: TensorSource, name: string): Uint8Array {
  return src.storedType?.(name) === 'U8' && src.readStored ? src.readStored(name) : Uint8Array.from(src.readF32(name));
}

/**
 * Rows `first`, `first + step`, ... of every expert of `m` ([E, R / step, C] in all), as float32 or as
 * ggml MXFP4 blocks.
 */
function mxfp4Rows(src: TensorSource, m: Mxfp4Experts, first: number, step: number): { read(): Float32Array; readStored(): Uint8Array } {
  const rows = m.R / step;
  const nb = m.C / 32;
  const each = (visit: (row: number, b: number, scale: number, codes: Uint8Array, at: number) => void) => {
    const blocks = bytesOf(src, m.blocks.name);
    const scales = bytesOf(src, m.scales.name);
    for (let e = 0; e < m.E; e++) {
      for (let r = 0; r < rows; r++) {
        const hfRow = e * m.R + first + r * step;
        for (let b = 0; b < nb; b++) visit((e * rows + r) * nb + b, b, scales[hfRow * nb + b]!, blocks, (hfRow * nb + b) * 16);
      }
    }
  };
  return {
    read: () => {
      const out = new Float32Array(m.E * rows * m.C);
      each((block, _b, scale, codes, at) => {
        const unit = Math.pow(2, scale - 127);
        for (let j = 0; j < 16; j++) {
          const byte = codes[at + j]!;
          out[block * 32 + 2 * j] = E2M1[byte & 15]! * unit;
          out[block * 32 + 2 * j + 1] = E2M1[byte >> 4]! * unit;
        }
      });
      return out;
    },
    readStored: () => {
      const out = new Uint8Array(m.E * rows * nb * MXFP4_BLOCK_BYTES);
      each((block, _b, scale, codes, at) => {
        const o = block * MXFP4_BLOCK_BYTES;
        out[o] = scale;
        // HF: byte j = codes of weights 2j (low), 2j + 1 (high); ggml: byte j = weights j (low), j + 16 (high)
        const code = (w: number) => (codes[at + (w >> 1)]! >> ((w & 1) * 4)) & 15;
        for (let j = 0; j < 16; j++) out[o + 1 + j] = code(j) | (code(j + 16) << 4);
      });
      return out;
    },
  };
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
    const first = [...parts.values()][0]!;
    const add = (name: string, shape: number[], from: TensorInfo, read: () => Float32Array, stored?: Derived['stored']) =>
      derived.set(p + name, { info: { name: p + name, dtype: from.dtype === 'U8' ? 'F32' : from.dtype, shape, file: from.file }, read, ...(stored ? { stored } : {}) });
    let E: number;
    let D: number;
    let F: number;
    const gateUpBlocks = parts.get('gate_up_proj_blocks');
    const downBlocks = parts.get('down_proj_blocks');
    if (gateUpBlocks || downBlocks) {
      const gateUpScales = parts.get('gate_up_proj_scales');
      const downScales = parts.get('down_proj_scales');
      if (!gateUpBlocks || !downBlocks || !gateUpScales || !downScales) {
        throw new KvsieveError(`${first.file}: layer ${layer}'s MXFP4 experts need "${p}gate_up_proj_blocks", "_scales", "${p}down_proj_blocks" and "_scales"`);
      }
      const gu = mxfp4Experts(gateUpBlocks, gateUpScales);
      const dn = mxfp4Experts(downBlocks, downScales);
      [E, D, F] = [gu.E, gu.C, gu.R / 2];
      if (gu.R % 2 !== 0 || dn.E !== E || dn.R !== D || dn.C !== F) {
        throw new KvsieveError(`${downBlocks.file}: "${p}down_proj_blocks" holds [${dn.E}, ${dn.R}, ${dn.C}] weights; "${p}gate_up_proj_blocks" [${gu.E}, ${gu.R}, ${gu.C}] implies [${E}, ${D}, ${F}]`);
      }
      const mx = (m: Mxfp4Experts, from: number, step: number) => {
        const rows = mxfp4Rows(src, m, from, step);
        return [rows.read, { type: 'MXFP4' as const, read: rows.readStored }] as const;
      };
      add('gate_proj.weight', [E, F, D], gateUpBlocks, ...mx(gu, 0, 2));
      add('up_proj.weight', [E, F, D], gateUpBlocks, ...mx(gu, 1, 2));
      add('down_proj.weight', [E, D, F], downBlocks, ...mx(dn, 0, 1));
    } else {
      const gateUp = parts.get('gate_up_proj');
      const down = parts.get('down_proj');
      if (!gateUp || !down || gateUp.shape.length !== 3 || down.shape.length !== 3) {
        throw new KvsieveError(`${first.file}: layer ${layer}'s experts need 3-D tensors "${p}gate_up_proj" [E, D, 2F] and "${p}down_proj" [E, F, D]`);
      }
      let F2: number;
      [E, D, F2] = gateUp.shape as [number, number, number];
      F = F2 / 2;
      if (F2 % 2 !== 0 || down.shape[0] !== E || down.shape[1] !== F || down.shape[2] !== D) {
        throw new KvsieveError(`${down.file}: tensor "${p}down_proj" has shape [${down.shape.join(', ')}]; "${p}gate_up_proj" [${gateUp.shape.join(', ')}] implies [${E}, ${F}, ${D}]`);
      }
      const [e, d, f] = [E, D, F];
      add('gate_proj.weight', [E, F, D], gateUp, () => gateUpRows(src.readF32(gateUp.name), e, d, f, 0));
      add('up_proj.weight', [E, F, D], gateUp, () => gateUpRows(src.readF32(gateUp.name), e, d, f, 1));
      add('down_proj.weight', [E, D, F], down, () => transposeEach(src.readF32(down.name), e, f, d));
    }
    const gateUpB = parts.get('gate_up_proj_bias');
    if (gateUpB) {
      if (gateUpB.shape.join() !== [E, 2 * F].join()) throw new KvsieveError(`${gateUpB.file}: tensor "${gateUpB.name}" has shape [${gateUpB.shape.join(', ')}], expected [${E}, ${2 * F}]`);
      const [e, f] = [E, F];
      add('gate_proj.bias', [E, F], gateUpB, () => gateUpBias(src.readF32(gateUpB.name), e, f, 0));
      add('up_proj.bias', [E, F], gateUpB, () => gateUpBias(src.readF32(gateUpB.name), e, f, 1));
    }
    const downB = parts.get('down_proj_bias');
    if (downB) add('down_proj.bias', downB.shape, downB, () => src.readF32(downB.name));
  }
  const hidden = (name: string) => HF_EXPERTS.test(name);
  const own = (name: string) => derived.get(name);
  return {
    list: () => [...src.list().filter((t) => !hidden(t.name)), ...[...derived.values()].map((d) => d.info)],
    has: (name) => own(name) !== undefined || (!hidden(name) && src.has(name)),
    info: (name) => own(name)?.info ?? src.info(name),
    readF32: (name) => own(name)?.read() ?? src.readF32(name),
    storedType: (name) => {
      const d = own(name);
      return d ? (d.stored?.type ?? null) : (src.storedType?.(name) ?? null);
    },
    readStored: (name: string) => {
      const d = own(name);
      if (d?.stored) return d.stored.read();
      if (d || !src.readStored) throw new KvsieveError(`${d?.info.file ?? name}: tensor "${name}" has no stored form`);
      return src.readStored(name);
    },
    close: () => src.close(),
  };
}
