/**
 * The process driver's CPU guards, one window every GUARD_INTERVAL_MS over
 * one reading of each critical instance's threads (their schedstat):
 *
 *   critical instances ─► threadSchedstats ─► windowBetween(last, now) ─┬─► judge (realtime-guard.ts):
 *                                                                         │     SCHED_RR while calm within
 *                                                                         │     its budget, else the default
 *                                                                         └─► judgeContention (cpu-squeeze.ts):
 *                                                                               low instances at the least
 *                                                                               weight while one waits
 *   the gateway (herd-platform, with a real-time budget) ─► SCHED_RR while a critical instance
 *                                                            with a budget runs here
 *
 * Between windows, each critical instance in real time is read against one
 * period's budget (budgetLeftMs), next within the budget it has left
 * (nextBudgetCheckMs): a load step takes it out of real time before the
 * kernel stops it for the rest of a period. That check runs in a thread of
 * its own (budget-check.ts), off herd up's busy event loop.
 *
 * A failure to switch a policy or write a weight is logged; the next window
 * tries again.
 */

import type { Logger } from "../common/log.ts";
import { BudgetThread, type Demoted, type Watched } from "./budget-check.ts";
import { cgroupPids, type InstanceCgroup, processTree, setCpuWeight } from "./cgroups.ts";
import { setRunningPolicy } from "./cpu-policy.ts";
import { judgeContention, newSqueezeState } from "./cpu-squeeze.ts";
import {
  demote,
  GUARD_INTERVAL_MS,
  type GuardState,
  judge,
  newGuardState,
  runsInRealtime,
  type Sample,
  threadSchedstats,
  type Window,
  windowBetween,
} from "./realtime-guard.ts";

/** A running instance with its cgroup, as the driver tracks it. */
export interface GuardedInstance {
  id: string;
  cgroup: InstanceCgroup;
}

export class CpuGuard {
  readonly #log: Logger;
  readonly #running: () => Iterable<GuardedInstance>;
  /** Each critical instance's last reading, by id. */
  readonly #last = new Map<string, Sample>();
  /** Real time per critical instance with a budget, by id. */
  readonly #realtime = new Map<string, GuardState>();
  readonly #squeeze = newSqueezeState();
  /** The low instances at the least weight now, by id: the cgroup that was written (a restart makes a new one). */
  readonly #squeezed = new Map<string, InstanceCgroup>();
  /** herd's gateway, once its cgroup holds a real-time budget (watchPlatform). */
  #platform: { pid: number; realtime: boolean } | undefined;
  /** Instances the budget check took out of real time, until they return. */
  readonly #bursts = new Set<string>();
  /** The budget check between windows, in its own thread. */
  readonly #budget = new BudgetThread(
    (d) => this.#budgetDemoted(d),
    ({ realtime, why }) =>
      realtime
        ? this.#log.debug("the real-time budget check runs in its own thread, itself in real time")
        : this.#log.warn(
            "the real-time budget check runs at the default policy: a critical instance in a load step may wait for it",
            { why },
          ),
  );
  /** Each critical instance's stay in real time (Watched.epoch), by id. */
  readonly #epochs = new Map<string, number>();
  #epoch = 0;
  readonly #timer: NodeJS.Timeout;

  /** Starts the windows over the instances `running` lists each time. */
  constructor(log: Logger, running: () => Iterable<GuardedInstance>) {
    this.#log = log;
    this.#running = running;
    this.#timer = setInterval(() => this.#window(), GUARD_INTERVAL_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#budget.close();
  }

  /** The gateway `pid` (its cgroup has a real-time budget): in real time while a critical instance runs. */
  watchPlatform(pid: number): void {
    this.#platform = { pid, realtime: runsInRealtime(pid) };
  }

  /** An adopted low instance gets its own weight back: an agent that died while it gave way left it at the least. */
  adopted(id: string, cg: InstanceCgroup): void {
    if (cg.criticality === "low" && cg.weight !== undefined) this.#writeWeight(id, cg, cg.weight);
  }

  #window(): void {
    const now = performance.now();
    let realtime = false;
    const windows = new Map<string, Window>();
    const seen = new Set<string>();
    const running = [...this.#running()];
    for (const { id, cgroup: cg } of running) {
      const share = cg.realtime;
      // Records written before the criticality was kept: a budget means critical.
      if (cg.criticality !== "critical" && share === undefined) continue;
      seen.add(id);
      const pids = cgroupPids(cg);
      const sample = { at: now, threads: threadSchedstats(pids) };
      const window = windowBetween(this.#last.get(id), sample);
      this.#last.set(id, sample);
      if (window) windows.set(id, window);
      if (share === undefined) continue;
      realtime = true;
      let guard = this.#realtime.get(id);
      if (!guard) {
        // An adopted instance may be in real time already.
        guard = newGuardState(pids.length > 0 && runsInRealtime(pids[0]));
        this.#realtime.set(id, guard);
      }
      const verdict = window && judge(guard, window, share);
      // A switch that failed is undone in the guard: the next window tries again.
      // Out for a burst and back (#checkBudgets) is routine at a bursty load: logged at debug.
      const routine = verdict === "promote" && this.#bursts.delete(id);
      if (verdict && !this.#switchPolicy(`instance ${id}`, pids, verdict === "promote", { routine }))
        guard.realtime = verdict !== "promote";
    }
    for (const id of this.#last.keys()) {
      if (seen.has(id)) continue;
      this.#last.delete(id);
      this.#realtime.delete(id);
      this.#bursts.delete(id);
      this.#epochs.delete(id);
    }
    this.#watchBudgets(running);
    this.#squeezeLow(running, windows, now);
    // The gateway: in real time while a critical instance runs here, whatever its load. Its
    // period is short (cgroups.ts PLATFORM_REALTIME_PERIOD_US): held to its budget, it waits
    // 2.5 ms at most, where at the default policy it waited behind every busy instance.
    const platform = this.#platform;
    if (
      platform &&
      platform.realtime !== realtime &&
      this.#switchPolicy("the gateway", processTree(platform.pid), realtime)
    )
      platform.realtime = realtime;
  }

  /** Tells the budget check which instances run in real time now, each with its stay's epoch. */
  #watchBudgets(running: GuardedInstance[]): void {
    const watched: Watched[] = [];
    for (const { id, cgroup: cg } of running) {
      const guard = this.#realtime.get(id);
      if (cg.realtime === undefined || !guard?.realtime) {
        this.#epochs.delete(id);
        continue;
      }
      let epoch = this.#epochs.get(id);
      if (epoch === undefined) {
        epoch = ++this.#epoch;
        this.#epochs.set(id, epoch);
      }
      watched.push({ id, dirs: cg.dirs, share: cg.realtime, epoch });
    }
    this.#budget.watch(watched);
  }

  /** The budget check took an instance out of real time (or failed to): the guard and the log learn it. */
  #budgetDemoted(d: Demoted): void {
    const guard = this.#realtime.get(d.id);
    // Already out by a window meanwhile, or out and back: a new stay, which this is not about.
    if (!guard?.realtime || this.#epochs.get(d.id) !== d.epoch) return;
    const what = `instance ${d.id}`;
    if (d.error) {
      this.#log.warn(`cannot change the scheduling policy of ${what}`, { pids: d.pids, err: d.error });
      return;
    }
    demote(guard);
    this.#bursts.add(d.id);
    this.#epochs.delete(d.id);
    // How late the check ran, and how long the switch took: what a load step waits for.
    this.#log.debug(`${what} runs at the default policy`, {
      pids: d.pids,
      why: "it nears its real-time budget",
      checkLateMs: d.lateMs,
      switchMs: d.switchMs,
    });
    this.#watchBudgets([...this.#running()]);
  }

  /** cpu-squeeze.ts: the low instances to the least weight while a critical one waits, and back. */
  #squeezeLow(running: GuardedInstance[], windows: Map<string, Window>, now: number): void {
    const verdict = judgeContention(this.#squeeze, windows, now);
    if (verdict?.action === "squeeze")
      this.#log.warn(
        "a critical instance waits for a CPU: low-criticality instances get the least CPU weight",
        {
          instance: verdict.by.id,
          waitedMs: Math.round(verdict.by.waitMs),
          windowMs: Math.round(verdict.by.windowMs),
        },
      );
    if (verdict?.action === "release") {
      for (const { id, cgroup: cg } of running)
        if (this.#squeezed.get(id) === cg && cg.weight !== undefined) this.#writeWeight(id, cg, cg.weight);
      this.#log.info(
        "no critical instance waits for a CPU: low-criticality instances have their weight back",
        { instances: [...this.#squeezed.keys()] },
      );
      this.#squeezed.clear();
    }
    if (!this.#squeeze.squeezed) return;
    // Every window, so a low instance started meanwhile gives way too.
    for (const { id, cgroup: cg } of running) {
      if (cg.criticality !== "low" || this.#squeezed.get(id) === cg) continue;
      if (this.#writeWeight(id, cg, 0)) this.#squeezed.set(id, cg);
    }
  }

  #writeWeight(id: string, cg: InstanceCgroup, cores: number): boolean {
    try {
      setCpuWeight(cg, cores);
      return true;
    } catch (err) {
      this.#log.warn("cannot set the CPU weight", { id, cores, err });
      return false;
    }
  }

  /** Moves `pids` (all their threads) to SCHED_RR or the default policy; false (logged) when that failed. */
  #switchPolicy(
    what: string,
    pids: number[],
    realtime: boolean,
    { routine = false }: { routine?: boolean } = {},
  ): boolean {
    try {
      setRunningPolicy(pids, realtime);
      this.#log[routine ? "debug" : "info"](
        realtime ? `${what} runs in real time` : `${what} runs at the default policy`,
        { pids },
      );
      return true;
    } catch (err) {
      this.#log.warn(`cannot change the scheduling policy of ${what}`, { pids, err });
      return false;
    }
  }
}
