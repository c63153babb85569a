import { InternalError } from '../../core/errors.js';
import type { KvDtype } from '../../core/kv-rows.js';
import {
  KV_ENTRY_WORDS, KV_KEYS, KV_KEY_SCALES, KV_LENGTH, KV_PROB_SUMS, KV_VALUE_SCALES, KV_VALUES, SEG_ENTRY_WORDS, SEG_FIRST_UNIT,
  SEG_NQ, SEG_OUT, SEG_Q, SEG_QCHUNK, SEG_TABLE,
} from './abi.js';
import type { WasmMemory } from './wasm-api.js';

function isInt(v: number, min = 0): boolean {
  return Number.isInteger(v) && v >= min;
}

/**
 * A view of one layer's KV head table (layout: abi.ts) in the shared memory, the table the attention
 * and kvStore kernels read: per KV head its K/V slot arrays ([capacity][headDim] of the KV type; keys
 * after RoPE), int8 scales, live length and optional probSums. It reads and sets those, nothing more:
 * the engine's cache, its appends and its compaction, is src/kv.
 * f16 slots must hold finite halves (op.kvStore saturates at +-65504); attention widens them with a
 * finite-only conversion. Its checks build their messages only when they fail: WasmBackend sets every
 * head of the table for each attention call.
 */
export class KvLayer {
  private readonly words: Int32Array;

  constructor(
    private readonly memory: WasmMemory,
    readonly type: KvDtype,
    readonly nKvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
    /** Byte offset of the head table (32 bytes per head). */
    readonly table: number,
  ) {
    this.words = new Int32Array(memory.buffer, table, nKvHeads * KV_ENTRY_WORDS);
  }

  get tracksProbSums(): boolean {
    return this.words[KV_PROB_SUMS] !== 0;
  }

  length(h: number): number {
    return this.words[this.entry(h) + KV_LENGTH]!;
  }

  setLength(h: number, n: number): void {
    if (!(isInt(n) && n <= this.capacity)) throw new InternalError(`kv view: length ${n} outside 0..${this.capacity}`);
    this.words[this.entry(h) + KV_LENGTH] = n;
  }

  /**
   * Points head h at slot arrays that live elsewhere in the shared memory (byte offsets; scales and
   * probSums 0 when absent): how WasmBackend describes the cache's own heads to the kernels.
   */
  setHead(h: number, head: { keys: number; values: number; keyScales: number; valueScales: number; probSums: number; length: number }): void {
    const e = this.entry(h);
    this.words[e + KV_KEYS] = head.keys;
    this.words[e + KV_VALUES] = head.values;
    this.words[e + KV_KEY_SCALES] = head.keyScales;
    this.words[e + KV_VALUE_SCALES] = head.valueScales;
    this.words[e + KV_PROB_SUMS] = head.probSums;
    this.setLength(h, head.length);
  }

  /** Sets every head's length. */
  setLengthAll(n: number): void {
    for (let h = 0; h < this.nKvHeads; h++) this.setLength(h, n);
  }

  /** Slot array views of head h ([capacity * headDim]; Float32Array, Uint16Array of f16 bits, or Int8Array). */
  keys(h: number): Float32Array | Uint16Array | Int8Array {
    return this.area(this.words[this.entry(h) + KV_KEYS]! >>> 0);
  }

  values(h: number): Float32Array | Uint16Array | Int8Array {
    return this.area(this.words[this.entry(h) + KV_VALUES]! >>> 0);
  }

  /** int8 caches: the per-slot scales of head h. */
  keyScales(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + KV_KEY_SCALES]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  valueScales(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + KV_VALUE_SCALES]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  /** The running attention sums of head h (when tracked). */
  probSums(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + KV_PROB_SUMS]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  private entry(h: number): number {
    if (!(isInt(h) && h < this.nKvHeads)) throw new InternalError(`kv view: head ${h} outside 0..${this.nKvHeads - 1}`);
    return h * KV_ENTRY_WORDS;
  }

  private area(p: number): Float32Array | Uint16Array | Int8Array {
    const n = this.capacity * this.headDim;
    const buf = this.memory.buffer;
    if (this.type === 'f32') return new Float32Array(buf, p, n);
    if (this.type === 'f16') return new Uint16Array(buf, p, n);
    return new Int8Array(buf, p, n);
  }
}

/**
 * A view of a batched attention's segment table (layout: abi.ts) in the shared memory: per segment
 * its query and output rows, query tokens, KV head table (a KvLayer's), query tokens per work unit
 * and first work unit. op.attentions fills it; it holds nothing else.
 */
export class SegmentTable {
  private readonly words: Int32Array;

  constructor(
    memory: WasmMemory,
    /** Segments it has room for. */
    readonly capacity: number,
    /** Byte offset of the table (32 bytes per segment). */
    readonly ptr: number,
  ) {
    this.words = new Int32Array(memory.buffer, ptr, capacity * SEG_ENTRY_WORDS);
  }

  set(i: number, e: { q: number; out: number; nq: number; table: number; qChunk: number; firstUnit: number }): void {
    if (!(isInt(i) && i < this.capacity)) throw new InternalError(`segment table: entry ${i} outside 0..${this.capacity - 1}`);
    const w = this.words;
    const b = i * SEG_ENTRY_WORDS;
    w[b + SEG_Q] = e.q;
    w[b + SEG_OUT] = e.out;
    w[b + SEG_NQ] = e.nq;
    w[b + SEG_TABLE] = e.table;
    w[b + SEG_QCHUNK] = e.qChunk;
    w[b + SEG_FIRST_UNIT] = e.firstUnit;
  }
}
