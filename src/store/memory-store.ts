/**
 * A Store held in memory, with the same semantics as SqliteStore (revisions,
 * conflicts, history limit, `gone`, frozen objects). For unit tests of
 * controllers and anything else that needs a store without a file.
 */

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

/** Options of MemoryStore. */
export interface MemoryStoreOptions {
  /** How many changes to keep for watches that start at a revision (default 10000). */
  historyLimit?: number;
}

/** The Store in memory; everything is lost when it is dropped. */
export class MemoryStore implements Store {
  #objects = new Map<Kind, Map<string, StoredObject>>();
  /** The last `historyLimit` changes, oldest first; revisions are contiguous. */
  #history: WatchEvent[] = [];
  #historyLimit: number;
  #revision = 0;
  /** Highest revision dropped from the history (0 = none). */
  #compacted = 0;
  #hub: WatchHub;
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#historyLimit = checkHistoryLimit(options.historyLimit);
    this.#hub = new WatchHub(this.#historyLimit);
  }

  async get<T>(kind: Kind, key: string): Promise<StoredObject<T> | undefined> {
    this.#checkOpen();
    return this.#objects.get(kind)?.get(key) as StoredObject<T> | undefined;
  }

  async list<T>(kind: Kind, options?: ListOptions): Promise<{ items: StoredObject<T>[]; revision: number }> {
    this.#checkOpen();
    const limit = checkListLimit(options);
    const prefix = options?.prefix ?? "";
    const keys = [...(this.#objects.get(kind)?.keys() ?? [])].filter((key) => key.startsWith(prefix));
    keys.sort(compareKeys);
    const items = keys.slice(0, limit).map((key) => this.#objects.get(kind)!.get(key) as StoredObject<T>);
    return { items, revision: this.#revision };
  }

  async snapshot(): Promise<{ items: StoredObject[]; revision: number }> {
    this.#checkOpen();
    const items: StoredObject[] = [];
    for (const kind of KINDS) {
      const objects = this.#objects.get(kind);
      if (!objects) continue;
      for (const key of [...objects.keys()].sort(compareKeys)) items.push(objects.get(key) as StoredObject);
    }
    return { items, revision: this.#revision };
  }

  async put<T>(kind: Kind, key: string, value: T, options?: PutOptions): Promise<StoredObject<T>> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    // A JSON round trip, so callers see exactly what a SQLite or etcd store would return.
    const copy = fromJson<T>(toJson(value));
    const objects = this.#objectsOf(kind);
    const current = objects.get(key);
    checkRevisionMatches(kind, key, current?.revision ?? 0, expected);
    const revision = ++this.#revision;
    const object: StoredObject<T> = Object.freeze({
      kind,
      key,
      revision,
      createRevision: current ? current.createRevision : revision,
      value: copy,
    });
    objects.set(key, object);
    this.#record(deepFreeze({ type: "put", kind, key, revision, object }));
    return object;
  }

  async delete(kind: Kind, key: string, options?: PutOptions): Promise<boolean> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    const objects = this.#objectsOf(kind);
    const current = objects.get(key);
    checkRevisionMatches(kind, key, current?.revision ?? 0, expected);
    if (!current) return false;
    objects.delete(key);
    const revision = ++this.#revision;
    this.#record(deepFreeze({ type: "delete", kind, key, revision, object: current }));
    return true;
  }

  watch<T = unknown>(options: WatchOptions): AsyncIterable<WatchEvent<T>> {
    return this.#hub.watch<T>(options, (fromRevision, kinds) => this.#readHistory(fromRevision, kinds));
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    return this.#revision;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#hub.close();
  }

  #readHistory(fromRevision: number, kinds: Kind[] | undefined): HistoryRead {
    this.#checkOpen();
    if (fromRevision < this.#compacted) throw compactedError(fromRevision, this.#compacted);
    const wanted = kinds ? new Set(kinds) : undefined;
    // Revisions in the history are contiguous, so the first one wanted is at a known index.
    const start = Math.max(0, fromRevision - this.#compacted);
    const events = this.#history.slice(start).filter((event) => !wanted || wanted.has(event.kind));
    return { events, revision: this.#revision };
  }

  /** Appends a change to the history, trims the history to the limit and tells the watchers. */
  #record(event: WatchEvent): void {
    this.#history.push(event);
    const excess = this.#history.length - this.#historyLimit;
    if (excess > 0) {
      this.#history.splice(0, excess);
      this.#compacted += excess;
    }
    this.#hub.publish(event);
  }

  #objectsOf(kind: Kind): Map<string, StoredObject> {
    let objects = this.#objects.get(kind);
    if (!objects) {
      objects = new Map();
      this.#objects.set(kind, objects);
    }
    return objects;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedStoreError();
  }
}

/** Key order as SQLite and etcd have it: by UTF-8 bytes (= by code point), not by UTF-16 unit. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
