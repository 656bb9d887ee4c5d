/**
 * Logs: every line agents ship and every platform event, in one stream kept
 * in its own SQLite file (not the object store), bounded by size and age.
 *
 *   agent POST /logs ─► append ─► queue (≤ bytes; full → refused, 429) ─► flush every 100 ms ─► logs.db
 *   EventRecorder ────► appendEvent ─┘ (never refused)                        │  trim: age, then size
 *                                                                              └─► watchers woken
 *   query(filters, after=seq | tail) ◄── GET …/logs, SSE and NDJSON followers
 *
 * Every entry has a `seq` cursor, in the order entries were stored: a reader
 * that reconnects with `after=seq` gets exactly what it missed. Level and
 * trace id are read out of each line at ingest (log-parse.ts) and stored, so
 * they can be filtered on; a JSON line's fields are parsed again when read.
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { type Clock, systemClock } from "../common/clock.ts";
import { cacheSizePragma } from "../common/sqlite-cache.ts";
import type { Event } from "../model/objects.ts";
import { jsonMessage, jsonObjectOf, LEVELS, type LogLevel, levelName, parseLine } from "./log-parse.ts";
import { SizeBound } from "./size-bound.ts";

/** Where an entry came from: the instance's stdout or stderr, or a platform event. */
export type LogStream = "stdout" | "stderr" | "event";

/** One entry as readers see it. Platform events without an app have tenant and app "". */
export interface LogEntry {
  seq: number;
  time: string;
  tenant: string;
  app: string;
  service: string;
  instance: string;
  node?: string;
  stream: LogStream;
  /** The line as written (for an event: its message). */
  line: string;
  level?: LogLevel;
  /** A JSON line's `msg`/`message`. */
  msg?: string;
  /** A trace id found in the line (32 lower-case hex): `herd trace ID` shows the trace. */
  traceId?: string;
  /** A JSON line's fields. */
  fields?: Record<string, unknown>;
  /** An event's reason (InstanceCrashed, NodeLost, …). */
  reason?: string;
}

/** What is appended; level and trace id are read out of the line unless given. */
export interface LogInput {
  time: string;
  tenant: string;
  app: string;
  service: string;
  instance: string;
  node?: string;
  stream: LogStream;
  line: string;
  level?: LogLevel;
  reason?: string;
}

/** Filters; every one given must match. */
export interface LogQuery {
  tenant: string;
  /** One app; without it, the tenant's whole stream. */
  app?: string;
  /** Without an app: the platform's own events too (nodes, machines): a platform admin's read. */
  platform?: boolean;
  service?: string;
  instance?: string;
  stream?: LogStream;
  /** This level and above; entries without a level never match. */
  level?: LogLevel;
  /** Substring of the line, case-insensitive. */
  text?: string;
  /** Only entries after this cursor (oldest first). */
  after?: number;
  /** Only entries at or after this ISO time. */
  since?: string;
  /** The last N entries (default 100) when no cursor is given. */
  tail?: number;
  /** At most this many entries after a cursor (default 10,000). */
  limit?: number;
}

export interface LogStoreOptions {
  /** Entries older than this are dropped (default 7 days). */
  maxAgeMs?: number;
  /** The file's pages in use stay under this (default 256 MiB); oldest entries go first. */
  maxBytes?: number;
  /** Bytes of lines waiting to be written before append refuses (default 16 MiB). */
  maxQueueBytes?: number;
  /** How often the queue is written (default 100 ms); 0 = only on flush() and reads (tests). */
  flushMs?: number;
  /** Free disk space the store leaves alone (default 256 MiB). */
  reserveDiskBytes?: number;
  clock?: Clock;
}

/** Counters since start (for metrics and tests). */
export interface LogStoreStats {
  written: number;
  refused: number;
  droppedByAge: number;
  droppedBySize: number;
  writeErrors: number;
}

const MIB = 1024 * 1024;
const DAY_MS = 86_400_000;

/** Keeps log entries; see the file comment. */
export class LogStore {
  readonly #db: DatabaseSync;
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  readonly #bound: SizeBound;
  readonly #maxQueueBytes: number;
  readonly #watchers = new Set<() => void>();
  readonly #insert: StatementSync;
  readonly #stats: LogStoreStats = {
    written: 0,
    refused: 0,
    droppedByAge: 0,
    droppedBySize: 0,
    writeErrors: 0,
  };
  #queue: LogInput[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastAgeTrim = 0;
  #ended = false;

  constructor(path: string, options: LogStoreOptions = {}) {
    this.#dir = dirname(path);
    mkdirSync(this.#dir, { recursive: true });
    this.#clock = options.clock ?? systemClock;
    this.#maxAgeMs = options.maxAgeMs ?? 7 * DAY_MS;
    this.#maxQueueBytes = options.maxQueueBytes ?? 16 * MIB;
    this.#db = new DatabaseSync(path);
    this.#bound = new SizeBound(
      this.#db,
      this.#dir,
      options.maxBytes ?? 256 * MIB,
      options.reserveDiskBytes ?? 256 * MIB,
    );
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      ${cacheSizePragma()};
      CREATE TABLE IF NOT EXISTS logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL, tenant TEXT NOT NULL, app TEXT NOT NULL, service TEXT NOT NULL,
        instance TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS logs_app ON logs (tenant, app, seq);
    `);
    // Files from before levels and events: add the columns (NULL for old rows).
    const columns = new Set(
      (this.#db.prepare("PRAGMA table_info(logs)").all() as { name: string }[]).map((c) => c.name),
    );
    for (const [name, type] of [
      ["node", "TEXT"],
      ["level", "INTEGER"],
      ["trace_id", "TEXT"],
      ["json", "INTEGER"],
      ["reason", "TEXT"],
    ]) {
      if (!columns.has(name)) this.#db.exec(`ALTER TABLE logs ADD COLUMN ${name} ${type}`);
    }
    // Unicode-aware case-insensitive substring, for text LIKE cannot fold.
    this.#db.function("herd_icontains", { deterministic: true }, (hay, needle) =>
      String(hay).toLowerCase().includes(String(needle)) ? 1 : 0,
    );
    this.#insert = this.#db.prepare(
      `INSERT INTO logs (time, tenant, app, service, instance, node, stream, line, level, trace_id, json, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const flushMs = options.flushMs ?? 100;
    if (flushMs > 0) {
      this.#timer = setInterval(() => this.flush(), flushMs);
      this.#timer.unref();
    }
  }

  /**
   * Queues entries to be written; false (nothing queued) when the queue is
   * over its byte limit — the caller answers 429 and the agent sends them
   * again. A batch is always taken into an empty queue, so any batch fits.
   */
  append(entries: readonly LogInput[]): boolean {
    if (entries.length === 0) return true;
    let bytes = 0;
    for (const e of entries) bytes += e.line.length + 100;
    if (this.#queuedBytes > 0 && this.#queuedBytes + bytes > this.#maxQueueBytes) {
      this.#stats.refused += entries.length;
      return false;
    }
    for (const e of entries) this.#queue.push(e);
    this.#queuedBytes += bytes;
    return true;
  }

  /** Seconds a refused sender should wait: about how long the queue takes to write. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.#queuedBytes / (32 * MIB)));
  }

  /** Queues a platform event as an entry of stream `event` (never refused: events are few and matter). */
  appendEvent(event: Event): void {
    this.#queue.push({
      time: event.time,
      tenant: event.tenant ?? "",
      app: event.app ?? "",
      service: event.service ?? "",
      instance: event.instance ?? "",
      node: event.node,
      stream: "event",
      line: event.message,
      level: event.type === "warning" ? "warn" : "info",
      reason: event.reason,
    });
    this.#queuedBytes += event.message.length + 100;
  }

  /** Writes everything queued (one transaction), trims, and wakes the watchers. */
  flush(): void {
    if (this.#queue.length > 0) {
      const entries = this.#queue;
      this.#queue = [];
      this.#queuedBytes = 0;
      try {
        this.#write(entries);
        this.#stats.written += entries.length;
      } catch {
        // Disk full, file gone…: the batch is lost and counted; ingest goes on.
        this.#stats.writeErrors += entries.length;
      }
      this.trim();
      for (const w of this.#watchers) w();
    } else if (this.#clock.now() - this.#lastAgeTrim >= 60_000) {
      this.trim();
    }
  }

  /** Entries matching the query, oldest first. Whatever is queued is written first. */
  query(q: LogQuery): LogEntry[] {
    if (this.#queue.length > 0) this.flush();
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.app !== undefined) {
      where.push("tenant = ?", "app = ?");
      args.push(q.tenant, q.app);
    } else {
      where.push(q.platform ? "tenant IN (?, '')" : "tenant = ?");
      args.push(q.tenant);
    }
    for (const [column, value] of [
      ["service", q.service],
      ["instance", q.instance],
      ["stream", q.stream],
    ] as const) {
      if (value) {
        where.push(`${column} = ?`);
        args.push(value);
      }
    }
    if (q.level) {
      where.push("level >= ?");
      args.push(LEVELS[q.level]);
    }
    if (q.text) {
      // LIKE is case-insensitive for ASCII and runs in SQLite's C code; other text needs JavaScript's
      // Unicode lower-casing.
      if (/^[\x20-\x7e]+$/.test(q.text)) {
        where.push("line LIKE ? ESCAPE '\\'");
        args.push(`%${q.text.replace(/[\\%_]/g, "\\$&")}%`);
      } else {
        where.push("herd_icontains(line, ?)");
        args.push(q.text.toLowerCase());
      }
    }
    if (q.after !== undefined) {
      where.push("seq > ?");
      args.push(q.after);
    }
    if (q.since) {
      where.push("time >= ?");
      args.push(q.since);
    }
    const cursorGiven = q.after !== undefined || q.since !== undefined;
    const limit = cursorGiven ? (q.limit ?? 10_000) : (q.tail ?? 100);
    const order = cursorGiven ? "ASC" : "DESC";
    const rows = this.#db
      .prepare(`SELECT * FROM logs WHERE ${where.join(" AND ")} ORDER BY seq ${order} LIMIT ?`)
      .all(...args, limit) as unknown as Row[];
    if (order === "DESC") rows.reverse();
    return rows.map(toEntry);
  }

  /** The newest entry's seq (0 when empty). */
  lastSeq(): number {
    if (this.#queue.length > 0) this.flush();
    const row = this.#db.prepare("SELECT MAX(seq) AS max FROM logs").get() as { max: number | null };
    return Number(row.max ?? 0);
  }

  /** Whether endStreams() was called: followers should finish. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Tells every follower to finish (the server is shutting down; open streams would hold it up). */
  endStreams(): void {
    this.#ended = true;
    for (const w of this.#watchers) w();
  }

  /** Calls `listener` after every write until the returned function is called. */
  watch(listener: () => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }

  stats(): LogStoreStats & { queuedBytes: number; usedBytes: number; maxBytes: number; maxAgeMs: number } {
    return {
      ...this.#stats,
      queuedBytes: this.#queuedBytes,
      usedBytes: this.#bound.usedBytes(),
      maxBytes: this.#bound.maxBytes,
      maxAgeMs: this.#maxAgeMs,
    };
  }

  /** Drops entries past their age, then the oldest while the file holds more than its limit. */
  trim(): void {
    const now = this.#clock.now();
    if (now - this.#lastAgeTrim >= 1000) {
      this.#lastAgeTrim = now;
      const cutoff = new Date(now - this.#maxAgeMs).toISOString();
      // Oldest first in seq order: the first entry young enough ends the expiry (a line an agent
      // stamped with a skewed clock waits for its neighbours).
      for (;;) {
        const r = this.#db
          .prepare(
            `DELETE FROM logs WHERE seq IN (SELECT seq FROM logs ORDER BY seq LIMIT 20000)
               AND seq < COALESCE((SELECT seq FROM logs WHERE time >= ? ORDER BY seq LIMIT 1), 9e18)`,
          )
          .run(cutoff);
        this.#stats.droppedByAge += Number(r.changes);
        if (Number(r.changes) < 20000) break;
      }
    }
    this.#stats.droppedBySize += this.#bound.dropOldest("logs", "seq", now);
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
    this.#watchers.clear();
    this.#db.close();
  }

  #write(entries: LogInput[]): void {
    const insert = this.#insert;
    this.#db.exec("BEGIN");
    try {
      for (const e of entries) {
        const parsed =
          e.stream === "event" ? { json: false, traceId: undefined, level: e.level } : parseLine(e.line);
        const level = e.level ?? parsed.level;
        insert.run(
          e.time,
          e.tenant,
          e.app,
          e.service,
          e.instance,
          e.node ?? null,
          e.stream,
          e.line,
          level ? LEVELS[level] : null,
          parsed.traceId ?? null,
          parsed.json ? 1 : null,
          e.reason ?? null,
        );
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Pages in use (the free list is reused before the file grows, so the file stops at the limit). */
}

interface Row {
  seq: number;
  time: string;
  tenant: string;
  app: string;
  service: string;
  instance: string;
  node: string | null;
  stream: LogStream;
  line: string;
  level: number | null;
  trace_id: string | null;
  json: number | null;
  reason: string | null;
}

function toEntry(r: Row): LogEntry {
  const e: LogEntry = {
    seq: Number(r.seq),
    time: r.time,
    tenant: r.tenant,
    app: r.app,
    service: r.service,
    instance: r.instance,
    stream: r.stream,
    line: r.line,
  };
  if (r.node) e.node = r.node;
  if (r.level !== null) e.level = levelName(r.level);
  if (r.trace_id) e.traceId = r.trace_id;
  if (r.reason) e.reason = r.reason;
  if (r.json) {
    const fields = jsonObjectOf(r.line);
    if (fields) {
      e.fields = fields;
      const msg = jsonMessage(fields);
      if (msg !== undefined) e.msg = msg;
    }
  }
  return e;
}
