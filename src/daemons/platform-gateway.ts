/**
 * `herd up`'s gateway: a `herd gateway` in its own session that outlives the
 * `herd up` that started it, so traffic keeps flowing while the control plane
 * is away (crashed, killed, being upgraded). It is found again through its
 * record, `<data>/gateway/process.json` (pid and start time, as the process
 * driver records instances):
 *
 *   record ─► not running ─────────────────────────────► start one (SO_REUSEPORT)
 *          └► running, same fingerprint ─────────────────► adopt it (same pid, nothing restarts)
 *          └► running, other fingerprint (code, flags, ─► hand off: start the new one on the same
 *             control plane URL, token)                     ports beside it, then SIGTERM the old
 *                                                           one, which drains (gateway/drain.ts)
 *
 * The fingerprint covers what the running gateway cannot change by itself: its
 * code (every .ts file under src/ and the Node version), its flags, the
 * control plane URL it follows and the token it uses. So a newer checkout or a
 * changed flag is a handoff, and a `herd up` after a crash adopts.
 */

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { GATEWAY_MAIN, type GatewayChildOptions, spawnGatewayChild } from "../gateway/cluster-child.ts";
import {
  isRunning,
  type ProcessRecord,
  readRecord,
  recordOf,
  removeRecord,
  stopProcess,
  writeRecord,
} from "./process-record.ts";

/** The record's file, in the gateway's data dir. */
export const GATEWAY_RECORD = "process.json";

/** How long a stopped gateway may drain (finish requests in flight) before it is cut off. */
export const GATEWAY_DRAIN_MS = 10_000;

/** After the drain: how long more before SIGKILL. */
const KILL_AFTER_MS = GATEWAY_DRAIN_MS + 10_000;

/** What the record holds besides the pid and start time. */
export interface GatewayRecord extends ProcessRecord {
  port: number;
  url: string;
  httpsPort?: number;
  httpsUrl?: string;
  metricsUrl?: string;
  fingerprint: string;
  startedAt: string;
}

/** How herd up wants its gateway. */
export type PlatformGatewayOptions = Omit<GatewayChildOptions, "detached" | "reusePort"> & { logger: Logger };

/** The gateway herd up serves through, started or adopted. */
export interface PlatformGateway {
  record: GatewayRecord;
  /** How it came to be: started now, adopted as it was, or started in place of an older one. */
  how: "started" | "adopted" | "handed-off";
  /** SIGTERM (it drains), SIGKILL if it is still there long after; removes the record. */
  stop(): Promise<void>;
}

/** The record file of the gateway whose data dir is `gatewayDataDir`. */
export const recordFile = (gatewayDataDir: string): string => join(gatewayDataDir, GATEWAY_RECORD);

/** The recorded gateway, if it is still running. */
export function runningGateway(gatewayDataDir: string): GatewayRecord | undefined {
  const record = readRecord<GatewayRecord>(recordFile(gatewayDataDir));
  return record && isRunning(record) ? record : undefined;
}

/** Adopts the recorded gateway, hands off from it, or starts one (see the top of this file). */
export async function ensurePlatformGateway(options: PlatformGatewayOptions): Promise<PlatformGateway> {
  const { logger, ...child } = options;
  const file = recordFile(child.dataDir);
  mkdirSync(child.dataDir, { recursive: true });
  const fingerprint = fingerprintOf(child);
  const found = runningGateway(child.dataDir);
  const handle = (record: GatewayRecord, how: PlatformGateway["how"]): PlatformGateway => ({
    record,
    how,
    stop: async () => {
      await stopProcess(record, KILL_AFTER_MS);
      removeRecord(file, record);
    },
  });
  if (found !== undefined && found.fingerprint === fingerprint) {
    logger.info("adopted the running gateway", { pid: found.pid, url: found.url });
    return handle(found, "adopted");
  }
  if (found === undefined) return handle(await start(child, fingerprint, file), "started");
  // The same ports as the old one when the flags leave them open (port 0), so its clients keep their address.
  const successor = {
    ...child,
    port: child.port === 0 ? found.port : child.port,
    https: child.https && {
      ...child.https,
      port: child.https.port === 0 ? (found.httpsPort ?? 0) : child.https.port,
    },
  };
  let record: GatewayRecord;
  try {
    record = await start(successor, fingerprint, file);
  } catch (err) {
    // An old gateway that did not bind with SO_REUSEPORT holds the port alone: stop it first (a gap).
    if (!(err instanceof HerdError && /in use/.test(err.message))) throw err;
    logger.warn("the running gateway does not share its port; stopping it before starting the new one", {
      pid: found.pid,
    });
    await stopProcess(found, KILL_AFTER_MS);
    return handle(await start(successor, fingerprint, file), "started");
  }
  logger.info("handing off from the running gateway; it drains", { old: found.pid, new: record.pid });
  // Not awaited: herd up serves meanwhile; the old one finishes its requests and exits by itself.
  void stopProcess(found, KILL_AFTER_MS);
  return handle(record, "handed-off");
}

async function start(
  options: GatewayChildOptions,
  fingerprint: string,
  file: string,
): Promise<GatewayRecord> {
  const gateway = await spawnGatewayChild({ ...options, detached: true, reusePort: true });
  const record: GatewayRecord = {
    ...recordOf(gateway.pid),
    port: gateway.port,
    url: gateway.url,
    ...(gateway.httpsPort !== undefined ? { httpsPort: gateway.httpsPort, httpsUrl: gateway.httpsUrl } : {}),
    ...(gateway.metricsUrl !== undefined ? { metricsUrl: gateway.metricsUrl } : {}),
    fingerprint,
    startedAt: new Date().toISOString(),
  };
  writeRecord(file, record);
  return record;
}

/** What tells a gateway that can stay from one that must be replaced (see the top of this file). */
export function fingerprintOf(options: GatewayChildOptions): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ ...options, node: process.version, cli: GATEWAY_MAIN }));
  hash.update(codeHash(resolve(dirname(GATEWAY_MAIN), "..")));
  return hash.digest("hex").slice(0, 32);
}

/** A hash of every .ts file under `src` (names and contents), read once per process. */
const codeHashes = new Map<string, string>();
function codeHash(src: string): string {
  const known = codeHashes.get(src);
  if (known !== undefined) return known;
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
        hash.update(path.slice(src.length));
        hash.update(readFileSync(path));
      }
    }
  };
  if (existsSync(src)) walk(src);
  const digest = hash.digest("hex");
  codeHashes.set(src, digest);
  return digest;
}
