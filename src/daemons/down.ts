/**
 * `herd down`: stops the platform of a data dir, also when its `herd up` is
 * gone (killed, crashed, or stopped with --keep-apps):
 *
 *   <data>/server-process.json  herd up, if it still runs ─► SIGTERM, wait (it stops what it owns)
 *   <data>/gateway/process.json the gateway               ─► SIGTERM (drains), SIGKILL after a while
 *   <data>/agent/driver/*.json  the app instances         ─► the process driver stops each (10 s grace)
 *
 * Instances stopped here are recorded as stopped, not crashed: the next
 * `herd up` starts them again, as after Ctrl-C.
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { ProcessDriver } from "../agent/process-driver.ts";
import { createLogger } from "../common/log.ts";
import { recordFile, runningGateway } from "./platform-gateway.ts";
import { isRunning, type ProcessRecord, readRecord, removeRecord, stopProcess } from "./process-record.ts";
import { UP_RECORD } from "./up.ts";

/** What `herd down` stopped. */
export interface DownResult {
  up: boolean;
  gateway: boolean;
  instances: number;
}

/** Stops everything recorded under `dataDir`; safe to run when nothing runs. */
export async function stopPlatform(dataDir: string): Promise<DownResult> {
  const logger = createLogger("herd");
  const result: DownResult = { up: false, gateway: false, instances: 0 };
  const up = readRecord<ProcessRecord>(join(dataDir, UP_RECORD));
  if (up !== undefined && isRunning(up)) {
    // herd up stops its gateway and apps itself (or leaves them with --keep-apps: then they are ours below).
    await stopProcess(up, 60_000);
    result.up = true;
  }
  if (up !== undefined) removeRecord(join(dataDir, UP_RECORD), up);
  const gatewayDir = join(dataDir, "gateway");
  const gateway = runningGateway(gatewayDir);
  if (gateway !== undefined) {
    await stopProcess(gateway, 20_000);
    result.gateway = true;
  }
  const stale = readRecord<ProcessRecord>(recordFile(gatewayDir));
  if (stale !== undefined && !isRunning(stale)) removeRecord(recordFile(gatewayDir), stale);
  const stateRoot = join(dataDir, "agent", "driver");
  if (existsSync(stateRoot)) {
    const driver = new ProcessDriver({ stateRoot, logger: logger.child("driver") });
    try {
      const running = (await driver.recover()).filter((p) => p.state === "running");
      await Promise.all(running.map((p) => driver.stop(p.id, 10_000)));
      result.instances = running.length;
      // The driver made herd's cgroups again as it started (detectCgroups): nothing runs in them now.
      await driver.releaseCgroups();
    } finally {
      driver.close();
    }
  }
  return result;
}
