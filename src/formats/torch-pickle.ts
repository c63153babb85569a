/**
 * A reader for `torch.save` files of plain data and tensors, without Python: the zip archive torch
 * writes (`<root>/data.pkl`, `<root>/data/<key>` storages, `<root>/byteorder`), and the subset of the
 * pickle protocol (0-5 opcodes) such a payload uses. Nothing is executed: the only callables a pickle
 * may name are torch's tensor rebuild, its storage classes and `collections.OrderedDict`; any other
 * global is refused. Dicts become Maps, lists and tuples arrays, tensors `TorchTensor` (float32 data,
 * whatever the stored float type).
 */
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { KvsieveError } from '../core/errors.js';
import { bf16ToF32, f16ToF32 } from '../core/half.js';

/** One tensor of the payload, widened to float32, row-major. */
export class TorchTensor {
  constructor(
    readonly dtype: string,
    readonly shape: readonly number[],
    readonly data: Float32Array,
  ) {}
}

// ---- zip ---------------------------------------------------------------------------------------

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE), as zip stores it. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The entries of a zip archive (stored or deflated; zip64 sizes and offsets), each read on demand and CRC-checked. */
export function readZip(file: string, bytes: Uint8Array): Map<string, () => Uint8Array> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (what: string) => new KvsieveError(`${file}: not a readable zip archive (${what})`);
  const u16 = (o: number) => (o + 2 <= bytes.length ? dv.getUint16(o, true) : NaN);
  const u32 = (o: number) => (o + 4 <= bytes.length ? dv.getUint32(o, true) : NaN);
  const u64 = (o: number) => (o + 8 <= bytes.length ? Number(dv.getBigUint64(o, true)) : NaN);
  // End of central directory: the last signature within the final 64 KiB + 22 bytes (the comment's room).
  let eocd = -1;
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 65557); o--) {
    if (u32(o) === 0x06054b50) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) throw fail('no end of central directory');
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (u32(loc) !== 0x07064b50) throw fail('zip64 locator missing');
    const z64 = u64(loc + 8);
    if (u32(z64) !== 0x06064b50) throw fail('zip64 end of central directory missing');
    count = u64(z64 + 32);
    cdSize = u64(z64 + 40);
    cdOffset = u64(z64 + 48);
  }
  if (!(cdOffset + cdSize <= bytes.length)) throw fail('central directory outside the file');
  const entries = new Map<string, () => Uint8Array>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (u32(p) !== 0x02014b50) throw fail(`central directory entry ${i} has no signature`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let csize = u32(p + 20);
    let usize = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let local = u32(p + 42);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field: the 64-bit values of the fields that hold 0xffffffff, in this order.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = u16(e);
      const size = u16(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (usize === 0xffffffff) (usize = u64(q)), (q += 8);
        if (csize === 0xffffffff) (csize = u64(q)), (q += 8);
        if (local === 0xffffffff) local = u64(q);
      }
      e += 4 + size;
    }
    if (flags & 1) throw fail(`${name} is encrypted`);
    if (method !== 0 && method !== 8) throw fail(`${name} uses compression method ${method}`);
    if (u32(local) !== 0x04034b50) throw fail(`${name} has no local header`);
    const start = local + 30 + u16(local + 26) + u16(local + 28);
    if (!(start + csize <= bytes.length)) throw fail(`${name} runs past the end of the file`);
    entries.set(name, () => {
      const raw = bytes.subarray(start, start + csize);
      const data = method === 0 ? raw : new Uint8Array(inflateRawSync(raw));
      if (data.length !== usize) throw fail(`${name} holds ${data.length} bytes, its entry says ${usize}`);
      if (crc32(data) !== crc) throw fail(`${name} fails its CRC check`);
      return data;
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

// ---- pickle ------------------------------------------------------------------------------------

/** A global a pickle names (module and name), resolved to what this reader allows. */
class Global {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get full(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage reference (BINPERSID): its class, archive key and element count. */
class StorageRef {
  constructor(
    readonly dtype: string,
    readonly key: string,
    readonly numel: number,
  ) {}
}

const STORAGE_DTYPES: Record<string, string> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
};
const ALLOWED_GLOBALS = new Set([
  'torch._utils._rebuild_tensor_v2',
  'collections.OrderedDict',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

const MARK = Symbol('mark');

/**
 * Runs a pickle over the opcodes plain data and tensors use. `persistent` turns a BINPERSID id
 * into its object; `call` applies an allowed global to its arguments (REDUCE).
 */
export function unpickle(where: string, bytes: Uint8Array, persistent: (id: unknown) => unknown, call: (g: Global, args: unknown[]) => unknown): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  const text = new TextDecoder('utf-8', { fatal: true });
  let p = 0;
  const fail = (what: string) => new KvsieveError(`${where}: pickle: ${what} at byte ${p}`);
  const need = (n: number) => {
    if (p + n > bytes.length) throw fail('truncated');
  };
  const u8 = () => (need(1), bytes[p++]!);
  const u16 = () => (need(2), (p += 2), dv.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), dv.getUint32(p - 4, true));
  const i32 = () => (need(4), (p += 4), dv.getInt32(p - 4, true));
  const take = (n: number) => (need(n), (p += n), bytes.subarray(p - n, p));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw fail('unterminated line');
    const s = text.decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) throw fail('stack underflow');
    return stack.pop();
  };
  const popMark = () => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw fail('no mark');
    const items = stack.splice(at + 1);
    stack.pop();
    return items;
  };
  const top = () => {
    if (stack.length === 0) throw fail('stack underflow');
    return stack[stack.length - 1];
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (!(d instanceof Map)) throw fail('SETITEM on a non-dict');
    for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail('protocol above 5');
        break;
      case 0x95: // FRAME
        take(8);
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) throw fail('APPEND to a non-list');
        l.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) throw fail('APPENDS to a non-list');
        l.push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: // SETITEMS
        setItems(stack[stack.lastIndexOf(MARK) - 1], popMark());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw fail(`memo ${k} unset`);
        stack.push(memo.get(k));
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const b = take(u8());
        let v = 0n;
        for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (b.length > 0 && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        need(8);
        stack.push(text.decode(take(Number(dv.getBigUint64((p += 8) - 8, true)))));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(new TextDecoder('latin1').decode(take(u8())));
        break;
      case 0x54: // BINSTRING
        stack.push(new TextDecoder('latin1').decode(take(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x63: {
        // GLOBAL
        const g = new Global(line(), line());
        if (!ALLOWED_GLOBALS.has(g.full)) throw fail(`refuses global ${g.full} (only tensors and plain data are read)`);
        stack.push(g);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        const g = new Global(String(module), String(name));
        if (!ALLOWED_GLOBALS.has(g.full)) throw fail(`refuses global ${g.full} (only tensors and plain data are read)`);
        stack.push(g);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        if (!(f instanceof Global) || !Array.isArray(args)) throw fail('REDUCE needs a global and an argument tuple');
        stack.push(call(f, args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!(cls instanceof Global) || !Array.isArray(args)) throw fail('NEWOBJ needs a class and an argument tuple');
        stack.push(call(cls, args));
        break;
      }
      case 0x62: {
        // BUILD: state on plain objects is ignored (OrderedDict's is empty)
        pop();
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistent(pop()));
        break;
      default:
        throw fail(`unsupported opcode 0x${op.toString(16)}`);
    }
  }
}

/** Elements of a stored storage as float32. */
function storageF32(where: string, raw: Uint8Array, dtype: string, littleEndian: boolean): Float32Array {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const size = { float32: 4, float64: 8, float16: 2, bfloat16: 2 }[dtype]!;
  if (raw.length % size !== 0) throw new KvsieveError(`${where}: storage of ${raw.length} bytes is not whole ${dtype} elements`);
  const n = raw.length / size;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    out[i] =
      dtype === 'float32'
        ? dv.getFloat32(o, littleEndian)
        : dtype === 'float64'
          ? dv.getFloat64(o, littleEndian)
          : dtype === 'float16'
            ? f16ToF32(dv.getUint16(o, littleEndian))
            : bf16ToF32(dv.getUint16(o, littleEndian));
  }
  return out;
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/**
 * Reads a `torch.save` file holding plain data (dicts, lists, tuples, strings, numbers, booleans,
 * None) and float tensors. Throws a one-line KvsieveError naming the file for anything else.
 */
export function readTorchFile(file: string): unknown {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read (${(e as Error).message})`);
  }
  const zip = readZip(file, bytes);
  const pkl = [...zip.keys()].filter((k) => k.endsWith('/data.pkl') && k.split('/').length === 2);
  if (pkl.length !== 1) throw new KvsieveError(`${file}: not a torch.save archive (no single <root>/data.pkl)`);
  const root = pkl[0]!.slice(0, -'/data.pkl'.length);
  const order = zip.get(`${root}/byteorder`);
  const littleEndian = order ? new TextDecoder().decode(order()).trim() !== 'big' : true;
  const storages = new Map<string, Float32Array>();
  const where = `${file}: ${pkl[0]}`;
  return unpickle(
    where,
    zip.get(pkl[0]!)!(),
    (id) => {
      // ('storage', storage class, key, location, numel)
      if (!Array.isArray(id) || id[0] !== 'storage' || !(id[1] instanceof Global) || typeof id[2] !== 'string' || !isInt(id[4])) {
        throw new KvsieveError(`${where}: unsupported persistent id`);
      }
      const dtype = STORAGE_DTYPES[id[1].name];
      if (!dtype) throw new KvsieveError(`${where}: unsupported storage ${id[1].full}`);
      return new StorageRef(dtype, id[2], id[4]);
    },
    (g, args) => {
      if (g.full === 'collections.OrderedDict') return new Map();
      if (g.full !== 'torch._utils._rebuild_tensor_v2') throw new KvsieveError(`${where}: ${g.full} cannot be called`);
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof StorageRef) || !isInt(offset) || !Array.isArray(size) || !Array.isArray(stride) || !size.every(isInt) || !stride.every(isInt) || size.length !== stride.length) {
        throw new KvsieveError(`${where}: malformed tensor`);
      }
      let data = storages.get(storage.key);
      if (!data) {
        const entry = zip.get(`${root}/data/${storage.key}`);
        if (!entry) throw new KvsieveError(`${where}: storage ${storage.key} is missing from the archive`);
        data = storageF32(where, entry(), storage.dtype, littleEndian);
        if (data.length !== storage.numel) throw new KvsieveError(`${where}: storage ${storage.key} holds ${data.length} elements, its reference says ${storage.numel}`);
        storages.set(storage.key, data);
      }
      const shape = size as number[];
      const strides = stride as number[];
      const count = shape.reduce((a, b) => a * b, 1);
      let last = offset;
      shape.forEach((s, i) => (last += s > 0 ? (s - 1) * strides[i]! : 0));
      if (count > 0 && last >= data.length) throw new KvsieveError(`${where}: a tensor reads past its storage ${storage.key}`);
      const out = new Float32Array(count);
      // Row-major walk over the shape, through the strides.
      const idx = new Array<number>(shape.length).fill(0);
      for (let i = 0; i < count; i++) {
        let src = offset;
        for (let a = 0; a < shape.length; a++) src += idx[a]! * strides[a]!;
        out[i] = data[src]!;
        for (let a = shape.length - 1; a >= 0; a--) {
          if (++idx[a]! < shape[a]!) break;
          idx[a] = 0;
        }
      }
      return new TorchTensor(storage.dtype, shape, out);
    },
  );
}
