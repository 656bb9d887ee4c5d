/**
 * The agent protocol: one heartbeat round trip carries the node's status up
 * and its desired instances down. Agents are remote: everything here is JSON
 * over HTTP, validated on arrival (schemas in agent-schemas.ts).
 *
 *   POST /api/v1/nodes/:name/heartbeat   body Heartbeat   → HeartbeatReply
 *   GET  /api/v1/slugs/:digest           → the built slug tarball (gzip)
 *   POST /api/v1/logs                    body LogBatch    → 204
 */

import type { InstanceConfig } from "./config.ts";
import type { InstanceRun, NodeIsolation, Resources, Taint } from "./objects.ts";

/** What the agent observes about one instance it runs (or ran). */
export interface InstanceStatus {
  id: string;
  /** The generation the agent last started. */
  generation: number;
  /**
   * starting  — unpacking / spawning
   * up        — process running, not healthy yet
   * healthy   — passed its health check
   * unhealthy — was healthy, then failed `failures` checks in a row (process still running)
   * exited    — process gone on its own (crash or exit)
   * stopped   — process gone because it was told to stop
   * failed    — could not be started (bad slug, port, spawn error); see message
   */
  state: "starting" | "up" | "healthy" | "unhealthy" | "exited" | "stopped" | "failed";
  port?: number;
  pid?: number;
  exitCode?: number | null;
  signal?: string | null;
  /** With exited: the kernel's OOM killer ended it (it went over its memory limit). */
  oomKilled?: boolean;
  /** With exited: the agent stopped it for node memory pressure, and why (agent/eviction.ts). */
  evicted?: string;
  message?: string;
  /** Last log lines, sent with exited/unhealthy/failed. */
  logTail?: string[];
  startedAt?: string;
  /** Resource use, when known (read at most every few seconds; the last reading is repeated between). */
  usage?: InstanceUsage;
  /**
   * Its health checks lately: each different outcome once, identical ones in a
   * row counted (agent/probe-attempts.ts) (at most PROBE_ATTEMPTS_KEPT, oldest first). Sent while it is
   * not healthy and for a little while after, so a deploy can show every
   * attempt as it happens (controllers/probe-log.ts).
   */
  probes?: ProbeAttempt[];
  /** The config version it applied (config.ts), when its app has config. */
  configVersion?: number;
}

/** An instance's resource use as its agent measured it. */
export interface InstanceUsage {
  /** CPU seconds its processes used, in all. */
  cpuSeconds?: number;
  /** CPU cores it used on average between the agent's last two readings. */
  cpuCores?: number;
  /**
   * Of its threads' runnable time between the agent's last two readings, the
   * share they waited for a CPU (0–1; the kernel's schedstat): how starved
   * it is. Drivers that cannot tell (docker) leave it out.
   */
  cpuWaitShare?: number;
  memoryBytes?: number;
}

/**
 * What an instance id may be on a node (a file name under the agent's data
 * dir: instances/<id>, volumes/<id>): checked by the drivers, the heartbeat
 * reply's parser, and the heartbeat's volume list.
 */
export const SAFE_INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** How many probe attempt records a status carries at most. */
export const PROBE_ATTEMPTS_KEPT = 5;

/**
 * One outcome of an instance's health check, and how many checks in a row
 * had it. A different outcome starts a new record; the same one again only
 * counts up.
 */
export interface ProbeAttempt {
  /** The number of its first check since the instance started (1: the first check); the next record's is attempt + count. */
  attempt: number;
  /** Checks in a row with this outcome. */
  count: number;
  /** When the first and the latest of them ran (ISO). */
  firstAt: string;
  lastAt: string;
  ok: boolean;
  /** What happened: "GET /health answered 500", "connect to port 20001: connect ECONNREFUSED 127.0.0.1:20001". */
  message: string;
  /** The HTTP status, when the app answered. */
  status?: number;
  /** The start of a failing answer's body. */
  body?: string;
  /** The instance's last log lines when the record began (a failing one only). */
  logTail?: string[];
}

/**
 * What the machine itself is doing, read from /proc and the data dir's
 * filesystem at most every few seconds. Every part is optional: an agent
 * that cannot read one leaves it out.
 */
export interface NodeStats {
  /** CPU seconds since boot summed over all cores, by mode (user, nice, system, idle, iowait, irq, softirq, steal). */
  cpuSeconds?: Record<string, number>;
  memory?: { totalBytes: number; availableBytes: number };
  /** The filesystem holding the agent's data dir (slugs, instances, pet volumes). */
  disk?: { totalBytes: number; freeBytes: number };
  /** Bytes through every interface but loopback since boot. */
  network?: { receiveBytes: number; transmitBytes: number };
  /** CPU cores busy (every mode but idle, iowait and steal) on average between the agent's last two readings. */
  cpuBusyCores?: number;
}

export interface Heartbeat {
  address: string;
  labels: Record<string, string>;
  capacity: Resources;
  /** Capacity minus the system reserve: what instances may use (absent: all of it). */
  allocatable?: Resources;
  /** How far CPU requests may exceed allocatable CPU (`herd agent --cpu-overcommit`; absent: 1). */
  cpuOvercommit?: number;
  taints?: Taint[];
  agentVersion: string;
  isolation: NodeIsolation;
  instances: InstanceStatus[];
  /** The node's own CPU, memory, disk and network (absent from older agents). */
  stats?: NodeStats;
  /** Where the agent serves its own metrics (`herd agent --metrics-port`), for the control plane to scrape. */
  metricsUrl?: string;
  /** Digests of the slugs the node holds (absent from older agents): the scheduler prefers it for them. */
  slugs?: string[];
  /** The pet volumes on the node's disk (absent from older agents): those of no app any more are named back in `discardVolumes`. */
  volumes?: string[];
  /** Runtime drivers the agent has besides process (e.g. docker): services that ask for one go only there. */
  drivers?: string[];
  /** What isolation each of those drivers gives (`isolation` is the process driver's). */
  driverIsolation?: Record<string, NodeIsolation>;
  /** Where its instances' ports come from (`herd agent --ports`; absent from older agents: 20000-29999). */
  instancePorts?: PortRange;
  /** The `peers.version` the agent applies now (absent: none yet): the reply carries `peers` only when it differs. */
  peersVersion?: string;
}

/** A range of TCP ports, both ends included. */
export interface PortRange {
  min: number;
  max: number;
}

/** A node as `Peers` gives it. */
export interface PeerNode {
  address: string;
  ports: PortRange;
  /** Its agent's metrics port, when the agent serves them (they name every tenant's instances there). */
  metricsPort?: number;
}

/**
 * What an agent needs to keep its instances from other tenants' instances on
 * other nodes (agent/firewall.ts): instances listen on every interface so
 * that every node's gateway reaches them, and the receiving node cannot tell
 * a gateway from an instance (both come from the sending node's address), so
 * the sending node closes the other nodes' instance port ranges to its
 * instances but for their own tenant's endpoints there.
 */
export interface Peers {
  /** Changes whenever the rest does: the agent sends it back as `peersVersion`. */
  version: string;
  /**
   * False while one tenant alone has services in the cluster: no other
   * tenant's instance to keep anyone from, and no lists to send (a big
   * single-tenant cluster would otherwise carry every instance to every node).
   */
  closed: boolean;
  /** The nodes (the receiver's own too): their address, instance port range and agent metrics port (closed). */
  nodes: PeerNode[];
  /** For each tenant of the instances listed: its instances' endpoints ("address:port", open to its uid). */
  tenants: Record<string, string[]>;
  /**
   * The platform's endpoints elsewhere, "host:port" (api/platform-endpoints.ts:
   * the store's etcd members, the gateways' metrics): closed to every instance,
   * also while `closed` is false.
   */
  platform: string[];
}

/** One instance the node should have, and what to do with it. */
export interface DesiredInstance {
  id: string;
  app: string;
  service: string;
  tenant: string;
  release: number;
  mode: "cattle" | "pet";
  generation: number;
  /** run: keep it running (start it if absent or at an older generation); stop: stop it, keep nothing but pet data. */
  action: "run" | "stop";
  /** With stop, for a pet: its data directory goes too (its app is being destroyed). */
  discardData?: boolean;
  run: InstanceRun;
  /**
   * The values of `run.secrets` (env variable → value), for action run only:
   * the agent puts them in the process's env and never on disk (not in
   * instance.json). Absent when the instance has no secrets.
   */
  secretEnv?: Record<string, string>;
  /** Why `secretEnv` is missing although `run.secrets` names some (e.g. the secret was unset): the agent fails the start with it. */
  secretError?: string;
  /** Its app's config (src/config-center/): the version it should have, and the content when the agent is behind. */
  config?: InstanceConfig;
}

export interface HeartbeatReply {
  /** Every instance this node should know about. An instance the agent has that is not listed is stopped and removed. */
  instances: DesiredInstance[];
  /** Milliseconds between heartbeats the server expects. */
  intervalMs: number;
  /**
   * Set in a big cluster: heartbeat no more often than this (the control
   * plane spreads its nodes' heartbeats; controllers/node-controller.ts). New
   * instances still come at once, through the wait long poll.
   */
  minIntervalMs?: number;
  /**
   * Each tenant's write-only ingest token, `{tenant: secret}`, for the tenants
   * of the instances listed: the agent gives each instance OTEL_* defaults
   * pointing at the control plane (as the agent reaches it) with its own
   * tenant's token. Absent for a tenant: no trace defaults. (It replaced
   * `traces.ingestToken`, one token for every tenant: an older agent finds no
   * `traces` and gives no defaults, rather than one tenant's token to all.)
   */
  ingestTokens?: Record<string, string>;
  /**
   * Each tenant's services as `app/service`, for the tenants of the instances
   * listed: the agent gives each instance a HERD_SERVICE_<APP>_<SERVICE>_URL
   * per service of its tenant (docs/service-discovery.md).
   */
  services?: Record<string, string[]>;
  /**
   * Pet volumes of the heartbeat's `volumes` whose app is gone (destroyed
   * while the pet ran elsewhere, or before a destroy removed pet data): the
   * agent removes each that no instance of this reply or of its own uses
   * (controllers/orphan-volumes.ts).
   */
  discardVolumes?: string[];
  /** The other nodes' instance ports, when they differ from the heartbeat's `peersVersion`. */
  peers?: Peers;
}

export interface LogLine {
  instance: string;
  /** ISO time the agent read it. */
  time: string;
  stream: "stdout" | "stderr";
  line: string;
}

export interface LogBatch {
  node: string;
  lines: LogLine[];
}
