/** What the agent knows about each instance on its node, and the status a heartbeat carries for it. */

import type { DesiredInstance, InstanceStatus } from "../model/protocol.ts";
import { InstanceLogs } from "./instance-logs.ts";
import { ProbeAttempts } from "./probe-attempts.ts";

export type State = InstanceStatus["state"];

export const RUNNING: ReadonlySet<State> = new Set(["up", "healthy", "unhealthy"]);

/** What the agent knows about one instance. */
export interface Managed {
  id: string;
  /** The desired instance last started (absent for an adopted one whose instance.json is gone). */
  desired?: DesiredInstance;
  generation: number;
  state: State;
  port?: number;
  /** Where its health probes go when not 127.0.0.1 (a container's bridge address; driver.ts probeHost). */
  probeHost?: string;
  pid?: number;
  startedAt?: string;
  exitCode?: number | null;
  signal?: string | null;
  /** The kernel's OOM killer ended it. */
  oomKilled?: boolean;
  /** The agent stopped it for node memory pressure: why (eviction.ts). */
  evicted?: string;
  message?: string;
  logTail?: string[];
  /** Probes in a row that failed. */
  failures: number;
  /** Its recent probe outcomes, for the status (probe-attempts.ts). */
  probes: ProbeAttempts;
  /** Bumped to cancel the probe loop of an earlier start. */
  probeRun: number;
  probeTimer?: NodeJS.Timeout;
  log: InstanceLogs;
  /** The config version written to its dir (config center). */
  configVersion?: number;
}

/** A Managed with no failures or probes yet, its log followed in stateDir; `more` sets the rest. */
export function newManaged(
  id: string,
  generation: number,
  state: State,
  stateDir: string,
  more: Partial<Managed> = {},
): Managed {
  return {
    id,
    generation,
    state,
    failures: 0,
    probeRun: 0,
    probes: new ProbeAttempts(),
    log: new InstanceLogs(stateDir),
    ...more,
  };
}

/** The status a heartbeat carries for one instance. */
export function toStatus(inst: Managed): InstanceStatus {
  const status: InstanceStatus = { id: inst.id, generation: inst.generation, state: inst.state };
  if (inst.port !== undefined && inst.state !== "exited") status.port = inst.port;
  // A container that is not running has no pid (the engine says 0), and the API takes none below 1.
  if (inst.pid !== undefined && inst.pid > 0) status.pid = inst.pid;
  if (inst.startedAt) status.startedAt = inst.startedAt;
  if (inst.message) status.message = inst.message;
  if (inst.state === "exited") {
    status.exitCode = inst.exitCode ?? null;
    status.signal = inst.signal ?? null;
    if (inst.oomKilled) status.oomKilled = true;
    if (inst.evicted) status.evicted = inst.evicted;
  }
  if (inst.logTail && (inst.state === "exited" || inst.state === "unhealthy" || inst.state === "failed")) {
    status.logTail = inst.logTail;
  }
  const probes = RUNNING.has(inst.state) ? inst.probes.recent(Date.now()) : undefined;
  if (probes) status.probes = probes;
  if (inst.configVersion !== undefined) status.configVersion = inst.configVersion;
  return status;
}
