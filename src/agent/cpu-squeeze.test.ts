import assert from "node:assert/strict";
import { test } from "node:test";
import { judgeContention, newSqueezeState, type SqueezeState } from "./cpu-squeeze.ts";
import { type Sample, type Window, windowBetween } from "./realtime-guard.ts";

/**
 * Judges each critical instance's times so far ([ms run, ms waited]) read at
 * `now` (ms), as the agent reads them (cpu-guard.ts): each instance's window
 * between two readings; an instance's first reading is its baseline.
 */
function reader() {
  const last = new Map<string, Sample>();
  return (s: SqueezeState, xs: Record<string, [number, number]>, now: number) => {
    const windows = new Map<string, Window>();
    for (const [id, [run, wait]] of Object.entries(xs)) {
      const sample = {
        at: now,
        threads: new Map([["1/1", { runNs: run * 1e6, waitNs: wait * 1e6, slices: 0 }]]),
      };
      const window = windowBetween(last.get(id), sample);
      last.set(id, sample);
      if (window) windows.set(id, window);
    }
    return judgeContention(s, windows, now);
  };
}

test("a critical instance that waits for a CPU squeezes the low ones at once", () => {
  const s = newSqueezeState();
  const judgeAt = reader();
  assert.equal(judgeAt(s, { api: [0, 0] }, 0), undefined);
  // 200 ms window: ran 40, waited 30 (over 10 % of the window and 20 % of its runnable time).
  const v = judgeAt(s, { api: [40, 30] }, 200);
  assert.deepEqual(v, { action: "squeeze", by: { id: "api", waitMs: 30, windowMs: 200 } });
  assert.equal(s.squeezed, true);
  // Still waiting: nothing new to do.
  assert.equal(judgeAt(s, { api: [80, 60] }, 400), undefined);
});

test("a short or small wait does not squeeze", () => {
  const s = newSqueezeState();
  const judgeAt = reader();
  judgeAt(s, { api: [0, 0], web: [0, 0] }, 0);
  // api waited 15 ms (under 10 % of 200 ms); web waited 25 ms but ran 150 (under 20 % of its runnable time).
  assert.equal(judgeAt(s, { api: [5, 15], web: [150, 25] }, 200), undefined);
  // An instance first seen in this window has no window yet.
  assert.equal(judgeAt(s, { api: [5, 15], web: [150, 25], new: [0, 100] }, 400), undefined);
  assert.equal(s.squeezed, false);
});

test("the low ones get their weight back after 10 s with no critical instance waiting", () => {
  const s = newSqueezeState();
  const judgeAt = reader();
  judgeAt(s, { api: [0, 0] }, 0);
  assert.equal(judgeAt(s, { api: [40, 30] }, 200)?.action, "squeeze");
  let run = 40;
  let now = 200;
  const calm = () => {
    run += 50;
    now += 200;
    return judgeAt(s, { api: [run, 30] }, now);
  };
  for (let i = 0; i < 49; i++) assert.equal(calm(), undefined);
  // A wait in between starts the count again.
  now += 200;
  assert.equal(judgeAt(s, { api: [run, 90] }, now), undefined);
  const waited = 90;
  const calmAfter = () => {
    run += 50;
    now += 200;
    return judgeAt(s, { api: [run, waited] }, now);
  };
  for (let i = 0; i < 49; i++) assert.equal(calmAfter(), undefined);
  assert.deepEqual(calmAfter(), { action: "release" });
  assert.equal(s.squeezed, false);
  // A critical instance that stopped (gone from the map) counts as calm.
  assert.equal(judgeAt(s, {}, now + 200), undefined);
});

test("a squeeze soon after a release waits twice as long for the next release (up to 5 min)", () => {
  const s = newSqueezeState();
  const judgeAt = reader();
  let now = 0;
  let run = 0;
  let wait = 0;
  const step = (waitMs: number) => {
    now += 200;
    run += 40;
    wait += waitMs;
    return judgeAt(s, { api: [run, wait] }, now);
  };
  judgeAt(s, { api: [0, 0] }, 0);
  /** Squeezes, then counts the calm windows until the release. */
  const cycle = () => {
    assert.equal(step(50)?.action, "squeeze");
    let n = 0;
    while (step(0)?.action !== "release") n++;
    return n + 1;
  };
  assert.equal(cycle(), 50);
  assert.equal(cycle(), 100);
  assert.equal(cycle(), 200);
  // 30 s calm after a release: the next squeeze starts from 10 s again.
  for (let i = 0; i < 150; i++) step(0);
  assert.equal(cycle(), 50);
  for (let i = 0; i < 8; i++) cycle();
  assert.equal(s.releaseAfter, 1500);
});
