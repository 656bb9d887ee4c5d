/**
 * The budget check between windows (cpu-guard.ts), in a thread of its own.
 *
 *   CpuGuard (each window) ──watch: the instances in real time──► budget thread (budget-worker.ts)
 *                                                                    every nextBudgetCheckMs: read each one's
 *                                                                    threads, budgetLeftMs ≤ 0 ─► default policy
 *   CpuGuard ◄──demoted: id, pids, how late, how long the switch took──┘
 *
 * Between two readings a thread may run what is left of 80 % of one period's
 * budget; the last 20 % (2 ms at a 0.1 share) is all the slack a reading has
 * before the kernel stops the instance for the rest of its period. On herd
 * up's event loop, which the control plane, the API and the agent share, a
 * reading came 3–16 ms late, and an instance in a load step was stopped for
 * 60–90 ms. A thread of its own still waited up to 10 ms for a CPU: the
 * instance it watches holds one in real time, and preempts it. So the thread
 * runs under SCHED_RR itself, a priority above the instances'
 * (cpu-policy.ts runThisThreadInRealtime); where herd's own cgroup has no
 * real-time budget it runs at the default policy, and says so.
 *
 * The check only ever takes an instance out of real time; the windows decide
 * when it returns (a new epoch: its readings start afresh).
 */

import { Worker } from "node:worker_threads";
import { cgroupPids } from "./cgroups.ts";
import { budgetLeftMs, nextBudgetCheckMs, type Sample, threadSchedstats } from "./realtime-guard.ts";

/** An instance in real time, as the check watches it. */
export interface Watched {
  id: string;
  /** Its cgroup's directories: the processes are read from them at each check. */
  dirs: string[];
  /** Its real-time share of each CPU (0–1). */
  share: number;
  /** Which stay in real time this is: one demotion each (a stale watch list cannot demote it twice). */
  epoch: number;
}

/** What the check did to one instance. */
export interface Demoted {
  id: string;
  epoch: number;
  pids: number[];
  /** How late the check that found it ran (ms). */
  lateMs: number;
  /** How long the switch took (ms). */
  switchMs: number;
  /** The switch failed: the window tries again. */
  error?: string;
}

/** Messages to the thread. */
export type ToBudgetThread = { watch: Watched[] };

/** Messages from the thread: once at its start, then a demotion each. */
export type FromBudgetThread =
  | { started: { realtime: true } | { realtime: false; why: string } }
  | { demoted: Demoted };

/** What the check remembers between readings. */
export interface BudgetState {
  /** Readings of each watched instance over the last period, oldest first. */
  recent: Map<string, Sample[]>;
  /** The epoch each instance was last demoted in. */
  done: Map<string, number>;
}

export function newBudgetState(): BudgetState {
  return { recent: new Map(), done: new Map() };
}

/**
 * One check over the watched instances at `now` (ms, performance.now()):
 * which near their budget (they are to leave real time), and when to read
 * again. `read` gives an instance's processes and their threads' reading.
 */
export function budgetPass(
  state: BudgetState,
  watched: readonly Watched[],
  now: number,
  periodMs: number,
  read: (w: Watched) => { pids: number[]; sample: Sample },
): { demote: { watched: Watched; pids: number[] }[]; nextMs: number } {
  const demote: { watched: Watched; pids: number[] }[] = [];
  const left: number[] = [];
  const kept = new Set<string>();
  for (const w of watched) {
    if (state.done.get(w.id) === w.epoch) continue;
    kept.add(w.id);
    const { pids, sample } = read(w);
    const recent = state.recent.get(w.id) ?? [];
    while (recent.length > 0 && now - recent[0].at > periodMs) recent.shift();
    const leftMs = budgetLeftMs(recent[0], sample, w.share, periodMs);
    if (recent.length > 0 && leftMs <= 0) {
      state.done.set(w.id, w.epoch);
      state.recent.delete(w.id);
      demote.push({ watched: w, pids });
      continue;
    }
    left.push(leftMs);
    recent.push(sample);
    state.recent.set(w.id, recent);
  }
  // Out of real time or gone: its readings start afresh when it is back.
  for (const id of state.recent.keys()) if (!kept.has(id)) state.recent.delete(id);
  for (const id of state.done.keys()) if (!watched.some((w) => w.id === id)) state.done.delete(id);
  return { demote, nextMs: nextBudgetCheckMs(left) };
}

/** An instance's processes and their threads' reading now. */
export function readWatched(w: Watched, now: number): { pids: number[]; sample: Sample } {
  const pids = cgroupPids({ dirs: w.dirs });
  return { pids, sample: { at: now, threads: threadSchedstats(pids) } };
}

/** The main thread's side: starts the check's thread with the first instance to watch. */
export class BudgetThread {
  readonly #onDemoted: (d: Demoted) => void;
  readonly #onStarted: (started: { realtime: boolean; why?: string }) => void;
  #worker: Worker | undefined;
  /** The last list sent, to send only changes. */
  #sent = "[]";
  #closed = false;

  constructor(
    onDemoted: (d: Demoted) => void,
    onStarted: (started: { realtime: boolean; why?: string }) => void,
  ) {
    this.#onDemoted = onDemoted;
    this.#onStarted = onStarted;
  }

  /** The instances in real time now (all of them, each time). */
  watch(watched: Watched[]): void {
    const text = JSON.stringify(watched);
    if (this.#closed || text === this.#sent) return;
    this.#sent = text;
    if (!this.#worker) {
      if (watched.length === 0) return;
      const worker = new Worker(new URL("./budget-worker.ts", import.meta.url));
      worker.unref();
      worker.on("message", (m: FromBudgetThread) =>
        "demoted" in m ? this.#onDemoted(m.demoted) : this.#onStarted(m.started),
      );
      // A thread that died (it should not): the windows still judge every 200 ms; the next list starts another.
      worker.on("error", () => {});
      worker.on("exit", () => {
        if (this.#worker === worker) {
          this.#worker = undefined;
          this.#sent = "[]";
        }
      });
      this.#worker = worker;
    }
    this.#worker.postMessage({ watch: watched } satisfies ToBudgetThread);
  }

  /** Stops the thread; a list after this (a message still on its way) starts none. */
  close(): void {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    void worker?.terminate();
  }
}
