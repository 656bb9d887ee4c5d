import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  budgetLeftMs,
  demote,
  type GuardState,
  judge,
  newGuardState,
  nextBudgetCheckMs,
  runsInRealtime,
  type Sample,
  threadSchedstats,
  windowBetween,
} from "./realtime-guard.ts";

/**
 * Judges threads' run times so far (ms) read at `at` (ms), as the agent reads
 * them (cpu-guard.ts): each window between two readings (windowBetween); the
 * first reading is the baseline.
 */
function reader() {
  let last: Sample | undefined;
  return (g: GuardState, ms: Record<string, number>, at: number, share: number) => {
    const threads = new Map(
      Object.entries(ms).map(([k, v]) => [k, { runNs: v * 1e6, waitNs: 0, slices: 0 }]),
    );
    const sample = { at, threads };
    const window = windowBetween(last, sample);
    last = sample;
    return window && judge(g, window, share);
  };
}

test("a calm process enters real time after 1 s of calm windows; busy near its budget, it leaves at once", () => {
  const share = 0.1; // 50 ms of a 500 ms window on one CPU
  const g = newGuardState(false);
  const read = reader();
  assert.equal(read(g, { a: 0 }, 0, share), undefined, "the first window is the baseline");
  const verdicts = [];
  for (let w = 1; w <= 5; w++) verdicts.push(read(g, { a: 10 * w }, 500 * w, share));
  assert.deepEqual(verdicts, [undefined, undefined, undefined, undefined, "promote"]);
  assert.equal(g.realtime, true);
  // 35 ms of 50: under 80 %, stays.
  assert.equal(read(g, { a: 85 }, 3000, share), undefined);
  // The busiest thread ran 45 ms of its 50: out.
  assert.equal(read(g, { a: 130, b: 5 }, 3500, share), "demote");
  assert.equal(g.realtime, false);
});

test("after a demotion it needs 10 s of calm to return; one busy window starts the count again", () => {
  const share = 0.2;
  const windowMs = 200;
  const g = newGuardState(true);
  const read = reader();
  let t = 0;
  let ms = 0;
  read(g, { a: ms }, t, share);
  ms += windowMs * share; // all of its share
  t += windowMs;
  assert.equal(read(g, { a: ms }, t, share), "demote");
  const calmWindows = (n: number) => {
    const verdicts = [];
    for (let i = 0; i < n; i++) {
      ms += 1;
      t += windowMs;
      verdicts.push(read(g, { a: ms }, t, share));
    }
    return verdicts;
  };
  assert.deepEqual(calmWindows(49), Array(49).fill(undefined));
  ms += windowMs * share * 0.8; // 80 % of its share: not calm
  t += windowMs;
  assert.equal(read(g, { a: ms }, t, share), undefined);
  assert.deepEqual(calmWindows(49), Array(49).fill(undefined));
  assert.deepEqual(calmWindows(1), ["promote"]);
});

test("threads that are new count from their start; the busiest one decides, not the sum", () => {
  const g = newGuardState(true);
  const read = reader();
  read(g, { a: 0 }, 0, 0.5);
  // Two threads at 150 ms each of a 250 ms budget: each under 80 %, though together over it.
  assert.equal(read(g, { a: 150, b: 150 }, 500, 0.5), undefined);
  assert.equal(read(g, { a: 150, b: 150, c: 240 }, 1000, 0.5), "demote");
});

test("between windows: a process nears its budget when its busiest thread ran 80 % of one period's within a period", () => {
  const at = (ms: number, runs: Record<string, number>): Sample => ({
    at: ms,
    threads: new Map(Object.entries(runs).map(([k, v]) => [k, { runNs: v * 1e6, waitNs: 0, slices: 0 }])),
  });
  // A 0.2 share of a 100 ms period: 20 ms; 80 % of it is 16 ms.
  const since = at(0, { a: 100, b: 100 });
  assert.equal(budgetLeftMs(since, at(50, { a: 110, b: 105 }), 0.2, 100) <= 0, false, "a 10 ms request fits");
  assert.equal(
    budgetLeftMs(since, at(25, { a: 117, b: 100 }), 0.2, 100) <= 0,
    true,
    "17 ms of 20 in 25 ms: a step",
  );
  assert.equal(
    budgetLeftMs(since, at(50, { a: 110, b: 110 }), 0.2, 100) <= 0,
    false,
    "per thread, not summed",
  );
  assert.equal(
    budgetLeftMs(since, at(50, { a: 100, b: 100, c: 17 }), 0.2, 100) <= 0,
    true,
    "a new thread from its start",
  );
  assert.equal(budgetLeftMs(since, since, 0.2, 100) <= 0, false);
});

test("the budget check comes back within the budget left: 16 ms while calm, every few ms near the end", () => {
  const at = (ms: number, run: number): Sample => ({
    at: ms,
    threads: new Map([["a", { runNs: run * 1e6, waitNs: 0, slices: 0 }]]),
  });
  // A 0.2 share of a 100 ms period: 20 ms, of which 80 %, 16 ms, may run before it leaves.
  assert.equal(budgetLeftMs(undefined, at(0, 0), 0.2, 100), 16, "no reading yet: all of it");
  assert.equal(budgetLeftMs(at(0, 0), at(20, 4), 0.2, 100), 12);
  assert.equal(budgetLeftMs(at(0, 0), at(20, 17), 0.2, 100), -1);
  assert.equal(nextBudgetCheckMs([]), 25, "nothing in real time: the slowest pace");
  assert.equal(nextBudgetCheckMs([16]), 16);
  assert.equal(nextBudgetCheckMs([12, 4.6]), 4, "the least left decides");
  assert.equal(nextBudgetCheckMs([0.5]), 2, "never more often than every 2 ms");
  // A thread that turns busy right after a reading: the next one finds it with 4 ms of its 20 left,
  // where a reading 25 ms later found it stopped by the kernel.
  const next = nextBudgetCheckMs([budgetLeftMs(at(0, 0), at(10, 0), 0.2, 100)]);
  assert.equal(next, 16);
  assert.equal(budgetLeftMs(at(0, 0), at(10 + next, next), 0.2, 100) <= 0, true);
});

test("out of real time by the budget check (a burst), back after 1 s of calm windows, not 10 s", () => {
  const g = newGuardState(true);
  demote(g);
  const read = reader();
  const share = 0.2;
  let ms = 0;
  read(g, { a: ms }, 0, share);
  const verdicts = [];
  for (let w = 1; w <= 5; w++) {
    ms += 5; // one 5 ms request a window: calm
    verdicts.push(read(g, { a: ms }, 200 * w, share));
  }
  assert.deepEqual(verdicts, [undefined, undefined, undefined, undefined, "promote"]);
});

test("thread run and wait times and the policy are read from /proc", (t) => {
  const proc = mkdtempSync(join(tmpdir(), "herd-guard-"));
  t.after(() => rmSync(proc, { recursive: true, force: true }));
  for (const [tid, run] of [
    ["7", "1500 20 3"],
    ["8", "2500 10 1"],
  ]) {
    mkdirSync(join(proc, "7", "task", tid), { recursive: true });
    writeFileSync(join(proc, "7", "task", tid, "schedstat"), `${run}\n`);
  }
  assert.deepEqual(
    threadSchedstats([7, 99], proc),
    new Map([
      ["7/7", { runNs: 1500, waitNs: 20, slices: 3 }],
      ["7/8", { runNs: 2500, waitNs: 10, slices: 1 }],
    ]),
  );
  const stat = (policy: number) =>
    `7 (node (x) y) S ${Array.from({ length: 37 }, (_, i) => i).join(" ")} ${policy} 0 0 0\n`;
  writeFileSync(join(proc, "7", "stat"), stat(2));
  assert.equal(runsInRealtime(7, proc), true);
  writeFileSync(join(proc, "7", "stat"), stat(0));
  assert.equal(runsInRealtime(7, proc), false);
  assert.equal(runsInRealtime(99, proc), false);
  // And for real: this process runs at the default policy.
  assert.equal(runsInRealtime(process.pid), false);
});
