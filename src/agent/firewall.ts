/**
 * The node firewall for instances: one nftables table per agent
 * (`inet herd_<tag>`), matching new TCP connections made by sockets of the
 * agent's instance uids only (the gateway, probes and everything else on the
 * machine are untouched):
 *
 *   output hook ─► uid in the agent's range and a SYN ─► chain sandbox:
 *     to an instance port of the same tenant (same uid)    accept
 *     to any other port of the instance range             reject (tcp reset)
 *     to a platform endpoint (API, agent metrics, etcd)    reject (tcp reset)
 *     to an instance of the same tenant on another node    accept
 *     to another node's instance port range or agent metrics  reject (tcp reset)
 *     anything else                                        accept (the gateway's routes, the internet)
 *
 * The other nodes and the tenants' endpoints there come from the control
 * plane (heartbeat reply `peers`, controllers/peers.ts): a receiving node
 * cannot tell another node's gateway from its instances, so the sending node
 * keeps its instances out.
 *
 * A platform endpoint at one of this machine's own addresses is closed by its
 * port on every address here (`onThisMachine`): a listener on a wildcard
 * answers on loopback too, where `ip daddr` would not match.
 *
 * The whole table is replaced in one `nft -f` transaction on every change, so
 * there is never a moment with half the rules. It exists while instances of
 * the agent run, and is deleted when the last one is gone.
 */

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { findBinary } from "../common/debian-packages.ts";
import type { PeerNode, Peers } from "../model/protocol.ts";
import { lastUid, type UidRange } from "./uids.ts";

/** An address and port instances must not connect to; no address (or a loopback one): this machine. */
export interface ProtectedEndpoint {
  address?: string;
  port: number;
}

/** Everything the rules are made of. */
/**
 * The control plane's API (each of `servers`, by URL) and the agent's metrics
 * listener: what instances must not connect to. A server given by host name
 * is closed here on this machine's addresses, and handed to `named` (the
 * agent looks it up, network-policy.ts, and closes its addresses too).
 */
export function protectedEndpoints(
  servers: readonly string[],
  metricsUrl: string | undefined,
  named: (host: string, port: number) => void,
): ProtectedEndpoint[] {
  const out: ProtectedEndpoint[] = [];
  for (const url of servers) {
    const server = new URL(url);
    const port = Number(server.port || (server.protocol === "https:" ? 443 : 80));
    const host = server.hostname.replace(/^\[|\]$/g, "");
    if (isIP(host) !== 0 || host === "localhost") out.push({ address: host, port });
    else {
      named(host, port);
      out.push({ port });
    }
  }
  if (metricsUrl) out.push({ port: Number(new URL(metricsUrl).port) });
  return out;
}

/** Every address of this machine's interfaces (of its network namespace). */
export function machineAddresses(): Set<string> {
  return new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)));
}

/**
 * The endpoints with one at an address of this machine (`here`) made this
 * machine's port, closed on every address here: an etcd or a metrics
 * listener on a wildcard answers on loopback and a bridge's address as well
 * as on the one it advertises.
 */
export function onThisMachine(
  endpoints: readonly ProtectedEndpoint[],
  here: ReadonlySet<string>,
): ProtectedEndpoint[] {
  return endpoints.map((e) =>
    e.address !== undefined && !isHostAddress(e.address) && here.has(e.address) ? { port: e.port } : e,
  );
}

/** Other nodes' instance ports: closed to every instance uid but for each uid's own tenant's endpoints. */
export interface RemoteRules {
  nodes: PeerNode[];
  open: { uid: number; endpoints: { address: string; port: number }[] }[];
}

export interface FirewallState {
  /** nftables table name (family inet). */
  table: string;
  /** The uids of this agent's instances. */
  uids: UidRange;
  /** Running instances: the uid they run as (one per tenant) and the port they serve on. */
  instances: { uid: number; port: number }[];
  /** Where instance ports come from: each is closed to the other tenants' uids. */
  ports: { min: number; max: number };
  protect: ProtectedEndpoint[];
  /** Absent: no rules for other nodes (one node, or one tenant in the cluster). */
  remote?: RemoteRules;
}

/** What this machine offers for the firewall. */
export type FirewallSupport = { tool: "nftables"; nft: string } | { tool: "none"; reason: string };

/** The table name of the agent whose driver state lives at `path`. */
export function firewallTable(path: string): string {
  return `herd_${createHash("sha256").update(path).digest("hex").slice(0, 10)}`;
}

/** The nft script that replaces the table with the rules for `state`, atomically. */
export function firewallScript(state: FirewallState): string {
  const t = `inet ${state.table}`;
  const byUid = new Map<number, number[]>();
  for (const i of state.instances) byUid.set(i.uid, [...(byUid.get(i.uid) ?? []), i.port]);
  const lines = [
    // Creating it first makes the delete valid when it did not exist; the three run as one transaction.
    `table ${t} {}`,
    `delete table ${t}`,
    `table ${t} {`,
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    `    meta skuid ${state.uids.first}-${lastUid(state.uids)} tcp flags & (syn | ack) == syn jump sandbox`,
    "  }",
    "  chain sandbox {",
  ];
  for (const [uid, ports] of [...byUid].sort((a, b) => a[0] - b[0])) {
    const set = [...new Set(ports)].sort((a, b) => a - b).join(", ");
    lines.push(`    oifname "lo" meta skuid ${uid} tcp dport { ${set} } accept`);
  }
  lines.push(`    oifname "lo" tcp dport ${state.ports.min}-${state.ports.max} reject with tcp reset`);
  for (const e of state.protect)
    lines.push(`    ${endpointMatch(e)} tcp dport ${e.port} reject with tcp reset`);
  if (state.remote) lines.push(...remoteLines(state.remote));
  lines.push("  }", "}", "");
  return lines.join("\n");
}

/**
 * The rules for other nodes from the control plane's `peers`, for the uids
 * of the tenants with instances here, and the platform's endpoints it names
 * (`protect`: the store's etcd members, the gateways' metrics). A node or an
 * endpoint given by host name cannot be matched and is left out (`skipped`).
 * No `rules` while the cluster needs none (`closed` false).
 */
export function remoteRules(
  peers: Peers | undefined,
  uids: readonly { uid: number; tenant: string | undefined }[],
): { rules?: RemoteRules; protect: ProtectedEndpoint[]; skipped: string[] } {
  const skipped: string[] = [];
  const protect: ProtectedEndpoint[] = [];
  for (const e of peers?.platform ?? []) {
    const at = hostPort(e);
    if (at) protect.push(at);
    else skipped.push(e);
  }
  if (!peers?.closed) return { protect, skipped };
  const nodes = peers.nodes.filter((n) => {
    if (isIP(n.address) === 0) skipped.push(n.address);
    return isIP(n.address) !== 0;
  });
  const open = uids.map(({ uid, tenant }) => ({
    uid,
    endpoints: (tenant === undefined ? [] : (peers.tenants[tenant] ?? [])).flatMap((e) => {
      const at = hostPort(e);
      return at ? [at] : [];
    }),
  }));
  return { rules: { nodes, open }, protect, skipped };
}

/** "10.0.0.5:20014" or "[fd00::5]:20014" as an address and port; undefined for a host name or a bad port. */
export function hostPort(text: string): { address: string; port: number } | undefined {
  const at = splitEndpoint(text);
  return at && isIP(at.host) !== 0 ? { address: at.host, port: at.port } : undefined;
}

/** "host:port" or "[v6]:port" split, the host a name or an address; undefined when it is not that, or a bad port. */
export function splitEndpoint(text: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  return m?.[1] && port >= 1 && port <= 65535 ? { host: m[1], port } : undefined;
}

function remoteLines(remote: RemoteRules): string[] {
  const lines: string[] = [];
  for (const { uid, endpoints } of [...remote.open].sort((a, b) => a.uid - b.uid)) {
    for (const family of [4, 6] as const) {
      const set = [
        ...new Set(
          endpoints.filter((e) => isIP(e.address) === family).map((e) => `${e.address} . ${e.port}`),
        ),
      ];
      if (set.length === 0) continue;
      const ip = family === 4 ? "ip" : "ip6";
      lines.push(`    meta skuid ${uid} ${ip} daddr . tcp dport { ${set.sort().join(", ")} } accept`);
    }
  }
  for (const n of remote.nodes) {
    const ip = isIP(n.address) === 4 ? "ip" : isIP(n.address) === 6 ? "ip6" : undefined;
    const range = `${n.ports.min}-${n.ports.max}`;
    const ports = n.metricsPort ? `{ ${range}, ${n.metricsPort} }` : range;
    if (ip) lines.push(`    ${ip} daddr ${n.address} tcp dport ${ports} reject with tcp reset`);
  }
  return lines;
}

/** Whether a protected endpoint's address (loopback or a wildcard; no address is this machine too) means this machine. */
export function isHostAddress(a: string): boolean {
  return !a || a === "localhost" || a.startsWith("127.") || a === "::1" || a === "0.0.0.0" || a === "::";
}

function endpointMatch(e: ProtectedEndpoint): string {
  const a = e.address;
  if (a === undefined || isHostAddress(a)) return 'oifname "lo"';
  if (isIP(a) === 4) return `ip daddr ${a}`;
  if (isIP(a) === 6) return `ip6 daddr ${a}`;
  throw new Error(`protected endpoint address ${a} is not an IP address`);
}

/** The script that removes the table (and does not fail when it is already gone). */
export function firewallRemoveScript(table: string, family: "inet" | "bridge" = "inet"): string {
  return `table ${family} ${table} {}\ndelete table ${family} ${table}\n`;
}

/**
 * Whether nftables can be used here: root, an `nft` binary, and a kernel that
 * takes a table (checked by creating and deleting one). Nothing is installed:
 * the agent reports what is missing instead.
 */
export function detectFirewall(): FirewallSupport {
  const found = findNft();
  if ("missing" in found) return { tool: "none", reason: found.missing };
  const { nft } = found;
  const probe = `herd_probe_${process.pid}`;
  const r = runNft(nft, `table inet ${probe} {}\ndelete table inet ${probe}\n`);
  if (r) return { tool: "none", reason: `nft cannot create a table: ${r}` };
  return { tool: "nftables", nft };
}

/** The `nft` binary, or why nftables cannot be used here: it needs root and `nft` (Debian nftables). */
export function findNft(): { nft: string } | { missing: string } {
  if (process.getuid?.() !== 0) return { missing: "not running as root" };
  const nft = findBinary("nft");
  return nft ? { nft } : { missing: "nft not found (Debian package nftables)" };
}

/** Runs an nft script; returns its error text, or undefined when it worked. */
export function runNft(nft: string, script: string): string | undefined {
  const r = spawnSync(nft, ["-f", "-"], { input: script, encoding: "utf8", timeout: 10_000 });
  if (r.error) return r.error.message;
  if (r.status !== 0) return (r.stderr || `exited with ${r.status}`).trim().split("\n").slice(0, 3).join(" ");
  return undefined;
}
