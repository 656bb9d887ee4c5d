import assert from "node:assert/strict";
import { test } from "node:test";
import type { AutoscaleSpec } from "../model/manifest.ts";
import {
  decide,
  type Memory,
  newMemory,
  type Observation,
  rememberWant,
  wantFor,
} from "./autoscale-decide.ts";

const spec = (over: Partial<AutoscaleSpec> = {}): AutoscaleSpec => ({
  min: 1,
  max: 50,
  target: { metric: "rps", value: 10 },
  scaleDownDelayMs: 10_000,
  maxStep: 1000,
  idleAfterMs: 30_000,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  ...over,
});

const see = (
  now: number,
  current: number,
  stable: number,
  panic = stable,
  extra: Partial<Observation> = {},
) => ({
  now,
  current,
  stable,
  panic,
  inflight: 0,
  waiting: 0,
  lastRequestAt: now,
  ...extra,
});

test("want: totals over the target, rounded up; p99 scales the current count", () => {
  assert.equal(wantFor(spec(), 100, 3), 10);
  assert.equal(wantFor(spec(), 101, 3), 11);
  assert.equal(wantFor(spec(), 0, 3), 0);
  assert.equal(wantFor(spec(), 100.0000000001, 3), 10);
  assert.equal(wantFor(spec({ target: { metric: "cpu", value: 0.7 } }), 2.1, 2), 3);
  assert.equal(wantFor(spec({ target: { metric: "p99", value: 300 } }), 600, 3), 6);
  assert.equal(wantFor(spec({ target: { metric: "p99", value: 300 } }), 150, 4), 2);
  assert.equal(wantFor(spec(), undefined, 3), undefined);
});

test("a steady load at the target keeps the count; more load in the stable window scales out at once", () => {
  const s = spec();
  const mem = newMemory(0, 2);
  assert.equal(decide(s, see(1000, 2, 20), mem).to, 2);
  const d = decide(s, see(2000, 2, 30, 30), mem);
  assert.equal(d.to, 3);
  assert.equal(d.panic, false);
  assert.match(d.reason, /the last 60s ask for 3 \(30 rps at 10 rps each\)/);
});

test("a ×20 load step panics on the first decision and doubles (or +4) per step up to what it asks", () => {
  const s = spec();
  const mem = newMemory(0, 1);
  assert.equal(decide(s, see(1000, 1, 10), mem).to, 1);
  // One second of 200 rps in a 6 s panic window: (5×10 + 200) / 6 ≈ 41.7 rps → 5 instances.
  const first = decide(s, see(2000, 1, 13, 41.7), mem);
  assert.equal(first.panic, true);
  assert.equal(first.panicWant, 5);
  assert.equal(first.to, 5);
  assert.match(first.reason, /^panic: the last 6s ask for 5/);
  const second = decide(s, see(3000, 5, 16, 200), mem);
  assert.equal(second.to, 10);
  assert.match(second.reason, /at most \+5 in one step/);
  assert.equal(decide(s, see(4000, 10, 20, 200), mem).to, 20);
  assert.equal(decide(s, see(5000, 20, 23, 200), mem).to, 20);
});

test("panic never scales in, and ends a stable window after the last ×2 ask", () => {
  const s = spec({ stableWindowMs: 10_000, scaleDownDelayMs: 0 });
  const mem = newMemory(-100_000, 2);
  assert.equal(decide(s, see(0, 2, 10, 50), mem).to, 5);
  // The burst is over: the panic window now asks for 1, the stable one for 2; panic holds 5.
  const held = decide(s, see(5000, 5, 20, 10), mem);
  assert.equal(held.panic, true);
  assert.equal(held.to, 5);
  const after = decide(s, see(10_000, 5, 20, 10), mem);
  assert.equal(after.panic, false);
  assert.equal(after.to, 2, "out of panic, it scales in (by at most half: 5 → 2 at least)");
  const big = newMemory(-100_000, 10);
  const halved = decide(s, see(0, 10, 10, 10), big);
  assert.equal(halved.to, 5);
  assert.match(halved.reason, /at most -5 in one step/);
});

test("scale in only after the scale-down delay of lower wants, to the highest want in it", () => {
  const s = spec({ scaleDownDelayMs: 10_000 });
  const mem = newMemory(0, 6);
  for (let t = 1000; t <= 9000; t += 1000) {
    const d = decide(s, see(t, 6, t < 4000 ? 40 : 20), mem);
    assert.equal(d.to, 6, `t=${t}: the delay has not passed`);
    if (t >= 4000) assert.match(d.reason, /holding 6 for the scale-down delay \(10s\)/);
  }
  // At 10 s a whole delay was seen; wants in it: 4 (1–3 s) and 2 → the highest is 4.
  const d = decide(s, see(10_000, 6, 20), mem);
  assert.equal(d.to, 4);
  assert.match(d.reason, /4 is the most asked in the scale-down delay/);
  // At 14 s only 2s remain in the window.
  assert.equal(decide(s, see(14_000, 4, 20), mem).to, 2);
});

test("maxStep caps both directions; min and max bound the count", () => {
  const s = spec({ maxStep: 2, scaleDownDelayMs: 0, max: 7, min: 2 });
  const mem = newMemory(-100_000, 3);
  const d = decide(s, see(0, 3, 200, 200), mem);
  assert.equal(d.to, 5);
  assert.match(d.reason, /at most \+2/);
  assert.equal(decide(s, see(1000, 6, 200, 200), mem).to, 7);
  const atMax = decide(s, see(2000, 7, 300, 300), mem);
  assert.equal(atMax.to, 7);
  const quiet = newMemory(-100_000, 3);
  assert.equal(decide(s, see(0, 3, 0, 0), quiet).to, 2, "never under min");
});

test("min 0: zero only after idleAfter without requests, never while requests are in flight or held", () => {
  const s = spec({ min: 0, idleAfterMs: 30_000, scaleDownDelayMs: 0 });
  const mem = newMemory(0, 1);
  const quiet = (now: number, extra: Partial<Observation> = {}) =>
    decide(s, see(now, 1, 0, 0, { lastRequestAt: 5000, ...extra }), mem);
  assert.equal(quiet(20_000).to, 1, "no load is not idle yet: min stays 1 while serving");
  assert.equal(quiet(34_999).to, 1);
  assert.equal(quiet(40_000, { inflight: 1 }).to, 1);
  assert.equal(quiet(40_000, { waiting: 2 }).to, 1);
  assert.equal(quiet(35_000).to, 1, "idle must hold for 2 s: a request may not be in the figures yet");
  // A request shows up a second late: the idle clock starts again.
  assert.equal(quiet(36_000, { lastRequestAt: 34_500 }).to, 1);
  assert.equal(quiet(64_000, { lastRequestAt: 34_500 }).to, 1);
  assert.equal(quiet(65_000, { lastRequestAt: 34_500 }).to, 1);
  const idle = quiet(67_000, { lastRequestAt: 34_500 });
  assert.equal(idle.to, 0);
  assert.match(idle.reason, /^idle: no request for 32.5s \(idleAfter 30s\)/);
});

test("min 0: without any request figures, idleAfter counts from when the autoscaler first saw it or woke it", () => {
  const s = spec({ min: 0, idleAfterMs: 30_000 });
  const mem = newMemory(0, 1);
  const none = (now: number, current: number) =>
    decide(s, { now, current, stable: 0, panic: 0, inflight: 0, waiting: 0 }, mem);
  assert.equal(none(29_000, 1).to, 1);
  assert.equal(none(30_000, 1).to, 1);
  assert.equal(none(32_000, 1).to, 0);
  assert.equal(none(33_000, 0).to, 0);
  // A wake (0 → 1 by the gateway's request) restarts the idle clock even before figures arrive.
  assert.equal(none(40_000, 1).to, 1);
  assert.equal(none(70_000, 1).to, 1);
  assert.equal(none(72_000, 1).to, 0);
});

test("at zero any demand wakes; no figures hold the count", () => {
  const s = spec({ min: 0 });
  const mem = newMemory(0, 0);
  assert.equal(decide(s, see(1000, 0, 0, 0), mem).to, 0);
  const held = decide(s, see(2000, 0, 0, 0, { waiting: 3 }), mem);
  assert.equal(held.to, 1);
  assert.equal(decide(s, see(3000, 0, 25, 25), newMemory(0, 0) as Memory).to, 3);
  const blind = decide(
    spec(),
    { now: 1000, current: 4, stable: undefined, panic: undefined, inflight: 0, waiting: 0 },
    newMemory(0, 4),
  );
  assert.equal(blind.to, 4);
  assert.match(blind.reason, /no figures/);
});

test("the scale-down memory is a staircase: the highest want of the delay first, a handful of entries however long", () => {
  const mem = newMemory(0, 1);
  const delay = 300_000;
  // Ten minutes of wants twice a second, wandering between 1 and 5.
  for (let t = 0; t < 600_000; t += 500) rememberWant(mem, t, 1 + (Math.floor(t / 7000) % 5), delay);
  assert.ok(mem.wants.length <= 5, `${mem.wants.length} entries`);
  for (let i = 1; i < mem.wants.length; i++) assert.ok(mem.wants[i].want < mem.wants[i - 1].want);
  assert.equal(mem.wants[0].want, 5);
  // Only low wants for a whole delay: the 5 is gone.
  for (let t = 600_000; t <= 600_000 + delay; t += 500) rememberWant(mem, t, 2, delay);
  assert.deepEqual(mem.wants, [{ at: 600_000 + delay, want: 2 }]);
});
