/**
 * RuntimeDriver: how an agent runs instances. `process` (process-driver.ts,
 * the embedded default, cgroup limits when root) is the first; `docker` and a
 * Kubernetes backend come later. Every driver passes driver.case.test.ts.
 *
 * A driver owns the processes, not the policy: it starts what it is told,
 * reports exits, and after an agent restart finds what it left running.
 */

import type { Logger } from "../common/log.ts";
import type { Resources } from "../model/objects.ts";
import type { InstanceUsage, Peers } from "../model/protocol.ts";
import type { ProtectedEndpoint } from "./firewall.ts";

/**
 * What a driver measures of an instance (the agent works out its cores from
 * two readings). `readAt` (performance.now(), ms): when a driver that does
 * not read every time (docker's stats cost the daemon work) read what it
 * repeats; absent: read now.
 */
export type DriverUsage = Omit<InstanceUsage, "cpuCores"> & { readAt?: number };

/**
 * Every driver appends an instance's stdout to this file in
 * `StartSpec.stateDir`, and its stderr to INSTANCE_ERR_LOG beside it (each
 * rotated by copy-and-truncate to `<file>.1`); the agent follows both to ship
 * logs tagged with their stream. Two files keep the streams apart without a
 * pipe, so an instance keeps writing while no agent runs; the price is that
 * the order between an out line and an err line written in the same moment is
 * not kept.
 */
export const INSTANCE_LOG = "output.log";

/** The instance's stderr, beside INSTANCE_LOG (instances started before it existed wrote both there). */
export const INSTANCE_ERR_LOG = "stderr.log";

/** Everything a driver needs to start one instance. */
export interface StartSpec {
  id: string;
  generation: number;
  /** The unpacked release (the working directory). */
  dir: string;
  /** Directory for logs and driver bookkeeping of this instance. */
  stateDir: string;
  /** Shell command line, run with /bin/sh -c; empty with `image`: the image's own command. */
  command: string;
  /** A container image to run (drivers that run images: docker); absent: the command runs in `dir`. */
  image?: string;
  /** The driver it needs when not the default (driver-set.ts): "docker". */
  runtime?: string;
  /** A container runs as its image's own user (root when it names none); absent: as its tenant's uid. */
  imageUser?: boolean;
  /** Full environment (PORT included). */
  env: Record<string, string>;
  port: number;
  resources: Resources;
  /** Its service's criticality: a critical instance weighs more under CPU contention (cgroups.ts); absent: normal. */
  criticality?: "critical" | "normal" | "low";
  /** Its tenant: instances of one tenant share one unprivileged uid where the driver sandboxes; default "default". */
  tenant?: string;
  /** HERD_DATA_DIR on the host, when it has one: owned by the instance's uid and bound into its sandbox. */
  dataDir?: string;
  /** Its config (HERD_CONFIG_FILE, HERD_CONFIG_DIR), when it has one: root's, readable and bound where it runs, never writable. */
  configDir?: string;
  /** The Node installation the app chose (its bin/ is in env PATH): readable and runnable by the instance, never writable. */
  node?: string;
  /**
   * The CPU ceiling (cores) while it starts, when more than its own
   * `resources.cpuLimit` (a start boost: a cold start from zero has requests
   * waiting); `started` brings it down to `resources.cpuLimit` once it is
   * healthy. An instance without a ceiling needs no boost.
   */
  startCpu?: number;
}

export interface InstanceProcess {
  id: string;
  generation: number;
  pid: number;
  port: number;
  startedAt: string;
  /**
   * running; stopped (ended by the driver's stop(), e.g. when `herd up` shut
   * down with its apps); or exited by itself, with its code/signal when known
   * (null for re-adopted processes).
   */
  state: "running" | "stopped" | "exited";
  exitCode?: number | null;
  signal?: string | null;
  /** The kernel's OOM killer ended a process of its cgroup: it went over its memory limit. */
  oomKilled?: boolean;
  /** From start(): the image it runs from the local registry, by digest (`HOST:PORT/herd-build@sha256:…`). */
  image?: string;
  /**
   * Where its health probes go, when not 127.0.0.1: a container's own address on herd's bridge. Its
   * published port on this machine is the engine's proxy, which takes a connection whether or not
   * the app inside listens.
   */
  probeHost?: string;
}

export interface Isolation {
  cgroups: "v1" | "v2" | "none";
  /** Why there are no limits, when cgroups is none. */
  reason?: string;
  /**
   * uid: each tenant's instances run as their own unprivileged uid in a mount
   * namespace (own files only, private /proc and /tmp); none: as the agent's user.
   */
  sandbox?: "uid" | "none";
  /** nftables: instances cannot connect to other tenants' ports nor to the platform's; none: they can. */
  network?: "nftables" | "none";
  /** One line per layer that is not in force, with the reason. */
  missing?: string[];
}

/** What instances must not connect to: the platform's endpoints, and the range other tenants' ports come from. */
export interface NetworkPolicy {
  ports: { min: number; max: number };
  protect: ProtectedEndpoint[];
  /** The other nodes' instance ports and each tenant's endpoints there (heartbeat reply; absent until the first). */
  peers?: Peers;
}

export interface RuntimeDriver {
  readonly name: string;
  /** What isolation this driver gives on this machine. */
  isolation(): Isolation;
  /** Starts an instance. Rejects (HerdError) when it cannot; nothing is left behind then. */
  start(spec: StartSpec): Promise<InstanceProcess>;
  /** Stops it: SIGTERM to its process group, SIGKILL after graceMs. Resolves when gone. Idempotent. */
  stop(id: string, graceMs: number): Promise<void>;
  /** Current state, or undefined if the driver does not know the id. */
  inspect(id: string): Promise<InstanceProcess | undefined>;
  /** Every instance the driver knows (after recover: also the ones left by an earlier agent). */
  list(): Promise<InstanceProcess[]>;
  /** Finds instances an earlier agent run left behind (alive or not) and adopts the live ones. */
  recover(): Promise<InstanceProcess[]>;
  /** Called once per exit of a started or adopted instance that was not stopped through stop(). */
  onExit(listener: (p: InstanceProcess) => void): void;
  /**
   * The last `lines` lines of its output: stdout's, then stderr's (a crash's
   * message is usually the last thing written; with two files the exact
   * interleaving is not known). Each stream gets at least half when both have
   * that many.
   */
  tail(id: string, lines: number): Promise<string[]>;
  /**
   * A running instance passed a health check after its start: its start
   * boost ends (the CPU ceiling comes down to its own `resources.cpuLimit`,
   * cores; undefined: it has none) and a critical instance gets its
   * criticality's CPU weight (it started at its request's: a start that is
   * not serving yet does not outweigh the instances that are). Drivers
   * without limits or weights have nothing to do.
   */
  started?(id: string, cpuLimitCores: number | undefined): void;
  /** Forgets an instance that is gone and removes its bookkeeping (not its dir). */
  remove(id: string): Promise<void>;
  /** Resource use, when the driver can measure it. */
  usage(id: string): Promise<DriverUsage | undefined>;
  /** Stops watching (timers, listeners) and leaves every instance running; a later recover() finds them. */
  close?(): void;
  /** Tells a driver that firewalls instances what to close to them (the agent calls it before recover). */
  setNetworkPolicy?(policy: NetworkPolicy): void;
  /** Weighs all instances together as `cores` busy processes against the machine's other work (cgroups.ts setParentCpuWeight). */
  shareCpu?(cores: number): void;
}

/**
 * Stops those of `processes` that run, each on its own: one that cannot be
 * stopped (its engine answers an error) is logged and holds up none of the
 * others. Returns how many stopped. herd up's stop with its apps and herd down
 * use it, for every driver.
 */
export async function stopRunning(
  driver: Pick<RuntimeDriver, "stop">,
  processes: readonly InstanceProcess[],
  graceMs: number,
  log: Logger,
): Promise<number> {
  const running = processes.filter((p) => p.state === "running");
  const results = await Promise.allSettled(running.map((p) => driver.stop(p.id, graceMs)));
  results.forEach((r, n) => {
    if (r.status === "rejected") log.warn("cannot stop an instance", { id: running[n]?.id, err: r.reason });
  });
  return results.filter((r) => r.status === "fulfilled").length;
}
