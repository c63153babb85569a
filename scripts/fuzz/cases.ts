/**
 * One fuzz case: a seed of the format, one or two mutations of one of its files, and the files to lay
 * out for loading (the mutated ones written, the rest linked to the seed). Case K of format F under run
 * seed S is a pure function of (S, F, K), so any case can be rebuilt alone.
 */
import { concat, FULL, hashSeed, mutateBytes, mutateJson, mutateTemplate, Rng, type BinaryLayout, type Mutated, type Scale } from './mutate.js';
import { ggufLayout, llama2cLayout, safetensorsLayout, tok512Layout, type Format, type Seed } from './seeds.js';

export interface FuzzCase {
  format: Format;
  seed: Seed;
  /** Files that differ from the seed, by name; every other file of the seed is linked. */
  files: Map<string, Uint8Array>;
  /** What loadModel opens, relative to the case directory ('' = the directory). */
  entry: string;
  /** The mutations, in words. */
  what: string[];
}

const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** Layouts are computed once per seed file. */
const layouts = new WeakMap<Uint8Array, BinaryLayout>();
function layoutOf(data: Uint8Array, make: (b: Uint8Array) => BinaryLayout): BinaryLayout {
  let l = layouts.get(data);
  if (!l) {
    l = make(data);
    layouts.set(data, l);
  }
  return l;
}

/**
 * A safetensors file with its header JSON edited structurally, written back with the new length (and,
 * half the time, padded with spaces to 8 bytes as writers do).
 */
function mutateSafetensorsHeader(data: Uint8Array, rng: Rng, scale: Scale): Mutated<Uint8Array> {
  const n = Number(Buffer.from(data.buffer, data.byteOffset, 8).readBigUInt64LE(0));
  const m = mutateJson(text(data.subarray(8, 8 + n)).trimEnd(), rng, scale);
  let header = Buffer.from(m.value, 'utf8');
  if (rng.chance(0.5) && header.length % 8 !== 0) header = Buffer.concat([header, Buffer.alloc(8 - (header.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return { value: concat(len, header, data.subarray(8 + n)), what: `header JSON: ${m.what}` };
}

/** The layout of a safetensors file, or for one already damaged (a second mutation) just its first bytes. */
function safeLayout(b: Uint8Array): BinaryLayout {
  try {
    return safetensorsLayout(b);
  } catch {
    return { headerEnd: Math.min(b.length, 4096), fields: [{ at: 0, bytes: 8, what: 'header length' }] };
  }
}

function mutateSafetensors(data: Uint8Array, rng: Rng, donors: Uint8Array[], scale: Scale): Mutated<Uint8Array> {
  if (rng.chance(0.45)) {
    try {
      return mutateSafetensorsHeader(data, rng, scale);
    } catch {
      // a header damaged by an earlier mutation: fall through to a byte-level one
    }
  }
  return mutateBytes(data, rng, layoutOf(data, safeLayout), donors);
}

/** The file of `seed` a case of `format` mutates, and how. */
function mutateOne(format: Format, seed: Seed, current: Map<string, Uint8Array>, rng: Rng, donors: Uint8Array[], scale: Scale): { file: string; m: Mutated<Uint8Array> } {
  const get = (f: string) => current.get(f) ?? seed.files.get(f)!;
  switch (format) {
    case 'safetensors':
      return { file: 'model.safetensors', m: mutateSafetensors(get('model.safetensors'), rng, donors, scale) };
    case 'sharded': {
      const shards = [...seed.files.keys()].filter((f) => f.endsWith('.safetensors'));
      if (rng.chance(0.4)) {
        const m = mutateJson(text(get('model.safetensors.index.json')), rng, scale);
        return { file: 'model.safetensors.index.json', m: { value: bytes(m.value), what: `index: ${m.what}` } };
      }
      const file = rng.pick(shards);
      const m = mutateSafetensors(get(file), rng, donors, scale);
      return { file, m: { value: m.value, what: `${file}: ${m.what}` } };
    }
    case 'gguf': {
      const d = get('model.gguf');
      // the seed's layout stays right for a first mutation; a second one works on a changed file
      const layout = current.has('model.gguf') ? { headerEnd: layoutOf(seed.files.get('model.gguf')!, ggufLayout).headerEnd, fields: [] } : layoutOf(d, ggufLayout);
      return { file: 'model.gguf', m: mutateBytes(d, rng, layout, donors) };
    }
    case 'config': {
      const file = seed.files.has('generation_config.json') && rng.chance(0.15) ? 'generation_config.json' : 'config.json';
      const m = mutateJson(text(get(file)), rng, scale);
      return { file, m: { value: bytes(m.value), what: `${file}: ${m.what}` } };
    }
    case 'tokenizer': {
      const file = rng.chance(0.15) ? 'tokenizer_config.json' : 'tokenizer.json';
      const m = mutateJson(text(get(file)), rng, scale);
      return { file, m: { value: bytes(m.value), what: `${file}: ${m.what}` } };
    }
    case 'chat': {
      const cfgText = text(get('tokenizer_config.json'));
      if (rng.chance(0.75)) {
        let cfg: Record<string, unknown> = {};
        try {
          cfg = JSON.parse(cfgText) as Record<string, unknown>;
        } catch {
          // damaged by an earlier mutation: mutate the text below
        }
        if (typeof cfg['chat_template'] === 'string') {
          const m = mutateTemplate(cfg['chat_template'], rng, scale);
          try {
            return { file: 'tokenizer_config.json', m: { value: bytes(JSON.stringify({ ...cfg, chat_template: m.value })), what: m.what } };
          } catch {
            // a config too deep to serialise again (an earlier mutation): mutate its text below
          }
        }
      }
      const m = mutateJson(cfgText, rng, scale);
      return { file: 'tokenizer_config.json', m: { value: bytes(m.value), what: `tokenizer_config.json: ${m.what}` } };
    }
    case 'llama2c': {
      const d = get('stories260K.bin');
      return { file: 'stories260K.bin', m: mutateBytes(d, rng, layoutOf(seed.files.get('stories260K.bin')!, llama2cLayout), donors) };
    }
    case 'tok512': {
      const d = get('tok512.bin');
      const layout = current.has('tok512.bin') ? { headerEnd: d.length, fields: [] } : layoutOf(d, tok512Layout);
      return { file: 'tok512.bin', m: mutateBytes(d, rng, layout, donors) };
    }
  }
}

/** Builds case `index` of `format` under run seed `runSeed` from `seeds` (the format's seeds), at `scale`. */
export function buildCase(runSeed: number, format: Format, index: number, seeds: readonly Seed[], scale: Scale = FULL): FuzzCase {
  const rng = new Rng(hashSeed(runSeed, format, index));
  const seed = rng.pick(seeds);
  const donors = seeds.flatMap((s) => [...s.files.values()]).filter((b) => b.length < 4 << 20);
  const files = new Map<string, Uint8Array>();
  const what: string[] = [];
  // mostly one mutation; sometimes two stacked (a fixed length field and damage behind it)
  const rounds = rng.chance(0.2) ? 2 : 1;
  for (let r = 0; r < rounds; r++) {
    const { file, m } = mutateOne(format, seed, files, rng, donors, scale);
    files.set(file, m.value);
    what.push(m.what.length > 300 ? `${m.what.slice(0, 300)}…` : m.what);
  }
  return { format, seed, files, entry: seed.entry, what };
}
