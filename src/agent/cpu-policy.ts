/**
 * The scheduling policy of an instance's processes by its criticality.
 *
 * A `low` service's processes run under SCHED_BATCH: the kernel never lets
 * one of them preempt the running task when it wakes (a request arrived, a
 * timer fired); it waits for the current slice to end. Its CPU share under
 * contention is unchanged (its cgroup weight, cgroups.ts), so equal apps
 * still share equally and a request still counts; what it gives up is
 * latency, to the `normal` and `critical` instances and herd's gateway,
 * whose wakeups keep preempting. (The stronger alternative, the cgroup's
 * cpu.idle, would also drop its weight to the kernel's minimum: a low
 * instance would get almost nothing while others are busy, its request
 * notwithstanding; herd uses it only while a critical instance waits for a
 * CPU, cpu-squeeze.ts. docs/resources.md.)
 *
 * SCHED_BATCH is a per-thread policy inherited across fork and exec, so the
 * instance starts under `chrt --batch 0` (util-linux) and everything it
 * starts keeps it; it needs no cgroups and no privilege.
 *
 * A `critical` service's processes run under SCHED_RR while they stay within
 * their cgroup's real-time budget (cgroups.ts realtimeShare: v1 with
 * real-time group scheduling): a wakeup preempts every normal process at
 * once. herd's gateway, which every request to that instance crosses, does
 * too while a critical instance runs on the node, within herd-platform's
 * budget. Both start at the default policy; the agent switches the running
 * processes (setRunningPolicy, all their threads) as realtime-guard.ts
 * decides.
 */

import { execFileSync } from "node:child_process";
import { findBinary } from "../common/debian-packages.ts";
import { threadsOf } from "./realtime-guard.ts";

type Criticality = "critical" | "normal" | "low";

/**
 * The command that starts an instance under its policy (chrt and its
 * arguments): SCHED_BATCH for a low service; [] for the default policy, or
 * when chrt is not there.
 */
export function policyLauncher(
  criticality: Criticality | undefined,
  find: (name: string) => string | undefined = findBinary,
): string[] {
  if (criticality !== "low") return [];
  const chrt = find("chrt");
  return chrt ? [chrt, "--batch", "0"] : [];
}

/** Linux's policy numbers (sched.h). */
const SCHED_OTHER = 0;
const SCHED_RR = 2;
const ESRCH = 3;

/**
 * sched_setscheduler(2) of the C library, through node:ffi: the switch is a
 * system call made by herd itself. Forking `chrt` from the agent, a process
 * of a few hundred MB, took 10–30 ms per process at a load step, while the
 * instance it was meant to rescue stood stopped by the kernel (docs/benchmarks.md,
 * overload). Loaded at the first switch; undefined where node:ffi is not
 * available (a Node built without it, or run with --no-experimental-ffi):
 * then chrt does it.
 */
let libc: ReturnType<typeof loadLibc>;
let libcLoaded = false;

function loadLibc() {
  const ffi = process.getBuiltinModule("node:ffi") as typeof import("node:ffi") | undefined;
  if (!ffi) return undefined;
  try {
    const { functions } = ffi.dlopen(null, {
      sched_setscheduler: { arguments: ["int32", "int32", "pointer"], return: "int32" },
      __errno_location: { arguments: [], return: "pointer" },
    });
    // struct sched_param: one int, the priority (1 and up for SCHED_RR, 0 for SCHED_OTHER).
    const param = Buffer.alloc(4);
    const address = ffi.getRawPointer(param);
    /** Sets thread `tid`'s policy (0: the calling thread): SCHED_RR at `priority`, or the default at 0; 0, or the errno. */
    return (tid: number, priority: number): number => {
      param.writeInt32LE(priority, 0);
      if (functions.sched_setscheduler(tid, priority > 0 ? SCHED_RR : SCHED_OTHER, address) === 0) return 0;
      return ffi.getInt32(functions.__errno_location());
    };
  } catch {
    return undefined;
  }
}

function libcLoadedOnce(): ReturnType<typeof loadLibc> {
  if (!libcLoaded) {
    libc = loadLibc();
    libcLoaded = true;
  }
  return libc;
}

/** The real-time priority of instances and the gateway under SCHED_RR. */
const INSTANCE_PRIORITY = 1;

/**
 * Puts the calling thread under SCHED_RR at a priority above the instances'
 * (it preempts them): for the agent's budget check (budget-check.ts), which
 * must run while the instance it watches holds a CPU in real time. Throws
 * when that fails (no node:ffi, or no real-time budget in herd's own cgroup).
 */
export function runThisThreadInRealtime(): void {
  const set = libcLoadedOnce();
  if (!set) throw new Error("node:ffi is not available");
  const errno = set(0, INSTANCE_PRIORITY + 1);
  if (errno !== 0) throw new Error(`sched_setscheduler(SCHED_RR): ${errnoName(errno)}`);
}

/**
 * Switches running processes (each with all its threads) to SCHED_RR or back
 * to the default policy. Their cgroup must hold a real-time budget first.
 * Throws when that fails (or, without node:ffi, when chrt is not there); a
 * process or thread gone meanwhile is skipped.
 */
export function setRunningPolicy(
  pids: readonly number[],
  realtime: boolean,
  find: (name: string) => string | undefined = findBinary,
): void {
  const set = libcLoadedOnce();
  if (!set) {
    setWithChrt(pids, realtime, find);
    return;
  }
  for (const pid of pids) {
    for (const tid of threadsOf(pid) ?? []) {
      const errno = set(Number(tid), realtime ? INSTANCE_PRIORITY : 0);
      if (errno === 0 || errno === ESRCH) continue;
      const what = realtime ? "SCHED_RR" : "SCHED_OTHER";
      throw new Error(`sched_setscheduler(${tid}, ${what}) of process ${pid}: ${errnoName(errno)}`);
    }
  }
}

function errnoName(errno: number): string {
  // The ones sched_setscheduler returns besides ESRCH.
  const names: Record<number, string> = {
    1: "EPERM (its cgroup holds no real-time budget, or herd lacks CAP_SYS_NICE)",
    22: "EINVAL",
  };
  return names[errno] ?? `errno ${errno}`;
}

/** setRunningPolicy by starting chrt once per process. */
function setWithChrt(
  pids: readonly number[],
  realtime: boolean,
  find: (name: string) => string | undefined,
): void {
  const chrt = find("chrt");
  if (!chrt) throw new Error("chrt (util-linux) is not installed");
  for (const pid of pids) {
    const policy = realtime
      ? ["--rr", "--all-tasks", "--pid", "1"]
      : ["--other", "--all-tasks", "--pid", "0"];
    try {
      execFileSync(chrt, [...policy, String(pid)], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? "");
      if (/No such process/.test(stderr)) continue;
      throw new Error(`chrt ${policy.join(" ")} ${pid}: ${stderr.trim() || (err as Error).message}`);
    }
  }
}
