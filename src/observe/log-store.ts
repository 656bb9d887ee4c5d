/**
 * Instance logs: every line agents ship, kept in their own SQLite file (not
 * the object store), bounded by a row limit, followed live by `herd logs -f`.
 *
 *   agent POST /logs ─► append ─► logs.db ─► query (tail, since cursor)
 *                          └──────► followers (live)
 *
 * Every entry has a `seq` cursor: a reader that reconnects with `after=seq`
 * gets exactly what it missed.
 */

import { DatabaseSync } from "node:sqlite";

export interface LogEntry {
  seq: number;
  time: string;
  tenant: string;
  app: string;
  service: string;
  instance: string;
  stream: "stdout" | "stderr";
  line: string;
}

export interface LogQuery {
  tenant: string;
  app: string;
  service?: string;
  instance?: string;
  /** Only entries after this cursor. */
  after?: number;
  /** Only entries at or after this ISO time. */
  since?: string;
  /** The last N entries (default 100) when no cursor is given. */
  tail?: number;
}

export class LogStore {
  readonly #db: DatabaseSync;
  readonly #maxRows: number;
  readonly #followers = new Set<(e: LogEntry) => void>();
  #sinceTrim = 0;
  readonly #insert;

  constructor(path: string, maxRows = 500_000) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL, tenant TEXT NOT NULL, app TEXT NOT NULL, service TEXT NOT NULL,
        instance TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS logs_app ON logs (tenant, app, seq);
    `);
    this.#maxRows = maxRows;
    this.#insert = this.#db.prepare(
      "INSERT INTO logs (time, tenant, app, service, instance, stream, line) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    );
  }

  /** Appends lines (one transaction) and hands them to followers. */
  append(entries: Omit<LogEntry, "seq">[]): void {
    if (entries.length === 0) return;
    const stored: LogEntry[] = [];
    this.#db.exec("BEGIN");
    try {
      for (const e of entries) {
        const row = this.#insert.get(e.time, e.tenant, e.app, e.service, e.instance, e.stream, e.line) as {
          seq: number;
        };
        stored.push({ ...e, seq: Number(row.seq) });
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
    this.#sinceTrim += entries.length;
    if (this.#sinceTrim > 10_000) this.#trim();
    for (const f of this.#followers) for (const e of stored) f(e);
  }

  /** Entries matching the query, oldest first. */
  query(q: LogQuery): LogEntry[] {
    const where = ["tenant = ?", "app = ?"];
    const args: (string | number)[] = [q.tenant, q.app];
    if (q.service) {
      where.push("service = ?");
      args.push(q.service);
    }
    if (q.instance) {
      where.push("instance = ?");
      args.push(q.instance);
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
    const limit = cursorGiven ? 10_000 : (q.tail ?? 100);
    const order = cursorGiven ? "ASC" : "DESC";
    const rows = this.#db
      .prepare(`SELECT * FROM logs WHERE ${where.join(" AND ")} ORDER BY seq ${order} LIMIT ?`)
      .all(...args, limit) as unknown as LogEntry[];
    return order === "DESC" ? rows.reverse() : rows;
  }

  /** Calls `listener` for every new entry until the returned function is called. */
  follow(listener: (e: LogEntry) => void): () => void {
    this.#followers.add(listener);
    return () => this.#followers.delete(listener);
  }

  /** Whether an entry matches a query's filters (for live following). */
  static matches(e: LogEntry, q: LogQuery): boolean {
    return (
      e.tenant === q.tenant &&
      e.app === q.app &&
      (!q.service || e.service === q.service) &&
      (!q.instance || e.instance === q.instance)
    );
  }

  close(): void {
    this.#db.close();
  }

  #trim(): void {
    this.#sinceTrim = 0;
    const row = this.#db.prepare("SELECT MAX(seq) AS max FROM logs").get() as { max: number | null };
    if (row.max === null) return;
    this.#db.prepare("DELETE FROM logs WHERE seq <= ?").run(Number(row.max) - this.#maxRows);
  }
}
