/**
 * `herd down`: stops the platform of a data dir, also when its `herd up` is
 * gone (killed, crashed, or stopped with --keep-apps):
 *
 *   <data>/server-process.json  herd up, if it still runs ─► SIGTERM, wait (it stops what it owns)
 *   <data>/gateway/process.json the gateway               ─► SIGTERM (drains), SIGKILL after a while
 *   <data>/agent/driver/*.json  the app instances         ─► the process driver stops each (10 s grace)
 *   <data>/docker.json          herd up --docker's engine ─► the docker driver stops each container, then
 *                                                            herd's own engine stops (an engine of the machine's stays)
 *
 * Instances stopped here are recorded as stopped, not crashed: the next
 * `herd up` starts them again, as after Ctrl-C.
 */

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stopRunning } from "../agent/driver.ts";
import { ProcessDriver } from "../agent/process-driver.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { recordFile, runningGateway } from "./platform-gateway.ts";
import { isRunning, type ProcessRecord, readRecord, removeRecord, stopProcess } from "./process-record.ts";
import { DOCKER_RECORD, UP_RECORD, type UpOptions } from "./up.ts";

/** What `herd down` stopped. */
export interface DownResult {
  up: boolean;
  gateway: boolean;
  instances: number;
  /** herd's own Docker engine (herd up --docker) was running. */
  engine: boolean;
}

/** Stops everything recorded under `dataDir`; safe to run when nothing runs. */
export async function stopPlatform(dataDir: string): Promise<DownResult> {
  const logger = createLogger("herd");
  const result: DownResult = { up: false, gateway: false, instances: 0, engine: false };
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
      result.instances = await stopRunning(driver, await driver.recover(), 10_000, logger);
      // The driver made herd's cgroups again as it started (detectCgroups): nothing runs in them now.
      await driver.releaseCgroups();
    } finally {
      driver.close();
    }
  }
  const containers = await stopContainers(dataDir, logger);
  result.instances += containers.instances;
  result.engine = containers.engine;
  return result;
}

/** The containers of `herd up --docker` or `--docker-socket`, then herd's own engine: what was running. */
async function stopContainers(
  dataDir: string,
  logger: Logger,
): Promise<{ instances: number; engine: boolean }> {
  const file = join(dataDir, DOCKER_RECORD);
  let docker: UpOptions["docker"];
  try {
    docker = JSON.parse(readFileSync(file, "utf8")) as UpOptions["docker"];
  } catch {
    return { instances: 0, engine: false };
  }
  if (docker === undefined) return { instances: 0, engine: false };
  const { connectDocker } = await import("../agent/docker-driver.ts");
  const { DockerApi } = await import("../agent/docker-api.ts");
  const socket = "dockerd" in docker ? join(docker.dockerd, "docker.sock") : docker.socket;
  let stopped = 0;
  // An engine that is not running holds no running container (its own stopped with it).
  const answers = await new DockerApi(socket).text({ path: "/_ping" }).then(
    () => true,
    () => false,
  );
  if (answers) {
    const driver = await connectDocker({
      socket,
      stateRoot: join(dataDir, "agent", "docker"),
      logger: logger.child("docker"),
    });
    try {
      stopped = await stopRunning(driver, await driver.recover(), 10_000, logger);
    } finally {
      driver.close();
    }
  }
  if (!("dockerd" in docker)) return { instances: stopped, engine: false };
  await (await import("../agent/docker-daemon.ts")).stopDockerd(docker.dockerd);
  return { instances: stopped, engine: answers };
}
