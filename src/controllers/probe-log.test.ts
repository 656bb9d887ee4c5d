import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ManualClock } from "../common/clock.ts";
import type { Instance, Service } from "../model/objects.ts";
import type { InstanceStatus, ProbeAttempt } from "../model/protocol.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { DeployLogs } from "./deploy-log.ts";
import { ProbeLog, REPEAT_MS, START_GRACE_MS } from "./probe-log.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const T0 = Date.parse("2026-01-01T00:00:00Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

async function setup(options: { deploy?: string; release?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "herd-probe-log-"));
  dirs.push(dir);
  const store = new MemoryStore();
  const clock = new ManualClock(T0);
  const logs = new DeployLogs(dir);
  await store.put("service", "default/shop/web", {
    tenant: "default",
    app: "shop",
    name: "web",
    release: 2,
    instances: 1,
    state: "updating",
    message: "",
    crashes: 0,
    ...(options.deploy === undefined ? { deploy: "d1" } : options.deploy ? { deploy: options.deploy } : {}),
  } as unknown as Service);
  await store.put("instance", "shop-web-a1", {
    id: "shop-web-a1",
    tenant: "default",
    app: "shop",
    service: "web",
    release: options.release ?? 2,
    node: "n1",
    generation: 1,
  } as unknown as Instance);
  return { store, clock, logs, probeLog: new ProbeLog(store, logs, clock) };
}

function failing(attempt: number, count: number, extra: Partial<ProbeAttempt> = {}): ProbeAttempt {
  return {
    attempt,
    count,
    firstAt: at((attempt - 1) * 200),
    lastAt: at((attempt + count - 2) * 200),
    ok: false,
    message: "GET /health answered 500",
    status: 500,
    body: "db not ready",
    ...extra,
  };
}

const status = (probes: ProbeAttempt[], generation = 1): InstanceStatus => ({
  id: "shop-web-a1",
  generation,
  state: "up",
  probes,
});

const lines = (logs: DeployLogs) => logs.read("d1").map((e) => `${e.type} ${e.message}`);

test("each new outcome is written at once, with the body's start and the log lines", async () => {
  const { logs, probeLog } = await setup();
  await probeLog.record("n1", {
    instances: [status([failing(1, 1, { logTail: ["Listening on 3000", "db: ECONNREFUSED"] })])],
  });
  assert.deepEqual(lines(logs), [
    "health web shop-web-a1: check 1 failed: GET /health answered 500: db not ready; its last log lines:\n  Listening on 3000\n  db: ECONNREFUSED",
  ]);
});

test("repeats are summed up at most every REPEAT_MS, and at once when another outcome follows", async () => {
  const { logs, clock, probeLog } = await setup();
  await probeLog.record("n1", { instances: [status([failing(1, 1)])] });
  // The same heartbeat again, and more of the same within REPEAT_MS: nothing new is written.
  await probeLog.record("n1", { instances: [status([failing(1, 1)])] });
  clock.advance(1000);
  await probeLog.record("n1", { instances: [status([failing(1, 5)])] });
  assert.equal(lines(logs).length, 1);
  clock.advance(REPEAT_MS);
  await probeLog.record("n1", { instances: [status([failing(1, 30)])] });
  assert.match(
    lines(logs)[1],
    /^health web shop-web-a1: checks 2–30 failed the same way \(30 in a row over 5\.8 s\)$/,
  );
  clock.advance(500);
  const refused = failing(40, 2, { message: "connect ECONNREFUSED", status: undefined, body: undefined });
  await probeLog.record("n1", { instances: [status([failing(1, 39), refused])] });
  clock.advance(500);
  const passed: ProbeAttempt = {
    attempt: 42,
    count: 1,
    firstAt: at(9000),
    lastAt: at(9000),
    ok: true,
    message: "passed",
    status: 200,
  };
  await probeLog.record("n1", { instances: [status([failing(1, 39), refused, passed])] });
  assert.deepEqual(lines(logs).slice(2), [
    "health web shop-web-a1: checks 31–39 failed the same way (39 in a row over 7.6 s)",
    "health web shop-web-a1: check 40 failed: connect ECONNREFUSED",
    "health web shop-web-a1: check 41 failed the same way (2 in a row over 0.2 s)",
    "health web shop-web-a1: check 42 passed (200)",
  ]);
  // Passing on: nothing more.
  clock.advance(REPEAT_MS * 2);
  await probeLog.record("n1", { instances: [status([refused, { ...passed, count: 40 }])] });
  assert.equal(lines(logs).length, 6);
});

test("an instance passing from its first check writes nothing; a new generation starts over", async () => {
  const { logs, probeLog } = await setup();
  const passed: ProbeAttempt = {
    attempt: 1,
    count: 1,
    firstAt: at(0),
    lastAt: at(0),
    ok: true,
    message: "passed",
  };
  await probeLog.record("n1", { instances: [status([passed])] });
  assert.deepEqual(lines(logs), []);
  await probeLog.record("n1", { instances: [status([failing(1, 1)], 2)] });
  assert.deepEqual(lines(logs), [], "generation 2 is not the stored instance's: not ours to report");
});

test("only an instance of the release its service is rolling out, on the node that reports it", async () => {
  for (const options of [{ deploy: "" }, { release: 1 }]) {
    const { logs, probeLog } = await setup(options);
    await probeLog.record("n1", { instances: [status([failing(1, 1)])] });
    assert.deepEqual(lines(logs), [], JSON.stringify(options));
  }
  const { logs, probeLog } = await setup();
  await probeLog.record("n2", { instances: [status([failing(1, 1)])] });
  assert.deepEqual(lines(logs), [], "another node's report about it");
});

test("a start that finds nothing listening for less than START_GRACE_MS and then passes writes nothing; longer, it is written", async () => {
  const { logs, probeLog } = await setup();
  const refused = (count: number, spanMs: number): ProbeAttempt => ({
    attempt: 1,
    count,
    firstAt: at(0),
    lastAt: at(spanMs),
    ok: false,
    message: "connect to port 20001: connect ECONNREFUSED 127.0.0.1:20001",
  });
  const passed = (attempt: number): ProbeAttempt => ({
    attempt,
    count: 1,
    firstAt: at(300),
    lastAt: at(300),
    ok: true,
    message: "passed",
    status: 200,
  });
  // Still refusing, briefly: wait.
  await probeLog.record("n1", { instances: [status([refused(3, 100)])] });
  assert.deepEqual(lines(logs), []);
  // Then it passed: nothing at all.
  await probeLog.record("n1", { instances: [status([refused(4, 200), passed(5)])] });
  assert.deepEqual(lines(logs), []);
  // An instance that refuses for longer: written.
  const other = await setup();
  await other.probeLog.record("n1", { instances: [status([refused(20, START_GRACE_MS)])] });
  assert.deepEqual(lines(other.logs), [
    "health web shop-web-a1: check 1 failed: connect to port 20001: connect ECONNREFUSED 127.0.0.1:20001",
  ]);
});
