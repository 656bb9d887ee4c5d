// bench:density --breakdown: where the critical app's busy p99 goes.
// Beside the paced load through the gateway, the same paced load straight to
// the critical instance's port (gateway bypassed), alone and busy; and the
// kernel's scheduler statistics (/proc/<pid>/task/*/schedstat: time run,
// time waited runnable on a run queue, slices) of the gateway, the critical
// instance and one busy instance over the busy phases, so the wait of each
// process for a CPU is a figure rather than a guess.

import { readFileSync } from "node:fs";
import { type ThreadSchedstat, threadSchedstats } from "../src/agent/realtime-guard.ts";

/** Run time, run-queue wait time (ns) and slices of every thread of some processes, summed. */
export type SchedSample = ThreadSchedstat;

/** The sum of /proc/<pid>/task/<tid>/schedstat over the threads of `pids` (gone ones count 0). */
export function schedSample(pids: readonly number[]): SchedSample {
  const sum = { runNs: 0, waitNs: 0, slices: 0 };
  for (const s of threadSchedstats(pids).values()) {
    sum.runNs += s.runNs;
    sum.waitNs += s.waitNs;
    sum.slices += s.slices;
  }
  return sum;
}

/** What happened between two samples over `seconds`: CPU used (cores), mean wait per slice (ms). */
export function schedDelta(
  from: SchedSample,
  to: SchedSample,
  seconds: number,
): { cores: number; waitPerSliceMs: number; waitShare: number } {
  const run = to.runNs - from.runNs;
  const wait = to.waitNs - from.waitNs;
  const slices = Math.max(1, to.slices - from.slices);
  return {
    cores: run / 1e9 / seconds,
    waitPerSliceMs: wait / 1e6 / slices,
    // Of the time the process wanted a CPU, the part it waited for one.
    waitShare: wait / Math.max(1, run + wait),
  };
}

/** The pids in a v1 or v2 cgroup directory's cgroup.procs. */
export function pidsOfCgroup(dir: string): number[] {
  try {
    return readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The cgroup directory of an instance's CPU controller: v2's unified tree or v1's cpu tree. */
export function instanceCpuCgroup(id: string): string {
  const v2 = `/sys/fs/cgroup/herd/${id}`;
  try {
    readFileSync(`${v2}/cgroup.procs`);
    return v2;
  } catch {
    return `/sys/fs/cgroup/cpu/herd/${id}`;
  }
}
