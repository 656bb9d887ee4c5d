/** What a node agent is told at start (`herd agent` flags, herd up) and its defaults. */

import { availableParallelism, totalmem } from "node:os";
import type { Logger } from "../common/log.ts";
import type { Resources, Taint } from "../model/objects.ts";
import type { RuntimeDriver } from "./driver.ts";
import type { PortRange } from "./ports.ts";

/** How to reach the control plane and where to keep things. */
export interface AgentOptions {
  /**
   * Control-plane base URL, e.g. http://127.0.0.1:7000, or several of one
   * control plane, comma-separated: the agent moves to a live one, and to the
   * leader when a follower names it (common/server-list.ts).
   */
  server: string;
  /** This node's credential (agent/join.ts), or another token that may act as it. */
  token: string;
  /** The CA certificate (PEM) an https server's certificate must be signed by (`herd agent --ca`). */
  ca?: string;
  /** This node's name. */
  name: string;
  dataDir: string;
  /** Address other components use to reach instances here; default 127.0.0.1. */
  address?: string;
  labels?: Record<string, string>;
  /** Keeps instances off this node unless they tolerate it. */
  taints?: Taint[];
  /** What the machine has; default: its cores and memory. */
  capacity?: Resources;
  /** Kept back for the system and herd itself; default DEFAULT_RESERVE. */
  reserve?: Resources;
  /** How far CPU requests placed here may exceed allocatable CPU; default DEFAULT_CPU_OVERCOMMIT. */
  cpuOvercommit?: number;
  /**
   * Bytes of available memory below which the agent evicts a burstable
   * instance over its request (eviction.ts); default DEFAULT_EVICTION_MEMORY.
   */
  evictionMemory?: number;
  /** Default: a ProcessDriver keeping its records in `<dataDir>/driver`. */
  driver?: RuntimeDriver;
  /**
   * A Docker engine's API socket (`herd agent --docker-socket`): the node also
   * has the docker driver (docker-driver.ts, records in `<dataDir>/docker`), and
   * services with `image:` or `runtime: docker` may be placed here.
   */
  dockerSocket?: string;
  /** `--dockerd DIR`: the agent's own engine under DIR (containers.ts), started unless one answers there. */
  dockerd?: string;
  /** `--registry HOST:PORT`: the local registry builds are pushed to and pulled from by digest. */
  registry?: string;
  /** `--serve-registry HOST:PORT`: this agent runs the registry (data in `<dataDir>/registry`) and uses it. */
  serveRegistry?: string;
  logger?: Logger;
  /** Time between heartbeats when nothing changes; default 1000. */
  heartbeatMs?: number;
  /** How often node stats and instance usage are read (heartbeats in between repeat them); default 900 (each one-second heartbeat reads afresh). */
  statsMs?: number;
  /** Where instance ports come from; default DEFAULT_PORT_RANGE. */
  ports?: PortRange;
  /**
   * Serve this agent's metrics (agent-metrics.ts, with the process's own) at
   * `http://metricsHost:metricsPort/metrics` and name the URL in heartbeats,
   * so the control plane scrapes it and lists it for Prometheus (0: a free
   * port). Absent: no listener, and no process metrics (herd up, where the
   * agent shares the API server's process and /metrics).
   */
  metricsPort?: number;
  /** Default 127.0.0.1. */
  metricsHost?: string;
  /** When metricsPort is taken, take a free port (and warn) instead of failing. */
  metricsPortOrFree?: boolean;
  /**
   * The node's gateway's `internal.json` (its internal listener's URL and key,
   * gateway/internal-listener.ts): instances get HERD_SERVICE_<APP>_<SERVICE>_URL
   * for their tenant's services while it exists. Absent: no such env.
   */
  internalGateway?: string;
}

/** What an agent keeps back for the system by default: a tenth of a core and 256 MiB. */
export const DEFAULT_RESERVE: Resources = { cpu: 0.1, memory: 256 * 1024 * 1024 };

/** The node's capacity: as given, else this machine's cores and memory. */
export function capacityOf(options: Pick<AgentOptions, "capacity">): Resources {
  return options.capacity ?? { cpu: availableParallelism(), memory: totalmem() };
}

/** Capacity minus the reserve: what instances may be given. */
export function allocatableOf(options: Pick<AgentOptions, "capacity" | "reserve">): Resources {
  const capacity = capacityOf(options);
  const reserve = options.reserve ?? DEFAULT_RESERVE;
  return {
    cpu: Math.max(0, capacity.cpu - reserve.cpu),
    memory: Math.max(0, capacity.memory - reserve.memory),
  };
}

/**
 * CPU requests a node takes by default: twice its allocatable cores. CPU is
 * compressible (a request is a weight under contention, docs/resources.md),
 * and most small apps are idle most of the time; memory is never overcommitted.
 */
export const DEFAULT_CPU_OVERCOMMIT = 2;
