/**
 * Where the API's queries run: a few worker threads, each reading its store's
 * file on its own (PromQL: promql/worker.ts on the Tsdb; traces:
 * traces/query-worker.ts on spans.db), so the API's event loop keeps
 * answering while a query works. Limits, as Prometheus has them:
 *
 *   run(job) ─► a free worker? ─► evaluate ─► JSON text
 *       │ no: wait in line (≤ queue; ≤ perTenantQueue for one tenant) ─► else QueryBusyError (503 / 429)
 *       └ timeout (default 30 s) ─► the worker is terminated (and replaced) ─► QueryTimeoutError (503)
 *   max samples per query (engine.ts) ─► TooManySamplesError (422)
 *
 * A worker is terminated rather than asked to stop: the engine is
 * synchronous, and a thread can be ended at any instruction without harm to
 * the file (it only reads). A worker also has a heap limit, so a query that
 * would take all the memory ends alone.
 */

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { MAX_QUERY_SAMPLES, QueryError } from "./promql/engine.ts";

/** Settings of `herd server` for queries. */
export interface QueryLimits {
  /** Longest a query may run; `?timeout=` may only lower it (default 30 s, like Prometheus' --query.timeout). */
  timeoutMs?: number;
  /** Queries evaluated at once: worker threads (default 2, or the CPU count up to 4). */
  concurrency?: number;
  /** Queries waiting for a worker before the next is refused with 503 (default 32). */
  queue?: number;
  /** …of which one tenant may hold (default a quarter of queue), else 429. */
  perTenantQueue?: number;
  /** Samples one query may load (default 10,000,000, like Prometheus' --query.max-samples). */
  maxSamples?: number;
  /** Heap limit of a worker thread in MiB (default 1024). */
  workerHeapMb?: number;
}

export type WorkerReply =
  | { id: number; json: string }
  | { id: number; error: { name: string; message: string } };

/** No worker free and the line is full (status 503), or the tenant's share of it is (429). */
export class QueryBusyError extends Error {
  readonly status: 429 | 503;
  constructor(status: 429 | 503, message: string) {
    super(message);
    this.name = "QueryBusyError";
    this.status = status;
  }
}

export class QueryTimeoutError extends Error {
  constructor(ms: number) {
    super(
      `query timed out after ${ms / 1000}s: narrow the selectors or the range (or raise ?timeout= up to the server's limit)`,
    );
    this.name = "QueryTimeoutError";
  }
}

interface Waiting {
  job: unknown;
  tenant: string;
  timeoutMs: number;
  resolve: (json: string) => void;
  reject: (err: Error) => void;
  queuedAt: number;
}

interface Slot {
  worker: Worker;
  task: (Waiting & { id: number; timer: NodeJS.Timeout }) | undefined;
}

/**
 * A pool of one kind of worker: `script` answers `{id, job}` messages with
 * `{id, json}` or `{id, error: {name, message}}` (WorkerReply).
 */
export class QueryPool {
  readonly timeoutMs: number;
  readonly maxSamples: number;
  readonly concurrency: number;
  readonly queueMax: number;
  readonly perTenantQueue: number;
  readonly #script: URL;
  readonly #workerData: unknown;
  readonly #rebuild: (e: { name: string; message: string }) => Error;
  readonly #heapMb: number;
  readonly #slots = new Set<Slot>();
  readonly #waiting: Waiting[] = [];
  #nextId = 1;
  #closed = false;
  /** Counters since the start, for /metrics/stats. */
  readonly counts = { done: 0, failed: 0, timedOut: 0, refused: 0 };

  /**
   * `script`: the worker's module; `workerData`: what it starts with (its
   * store's directory); `rebuild`: a worker's error as the class the API maps to a status.
   */
  constructor(
    script: URL,
    workerData: unknown,
    limits: QueryLimits = {},
    rebuild: (e: { name: string; message: string }) => Error = (e) => new Error(e.message),
  ) {
    this.#script = script;
    this.#workerData = workerData;
    this.#rebuild = rebuild;
    this.timeoutMs = limits.timeoutMs ?? 30_000;
    this.maxSamples = limits.maxSamples ?? MAX_QUERY_SAMPLES;
    this.concurrency = limits.concurrency ?? Math.max(2, Math.min(4, availableParallelism()));
    this.queueMax = limits.queue ?? 32;
    this.perTenantQueue = limits.perTenantQueue ?? Math.max(1, Math.ceil(this.queueMax / 4));
    this.#heapMb = limits.workerHeapMb ?? 1024;
  }

  /** Queries running and waiting now. */
  get load(): { running: number; waiting: number } {
    let running = 0;
    for (const s of this.#slots) if (s.task) running++;
    return { running, waiting: this.#waiting.length };
  }

  /**
   * Evaluates `job` in a worker; the answer is the `data` member's JSON.
   * `tenant` is whose query it is (its share of the line); `timeoutMs` is
   * capped by the pool's.
   */
  run(job: unknown, tenant: string, timeoutMs = this.timeoutMs): Promise<string> {
    if (this.#closed) return Promise.reject(new QueryBusyError(503, "the query engine is shutting down"));
    const { running, waiting } = this.load;
    if (running >= this.concurrency) {
      if (waiting >= this.queueMax) {
        this.counts.refused++;
        return Promise.reject(
          new QueryBusyError(
            503,
            `too many queries at once (${running} running, ${waiting} waiting): retry in a moment`,
          ),
        );
      }
      if (this.#waiting.filter((w) => w.tenant === tenant).length >= this.perTenantQueue) {
        this.counts.refused++;
        return Promise.reject(
          new QueryBusyError(
            429,
            `tenant ${tenant} has ${this.perTenantQueue} queries waiting already: retry when one has finished`,
          ),
        );
      }
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push({
        job,
        tenant,
        timeoutMs: Math.min(timeoutMs, this.timeoutMs),
        resolve,
        reject,
        queuedAt: Date.now(),
      });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#waiting.length > 0) {
      let slot: Slot | undefined;
      for (const s of this.#slots) {
        if (!s.task) {
          slot = s;
          break;
        }
      }
      if (!slot && this.#slots.size < this.concurrency) slot = this.#spawn();
      if (!slot) return;
      const w = this.#waiting.shift() as Waiting;
      // The time in line counts: a query's timeout is from when it was asked.
      const left = w.timeoutMs - (Date.now() - w.queuedAt);
      if (left <= 0) {
        this.counts.timedOut++;
        w.reject(new QueryTimeoutError(w.timeoutMs));
        continue;
      }
      const id = this.#nextId++;
      const s = slot;
      const timer = setTimeout(() => {
        this.counts.timedOut++;
        this.#retire(s);
        w.reject(new QueryTimeoutError(w.timeoutMs));
        this.#dispatch();
      }, left);
      s.task = { ...w, id, timer };
      s.worker.postMessage({ id, job: w.job });
    }
  }

  #spawn(): Slot {
    const worker = new Worker(this.#script, {
      workerData: this.#workerData,
      resourceLimits: { maxOldGenerationSizeMb: this.#heapMb },
    });
    worker.unref();
    const slot: Slot = { worker, task: undefined };
    this.#slots.add(slot);
    worker.on("message", (reply: WorkerReply) => {
      const task = slot.task;
      if (!task || task.id !== reply.id) return;
      clearTimeout(task.timer);
      slot.task = undefined;
      if ("json" in reply) {
        this.counts.done++;
        task.resolve(reply.json);
      } else {
        this.counts.failed++;
        task.reject(this.#rebuild(reply.error));
      }
      this.#dispatch();
    });
    const lost = (err: Error) => {
      if (!this.#slots.has(slot)) return;
      this.#slots.delete(slot);
      const task = slot.task;
      if (task) {
        clearTimeout(task.timer);
        this.counts.failed++;
        const oom = /heap|memory/i.test(err.message);
        task.reject(
          oom
            ? new QueryError(
                `query ran out of memory (worker heap ${this.#heapMb} MiB): narrow the selectors or the range`,
              )
            : err,
        );
      }
      this.#dispatch();
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(new Error(`query worker exited with code ${code}`)));
    return slot;
  }

  /** Ends a worker (its query timed out); the next dispatch starts a fresh one. */
  #retire(slot: Slot): void {
    this.#slots.delete(slot);
    if (slot.task) clearTimeout(slot.task.timer);
    slot.task = undefined;
    void slot.worker.terminate();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiting.splice(0))
      w.reject(new QueryBusyError(503, "the query engine is shutting down"));
    const ending = [...this.#slots].map((s) => {
      s.task?.reject(new QueryBusyError(503, "the query engine is shutting down"));
      this.#retire(s);
      return s.worker.terminate();
    });
    await Promise.all(ending);
  }
}
