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

/**
 * Switches running processes (each with all its threads) to SCHED_RR or back
 * to the default policy. Their cgroup must hold a real-time budget first.
 * Throws when chrt is not there or fails; a process gone meanwhile is skipped.
 */
export function setRunningPolicy(
  pids: readonly number[],
  realtime: boolean,
  find: (name: string) => string | undefined = findBinary,
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
