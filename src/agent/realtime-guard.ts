/**
 * Real time only while it is within budget. A process under SCHED_RR that
 * uses up its cgroup's real-time budget does not fall back to the normal
 * scheduler: it waits for the next period, even on an idle machine (cgroups.ts
 * realtimeShare). That suits a critical service's light, latency-bound
 * requests; a critical service that is busy (an overload, a heavy request
 * stream) needs throughput more, and would be held to its budget.
 *
 * So the agent watches each critical instance with a budget: every GUARD_INTERVAL_MS it reads how long each of its threads ran
 * (/proc/<pid>/task/<tid>/schedstat). A thread runs on one CPU at a time, and
 * the budget is per CPU, so when the busiest thread ran DEMOTE_AT of its
 * share of the window, the process goes back to the default policy (its
 * weight still counts); after CALM_WINDOWS windows in a row under
 * PROMOTE_BELOW of its share it returns to real time. A process starts at
 * the default policy (a Node start is CPU-bound: in real time it would crawl
 * through its budget) and enters real time after START_CALM_WINDOWS calm
 * windows.
 *
 * A window is too slow to leave real time when a load step comes: the
 * budget is per period (cgroups.ts REALTIME_PERIOD_US, 100 ms), and a
 * process that spends it is stopped for the rest of the period (up to 80 ms
 * at a 0.2 share), for every request it holds. So a process in real time is
 * also read between windows, and leaves as soon as its busiest thread ran
 * DEMOTE_AT of one period's budget within the last period (budgetLeftMs).
 * The next reading comes within the budget it has left (nextBudgetCheckMs):
 * every 16 ms while it is calm, every few ms as it nears the end. A fixed
 * 25 ms let a thread that turned busy right after a reading spend the whole
 * budget before the next one, and wait out the period.
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const GUARD_INTERVAL_MS = 200;
/** How often, at most, a process in real time is read against one period's budget (nextBudgetCheckMs). */
export const BUDGET_CHECK_MS = 25;
/** How often, at least: near its budget a process is read every few ms. */
export const MIN_BUDGET_CHECK_MS = 2;

/** Of its share of a window: the busiest thread ran this much, so it nears its budget. */
const DEMOTE_AT = 0.8;
/** Of its share of a window: below this it is calm. */
const PROMOTE_BELOW = 0.5;
/** Calm windows in a row before it returns to real time after a demotion (10 s). */
const CALM_WINDOWS = 50;
/**
 * Calm windows in a row before a process enters real time at its start, or
 * returns after the budget check took it out (1 s): a burst of requests
 * that would have spent one period's budget is no sign of a busy service,
 * and at a steady load with bursts (Poisson arrivals) 10 s in a row of calm
 * windows rarely come, so it would hardly ever return.
 */
const START_CALM_WINDOWS = 5;

/** What the guard remembers of one process group between windows. */
export interface GuardState {
  /** Whether it runs in real time now. */
  realtime: boolean;
  /** Calm windows in a row while at the default policy. */
  calm: number;
  /** Calm windows in a row it needs to enter real time: START_CALM_WINDOWS, or CALM_WINDOWS after a window demoted it. */
  calmNeeded: number;
}

export function newGuardState(realtime: boolean): GuardState {
  return { realtime, calm: 0, calmNeeded: START_CALM_WINDOWS };
}

/** Whether `pid` runs under SCHED_RR now (field 41 of /proc/<pid>/stat is 2); false when it is gone. */
export function runsInRealtime(pid: number, proc = "/proc"): boolean {
  try {
    return (
      readFileSync(join(proc, String(pid), "stat"), "utf8")
        .replace(/^.*\) /s, "")
        .split(" ")[38] === "2"
    );
  } catch {
    return false;
  }
}

/** One thread's /proc/<pid>/task/<tid>/schedstat: time run and time waited runnable (ns), slices. */
export interface ThreadSchedstat {
  runNs: number;
  waitNs: number;
  slices: number;
}

/** The thread ids of `pid` (its /proc task directory); undefined when it is gone. */
export function threadsOf(pid: number, proc = "/proc"): string[] | undefined {
  try {
    return readdirSync(join(proc, String(pid), "task"));
  } catch {
    return undefined;
  }
}

/** The schedstat of every thread of `pids`, keyed `pid/tid` (gone ones are left out). */
export function threadSchedstats(pids: readonly number[], proc = "/proc"): Map<string, ThreadSchedstat> {
  const stats = new Map<string, ThreadSchedstat>();
  for (const pid of pids) {
    for (const tid of threadsOf(pid, proc) ?? []) {
      try {
        const [runNs, waitNs, slices] = readFileSync(
          join(proc, String(pid), "task", tid, "schedstat"),
          "utf8",
        )
          .trim()
          .split(/\s+/)
          .map(Number);
        stats.set(`${pid}/${tid}`, { runNs, waitNs, slices });
      } catch {
        // The thread ended.
      }
    }
  }
  return stats;
}

/** One reading of threads' schedstat (threadSchedstats), and when (performance.now(), ms). */
export interface Sample {
  at: number;
  threads: Map<string, ThreadSchedstat>;
}

/** What threads did between two readings: each one's run and wait (ns), and the window's length (ms). */
export interface Window {
  ms: number;
  threads: Map<string, { runNs: number; waitNs: number }>;
}

/**
 * The window between two readings of the same threads; undefined for the
 * first reading. A thread born in the window counts from its start.
 */
export function windowBetween(last: Sample | undefined, now: Sample): Window | undefined {
  if (!last || now.at <= last.at) return undefined;
  const threads = new Map<string, { runNs: number; waitNs: number }>();
  for (const [tid, st] of now.threads) {
    const before = last.threads.get(tid);
    threads.set(tid, { runNs: st.runNs - (before?.runNs ?? 0), waitNs: st.waitNs - (before?.waitNs ?? 0) });
  }
  return { ms: now.at - last.at, threads };
}

/** A window's run and wait time over all its threads (ms). */
export function timesOf(w: Window): { runMs: number; waitMs: number } {
  let runMs = 0;
  let waitMs = 0;
  for (const t of w.threads.values()) {
    runMs += t.runNs / 1e6;
    waitMs += t.waitNs / 1e6;
  }
  return { runMs, waitMs };
}

/**
 * The share of a window's runnable time (run + wait) its threads spent
 * waiting for a CPU, 0–1 (0 when they never ran nor waited).
 */
export function waitShareOf(w: Window): number {
  const { runMs, waitMs } = timesOf(w);
  return runMs + waitMs > 0 ? Math.round((waitMs / (runMs + waitMs)) * 1000) / 1000 : 0;
}

/**
 * The share of `pids`' threads' runnable time they waited for a CPU since
 * `holder`'s last reading, which this one replaces; undefined at the first.
 * A driver's usage() calls it for each instance (every thread of its cgroup,
 * or of its process tree).
 */
export function waitShareSince(
  holder: { lastSchedstat?: Sample },
  pids: readonly number[],
): number | undefined {
  const now: Sample = { at: performance.now(), threads: threadSchedstats(pids) };
  const window = windowBetween(holder.lastSchedstat, now);
  holder.lastSchedstat = now;
  return window && waitShareOf(window);
}

/**
 * One window of a process group's threads: updates `state` and says what to
 * do: "demote" (to the default policy), "promote" (back to real time) or
 * nothing. `share` is its real-time share of each CPU (0–1).
 */
export function judge(state: GuardState, window: Window, share: number): "demote" | "promote" | undefined {
  let busiest = 0;
  for (const t of window.threads.values()) busiest = Math.max(busiest, t.runNs);
  const windowNs = window.ms * 1e6;
  const used = busiest / windowNs / share;
  if (state.realtime) {
    if (used < DEMOTE_AT) return undefined;
    demote(state, CALM_WINDOWS);
    return "demote";
  }
  state.calm = used < PROMOTE_BELOW ? state.calm + 1 : 0;
  if (state.calm < state.calmNeeded) return undefined;
  state.realtime = true;
  state.calm = 0;
  return "promote";
}

/**
 * Records a demotion in `state`: by a window (judge: busy over 200 ms, back
 * after CALM_WINDOWS), or by the budget check between windows (a burst,
 * back after START_CALM_WINDOWS).
 */
export function demote(state: GuardState, calmNeeded = START_CALM_WINDOWS): void {
  state.realtime = false;
  state.calm = 0;
  state.calmNeeded = calmNeeded;
}

/**
 * How much longer (ms of run) the busiest thread of a process in real time
 * may run before it nears the end of its budget: DEMOTE_AT of one period's
 * budget (`share` × `periodMs`), less what it ran between `since`, a reading
 * at most one period old, and `now` (without `since`, all of it). At 0 or
 * below it nears the end (the kernel stops it once it has run the whole
 * budget within a period). A thread runs at most 1 ms per ms, so a check
 * that comes back within this time finds it before it spends the budget.
 */
export function budgetLeftMs(
  since: Sample | undefined,
  now: Sample,
  share: number,
  periodMs: number,
): number {
  const window = windowBetween(since, now);
  let busiest = 0;
  for (const t of window?.threads.values() ?? []) busiest = Math.max(busiest, t.runNs);
  // In µs: 0.8 × 0.2 × 100 is 16.000000000000004 in floating point.
  return Math.round((DEMOTE_AT * share * periodMs - busiest / 1e6) * 1000) / 1000;
}

/**
 * When the budget check reads again (ms): within the least budget left of the
 * processes it watches (budgetLeftMs), so that a thread that turned busy
 * right after a reading is found before the kernel stops it, but at most
 * BUDGET_CHECK_MS and at least MIN_BUDGET_CHECK_MS.
 */
export function nextBudgetCheckMs(leftMs: readonly number[]): number {
  const least = Math.min(BUDGET_CHECK_MS, ...leftMs);
  return Math.max(MIN_BUDGET_CHECK_MS, Math.floor(least));
}
