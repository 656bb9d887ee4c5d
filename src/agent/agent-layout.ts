/**
 * The paths of an agent's data dir (listed in src/agent/README.md,
 * "Data directory"): an instance's app, state, record and data, a pet's volume.
 */

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type DesiredInstance, SAFE_INSTANCE_ID } from "../model/protocol.ts";

/** As many volumes as a heartbeat takes (api/schemas.ts). */
const MAX_VOLUMES = 10_000;

export class AgentLayout {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  instanceDir(id: string): string {
    return join(this.root, "instances", id);
  }

  appDir(id: string): string {
    return join(this.instanceDir(id), "app");
  }

  /**
   * Its config (config-center/instance-files.ts): root's, beside the app dir and
   * never in it. The app dir is the instance's own, so a link it put there would
   * send the agent's writes (and removals) anywhere on the machine.
   */
  configDir(id: string): string {
    return join(this.instanceDir(id), "config");
  }

  stateDir(id: string): string {
    return join(this.instanceDir(id), "state");
  }

  /** A cattle instance's HERD_DATA_DIR (a run's exit code is written there too). */
  cattleDataDir(id: string): string {
    return join(this.instanceDir(id), "data");
  }

  /** A pet's HERD_DATA_DIR: kept across its restarts and its removal, until its app is destroyed. */
  volumeDir(id: string): string {
    return join(this.root, "volumes", id);
  }

  /** The pet volumes on disk, by instance id (none before the first pet; anything else there is not herd's). */
  async volumes(): Promise<string[]> {
    try {
      const names = await readdir(join(this.root, "volumes"));
      return names.filter((n) => SAFE_INSTANCE_ID.test(n)).slice(0, MAX_VOLUMES);
    } catch {
      return [];
    }
  }

  dataDir(d: Pick<DesiredInstance, "id" | "mode">): string {
    return d.mode === "pet" ? this.volumeDir(d.id) : this.cattleDataDir(d.id);
  }

  recordFile(id: string): string {
    return join(this.instanceDir(id), "instance.json");
  }

  /** The DesiredInstance last started here, if its record is readable. */
  readRecord(id: string): Promise<DesiredInstance | undefined> {
    return readJson<DesiredInstance>(this.recordFile(id));
  }
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** herd's version, from its package.json. */
export async function readAgentVersion(): Promise<string> {
  const pkg = await readJson<{ version?: string }>(new URL("../../package.json", import.meta.url).pathname);
  return pkg?.version ?? "unknown";
}
