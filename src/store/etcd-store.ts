/**
 * The Store on an etcd cluster (v3 API, through the `etcd3` client), for a
 * control plane that outlives one machine. SQLite stays the default.
 *
 * Mapping (docs/etcd.md):
 * - an object is the etcd key `<root><kind>/<key>` holding its JSON value;
 * - herd's revision is etcd's revision minus one (a fresh cluster is at
 *   etcd revision 1, so an empty store is at 0 as in SQLite); an object's
 *   revision and createRevision are its mod_revision and create_revision;
 * - expectRevision is a compare on mod_revision in one etcd transaction;
 * - a watch is an etcd watch on `<root>` with previous values, from
 *   start_revision = fromRevision + 1 (in etcd numbers), kinds filtered here;
 * - history is etcd's: the store compacts etcd to keep the last
 *   `historyLimit` changes, and a watch from a compacted revision (etcd's
 *   "required revision has been compacted") is HerdError `gone` (410).
 *
 * Several herd servers can share one cluster and root; each sees the
 * others' writes live, unlike SQLite.
 */

import { Etcd3, type IKeyValue, type IResponseHeader, type IWatchResponse, type Watcher } from "etcd3";
import { HerdError } from "../common/errors.ts";
import { KINDS, type Kind } from "../model/objects.ts";
import {
  checkExpectRevision,
  checkHistoryLimit,
  checkListLimit,
  checkRevisionMatches,
  closedStoreError,
  compactedError,
} from "./checks.ts";
import { MemberBreaker, passThrough } from "./etcd-members.ts";
import { fencedError, fencing } from "./fence.ts";
import { deepFreeze, fromJson, toJson } from "./frozen.ts";
import { type SentWrite, sentOnce } from "./sent-once.ts";
import type { ListOptions, PutOptions, Store, StoredObject, WatchEvent, WatchOptions } from "./store.ts";

/** Options of EtcdStore.open. */
export interface EtcdStoreOptions {
  /** Client URLs of the cluster's members, e.g. `http://127.0.0.1:2379`. */
  endpoints: string[];
  /** Prefix of every key herd writes (default `/herd/`). */
  root?: string;
  /** How many changes to keep for watches that start at a revision (default 10000). */
  historyLimit?: number;
  /**
   * Deadline of one attempt of a call to etcd, ms (default 3000). A call past
   * it is tried again on another member (the client's retry, three attempts
   * in all): a member cut off the network holds a call this long, not longer.
   */
  timeoutMs?: number;
  /** TLS to etcd: the CA that signed the members' certificates, and this client's certificate and key (PEM). */
  tls?: EtcdTls;
  /** Told when a member stops answering its probes (and calls keep off it) and when it answers again. */
  onMemberChange?: (member: string, up: boolean, why: string) => void;
}

/** TLS to etcd (`--etcd-ca`, `--etcd-cert`, `--etcd-key`): endpoints are then https. */
export interface EtcdTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** etcd numbers are herd numbers plus this: etcd's empty keyspace is at revision 1. */
const OFFSET = 1;

/** Parses `etcd://host:port,host:port[/root]` into client endpoints and a root prefix. */
export function parseEtcdUrl(url: string): { endpoints: string[]; root: string } {
  const match = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (!match)
    throw new HerdError("invalid", `store must be etcd://host:port[,host:port…][/root], got ${url}`);
  const endpoints = match[1].split(",").map((host) => {
    if (!/^[\w.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(host)) {
      throw new HerdError("invalid", `store: "${host}" is not host:port`);
    }
    return `http://${host}`;
  });
  const path = match[2] ?? "/herd/";
  return { endpoints, root: path.endsWith("/") ? path : `${path}/` };
}

/** The Store on etcd. */
export class EtcdStore implements Store {
  #client: Etcd3;
  #root: string;
  #historyLimit: number;
  /** The highest herd revision this store has seen: a watch without fromRevision starts after it. */
  #seen = 0;
  /**
   * The cluster's ID, from the first answer. An answer with another is
   * refused: a member's address taken over by another etcd (its process
   * died, another cluster started on the port) would answer every read as
   * if the keys were gone.
   */
  #cluster: string | undefined;
  /** The etcd revision compacted to by this store (0 = not yet). */
  #compacted = 0;
  #closed = false;
  /** One per open watch: ends it with `unavailable` and cancels its etcd watcher. */
  #closers = new Set<() => Promise<void>>();

  /** Closes the client and the member probes. */
  #closeClients: () => void;

  /** One client per member, without retries (the probes'): the leader's lease keepalives go to each. */
  readonly #members: Etcd3[];

  private constructor(
    client: Etcd3,
    members: Etcd3[],
    root: string,
    historyLimit: number,
    closeClients: () => void,
  ) {
    this.#client = client;
    this.#members = members;
    this.#closeClients = closeClients;
    this.#root = root;
    this.#historyLimit = historyLimit;
  }

  /** The ID of the cluster this store talks to, once a member answered. */
  get clusterId(): string | undefined {
    return this.#cluster;
  }

  /** Connects to the cluster and reads its revision; fails when no member answers. */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const historyLimit = checkHistoryLimit(options.historyLimit);
    if (options.endpoints.length === 0)
      throw new HerdError("invalid", "etcd store needs at least one endpoint");
    const timeoutMs = options.timeoutMs ?? 3000;
    const { tls } = options;
    // Node takes no IP address as a TLS server name, so the gRPC client cannot verify one.
    const ipHost = options.endpoints.find((e) => /^\w+:\/\/(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):/.test(e));
    if (tls && ipHost)
      throw new HerdError(
        "invalid",
        `with --etcd-ca name etcd's members by the DNS names their certificates carry, not by IP address (${ipHost})`,
      );
    const hosts = tls ? options.endpoints.map((e) => e.replace(/^http:\/\//, "https://")) : options.endpoints;
    const credentials = tls
      ? {
          credentials: {
            rootCertificate: tls.ca,
            ...(tls.cert ? { certChain: tls.cert } : {}),
            ...(tls.key ? { privateKey: tls.key } : {}),
          },
        }
      : {};
    // One client per member, without retries: a probe (and a leader's keepalive) must reach its own member.
    const probes = new Map(
      hosts.map((h) => [
        h,
        new Etcd3({
          hosts: [h],
          ...credentials,
          faultHandling: { global: passThrough, host: () => passThrough },
        }),
      ]),
    );
    const breaker = new MemberBreaker({
      members: hosts,
      ...(options.onMemberChange ? { onChange: options.onMemberChange } : {}),
      probe: async (member, timeoutMs) => {
        const status = await (probes.get(member) as Etcd3).maintenance.status({
          deadline: Date.now() + timeoutMs,
        });
        // A member cut off from the others answers, but cannot serve: it knows no leader.
        if (status.leader === "0") throw new Error("it knows no raft leader");
        const cluster = store.clusterId;
        if (cluster !== undefined && status.header.cluster_id !== cluster)
          throw foreignClusterError(status.header.cluster_id, cluster);
      },
    });
    const client = new Etcd3({
      hosts,
      ...credentials,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeoutMs }),
      // A member cut off the network leaves a watch silent forever: pings while a stream is open find
      // the dead connection in about 8 s, and the watch moves to another member. etcd refuses pings
      // more often than every 5 s (--grpc-keepalive-min-time). The breaker's probes find it sooner.
      grpcOptions: { "grpc.keepalive_time_ms": 6000, "grpc.keepalive_timeout_ms": 2000 },
      faultHandling: { host: (h) => breaker.policy(h) },
    });
    const closeAll = () => {
      breaker.stop();
      client.close();
      for (const p of probes.values()) p.close();
    };
    const store = new EtcdStore(
      client,
      [...probes.values()],
      options.root ?? "/herd/",
      historyLimit,
      closeAll,
    );
    try {
      await store.revision();
      breaker.start();
      return store;
    } catch (err) {
      closeAll();
      throw unavailable(err);
    }
  }

  async get<T>(kind: Kind, key: string): Promise<StoredObject<T> | undefined> {
    this.#checkOpen();
    const res = await this.#call(() => this.#client.kv.range({ key: this.#key(kind, key) }));
    this.#see(res.header);
    const kv = res.kvs[0];
    return kv ? toStoredObject<T>(kind, key, kv) : undefined;
  }

  async list<T>(kind: Kind, options?: ListOptions): Promise<{ items: StoredObject<T>[]; revision: number }> {
    this.#checkOpen();
    const limit = checkListLimit(options);
    const start = this.#key(kind, options?.prefix ?? "");
    const res = await this.#call(() =>
      this.#client.kv.range({ key: start, range_end: prefixEnd(start), limit: limit ?? 0 }),
    );
    const revision = this.#see(res.header);
    const base = this.#key(kind, "").length;
    const items = res.kvs.map((kv) => toStoredObject<T>(kind, kv.key.subarray(base).toString(), kv));
    return { items, revision };
  }

  async snapshot(): Promise<{ items: StoredObject[]; revision: number }> {
    this.#checkOpen();
    // Every read pinned to the revision of the first: one consistent view, in pages.
    const revision = await this.revision();
    const items: StoredObject[] = [];
    for (const kind of KINDS) {
      const end = prefixEnd(this.#key(kind, ""));
      let start = this.#key(kind, "");
      const base = start.length;
      for (;;) {
        const from = start;
        const res = await this.#call(() =>
          this.#client.kv.range({ key: from, range_end: end, limit: 1000, revision: revision + OFFSET }),
        );
        for (const kv of res.kvs) items.push(toStoredObject(kind, kv.key.subarray(base).toString(), kv));
        if (!res.more || res.kvs.length === 0) break;
        start = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
      }
    }
    return { items, revision };
  }

  async put<T>(kind: Kind, key: string, value: T, options?: PutOptions): Promise<StoredObject<T>> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    const json = toJson(value);
    const bytes = Buffer.from(json);
    const res = await this.#transaction(
      kind,
      key,
      expected,
      { request_put: { key: this.#key(kind, key), value: bytes, prev_kv: true } },
      (current) => current?.value.equals(bytes) === true,
    );
    let revision = this.#see(res.header);
    let createRevision = revision;
    if (res.succeeded) {
      const prev = res.responses[0].response_put.prev_kv;
      if (prev) createRevision = Number(prev.create_revision) - OFFSET;
    } else {
      // Committed by an attempt whose answer was lost: the object as it stands is this write.
      const current = res.responses[0].response_range.kvs[0];
      revision = Number(current.mod_revision) - OFFSET;
      createRevision = Number(current.create_revision) - OFFSET;
    }
    const object = deepFreeze({ kind, key, revision, createRevision, value: JSON.parse(json) as T });
    await this.#compact(revision);
    return object;
  }

  async delete(kind: Kind, key: string, options?: PutOptions): Promise<boolean> {
    this.#checkOpen();
    const expected = checkExpectRevision(options);
    const res = await this.#transaction(
      kind,
      key,
      expected,
      { request_delete_range: { key: this.#key(kind, key) } },
      (current) => current === undefined,
    );
    const revision = this.#see(res.header);
    // Not succeeded: deleted by an attempt whose answer was lost.
    const deleted = !res.succeeded || Number(res.responses[0].response_delete_range.deleted) > 0;
    if (deleted) await this.#compact(revision);
    return deleted;
  }

  watch<T = unknown>(options: WatchOptions): AsyncIterable<WatchEvent<T>> {
    // Fixed now, so a watch without fromRevision misses nothing written after this call.
    const from = options.fromRevision ?? this.#seen;
    return this.#stream<T>(options, from);
  }

  async revision(): Promise<number> {
    this.#checkOpen();
    const res = await this.#call(() =>
      this.#client.kv.range({ key: Buffer.from(this.#root), count_only: true }),
    );
    return this.#see(res.header);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Cancel the watchers before the client goes, or the client keeps
    // reconnecting their stream (and the process alive).
    const cancels = Promise.all([...this.#closers].map((close) => close()));
    await Promise.race([cancels, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    this.#closeClients();
  }

  async *#stream<T>(options: WatchOptions, fromRevision: number): AsyncGenerator<WatchEvent<T>> {
    const { signal } = options;
    if (signal.aborted) return;
    this.#checkOpen();
    if (!(Number.isSafeInteger(fromRevision) && fromRevision >= 0)) {
      throw new HerdError("invalid", `watch fromRevision must be an integer >= 0, got ${fromRevision}`);
    }
    const wanted = options.kinds ? new Set<string>(options.kinds) : undefined;
    const queue: WatchEvent<T>[] = [];
    /** Events before `head` were delivered. */
    let head = 0;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const watcher: Watcher = this.#client
      .watch()
      .prefix(this.#root)
      .withPreviousKV()
      .startRevision(String(fromRevision + 1 + OFFSET))
      .watcher();
    let detached: Promise<void> | undefined;
    // Idempotent: stops delivery and cancels the etcd watcher once.
    const detach = () => {
      detached ??= (async () => {
        signal.removeEventListener("abort", onAbort);
        this.#closers.delete(onClose);
        watcher.removeAllListeners("data");
        await watcher.cancel().catch(() => {});
      })();
      return detached;
    };
    const stop = (err?: Error) => {
      failure ??= err;
      wake?.();
      return detach();
    };
    const onAbort = () => void stop();
    const onClose = () => stop(closedStoreError());
    signal.addEventListener("abort", onAbort, { once: true });
    this.#closers.add(onClose);
    watcher.on("data", (res: IWatchResponse) => {
      for (const event of res.events) {
        const parsed = this.#toWatchEvent<T>(event.type, event.kv, event.prev_kv);
        if (!parsed || (wanted && !wanted.has(parsed.kind))) continue;
        if (queue.length - head >= this.#historyLimit) {
          void stop(
            new HerdError(
              "gone",
              `watcher fell more than ${this.#historyLimit} changes behind; relist and watch from the list's revision`,
            ),
          );
          return;
        }
        queue.push(parsed);
      }
      wake?.();
    });
    // etcd cancels a watch whose start revision was compacted, with an empty
    // reason in this client: ask etcd whether that revision is still readable.
    watcher.on("error", (err: Error) => {
      this.#whyCanceled(fromRevision, err).then((reason) => stop(reason));
    });
    try {
      while (!signal.aborted) {
        if (head < queue.length) {
          const event = queue[head++];
          if (head > 1024) {
            queue.splice(0, head);
            head = 0;
          }
          yield event;
          continue;
        }
        if (failure) throw failure;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      // Cancelling waits for etcd's answer; the consumer need not wait for it.
      void detach();
    }
  }

  /** The error that ends a watch etcd canceled: `gone` when its start revision was compacted. */
  async #whyCanceled(fromRevision: number, err: Error): Promise<HerdError> {
    if (this.#closed) return closedStoreError();
    try {
      await this.#client.kv.range({
        key: Buffer.from(this.#root),
        count_only: true,
        revision: fromRevision + 1 + OFFSET,
      });
    } catch (probe) {
      if (/compacted/.test((probe as Error).message)) {
        return compactedError(fromRevision, Math.max(this.#compacted - 1 - OFFSET, fromRevision));
      }
    }
    return unavailable(err);
  }

  /**
   * One etcd transaction: `op` if the object is at `expected` (any revision
   * when undefined), else conflict. In a leader's fenced context (fence.ts)
   * also only if the leader key is still the one this server created.
   *
   * An attempt that was sent and failed may have been committed, and the
   * client's next attempt then fails the compare on the write's own result.
   * So after such an attempt a failed compare whose object `applied` says is
   * this write's outcome is no conflict: the failed response is returned,
   * its first response the object as it stands.
   */
  async #transaction(
    kind: Kind,
    key: string,
    expected: number | undefined,
    op: Parameters<Etcd3["kv"]["txn"]>[0]["success"] extends (infer O)[] | undefined ? O : never,
    applied: (current: IKeyValue | undefined) => boolean,
  ) {
    const etcdKey = this.#key(kind, key);
    const fence = fencing.getStore();
    const compare: NonNullable<Parameters<Etcd3["kv"]["txn"]>[0]["compare"]> = [];
    if (expected !== undefined) {
      compare.push({
        key: etcdKey,
        target: "Mod",
        result: "Equal",
        mod_revision: expected === 0 ? 0 : expected + OFFSET,
      });
    }
    if (fence) {
      compare.push({
        key: Buffer.from(fence.key),
        target: "Create",
        result: "Equal",
        create_revision: fence.createRevision,
      });
    }
    const write: SentWrite = { inDoubt: false };
    const res = await this.#call(() =>
      sentOnce(
        () =>
          this.#client.kv.txn({
            compare,
            success: [op],
            failure: [
              { request_range: { key: etcdKey } },
              ...(fence ? [{ request_range: { key: Buffer.from(fence.key) } }] : []),
            ],
          }),
        write,
      ),
    );
    if (!res.succeeded) {
      this.#see(res.header);
      if (fence) {
        const leader = res.responses[1].response_range.kvs[0];
        if (!leader || String(leader.create_revision) !== fence.createRevision) {
          fence.lost();
          throw fencedError(fence);
        }
      }
      const current = res.responses[0].response_range.kvs[0];
      if (write.inDoubt && expected !== undefined && applied(current)) return res;
      checkRevisionMatches(kind, key, current ? Number(current.mod_revision) - OFFSET : 0, expected);
      // The compare failed, so the revisions differ: checkRevisionMatches threw.
      throw new HerdError("internal", `etcd refused a write of ${kind} "${key}" without a conflict`);
    }
    return res;
  }

  /** Keeps the last historyLimit changes: compacts etcd to the oldest revision a watch may still start from. */
  async #compact(revision: number): Promise<void> {
    const floor = revision - this.#historyLimit;
    if (floor <= 0) return;
    // etcd keeps revisions >= the compaction revision; a watch from herd
    // revision `floor` starts at etcd floor + 1 + OFFSET.
    const target = floor + 1 + OFFSET;
    // Compacting costs a round trip: do it in steps of a tenth of the history.
    const step = Math.max(1, Math.floor(this.#historyLimit / 10));
    if (target - this.#compacted < step) return;
    try {
      await this.#call(() => this.#client.kv.compact({ revision: target }));
      this.#compacted = target;
    } catch (err) {
      // Another server compacted further already: that is all we wanted.
      if (!/compacted/.test((err as Error).message)) throw err;
      this.#compacted = target;
    }
  }

  #toWatchEvent<T>(type: string, kv: IKeyValue, prev: IKeyValue | undefined): WatchEvent<T> | undefined {
    const parsed = this.#parseKey(kv.key);
    if (!parsed) return undefined;
    const revision = Number(kv.mod_revision) - OFFSET;
    if (type === "Put") {
      const object = toStoredObject<T>(parsed.kind, parsed.key, kv);
      return deepFreeze({ type: "put", kind: parsed.kind, key: parsed.key, revision, object });
    }
    // A delete carries the last value: etcd's previous key-value.
    if (!prev) return undefined;
    const object = toStoredObject<T>(parsed.kind, parsed.key, prev);
    return deepFreeze({ type: "delete", kind: parsed.kind, key: parsed.key, revision, object });
  }

  #parseKey(raw: Buffer): { kind: Kind; key: string } | undefined {
    const text = raw.toString();
    if (!text.startsWith(this.#root)) return undefined;
    const rest = text.slice(this.#root.length);
    const slash = rest.indexOf("/");
    const kind = rest.slice(0, slash);
    if (slash < 0 || !(KINDS as readonly string[]).includes(kind)) return undefined;
    return { kind: kind as Kind, key: rest.slice(slash + 1) };
  }

  #key(kind: Kind, key: string): Buffer {
    return Buffer.from(`${this.#root}${kind}/${key}`);
  }

  /** Records the revision of a response; returns it in herd numbers. */
  #see(header: IResponseHeader): number {
    this.#cluster ??= header.cluster_id;
    if (header.cluster_id !== this.#cluster) throw foreignClusterError(header.cluster_id, this.#cluster);
    const revision = Number(header.revision) - OFFSET;
    if (revision > this.#seen) this.#seen = revision;
    return revision;
  }

  async #call<R>(work: () => Promise<R>): Promise<R> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof HerdError) throw err;
      if (this.#closed) throw closedStoreError();
      throw unavailable(err);
    }
  }

  /**
   * Every URL the cluster's members advertise, for clients and for their
   * peers, as etcd's member list has them (members added after the store was
   * opened too): the platform's endpoints no instance may reach
   * (api/platform-endpoints.ts).
   */
  async memberUrls(): Promise<string[]> {
    this.#checkOpen();
    const res = await this.#call(() => this.#client.cluster.memberList({}));
    return res.members.flatMap((m) => [...m.clientURLs, ...m.peerURLs]);
  }

  /** The client, one client per member and the key prefix, for leader election on the same cluster (leadership.ts). */
  connection(): { client: Etcd3; members: Etcd3[]; root: string } {
    return { client: this.#client, members: this.#members, root: this.#root };
  }

  #checkOpen(): void {
    if (this.#closed) throw closedStoreError();
  }
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function toStoredObject<T>(kind: Kind, key: string, kv: IKeyValue): StoredObject<T> {
  return Object.freeze({
    kind,
    key,
    revision: Number(kv.mod_revision) - OFFSET,
    createRevision: Number(kv.create_revision) - OFFSET,
    value: fromJson<T>(kv.value.toString()),
  });
}

function foreignClusterError(theirs: string, ours: string): HerdError {
  return new HerdError(
    "unavailable",
    `etcd: a member answered for cluster ${theirs}, not ${ours}: another etcd took over its address`,
  );
}

function unavailable(err: unknown): HerdError {
  if (err instanceof HerdError) return err;
  return new HerdError("unavailable", `etcd: ${(err as Error).message}`);
}
