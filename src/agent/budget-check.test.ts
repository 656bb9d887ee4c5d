import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { BudgetThread, budgetPass, type Demoted, newBudgetState, type Watched } from "./budget-check.ts";
import type { Sample } from "./realtime-guard.ts";

/** A reading at `at` ms of one thread that ran `ms` so far. */
const at = (ms: number, ranMs: number): Sample => ({
  at: ms,
  threads: new Map([["1/1", { runNs: ranMs * 1e6, waitNs: 0, slices: 0 }]]),
});

const crit = (epoch: number): Watched => ({ id: "crit", dirs: [], share: 0.1, epoch });

test("the budget check: out of real time once its busiest thread ran 80 % of a period's budget, once per stay", () => {
  const state = newBudgetState();
  let ran = 0;
  const pass = (now: number, watched: Watched[]) =>
    budgetPass(state, watched, now, 100, () => ({ pids: [7], sample: at(now, ran) }));
  // A 0.1 share: 10 ms of each 100 ms period, 8 ms before it leaves. Calm: read again within 8 ms.
  assert.deepEqual(pass(0, [crit(1)]), { demote: [], nextMs: 8 });
  ran = 5;
  assert.deepEqual(pass(8, [crit(1)]), { demote: [], nextMs: 3 }, "3 ms of budget left: back within 3");
  ran = 8;
  const out = pass(11, [crit(1)]);
  assert.deepEqual(
    out.demote.map((d) => [d.watched.id, d.pids]),
    [["crit", [7]]],
  );
  // A list sent before the main thread learnt of it names the same stay: not again.
  ran = 30;
  assert.deepEqual(pass(20, [crit(1)]).demote, []);
  // Back in real time (a new stay): its readings start afresh, from now.
  assert.deepEqual(pass(300, [crit(2)]).demote, [], "the first reading of a stay is its baseline");
  ran = 31;
  assert.deepEqual(pass(310, [crit(2)]).demote, []);
  ran = 39;
  assert.equal(pass(320, [crit(2)]).demote.length, 1);
});

test("the budget check: readings older than a period do not count; an instance no longer listed is forgotten", () => {
  const state = newBudgetState();
  let ran = 0;
  const pass = (now: number, watched: Watched[]) =>
    budgetPass(state, watched, now, 100, () => ({ pids: [7], sample: at(now, ran) }));
  pass(0, [crit(1)]);
  ran = 7;
  pass(50, [crit(1)]);
  // 7.5 ms within the last period (from the reading at 50): under 8, it stays.
  ran = 7.5 + 7;
  assert.deepEqual(pass(140, [crit(1)]).demote, []);
  assert.deepEqual(pass(150, []), { demote: [], nextMs: 25 }, "nothing watched: the slowest pace");
  assert.equal(state.recent.size, 0);
  assert.equal(state.done.size, 0);
});

test("the budget check's thread takes a busy process out of real time and says so, with how late it ran", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-budget-"));
  const busy = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
  const thread = new BudgetThread(
    (d) => demoted.push(d),
    (s) => started.push(s),
  );
  const demoted: Demoted[] = [];
  const started: { realtime: boolean; why?: string }[] = [];
  t.after(() => {
    thread.close();
    busy.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  // A cgroup as the check reads one: its processes in cgroup.procs. At the default policy the
  // switch to it is allowed to anyone and changes nothing.
  writeFileSync(join(dir, "cgroup.procs"), `${busy.pid}\n`);
  thread.watch([{ id: "busy", dirs: [dir], share: 0.01, epoch: 1 }]);
  const deadline = Date.now() + 5000;
  while (demoted.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(demoted.length, 1, "no demotion within 5 s");
  const [d] = demoted;
  assert.deepEqual(
    { id: d.id, epoch: d.epoch, pids: d.pids, error: d.error },
    {
      id: "busy",
      epoch: 1,
      pids: [busy.pid],
      error: undefined,
    },
  );
  assert.ok(d.lateMs >= -1 && d.switchMs >= 0, JSON.stringify(d));
  // It says at its start whether it runs in real time itself (as root, where herd's cgroup has a budget).
  assert.equal(started.length, 1);
  if (!started[0].realtime) assert.match(started[0].why ?? "", /sched_setscheduler|ffi/);
  else assert.equal(process.getuid?.(), 0);
});
