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
 * notwithstanding. docs/resources.md.)
 *
 * SCHED_BATCH is a per-thread policy inherited across fork and exec, so the
 * instance starts under `chrt --batch 0` (util-linux) and everything it
 * starts keeps it; it needs no cgroups and no privilege.
 */

import { findBinary } from "../common/debian-packages.ts";

type Criticality = "critical" | "normal" | "low";

/** Whether an instance of this criticality runs under SCHED_BATCH. */
export function runsAsBatch(criticality: Criticality | undefined): boolean {
  return criticality === "low";
}

/** chrt's path when the instance should start under SCHED_BATCH and chrt is there; else undefined (the default policy). */
export function batchLauncher(
  criticality: Criticality | undefined,
  find: (name: string) => string | undefined = findBinary,
): string | undefined {
  return runsAsBatch(criticality) ? find("chrt") : undefined;
}
