/**
 * What the agent's drivers close to instances (their firewalls,
 * firewall.ts and docker-firewall.ts): the instance port range, this
 * agent's own endpoints (the API servers, its metrics), and the heartbeat
 * reply's `peers` (controllers/peers.ts: the other nodes' ports, the
 * tenants' endpoints there, the platform's endpoints).
 *
 *   reply.peers ─► apply ─┬─► <agent data>/peers.json (the next agent applies them before its first heartbeat)
 *                         └─► the drivers, host names resolved here (peer-names.ts)
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../common/log.ts";
import { writePrivateFile } from "../common/private-file.ts";
import type { Peers } from "../model/protocol.ts";
import type { NetworkPolicy } from "./driver.ts";
import { parsePeers } from "./heartbeat-reply.ts";
import { PeerNames } from "./peer-names.ts";

const file = (dataDir: string) => join(dataDir, "peers.json");

/** The peers an earlier run kept (undefined when none or unreadable: the first heartbeat brings them). */
function readPeers(dataDir: string): Peers | undefined {
  try {
    return parsePeers(JSON.parse(readFileSync(file(dataDir), "utf8")));
  } catch {
    return undefined;
  }
}

/** The policy, kept and handed to the drivers whenever it or a name in it changes. */
export class InstanceNetworkPolicy {
  #policy: NetworkPolicy;
  readonly #dataDir: string;
  readonly #log: Logger;
  readonly #driver: { setNetworkPolicy?(policy: NetworkPolicy): void };
  readonly #names: PeerNames;
  readonly #named: { host: string; port: number }[];

  /** Starts with the peers peers.json kept, and hands the policy to `driver` at once. */
  constructor(options: {
    dataDir: string;
    ports: NetworkPolicy["ports"];
    protect: NetworkPolicy["protect"];
    /** The agent's own endpoints given by host name (an API server): closed at the addresses it resolves to too. */
    named?: { host: string; port: number }[];
    driver: { setNetworkPolicy?(policy: NetworkPolicy): void };
    log: Logger;
  }) {
    this.#named = options.named ?? [];
    this.#dataDir = options.dataDir;
    this.#log = options.log;
    this.#driver = options.driver;
    this.#names = new PeerNames(() => this.#push());
    const peers = readPeers(options.dataDir);
    this.#policy = { ports: options.ports, protect: options.protect, ...(peers ? { peers } : {}) };
    this.#push();
  }

  /** The version of the peers applied, sent back in every heartbeat (`peersVersion`). */
  get peersVersion(): string | undefined {
    return this.#policy.peers?.version;
  }

  /** New peers from a heartbeat reply: to disk for the next start (a failure is logged), and to the drivers. */
  apply(peers: Peers): void {
    this.#policy = { ...this.#policy, peers };
    try {
      writePrivateFile(file(this.#dataDir), JSON.stringify(peers));
    } catch (err) {
      this.#log.warn("cannot keep the peers for the next start", { err });
    }
    this.#push();
  }

  stop(): void {
    this.#names.stop();
  }

  /** The policy to the drivers, with the host names in it resolved as far as known. */
  #push(): void {
    const policy = this.#policy;
    const named = this.#named.flatMap(
      ({ host, port }) => this.#names.addresses(host)?.map((address) => ({ address, port })) ?? [],
    );
    this.#driver.setNetworkPolicy?.({
      ...policy,
      protect: [...policy.protect, ...named],
      ...(policy.peers ? { peers: this.#names.resolve(policy.peers) } : {}),
    });
  }
}
