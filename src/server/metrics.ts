/**
 * The server's Prometheus metrics (prom-client), on a registry of its own per server: the batch's
 * gauge read from the engine at each scrape, and counters and histograms the HTTP side updates as
 * requests run. Tokens per second is `rate(kvsieve_generated_tokens_total[1m])`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { KvPoolStats } from '../generate/pool.js';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly duration: Histogram<'endpoint'>;
  readonly firstToken: Histogram<'endpoint'>;
  readonly promptTokens: Counter;
  readonly cachedTokens: Counter;
  readonly generatedTokens: Counter;
  readonly compressions: Counter;

  constructor(stats: () => KvPoolStats | null, queued: () => number) {
    const r = [this.registry];
    const gauge = (name: string, help: string, read: (s: KvPoolStats) => number) =>
      new Gauge({
        name,
        help,
        registers: r,
        collect() {
          const s = stats();
          if (s) this.set(Number.isFinite(read(s)) ? read(s) : -1);
        },
      });
    gauge('kvsieve_sequences_running', 'Sequences in the running batch', (s) => s.running);
    gauge('kvsieve_sequences_waiting', 'Sequences waiting for KV memory', (s) => s.waiting);
    gauge('kvsieve_conversations_held', 'Finished conversations whose KV cache is held for their next turn', (s) => s.held);
    gauge('kvsieve_kv_limit_bytes', 'KV memory pool limit (-1: none)', (s) => s.limitBytes);
    gauge('kvsieve_kv_reserved_bytes', 'KV bytes reserved by running and waiting sequences', (s) => s.reservedBytes);
    gauge('kvsieve_kv_used_bytes', 'KV bytes in live cache slots of running sequences', (s) => s.usedBytes);
    gauge('kvsieve_kv_held_bytes', 'KV bytes of held conversations (evicted first when room is needed)', (s) => s.heldBytes);
    new Gauge({ name: 'kvsieve_requests_queued', help: 'Requests accepted and waiting for their first token', registers: r, collect() { this.set(queued()); } });
    new Counter({
      name: 'kvsieve_preemptions_total',
      help: 'Full-cache sequences preempted (cache freed, recomputed later) to make room',
      registers: r,
      collect() {
        const s = stats();
        if (s) {
          this.reset();
          this.inc(s.preemptions);
        }
      },
    });
    this.requests = new Counter({ name: 'kvsieve_requests_total', help: 'HTTP requests by endpoint and status', labelNames: ['endpoint', 'status'], registers: r });
    this.duration = new Histogram({
      name: 'kvsieve_request_duration_seconds',
      help: 'Time from a request arriving to its response ending',
      labelNames: ['endpoint'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: r,
    });
    this.firstToken = new Histogram({
      name: 'kvsieve_time_to_first_token_seconds',
      help: 'Time from a generation request arriving to its first token',
      labelNames: ['endpoint'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.promptTokens = new Counter({ name: 'kvsieve_prompt_tokens_total', help: 'Prompt tokens of accepted requests', registers: r });
    this.cachedTokens = new Counter({ name: 'kvsieve_cached_prompt_tokens_total', help: 'Prompt tokens resumed from a held conversation instead of read again', registers: r });
    this.generatedTokens = new Counter({ name: 'kvsieve_generated_tokens_total', help: 'Tokens generated', registers: r });
    this.compressions = new Counter({ name: 'kvsieve_compressions_total', help: 'KV cache compressions of finished generations', registers: r });
  }
}
