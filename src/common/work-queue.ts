/**
 * A keyed work queue for level-based reconcilers (after controller-runtime):
 * a key is queued at most once; one worker handles a key at a time; a key that
 * is added while it is being handled runs again afterwards; failures retry
 * with per-key exponential backoff; `addAfter` schedules a later look.
 */

import type { Logger } from "./log.ts";

export type Reconcile = (key: string) => Promise<void>;

export interface WorkQueueOptions {
  name: string;
  reconcile: Reconcile;
  logger: Logger;
  /** Parallel workers (different keys). */
  workers?: number;
  /** Backoff after a failure: base * 2^(failures-1), capped. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

export class WorkQueue {
  readonly #opts: Required<WorkQueueOptions>;
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #active = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #running = 0;
  #stopped = false;
  #idleWaiters: Array<() => void> = [];

  constructor(options: WorkQueueOptions) {
    this.#opts = { workers: 4, baseBackoffMs: 100, maxBackoffMs: 30_000, ...options };
  }

  /** Queues a key now (no-op if already queued). */
  add(key: string): void {
    if (this.#stopped) return;
    if (this.#active.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#queue.push(key);
    this.#pump();
  }

  /** Queues a key after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#stopped) return;
    const existing = this.#timers.get(key) as (NodeJS.Timeout & { dueAt?: number }) | undefined;
    const dueAt = Date.now() + ms;
    if (existing && (existing.dueAt ?? 0) <= dueAt) return;
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms) as NodeJS.Timeout & { dueAt?: number };
    timer.dueAt = dueAt;
    timer.unref();
    this.#timers.set(key, timer);
  }

  /** Resolves when nothing is queued or running (tests). */
  idle(): Promise<void> {
    if (this.#queue.length === 0 && this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Takes keys again after stop (a server elected leader again). */
  resume(): void {
    this.#stopped = false;
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#queue.length = 0;
    this.#queued.clear();
  }

  #pump(): void {
    while (!this.#stopped && this.#running < this.#opts.workers && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      this.#queued.delete(key);
      this.#active.add(key);
      this.#running++;
      void this.#work(key);
    }
    if (this.#queue.length === 0 && this.#running === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #work(key: string): Promise<void> {
    try {
      await this.#opts.reconcile(key);
      this.#failures.delete(key);
    } catch (err) {
      const n = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, n);
      const delay = Math.min(this.#opts.maxBackoffMs, this.#opts.baseBackoffMs * 2 ** (n - 1));
      const code = (err as { code?: string }).code;
      (code === "conflict" ? this.#opts.logger.debug : this.#opts.logger.warn)(
        `${this.#opts.name}: reconcile failed`,
        {
          key,
          retryInMs: delay,
          err,
        },
      );
      this.addAfter(key, delay);
    } finally {
      this.#active.delete(key);
      this.#running--;
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
    }
  }
}
