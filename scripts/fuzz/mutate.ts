/**
 * Mutations for the fuzzer: a seeded PRNG, byte-level edits of binary files, structural edits of JSON
 * documents and of Jinja chat templates. Every function takes the case's Rng and returns a new value
 * plus a short description of what it did (printed when a case is reported).
 */

/** mulberry32: a small, fast, seeded generator of uniform [0, 1) numbers. */
export class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** An index in [0, n), skewed toward small values (most structure sits at the start of a file). */
  skewed(n: number): number {
    return Math.min(n - 1, Math.floor(n * this.next() ** 3));
  }
}

/** A 32-bit hash of strings and numbers (FNV-1a), for per-case seeds. */
export function hashSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('\u0000')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export interface Mutated<T> {
  value: T;
  what: string;
}

/**
 * How large generated values may get. The full fuzz builds values of up to a million items or levels
 * (each such case costs about half a second to parse); the smoke run in the test suite stops at 100,000,
 * which still reaches every limit a value runs into (nesting overflowed JSON.stringify at ~10,000) and
 * leaves the runaway-template limits to their unit tests.
 */
export interface Scale {
  maxSize: number;
  /** Iterations of a generated template loop at most. */
  maxLoop: number;
}
export const FULL: Scale = { maxSize: 1_000_000, maxLoop: 100_000 };
export const LIGHT: Scale = { maxSize: 100_000, maxLoop: 300 };

/** One of `sizes`, among those `scale` allows (the smallest when none is). */
function size(rng: Rng, sizes: readonly number[], max: number): number {
  const ok = sizes.filter((x) => x <= max);
  return rng.pick(ok.length > 0 ? ok : [Math.min(...sizes)]);
}

// ------------------------------------------------------------------------------------------------
// Bytes

/** A place in a file where an integer of `bytes` bytes (little endian) is stored, with its meaning. */
export interface IntField {
  at: number;
  bytes: 1 | 2 | 4 | 8;
  what: string;
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0x22, 0x7b, 0x5b, 0x39, 0x2d, 0x0a];

/** Values worth writing into an integer field holding `old` in a file of `size` bytes. */
function interestingInts(old: bigint, size: number, bytes: number): bigint[] {
  const max = (1n << BigInt(8 * bytes)) - 1n;
  const c = [0n, 1n, 2n, 3n, 7n, 8n, 255n, 256n, 65535n, 65536n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 53n, (1n << 53n) + 1n,
    (1n << 63n) - 1n, 1n << 63n, max, BigInt(size), BigInt(size) - 1n, BigInt(size) + 1n, old * 2n, old / 2n, old + 1000n];
  for (let k = 1n; k <= 8n; k++) c.push(old + k, old - k);
  return c.map((v) => ((v % (max + 1n)) + (max + 1n)) % (max + 1n));
}

function readInt(b: Uint8Array, at: number, bytes: number): bigint {
  let v = 0n;
  for (let i = bytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i] ?? 0);
  return v;
}

function writeInt(b: Uint8Array, at: number, bytes: number, v: bigint): void {
  for (let i = 0; i < bytes && at + i < b.length; i++) {
    b[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * Float bit patterns that break arithmetic: NaN, infinities, the largest finite, -0, a subnormal; and
 * for f32 (header values such as a RoPE base or an epsilon are f32) -1, 0, 1 and 0.5.
 */
const POISON_F32 = [0x7fc00000, 0x7f800000, 0xff800000, 0x7f7fffff, 0x80000000, 0x00000001, 0xff7fffff, 0xbf800000, 0x00000000, 0x3f800000, 0x3f000000];
const POISON_F16 = [0x7e00, 0x7c00, 0xfc00, 0x7bff, 0x8000, 0x0001];
const POISON_BF16 = [0x7fc0, 0x7f80, 0xff80, 0x7f7f, 0x8000, 0x0001];

export interface BinaryLayout {
  /** Bytes at the start holding structure (header, metadata); mutations favour them. */
  headerEnd: number;
  /** Integer fields known to hold lengths, counts, offsets or dims. */
  fields: IntField[];
  /** Where float data of a known element type lies, for NaN/Inf injection. */
  floats?: { start: number; end: number; type: 'F32' | 'F16' | 'BF16' }[];
}

/** One random binary mutation of `data` (a copy is returned), guided by `layout` when given. */
export function mutateBytes(data: Uint8Array, rng: Rng, layout: BinaryLayout, donors: readonly Uint8Array[] = []): Mutated<Uint8Array> {
  const size = data.length;
  const inHeader = () => (layout.headerEnd > 0 && rng.chance(0.8) ? rng.int(Math.min(layout.headerEnd, size)) : rng.int(Math.max(1, size)));
  const op = rng.int(100);
  if (op < 30 && layout.fields.length > 0) {
    const f = rng.pick(layout.fields);
    const out = data.slice();
    const old = readInt(out, f.at, f.bytes);
    const v = rng.pick(interestingInts(old, size, f.bytes));
    writeInt(out, f.at, f.bytes, v);
    return { value: out, what: `${f.what} (u${8 * f.bytes} at byte ${f.at}): ${old} -> ${v}` };
  }
  if (op < 45) {
    const out = data.slice();
    const n = rng.range(1, 4);
    const at: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = inHeader();
      out[p] = out[p]! ^ (1 << rng.int(8));
      at.push(p);
    }
    return { value: out, what: `bit flips at bytes ${at.join(', ')}` };
  }
  if (op < 55) {
    const out = data.slice();
    const p = inHeader();
    const v = rng.pick(INTERESTING_BYTES);
    out[p] = v;
    return { value: out, what: `byte ${p} set to 0x${v.toString(16)}` };
  }
  if (op < 62 && layout.floats && layout.floats.length > 0) {
    const region = rng.pick(layout.floats);
    const width = region.type === 'F32' ? 4 : 2;
    const count = Math.floor((region.end - region.start) / width);
    if (count > 0) {
      const out = data.slice();
      const at = region.start + width * rng.int(count);
      const bits = rng.pick(region.type === 'F32' ? POISON_F32 : region.type === 'F16' ? POISON_F16 : POISON_BF16);
      writeInt(out, at, width, BigInt(bits));
      return { value: out, what: `${region.type} value at byte ${at} set to bits 0x${bits.toString(16)}` };
    }
  }
  if (op < 72) {
    const cut = rng.chance(0.5) ? inHeader() : size - rng.range(1, Math.min(64, Math.max(1, size)));
    return { value: data.slice(0, Math.max(0, cut)), what: `truncated to ${Math.max(0, cut)} of ${size} bytes` };
  }
  if (op < 76) {
    const extra = new Uint8Array(rng.pick([1, 7, 8, 32, 1000]));
    if (rng.chance(0.5)) for (let i = 0; i < extra.length; i++) extra[i] = rng.int(256);
    return { value: concat(data, extra), what: `${extra.length} bytes appended` };
  }
  if (op < 84) {
    // splice: a chunk of this file (or of another seed) copied over another place
    const donor = donors.length > 0 && rng.chance(0.3) ? rng.pick(donors) : data;
    const len = Math.min(rng.pick([1, 4, 8, 16, 64, 512]), donor.length);
    const from = rng.int(Math.max(1, donor.length - len + 1));
    const to = inHeader();
    const out = data.slice();
    out.set(donor.subarray(from, from + len).subarray(0, Math.max(0, out.length - to)), to);
    return { value: out, what: `${len} bytes from byte ${from} of ${donor === data ? 'itself' : 'another seed'} copied to byte ${to}` };
  }
  if (op < 92) {
    const at = inHeader();
    const len = rng.pick([1, 2, 4, 8, 13, 100]);
    if (rng.chance(0.5)) return { value: concat(data.subarray(0, at), data.subarray(at + len)), what: `${len} bytes deleted at byte ${at}` };
    const ins = new Uint8Array(len);
    for (let i = 0; i < len; i++) ins[i] = rng.pick(INTERESTING_BYTES);
    return { value: concat(data.subarray(0, at), ins, data.subarray(at)), what: `${len} bytes inserted at byte ${at}` };
  }
  // an aligned integer anywhere in the header set to an interesting value
  const bytes = rng.pick([2, 4, 8] as const);
  const at = Math.floor(inHeader() / bytes) * bytes;
  const out = data.slice();
  const old = readInt(out, at, bytes);
  const v = rng.pick(interestingInts(old, size, bytes));
  writeInt(out, at, bytes, v);
  return { value: out, what: `u${8 * bytes} at byte ${at}: ${old} -> ${v}` };
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// JSON

type JsonPath = (string | number)[];

/** Nodes deeper than this are neither chosen nor walked (a document mutated to be deeply nested). */
const MAX_WALK_DEPTH = 64;

/** Whether a JSON value nests deeper than `limit` (checked without recursion). */
function deeperThan(root: unknown, limit: number): boolean {
  const stack: { v: unknown; d: number }[] = [{ v: root, d: 0 }];
  let seen = 0;
  while (stack.length > 0 && seen++ < 1_000_000) {
    const { v, d } = stack.pop()!;
    if (d > limit) return true;
    if (v !== null && typeof v === 'object') for (const c of Object.values(v).slice(0, 256)) stack.push({ v: c, d: d + 1 });
  }
  return false;
}

/** Up to `limit` paths of a JSON value's nodes (reservoir sample; every node has the same chance). */
function samplePaths(root: unknown, rng: Rng, limit = 64): JsonPath[] {
  const out: JsonPath[] = [];
  let seen = 0;
  const stack: { v: unknown; path: JsonPath }[] = [{ v: root, path: [] }];
  while (stack.length > 0 && seen < 200_000) {
    const { v, path } = stack.pop()!;
    seen++;
    if (path.length > MAX_WALK_DEPTH) continue;
    if (out.length < limit) out.push(path);
    else {
      const j = rng.int(seen);
      if (j < limit) out[j] = path;
    }
    if (Array.isArray(v)) {
      // long arrays (a vocabulary's merges): a few elements stand for the rest
      const idx = v.length <= 16 ? v.map((_, i) => i) : Array.from({ length: 16 }, () => rng.int(v.length));
      for (const i of idx) stack.push({ v: v[i], path: [...path, i] });
    } else if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v);
      const pickKeys = keys.length <= 64 ? keys : Array.from({ length: 64 }, () => keys[rng.int(keys.length)]!);
      for (const k of pickKeys) stack.push({ v: (v as Record<string, unknown>)[k], path: [...path, k] });
    }
  }
  return out;
}

function getAt(root: unknown, path: JsonPath): unknown {
  let v = root;
  for (const p of path) v = (v as Record<string | number, unknown>)[p];
  return v;
}

/** Raw JSON texts that stress a parser's consumer: nesting, extreme numbers, wrong types, sizes. */
function hostileJson(rng: Rng, old: unknown, scale: Scale): { text: string; what: string } {
  const k = rng.int(16);
  switch (k) {
    case 0: {
      const depth = size(rng, [100, 10_000, 100_000, 1_000_000], scale.maxSize);
      const [o, c] = rng.chance(0.5) ? ['[', ']'] : ['{"a":', '}'];
      return { text: o.repeat(depth) + '1' + c.repeat(depth), what: `nesting ${depth} deep` };
    }
    case 1: {
      const v = rng.pick(['1e300', '1e308', '1e400', '-1e400', '9007199254740993', '4294967296', '1000000000', '2147483648', '1e9', '18446744073709551616']);
      return { text: v, what: `huge number ${v}` };
    }
    case 2: {
      const v = rng.pick(['-1', '-1e9', '-0.5', '-0', '-2147483649', '-1e300']);
      return { text: v, what: `negative number ${v}` };
    }
    case 3: {
      const v = rng.pick(['"NaN"', '"Infinity"', '"-Infinity"', '"1e999"', '"nan"', '"inf"', '"-1"', '"0x10"', '""']);
      return { text: v, what: `NaN-like string ${v}` };
    }
    case 4: {
      const v = rng.pick(['null', 'true', 'false', '0', '1', '"x"', '[]', '{}', '[1]', '{"a":1}', '0.5']);
      return { text: v, what: `wrong type ${v}` };
    }
    case 5: {
      const n = size(rng, [1000, 100_000, 1_000_000], scale.maxSize);
      const el = rng.pick(['1', '0', '"a"', 'null', '[]', '1e300', '-1']);
      return { text: `[${new Array(n).fill(el).join(',')}]`, what: `array of ${n} ${el}` };
    }
    case 6: {
      const n = size(rng, [1000, 100_000, 1_000_000], scale.maxSize);
      return { text: JSON.stringify('x'.repeat(n)), what: `string of ${n} characters` };
    }
    case 7: {
      const n = rng.pick([1000, 100_000]);
      const keys = Array.from({ length: n }, (_, i) => `"k${i}":${i}`);
      return { text: `{${keys.join(',')}}`, what: `object of ${n} keys` };
    }
    case 8: {
      if (typeof old === 'number') {
        const v = rng.pick([old + 1, old - 1, old * 2, Math.floor(old / 2), 0, -old, old + 0.5]);
        return { text: JSON.stringify(v), what: `number ${old} -> ${v}` };
      }
      return { text: JSON.stringify(old === null ? 0 : typeof old === 'string' ? old + old : old), what: 'value doubled' };
    }
    case 9: {
      if (Array.isArray(old) && old.length > 0) {
        const copy = [...old];
        const op = rng.int(3);
        if (op === 0) copy.pop();
        else if (op === 1) copy.push(copy[0]);
        else copy.reverse();
        return { text: JSON.stringify(copy), what: ['array shortened', 'array lengthened', 'array reversed'][op]! };
      }
      return { text: '[]', what: 'empty array' };
    }
    case 10: {
      if (old !== null && typeof old === 'object' && !Array.isArray(old)) {
        const keys = Object.keys(old);
        if (keys.length > 0) {
          const copy = { ...(old as Record<string, unknown>) };
          const key = rng.pick(keys);
          delete copy[key];
          return { text: JSON.stringify(copy), what: `key ${JSON.stringify(key).slice(0, 40)} removed from object` };
        }
      }
      return { text: '{}', what: 'empty object' };
    }
    case 11:
      return { text: JSON.stringify(rng.pick(['\u0000', '\ud800', '\u2581\u2581', '<unk>', '<s>', ' '.repeat(1000), '\\', '{%', 'a b'])), what: 'odd string' };
    case 12:
      return { text: rng.pick(['1.5', '0.1', '3.3e-5', '65504', '65520', '3.5e38', '1e-45']), what: 'fraction' };
    case 13: {
      const n = rng.pick([2, 3, 100]);
      return { text: `[${new Array(n).fill(JSON.stringify(old ?? null)).join(',')}]`, what: `value repeated ${n} times in a list` };
    }
    case 14:
      return { text: `{"value":${JSON.stringify(old ?? null)}}`, what: 'value wrapped in an object' };
    default: {
      const n = size(rng, [100_000, 1_000_000], scale.maxSize);
      return { text: `[${new Array(n).fill('1').join(',')}]`, what: `array of ${n} ones` };
    }
  }
}

/**
 * One structural mutation of a JSON document: a node replaced by a hostile value, removed, or
 * duplicated, or the text itself damaged. Returns the new text.
 */
export function mutateJson(text: string, rng: Rng, scale: Scale = FULL): Mutated<string> {
  try {
    return mutateJsonTree(text, rng, scale);
  } catch {
    // a document too deep for JSON.stringify (an earlier mutation nested it): edit the text instead
    return mutateText(text, rng);
  }
}

function mutateJsonTree(text: string, rng: Rng, scale: Scale): Mutated<string> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return mutateText(text, rng);
  }
  // a document an earlier mutation nested deeply cannot be re-serialised (JSON.stringify recurses): edit the text
  if (rng.chance(0.12) || deeperThan(doc, 1000)) return mutateText(text, rng);
  const paths = samplePaths(doc, rng);
  const path = rng.pick(paths);
  const where = path.length === 0 ? 'the document' : path.map((p) => String(p).slice(0, 40)).join('.');
  const PLACEHOLDER = '\u0000kvsieve-fuzz-placeholder\u0000';
  const parentPath = path.slice(0, -1);
  const last = path[path.length - 1];
  if (path.length > 0 && rng.chance(0.15)) {
    // remove the node (a field or a list element)
    const parent = getAt(doc, parentPath) as Record<string | number, unknown> | unknown[];
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete (parent as Record<string, unknown>)[last as string];
    return { value: JSON.stringify(doc), what: `${where} removed` };
  }
  if (path.length > 0 && typeof last === 'string' && rng.chance(0.05)) {
    // a duplicated key, later value wins in JSON.parse
    const { text: raw, what } = hostileJson(rng, getAt(doc, path), scale);
    const parent = getAt(doc, parentPath) as Record<string, unknown>;
    parent[last] = PLACEHOLDER;
    const base = JSON.stringify(doc);
    const at = base.indexOf(JSON.stringify(PLACEHOLDER));
    return {
      value: `${base.slice(0, at)}${JSON.stringify(getAt(JSON.parse(text), path) ?? null)},${JSON.stringify(last)}:${raw}${base.slice(at + JSON.stringify(PLACEHOLDER).length)}`,
      what: `${where} given twice, the second ${what}`,
    };
  }
  const old = getAt(doc, path);
  const { text: raw, what } = hostileJson(rng, old, scale);
  if (path.length === 0) return { value: raw, what: `${where} replaced by ${what}` };
  const parent = getAt(doc, parentPath) as Record<string | number, unknown>;
  parent[last!] = PLACEHOLDER;
  const base = JSON.stringify(doc);
  const q = JSON.stringify(PLACEHOLDER);
  const at = base.indexOf(q);
  return { value: base.slice(0, at) + raw + base.slice(at + q.length), what: `${where} replaced by ${what}` };
}

/** Damage to a text as text: cut, a character flipped, junk inserted, a BOM, trailing garbage. */
export function mutateText(text: string, rng: Rng): Mutated<string> {
  const n = text.length;
  const at = rng.int(Math.max(1, n));
  switch (rng.int(6)) {
    case 0:
      return { value: text.slice(0, at), what: `text cut at character ${at}` };
    case 1:
      return { value: text.slice(0, at) + String.fromCharCode(text.charCodeAt(at) ^ (1 << rng.int(7))) + text.slice(at + 1), what: `character ${at} flipped` };
    case 2: {
      const junk = rng.pick(['{', '}', '[', ']', '"', ',', ':', '\\', '\n', '\u0000', '\ufffd', '{{', '%}', '\ud800']);
      return { value: text.slice(0, at) + junk + text.slice(at), what: `${JSON.stringify(junk)} inserted at character ${at}` };
    }
    case 3:
      return { value: `\ufeff${text}`, what: 'byte order mark prepended' };
    case 4:
      return { value: `${text}${rng.pick([' x', '}', '\u0000', ',{}'])}`, what: 'trailing garbage' };
    default:
      return { value: text.slice(0, at) + text.slice(at + rng.range(1, 20)), what: `characters deleted at ${at}` };
  }
}

// ------------------------------------------------------------------------------------------------
// Chat templates

/** Jinja snippets that ask for a lot of work or break the engine. */
const TEMPLATE_SNIPPETS: ((rng: Rng, scale: Scale) => string)[] = [
  (rng) => `{% for i in range(${rng.pick(['10', '100000', '100001', '1000000', '100000000', '1e18', '-1000000000', '0, 1e12', '0, 100000000, 1', '10, 0, -1', '0, 1, 0'])}) %}x{% endfor %}`,
  (rng, sc) => {
    const loops = sc.maxLoop >= 1000 ? [1000, 3000, 100000] : [10, 100, 300];
    return `{% for a in range(${size(rng, loops, sc.maxLoop)}) %}{% for b in range(${size(rng, loops, sc.maxLoop)}) %}{{ b }}{% endfor %}{% endfor %}`;
  },
  (rng) => `{% set s = namespace(v='ab') %}{% for i in range(${rng.pick([20, 40, 64])}) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}`,
  () => '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  (rng, sc) => `{{ ${'('.repeat(size(rng, [100, 10000, 100000], sc.maxSize / 10))}1${')'.repeat(size(rng, [100, 10000, 100000], sc.maxSize / 10))} }}`,
  (rng) => `{{ ' ' | indent(${rng.pick([10, 100000000, 1e9])}) }}`,
  (rng) => `{{ range(${rng.pick([10, 100000, 10000000])}) | join(',') }}`,
  () => '{{ messages | nosuchfilter }}',
  () => '{{ raise_exception("custom\\nmulti-line\\nerror") }}',
  () => '{% if %}',
  () => '{{ messages[0].content.split("")[1000000] }}',
  () => '{{ x.y.z }}{{ none.attr }}{{ messages[10].content }}',
  (rng) => `{{ "${'x'.repeat(rng.pick([10, 100000]))}" * ${rng.pick([2, 1e9])} }}`,
  () => '{{ messages | tojson(indent=100000000) }}',
  () => '{% for m in messages %}{% for m2 in messages %}{{ loop.length }}{% endfor %}{% endfor %}',
  () => "{{ strftime_now('%Y-%m-%d %B') }}",
  (rng) => `{{ 1 / 0 }}{{ ${rng.pick(['10 ** 1000', '2 ** 100000', "'a' ~ 1", '[] + {}'])} }}`,
  (_, sc) => `{% set l = [] %}{% for i in range(${sc.maxLoop}) %}{% set l = l + [i] %}{% endfor %}{{ l | length }}`,
];

/** One mutation of a Jinja template: a hostile snippet inserted, or the text damaged. */
export function mutateTemplate(template: string, rng: Rng, scale: Scale = FULL): Mutated<string> {
  if (rng.chance(0.7)) {
    const snippet = rng.pick(TEMPLATE_SNIPPETS)(rng, scale);
    const at = rng.chance(0.5) ? template.length : rng.int(template.length + 1);
    return { value: template.slice(0, at) + snippet + template.slice(at), what: `template snippet ${JSON.stringify(snippet.slice(0, 80))} at ${at}` };
  }
  const m = mutateText(template, rng);
  return { value: m.value, what: `template ${m.what}` };
}
