import assert from "node:assert/strict";
import { test } from "node:test";
import { AdmissionGate, CRITICAL, LOW, NORMAL } from "./admission.ts";

test("not saturated: everything goes on, whatever is in flight", () => {
  const gate = new AdmissionGate<string>();
  assert.equal(gate.admit(LOW, "a", 5000, 0), "go");
  assert.equal(gate.admit(NORMAL, "b", 5000, 0), "go");
  assert.equal(gate.tick(0, 5000, 100).length, 0);
  assert.equal(gate.limit, Number.POSITIVE_INFINITY);
});

test("saturated: the cap drops to 80 % of what is in flight, never below the floor; critical never waits", () => {
  const gate = new AdmissionGate<string>({ targetDelayMs: 10, minLimit: 4 });
  gate.tick(50, 100, 0);
  assert.equal(gate.limit, 80);
  gate.tick(50, 80, 100);
  assert.equal(gate.limit, 64);
  for (let t = 200; t < 3000; t += 100) gate.tick(50, 64, t);
  assert.equal(gate.limit, 4);
  assert.equal(gate.admit(CRITICAL, "c0", 4000, 0), "go");
  assert.equal(gate.admit(NORMAL, "n1", 4, 0), "wait");
  assert.equal(gate.admit(CRITICAL, "c", 4000, 0), "go");
  assert.equal(gate.admit(NORMAL, "n2", 3, 0), "wait", "nobody overtakes a waiting request of its class");
});

test("normal waiting requests go on before low ones; each class in arrival order", () => {
  const gate = new AdmissionGate<string>({ minLimit: 2 });
  gate.tick(100, 2, 0);
  assert.equal(gate.limit, 2);
  gate.admit(CRITICAL, "c", 2, 0);
  assert.equal(gate.admit(LOW, "low1", 2, 0), "wait");
  assert.equal(gate.admit(NORMAL, "normal1", 2, 1), "wait");
  assert.equal(gate.admit(LOW, "low2", 2, 2), "wait");
  assert.equal(gate.admit(NORMAL, "normal2", 2, 3), "wait");
  // A low request waits behind any waiting request; a normal one only behind normal ones.
  assert.equal(gate.waiting, 4);
  assert.equal(gate.next(2), undefined, "still at the cap");
  assert.deepEqual(
    [gate.next(1), gate.next(1), gate.next(1), gate.next(1), gate.next(1)],
    ["normal1", "normal2", "low1", "low2", undefined],
  );
});

test("a low request waits behind a waiting normal one even under the cap; a normal one does not wait behind low ones", () => {
  const gate = new AdmissionGate<string>({ minLimit: 2 });
  gate.tick(100, 2, 0);
  gate.admit(CRITICAL, "c", 2, 0);
  assert.equal(gate.admit(NORMAL, "n", 2, 0), "wait");
  assert.equal(gate.admit(LOW, "l", 0, 0), "wait");
  const fresh = new AdmissionGate<string>({ minLimit: 2 });
  fresh.tick(100, 2, 0);
  fresh.admit(CRITICAL, "c", 2, 0);
  assert.equal(fresh.admit(LOW, "l", 2, 0), "wait");
  assert.equal(fresh.admit(NORMAL, "n", 1, 0), "go");
});

test("waiting past the class's longest wait is shed: low sooner than normal; a full queue sheds at once", () => {
  const gate = new AdmissionGate<string>({ minLimit: 1, maxWaitMs: [100, 1000], maxQueue: 2 });
  gate.tick(100, 1, 0);
  gate.admit(CRITICAL, "c", 1, 0);
  gate.admit(LOW, "low", 1, 0);
  gate.admit(NORMAL, "normal", 1, 0);
  gate.admit(NORMAL, "normal2", 1, 0);
  assert.equal(gate.admit(NORMAL, "normal3", 1, 0), "shed");
  assert.deepEqual(gate.tick(100, 1, 150), ["low"]);
  assert.deepEqual(gate.tick(100, 1, 900), []);
  assert.deepEqual(gate.tick(100, 1, 1001), ["normal", "normal2"]);
  assert.deepEqual(gate.counts, { queued: 3, shed: 4 });
});

test("the cap grows back once the delay is under target, and is lifted when nobody waits", () => {
  const gate = new AdmissionGate<string>({ minLimit: 4 });
  gate.tick(100, 10, 0);
  assert.equal(gate.limit, 8);
  gate.tick(0, 8, 100);
  assert.equal(gate.limit, 10);
  let t = 200;
  for (; gate.limit !== Number.POSITIVE_INFINITY && t < 10_000; t += 100) gate.tick(0, 8, t);
  assert.equal(gate.limit, Number.POSITIVE_INFINITY);
  // While requests wait, it is not lifted.
  const busy = new AdmissionGate<string>({ minLimit: 4 });
  busy.tick(100, 4, 0);
  busy.admit(CRITICAL, "c", 4, 0);
  busy.admit(NORMAL, "n", 4, 0);
  for (let i = 1; i < 30; i++) busy.tick(0, 4, i * 10);
  assert.notEqual(busy.limit, Number.POSITIVE_INFINITY);
});

test("a class gives way only while a higher one has traffic: alone, it is never held however saturated", () => {
  const gate = new AdmissionGate<string>({ minLimit: 2, precedenceMs: 1000 });
  gate.tick(100, 2, 0);
  assert.equal(gate.limit, 2);
  assert.equal(gate.admit(NORMAL, "n1", 50, 0), "go", "no critical traffic: normal is not capped");
  assert.equal(gate.admit(LOW, "l1", 50, 0), "wait", "normal traffic just seen: low gives way");
  assert.equal(gate.next(1), "l1");
  gate.admit(CRITICAL, "c", 50, 10);
  assert.equal(gate.admit(NORMAL, "n2", 50, 500), "wait", "critical seen 490 ms ago");
  assert.equal(gate.next(1), "n2");
  assert.equal(
    gate.admit(NORMAL, "n3", 50, 1500),
    "go",
    "critical last seen 1,490 ms ago: past precedenceMs",
  );
  assert.equal(gate.admit(LOW, "l2", 50, 1500), "wait", "normal is still flowing");
  assert.equal(gate.next(1), "l2");
  assert.equal(gate.admit(LOW, "l3", 50, 3000), "go", "nothing above low for 1,500 ms");
});
