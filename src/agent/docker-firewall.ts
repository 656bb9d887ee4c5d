/**
 * The firewall between containers (docs/containers.md): one pair of nftables
 * tables per docker driver (its state root) on herd's bridge, written whole
 * in one `nft -f` transaction on every change, so there is never a moment
 * with half the rules.
 *
 *   bridge herdc_<bridge>_<hash>, hook forward (frames between two ports of the bridge):
 *     both ends containers of the same group (tenant/app)       accept
 *     from or to any other container of this driver              drop
 *
 *   inet herdc_<bridge>_<hash>, hook input, in on the bridge (a container to the host):
 *     replies (established, related)                             accept
 *     container → its own env's loopback endpoints (forwarded),
 *                 its group's published ports                    accept
 *     → another container's forwarded endpoint (the bridge address), or
 *     → another container's published port, or
 *     → any port of the instance range (other tenants' instances), or
 *     → a platform endpoint (API, agent metrics)                 drop
 *     anything else (the gateway's public ports)                 accept, as for a process instance
 *
 *   inet herdc_<bridge>_<hash>, hook forward, in on the bridge (a container to another machine,
 *   where the engine routes and masquerades; controllers/peers.ts):
 *     → a platform endpoint there (the agent's API server, the
 *       store's members, a gateway's metrics)                    drop
 *     → an instance of its own tenant there                     accept
 *     → another node's instance port range or agent metrics      drop
 *
 * The tables exist while containers of the driver run; they go with the last
 * one, or when the engine is stopped (removeContainerFirewalls). A container
 * starts its command only once the rules that name it are in place: its
 * wrapper waits for the `.network-ready` marker the driver writes into its
 * state dir after applying them (docker-driver.ts).
 */

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { Peers } from "../model/protocol.ts";
import {
  findNft,
  firewallRemoveScript,
  hostPort,
  isHostAddress,
  machineAddresses,
  onThisMachine,
  type ProtectedEndpoint,
  runNft,
} from "./firewall.ts";

/** One running container as the rules see it. */
export interface Guest {
  ip: string;
  /** Containers of one group reach each other directly: `tenant/app`. */
  group: string;
  /** Its published port (the instance's `$PORT`). */
  port: number;
  /** The loopback ports its env names, forwarded on the bridge address (docker-loopback.ts). */
  forwarded: number[];
}

export interface ContainerFirewallState {
  table: string;
  /** The bridge device on the host. */
  bridge: string;
  /** The bridge's address on the host: where forwarded endpoints listen. */
  gateway: string;
  guests: Guest[];
  /** The instance port range, closed to containers but for their own group's ports. */
  ports: { min: number; max: number };
  protect: ProtectedEndpoint[];
  /** The other nodes' instance ports (heartbeat reply); absent or not `closed`: no forward rules. */
  peers?: Peers;
  /** This machine's addresses: a platform endpoint at one is closed by its port on all of them (onThisMachine). */
  here?: readonly string[];
}

/** The table name of the driver with state root `stateRoot` on bridge `bridge`. */
export function containerFirewallTable(bridge: string, stateRoot: string): string {
  return `${tablePrefix(bridge)}${createHash("sha256").update(stateRoot).digest("hex").slice(0, 10)}`;
}

/** Every table of every driver on `bridge` starts with this. */
function tablePrefix(bridge: string): string {
  return `herdc_${bridge.replace(/[^A-Za-z0-9]/g, "_")}_`;
}

/** The nft script that replaces both tables with the rules for `state` (only deletes them without guests). */
export function containerFirewallScript(state: ContainerFirewallState): string {
  const lines = removeScript(state.table).split("\n");
  const guests = state.guests.filter((g) => isIP(g.ip) === 4);
  if (guests.length === 0) return lines.join("\n");
  const all = set(guests.map((g) => g.ip));
  const groups = new Map<string, Guest[]>();
  for (const g of guests) groups.set(g.group, [...(groups.get(g.group) ?? []), g]);
  lines.push(
    `table bridge ${state.table} {`,
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
  );
  for (const members of groups.values()) {
    const ips = set(members.map((g) => g.ip));
    lines.push(`    ip saddr ${ips} ip daddr ${ips} accept`);
  }
  lines.push(`    ip saddr ${all} drop`, `    ip daddr ${all} drop`, "  }", "}");

  lines.push(
    `table inet ${state.table} {`,
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    `    iifname ${JSON.stringify(state.bridge)} jump guests`,
    "  }",
    "  chain guests {",
    "    ct state established,related accept",
  );
  for (const g of guests) {
    const ports = [...g.forwarded, ...(groups.get(g.group) ?? []).map((m) => m.port)];
    lines.push(`    ip saddr ${g.ip} tcp dport ${set(ports.map(String))} accept`);
  }
  const forwarded = [...new Set(guests.flatMap((g) => g.forwarded))];
  if (forwarded.length > 0)
    lines.push(`    ip saddr ${all} ip daddr ${state.gateway} tcp dport ${set(forwarded.map(String))} drop`);
  lines.push(`    ip saddr ${all} tcp dport ${set(guests.map((g) => String(g.port)))} drop`);
  lines.push(`    ip saddr ${all} tcp dport ${state.ports.min}-${state.ports.max} drop`);
  // The platform's endpoints the control plane names (the store's members, the gateways' metrics) too.
  const here = new Set(state.here ?? []);
  const closed = [...onThisMachine(state.protect, here), ...onThisMachine(platformOf(state), here)];
  for (const e of closed) {
    const a = e.address;
    if (a === undefined || isHostAddress(a)) lines.push(`    ip saddr ${all} tcp dport ${e.port} drop`);
    else if (isIP(a) === 4) lines.push(`    ip saddr ${all} ip daddr ${a} tcp dport ${e.port} drop`);
  }
  lines.push("  }");
  lines.push(...forwardLines(state, closed, guests, all));
  lines.push("}", "");
  return lines.join("\n");
}

/** The platform's endpoints in `peers` that are IP addresses (a host name cannot be matched). */
function platformOf(state: ContainerFirewallState): ProtectedEndpoint[] {
  return (state.peers?.platform ?? []).flatMap((e) => hostPort(e) ?? []);
}

/**
 * A container to another machine (the engine routes it there): the platform's
 * endpoints there closed (the agent's own API server, the store's members,
 * the gateways' metrics), its tenant's endpoints (the group's first part)
 * open, the other nodes' instance ranges closed.
 */
function forwardLines(
  state: ContainerFirewallState,
  closed: ProtectedEndpoint[],
  guests: Guest[],
  all: string,
): string[] {
  const peers = state.peers;
  const nodes = peers?.closed ? peers.nodes.filter((n) => isIP(n.address) === 4) : [];
  const elsewhere = closed.filter((e) => isIP(e.address ?? "") === 4 && !isHostAddress(e.address ?? ""));
  if (nodes.length === 0 && elsewhere.length === 0) return [];
  const lines = [
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname ${JSON.stringify(state.bridge)} jump peers`,
    "  }",
    "  chain peers {",
    ...elsewhere.map((e) => `    ip saddr ${all} ip daddr ${e.address} tcp dport ${e.port} drop`),
  ];
  const byTenant = new Map<string, string[]>();
  for (const g of peers ? guests : []) {
    const tenant = g.group.split("/")[0] ?? "";
    byTenant.set(tenant, [...(byTenant.get(tenant) ?? []), g.ip]);
  }
  for (const [tenant, ips] of byTenant) {
    const endpoints = (peers?.tenants[tenant] ?? []).flatMap((e) => {
      const at = hostPort(e);
      return at && isIP(at.address) === 4 ? [`${at.address} . ${at.port}`] : [];
    });
    if (endpoints.length > 0)
      lines.push(
        `    ip saddr ${set(ips)} ip daddr . tcp dport { ${[...new Set(endpoints)].join(", ")} } accept`,
      );
  }
  for (const n of nodes) {
    const range = `${n.ports.min}-${n.ports.max}`;
    const ports = n.metricsPort ? `{ ${range}, ${n.metricsPort} }` : range;
    lines.push(`    ip saddr ${all} ip daddr ${n.address} tcp dport ${ports} drop`);
  }
  lines.push("  }");
  return lines;
}

/** The script that deletes both tables (and does not fail when they are gone already). */
function removeScript(table: string): string {
  return firewallRemoveScript(table, "bridge") + firewallRemoveScript(table);
}

/** `{ a, b }`, or the one element alone. */
function set(items: string[]): string {
  const unique = [...new Set(items)];
  return unique.length === 1 ? unique[0] : `{ ${unique.join(", ")} }`;
}

/** What the driver holds: the state, applied on every change; absent `nft` (not root, not installed): no rules. */
export class ContainerFirewall {
  readonly #nft: string;
  readonly #state: ContainerFirewallState;
  readonly #guests = new Map<string, Guest>();

  private constructor(nft: string, state: Omit<ContainerFirewallState, "guests">) {
    this.#nft = nft;
    this.#state = { ...state, guests: [] };
  }

  /**
   * The firewall for the driver at `stateRoot` on `bridge`, or the reason there
   * is none: nftables needs root and `nft` (Debian nftables).
   */
  static open(
    options: Omit<ContainerFirewallState, "guests" | "table"> & { stateRoot: string },
  ): ContainerFirewall | { missing: string } {
    const found = findNft();
    if ("missing" in found) return found;
    const { stateRoot, ...rest } = options;
    return new ContainerFirewall(found.nft, {
      ...rest,
      table: containerFirewallTable(options.bridge, stateRoot),
    });
  }

  get table(): string {
    return this.#state.table;
  }

  /** The agent's policy; `apply()` writes it. */
  setPolicy(policy: {
    ports: { min: number; max: number };
    protect: ProtectedEndpoint[];
    peers?: Peers;
  }): void {
    this.#state.ports = policy.ports;
    this.#state.protect = policy.protect;
    this.#state.peers = policy.peers;
  }

  /** Adds or replaces a container; `apply()` writes the rules. */
  set(id: string, guest: Guest): void {
    this.#guests.set(id, guest);
  }

  delete(id: string): void {
    this.#guests.delete(id);
  }

  get size(): number {
    return this.#guests.size;
  }

  /** Writes the rules for the containers set now (deletes the tables when there are none); throws when nft refuses. */
  apply(): void {
    const script = containerFirewallScript({
      ...this.#state,
      guests: [...this.#guests.values()],
      here: [...machineAddresses()],
    });
    const err = runNft(this.#nft, script);
    if (err) throw new Error(`nft refused the container rules: ${err}`);
  }
}

/** Deletes the tables of every driver on these bridges (an engine stopped: its containers went with it). */
export function removeContainerFirewalls(bridges: string[]): void {
  const found = findNft();
  if ("missing" in found || bridges.length === 0) return;
  const { nft } = found;
  const listed = runNftOutput(nft, ["list", "tables"]);
  const prefixes = bridges.map(tablePrefix);
  const script: string[] = [];
  for (const line of listed.split("\n")) {
    const m = /^table (bridge|inet) (\S+)$/.exec(line.trim());
    if (m && prefixes.some((p) => m[2].startsWith(p))) script.push(`delete table ${m[1]} ${m[2]}`);
  }
  if (script.length > 0) runNft(nft, `${script.join("\n")}\n`);
}

function runNftOutput(nft: string, args: string[]): string {
  const r = spawnSync(nft, args, { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? r.stdout : "";
}
