/**
 * The Informer: a read-only, watch-fed view of some kinds of the store, kept
 * in memory and indexed, so that controllers, the scheduler and heartbeats
 * read what they need (the instances of one node, of one service) instead of
 * listing and parsing whole kinds on every pass (after client-go's informers).
 *
 *   store.list(kind) once ──► cache ◄── store.watch(every kind, from the list's revision)
 *                               │          put: newer revision replaces; delete: removes
 *                               ▼
 *   get(kind, key) · list(kind) · by(kind, index, value) · sync() = "as fresh as a list now"
 *
 * It never writes: writes still go to the store with the revision they read
 * (expectRevision), so a read that is a moment old can only make a write fail
 * with a conflict (and its reconcile run again), never overwrite a newer one.
 * `sync()` waits until the cache holds every change up to the store's current
 * revision: a reconcile that syncs first sees what a list would have shown,
 * its own earlier writes included.
 *
 * `subscribe()` hears every change the cache takes, as it takes it (and a
 * reset when it relists): something derived from the cache (the scheduler's
 * cluster view) is kept up to date instead of rebuilt from whole kinds.
 *
 * The watch takes every kind (and drops those it does not keep) so that it
 * sees every revision and `sync()` knows when it has caught up. A watch that
 * breaks (`gone`: it fell behind the store's history) relists and goes on.
 */

import type { Logger } from "../common/log.ts";
import type { Kind } from "../model/objects.ts";
import type { Store, StoredObject, WatchEvent } from "./store.ts";

/** A secondary index: the values an object is found under (e.g. an instance's node). */
export interface IndexSpec {
  kind: Kind;
  name: string;
  values: (value: never) => readonly string[];
}

export interface InformerOptions {
  kinds: readonly Kind[];
  indexes?: readonly IndexSpec[];
  logger?: Logger;
  /** How long `sync()` waits for the watch before it gives up and serves what it has (default 5 s). */
  syncTimeoutMs?: number;
}

type Bucket = Map<string, StoredObject>;

/**
 * One change the cache took: `before` and `after` are the object in it before
 * and after (absent: not there). `reset`: the cache was relisted; derive
 * everything afresh.
 */
export type InformerChange =
  | { kind: Kind; key: string; before?: StoredObject; after?: StoredObject; reset?: undefined }
  | { reset: true };

/** How long a watch with nothing to deliver counts as caught up (see sync()). */
const QUIET_MS = 100;

interface Waiter {
  revision: number;
  resolve: () => void;
}

/** A watch-fed, indexed, read-only copy of some kinds of a Store. */
export class Informer {
  readonly #store: Store;
  readonly #kinds: ReadonlySet<Kind>;
  readonly #indexes: readonly IndexSpec[];
  readonly #logger: Logger | undefined;
  readonly #syncTimeoutMs: number;
  /** kind → key → object. */
  #objects = new Map<Kind, Bucket>();
  /** `${kind}/${index}` → index value → key → object. */
  #indexed = new Map<string, Map<string, Bucket>>();
  #revision = 0;
  /** Per kind, how many times the cache's objects of that kind changed (see changes()). */
  #changes = new Map<Kind, number>();
  /** When the watch last delivered a change (performance.now()). */
  #lastEventAt = 0;
  #waiters: Waiter[] = [];
  readonly #listeners = new Set<(change: InformerChange) => void>();
  #started: Promise<void> | undefined;
  readonly #abort = new AbortController();

  constructor(store: Store, options: InformerOptions) {
    this.#store = store;
    this.#kinds = new Set(options.kinds);
    this.#indexes = options.indexes ?? [];
    this.#logger = options.logger;
    this.#syncTimeoutMs = options.syncTimeoutMs ?? 5000;
    for (const ix of this.#indexes) {
      if (!this.#kinds.has(ix.kind))
        throw new Error(`informer index ${ix.name}: kind ${ix.kind} is not kept`);
    }
  }

  /** Lists the kinds and starts following the watch; the first `sync()` does it too. */
  start(): Promise<void> {
    this.#started ??= this.#relist().then((revision) => {
      void this.#follow(revision);
    });
    return this.#started;
  }

  /** The revision of the last change the cache holds. */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Waits until the cache holds every change up to the store's revision now.
   * After it, reads are as fresh as a store list made at this moment.
   */
  async sync(): Promise<void> {
    await this.start();
    const target = await this.#store.revision();
    if (this.#revision >= target || this.#abort.signal.aborted) return;
    const started = performance.now();
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        revision: target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      // A store whose revisions also count writes it does not watch (etcd: keys outside its
      // prefix, such as a leader election's) never delivers `target`: once the watch has been
      // quiet for QUIET_MS, everything written before this call has arrived.
      const check = () => {
        const now = performance.now();
        const quiet = now - this.#lastEventAt >= QUIET_MS && now - started >= QUIET_MS;
        if (quiet || now - started >= this.#syncTimeoutMs) {
          if (!quiet)
            this.#logger?.warn("informer: the watch is behind the store; serving the cache as it is", {
              at: this.#revision,
              store: target,
            });
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve();
          return;
        }
        timer = setTimeout(check, QUIET_MS);
        timer.unref();
      };
      this.#waiters.push(waiter);
      timer = setTimeout(check, QUIET_MS);
      timer.unref();
    });
  }

  /** One object, or undefined. */
  get<T>(kind: Kind, key: string): StoredObject<T> | undefined {
    return this.#bucket(kind).get(key) as StoredObject<T> | undefined;
  }

  /** Every object of a kind (in no particular order). */
  list<T>(kind: Kind): StoredObject<T>[] {
    return [...this.#bucket(kind).values()] as StoredObject<T>[];
  }

  /**
   * A number that moves whenever an object of `kind` in the cache changes:
   * something derived from a kind can be kept until it moves.
   */
  changes(kind: Kind): number {
    return this.#changes.get(kind) ?? 0;
  }

  /** How many objects of a kind the cache holds. */
  count(kind: Kind): number {
    return this.#bucket(kind).size;
  }

  /** The objects of `kind` that index `index` files under `value`. */
  by<T>(kind: Kind, index: string, value: string): StoredObject<T>[] {
    const map = this.#indexed.get(`${kind}/${index}`);
    if (!map) throw new Error(`informer: no index ${index} on ${kind}`);
    const bucket = map.get(value);
    return bucket ? ([...bucket.values()] as StoredObject<T>[]) : [];
  }

  /** The values index `index` of `kind` files objects under now (e.g. every node that holds an instance). */
  values(kind: Kind, index: string): string[] {
    const map = this.#indexed.get(`${kind}/${index}`);
    if (!map) throw new Error(`informer: no index ${index} on ${kind}`);
    return [...map.keys()];
  }

  /**
   * Calls `listener` with every change the cache takes, synchronously, as it
   * takes it (so it is up to date whenever the cache is). Returns the unsubscribe.
   */
  subscribe(listener: (change: InformerChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  stop(): void {
    this.#abort.abort();
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  #bucket(kind: Kind): Bucket {
    const bucket = this.#objects.get(kind);
    if (!bucket) {
      if (!this.#kinds.has(kind)) throw new Error(`informer: kind ${kind} is not kept`);
      return new Map();
    }
    return bucket;
  }

  /** Reads every kept kind afresh; returns the revision to watch from. */
  async #relist(): Promise<number> {
    const objects = new Map<Kind, Bucket>();
    let from = Number.POSITIVE_INFINITY;
    for (const kind of this.#kinds) {
      const { items, revision } = await this.#store.list(kind);
      objects.set(kind, new Map(items.map((o) => [o.key, o])));
      // The lists were read at different revisions: watch from the oldest; replaying a change a
      // later list already holds is a no-op (revisions are compared).
      from = Math.min(from, revision);
    }
    if (!Number.isFinite(from)) from = await this.#store.revision();
    this.#objects = objects;
    for (const kind of this.#kinds) this.#changed(kind);
    this.#indexed = new Map(this.#indexes.map((ix) => [`${ix.kind}/${ix.name}`, new Map()]));
    for (const bucket of objects.values()) for (const o of bucket.values()) this.#addToIndexes(o);
    this.#tell({ reset: true });
    this.#advance(from);
    return from;
  }

  async #follow(from: number): Promise<void> {
    let revision = from;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        for await (const ev of this.#store.watch({ fromRevision: revision, signal })) {
          this.#lastEventAt = performance.now();
          this.#apply(ev);
          revision = ev.revision;
          this.#advance(revision);
        }
      } catch (err) {
        if (signal.aborted || closed(err)) return this.stop();
        this.#logger?.warn("informer watch broke; relisting", { err });
        await pause(100);
        try {
          revision = await this.#relist();
        } catch (relistErr) {
          if (signal.aborted || closed(relistErr)) return this.stop();
          this.#logger?.warn("informer relist failed; retrying", { err: relistErr });
          await pause(1000);
        }
      }
    }
  }

  #apply(ev: WatchEvent): void {
    if (!this.#kinds.has(ev.kind)) return;
    const bucket = this.#objects.get(ev.kind) as Bucket;
    const cached = bucket.get(ev.key);
    if (ev.type === "put") {
      if (cached && cached.revision >= ev.object.revision) return;
      this.#changed(ev.kind);
      if (cached) this.#removeFromIndexes(cached);
      bucket.set(ev.key, ev.object);
      this.#addToIndexes(ev.object);
      this.#tell({ kind: ev.kind, key: ev.key, ...(cached ? { before: cached } : {}), after: ev.object });
    } else {
      if (!cached || cached.revision >= ev.revision) return;
      this.#changed(ev.kind);
      this.#removeFromIndexes(cached);
      bucket.delete(ev.key);
      this.#tell({ kind: ev.kind, key: ev.key, before: cached });
    }
  }

  #tell(change: InformerChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        // A listener's bug must not stop the cache from following the store.
        this.#logger?.error("informer listener failed", { err });
      }
    }
  }

  #changed(kind: Kind): void {
    this.#changes.set(kind, this.changes(kind) + 1);
  }

  #addToIndexes(o: StoredObject): void {
    for (const ix of this.#indexes) {
      if (ix.kind !== o.kind) continue;
      const map = this.#indexed.get(`${ix.kind}/${ix.name}`) as Map<string, Bucket>;
      for (const v of ix.values(o.value as never)) {
        let bucket = map.get(v);
        if (!bucket) {
          bucket = new Map();
          map.set(v, bucket);
        }
        bucket.set(o.key, o);
      }
    }
  }

  #removeFromIndexes(o: StoredObject): void {
    for (const ix of this.#indexes) {
      if (ix.kind !== o.kind) continue;
      const map = this.#indexed.get(`${ix.kind}/${ix.name}`) as Map<string, Bucket>;
      for (const v of ix.values(o.value as never)) {
        const bucket = map.get(v);
        bucket?.delete(o.key);
        if (bucket?.size === 0) map.delete(v);
      }
    }
  }

  #advance(revision: number): void {
    if (revision > this.#revision) this.#revision = revision;
    if (this.#waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (this.#revision >= w.revision) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }
}

/** The store was closed: nothing more will come (the informer stops, and so do its waiters). */
function closed(err: unknown): boolean {
  return (err as { code?: string }).code === "unavailable" && /closed/.test((err as Error).message);
}

/** A pause that does not keep the process alive. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
