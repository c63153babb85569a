/**
 * The KV memory of one model's batch, shared by its sequences under a limit. Each running sequence
 * holds a reservation: what its cache may allocate at most (KvCache.limitBytes). A compressed
 * sequence reserves its whole budget + buffer per (layer, KV head) when it is admitted; a growing one
 * (full cache, prefill-only schedule) reserves its tokens so far and grows in blocks of tokens.
 * The Batcher decides who runs; this keeps the books.
 */
import { InternalError } from '../core/errors.js';

/** A live gauge of the pool. */
export interface KvPoolStats {
  /** The limit (Infinity: none). */
  limitBytes: number;
  /** Bytes the running and waiting sequences have reserved (their caches may allocate up to this); held caches not included. */
  reservedBytes: number;
  /** Bytes of K and V in live cache slots now. */
  usedBytes: number;
  /** Bytes the running sequences' caches have allocated now (live or free slots). */
  allocatedBytes: number;
  /** Bytes of held caches (finished turns kept for the next; evicted first when room is needed). */
  heldBytes: number;
  /** Held caches. */
  held: number;
  /** Sequences admitted to the batch. */
  running: number;
  /** Sequences waiting for memory (arrival order; preempted ones first). */
  waiting: number;
  /** Preemptions so far: a growing sequence's cache freed to make room, recomputed when readmitted. */
  preemptions: number;
}

export class KvPool {
  private reserved = 0;
  preemptions = 0;

  constructor(readonly limitBytes: number) {
    if (!(limitBytes > 0)) throw new InternalError(`kv pool: limit must be positive, got ${limitBytes}`);
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  fits(bytes: number): boolean {
    return this.reserved + bytes <= this.limitBytes;
  }

  take(bytes: number): void {
    if (!this.fits(bytes)) throw new InternalError(`kv pool: ${bytes} bytes more would pass the limit (${this.reserved} of ${this.limitBytes} reserved)`);
    this.reserved += bytes;
  }

  give(bytes: number): void {
    if (bytes > this.reserved + 1e-6) throw new InternalError(`kv pool: ${bytes} bytes given back, only ${this.reserved} reserved`);
    this.reserved -= bytes;
  }
}
