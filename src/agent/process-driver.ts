/**
 * The process driver: runs each instance as a detached `/bin/sh -c <command>`
 * in its own session and process group, stdout and stderr appended to two log files,
 * limits from a cgroup it joins before the command runs. Where the machine
 * allows (root), the command runs sandboxed as its tenant's uid (sandbox.ts)
 * behind the node firewall (firewall.ts). Everything it needs
 * to find its instances again lives in one JSON record per instance under
 * stateRoot, so a restarted agent adopts what is still running.
 *
 *   start ─► uid of the tenant (uids.json), chown app and data ─► cgroup herd/<id>
 *         ─► spawn sh wrapper (joins cgroup, enters the sandbox, exec command as the uid)
 *              │                        │ stdout ─► <stateDir>/output.log, stderr ─► stderr.log (O_APPEND fds)
 *              ├── record <stateRoot>/<id>.json {pid, procStartTime, cgroup, uid, …}
 *              └── firewall table replaced with the running instances' (uid, port) pairs
 *   exit  ◄── 'exit' event (own child) or a 250 ms poll (adopted: pid + start time)
 */

import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { HerdError, notFound } from "../common/errors.ts";
import { type Logger, silentLogger } from "../common/log.ts";
import { SAFE_INSTANCE_ID } from "../model/protocol.ts";
import {
  type CgroupSupport,
  cgroupPids,
  cgroupProcsFiles,
  createInstanceCgroup,
  destroyInstanceCgroup,
  detectCgroups,
  grantRealtime,
  type InstanceCgroup,
  killCgroup,
  PLATFORM_REALTIME_PERIOD_US,
  PLATFORM_REALTIME_SHARE,
  processTree,
  readCgroupUsage,
  readOomKills,
  removeHerdCgroups,
  START_IDLE_MS,
  setCpuLimit,
  setCpuWeight,
  setParentCpuWeight,
  startWeight,
  weighPlatformProcesses,
} from "./cgroups.ts";
import { CpuGuard, type GuardedInstance } from "./cpu-guard.ts";
import { policyLauncher } from "./cpu-policy.ts";
import {
  type DriverUsage,
  INSTANCE_ERR_LOG,
  INSTANCE_LOG,
  type InstanceProcess,
  type Isolation,
  type NetworkPolicy,
  type RuntimeDriver,
  type StartSpec,
} from "./driver.ts";
import {
  detectFirewall,
  type FirewallSupport,
  firewallRemoveScript,
  firewallScript,
  firewallTable,
  machineAddresses,
  onThisMachine,
  remoteRules,
  runNft,
} from "./firewall.ts";
import { rotateInstanceLogs, tailInstanceLogs } from "./instance-log-files.ts";
import { DEFAULT_PORT_RANGE } from "./ports.ts";
import { type Sample, waitShareSince } from "./realtime-guard.ts";
import {
  detectSandbox,
  launchArgs,
  launchEnv,
  ownInstanceDirs,
  type SandboxSpec,
  type SandboxSupport,
  VIEW_APP,
  VIEW_CONFIG,
  VIEW_DATA,
  VIEW_NODE,
  viewEnv,
} from "./sandbox.ts";
import { UidMap, uidRangeFor } from "./uids.ts";

/** Options of the process driver. */
export interface ProcessDriverOptions {
  /** Directory for the per-instance records (one JSON file each). */
  stateRoot: string;
  logger?: Logger;
  /** Put instances in cgroups; default: when the machine offers them. */
  cgroups?: boolean;
  /** Rotate an instance's log when it passes this size; default 10 MiB. */
  logMaxBytes?: number;
  /** Run instances as their tenant's uid in a mount namespace; default: when the machine allows. */
  sandbox?: boolean;
  /** Firewall sandboxed instances with nftables; default: when the machine has nft. */
  firewall?: boolean;
}

/** What the driver keeps on disk about one instance. */
interface InstanceRecord {
  id: string;
  generation: number;
  pid: number;
  port: number;
  startedAt: string;
  /** Field 22 of /proc/<pid>/stat: tells our process from a later one that got the same pid. */
  procStartTime: string;
  stateDir: string;
  cgroup: InstanceCgroup | null;
  /** The uid it runs as, when sandboxed. */
  uid?: number;
  /** Set once it is gone. */
  exit?: { code: number | null; signal: string | null; stopped: boolean; oomKilled?: boolean };
}

interface Tracked {
  record: InstanceRecord;
  /** Our own child (started by this driver); absent for adopted processes. */
  child?: ChildProcess;
  /** Set by stop(): the exit is expected and not reported to onExit listeners. */
  stopping: boolean;
  /** Resolves when the main process is gone. */
  gone: Promise<void>;
  markGone: () => void;
  poll?: NodeJS.Timeout;
  /** Its threads' schedstat at the last usage() reading: the next one's wait share is over the window since. */
  lastSchedstat?: Sample;
  /** A critical instance starting idle: gives it its start weight if started() has not come by then (cgroups.ts START_IDLE_MS). */
  startIdle?: NodeJS.Timeout;
}

const ADOPTED_POLL_MS = 250;
const ROTATE_CHECK_MS = 1000;
const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
// Linux reports utime/stime in clock ticks; USER_HZ is 100 on every mainstream architecture.
const CLOCK_TICKS = 100;

/** Runs instances as detached process groups on this machine, with cgroup limits when root. */
export class ProcessDriver implements RuntimeDriver {
  readonly name = "process";
  readonly #stateRoot: string;
  readonly #log: Logger;
  #support: CgroupSupport;
  readonly #sandbox: SandboxSupport;
  /** fs.protected_hardlinks, read once (a node's kernel setting). */
  readonly #hardlinksProtected = hardlinksProtected();
  readonly #firewall: FirewallSupport;
  readonly #firewallTable: string;
  /** Whether the firewall table may exist (set when applied, and at recover to clear a leftover). */
  #firewallUp = false;
  /** The last firewall failure, reported in isolation() until rules apply again. */
  #firewallError: string | undefined;
  /** Other nodes whose address is a host name, which no rule can match (comma-separated). */
  #skippedNodes = "";
  #policy: NetworkPolicy = { ports: DEFAULT_PORT_RANGE, protect: [] };
  readonly #uids: UidMap;
  readonly #logMaxBytes: number;
  readonly #tracked = new Map<string, Tracked>();
  readonly #listeners: ((p: InstanceProcess) => void)[] = [];
  #rotateTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The cores the instances weigh as together (shareCpu); herd's own processes weigh as much. */
  #sharedCores: number | undefined;
  /** Real time for critical instances and the gateway, and low instances giving way (cpu-guard.ts); with cgroups only. */
  readonly #cpuGuard: CpuGuard | undefined;

  constructor(options: ProcessDriverOptions) {
    this.#stateRoot = options.stateRoot;
    this.#log = (options.logger ?? silentLogger).child("process-driver");
    this.#logMaxBytes = options.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.#support =
      options.cgroups === false
        ? { version: "none", reason: "cgroups turned off in the agent's options", parents: [] }
        : detectCgroups();
    this.#sandbox =
      options.sandbox === false
        ? { enabled: false, reason: "sandbox turned off in the agent's options" }
        : detectSandbox();
    this.#firewall =
      options.firewall === false
        ? { tool: "none", reason: "firewall turned off in the agent's options" }
        : !this.#sandbox.enabled
          ? { tool: "none", reason: "instances run as the agent's user (no sandbox), so no uid to match" }
          : detectFirewall();
    // Records hold instances' environments: root only.
    mkdirSync(this.#stateRoot, { recursive: true, mode: 0o700 });
    const root = resolve(this.#stateRoot);
    this.#uids = new UidMap(join(this.#stateRoot, "uids.json"), uidRangeFor(root));
    this.#firewallTable = firewallTable(root);
    if (this.#support.version !== "none")
      this.#cpuGuard = new CpuGuard(this.#log, () => this.#runningWithCgroups());
  }

  isolation(): Isolation {
    const cgroups: Isolation =
      this.#support.version === "none"
        ? { cgroups: "none", reason: this.#support.reason }
        : { cgroups: this.#support.version };
    const missing: string[] = [];
    if (!this.#sandbox.enabled) missing.push(`sandbox: ${this.#sandbox.reason}`);
    if (this.#firewall.tool === "none") missing.push(`network: ${this.#firewall.reason}`);
    else if (this.#firewallError) missing.push(`network: ${this.#firewallError}`);
    if (this.#firewall.tool === "nftables" && this.#skippedNodes)
      missing.push(
        `network: other nodes or platform endpoints at a host name (${this.#skippedNodes}): open to instances here (give agents an IP address, herd agent --address; the store by address)`,
      );
    if (this.#sandbox.enabled && !this.#hardlinksProtected)
      missing.push(
        "sandbox: fs.protected_hardlinks is 0: a hard link an app makes in its data dir to a file it does not own is chowned to it at its next start (sysctl fs.protected_hardlinks=1)",
      );
    return {
      ...cgroups,
      sandbox: this.#sandbox.enabled ? "uid" : "none",
      network: this.#firewall.tool === "nftables" && !this.#firewallError ? "nftables" : "none",
      ...(missing.length > 0 ? { missing } : {}),
    };
  }

  shareCpu(cores: number): void {
    if (this.#support.version === "none") return;
    setParentCpuWeight(this.#support, cores);
    this.#sharedCores = cores;
  }

  /**
   * Weighs herd's own process `pid` (the gateway) and its descendants as
   * much as all instances together (cgroups.ts weighPlatformProcesses), once
   * shareCpu has said how many cores that is. Returns the cgroup, or
   * undefined when there are no cgroups.
   */
  weighPlatform(pid: number): string | undefined {
    if (this.#support.version === "none" || this.#sharedCores === undefined) return undefined;
    const dir = weighPlatformProcesses(this.#support, processTree(pid), this.#sharedCores);
    // Real time for the gateway while a critical instance runs (cpu-policy.ts): its budget first.
    if (
      this.#support.realtime?.ok &&
      grantRealtime([dir], PLATFORM_REALTIME_SHARE, PLATFORM_REALTIME_PERIOD_US) !== undefined
    ) {
      this.#cpuGuard?.watchPlatform(pid);
    }
    return dir;
  }

  /**
   * Takes herd's cgroups off the machine once its instances are stopped and
   * its gateway is gone (cgroups.ts removeHerdCgroups); the next start makes
   * them again. Undefined without cgroups.
   */
  async releaseCgroups(): Promise<{ removed: string[]; kept: string[] } | undefined> {
    if (this.#support.version === "none") return undefined;
    return removeHerdCgroups(this.#support);
  }

  /**
   * The herd parents made again (as at the start, with this node's weight)
   * when another herd on this machine removed them as it stopped
   * (releaseCgroups: it found them empty).
   */
  #ensureParents(): void {
    if (this.#support.parents.every((p) => existsSync(p))) return;
    this.#support = detectCgroups();
    if (this.#support.version !== "none" && this.#sharedCores !== undefined)
      setParentCpuWeight(this.#support, this.#sharedCores);
    this.#log.info("herd's cgroups were gone (another herd on this machine stopped): made again");
  }

  setNetworkPolicy(policy: NetworkPolicy): void {
    this.#policy = policy;
    this.#syncFirewall();
  }

  async start(spec: StartSpec): Promise<InstanceProcess> {
    if (!SAFE_INSTANCE_ID.test(spec.id))
      throw new HerdError("invalid", `instance id ${JSON.stringify(spec.id)} is not safe as a file name`);
    const existing = this.#tracked.get(spec.id);
    if (existing && !existing.record.exit) {
      throw new HerdError(
        "conflict",
        `instance ${spec.id} is already running (pid ${existing.record.pid}); stop it first`,
      );
    }
    try {
      if (!statSync(spec.dir).isDirectory()) throw new Error("not a directory");
    } catch (err) {
      throw new HerdError(
        "invalid",
        `cannot start ${spec.id}: working directory ${spec.dir}: ${(err as Error).message}`,
      );
    }
    mkdirSync(spec.stateDir, { recursive: true });

    let sandbox: SandboxSpec | undefined;
    if (this.#sandbox.enabled) {
      try {
        sandbox = await this.#prepareSandbox(spec);
      } catch (err) {
        throw new HerdError(
          "internal",
          `cannot prepare the sandbox of ${spec.id}: ${(err as Error).message}`,
        );
      }
    }

    let cgroup: InstanceCgroup | null = null;
    if (this.#support.version !== "none") {
      try {
        this.#ensureParents();
        cgroup = createInstanceCgroup(this.#support, spec.id, {
          memoryBytes: spec.resources.memoryLimit ?? spec.resources.memory,
          cpuCores: spec.resources.cpu,
          ...(spec.criticality ? { criticality: spec.criticality } : {}),
          // A ceiling gets the start boost, if any, until started(): memory is never boosted.
          ...(spec.resources.cpuLimit !== undefined
            ? { cpuLimitCores: Math.max(spec.resources.cpuLimit, spec.startCpu ?? 0) }
            : {}),
        });
      } catch (err) {
        throw new HerdError("internal", `cannot set up the cgroup of ${spec.id}: ${(err as Error).message}`);
      }
    }

    // The rules that name it are in place before anything of it runs (the first instance of an agent
    // makes the table): then, not a moment after, its first connection meets them.
    if (sandbox) this.#syncFirewall({ uid: sandbox.uid, port: spec.port });
    let child: ChildProcess;
    const logFd = openSync(join(spec.stateDir, INSTANCE_LOG), "a");
    const errFd = openSync(join(spec.stateDir, INSTANCE_ERR_LOG), "a");
    try {
      const procs = cgroup ? cgroupProcsFiles(cgroup) : [];
      const enabled = this.#sandbox.enabled ? this.#sandbox : undefined;
      if (spec.criticality === "critical" && this.#support.realtime?.ok && cgroup?.realtime === undefined) {
        const why = "the node's real-time budget is taken";
        this.#log.warn(`a critical instance runs with its weight only: ${why}`, { id: spec.id });
      }
      // A low service's processes do not preempt others when they wake (cpu-policy.ts); a critical
      // one's enter real time once calm (#guardRealtime).
      const policy = policyLauncher(spec.criticality);
      const args = launchArgs(
        spec.command,
        procs,
        sandbox && enabled && { support: enabled, spec: sandbox },
        policy,
      );
      // Inside, paths are the views; HOME is the data dir unless the service set one.
      const env = sandbox ? { HOME: VIEW_DATA, ...viewEnv(spec.env, sandbox.binds) } : spec.env;
      // Sandboxed, the root steps get none of it: it arrives on stdin, read as the instance's uid.
      const launch = launchEnv(env, sandbox !== undefined);
      // detached: own session and process group, so signals to the agent's group never reach it.
      // The log fds are inherited (no pipes), so the app keeps writing when the agent is gone.
      child = spawn("/bin/sh", args, {
        cwd: spec.dir,
        env: launch.env,
        detached: true,
        stdio: [launch.stdin === undefined ? "ignore" : "pipe", logFd, errFd],
      });
      // A child that ends before reading it closes the pipe: its exit says why, not EPIPE.
      child.stdin?.on("error", () => {});
      child.stdin?.end(launch.stdin);
    } catch (err) {
      if (cgroup) await destroyInstanceCgroup(cgroup).catch(() => {});
      this.#syncFirewall();
      throw new HerdError("internal", `cannot start ${spec.id}: ${(err as Error).message}`);
    } finally {
      closeSync(logFd);
      closeSync(errFd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      if (cgroup) await destroyInstanceCgroup(cgroup).catch(() => {});
      this.#syncFirewall();
      throw new HerdError("internal", `cannot start ${spec.id}: ${err.message}`);
    }
    child.unref();

    // The child is not reaped before the event loop runs, so /proc/<pid> is there even if it already exited.
    const procStartTime = readProcStat(pid)?.startTime ?? "";
    const record: InstanceRecord = {
      id: spec.id,
      generation: spec.generation,
      pid,
      port: spec.port,
      startedAt: new Date().toISOString(),
      procStartTime,
      stateDir: spec.stateDir,
      cgroup,
      ...(sandbox ? { uid: sandbox.uid } : {}),
    };
    const tracked = this.#track(record);
    tracked.child = child;
    if (cgroup?.criticality === "critical") {
      const start = startWeight({ cpuCores: spec.resources.cpu, criticality: "critical" });
      tracked.startIdle = setTimeout(() => {
        if (!tracked.record.exit) this.#setWeight(cgroup, start);
      }, START_IDLE_MS);
      tracked.startIdle.unref();
    }
    child.once("exit", (code, signal) => this.#exited(tracked, code, signal));
    this.#writeRecord(record);
    this.#syncFirewall();
    this.#log.info("started", {
      id: spec.id,
      generation: spec.generation,
      pid,
      port: spec.port,
      cgroup: cgroup?.version,
      uid: sandbox?.uid,
    });
    return toProcess(record);
  }

  /** The tenant's uid, which then owns the app and data dirs; what the sandbox binds where. */
  async #prepareSandbox(spec: StartSpec): Promise<SandboxSpec> {
    // Without cgroups a process of the instance (a setsid daemon) may outlive its stop.
    const uid = await ownInstanceDirs(this.#uids, spec, this.#support.version === "none");
    const binds = [{ host: spec.dir, view: VIEW_APP }];
    if (spec.dataDir) binds.push({ host: spec.dataDir, view: VIEW_DATA });
    // Root's files, not chowned: every instance using this Node runs the same, unaltered binary.
    if (spec.node) binds.push({ host: spec.node, view: VIEW_NODE });
    if (spec.configDir) binds.push({ host: spec.configDir, view: VIEW_CONFIG });
    // Half the memory limit: a full /tmp ends in ENOSPC before its pages (charged to the cgroup) end the app.
    return { uid, binds, cwd: VIEW_APP, tmpBytes: spec.resources.memory / 2 };
  }

  async stop(id: string, graceMs: number): Promise<void> {
    const t = this.#tracked.get(id);
    if (!t) return;
    if (t.record.exit) {
      if (t.record.cgroup) await destroyInstanceCgroup(t.record.cgroup);
      return;
    }
    t.stopping = true;
    const { pid, cgroup } = t.record;
    const deadline = Date.now() + graceMs;
    signalGroup(pid, "SIGTERM");
    // Grace covers the whole group: a child that ignores SIGTERM gets SIGKILL at the deadline too.
    // The cgroup's member list is one read; scanning /proc costs a read per process (a fork bomb has 1,000s).
    const alive = () => (cgroup ? cgroupPids(cgroup).length > 0 : groupAlive(pid));
    while (Date.now() < deadline && (!t.record.exit || alive())) await sleep(25);
    signalGroup(pid, "SIGKILL");
    if (cgroup) killCgroup(cgroup);
    await t.gone;
    // Members that were still starting when the group was signalled.
    signalGroup(pid, "SIGKILL");
    if (cgroup) await destroyInstanceCgroup(cgroup);
    this.#syncFirewall();
    this.#log.info("stopped", { id, pid });
  }

  async inspect(id: string): Promise<InstanceProcess | undefined> {
    const t = this.#tracked.get(id);
    return t && toProcess(t.record);
  }

  async list(): Promise<InstanceProcess[]> {
    return [...this.#tracked.values()].map((t) => toProcess(t.record));
  }

  async recover(): Promise<InstanceProcess[]> {
    // A table left by an agent that crashed after its last instance died is removed by the sync below.
    this.#firewallUp = true;
    for (const file of readdirSync(this.#stateRoot)) {
      if (!file.endsWith(".json") || file === "uids.json") continue;
      const id = file.slice(0, -".json".length);
      if (this.#tracked.has(id) || !SAFE_INSTANCE_ID.test(id)) continue;
      let record: InstanceRecord;
      try {
        record = JSON.parse(readFileSync(join(this.#stateRoot, file), "utf8")) as InstanceRecord;
      } catch (err) {
        this.#log.warn("skipping an unreadable record", { file, err });
        continue;
      }
      const t = this.#track(record);
      if (record.exit) {
        t.markGone();
      } else if (isOurProcess(record.pid, record.procStartTime)) {
        t.poll = setInterval(() => {
          // Not our child: its code and signal went to its parent. Only an OOM kill leaves a trace.
          if (!isOurProcess(record.pid, record.procStartTime))
            this.#exited(t, null, oomSignal(record.cgroup));
        }, ADOPTED_POLL_MS);
        t.poll.unref();
        if (record.cgroup) this.#cpuGuard?.adopted(id, record.cgroup);
        this.#log.info("adopted", { id, pid: record.pid, port: record.port });
      } else {
        // Died while no agent was watching: exit code unknown (unless the OOM killer left a trace).
        // Clear what it left in its cgroup.
        const signal = oomSignal(record.cgroup);
        record.exit = { code: null, signal, stopped: false, ...(signal ? { oomKilled: true } : {}) };
        t.markGone();
        this.#writeRecord(record);
        if (record.cgroup) await destroyInstanceCgroup(record.cgroup).catch(() => {});
        this.#log.info("found exited", { id, pid: record.pid });
      }
    }
    this.#syncFirewall();
    return this.list();
  }

  onExit(listener: (p: InstanceProcess) => void): void {
    this.#listeners.push(listener);
  }

  async tail(id: string, lines: number): Promise<string[]> {
    const t = this.#tracked.get(id);
    if (!t) throw notFound(`instance ${id} is not known to the process driver`);
    return tailInstanceLogs(t.record.stateDir, lines);
  }

  started(id: string, cpuLimitCores: number | undefined): void {
    const t = this.#tracked.get(id);
    if (!t?.record.cgroup) return;
    const cgroup = t.record.cgroup;
    clearTimeout(t.startIdle);
    if (cpuLimitCores !== undefined) setCpuLimit(cgroup, cpuLimitCores);
    if (cgroup.criticality === "critical" && cgroup.weight !== undefined) setCpuWeight(cgroup, cgroup.weight);
  }

  /** The start weight of a critical instance that started idle (a cgroup gone meanwhile is logged). */
  #setWeight(cgroup: InstanceCgroup, cores: number): void {
    try {
      setCpuWeight(cgroup, cores);
    } catch (err) {
      this.#log.warn("cannot set the CPU weight", { cgroup: cgroup.dirs[0], cores, err });
    }
  }

  async remove(id: string): Promise<void> {
    const t = this.#tracked.get(id);
    if (!t) return;
    if (!t.record.exit)
      throw new HerdError("conflict", `instance ${id} is still running; stop it before removing it`);
    if (t.record.cgroup)
      await destroyInstanceCgroup(t.record.cgroup).catch((err) =>
        this.#log.warn("cannot remove cgroup", { id, err }),
      );
    rmSync(join(this.#stateRoot, `${id}.json`), { force: true });
    this.#tracked.delete(id);
  }

  async usage(id: string): Promise<DriverUsage | undefined> {
    const t = this.#tracked.get(id);
    if (!t || t.record.exit) return undefined;
    // Every thread of its cgroup, or of its main process without one.
    const waits = waitShareSince(t, t.record.cgroup ? cgroupPids(t.record.cgroup) : [t.record.pid]);
    const wait = waits === undefined ? {} : { cpuWaitShare: waits };
    if (t.record.cgroup) return { ...readCgroupUsage(t.record.cgroup), ...wait };
    const stat = readProcStat(t.record.pid);
    if (!stat) return undefined;
    const status = readOptional(`/proc/${t.record.pid}/status`);
    const rss = status && /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return {
      cpuSeconds: stat.cpuTicks / CLOCK_TICKS,
      memoryBytes: rss ? Number(rss[1]) * 1024 : undefined,
      ...wait,
    };
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#rotateTimer);
    this.#cpuGuard?.close();
    for (const t of this.#tracked.values()) {
      clearInterval(t.poll);
      t.child?.removeAllListeners("exit");
    }
  }

  /** The instances running now that have a cgroup (what cpu-guard.ts watches). */
  *#runningWithCgroups(): Iterable<GuardedInstance> {
    for (const t of this.#tracked.values())
      if (!t.record.exit && t.record.cgroup) yield { id: t.record.id, cgroup: t.record.cgroup };
  }

  #track(record: InstanceRecord): Tracked {
    let markGone = () => {};
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    const t: Tracked = { record, stopping: false, gone, markGone };
    this.#tracked.set(record.id, t);
    if (!this.#rotateTimer && !this.#closed) {
      this.#rotateTimer = setInterval(() => this.#rotateLogs(), ROTATE_CHECK_MS);
      this.#rotateTimer.unref();
    }
    return t;
  }

  #exited(t: Tracked, code: number | null, signal: string | null): void {
    if (t.record.exit || this.#closed) return;
    clearInterval(t.poll);
    clearTimeout(t.startIdle);
    // Read before the cgroup goes: the main process may be a shell that only saw its child killed (137).
    const oomKilled = !t.stopping && t.record.cgroup !== null && (readOomKills(t.record.cgroup) ?? 0) > 0;
    t.record.exit = { code, signal, stopped: t.stopping, ...(oomKilled ? { oomKilled } : {}) };
    try {
      this.#writeRecord(t.record);
    } catch (err) {
      // A full disk must not hide the exit: it is reported now; a restarted driver finds the pid gone.
      this.#log.error("cannot record an instance's exit", { id: t.record.id, err });
    }
    t.markGone();
    this.#syncFirewall();
    if (t.stopping) return;
    // The main process is the instance: take whatever it left behind with it, so nothing holds its port.
    signalGroup(t.record.pid, "SIGKILL");
    if (t.record.cgroup) {
      destroyInstanceCgroup(t.record.cgroup).catch((err) =>
        this.#log.warn("cannot remove cgroup", { id: t.record.id, err }),
      );
    }
    this.#log.info("exited", { id: t.record.id, pid: t.record.pid, code, signal });
    const p = toProcess(t.record);
    for (const listener of this.#listeners) listener(p);
  }

  /**
   * Makes the firewall match the running sandboxed instances (and the one
   * `starting`, before it runs): their table replaced at once, or removed
   * when none is left. A failure is logged and
   * reported in isolation(); instances run on without it.
   */
  #syncFirewall(starting?: { uid: number; port: number }): void {
    if (this.#firewall.tool !== "nftables" || this.#closed) return;
    const instances = [...this.#tracked.values()]
      .filter((t) => !t.record.exit && t.record.uid !== undefined)
      .map((t) => ({ uid: t.record.uid as number, port: t.record.port }));
    if (starting) instances.push(starting);
    if (instances.length === 0 && !this.#firewallUp) return;
    const uids = [...new Set(instances.map((i) => i.uid))];
    const remote = remoteRules(
      this.#policy.peers,
      uids.map((uid) => ({ uid, tenant: this.#uids.keyOf(uid) })),
    );
    this.#warnSkipped(remote.skipped);
    const script =
      instances.length === 0
        ? firewallRemoveScript(this.#firewallTable)
        : firewallScript({
            table: this.#firewallTable,
            uids: this.#uids.range,
            instances,
            ports: this.#policy.ports,
            protect: onThisMachine([...this.#policy.protect, ...remote.protect], machineAddresses()),
            ...(remote.rules ? { remote: remote.rules } : {}),
          });
    const err = runNft(this.#firewall.nft, script);
    if (err) {
      if (this.#firewallError === undefined) this.#log.warn("cannot apply the firewall", { err });
      this.#firewallError = `nft failed: ${err}`;
      return;
    }
    this.#firewallError = undefined;
    this.#firewallUp = instances.length > 0;
  }

  /** Nodes given by host name: their instances' ports stay open to ours (logged once per list, and in isolation()). */
  #warnSkipped(names: string[]): void {
    const key = names.join(", ");
    if (key === this.#skippedNodes) return;
    this.#skippedNodes = key;
    if (names.length > 0)
      this.#log.warn("nodes or platform endpoints given by host name stay open to this node's instances", {
        names,
      });
  }

  #writeRecord(record: InstanceRecord): void {
    const file = join(this.#stateRoot, `${record.id}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(record));
    renameSync(`${file}.tmp`, file);
  }

  #rotateLogs(): void {
    for (const t of this.#tracked.values()) {
      if (t.record.exit) continue;
      rotateInstanceLogs(t.record.stateDir, this.#logMaxBytes, (file, err) =>
        this.#log.warn("cannot rotate the log", { id: t.record.id, file, err }),
      );
    }
  }
}

/**
 * SIGKILL when the kernel's OOM killer ended a process of the cgroup (it kills
 * with SIGKILL), else null: what can be known of how a process that is not our
 * child ended.
 */
function oomSignal(cgroup: InstanceCgroup | null): string | null {
  return cgroup && (readOomKills(cgroup) ?? 0) > 0 ? "SIGKILL" : null;
}

function toProcess(r: InstanceRecord): InstanceProcess {
  const p: InstanceProcess = {
    id: r.id,
    generation: r.generation,
    pid: r.pid,
    port: r.port,
    startedAt: r.startedAt,
    state: r.exit ? (r.exit.stopped ? "stopped" : "exited") : "running",
  };
  if (r.exit) {
    p.exitCode = r.exit.code;
    p.signal = r.exit.signal;
    if (r.exit.oomKilled) p.oomKilled = true;
  }
  return p;
}

/** The fields of /proc/<pid>/stat the driver uses, or undefined when the process is gone. */
function readProcStat(
  pid: number,
): { state: string; pgrp: number; cpuTicks: number; startTime: string } | undefined {
  const text = readOptional(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // The command name (field 2) may hold spaces and parens; the fields after its last ')' are fixed.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 of the man page, so field N is fields[N - 3].
  return {
    state: fields[0],
    pgrp: Number(fields[2]),
    cpuTicks: Number(fields[11]) + Number(fields[12]),
    startTime: fields[19],
  };
}

/** Whether pid is alive and is the process that had procStartTime (not a later one with the same pid). */
function isOurProcess(pid: number, procStartTime: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const stat = readProcStat(pid);
  return stat !== undefined && stat.startTime === procStartTime && stat.state !== "Z" && stat.state !== "X";
}

/** Whether any live (non-zombie) process is left in process group pgid. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  // kill(2) also succeeds for zombies nobody reaped yet; those do not count.
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat && stat.pgrp === pgid && stat.state !== "Z" && stat.state !== "X") return true;
  }
  return false;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is already gone.
  }
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** Whether the kernel refuses hard links to files the linker does not own (Debian's default; absent: assumed). */
function hardlinksProtected(): boolean {
  try {
    return readFileSync("/proc/sys/fs/protected_hardlinks", "utf8").trim() !== "0";
  } catch {
    return true;
  }
}
