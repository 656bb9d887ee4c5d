/**
 * Pushed points: `POST /api/v1/metrics/write` with JSON or Prometheus text.
 *
 *   body ─► parseWriteBody (400 naming the problem) ─► IngestQueue (429 when full) ─► Tsdb.append ─► reply
 *
 * The queue is bounded by points, not requests: a writer that sends more than
 * the storage keeps up with gets 429 and Retry-After instead of growing the
 * server's memory. The reply comes after the points' transaction committed —
 * that is what "acknowledged" means.
 */

import { isLabelName, isMetricName, type Labels, NAME } from "./tsdb/labels.ts";
import { parseText } from "./tsdb/text-format.ts";
import type { AppendResult, Tsdb, WriteSeries } from "./tsdb/tsdb.ts";

/** Input that cannot be stored: the message names the field and the problem. */
/** A bad write: `field` is where (`series[2].labels.job`, `body`), `problem` what is wrong with it. */
export class WriteError extends Error {
  readonly field: string;
  readonly problem: string;
  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.name = "WriteError";
    this.field = field;
    this.problem = problem;
  }
}

/** The queue is full: come back later (or, tooLarge, never: the write is bigger than the queue). */
export class IngestBusyError extends Error {
  readonly retryAfterSeconds = 1;
  readonly tooLarge: boolean;
  constructor(message: string, tooLarge = false) {
    super(message);
    this.name = "IngestBusyError";
    this.tooLarge = tooLarge;
  }
}

function sampleValue(v: unknown, where: string): number {
  if (typeof v === "number") return v;
  if (v === "NaN") return Number.NaN;
  if (v === "+Inf" || v === "Inf") return Number.POSITIVE_INFINITY;
  if (v === "-Inf") return Number.NEGATIVE_INFINITY;
  throw new WriteError(where, 'the value must be a number (or "NaN", "+Inf", "-Inf")');
}

/**
 * `{series: [{metric, labels, samples: [[ms, value], …]}]}` → WriteSeries.
 * Everything is checked before anything is written.
 */
export function parseJsonWrite(body: unknown): WriteSeries[] {
  if (typeof body !== "object" || body === null || !Array.isArray((body as { series?: unknown }).series)) {
    throw new WriteError(
      "body",
      'must be {"series": [{"metric": …, "labels": {…}, "samples": [[ms, value], …]}]}',
    );
  }
  const out: WriteSeries[] = [];
  (body as { series: unknown[] }).series.forEach((raw, i) => {
    const where = `series[${i}]`;
    if (typeof raw !== "object" || raw === null) throw new WriteError(where, "must be an object");
    const s = raw as { metric?: unknown; labels?: unknown; samples?: unknown };
    if (typeof s.metric !== "string" || !isMetricName(s.metric)) {
      throw new WriteError(`${where}.metric`, "must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
    }
    const labels: Labels = { [NAME]: s.metric };
    if (s.labels !== undefined) {
      if (typeof s.labels !== "object" || s.labels === null || Array.isArray(s.labels)) {
        throw new WriteError(`${where}.labels`, "must be an object of strings");
      }
      for (const [k, v] of Object.entries(s.labels)) {
        if (!isLabelName(k) || k === NAME)
          throw new WriteError(`${where}.labels`, `"${k}" is not a valid label name`);
        if (typeof v !== "string") throw new WriteError(`${where}.labels.${k}`, "must be a string");
        labels[k] = v;
      }
    }
    if (!Array.isArray(s.samples) || s.samples.length === 0) {
      throw new WriteError(`${where}.samples`, "must be a non-empty array of [ms, value]");
    }
    const samples: [number, number][] = s.samples.map((p, j) => {
      const at = `${where}.samples[${j}]`;
      if (!Array.isArray(p) || p.length !== 2) throw new WriteError(at, "must be [ms, value]");
      const [ts, v] = p as [unknown, unknown];
      if (typeof ts !== "number" || !Number.isSafeInteger(ts) || ts < 0) {
        throw new WriteError(at, "the timestamp must be an integer number of milliseconds since the epoch");
      }
      return [ts, sampleValue(v, at)];
    });
    out.push({ labels, samples });
  });
  return out;
}

/** Prometheus text: samples without a timestamp get `now`. */
export function parseTextWrite(text: string, now: number): WriteSeries[] {
  try {
    return parseText(text).samples.map((s) => ({
      labels: s.labels,
      samples: [[s.timestamp ?? now, s.value]],
    }));
  } catch (err) {
    throw new WriteError("body", (err as Error).message);
  }
}

export const countPoints = (batch: WriteSeries[]): number => batch.reduce((n, s) => n + s.samples.length, 0);

interface Pending {
  batch: WriteSeries[];
  points: number;
  resolve: (r: AppendResult) => void;
  reject: (err: Error) => void;
}

/**
 * Writes batches one per event-loop turn, so request parsing and other work
 * interleave with storage; at most `capacity` points wait.
 */
export class IngestQueue {
  readonly #tsdb: Tsdb;
  readonly capacity: number;
  readonly #queue: Pending[] = [];
  #pending = 0;
  #scheduled = false;

  constructor(tsdb: Tsdb, capacity = 500_000) {
    this.#tsdb = tsdb;
    this.capacity = capacity;
  }

  /** Points waiting to be written. */
  get pending(): number {
    return this.#pending;
  }

  /** Resolves once the batch is committed; throws IngestBusyError at once when it does not fit. */
  submit(batch: WriteSeries[]): Promise<AppendResult> {
    const points = countPoints(batch);
    if (this.#pending + points > this.capacity) {
      return Promise.reject(
        points > this.capacity
          ? new IngestBusyError(
              `a write of ${points} points is more than the ingest queue holds (${this.capacity}): split it`,
              true,
            )
          : new IngestBusyError(
              `ingest queue full (${this.#pending} of ${this.capacity} points waiting): retry later`,
            ),
      );
    }
    this.#pending += points;
    return new Promise((resolve, reject) => {
      this.#queue.push({ batch, points, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const next = this.#queue.shift();
      if (!next) return;
      try {
        next.resolve(this.#tsdb.append(next.batch));
      } catch (err) {
        next.reject(err as Error);
      } finally {
        this.#pending -= next.points;
      }
      if (this.#queue.length > 0) this.#schedule();
    });
  }
}
