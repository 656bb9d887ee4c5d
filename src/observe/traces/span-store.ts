/**
 * Spans on disk: one SQLite file (`<data>/traces/spans.db`, WAL) fed by a
 * bounded in-memory queue that is written in batches, trimmed by age and by
 * size, and read by search, trace, map and Top-N.
 *
 *   recordSpans ─► queue (≤ maxQueueSpans / maxQueueBytes, else refused → 429)
 *                    └─► flush (one transaction per batch, every flushMs or when big)
 *                           └─► spans.db ─► trim: older than maxAgeMs, then oldest
 *                                             first while over maxBytes
 *
 * Why SQLite and not our own files: one prepared INSERT per span inside a
 * transaction costs a few µs, far below the JSON parsing in front of it, and
 * it gives a trace-id index and time-range scans for free. Deleted pages are
 * reused, so once the size limit is reached the file stops growing.
 */

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Clock } from "../../common/clock.ts";
import { cacheSizePragma } from "../../common/sqlite-cache.ts";
import type { EndpointFigures } from "../../model/endpoint-analysis.ts";
import { SizeBound } from "../size-bound.ts";
import { type EndpointQuery, endpointFigures } from "./endpoint-figures.ts";
import {
  type AttributeValue,
  SPAN_KINDS,
  type Span,
  type SpanKind,
  type SpanSink,
  spanBytes,
  spanPeer,
  spanRoute,
} from "./span.ts";

export interface SpanStoreOptions {
  /** Directory of the store (`<data>/traces`). */
  dir: string;
  clock: Clock;
  /** Spans older than this are deleted (default 24 h). */
  maxAgeMs?: number;
  /** Hard limit of the stored spans' pages (default 512 MiB); the oldest go first. */
  maxBytes?: number;
  /** Free disk space always left alone (default 256 MiB): the store shrinks rather than fill the disk. */
  reserveDiskBytes?: number;
  /** Queue bounds; a batch that would pass either is refused (the API answers 429). */
  maxQueueSpans?: number;
  maxQueueBytes?: number;
  /** How often queued spans are written (default 100 ms; 0 = only by flush(), for tests). */
  flushMs?: number;
  /** Also hand accepted spans to this sink (the OTLP forwarder). */
  forward?: SpanSink;
}

/** Counters and sizes, for `GET /traces/stats` and metrics. */
export interface SpanStoreStats {
  accepted: number;
  /** Spans refused because the queue was full. */
  refused: number;
  written: number;
  /** Spans already stored (same trace and span id), not written again. */
  duplicates: number;
  queuedSpans: number;
  queuedBytes: number;
  droppedByAge: number;
  droppedBySize: number;
  writeErrors: number;
  /** Bytes of pages holding spans (the size limit applies to this). */
  bytes: number;
  maxBytes: number;
  maxAgeMs: number;
}

/** A trace found by search. Times in µs. */
export interface TraceSummary {
  traceId: string;
  start: number;
  duration: number;
  rootService: string;
  rootName: string;
  spans: number;
  errors: number;
  services: string[];
}

export interface TraceSearch {
  /**
   * Spans of this service (`service.name`), and the spans of requests sent to
   * it: those naming it as their peer (the gateway's span of a proxied
   * request, a client span), and, for `app/service`, the gateway's spans of
   * requests routed to it that reached no instance (`herd.app` and
   * `herd.service`).
   */
  service?: string;
  /** Spans of this herd app (`herd.app`, or a service named `app/…`), the gateway's spans of requests routed to it included. */
  app?: string;
  /** `http.route` or span name. */
  route?: string;
  status?: "ok" | "error";
  /** µs. */
  minDuration?: number;
  /** µs since the epoch; default the last hour. */
  from?: number;
  to?: number;
  /** Default 20. */
  limit?: number;
  /** Only spans of this herd tenant (resource attribute `herd.tenant`). */
  tenant?: string;
}

/** What SpanReader.scan looks up besides each span (see there), how much it reads, whose spans. */
export interface ScanOptions {
  parents?: boolean;
  calledThrough?: boolean;
  max?: number;
  tenant?: string;
}

/** One span as the map and Top-N read it, with its parent's service when the parent is stored. */
export interface SpanRow {
  traceId: string;
  spanId: string;
  parentId: string | null;
  service: string;
  route: string;
  peer: string | null;
  kind: SpanKind;
  duration: number;
  error: boolean;
  /** The parent span's service, null when there is no parent or it is not stored (or not asked for). */
  parentService: string | null;
  /** A span naming a peer that has a child span in another service (its call is counted through the child). */
  calledThrough: boolean;
  /** How many spans this row stands for (more than 1 when a large window is sampled). */
  weight: number;
}

const MIB = 1024 * 1024;

export class SpanStore implements SpanSink {
  readonly #db: DatabaseSync;
  readonly #clock: Clock;
  readonly #dir: string;
  readonly #maxAgeMs: number;
  readonly #bound: SizeBound;
  readonly #maxQueueSpans: number;
  readonly #maxQueueBytes: number;
  readonly #forward: SpanSink | undefined;
  readonly #insert: StatementSync;
  readonly #reader: SpanReader;
  readonly #timer: NodeJS.Timeout | undefined;
  #queue: SpanColumns[][] = [];
  #queuedSpans = 0;
  #queuedBytes = 0;
  #flushSoon = false;
  #lastAgeTrim = 0;
  readonly #stats = {
    accepted: 0,
    refused: 0,
    written: 0,
    duplicates: 0,
    droppedByAge: 0,
    droppedBySize: 0,
    writeErrors: 0,
  };

  constructor(options: SpanStoreOptions) {
    this.#dir = options.dir;
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    this.#clock = options.clock;
    this.#maxAgeMs = options.maxAgeMs ?? 24 * 3600_000;
    this.#maxQueueSpans = options.maxQueueSpans ?? 100_000;
    this.#maxQueueBytes = options.maxQueueBytes ?? 64 * MIB;
    this.#forward = options.forward;
    this.#db = new DatabaseSync(join(options.dir, "spans.db"));
    this.#bound = new SizeBound(
      this.#db,
      this.#dir,
      options.maxBytes ?? 512 * MIB,
      options.reserveDiskBytes ?? 256 * MIB,
    );
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA journal_size_limit = ${16 * MIB};
      ${cacheSizePragma(32_000)};
      CREATE TABLE IF NOT EXISTS spans (
        id INTEGER PRIMARY KEY, trace_key INTEGER NOT NULL,
        trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT,
        service TEXT NOT NULL, name TEXT NOT NULL, route TEXT NOT NULL, peer TEXT,
        kind INTEGER NOT NULL, start INTEGER NOT NULL, duration INTEGER NOT NULL,
        error INTEGER NOT NULL, status_code INTEGER, status_message TEXT,
        app TEXT, tenant TEXT, attributes TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS spans_start ON spans (start);
    `);
    migrate(this.#db);
    // A span sent twice (an SDK retrying a post whose answer it missed) is kept once.
    this.#insert = this.#db.prepare(
      `INSERT OR IGNORE INTO spans (trace_key, ${COLUMNS}) VALUES (?, ${COLUMNS.replace(/\w+/g, "?")})`,
    );
    this.#reader = new SpanReader(this.#db, () => this.#clock.now());
    const flushMs = options.flushMs ?? 100;
    if (flushMs > 0) {
      this.#timer = setInterval(() => this.flush(), flushMs);
      this.#timer.unref();
    }
  }

  /** Queues spans for writing; false (nothing taken) when the queue is full. */
  recordSpans(spans: readonly Span[]): boolean {
    if (spans.length === 0) return true;
    let bytes = 0;
    for (const s of spans) bytes += spanBytes(s);
    if (!this.#admit(spans.length, bytes)) return false;
    this.#enqueue(spans.map(spanColumns), bytes);
    this.#forward?.recordSpans(spans);
    return true;
  }

  /**
   * Queues spans already in column form (the gateway's batches, read by
   * gateway-batch.ts without making Span objects); false when the queue is
   * full. Span objects are made only when there is a forwarder to hand them to.
   */
  recordColumns(rows: SpanColumns[]): boolean {
    if (rows.length === 0) return true;
    let bytes = 0;
    for (const r of rows) bytes += columnsBytes(r);
    if (!this.#admit(rows.length, bytes)) return false;
    this.#enqueue(rows, bytes);
    this.#forward?.recordSpans(rows.map(spanFromColumns));
    return true;
  }

  /** Whether a batch fits the queue; an empty queue takes any batch, so one large batch is never refused forever. */
  #admit(count: number, bytes: number): boolean {
    if (
      this.#queuedSpans > 0 &&
      (this.#queuedSpans + count > this.#maxQueueSpans || this.#queuedBytes + bytes > this.#maxQueueBytes)
    ) {
      this.#stats.refused += count;
      return false;
    }
    return true;
  }

  #enqueue(rows: SpanColumns[], bytes: number): void {
    this.#queue.push(rows);
    this.#queuedSpans += rows.length;
    this.#queuedBytes += bytes;
    this.#stats.accepted += rows.length;
    // Big queues are written at once rather than at the next tick of the timer.
    if (this.#queuedSpans >= 5000 && !this.#flushSoon && this.#timer) {
      this.#flushSoon = true;
      setImmediate(() => this.flush());
    }
  }

  /** Seconds a refused client should wait: how long the queue takes to drain, at least 1. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.#queuedSpans / 50_000));
  }

  /** Writes everything queued (one transaction), then trims by age and size. */
  flush(): void {
    this.#flushSoon = false;
    if (this.#queuedSpans > 0) {
      const batches = this.#queue;
      const count = this.#queuedSpans;
      this.#queue = [];
      this.#queuedSpans = 0;
      this.#queuedBytes = 0;
      try {
        const written = this.#write(batches);
        this.#stats.written += written;
        this.#stats.duplicates += count - written;
      } catch {
        // Disk full, file deleted under us…: the batch is lost, counted; ingest goes on.
        this.#stats.writeErrors += count;
      }
    }
    this.trim();
  }

  /** Writes the batches in one transaction; returns how many spans were new. */
  #write(batches: SpanColumns[][]): number {
    const insert = this.#insert;
    let written = 0;
    this.#db.exec("BEGIN");
    try {
      for (const batch of batches) {
        for (const c of batch) written += Number(insert.run(traceKey(c[0]), ...c).changes);
      }
      this.#db.exec("COMMIT");
      return written;
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Deletes spans past their age (checked at most once a second), then the oldest while over the size limit. */
  trim(): void {
    const now = this.#clock.now();
    if (now - this.#lastAgeTrim >= 1000) {
      this.#lastAgeTrim = now;
      const cutoff = (now - this.#maxAgeMs) * 1000;
      for (;;) {
        // In slices, so a large expiry never holds the event loop for long.
        const r = this.#db
          .prepare("DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE start < ? LIMIT 20000)")
          .run(cutoff);
        this.#stats.droppedByAge += Number(r.changes);
        if (Number(r.changes) < 20000) break;
      }
    }
    this.#stats.droppedBySize += this.#bound.dropOldest("spans", "id", now);
  }

  /** Pages in use (the free list is reused before the file grows). */

  /** Traces with a span matching every filter, newest first. */
  search(q: TraceSearch): TraceSummary[] {
    return this.#reader.search(q);
  }

  /** Per-endpoint latency of a service per release (endpoint-figures.ts): a canary's analysis. */
  endpoints(q: EndpointQuery): EndpointFigures[] {
    return this.#reader.endpoints(q);
  }

  /** Every stored span of one trace, by start time. */
  trace(traceId: string): Span[] {
    return this.#reader.trace(traceId);
  }

  /** See SpanReader.count. */
  count(from: number, to: number): number {
    return this.#reader.count(from, to);
  }

  /** See SpanReader.scan. */
  scan(
    from: number,
    to: number,
    each: (row: SpanRow) => void,
    options: ScanOptions = {},
  ): { spans: number; sampledEvery: number } {
    return this.#reader.scan(from, to, each, options);
  }

  stats(): SpanStoreStats {
    return {
      ...this.#stats,
      queuedSpans: this.#queuedSpans,
      queuedBytes: this.#queuedBytes,
      bytes: this.#bound.usedBytes(),
      maxBytes: this.#bound.maxBytes,
      maxAgeMs: this.#maxAgeMs,
    };
  }

  /** Writes what is queued and closes the file. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.flush();
    this.#db.close();
  }
}

/**
 * The trace index's key, 52 bits of the trace id as an integer (an integer
 * index costs about half a text one per insert): the first 11 hex digits and
 * the last 2. Trace ids herd makes start with the time to the millisecond
 * (trace-context.ts: newTraceId), so the keys of new spans fall together at
 * the end of the index and a batch's inserts touch a few pages instead of one
 * random page each: about half the cost of writing a span. Other ids are
 * random in both parts. A 64-bit Zipkin id (zero-padded on the left) keys by
 * its last 13 digits.
 */
export const traceKey = (traceId: string): number =>
  traceId.startsWith("0000000000000000")
    ? Number.parseInt(traceId.slice(-13), 16)
    : Number.parseInt(traceId.slice(0, 11) + traceId.slice(-2), 16);

/**
 * Brings a spans.db to version 1: the trace index is unique per (trace key,
 * span id, trace id), so a span sent twice is stored once (the trace id is
 * in the key: ids that differ only between the digits the key reads must not
 * look alike). A version-0 file (keys of the last 13 hex digits, duplicates
 * allowed) is rekeyed and deduplicated once, in place.
 */
function migrate(db: DatabaseSync): void {
  const { user_version: version } = db.prepare("PRAGMA user_version").get() as { user_version: number };
  if (version >= 1) return;
  db.function("herd_trace_key", { deterministic: true }, (id) => traceKey(String(id)));
  db.exec(`BEGIN;
    DROP INDEX IF EXISTS spans_trace;
    DROP INDEX IF EXISTS spans_span;
    UPDATE spans SET trace_key = herd_trace_key(trace_id);
    DELETE FROM spans WHERE id NOT IN (SELECT MIN(id) FROM spans GROUP BY trace_key, span_id, trace_id);
    CREATE UNIQUE INDEX spans_span ON spans (trace_key, span_id, trace_id);
    PRAGMA user_version = 1;
    COMMIT;`);
}

/** The stored columns after trace_key, in the order of SpanColumns. */
const COLUMNS =
  "trace_id, span_id, parent_id, service, name, route, peer, kind, start, duration, error, status_code, status_message, app, tenant, attributes";

/**
 * A span as the store writes and reads it: its columns in COLUMNS order,
 * the attributes as JSON text. The gateway's batches arrive in this form.
 */
export type SpanColumns = [
  traceId: string,
  spanId: string,
  parentId: string | null,
  service: string,
  name: string,
  route: string,
  peer: string | null,
  kind: number,
  start: number,
  duration: number,
  error: 0 | 1,
  statusCode: number | null,
  statusMessage: string | null,
  app: string | null,
  tenant: string | null,
  attributes: string,
];

export function spanColumns(s: Span): SpanColumns {
  return [
    s.traceId,
    s.spanId,
    s.parentId,
    s.service,
    s.name,
    spanRoute(s),
    spanPeer(s),
    SPAN_KINDS.indexOf(s.kind),
    s.start,
    s.duration,
    s.status === "error" ? 1 : 0,
    s.statusCode,
    s.statusMessage ?? null,
    s.app ?? null,
    s.tenant ?? null,
    JSON.stringify(s.attributes),
  ];
}

export function spanFromColumns(c: SpanColumns): Span {
  const span: Span = {
    traceId: c[0],
    spanId: c[1],
    parentId: c[2],
    service: c[3],
    name: c[4],
    kind: SPAN_KINDS[c[7]] ?? "unspecified",
    start: c[8],
    duration: c[9],
    status: c[10] === 1 ? "error" : "ok",
    statusCode: c[11],
    attributes: JSON.parse(c[15]) as Record<string, AttributeValue>,
  };
  if (c[12] !== null) span.statusMessage = c[12];
  if (c[13] !== null) span.app = c[13];
  if (c[14] !== null) span.tenant = c[14];
  return span;
}

/** Rough size of a span in column form, like spanBytes. */
function columnsBytes(c: SpanColumns): number {
  return 160 + c[3].length + c[4].length + c[15].length;
}

interface ScanRow {
  trace_id: string;
  span_id: string;
  parent_id: string | null;
  service: string;
  route: string;
  peer: string | null;
  kind: number;
  duration: number;
  error: number;
  parent_service: string | null;
  called_through: number;
}

/** A trace's summary from its spans: the root is the earliest span without a stored parent. */
export function summarize(traceId: string, spans: readonly Span[]): TraceSummary | undefined {
  if (spans.length === 0) return undefined;
  const ids = new Set(spans.map((s) => s.spanId));
  let root: Span | undefined;
  let start = Number.POSITIVE_INFINITY;
  let end = 0;
  let errors = 0;
  const services = new Set<string>();
  for (const s of spans) {
    if (s.start < start) start = s.start;
    if (s.start + s.duration > end) end = s.start + s.duration;
    if (s.status === "error") errors++;
    services.add(s.service);
    // The service a span called (the gateway's span of a proxied request): the trace went there too.
    const peer = spanPeer(s);
    if (peer !== null) services.add(peer);
    const isRoot = s.parentId === null || !ids.has(s.parentId);
    if (isRoot && (!root || s.start < root.start)) root = s;
  }
  const r = root ?? spans[0];
  return {
    traceId,
    start,
    duration: end - start,
    rootService: r.service,
    rootName: r.name,
    spans: spans.length,
    errors,
    services: [...services].sort(),
  };
}

/**
 * The queries of spans.db: on the writer's connection (SpanStore), or on a
 * read-only one in a query worker (query-worker.ts), so a search or a map of
 * a busy hour does not hold the API's event loop.
 */
export class SpanReader {
  readonly #db: DatabaseSync;
  readonly #byTrace: StatementSync;
  /** ms since the epoch. */
  readonly #now: () => number;

  constructor(db: DatabaseSync, now: () => number) {
    this.#db = db;
    this.#now = now;
    this.#byTrace = this.#db.prepare(
      `SELECT ${COLUMNS} FROM spans WHERE trace_key = ? AND trace_id = ? ORDER BY start, id`,
    );
    this.#byTrace.setReturnArrays(true);
  }

  /** Spans that start in [from, to) (µs), every tenant's. */
  count(from: number, to: number): number {
    const { n } = this.#db
      .prepare("SELECT COUNT(*) AS n FROM spans WHERE start >= ? AND start < ?")
      .get(from, to) as { n: number };
    return Number(n);
  }

  /** `<dir>/spans.db` opened read-only (the SpanStore made and migrated it). */
  static open(dir: string, now: () => number): SpanReader {
    const db = new DatabaseSync(join(dir, "spans.db"), { readOnly: true });
    db.exec("PRAGMA busy_timeout = 5000");
    return new SpanReader(db, now);
  }

  /** Traces with a span matching every filter, newest first. */
  search(q: TraceSearch): TraceSummary[] {
    const to = q.to ?? this.#now() * 1000;
    const from = q.from ?? to - 3600e6;
    const limit = q.limit ?? 20;
    const where = ["start >= ?", "start <= ?"];
    const args: (string | number)[] = [from, to];
    if (q.service) {
      const slash = q.service.indexOf("/");
      if (slash > 0) {
        where.push(
          `(service = ? OR peer = ? OR (app = ? AND json_extract(attributes, '$."herd.service"') = ?))`,
        );
        args.push(q.service, q.service, q.service.slice(0, slash), q.service.slice(slash + 1));
      } else {
        where.push("(service = ? OR peer = ?)");
        args.push(q.service, q.service);
      }
    }
    if (q.app) {
      where.push("(app = ? OR substr(service, 1, ?) = ?)");
      args.push(q.app, q.app.length + 1, `${q.app}/`);
    }
    if (q.route) {
      where.push("(route = ? OR name = ?)");
      args.push(q.route, q.route);
    }
    if (q.status === "error") where.push("error = 1");
    if (q.tenant) {
      where.push("tenant = ?");
      args.push(q.tenant);
    }
    if (q.minDuration !== undefined) {
      where.push("duration >= ?");
      args.push(q.minDuration);
    }
    const found: TraceSummary[] = [];
    const seen = new Set<string>();
    const stmt = this.#db.prepare(
      `SELECT trace_id FROM spans WHERE ${where.join(" AND ")} ORDER BY start DESC`,
    );
    // Newest first, stopping at `limit` traces: a search reads only as far back as it needs.
    for (const row of stmt.iterate(...args) as Iterable<{ trace_id: string }>) {
      if (seen.has(row.trace_id)) continue;
      seen.add(row.trace_id);
      const spans = this.trace(row.trace_id);
      // A tenant's search sums up its own spans of each trace only.
      const summary = summarize(row.trace_id, q.tenant ? spans.filter((s) => s.tenant === q.tenant) : spans);
      if (!summary || (q.status === "ok" && summary.errors > 0)) continue;
      found.push(summary);
      if (found.length >= limit) break;
    }
    return found;
  }

  /** Per-endpoint latency of a service per release (endpoint-figures.ts). */
  endpoints(q: EndpointQuery): EndpointFigures[] {
    return endpointFigures(this.#db, q);
  }

  /** Every stored span of one trace, by start time. */
  trace(traceId: string): Span[] {
    const id = traceId.toLowerCase();
    const rows = this.#byTrace.all(traceKey(id), id) as unknown as SpanColumns[];
    return rows.map(spanFromColumns);
  }

  /**
   * Calls `each` for the spans that started in [from, to) µs; with
   * `parents`, each row also says its parent's service; with `parents` or
   * `calledThrough`, whether a span naming a peer has a child in another
   * service (both looked up by the trace index). A window holding more than
   * `max` spans is sampled: every k-th span by arrival, each row weighing k,
   * so the work stays bounded (about 10 µs a span) and rates stay estimates
   * of the whole.
   */
  scan(
    from: number,
    to: number,
    each: (row: SpanRow) => void,
    options: ScanOptions = {},
  ): { spans: number; sampledEvery: number } {
    const max = options.max ?? 200_000;
    const total = this.count(from, to);
    const stride = Math.max(1, Math.ceil(Number(total) / max));
    const args: (string | number)[] = [from, to];
    let sample = stride > 1 ? ` AND c.id % ${stride} = 0` : "";
    // A tenant's scan joins only its own parents and children too: another tenant's service names stay hidden.
    const own = options.tenant ? " AND p.tenant = c.tenant" : "";
    const ownChild = options.tenant ? " AND x.tenant = c.tenant" : "";
    if (options.tenant) {
      sample += " AND c.tenant = ?";
      args.push(options.tenant);
    }
    const calledThrough =
      options.parents || options.calledThrough
        ? `CASE WHEN c.peer IS NOT NULL THEN EXISTS (
               SELECT 1 FROM spans x WHERE x.trace_key = c.trace_key AND x.trace_id = c.trace_id
                 AND x.parent_id = c.span_id AND x.service != c.service${ownChild}) ELSE 0 END`
        : "0";
    const stmt = this.#db.prepare(
      options.parents
        ? `SELECT c.trace_id, c.span_id, c.parent_id, c.service, c.route, c.peer, c.kind, c.duration, c.error,
             p.service AS parent_service, ${calledThrough} AS called_through
           FROM spans c LEFT JOIN spans p
             ON p.trace_key = c.trace_key AND p.trace_id = c.trace_id AND p.span_id = c.parent_id${own}
           WHERE c.start >= ? AND c.start < ?${sample}`
        : `SELECT c.trace_id, c.span_id, c.parent_id, c.service, c.route, c.peer, c.kind, c.duration, c.error,
             NULL AS parent_service, ${calledThrough} AS called_through
           FROM spans c WHERE c.start >= ? AND c.start < ?${sample}`,
    );
    let n = 0;
    for (const r of stmt.iterate(...args) as Iterable<ScanRow>) {
      n++;
      each({
        traceId: r.trace_id,
        spanId: r.span_id,
        parentId: r.parent_id,
        service: r.service,
        route: r.route,
        peer: r.peer,
        kind: SPAN_KINDS[r.kind] ?? "unspecified",
        duration: r.duration,
        error: r.error === 1,
        parentService: r.parent_service,
        calledThrough: r.called_through === 1,
        weight: stride,
      });
    }
    return { spans: n, sampledEvery: stride };
  }
}
