/**
 * The engine network herd's containers join: one bridge (its own network
 * namespace per container, a veth on the bridge), created on first need.
 * An instance's port is published on the host at the same number, so
 * health probes, the gateway and other nodes reach it at the node's address
 * as they reach a process instance; the app listens on every interface of
 * its namespace.
 *
 * The engine forbids traffic between containers of the bridge (`enable_icc`
 * false) where it manages iptables; an engine started with
 * `--iptables=false` (the tests' private one) cannot enforce that, and
 * forwards published ports with its userland proxy.
 */

import { spawnSync } from "node:child_process";
import { HerdError } from "../common/errors.ts";
import type { DockerApi } from "./docker-api.ts";
import { removeContainerFirewalls } from "./docker-firewall.ts";

/** The network's name on the engine. */
export const HERD_NETWORK = "herd";
/** The label that marks networks herd made (and must clean up with a private engine). */
const NETWORK_LABEL = "herd.network";

interface NetworkInspect {
  Id: string;
  Options?: Record<string, string>;
  IPAM?: { Config?: { Gateway?: string }[] | null };
}

/** The herd network on an engine: its name, and the bridge's address on the host (containers' gateway). */
export interface HerdNetwork {
  name: string;
  gateway: string;
  /** The bridge device on the host. */
  bridge: string;
}

/** Makes sure the engine has the herd bridge network and returns it. Safe to call concurrently. */
export async function ensureNetwork(api: DockerApi): Promise<HerdNetwork> {
  const found = await inspectNetwork(api);
  if (found) return found;
  try {
    await api.call({
      method: "POST",
      path: "/networks/create",
      body: {
        Name: HERD_NETWORK,
        Driver: "bridge",
        CheckDuplicate: true,
        Labels: { [NETWORK_LABEL]: "1" },
        Options: { "com.docker.network.bridge.enable_icc": "false" },
      },
    });
  } catch (err) {
    // Another agent on the same engine made it first.
    if (!(err instanceof HerdError && err.code === "conflict")) throw err;
  }
  const made = await inspectNetwork(api);
  if (!made) throw new HerdError("unavailable", `the engine lost the ${HERD_NETWORK} network it just made`);
  return made;
}

async function inspectNetwork(api: DockerApi): Promise<HerdNetwork | undefined> {
  let n: NetworkInspect;
  try {
    n = await api.call<NetworkInspect>({ path: `/networks/${HERD_NETWORK}` });
  } catch (err) {
    if (err instanceof HerdError && err.code === "not_found") return undefined;
    throw err;
  }
  const gateway = n.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
  if (!gateway) throw new HerdError("unavailable", `the ${HERD_NETWORK} network has no gateway address`);
  return { name: HERD_NETWORK, gateway, bridge: bridgeName(n) };
}

/** The host's bridge devices of herd's networks on this engine (they outlive the engine: removeBridges). */
export async function herdBridges(api: DockerApi): Promise<string[]> {
  const networks = await api.call<NetworkInspect[]>({
    path: "/networks",
    query: { filters: JSON.stringify({ label: [NETWORK_LABEL] }) },
  });
  return networks.map(bridgeName);
}

function bridgeName(n: NetworkInspect): string {
  return n.Options?.["com.docker.network.bridge.name"] ?? `br-${n.Id.slice(0, 12)}`;
}

/** Deletes bridge devices an engine left on the host when it stopped, and the container firewalls on them. */
export function removeBridges(names: string[]): void {
  removeContainerFirewalls(names);
  for (const name of names) spawnSync("ip", ["link", "delete", name], { stdio: "ignore" });
}
