/**
 * Shipping items to an HTTP endpoint in batches: spans to an OTLP collector
 * (traces/forwarder.ts), samples to a Prometheus remote write receiver
 * (remote-write.ts). Batched, retried with backoff, bounded: when the
 * endpoint stays down, the oldest items are dropped and counted; whoever
 * adds items never waits for it.
 *
 *   add ─► pending (≤ maxPending, oldest dropped) ─► POST <url> encode(batch)
 *                                                     ├ 2xx: done
 *                                                     ├ 429/408/5xx/network: retry (backoff, Retry-After)
 *                                                     └ other 4xx: dropped (retrying cannot help)
 *
 * Posts go through the URL guard (common/url-guard.ts): a receiver on a
 * loopback or private address needs its range allowed (`--allow-fetch`);
 * redirects are refused; answers are read up to 64 KiB.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { HerdError } from "../common/errors.ts";
import { UrlGuard } from "../common/url-guard.ts";

export interface BatchForwarderOptions<T> {
  /** Full URL, e.g. `http://collector:4318/v1/traces`. */
  url: string;
  /** Headers of every request (the body's content type, authorization). */
  headers?: Record<string, string>;
  /** One request's body from a batch of items. */
  encode: (batch: T[]) => string | Buffer;
  /** Items per request (default 500). */
  batchSize?: number;
  /** Most items waiting; beyond it the oldest are dropped (default 50,000). */
  maxPending?: number;
  /** A partial batch is sent after this long (default 1 s). */
  flushMs?: number;
  /** Tries per batch before it is dropped (default 5). */
  maxAttempts?: number;
  /** First retry delay, doubled each time, capped at 30 s (default 500 ms). */
  retryBaseMs?: number;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** Checks the URL (default: no internal address allowed). */
  guard?: UrlGuard;
}

/** The receiver's answers are read up to this size. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface ForwarderStats {
  sent: number;
  /** Dropped because the queue was full or a batch ran out of tries or was refused for good. */
  dropped: number;
  pending: number;
  retries: number;
  /** The last failure (`herd traces stats` shows the spans'). */
  lastError: string | null;
}

export class BatchForwarder<T> {
  readonly #url: string;
  readonly #headers: Record<string, string>;
  readonly #encode: (batch: T[]) => string | Buffer;
  readonly #batchSize: number;
  readonly #maxPending: number;
  readonly #flushMs: number;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #timeoutMs: number;
  readonly #guard: UrlGuard;
  #pending: T[] = [];
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #abort = new AbortController();
  readonly #stats: ForwarderStats = { sent: 0, dropped: 0, pending: 0, retries: 0, lastError: null };

  constructor(options: BatchForwarderOptions<T>) {
    this.#url = options.url;
    this.#headers = { ...options.headers };
    this.#encode = options.encode;
    this.#batchSize = options.batchSize ?? 500;
    this.#maxPending = options.maxPending ?? 50_000;
    this.#flushMs = options.flushMs ?? 1000;
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#retryBaseMs = options.retryBaseMs ?? 500;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#guard = options.guard ?? new UrlGuard();
  }

  /** Queues items; always takes them, dropping the oldest past the bound (false once closed). */
  add(items: readonly T[]): boolean {
    if (this.#closed) return false;
    for (const s of items) this.#pending.push(s);
    const over = this.#pending.length - this.#maxPending;
    if (over > 0) {
      this.#pending.splice(0, over);
      this.#stats.dropped += over;
    }
    if (this.#pending.length >= this.#batchSize) this.#kick();
    else if (!this.#timer && !this.#running) {
      this.#timer = setTimeout(() => this.#kick(), this.#flushMs);
      this.#timer.unref();
    }
    return true;
  }

  stats(): ForwarderStats {
    return { ...this.#stats, pending: this.#pending.length };
  }

  /** Sends what is pending (waiting for retries), for tests and shutdown. */
  async drain(): Promise<void> {
    while (this.#pending.length > 0 || this.#running) {
      this.#kick();
      await this.#running;
    }
  }

  /** Stops: tries once more to send what is pending within `graceMs`, then drops the rest. */
  async close(graceMs = 2000): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const timer = setTimeout(() => this.#abort.abort(), graceMs);
    try {
      await this.drain();
    } finally {
      clearTimeout(timer);
    }
  }

  #kick(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running) return;
    this.#running = this.#sendAll().finally(() => {
      this.#running = undefined;
      if (this.#pending.length > 0 && !this.#abort.signal.aborted) {
        this.#timer = setTimeout(() => this.#kick(), this.#flushMs);
        this.#timer.unref();
      }
    });
  }

  async #sendAll(): Promise<void> {
    while (this.#pending.length > 0 && !this.#abort.signal.aborted) {
      const batch = this.#pending.splice(0, this.#batchSize);
      await this.#sendBatch(batch);
    }
    if (this.#abort.signal.aborted && this.#pending.length > 0) {
      this.#stats.dropped += this.#pending.length;
      this.#pending = [];
    }
  }

  async #sendBatch(batch: T[]): Promise<void> {
    const body = this.#encode(batch);
    for (let attempt = 1; ; attempt++) {
      let retryAfterMs: number | undefined;
      try {
        const res = await this.#guard.fetch(this.#url, {
          method: "POST",
          headers: this.#headers,
          body,
          signal: this.#abort.signal,
          timeoutMs: this.#timeoutMs,
          maxBytes: MAX_ANSWER_BYTES,
        });
        if (res.status >= 200 && res.status < 300) {
          this.#stats.sent += batch.length;
          return;
        }
        this.#stats.lastError = `${this.#url} answered ${res.status}`;
        if (res.status !== 429 && res.status !== 408 && res.status < 500) break;
        const ra = Number(res.headers["retry-after"]);
        if (ra > 0) retryAfterMs = Math.min(ra, 60) * 1000;
      } catch (err) {
        this.#stats.lastError = `${this.#url}: ${(err as Error).message}`;
        // Refused by the guard (an internal address, a redirect): the same next time.
        if (err instanceof HerdError) break;
      }
      if (attempt >= this.#maxAttempts || this.#abort.signal.aborted) break;
      this.#stats.retries++;
      const delay = retryAfterMs ?? Math.min(30_000, this.#retryBaseMs * 2 ** (attempt - 1));
      try {
        await sleep(delay, undefined, { signal: this.#abort.signal });
      } catch {
        break;
      }
    }
    this.#stats.dropped += batch.length;
  }
}
