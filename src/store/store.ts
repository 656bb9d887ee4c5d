/**
 * The Store: every control-plane object, with optimistic concurrency and a
 * watch. The embedded default is SQLite (sqlite-store.ts); an etcd store can
 * be added behind the same interface and must pass store.case.test.ts.
 *
 * Revisions are global and strictly increasing (like etcd): every put or
 * delete gets the next revision. Objects returned are frozen copies; never
 * mutate them.
 */

import { isCode } from "../common/errors.ts";
import type { Kind, StoredObject, WatchEvent } from "../model/objects.ts";

// The objects and changes a store hands out are wire types (the API's watch sends them as they are):
// they live in model/, so the gateway and agents need nothing from here.
export type { StoredObject, WatchEvent };

export interface PutOptions {
  /** Write only if the object is at this revision; 0 = only if it does not exist. Else throws conflict. */
  expectRevision?: number;
}

export interface ListOptions {
  /** Only keys that start with this prefix. */
  prefix?: string;
  /** At most this many, in key order. */
  limit?: number;
}

export interface WatchOptions {
  kinds?: Kind[];
  /** Deliver every change with revision > fromRevision, then live ones. Omitted: live changes only. */
  fromRevision?: number;
  signal: AbortSignal;
}

export interface Store {
  get<T>(kind: Kind, key: string): Promise<StoredObject<T> | undefined>;
  /** Objects of a kind in key order, and the store revision they were read at. */
  list<T>(kind: Kind, options?: ListOptions): Promise<{ items: StoredObject<T>[]; revision: number }>;
  /** Creates or replaces. Throws HerdError conflict when expectRevision does not match. */
  put<T>(kind: Kind, key: string, value: T, options?: PutOptions): Promise<StoredObject<T>>;
  /** Returns whether something was deleted. Throws conflict when expectRevision does not match. */
  delete(kind: Kind, key: string, options?: PutOptions): Promise<boolean>;
  /**
   * Changes in revision order. Throws HerdError `gone` when fromRevision is
   * older than the history kept: the caller relists and watches from the
   * list's revision. Ends when the signal aborts.
   */
  watch<T = unknown>(options: WatchOptions): AsyncIterable<WatchEvent<T>>;
  /** The current revision. */
  revision(): Promise<number>;
  /**
   * Every object of every kind as of one revision (a consistent snapshot, for
   * backups and migrations: store/copy.ts), in kind then key order.
   */
  snapshot(): Promise<{ items: StoredObject[]; revision: number }>;
  close(): Promise<void>;
}

/**
 * Read-modify-write with optimistic concurrency: reads the object, hands it
 * to `change` (undefined when there is none), and writes what that returns at
 * the revision it read (a new object only if still absent); when another
 * writer got there first, it starts over from a fresh read. `change` may
 * throw to refuse, or return undefined to write nothing. Resolves with what
 * was written, or undefined when nothing was.
 */
export async function updateObject<T>(
  store: Store,
  kind: Kind,
  key: string,
  change: (current: StoredObject<T> | undefined) => T | undefined | Promise<T | undefined>,
): Promise<StoredObject<T> | undefined> {
  for (;;) {
    const current = await store.get<T>(kind, key);
    const next = await change(current);
    if (next === undefined) return undefined;
    try {
      return await store.put(kind, key, next, { expectRevision: current?.revision ?? 0 });
    } catch (err) {
      if (!isCode(err, "conflict")) throw err;
    }
  }
}
