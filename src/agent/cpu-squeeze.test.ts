import assert from "node:assert/strict";
import { test } from "node:test";
import { type CpuTimes, judgeContention, newSqueezeState } from "./cpu-squeeze.ts";

/** Times (ms run, ms waited so far) per critical instance. */
const at = (xs: Record<string, [number, number]>): Map<string, CpuTimes> =>
  new Map(Object.entries(xs).map(([id, [run, wait]]) => [id, { runNs: run * 1e6, waitNs: wait * 1e6 }]));

test("a critical instance that waits for a CPU squeezes the low ones at once", () => {
  const s = newSqueezeState();
  assert.equal(judgeContention(s, at({ api: [0, 0] }), 0), undefined);
  // 200 ms window: ran 40, waited 30 (over 10 % of the window and 20 % of its runnable time).
  const v = judgeContention(s, at({ api: [40, 30] }), 200);
  assert.deepEqual(v, { action: "squeeze", by: { id: "api", waitMs: 30, windowMs: 200 } });
  assert.equal(s.squeezed, true);
  // Still waiting: nothing new to do.
  assert.equal(judgeContention(s, at({ api: [80, 60] }), 400), undefined);
});

test("a short or small wait does not squeeze", () => {
  const s = newSqueezeState();
  judgeContention(s, at({ api: [0, 0], web: [0, 0] }), 0);
  // api waited 15 ms (under 10 % of 200 ms); web waited 25 ms but ran 150 (under 20 % of its runnable time).
  assert.equal(judgeContention(s, at({ api: [5, 15], web: [150, 25] }), 200), undefined);
  // An instance first seen in this window has no window yet.
  assert.equal(judgeContention(s, at({ api: [5, 15], web: [150, 25], new: [0, 100] }), 400), undefined);
  assert.equal(s.squeezed, false);
});

test("the low ones get their weight back after 10 s with no critical instance waiting", () => {
  const s = newSqueezeState();
  judgeContention(s, at({ api: [0, 0] }), 0);
  assert.equal(judgeContention(s, at({ api: [40, 30] }), 200)?.action, "squeeze");
  let run = 40;
  let now = 200;
  const calm = () => {
    run += 50;
    now += 200;
    return judgeContention(s, at({ api: [run, 30] }), now);
  };
  for (let i = 0; i < 49; i++) assert.equal(calm(), undefined);
  // A wait in between starts the count again.
  now += 200;
  assert.equal(judgeContention(s, at({ api: [run, 90] }), now), undefined);
  const waited = 90;
  const calmAfter = () => {
    run += 50;
    now += 200;
    return judgeContention(s, at({ api: [run, waited] }), now);
  };
  for (let i = 0; i < 49; i++) assert.equal(calmAfter(), undefined);
  assert.deepEqual(calmAfter(), { action: "release" });
  assert.equal(s.squeezed, false);
  // A critical instance that stopped (gone from the map) counts as calm.
  assert.equal(judgeContention(s, new Map(), now + 200), undefined);
});

test("a squeeze soon after a release waits twice as long for the next release (up to 5 min)", () => {
  const s = newSqueezeState();
  let now = 0;
  let run = 0;
  let wait = 0;
  const step = (waitMs: number) => {
    now += 200;
    run += 40;
    wait += waitMs;
    return judgeContention(s, at({ api: [run, wait] }), now);
  };
  judgeContention(s, at({ api: [0, 0] }), 0);
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
