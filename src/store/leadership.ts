/**
 * Who runs the controllers: one leader among the servers that share a store.
 *
 *   SQLite (one server per data dir): this server leads from start to close.
 *   etcd:
 *     campaign ─► grant a lease (TTL) ─► txn: create <root>leader with the lease
 *        │                                 only if it does not exist
 *        │    (its answer lost: the key held by this lease is a win; else the lease is revoked)
 *        ├ won  ─► term.begin() inside fencing.run(fence): every write the
 *        │         controllers make compares the leader key's create revision
 *        │         (fence.ts); keepalives every TTL/3, each sent to every
 *        │         member at once (one answer renews: a member cut off the
 *        │         network cannot hold the renewal back)
 *        │    lost when: etcd says the lease expired, no keepalive answered
 *        │    for a TTL (a partition, a SIGSTOP), or a fenced write was refused
 *        │    ─► term.end() ─► campaign again
 *        └ lost ─► try again every pollMs; the key goes when its lease expires
 *                  (the leader died or stopped renewing) or is revoked (a
 *                  leader that closes hands over at once)
 *
 * The leader key's value names the leader (`LeaderInfo`): followers tell
 * agents where it is (api/leader-only.ts).
 */

import { hostname } from "node:os";
import type { Etcd3, Lease } from "etcd3";
import type { Logger } from "../common/log.ts";
import { type Fence, fencing } from "./fence.ts";
import { sentOnce } from "./sent-once.ts";

/** What the leader key says. */
export interface LeaderInfo {
  /** `<host>:<pid>` of the leading server. */
  id: string;
  /** Its API URL. */
  url: string;
  /** When it was elected (ISO time). */
  since: string;
}

/** What a server does while it leads: begin when elected, end when deposed or closing. */
export interface Term {
  begin(): Promise<void>;
  end(): Promise<void>;
}

/** One server's part in the election. */
export interface Leadership {
  /** Whether this server leads now. */
  readonly leading: boolean;
  /** Starts campaigning (etcd: resolves at once) or leading (SQLite: resolves once the term began) with this server's API URL. */
  start(url: string, term: Term): Promise<void>;
  /** The current leader, if any. */
  leader(): Promise<LeaderInfo | undefined>;
  /** Ends the term (if leading) and hands over. */
  close(): Promise<void>;
}

/** SQLite: one server per data dir, always the leader; no fence needed. */
export class SoleLeadership implements Leadership {
  #term: Term | undefined;
  #info: LeaderInfo | undefined;

  get leading(): boolean {
    return this.#term !== undefined;
  }

  async start(url: string, term: Term): Promise<void> {
    this.#term = term;
    this.#info = { id: serverId(), url, since: new Date().toISOString() };
    await term.begin();
  }

  async leader(): Promise<LeaderInfo | undefined> {
    return this.#info;
  }

  async close(): Promise<void> {
    const term = this.#term;
    this.#term = undefined;
    await term?.end();
  }
}

/** Options of EtcdLeadership. */
export interface EtcdLeadershipOptions {
  client: Etcd3;
  /**
   * One client per etcd member (the store's, without retries): each keepalive
   * goes to all of them, not through `client`, which picks a member at random
   * and may pick one that no longer answers.
   */
  members: Etcd3[];
  root: string;
  /** Lease TTL in seconds (default 5): a dead leader is replaced after about this long. */
  ttlSeconds?: number;
  logger: Logger;
}

/** Leader election on etcd with a lease, and the fence for the leader's writes. */
export class EtcdLeadership implements Leadership {
  readonly #client: Etcd3;
  readonly #members: Etcd3[];
  readonly #key: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  #leading = false;
  #closed = false;
  /** Ends the current term (resolves the campaign's wait). */
  #depose: (() => void) | undefined;
  #campaign: Promise<void> | undefined;

  constructor(options: EtcdLeadershipOptions) {
    this.#client = options.client;
    this.#members = options.members;
    this.#key = `${options.root}leader`;
    this.#ttlMs = (options.ttlSeconds ?? 5) * 1000;
    this.#logger = options.logger;
  }

  get leading(): boolean {
    return this.#leading;
  }

  async start(url: string, term: Term): Promise<void> {
    this.#campaign = this.#run(url, term);
  }

  async leader(): Promise<LeaderInfo | undefined> {
    const value = await this.#client.get(this.#key).string();
    return value === null ? undefined : (JSON.parse(value) as LeaderInfo);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#depose?.();
    await this.#campaign;
  }

  async #run(url: string, term: Term): Promise<void> {
    // Followers ask again this often; the dead leader's lease is the larger part of a handover.
    const pollMs = Math.max(100, Math.min(500, this.#ttlMs / 10));
    while (!this.#closed) {
      try {
        const won = await this.#tryWin(url);
        if (won) await this.#lead(won, term);
      } catch (err) {
        this.#logger.warn("leader election: etcd did not answer; trying again", { err });
      }
      if (!this.#closed) await sleep(pollMs);
    }
  }

  /** One attempt: the lease and its create revision when this server took the key, else undefined. */
  async #tryWin(url: string): Promise<{ lease: Lease; createRevision: string; askedAt: number } | undefined> {
    // etcd counts the lease from the grant, which is after this: the leader's own clock never runs ahead of it.
    const askedAt = Date.now();
    const lease = this.#client.lease(this.#ttlMs / 1000, { autoKeepAlive: false });
    lease.on("lost", () => {});
    const id = await lease.grant();
    const info: LeaderInfo = { id: serverId(), url, since: new Date().toISOString() };
    // Sent once: sent again after it was committed, it would find the key this server just made.
    let res: Awaited<ReturnType<Etcd3["kv"]["txn"]>>;
    try {
      res = await sentOnce(() =>
        this.#client.kv.txn({
          compare: [{ key: Buffer.from(this.#key), target: "Create", result: "Equal", create_revision: 0 }],
          success: [
            {
              request_put: {
                key: Buffer.from(this.#key),
                value: Buffer.from(JSON.stringify(info)),
                lease: id,
              },
            },
          ],
          failure: [],
        }),
      );
    } catch (err) {
      // In doubt: the put may have been committed and only its answer lost. The key says whose it
      // is; one held by this lease is this server's term, which nobody else could take until it expired.
      const held = (await this.#client.kv.range({ key: Buffer.from(this.#key) }).catch(() => undefined))
        ?.kvs[0];
      if (held && String(held.lease) === String(id))
        return { lease, createRevision: String(held.create_revision), askedAt };
      await lease.revoke().catch(() => {});
      throw err;
    }
    if (!res.succeeded) {
      await lease.revoke().catch(() => {});
      return undefined;
    }
    return { lease, createRevision: String(res.header.revision), askedAt };
  }

  /** Leads until the lease is lost, a fenced write is refused, or close. */
  async #lead(won: { lease: Lease; createRevision: string; askedAt: number }, term: Term): Promise<void> {
    const { lease, createRevision, askedAt } = won;
    if (this.#closed) {
      // Won while closing: hand the key straight back.
      await lease.revoke().catch(() => {});
      return;
    }
    let depose: (why: string) => void = () => {};
    const ended = new Promise<string>((resolve) => {
      depose = resolve;
    });
    this.#depose = () => depose("closing");
    lease.on("lost", (err) => depose(`lease lost: ${err.message}`));
    // Renewed counts from when a keepalive was sent, so the lease is never taken for longer than etcd keeps it.
    let renewed = askedAt;
    const keepalive = setInterval(() => {
      const sent = Date.now();
      this.#keepalive(lease, this.#ttlMs / 3)
        .then((ttl) => {
          if (ttl > 0) renewed = Math.max(renewed, sent);
          else depose("lease lost: etcd says it expired");
        })
        .catch(() => {});
    }, this.#ttlMs / 3);
    // Our own clock as well: no renewal for a whole TTL means another server may lead already.
    const watchdog = setInterval(() => {
      if (Date.now() - renewed > this.#ttlMs) depose("no lease renewal for a whole TTL");
    }, this.#ttlMs / 10);
    keepalive.unref();
    watchdog.unref();
    const fence: Fence = { key: this.#key, createRevision, lost: () => depose("a fenced write was refused") };
    this.#leading = true;
    this.#logger.info("elected leader: running the controllers", { createRevision });
    void fencing.run(fence, () => term.begin()).catch((err) => depose(`start failed: ${err}`));
    const why = await ended;
    clearInterval(keepalive);
    clearInterval(watchdog);
    this.#leading = false;
    this.#depose = undefined;
    this.#logger.warn("no longer the leader: controllers stopped", { why });
    await term.end().catch((err) => this.#logger.warn("stopping the controllers failed", { err }));
    // Hands over at once when the lease still exists (closing).
    await lease.revoke().catch(() => {});
  }

  /** One keepalive: the lease's TTL from the first member that answers (0: expired), or the last error. */
  async #keepalive(lease: Lease, timeoutMs: number): Promise<number> {
    const id = await lease.grant();
    return Promise.any(this.#members.map((member) => keepaliveOn(member, id, timeoutMs)));
  }
}

/**
 * Sends one keepalive of lease `id` through `member`'s client (a member
 * passes it to etcd's leader): the TTL left, 0 when the lease expired.
 * Fails when no answer comes within `timeoutMs`.
 */
export async function keepaliveOn(member: Etcd3, id: string, timeoutMs: number): Promise<number> {
  const stream = await member.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
  try {
    return await new Promise<number>((resolve, reject) => {
      stream.on("data", (res) => resolve(Number(res.TTL)));
      stream.on("error", reject);
      stream.write({ ID: id });
    });
  } finally {
    stream.end();
  }
}

function serverId(): string {
  return `${hostname()}:${process.pid}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
