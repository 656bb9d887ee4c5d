/**
 * Per-instance cgroups: what this machine offers (v2, v1 or none, and why),
 * one `herd/<instance id>` cgroup per instance with memory, CPU and pids
 * limits, its usage, and killing and removing it.
 *
 * Memory is a hard limit (the request). CPU is compressible: the request,
 * scaled by the service's criticality (CRITICALITY_WEIGHT), sets the
 * instance's weight (cpu.weight on v2, cpu.shares on v1), so under
 * contention busy instances split the CPU in proportion to their requests and
 * an idle one's share goes to the others; a hard ceiling (cpu.max, v1 CFS
 * quota) is set only when the service asks for one (`resources.cpuLimit`).
 *
 * v2: one tree at /sys/fs/cgroup; controllers must be enabled down the path
 * (root → herd) through cgroup.subtree_control. v1: one tree per controller
 * (/sys/fs/cgroup/memory, cpu, cpuacct, pids); an instance gets a directory in
 * each, and a process joins by writing its pid into every one of them.
 */

import {
  accessSync,
  existsSync,
  constants as fsConstants,
  mkdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from "node:fs";
import { rmdir } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { threadsOf } from "./realtime-guard.ts";

/** What cgroup support this machine offers, and where. */
export interface CgroupSupport {
  version: "v1" | "v2" | "none";
  /** Why there are no limits, when version is none. */
  reason?: string;
  /** v2: [the herd parent]. v1: the herd parent in each controller tree used (memory, cpu, cpuacct, pids). */
  parents: string[];
  /**
   * Whether critical instances may run in real time: v1 with real-time group
   * scheduling (cpu.rt_runtime_us), the herd parent holding HERD_REALTIME_SHARE
   * of each CPU to hand out as budgets (enableRealtime). Why not, when not.
   */
  realtime?: { ok: true } | { ok: false; reason: string };
}

/** One instance's cgroup: JSON-safe, so the driver can keep it in its records. */
export interface InstanceCgroup {
  version: "v1" | "v2";
  /** v2: one directory. v1: one per controller tree, memory first. */
  dirs: string[];
  /** A critical instance's real-time budget: the share of each CPU it may take per REALTIME_PERIOD_US (realtimeShare). */
  realtime?: number;
  /** Its service's criticality (absent in records written before it was kept: normal). */
  criticality?: Criticality;
  /**
   * The cores its CPU weight is for once it serves (weightedCores): what the
   * driver sets when a critical instance is healthy (it starts at startWeight)
   * and what setCpuWeight restores after a squeeze (cpu-squeeze.ts).
   */
  weight?: number;
}

/** Limits for one instance. */
export interface CgroupLimits {
  memoryBytes: number;
  /** CPU cores requested, e.g. 0.1: the instance's weight under contention. */
  cpuCores: number;
  /** Its service's criticality: scales that weight (CRITICALITY_WEIGHT); absent: normal. */
  criticality?: Criticality;
  /** A hard CPU ceiling in cores; absent: none (it may use any idle CPU). */
  cpuLimitCores?: number;
  /** Most processes and threads at once; default DEFAULT_PIDS_LIMIT (256). */
  pids?: number;
}

const PARENT = "herd";
const V2_CONTROLLERS = ["memory", "cpu", "pids"];
const CPU_PERIOD_US = 100_000;
// The kernel refuses quotas under 1 ms.
const MIN_CPU_QUOTA_US = 1_000;

type Criticality = "critical" | "normal" | "low";

/**
 * How criticality scales an instance's CPU weight: under contention a
 * critical instance gets four times the share of a normal one with the same
 * request, a low one half. CPU is compressible, so this costs nothing while
 * the node is idle; when everything is busy the critical service's requests
 * are served first (issue 20: its p99 stays near its idle baseline). Placement
 * still counts the plain request.
 */
export const CRITICALITY_WEIGHT: Readonly<Record<Criticality, number>> = { critical: 4, normal: 1, low: 0.5 };

/**
 * Real time for critical instances (v1 only: cgroup v2 has no real-time group
 * scheduling, so there a critical instance has only its weight). A weight
 * decides shares over time, not who runs first: with 30 busy instances a
 * critical one that wakes for a request still waits behind the running task
 * for up to a scheduler tick, and so does the gateway in front of it; the
 * critical p99 was 8× its idle figure (issue 20). Under SCHED_RR a process
 * preempts every normal one at once; its cgroup's real-time budget bounds it:
 * each CPU gives the cgroup at most its share of every REALTIME_PERIOD_US,
 * after which it waits for the next period (so a critical app in a loop takes
 * its budget, not the machine). Of the kernel's 95 % of each CPU for real
 * time, the herd parent holds HERD_REALTIME_SHARE for the critical instances'
 * budgets and herd-platform PLATFORM_REALTIME_SHARE for the gateway. The
 * budget is the bound; which processes use it is the agent's (a critical
 * instance while it is calm, realtime-guard.ts; the gateway while a critical
 * instance runs on the node; ProcessDriver). An instance whose budget no
 * longer fits runs with its weight only.
 */
export const REALTIME_PERIOD_US = 100_000;
/**
 * The gateway's period is shorter: its requests take a fraction of a
 * millisecond of CPU each, and a gateway that met its budget waits at most
 * the rest of this period (2.5 ms), not of REALTIME_PERIOD_US.
 */
export const PLATFORM_REALTIME_PERIOD_US = 10_000;
/** The part of each CPU the herd parent may hand out as critical instances' real-time budgets. */
export const HERD_REALTIME_SHARE = 0.2;
/** The part of each CPU the gateway (herd-platform) may take in real time; past it, it waits for the next period. */
export const PLATFORM_REALTIME_SHARE = 0.75;
const REALTIME_MIN_SHARE = 0.05;

/**
 * A critical instance's real-time share of each CPU: its request, at least
 * 5 % and at most the herd parent's whole share, and no more than its
 * ceiling spread over the CPUs (a budget applies on every CPU, and a
 * real-time task is not held by the CFS quota).
 */
export function realtimeShare(
  limits: Pick<CgroupLimits, "cpuCores" | "cpuLimitCores">,
  cpus: number,
): number {
  const wanted = Math.min(HERD_REALTIME_SHARE, Math.max(REALTIME_MIN_SHARE, limits.cpuCores));
  return limits.cpuLimitCores === undefined ? wanted : Math.min(wanted, limits.cpuLimitCores / cpus);
}

/** The cores an instance weighs as under contention: its request scaled by its criticality. */
export function weightedCores(limits: Pick<CgroupLimits, "cpuCores" | "criticality">): number {
  return limits.cpuCores * CRITICALITY_WEIGHT[limits.criticality ?? "normal"];
}

/** How long a critical instance may start idle before the driver gives it its start weight (startWeight). */
export const START_IDLE_MS = 2000;

/**
 * The cores an instance weighs as until its first passed health check: a
 * critical one its plain request (a normal one's weight), since it serves
 * nothing yet and its start is CPU-bound: with the criticality's weight, a
 * new instance of a scale-out took half a CPU from the critical instance it
 * came to relieve, on a node already short of CPU (docs/benchmarks.md
 * "Overload, session 18"). The others start at their own weight.
 *
 * A critical instance's cgroup is also created idle (`cpu.idle`): until it
 * serves it runs on CPU nobody else wants. The driver gives it this weight
 * (setCpuWeight clears idle) at its first passed health check, or after
 * START_IDLE_MS without one, so a node busy with other work cannot starve
 * its start (docs/benchmarks.md "Overload, session 19").
 */
export function startWeight(limits: Pick<CgroupLimits, "cpuCores" | "criticality">): number {
  return weightedCores(limits.criticality === "critical" ? { cpuCores: limits.cpuCores } : limits);
}

/**
 * cgroup v2 cpu.weight for a CPU request: 1,000 per core (0.1 core → 100, the
 * kernel's default weight), within the kernel's 1–10,000.
 */
export function cpuWeight(cores: number): number {
  return Math.min(10_000, Math.max(1, Math.round(cores * 1000)));
}

/** cgroup v1 cpu.shares for a CPU request: 1,024 per core, as Kubernetes does, within the kernel's 2–262,144. */
export function cpuShares(cores: number): number {
  return Math.min(262_144, Math.max(2, Math.round(cores * 1024)));
}

/** The CFS quota in µs per CPU_PERIOD_US for a ceiling in cores; -1 (v1's "none") when there is none. */
function quotaOf(cores: number | undefined): number {
  return cores === undefined ? -1 : Math.max(MIN_CPU_QUOTA_US, Math.round(cores * CPU_PERIOD_US));
}

/** v2 cpu.max for a ceiling in cores ("max" when there is none). */
function cpuMaxOf(cores: number | undefined): string {
  const quota = quotaOf(cores);
  return `${quota < 0 ? "max" : quota} ${CPU_PERIOD_US}`;
}
/**
 * Processes and threads per instance, as on a standard Heroku dyno. A Node
 * service uses about a dozen; at 1,024 a sustained fork bomb's churn cost its
 * neighbours a 5× p99 in bench:isolation (docs/isolation.md).
 */
export const DEFAULT_PIDS_LIMIT = 256;

/**
 * Detects what this machine offers and prepares the `herd` parent cgroup:
 * v2 when `<root>/cgroup.controllers` exists and memory, cpu and pids can be
 * enabled for the herd subtree; else v1 when memory and cpu trees are mounted;
 * else none, with the reason.
 */
export function detectCgroups(root = "/sys/fs/cgroup"): CgroupSupport {
  if (process.getuid?.() !== 0) return { version: "none", reason: "not running as root", parents: [] };
  if (existsSync(join(root, "cgroup.controllers"))) return detectV2(root);
  if (
    existsSync(join(root, "memory", "memory.limit_in_bytes")) &&
    existsSync(join(root, "cpu", "cpu.cfs_quota_us"))
  ) {
    return detectV1(root);
  }
  return {
    version: "none",
    reason: `no cgroup v2 or v1 memory and cpu controllers under ${root}`,
    parents: [],
  };
}

function detectV2(root: string): CgroupSupport {
  const available = readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  const missing = V2_CONTROLLERS.filter((c) => !available.includes(c));
  if (missing.length > 0) {
    return {
      version: "none",
      reason: `cgroup v2 at ${root} lacks the ${missing.join(", ")} controller(s)`,
      parents: [],
    };
  }
  const parent = join(root, PARENT);
  try {
    mkdirSync(parent, { recursive: true });
    enableControllers(root);
    enableControllers(parent);
  } catch (err) {
    return {
      version: "none",
      reason: `cannot enable ${V2_CONTROLLERS.join(", ")} for ${parent}: ${(err as Error).message} (the agent's own cgroup may hold processes; run it in a leaf cgroup)`,
      parents: [],
    };
  }
  return { version: "v2", parents: [parent] };
}

function enableControllers(dir: string): void {
  const file = join(dir, "cgroup.subtree_control");
  const enabled = readFileSync(file, "utf8").trim().split(/\s+/);
  const wanted = V2_CONTROLLERS.filter((c) => !enabled.includes(c));
  if (wanted.length > 0) writeFileSync(file, wanted.map((c) => `+${c}`).join(" "));
}

/**
 * Lets the herd parent (v1 cpu tree) hand out real-time budgets: its
 * cpu.rt_runtime_us set to HERD_REALTIME_SHARE of its period. Without
 * real-time group scheduling in the kernel (no cpu.rt_runtime_us), or when the
 * machine's other cgroups hold the room, critical instances keep their weight only.
 */
function enableRealtime(parents: string[]): NonNullable<CgroupSupport["realtime"]> {
  const cpu = parents.find((p) => existsSync(join(p, "cpu.shares")));
  if (!cpu) return { ok: false, reason: "no v1 cpu controller" };
  const runtimeFile = join(cpu, "cpu.rt_runtime_us");
  if (!existsSync(runtimeFile))
    return { ok: false, reason: "the kernel has no real-time group scheduling (no cpu.rt_runtime_us)" };
  try {
    const period = Number(readFileSync(join(cpu, "cpu.rt_period_us"), "utf8"));
    const wanted = Math.floor(period * HERD_REALTIME_SHARE);
    if (Number(readFileSync(runtimeFile, "utf8")) !== wanted) writeFileSync(runtimeFile, String(wanted));
    return { ok: true };
  } catch (err) {
    return {
      ok: false,
      reason: `cannot give ${cpu} ${HERD_REALTIME_SHARE * 100} % of each CPU for real time: ${(err as Error).message}`,
    };
  }
}

function detectV1(root: string): CgroupSupport {
  // cpu and cpuacct are often one tree mounted twice (cpu,cpuacct); keep each tree once.
  const trees: string[] = [];
  const seen = new Set<string>();
  for (const controller of ["memory", "cpu", "cpuacct", "pids"]) {
    const dir = join(root, controller);
    if (!existsSync(join(dir, "cgroup.procs"))) continue;
    const real = realpathSync(dir);
    if (seen.has(real)) continue;
    seen.add(real);
    trees.push(dir);
  }
  try {
    const parents = trees.map((t) => join(t, PARENT));
    for (const p of parents) {
      mkdirSync(p, { recursive: true });
      accessSync(join(p, "cgroup.procs"), fsConstants.W_OK);
    }
    return { version: "v1", parents, realtime: enableRealtime(parents) };
  } catch (err) {
    return {
      version: "none",
      reason: `cannot create the herd cgroups: ${(err as Error).message}`,
      parents: [],
    };
  }
}

/**
 * Gives the herd parent cgroup the CPU weight of the cores the node offers
 * its instances, as Kubernetes does for its pods' parent: v1 cpu.shares of
 * 1,024 per core, so against each busy process outside herd (1,024 at nice
 * 0) all instances together weigh as much as `cores` busy processes; v2
 * Kubernetes' conversion of those shares to cpu.weight (1.9 cores → 75,
 * beside system.slice and user.slice at 100). Without it, on a machine busy
 * with other work, every instance together gets one process's share.
 */
export function setParentCpuWeight(support: CgroupSupport, cores: number): void {
  for (const parent of support.parents) writeCoresWeight(support.version, parent, cores);
}

/** Writes the weight of `cores` busy processes (setParentCpuWeight) into a cgroup directory that has a CPU controller. */
function writeCoresWeight(version: "v1" | "v2" | "none", dir: string, cores: number): void {
  const shares = cpuShares(cores);
  if (version === "v2")
    writeFileSync(join(dir, "cpu.weight"), String(1 + Math.floor(((shares - 2) * 9999) / 262_142)));
  else if (version === "v1" && existsSync(join(dir, "cpu.shares")))
    writeFileSync(join(dir, "cpu.shares"), String(shares));
}

/** The cgroup of herd's own processes on the node (the gateway), beside the herd parent. */
const PLATFORM = "herd-platform";

/**
 * Where herd's own processes go: `herd-platform` beside the herd parent, in
 * the CPU controller's tree (v2: the one tree; v1: the cpu tree, the only
 * one it needs). Undefined when there are no cgroups or no CPU controller.
 */
export function platformCgroupDir(support: CgroupSupport): string | undefined {
  if (support.version === "none") return undefined;
  const cpuParent =
    support.version === "v2"
      ? support.parents[0]
      : support.parents.find((p) => existsSync(join(p, "cpu.shares")));
  return cpuParent && join(dirname(cpuParent), PLATFORM);
}

/**
 * Moves herd's own processes (the gateway, `pids`: each with its whole
 * thread group) into the platform cgroup, which weighs as much as the herd
 * parent: the cores the node offers its instances (setParentCpuWeight). So
 * under contention the gateway, which every request of every instance
 * crosses, gets up to as much CPU as all the instances together, instead of
 * one busy process's share (issue 20: with 30 busy apps it waited for a CPU
 * 73–82 % of the time it was runnable, and every request waited with it).
 * A weight, not a reservation: it takes only what it uses. Returns the
 * directory; throws when the move fails.
 */
export function weighPlatformProcesses(
  support: CgroupSupport,
  pids: readonly number[],
  cores: number,
): string {
  const dir = platformCgroupDir(support);
  if (dir === undefined)
    throw new Error(`no CPU cgroup for herd's processes: ${support.reason ?? "no cpu controller"}`);
  mkdirSync(dir, { recursive: true });
  writeCoresWeight(support.version, dir, cores);
  for (const pid of pids) {
    try {
      writeFileSync(join(dir, "cgroup.procs"), String(pid));
    } catch (err) {
      // A worker may have exited since its pid was read; the others still move.
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
  return dir;
}

/** `pid` and its descendants (from /proc/<pid>/task/<tid>/children), parents first; [] when it is gone. */
export function processTree(pid: number, proc = "/proc"): number[] {
  const tree: number[] = [];
  const visit = (p: number) => {
    const tids = threadsOf(p, proc);
    if (tids === undefined) return;
    tree.push(p);
    for (const tid of tids) {
      const children = readOptional(join(proc, String(p), "task", tid, "children")) ?? "";
      for (const child of children.split(/\s+/)) if (child) visit(Number(child));
    }
  };
  visit(pid);
  return tree;
}

/**
 * Creates (or resets) the cgroup `herd/<id>` with the given limits. Throws when
 * a limit cannot be set; the caller decides whether to run without it.
 */
export function createInstanceCgroup(
  support: CgroupSupport,
  id: string,
  limits: CgroupLimits,
): InstanceCgroup {
  if (support.version === "none") throw new Error(`no cgroups: ${support.reason}`);
  const dirs = support.parents.map((p) => join(p, id));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const pids = String(limits.pids ?? DEFAULT_PIDS_LIMIT);
  const memory = String(Math.round(limits.memoryBytes));
  const weight = weightedCores(limits);
  const kept = { weight, ...(limits.criticality ? { criticality: limits.criticality } : {}) };
  const start = startWeight(limits);
  if (support.version === "v2") {
    const [dir] = dirs;
    writeFileSync(join(dir, "memory.max"), memory);
    // Without swap the memory limit is the whole budget, as in the v1 memsw case.
    writeIfPresent(join(dir, "memory.swap.max"), "0");
    // An OOM kill takes the whole instance, not one random process of it.
    writeIfPresent(join(dir, "memory.oom.group"), "1");
    writeFileSync(join(dir, "cpu.weight"), String(cpuWeight(start)));
    writeFileSync(join(dir, "cpu.max"), cpuMaxOf(limits.cpuLimitCores));
    writeFileSync(join(dir, "pids.max"), pids);
  } else {
    for (const dir of dirs) {
      if (existsSync(join(dir, "memory.limit_in_bytes"))) {
        writeFileSync(join(dir, "memory.limit_in_bytes"), memory);
        // memsw counts memory + swap; equal to the memory limit means no swap. Absent when swap accounting is off.
        writeIfPresent(join(dir, "memory.memsw.limit_in_bytes"), memory);
      }
      if (existsSync(join(dir, "cpu.shares")))
        writeFileSync(join(dir, "cpu.shares"), String(cpuShares(start)));
      if (existsSync(join(dir, "cpu.cfs_quota_us"))) {
        writeFileSync(join(dir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
        writeFileSync(join(dir, "cpu.cfs_quota_us"), String(quotaOf(limits.cpuLimitCores)));
      }
      if (existsSync(join(dir, "pids.max"))) writeFileSync(join(dir, "pids.max"), pids);
    }
  }
  const cg: InstanceCgroup = { version: support.version, dirs, ...kept };
  if (limits.criticality !== "critical") return cg;
  // Idle until it serves (startWeight); its start weight stays written for a kernel without cpu.idle.
  for (const dir of cpuWeightDirs(cg)) writeIfPresent(join(dir, "cpu.idle"), "1");
  if (support.version === "v1" && support.realtime?.ok) {
    const share = grantRealtime(dirs, realtimeShare(limits, availableParallelism()));
    if (share !== undefined) cg.realtime = share;
  }
  return cg;
}

/** The directories that hold an instance's CPU weight: v2's one; v1's cpu tree's, among the controllers'. */
function cpuWeightDirs(cg: InstanceCgroup): string[] {
  return cg.version === "v2" ? cg.dirs.slice(0, 1) : cg.dirs.filter((d) => existsSync(join(d, "cpu.shares")));
}

/**
 * Writes an instance's CPU weight for `cores` (cpu.weight on v2, cpu.shares
 * on v1). 0 makes the cgroup idle, as cpu-squeeze.ts does to low-criticality
 * instances while a critical one waits for a CPU: the kernel's least weight
 * (1 and 2) and, where the kernel has it (cpu.idle, Linux 5.15), the
 * cgroup's processes scheduled as SCHED_IDLE. A CPU running only those
 * counts as idle: a task that wakes goes there rather than queue behind a
 * busy CPU's, the CPU pulls waiting tasks from the others as an idle one
 * does, and any other task preempts them at once. Without it a critical
 * instance waited on one CPU behind the gateway and herd's own processes
 * while the other ran the low instance (perf sched, docs/benchmarks.md
 * "Overload, session 18"). Any other value ends the idle state first (the
 * kernel refuses a weight for an idle cgroup).
 */
export function setCpuWeight(cg: InstanceCgroup, cores: number): void {
  const idle = cores === 0;
  const [file, value] =
    cg.version === "v2" ? ["cpu.weight", cpuWeight(cores)] : ["cpu.shares", cpuShares(cores)];
  for (const dir of cpuWeightDirs(cg)) {
    if (!idle) writeIfPresent(join(dir, "cpu.idle"), "0");
    writeFileSync(join(dir, file), String(value));
    if (idle) writeIfPresent(join(dir, "cpu.idle"), "1");
  }
}

/**
 * Gives a v1 cgroup (an instance's, or herd-platform) a real-time budget of
 * `share` of each CPU per `periodUs`. Returns the share, or undefined
 * when its parent's room is taken (the kernel refuses budgets that add up to
 * more than the parent holds) or the kernel has no real-time groups.
 */
export function grantRealtime(
  dirs: readonly string[],
  share: number,
  periodUs = REALTIME_PERIOD_US,
): number | undefined {
  const cpu = dirs.find((d) => existsSync(join(d, "cpu.rt_runtime_us")));
  if (!cpu) return undefined;
  try {
    writeFileSync(join(cpu, "cpu.rt_period_us"), String(periodUs));
    writeFileSync(join(cpu, "cpu.rt_runtime_us"), String(Math.round(share * periodUs)));
    return share;
  } catch {
    writeIfPresent(join(cpu, "cpu.rt_runtime_us"), "0");
    return undefined;
  }
}

/**
 * Sets the CPU ceiling of an instance's cgroup (cores; undefined: none): the
 * agent lowers it from the start boost to the instance's own once it is healthy.
 */
export function setCpuLimit(cg: InstanceCgroup, cpuLimitCores: number | undefined): void {
  if (cg.version === "v2") {
    writeFileSync(join(cg.dirs[0], "cpu.max"), cpuMaxOf(cpuLimitCores));
    return;
  }
  for (const dir of cg.dirs) {
    if (existsSync(join(dir, "cpu.cfs_quota_us")))
      writeFileSync(join(dir, "cpu.cfs_quota_us"), String(quotaOf(cpuLimitCores)));
  }
  // A real-time task is not held by the quota: its budget follows the ceiling down (never up).
  if (cg.realtime !== undefined && cpuLimitCores !== undefined)
    grantRealtime(cg.dirs, Math.min(cg.realtime, cpuLimitCores / availableParallelism()));
}

function writeIfPresent(file: string, value: string): void {
  if (existsSync(file)) writeFileSync(file, value);
}

/** The files a process writes its own pid into to join the cgroup (one per v1 tree). */
export function cgroupProcsFiles(cg: InstanceCgroup): string[] {
  return cg.dirs.map((d) => join(d, "cgroup.procs"));
}

/** The memory limit the kernel applied (it rounds down to pages), in bytes. */
export function readMemoryLimit(cg: InstanceCgroup): number | undefined {
  const file = cg.version === "v2" ? "memory.max" : "memory.limit_in_bytes";
  for (const d of cg.dirs) {
    const value = readOptional(join(d, file));
    if (value !== undefined) return value === "max" ? Number.POSITIVE_INFINITY : Number(value);
  }
  return undefined;
}

/** Memory in use now and CPU time used so far by everything in the cgroup. */
export function readCgroupUsage(cg: InstanceCgroup): { memoryBytes?: number; cpuSeconds?: number } {
  const usage: { memoryBytes?: number; cpuSeconds?: number } = {};
  for (const d of cg.dirs) {
    if (cg.version === "v2") {
      const memory = readOptional(join(d, "memory.current"));
      if (memory !== undefined) usage.memoryBytes = Number(memory);
      const stat = readOptional(join(d, "cpu.stat"));
      const usec = stat && /^usage_usec (\d+)$/m.exec(stat);
      if (usec) usage.cpuSeconds = Number(usec[1]) / 1e6;
    } else {
      const memory = readOptional(join(d, "memory.usage_in_bytes"));
      if (memory !== undefined) usage.memoryBytes = Number(memory);
      const nanos = readOptional(join(d, "cpuacct.usage"));
      if (nanos !== undefined) usage.cpuSeconds = Number(nanos) / 1e9;
    }
  }
  return usage;
}

/**
 * How many processes of the cgroup the kernel's OOM killer ended (v2
 * `memory.events`, v1 `memory.oom_control`, kernel 4.13 or later), or
 * undefined when the kernel does not say. It kills with SIGKILL.
 */
export function readOomKills(cg: InstanceCgroup): number | undefined {
  const file = cg.version === "v2" ? "memory.events" : "memory.oom_control";
  for (const d of cg.dirs) {
    const text = readOptional(join(d, file));
    const count = text && /^oom_kill (\d+)$/m.exec(text);
    if (count) return Number(count[1]);
  }
  return undefined;
}

/** Pids of every process in the cgroup (all v1 trees together). */
export function cgroupPids(cg: Pick<InstanceCgroup, "dirs">): number[] {
  const pids = new Set<number>();
  for (const d of cg.dirs) {
    const text = readOptional(join(d, "cgroup.procs")) ?? "";
    for (const line of text.split("\n")) if (line) pids.add(Number(line));
  }
  return [...pids];
}

/** SIGKILLs everything in the cgroup (cgroup.kill where the kernel has it). */
export function killCgroup(cg: InstanceCgroup): void {
  if (cg.version === "v2" && existsSync(join(cg.dirs[0], "cgroup.kill"))) {
    try {
      writeFileSync(join(cg.dirs[0], "cgroup.kill"), "1");
      return;
    } catch {
      // Fall through to killing pid by pid.
    }
  }
  for (const pid of cgroupPids(cg)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/**
 * Kills everything in the cgroup, waits until it is empty (at most timeoutMs)
 * and removes its directories. Missing directories are fine.
 */
export async function destroyInstanceCgroup(cg: InstanceCgroup, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    killCgroup(cg);
    const left = cgroupPids(cg);
    if (left.length === 0 || Date.now() > deadline) break;
    await sleep(20);
  }
  for (const d of cg.dirs) {
    for (;;) {
      try {
        await rmdir(d);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") break;
        // EBUSY while the last tasks are still being torn down.
        if (code !== "EBUSY" || Date.now() > deadline) throw err;
        await sleep(20);
      }
    }
  }
}

/**
 * Removes herd's cgroups from the machine when nothing is left in them: the
 * gateway's herd-platform and the herd parents, with the real-time budgets
 * they hold (`herd up` stopping with its apps, after its instances'
 * cgroups are gone). One that still holds something — another herd's
 * instances on the same machine — stays (the kernel refuses: EBUSY).
 */
export async function removeHerdCgroups(
  support: CgroupSupport,
): Promise<{ removed: string[]; kept: string[] }> {
  const removed: string[] = [];
  const kept: string[] = [];
  const platform = platformCgroupDir(support);
  for (const dir of [...(platform ? [platform] : []), ...support.parents]) {
    try {
      await rmdir(dir);
      removed.push(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") kept.push(dir);
    }
  }
  return { removed, kept };
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return undefined;
  }
}
