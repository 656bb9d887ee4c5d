/**
 * The heartbeat reply's `peers` (model/protocol.ts): what a node's agent
 * needs to keep its instances from other tenants' instances on other nodes.
 *
 *   every node ─► { address, instance port range }                   closed to its instances
 *   each tenant of the receiver's instances ─► its endpoints         open to that tenant's uid
 *
 * The receiver's own node is in both lists: its instances reach their own
 * node's address through `lo`, whose rules come first in the agent's table,
 * so those entries change nothing there, and leaving them in lets every node
 * with the same tenants share one answer (no copy per node of a big list).
 * Both also name the platform's endpoints elsewhere (the store's etcd
 * members, the gateways' metrics: api/platform-endpoints.ts), closed to
 * every instance whatever the tenants.
 * An agent sends back the version it applies; the reply carries `peers` only
 * when that differs, so a cluster at rest sends nothing. While one tenant
 * alone has services there is nobody to keep out: `closed: false`, with no
 * lists (a single-tenant cluster of 1,000 nodes and 10,000 instances would
 * otherwise carry every instance to every node). Both halves are worked out
 * from the informer at most every RECOMPUTE_MS, or longer for a tenant with
 * many endpoints (MS_PER_ENDPOINT each, up to MAX_RECOMPUTE_MS): each new
 * list goes to every node of the tenant, so while thousands of its instances
 * start at once they are batched rather than sent at every heartbeat.
 */

import { createHash } from "node:crypto";
import type { Instance, Node, Service } from "../model/objects.ts";
import type { PeerNode, Peers, PortRange } from "../model/protocol.ts";
import type { Informer } from "../store/informer.ts";

/** An agent that does not say its range (older) uses the default one. */
const DEFAULT_INSTANCE_PORTS: PortRange = { min: 20000, max: 29999 };

/** How stale a half of the answer may be while its kind keeps changing: at least, per endpoint, at most. */
const RECOMPUTE_MS = 500;
const MS_PER_ENDPOINT = 0.2;
const MAX_RECOMPUTE_MS = 5000;

/** Encoded answers kept (one per distinct set of tenants on a node, and per version while lists change). */
const ENCODED_KEPT = 64;

/** States in which an instance holds its port on its node. */
const HOLDS_PORT = new Set<Instance["state"]>(["provisioning", "ready", "running", "draining"]);

interface NodeList {
  changes: number;
  at: number;
  hash: string;
  nodes: PeerNode[];
}

interface TenantEndpoints {
  changes: number;
  at: number;
  hash: string;
  /** "address:port" of the tenant's instances, sorted. */
  endpoints: string[];
}

export class PeerDirectory {
  readonly #informer: Informer;
  readonly #platform: () => string[];
  readonly #now: () => number;
  #nodes: NodeList | undefined;
  readonly #tenants = new Map<string, TenantEndpoints>();
  /** The platform's endpoints as last seen, and their hash (a heartbeat hashes them only when they change). */
  #platformSeen = { key: "", hash: "", list: [] as string[] };
  /** The JSON of recent answers by version: every node with the same tenants gets the same bytes. */
  readonly #encoded = new Map<string, Buffer>();

  /** `platform`: the platform's endpoints elsewhere, "host:port" (api/platform-endpoints.ts). */
  constructor(informer: Informer, platform: () => string[] = () => [], now: () => number = Date.now) {
    this.#informer = informer;
    this.#platform = platform;
    this.#now = now;
  }

  /**
   * The peers of a node whose listed instances belong to `tenants`, or
   * undefined when its agent applies this version already (`applied`).
   * The informer must be synced (the heartbeat has just done it).
   */
  forNode(tenants: readonly string[], applied: string | undefined): Peers | undefined {
    const { list: platform, hash: platformHash } = this.#platformNow();
    if (this.#informer.values("service", "tenant").length <= 1) {
      const version = `open${platformHash}`;
      return applied === version ? undefined : { version, closed: false, nodes: [], tenants: {}, platform };
    }
    const list = this.#nodeList();
    const mine = [...new Set(tenants)].sort();
    const parts = mine.map((t) => this.#endpoints(t));
    const version = digest(
      [list.hash, platformHash, ...mine.map((t, i) => `${t}=${parts[i]?.hash}`)].join("\n"),
    );
    if (version === applied) return undefined;
    return {
      version,
      closed: true,
      nodes: list.nodes,
      tenants: Object.fromEntries(mine.map((t, i) => [t, parts[i]?.endpoints ?? []])),
      platform,
    };
  }

  /**
   * `peers` as JSON bytes, encoded once per version: during a big rollout a
   * new list goes to every node of the tenant, and encoding it per reply was
   * most of the control plane's work (bench:control-plane --tenants 2).
   */
  encode(peers: Peers): Buffer {
    let bytes = this.#encoded.get(peers.version);
    if (!bytes) {
      bytes = Buffer.from(JSON.stringify(peers));
      if (this.#encoded.size >= ENCODED_KEPT)
        this.#encoded.delete(this.#encoded.keys().next().value as string);
      this.#encoded.set(peers.version, bytes);
    }
    return bytes;
  }

  #platformNow(): { list: string[]; hash: string } {
    const list = [...new Set(this.#platform())].sort();
    const key = list.join(",");
    if (key !== this.#platformSeen.key)
      this.#platformSeen = { key, list, hash: list.length > 0 ? `-${digest(key)}` : "" };
    return this.#platformSeen;
  }

  #nodeList(): NodeList {
    const changes = this.#informer.changes("node");
    const now = this.#now();
    const cached = this.#nodes;
    if (cached && (cached.changes === changes || now - cached.at < RECOMPUTE_MS)) return cached;
    const nodes = this.#informer
      .list<Node>("node")
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map(({ value: n }): PeerNode => {
        const metricsPort = n.metricsUrl ? Number(new URL(n.metricsUrl).port) : 0;
        return {
          address: n.address,
          ports: n.instancePorts ?? DEFAULT_INSTANCE_PORTS,
          ...(metricsPort > 0 ? { metricsPort } : {}),
        };
      });
    const hash = digest(JSON.stringify(nodes));
    this.#nodes = { changes, at: now, hash, nodes };
    return this.#nodes;
  }

  #endpoints(tenant: string): TenantEndpoints {
    const changes = this.#informer.changes("instance") + this.#informer.changes("node");
    const now = this.#now();
    const cached = this.#tenants.get(tenant);
    if (cached) {
      const wait = Math.min(
        MAX_RECOMPUTE_MS,
        Math.max(RECOMPUTE_MS, cached.endpoints.length * MS_PER_ENDPOINT),
      );
      if (cached.changes === changes || now - cached.at < wait) return cached;
    }
    const endpoints: string[] = [];
    for (const { value: s } of this.#informer.by<Service>("service", "tenant", tenant)) {
      for (const { value: i } of this.#informer.by<Instance>(
        "instance",
        "service",
        `${tenant}/${s.app}/${s.name}`,
      )) {
        if (!i.node || i.port === undefined || !HOLDS_PORT.has(i.state)) continue;
        const address = this.#informer.get<Node>("node", i.node)?.value.address;
        if (address)
          endpoints.push(address.includes(":") ? `[${address}]:${i.port}` : `${address}:${i.port}`);
      }
    }
    endpoints.sort();
    const entry = { changes, at: now, hash: digest(endpoints.join(",")), endpoints };
    this.#tenants.set(tenant, entry);
    return entry;
  }
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}
