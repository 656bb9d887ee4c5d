/**
 * `<agent data>/peers.json`: the last heartbeat reply's `peers`
 * (controllers/peers.ts), kept so that a restarted agent closes the other
 * nodes' ports and the platform's endpoints before its first heartbeat.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../common/log.ts";
import { writePrivateFile } from "../common/private-file.ts";
import type { Peers } from "../model/protocol.ts";
import { parsePeers } from "./heartbeat-reply.ts";

const file = (dataDir: string) => join(dataDir, "peers.json");

/** The peers an earlier run kept (`{}` when none or unreadable: the first heartbeat brings them). */
export function readPeers(dataDir: string): { peers?: Peers } {
  try {
    return { peers: parsePeers(JSON.parse(readFileSync(file(dataDir), "utf8"))) };
  } catch {
    return {};
  }
}

/** Keeps `peers` for the next start (0600, written beside and renamed); a failure is logged, not thrown. */
export function keepPeers(dataDir: string, peers: Peers, log: Logger): void {
  try {
    writePrivateFile(file(dataDir), JSON.stringify(peers));
  } catch (err) {
    log.warn("cannot keep the peers for the next start", { err });
  }
}
