/**
 * A network namespace joined to this one by a veth pair, for chaos tests
 * (etcd-cluster.ts puts an etcd member in one to cut it off the network).
 *
 *   host ns: <veth>h  10.a.b.1/30 ◄──────► <veth>n 10.a.b.2/30 :netns herd-netns-<pid>-<n>
 *   cut():  the host end goes down: nothing passes either way (connections stay open, unanswered)
 *   heal(): up again
 *
 * `remove()` deletes the namespace, which deletes the pair. A process that
 * died before removing its namespaces leaves them named by its pid:
 * `sweepNamespaces()` removes those of pids that no longer run.
 */

import { execFileSync } from "node:child_process";
import { ensureDebianPackages } from "../common/debian-packages.ts";

const PREFIX = "herd-netns-";

export interface NetNamespace {
  name: string;
  /** The host end's address: listen on it to be reachable from inside. */
  hostIp: string;
  /** The inside end's address: what the host reaches the namespace at. */
  innerIp: string;
  /** The command and arguments that run `cmd` inside the namespace (the process keeps its pid: `ip netns exec` execs). */
  exec(cmd: string, args: string[]): [string, string[]];
  /** Cuts the link: nothing passes either way until heal(). */
  cut(): void;
  heal(): void;
  remove(): void;
}

let count = 0;

function ip(ipBin: string, args: string[]): string {
  return execFileSync(ipBin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Removes namespaces that processes now gone left behind (killed before they cleaned up). */
export function sweepNamespaces(ipBin = "ip"): void {
  const names = ip(ipBin, ["netns", "list"])
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter((n) => n.startsWith(PREFIX));
  for (const name of names) {
    const pid = Number(name.slice(PREFIX.length).split("-")[0]);
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    try {
      ip(ipBin, ["netns", "del", name]);
    } catch {
      // gone meanwhile
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A subnet /30 under 10.200.0.0/13 that no route of this machine covers. */
function freeSubnet(ipBin: string): string {
  const routes = ip(ipBin, ["-4", "route", "show", "table", "all"]);
  for (let tries = 0; tries < 50; tries++) {
    const base = `10.${200 + Math.floor(Math.random() * 8)}.${Math.floor(Math.random() * 256)}`;
    const last = Math.floor(Math.random() * 64) * 4;
    if (!routes.includes(`${base}.`)) return `${base}.${last}`;
  }
  throw new Error("no free subnet under 10.200.0.0/13 for a test network namespace");
}

/** Creates a namespace with its veth pair and addresses; removes what it made when a step fails. */
export async function createNamespace(): Promise<NetNamespace> {
  const { ip: ipBin } = await ensureDebianPackages({ ip: "iproute2" });
  sweepNamespaces(ipBin);
  const n = count++;
  const name = `${PREFIX}${process.pid}-${n}`;
  // Interface names are at most 15 characters.
  const veth = `hn${(process.pid % 1_000_000).toString(36)}${n.toString(36)}`;
  const subnet = freeSubnet(ipBin).split(".");
  const at = (k: number) => `${subnet[0]}.${subnet[1]}.${subnet[2]}.${Number(subnet[3]) + k}`;
  const hostIp = at(1);
  const innerIp = at(2);
  const remove = () => {
    try {
      ip(ipBin, ["netns", "del", name]);
    } catch {
      // not made, or gone already
    }
    try {
      ip(ipBin, ["link", "del", `${veth}h`]);
    } catch {
      // went with the namespace
    }
  };
  try {
    ip(ipBin, ["netns", "add", name]);
    ip(ipBin, ["link", "add", `${veth}h`, "type", "veth", "peer", "name", `${veth}n`]);
    ip(ipBin, ["link", "set", `${veth}n`, "netns", name]);
    ip(ipBin, ["addr", "add", `${hostIp}/30`, "dev", `${veth}h`]);
    ip(ipBin, ["link", "set", `${veth}h`, "up"]);
    const inside = (args: string[]) => ip(ipBin, ["netns", "exec", name, ipBin, ...args]);
    inside(["addr", "add", `${innerIp}/30`, "dev", `${veth}n`]);
    inside(["link", "set", `${veth}n`, "up"]);
    inside(["link", "set", "lo", "up"]);
  } catch (err) {
    remove();
    throw err;
  }
  return {
    name,
    hostIp,
    innerIp,
    exec: (cmd, args) => [ipBin, ["netns", "exec", name, cmd, ...args]],
    cut: () => void ip(ipBin, ["link", "set", `${veth}h`, "down"]),
    heal: () => void ip(ipBin, ["link", "set", `${veth}h`, "up"]),
    remove,
  };
}
