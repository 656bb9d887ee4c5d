/**
 * Webhook delivery: a bounded outbox of JSON POSTs, one receiver's
 * deliveries in order (firing before its resolved), retried with
 * exponential backoff up to a number of attempts.
 *
 *   enqueue ─► outbox (≤ maxQueue; full: the oldest is dropped) ─► every tick: each receiver's first due delivery
 *     2xx ─► delivered   5xx / 408 / 429 / network ─► retry after backoff·2^n (≤ maxAttempts, then dropped)
 *     other 4xx ─► dropped (the receiver refuses it; retrying would not help)
 *
 * The outbox is handed to the evaluator's state file on every change
 * (`onChange`), so deliveries not made before a restart are made after it.
 * It holds no header values: a receiver's headers (secrets) are asked for
 * (`headers`) at each attempt and go only into the request.
 *
 * Every POST goes through the URL guard (common/url-guard.ts): a receiver on
 * a loopback or private address is refused unless its range is allowed, a
 * redirect is a failure, and at most 64 KiB of the answer is read.
 */

import { HerdError } from "../../common/errors.ts";
import { newId } from "../../common/ids.ts";
import { UrlGuard } from "../../common/url-guard.ts";

/** One POST waiting to be made. */
export interface Delivery {
  id: string;
  /** `<tenant>/<name>` of the receiver. */
  receiver: string;
  url: string;
  body: unknown;
  attempts: number;
  /** Not before this time (ms). */
  nextAt: number;
  createdAt: number;
}

/** How deliveries to one receiver went (GET /alerts/receivers). */
export interface ReceiverStatus {
  delivered: number;
  /** Attempts that failed (each retry counts). */
  failedAttempts: number;
  /** Deliveries given up on (attempts used up, refused, or pushed out of a full outbox). */
  dropped: number;
  queued: number;
  lastDeliveredAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
}

export interface NotifierOptions {
  /** Most deliveries waiting, over all receivers (default 1000). */
  maxQueue?: number;
  /** Attempts per delivery before it is dropped (default 6). */
  maxAttempts?: number;
  /** First retry delay; doubled per attempt (default 1 s), capped at maxBackoffMs (default 60 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-POST timeout (default 5 s). */
  timeoutMs?: number;
  /** How often due deliveries are looked for (default 250 ms). */
  tickMs?: number;
  /** The outbox changed (persist it). */
  onChange?: () => void;
  /** A receiver's headers with their values, decrypted for one attempt (default: none). */
  headers?: (receiver: string) => Promise<Record<string, string>>;
  /** Checks receivers' URLs (default: no internal address allowed). */
  guard?: UrlGuard;
}

/** Receivers' answers are read up to this size (they are not used; reading keeps the connection sane). */
const MAX_ANSWER_BYTES = 64 * 1024;

export class WebhookNotifier {
  readonly #o: Required<Omit<NotifierOptions, "onChange" | "headers">> &
    Pick<NotifierOptions, "onChange" | "headers">;
  #outbox: Delivery[] = [];
  readonly #inFlight = new Set<string>();
  readonly #status = new Map<string, ReceiverStatus>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: NotifierOptions = {}) {
    this.#o = {
      maxQueue: options.maxQueue ?? 1000,
      maxAttempts: options.maxAttempts ?? 6,
      backoffMs: options.backoffMs ?? 1000,
      maxBackoffMs: options.maxBackoffMs ?? 60_000,
      timeoutMs: options.timeoutMs ?? 5000,
      tickMs: options.tickMs ?? 250,
      onChange: options.onChange,
      headers: options.headers,
      guard: options.guard ?? new UrlGuard(),
    };
  }

  start(): void {
    this.#stopped = false;
    this.#timer = setInterval(() => this.tick(), this.#o.tickMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  /** Queues a POST of `body` to the receiver. */
  enqueue(receiver: { key: string; url: string }, body: unknown): void {
    while (this.#outbox.length >= this.#o.maxQueue) {
      const i = this.#outbox.findIndex((d) => !this.#inFlight.has(d.id));
      if (i < 0) break;
      const [old] = this.#outbox.splice(i, 1) as [Delivery];
      this.#fail(old.receiver, "dropped: the outbox is full", true);
    }
    const now = Date.now();
    this.#outbox.push({
      id: newId(12),
      receiver: receiver.key,
      url: receiver.url,
      body,
      attempts: 0,
      nextAt: now,
      createdAt: now,
    });
    this.status(receiver.key).queued++;
    this.#o.onChange?.();
    this.tick();
  }

  /** Deliveries not made yet (for the state file). */
  pending(): Delivery[] {
    return this.#outbox.map((d) => ({ ...d }));
  }

  /** Puts deliveries left from before a restart back in the outbox. */
  restore(deliveries: Delivery[]): void {
    for (const d of deliveries.slice(-this.#o.maxQueue)) {
      // A state file from before secrets kept header values: they are dropped, not carried on.
      const { headers: _, ...kept } = d as Delivery & { headers?: unknown };
      this.#outbox.push({ ...kept, nextAt: Math.min(d.nextAt, Date.now()) });
      this.status(d.receiver).queued++;
    }
  }

  /** The receiver's delivery counts (created on first use). */
  status(receiver: string): ReceiverStatus {
    let s = this.#status.get(receiver);
    if (!s) {
      s = {
        delivered: 0,
        failedAttempts: 0,
        dropped: 0,
        queued: 0,
        lastDeliveredAt: null,
        lastError: null,
        lastErrorAt: null,
      };
      this.#status.set(receiver, s);
    }
    return s;
  }

  /** Every receiver's counts, by `<tenant>/<name>`. */
  statuses(): [string, ReceiverStatus][] {
    return [...this.#status.entries()];
  }

  /** Forgets a deleted receiver: its deliveries and counts. */
  forget(receiver: string): void {
    const before = this.#outbox.length;
    this.#outbox = this.#outbox.filter((d) => d.receiver !== receiver || this.#inFlight.has(d.id));
    this.#status.delete(receiver);
    if (this.#outbox.length !== before) this.#o.onChange?.();
  }

  /** Starts each receiver's first delivery when it is due and none of its deliveries is in flight. */
  tick(): void {
    if (this.#stopped) return;
    const now = Date.now();
    const seen = new Set<string>();
    for (const d of this.#outbox) {
      if (seen.has(d.receiver)) continue;
      seen.add(d.receiver);
      if (this.#inFlight.has(d.id) || d.nextAt > now) continue;
      this.#inFlight.add(d.id);
      void this.#deliver(d).finally(() => this.#inFlight.delete(d.id));
    }
  }

  /** Waits until the outbox is empty (tests). */
  async drained(timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.#outbox.length > 0) {
      if (Date.now() > end) throw new Error(`${this.#outbox.length} deliveries still waiting`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async #deliver(d: Delivery): Promise<void> {
    d.attempts++;
    let error: string | undefined;
    let retry = true;
    try {
      const headers = (await this.#o.headers?.(d.receiver)) ?? {};
      const res = await this.#o.guard.fetch(d.url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "herd-alerts", ...headers },
        body: JSON.stringify(d.body),
        timeoutMs: this.#o.timeoutMs,
        maxBytes: MAX_ANSWER_BYTES,
      });
      if (res.status >= 200 && res.status < 300) {
        this.#remove(d);
        const s = this.status(d.receiver);
        s.delivered++;
        s.lastDeliveredAt = new Date().toISOString();
        return;
      }
      error = `HTTP ${res.status}`;
      retry = res.status >= 500 || res.status === 408 || res.status === 429;
    } catch (err) {
      error =
        (err as Error).name === "TimeoutError" ? `timed out after ${this.#o.timeoutMs} ms` : errorText(err);
      // A refused address or redirect, or an oversized answer, stays so: trying again cannot help.
      if (err instanceof HerdError) retry = false;
    }
    if (!this.#outbox.includes(d)) return; // forgotten meanwhile
    const giveUp = !retry || d.attempts >= this.#o.maxAttempts;
    this.#fail(d.receiver, `${error} (attempt ${d.attempts}${giveUp ? ", given up" : ""})`, giveUp);
    if (giveUp) this.#remove(d);
    else {
      d.nextAt = Date.now() + Math.min(this.#o.maxBackoffMs, this.#o.backoffMs * 2 ** (d.attempts - 1));
      this.#o.onChange?.();
    }
  }

  #remove(d: Delivery): void {
    const i = this.#outbox.indexOf(d);
    if (i >= 0) this.#outbox.splice(i, 1);
    this.status(d.receiver).queued = this.#outbox.filter((o) => o.receiver === d.receiver).length;
    this.#o.onChange?.();
  }

  #fail(receiver: string, message: string, dropped: boolean): void {
    const s = this.status(receiver);
    if (dropped) s.dropped++;
    if (!message.startsWith("dropped")) s.failedAttempts++;
    s.lastError = message;
    s.lastErrorAt = new Date().toISOString();
    if (dropped) s.queued = this.#outbox.filter((o) => o.receiver === receiver).length;
  }
}

/** The reason in a word when there is one (ECONNREFUSED…); a refusal by the guard says itself. */
function errorText(err: unknown): string {
  if (err instanceof HerdError) return err.message;
  const e = err as Error & { code?: unknown; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? (typeof e.code === "string" && /^E[A-Z]+$/.test(e.code) ? e.code : e.message);
}
