/**
 * The budget check's thread (budget-check.ts): watches the instances the
 * main thread lists, takes one that nears its real-time budget out of real
 * time itself, and says so.
 */

import { parentPort } from "node:worker_threads";
import {
  type BudgetState,
  budgetPass,
  type Demoted,
  type FromBudgetThread,
  newBudgetState,
  readWatched,
  type ToBudgetThread,
  type Watched,
} from "./budget-check.ts";
import { REALTIME_PERIOD_US } from "./cgroups.ts";
import { runThisThreadInRealtime, setRunningPolicy } from "./cpu-policy.ts";

const port = parentPort;
if (!port) throw new Error("budget-worker.ts runs as a worker thread (budget-check.ts)");

try {
  runThisThreadInRealtime();
  port.postMessage({ started: { realtime: true } } satisfies FromBudgetThread);
} catch (err) {
  port.postMessage({ started: { realtime: false, why: (err as Error).message } } satisfies FromBudgetThread);
}

const state: BudgetState = newBudgetState();
let watched: Watched[] = [];
let timer: NodeJS.Timeout | undefined;
/** When the next check is due (performance.now()). */
let due = 0;

port.on("message", (message: ToBudgetThread) => {
  watched = message.watch;
  // Nothing in real time: no timer, until a list names one.
  if (watched.length > 0 && !timer) schedule(0);
});

function schedule(ms: number): void {
  due = performance.now() + ms;
  timer = setTimeout(check, ms);
}

function check(): void {
  timer = undefined;
  const now = performance.now();
  const lateMs = Math.round(now - due);
  const { demote, nextMs } = budgetPass(state, watched, now, REALTIME_PERIOD_US / 1000, (w) =>
    readWatched(w, now),
  );
  for (const { watched: w, pids } of demote) {
    const started = performance.now();
    const said: Demoted = { id: w.id, epoch: w.epoch, pids, lateMs, switchMs: 0 };
    try {
      setRunningPolicy(pids, false);
    } catch (err) {
      said.error = (err as Error).message;
    }
    said.switchMs = Math.round((performance.now() - started) * 10) / 10;
    port?.postMessage({ demoted: said } satisfies FromBudgetThread);
  }
  if (watched.length > 0) schedule(nextMs);
}
