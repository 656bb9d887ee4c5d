/**
 * The embedded Store: one SQLite file (node:sqlite) in WAL mode with
 * synchronous=FULL, so an acknowledged write survives a crash of the process
 * or the machine.
 *
 * Writes are group-committed: the puts and deletes asked for within one turn
 * of the event loop run in one BEGIN IMMEDIATE transaction (one fsync), each
 * in its own savepoint: it checks the expected revision, takes the next global
 * revision (kept in `meta`), writes the object and appends a row to `changes`
 * (the watch history, trimmed to the last `historyLimit` rows). After the
 * commit the changes go to this process's watchers and only then are the
 * callers answered, so an acknowledged write is on disk; writes made by other processes on the same file are
 * stored correctly but reach only watches that start later, from history.
 */

import { DatabaseSync } from "node:sqlite";
import { cacheSizePragma } from "../common/sqlite-cache.ts";
import { KINDS, type Kind } from "../model/objects.ts";
import {
  checkExpectRevision,
  checkHistoryLimit,
  checkListLimit,
  checkRevisionMatches,
  closedStoreError,
  compactedError,
} from "./checks.ts";
import { deepFreeze, fromJson, toJson } from "./frozen.ts";
import type { ListOptions, PutOptions, Store, StoredObject, WatchEvent, WatchOptions } from "./store.ts";
import { type HistoryRead, WatchHub } from "./watch-hub.ts";

/** Options of SqliteStore.open. */
export interface SqliteStoreOptions {
  /** How many changes to keep for watches that start at a revision (default 10000). */
  historyLimit?: number;
  /** How long a write waits for another process holding the file's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
    object_revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
`;

interface ObjectRow {
  key: string;
  revision: number;
  create_revision: number;
  value: string;
}

interface ChangeRow {
  revision: number;
  kind: Kind;
  key: string;
  type: "put" | "delete";
  object_revision: number;
  create_revision: number;
  value: string;
}

interface PendingWrite {
  /** Runs inside the transaction: checks, writes, returns the change (undefined: nothing changed). */
  apply: () => WatchEvent | undefined;
  resolve: (event: WatchEvent | undefined) => void;
  reject: (err: unknown) => void;
}

/** The Store on a SQLite file; the control plane's default. */
export class SqliteStore implements Store {
  #db: DatabaseSync;
  #historyLimit: number;
  #hub: WatchHub;
  #closed = false;
  #sql: ReturnType<typeof prepareStatements>;
  /** Writes waiting for the next transaction (see #write). */
  #queue: PendingWrite[] = [];
  /** The revision within the running write transaction. */
  #revision = 0;
  /** The revision read this turn of the event loop (see revision()). */
  #knownRevision: number | undefined;

  private constructor(db: DatabaseSync, historyLimit: number) {
    this.#db = db;
    this.#historyLimit = historyLimit;
    this.#hub = new WatchHub(historyLimit);
    this.#sql = prepareStatements(db);
  }

  /** Opens (creating if needed) the store in the SQLite file at `path`. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    const historyLimit = checkHistoryLimit(options.historyLimit);
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec(cacheSizePragma());
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
      // IMMEDIATE so that two processes opening a new file do not race on the schema.
      db.exec("BEGIN IMMEDIATE");
      db.exec(SCHEMA);
      db.exec("COMMIT");
      return new SqliteStore(db, historyLimit);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  async get<T>(kind: Kind, key: string): Promise<StoredObject<T> | undefined> {
    this.#checkOpen();
    const row = this.#sql.getObject.get({ kind, key }) as ObjectRow | undefined;
    return row ? toStoredObject<T>(kind, row) : undefined;
  }

  async list<T>(kind: Kind, options?: ListOptions): Promise<{ items: StoredObject<T>[]; revision: number }> {
    this.#checkOpen();
    const limit = checkListLimit(options);
    const prefix = options?.prefix ?? "";
    // One read transaction, so the items and the revision are one snapshot even
    // while another process writes.
    return this.#transaction("DEFERRED", () => {
      const items: StoredObject<T>[] = [];
      // Keys sharing a prefix are contiguous in key order: start at the prefix
      // and stop at the first key without it.
      for (const row of this.#sql.listFrom.iterate({ kind, prefix }) as Iterable<ObjectRow>) {
        if (!row.key.startsWith(prefix) || items.length === limit) break;
        items.push(toStoredObject<T>(kind, row));
      }
      return { items, revision: this.#currentRevision() };
    });
  }

  async snapshot(): Promise<{ items: StoredObject[]; revision: number }> {
    this.#checkOpen();
    // One read transaction: every kind as of one revision.
    return this.#transaction("DEFERRED", () => {
      const items: StoredObject[] = [];
      for (const kind of KINDS) {
        for (const row of this.#sql.listFrom.iterate({ kind, prefix: "" }) as Iterable<ObjectRow>) {
          items.push(toStoredObject(kind, row));
        }
      }
      return { items, revision: this.#currentRevision() };
    });
  }

  async put<T>(kind: Kind, key: string, value: T, options?: PutOptions): Promise<StoredObject<T>> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    const json = toJson(value);
    const event = await this.#write(() => {
      const current = this.#sql.getObject.get({ kind, key }) as ObjectRow | undefined;
      checkRevisionMatches(kind, key, current?.revision ?? 0, expected);
      const revision = this.#nextRevision();
      const createRevision = current ? current.create_revision : revision;
      this.#sql.upsertObject.run({ kind, key, revision, createRevision, value: json });
      return this.#record({
        revision,
        kind,
        key,
        type: "put",
        object_revision: revision,
        create_revision: createRevision,
        value: json,
      });
    });
    return event?.object as StoredObject<T>;
  }

  async delete(kind: Kind, key: string, options?: PutOptions): Promise<boolean> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    const event = await this.#write(() => {
      const current = this.#sql.getObject.get({ kind, key }) as ObjectRow | undefined;
      checkRevisionMatches(kind, key, current?.revision ?? 0, expected);
      if (!current) return undefined;
      const revision = this.#nextRevision();
      this.#sql.deleteObject.run({ kind, key });
      return this.#record({
        revision,
        kind,
        key,
        type: "delete",
        object_revision: current.revision,
        create_revision: current.create_revision,
        value: current.value,
      });
    });
    return event !== undefined;
  }

  watch<T = unknown>(options: WatchOptions): AsyncIterable<WatchEvent<T>> {
    return this.#hub.watch<T>(options, (fromRevision, kinds) => this.#readHistory(fromRevision, kinds));
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    // Asked on every informer sync (each heartbeat, each reconcile): read once per turn of the
    // event loop, and kept current by this store's own commits (#flush).
    if (this.#knownRevision === undefined) {
      this.#knownRevision = this.#currentRevision();
      setImmediate(() => {
        this.#knownRevision = undefined;
      });
    }
    return this.#knownRevision;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Writes already asked for are committed (and acknowledged) before the file closes.
    this.#flush();
    this.#closed = true;
    this.#hub.close();
    this.#db.close();
  }

  #readHistory(fromRevision: number, kinds: Kind[] | undefined): HistoryRead {
    this.#checkOpen();
    return this.#transaction("DEFERRED", () => {
      const compacted = this.#meta("compacted");
      if (fromRevision < compacted) throw compactedError(fromRevision, compacted);
      const wanted = kinds ? new Set(kinds) : undefined;
      const events: WatchEvent[] = [];
      for (const row of this.#sql.changesAfter.iterate({ fromRevision }) as Iterable<ChangeRow>) {
        if (!wanted || wanted.has(row.kind)) events.push(toWatchEvent(row));
      }
      return { events, revision: this.#currentRevision() };
    });
  }

  /**
   * Group commit: queues one write and runs it in the next transaction. The
   * writes asked for within one turn of the event loop share one BEGIN
   * IMMEDIATE … COMMIT (one fsync); each runs in its own savepoint, so a
   * conflict fails only its own caller. A caller hears back only after the
   * COMMIT, so a crash loses no acknowledged write.
   */
  #write(apply: () => WatchEvent | undefined): Promise<WatchEvent | undefined> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ apply, resolve, reject });
      if (this.#queue.length === 1) setImmediate(() => this.#flush());
    });
  }

  /** Runs and commits every queued write in one transaction, then publishes and acknowledges them. */
  #flush(): void {
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    if (this.#closed) {
      for (const w of batch) w.reject(closedStoreError());
      return;
    }
    const outcomes: ({ event: WatchEvent | undefined } | { error: unknown })[] = [];
    try {
      this.#transaction("IMMEDIATE", () => {
        this.#revision = this.#currentRevision();
        const first = this.#revision;
        for (const w of batch) {
          this.#sql.savepoint.run();
          try {
            outcomes.push({ event: w.apply() });
            this.#sql.release.run();
          } catch (error) {
            this.#sql.rollbackTo.run();
            this.#sql.release.run();
            outcomes.push({ error });
          }
        }
        if (this.#revision > first) {
          this.#sql.setRevision.run({ value: this.#revision });
          const floor = this.#revision - this.#historyLimit;
          if (floor > 0) {
            this.#sql.trimChanges.run({ floor });
            this.#sql.raiseCompacted.run({ floor });
          }
        }
      });
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    if (this.#knownRevision !== undefined) this.#knownRevision = this.#revision;
    // Committed: watchers first (in revision order), then the callers.
    this.#hub.publishAll(outcomes.flatMap((o) => ("event" in o && o.event ? [o.event] : [])));
    batch.forEach((w, n) => {
      const outcome = outcomes[n] as { event: WatchEvent | undefined } | { error: unknown };
      if ("error" in outcome) w.reject(outcome.error);
      else w.resolve(outcome.event);
    });
  }

  /** Appends a change to the history (trimmed once per transaction) and returns its event. */
  #record(change: ChangeRow): WatchEvent {
    this.#sql.insertChange.run({
      revision: change.revision,
      kind: change.kind,
      key: change.key,
      type: change.type,
      objectRevision: change.object_revision,
      createRevision: change.create_revision,
      value: change.value,
    });
    return toWatchEvent(change);
  }

  /** The next revision within the running transaction (written to meta at its end). */
  #nextRevision(): number {
    this.#revision += 1;
    return this.#revision;
  }

  #currentRevision(): number {
    return this.#meta("revision");
  }

  #meta(name: "revision" | "compacted"): number {
    return (this.#sql.getMeta.get({ name }) as { value: number }).value;
  }

  #transaction<R>(mode: "IMMEDIATE" | "DEFERRED", work: () => R): R {
    this.#db.exec(`BEGIN ${mode}`);
    try {
      const result = work();
      this.#db.exec("COMMIT");
      return result;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw closedStoreError();
  }
}

function prepareStatements(db: DatabaseSync) {
  return {
    getObject: db.prepare(
      "SELECT key, revision, create_revision, value FROM objects WHERE kind = :kind AND key = :key",
    ),
    listFrom: db.prepare(
      "SELECT key, revision, create_revision, value FROM objects WHERE kind = :kind AND key >= :prefix ORDER BY key",
    ),
    upsertObject: db.prepare(
      `INSERT INTO objects (kind, key, revision, create_revision, value)
       VALUES (:kind, :key, :revision, :createRevision, :value)
       ON CONFLICT (kind, key) DO UPDATE SET revision = excluded.revision, value = excluded.value`,
    ),
    deleteObject: db.prepare("DELETE FROM objects WHERE kind = :kind AND key = :key"),
    insertChange: db.prepare(
      `INSERT INTO changes (revision, kind, key, type, object_revision, create_revision, value)
       VALUES (:revision, :kind, :key, :type, :objectRevision, :createRevision, :value)`,
    ),
    changesAfter: db.prepare(
      "SELECT revision, kind, key, type, object_revision, create_revision, value FROM changes WHERE revision > :fromRevision ORDER BY revision",
    ),
    trimChanges: db.prepare("DELETE FROM changes WHERE revision <= :floor"),
    raiseCompacted: db.prepare("UPDATE meta SET value = max(value, :floor) WHERE name = 'compacted'"),
    setRevision: db.prepare("UPDATE meta SET value = :value WHERE name = 'revision'"),
    savepoint: db.prepare("SAVEPOINT write"),
    release: db.prepare("RELEASE write"),
    rollbackTo: db.prepare("ROLLBACK TO write"),
    getMeta: db.prepare("SELECT value FROM meta WHERE name = :name"),
  };
}

function toStoredObject<T>(kind: Kind, row: ObjectRow): StoredObject<T> {
  return Object.freeze({
    kind,
    key: row.key,
    revision: row.revision,
    createRevision: row.create_revision,
    value: fromJson<T>(row.value),
  });
}

function toWatchEvent(row: ChangeRow): WatchEvent {
  return deepFreeze({
    type: row.type,
    kind: row.kind,
    key: row.key,
    revision: row.revision,
    object: {
      kind: row.kind,
      key: row.key,
      revision: row.object_revision,
      createRevision: row.create_revision,
      value: JSON.parse(row.value) as unknown,
    },
  });
}
