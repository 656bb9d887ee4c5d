/**
 * The audit trail: every write through the API — who (user, service account
 * or machine, and which token), what (method, route, path), in which tenant
 * and app, from which address, when, and with what result. Append-only, in its
 * own SQLite file (`<data>/audit.db`), written before the reply leaves (so an
 * acknowledged write is always in the trail), kept for a retention period.
 *
 * The agents' and gateways' protocol writes (heartbeats, log and span
 * shipping, status reports) are not audited: they are telemetry, not changes
 * people make, and would drown the trail.
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { cacheSizePragma } from "../common/sqlite-cache.ts";

export interface AuditEntry {
  seq: number;
  at: string;
  /** `user alice`, `service account ci`, `agent n1`, … */
  actor: string;
  /** The id of the token used. */
  token: string;
  tenant?: string;
  app?: string;
  /** create, update or delete (from the method). */
  verb: string;
  /** The route, e.g. `POST /api/v1/apps/:app/scale`. */
  route: string;
  /** The path as called, without the query. */
  path: string;
  status: number;
  address: string;
  /** The error message of a refused or failed write. */
  message?: string;
}

export interface AuditQuery {
  actor?: string;
  tenant?: string;
  app?: string;
  verb?: string;
  since?: string;
  until?: string;
  limit?: number;
}

const VERBS: Record<string, string> = { POST: "create", PUT: "update", PATCH: "update", DELETE: "delete" };
export const verbOf = (method: string): string | undefined => VERBS[method];

/** Default retention: 90 days. */
export const AUDIT_RETENTION_MS = 90 * 24 * 3600_000;

export class AuditLog {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #retentionMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(file: string, options: { retentionMs?: number } = {}) {
    this.#retentionMs = options.retentionMs ?? AUDIT_RETENTION_MS;
    this.#db = new DatabaseSync(file);
    this.#db.exec("PRAGMA journal_mode = WAL");
    this.#db.exec("PRAGMA synchronous = FULL");
    this.#db.exec(cacheSizePragma());
    this.#db.exec(`CREATE TABLE IF NOT EXISTS audit (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      at TEXT NOT NULL, actor TEXT NOT NULL, token TEXT NOT NULL, tenant TEXT, app TEXT,
      verb TEXT NOT NULL, route TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL,
      address TEXT NOT NULL, message TEXT)`);
    this.#db.exec("CREATE INDEX IF NOT EXISTS audit_at ON audit (at)");
    this.#db.exec("CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, seq)");
    // No UPDATE, and DELETE only for retention (the trigger lets only old rows go).
    this.#db.exec(`CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
      BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END`);
    this.#insert = this.#db.prepare(
      `INSERT INTO audit (at, actor, token, tenant, app, verb, route, path, status, address, message)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** Starts dropping entries older than the retention, once an hour. */
  start(): void {
    this.prune();
    this.#timer = setInterval(() => this.prune(), 3600_000);
    this.#timer.unref();
  }

  append(e: Omit<AuditEntry, "seq">): void {
    this.#insert.run(
      e.at,
      e.actor,
      e.token,
      e.tenant ?? null,
      e.app ?? null,
      e.verb,
      e.route,
      e.path,
      e.status,
      e.address,
      e.message ?? null,
    );
  }

  /**
   * Entries matching every filter, oldest first, the newest `limit` (default
   * 100); with `routes`, only writes to those routes (`POST /api/v1/apps/:app/deploys`).
   */
  list(q: AuditQuery, routes?: readonly string[]): AuditEntry[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (routes !== undefined) {
      where.push(`route IN (${routes.map(() => "?").join(", ") || "NULL"})`);
      args.push(...routes);
    }
    const eq = (column: string, value: string | undefined) => {
      if (value === undefined) return;
      where.push(`${column} = ?`);
      args.push(value);
    };
    eq("tenant", q.tenant);
    eq("app", q.app);
    eq("verb", q.verb);
    if (q.actor !== undefined) {
      // `alice` finds `user alice`; `user alice` finds itself.
      where.push("(actor = ? OR actor LIKE ?)");
      args.push(q.actor, `% ${q.actor.replaceAll("%", "")}`);
    }
    if (q.since !== undefined) {
      where.push("at >= ?");
      args.push(q.since);
    }
    if (q.until !== undefined) {
      where.push("at < ?");
      args.push(q.until);
    }
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC LIMIT ?`;
    const rows = this.#db.prepare(sql).all(...args, q.limit ?? 100) as Record<string, unknown>[];
    return rows.reverse().map((r) => {
      const e: AuditEntry = {
        seq: r.seq as number,
        at: r.at as string,
        actor: r.actor as string,
        token: r.token as string,
        verb: r.verb as string,
        route: r.route as string,
        path: r.path as string,
        status: r.status as number,
        address: r.address as string,
      };
      if (r.tenant !== null) e.tenant = r.tenant as string;
      if (r.app !== null) e.app = r.app as string;
      if (r.message !== null) e.message = r.message as string;
      return e;
    });
  }

  /** Drops entries older than the retention; returns how many. */
  prune(now = Date.now()): number {
    const cutoff = new Date(now - this.#retentionMs).toISOString();
    return Number(this.#db.prepare("DELETE FROM audit WHERE at < ?").run(cutoff).changes);
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#db.close();
  }
}
