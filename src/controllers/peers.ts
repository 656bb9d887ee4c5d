/**
 * The heartbeat reply's `peers` (model/protocol.ts): what a node's agent
 * needs to keep its instances from other tenants' instances on other nodes.
 *
 *   every node but the receiver ─► { address, instance port range }    closed to its instances
 *   each tenant of the receiver's instances ─► its endpoints elsewhere   open to that tenant's uid
 *
 * An agent sends back the version it applies; the reply carries `peers` only
 * when that differs, so a cluster at rest sends nothing. While one tenant
 * alone has services there is nobody to keep out: `closed: false`, with no
 * lists (a single-tenant cluster of 1,000 nodes and 10,000 instances would
 * otherwise carry every instance to every node). Both halves are worked out
 * at most every RECOMPUTE_MS from the informer and shared by every heartbeat.
 */

import { createHash } from "node:crypto";
import type { Instance, Node, Service } from "../model/objects.ts";
import type { Peers, PortRange } from "../model/protocol.ts";
import type { Informer } from "../store/informer.ts";

/** An agent that does not say its range (older) uses the default one. */
const DEFAULT_INSTANCE_PORTS: PortRange = { min: 20000, max: 29999 };

/** How stale a half of the answer may be, at most, while its kind keeps changing. */
const RECOMPUTE_MS = 500;

/** States in which an instance holds its port on its node. */
const HOLDS_PORT = new Set<Instance["state"]>(["provisioning", "ready", "running", "draining"]);

interface NodeList {
  changes: number;
  at: number;
  hash: string;
  nodes: { name: string; address: string; ports: PortRange }[];
}

interface TenantEndpoints {
  changes: number;
  at: number;
  hash: string;
  /** node name → "address:port" of the tenant's instances there. */
  byNode: Map<string, string[]>;
}

export class PeerDirectory {
  readonly #informer: Informer;
  readonly #now: () => number;
  #nodes: NodeList | undefined;
  readonly #tenants = new Map<string, TenantEndpoints>();

  constructor(informer: Informer, now: () => number = Date.now) {
    this.#informer = informer;
    this.#now = now;
  }

  /**
   * The peers of node `node`, whose listed instances belong to `tenants`, or
   * undefined when the agent applies this version already (`applied`).
   * The informer must be synced (the heartbeat has just done it).
   */
  forNode(node: string, tenants: readonly string[], applied: string | undefined): Peers | undefined {
    if (this.#informer.values("service", "tenant").length <= 1) {
      return applied === "open" ? undefined : { version: "open", closed: false, nodes: [], tenants: {} };
    }
    const list = this.#nodeList();
    const mine = [...new Set(tenants)].sort();
    const parts = mine.map((t) => this.#endpoints(t));
    const version = createHash("sha256")
      .update([node, list.hash, ...mine.map((t, i) => `${t}=${parts[i]?.hash}`)].join("\n"))
      .digest("hex")
      .slice(0, 32);
    if (version === applied) return undefined;
    const out: Record<string, string[]> = {};
    for (const [i, tenant] of mine.entries()) {
      const endpoints: string[] = [];
      for (const [at, list] of parts[i]?.byNode ?? []) if (at !== node) endpoints.push(...list);
      out[tenant] = endpoints;
    }
    return {
      version,
      closed: true,
      nodes: list.nodes.filter((n) => n.name !== node).map(({ address, ports }) => ({ address, ports })),
      tenants: out,
    };
  }

  #nodeList(): NodeList {
    const changes = this.#informer.changes("node");
    const now = this.#now();
    const cached = this.#nodes;
    if (cached && (cached.changes === changes || now - cached.at < RECOMPUTE_MS)) return cached;
    const nodes = this.#informer
      .list<Node>("node")
      .map(({ value: n }) => ({
        name: n.name,
        address: n.address,
        ports: n.instancePorts ?? DEFAULT_INSTANCE_PORTS,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const hash = digest(JSON.stringify(nodes));
    this.#nodes = { changes, at: now, hash, nodes };
    return this.#nodes;
  }

  #endpoints(tenant: string): TenantEndpoints {
    const changes = this.#informer.changes("instance") + this.#informer.changes("node");
    const now = this.#now();
    const cached = this.#tenants.get(tenant);
    if (cached && (cached.changes === changes || now - cached.at < RECOMPUTE_MS)) return cached;
    const byNode = new Map<string, string[]>();
    for (const { value: s } of this.#informer.by<Service>("service", "tenant", tenant)) {
      for (const { value: i } of this.#informer.by<Instance>(
        "instance",
        "service",
        `${tenant}/${s.app}/${s.name}`,
      )) {
        if (!i.node || i.port === undefined || !HOLDS_PORT.has(i.state)) continue;
        const address = this.#informer.get<Node>("node", i.node)?.value.address;
        if (!address) continue;
        const at = byNode.get(i.node) ?? [];
        at.push(address.includes(":") ? `[${address}]:${i.port}` : `${address}:${i.port}`);
        byNode.set(i.node, at);
      }
    }
    for (const list of byNode.values()) list.sort();
    const sorted = new Map([...byNode].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
    const entry = { changes, at: now, hash: digest(JSON.stringify([...sorted])), byNode: sorted };
    this.#tenants.set(tenant, entry);
    return entry;
  }
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}
