/**
 * The platform's own endpoints on other machines that no instance may reach,
 * as "host:port" for the heartbeat reply's `peers.platform`
 * (controllers/peers.ts; the agent's firewall closes them like its own API
 * and metrics ports): the store's etcd members, whose plain-HTTP API would
 * let an instance read and write every object of the cluster and whose peer
 * port takes raft messages, and each gateway's metrics listener, which names
 * every tenant's routes and traffic.
 *
 *   --store etcd://a,b ─────────────────────────► a, b (always)
 *   etcd's member list, at start and every 30 s ─► every member's client and peer URLs
 *   the gateway book ───────────────────────────► each gateway's metrics
 */

import type { Logger } from "../common/log.ts";
import { Rounds } from "../common/rounds.ts";
import type { GatewayBook } from "./gateway-book.ts";

/** How often etcd's member list is read again (members come and go rarely; a new one is closed this much later at most). */
const MEMBERS_EVERY_MS = 30_000;

/** "host:port" of each member of an `etcd://h:p,h:p/root` store; none for SQLite. */
export function storeMembers(store: string | undefined): string[] {
  const m = /^etcd:\/\/([^/]+)/.exec(store ?? "");
  return m?.[1] ? m[1].split(",") : [];
}

/**
 * A URL's "host:port" (the scheme's port when it names none). `localhost`
 * becomes 127.0.0.1: a member that advertises it is reached on its own
 * machine's loopback, where the agent there closes it.
 */
export function endpointOf(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const port = u.port || (u.protocol === "https:" ? "443" : u.protocol === "http:" ? "80" : "");
  if (!port || !u.hostname) return undefined;
  const host = u.hostname === "localhost" ? "127.0.0.1" : u.hostname;
  return `${host}:${port}`;
}

/** Where the etcd members' URLs come from (EtcdStore.memberUrls). */
export interface MemberSource {
  memberUrls(): Promise<string[]>;
}

/** The store as a source of members when it is etcd (checked by shape: a server on SQLite does not load the etcd client). */
export function memberSource(store: object): MemberSource | undefined {
  return typeof (store as Partial<MemberSource>).memberUrls === "function"
    ? (store as MemberSource)
    : undefined;
}

/** The endpoints now, kept current: `now()` for each heartbeat, `start()`/`stop()` for the member list's rounds. */
export class PlatformEndpoints {
  readonly #given: string[];
  readonly #gateways: Pick<GatewayBook, "scrapeTargets">;
  readonly #rounds: Rounds | undefined;
  /** The members' client and peer endpoints as etcd last listed them. */
  #listed: string[] = [];

  constructor(options: {
    store: string | undefined;
    gateways: Pick<GatewayBook, "scrapeTargets">;
    /** The store when it is etcd: its member list adds the peer ports and members added later. */
    members?: MemberSource | undefined;
    logger?: Logger;
  }) {
    this.#given = storeMembers(options.store);
    this.#gateways = options.gateways;
    const source = options.members;
    if (source) {
      let warned = false;
      this.#rounds = new Rounds(
        async () => {
          const urls = await source.memberUrls();
          this.#listed = urls.flatMap((u) => endpointOf(u) ?? []);
          warned = false;
        },
        (err) => {
          // The last list stays: a member list that cannot be read opens nothing.
          if (!warned) options.logger?.warn("cannot read etcd's member list", { err: String(err) });
          warned = true;
        },
      );
    }
  }

  /** Reads the member list now and every 30 s. */
  start(): Promise<void> {
    if (!this.#rounds) return Promise.resolve();
    this.#rounds.start(MEMBERS_EVERY_MS);
    return this.#rounds.run();
  }

  /** Reads the member list now (a test, or after a member was added). */
  refresh(): Promise<void> {
    return this.#rounds?.run() ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    await this.#rounds?.stop();
  }

  /** The store's members (client and peer ports) and the metrics of every gateway not silent. */
  now(): string[] {
    return [
      ...this.#given,
      ...this.#listed,
      ...this.#gateways.scrapeTargets().flatMap((t) => endpointOf(t.url) ?? []),
    ];
  }
}
