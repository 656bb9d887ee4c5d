// The engine's loop over a memory store: decisions stored and recorded as
// events, dry run, pause, budget, cooldown, outcome checks, throttle restore.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { testNode } from "../../gateway/testing.ts";
import { DEFAULT_RESOURCES, normalizeService } from "../../model/manifest.ts";
import type { App, Event, Instance, Node, Release, Service } from "../../model/objects.ts";
import { type RemediationPolicy, remediationKey } from "../../model/remediation.ts";
import { testContext } from "../testing.ts";
import { instanceOutcome, loadSince, mergeThrottles, outcomeRule, RemediationEngine } from "./engine.ts";
import { updatePolicy } from "./policy.ts";
import { FakeLoad } from "./testing.ts";
import type { CallEdge } from "./view.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const WEB = "t/shop/web";

/** Node n1, where the instances run: room for `cpu` cores of requests. */
function nodeN1(cpu: number): Node {
  const capacity = { cpu, memory: 64 * 1024 ** 3 };
  return { ...testNode("n1", "127.0.0.1"), capacity, allocatable: capacity };
}

async function setup(options: { criticality?: "low" | "critical"; nodeCpu?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "herd-remedy-"));
  dirs.push(dir);
  const load = new FakeLoad();
  const { ctx, store, clock } = testContext(dir, { load });
  const iso = (agoMs: number) => new Date(clock.now() - agoMs).toISOString();
  await store.put<Node>("node", "n1", nodeN1(options.nodeCpu ?? 16));
  await store.put<App>("app", "t/shop", {
    tenant: "t",
    name: "shop",
    createdAt: iso(0),
    release: 2,
    latestVersion: 2,
  });
  for (const v of [1, 2]) {
    await store.put<Release>("release", `t/shop/${String(v).padStart(8, "0")}`, {
      tenant: "t",
      app: "shop",
      version: v,
      createdAt: iso(v === 1 ? 3_600_000 : 30_000),
      description: "",
      source: "x",
      slug: "x",
      services: {},
    });
  }
  const service = (name: string, criticality?: "low" | "critical"): Service => ({
    tenant: "t",
    app: "shop",
    name,
    release: 2,
    spec: normalizeService(
      "shop",
      name,
      { command: "x", ...(criticality ? { criticality } : {}) },
      undefined,
    ),
    instances: 2,
    state: "running",
    message: "",
    crashes: 0,
  });
  await store.put("service", WEB, service("web", options.criticality));
  for (const id of ["a", "b"]) {
    await store.put<Instance>("instance", id, {
      id,
      tenant: "t",
      app: "shop",
      service: "web",
      release: 2,
      mode: "cattle",
      node: "n1",
      desired: "running",
      generation: 0,
      state: "running",
      reason: "",
      message: "",
      run: { resources: DEFAULT_RESOURCES } as Instance["run"],
      restarts: 0,
      createdAt: iso(0),
    });
  }
  const calls: string[] = [];
  const engine = new RemediationEngine({
    ctx,
    act: {
      rollback: async (_t, app, v) => {
        calls.push(`rollback ${app} v${v}`);
      },
      scale: async (_t, _a, s, n) => {
        calls.push(`scale ${s} ${n}`);
      },
    },
  });
  const events = async (reason: string) =>
    (await ctx.events.list({ tenant: "t", app: "shop" })).filter((e: Event) => e.reason === reason);
  const policy = async () =>
    (await store.get<RemediationPolicy>("remediation", remediationKey("t", "shop")))?.value;
  const badRelease = () =>
    load.setService(WEB, { requests: 200, errors: 100 }).setInstances(WEB, [
      { instance: "a", release: 2, requests: 100, errors: 50 },
      { instance: "b", release: 2, requests: 100, errors: 50 },
    ]);
  return { store, clock, load, ctx, engine, calls, events, policy, badRelease, service };
}

test("a bad release under traffic is rolled back once, with its evidence, and the outcome checked", async () => {
  const h = await setup();
  await h.engine.tick();
  assert.deepEqual(h.calls, [], "no figures: nothing to do");
  h.badRelease();
  await h.engine.tick();
  assert.deepEqual(h.calls, ["rollback shop v1"]);
  const [ev] = await h.events("Remediation");
  assert.equal(ev.type, "warning");
  assert.match(ev.message, /^errors: rollback v2 → v1: v2 is recent/);
  assert.ok(ev.details?.some((l) => /v2: 2 instance\(s\), 100 of 200 requests failed/.test(l)));
  const [d] = (await h.policy())!.decisions;
  assert.equal(d.applied, "applied");
  assert.equal(d.action, "rollback");
  // The same figures a second later: the change needs time to show, nothing more is done.
  h.clock.advance(1000);
  await h.engine.tick();
  assert.deepEqual(h.calls, ["rollback shop v1"]);
  assert.equal((await h.events("Remediation")).length, 1);
  // The outcome, 60 s later: the errors are gone.
  h.load.clear(WEB);
  h.clock.advance(60_000);
  await h.engine.tick();
  const [out] = await h.events("RemediationOutcome");
  assert.match(out.message, /errors: rollback v2 → v1: the error-rate cleared 61 s later/);
  assert.equal((await h.policy())!.decisions[0].outcome, "cleared");
});

test("dry run (the app's or a rule's) decides and records but changes nothing", async () => {
  const h = await setup();
  await updatePolicy(h.store, h.clock, "t", "shop", { dryRun: true });
  h.badRelease();
  await h.engine.tick();
  assert.deepEqual(h.calls, []);
  const [ev] = await h.events("Remediation");
  assert.match(ev.message, /errors: rollback v2 → v1 \(dry run: nothing changed\)/);
  assert.equal((await h.policy())!.decisions[0].dryRun, true);
  // Not repeated every second: the dry-run decision cools down like a real one.
  h.clock.advance(1000);
  await h.engine.tick();
  assert.equal((await h.events("Remediation")).length, 1);

  const r = await setup();
  await updatePolicy(r.store, r.clock, "t", "shop", {
    rules: [{ name: "try", symptom: "error-rate", actions: ["rollback"], dryRun: true }],
  });
  r.badRelease();
  await r.engine.tick();
  assert.deepEqual(r.calls, []);
  assert.match((await r.events("Remediation"))[0].message, /^try: rollback v2 → v1 \(dry run/);
});

test("a paused app gets no decisions; resumed, it does", async () => {
  const h = await setup();
  await updatePolicy(h.store, h.clock, "t", "shop", { paused: true });
  h.badRelease();
  await h.engine.tick();
  assert.deepEqual(h.calls, []);
  assert.equal((await h.events("Remediation")).length, 0);
  h.clock.advance(30_000);
  await updatePolicy(h.store, h.clock, "t", "shop", { paused: false });
  assert.equal((await h.policy())?.resumedAt, new Date(h.clock.now()).toISOString());
  // The errors' window (10 s) still holds figures of the paused period: nothing yet.
  await h.engine.tick();
  h.clock.advance(9_000);
  await h.engine.tick();
  assert.deepEqual(h.calls, []);
  assert.equal((await h.events("Remediation")).length, 0);
  // A whole window after the resume, its figures are the app's own again.
  h.clock.advance(1_000);
  await h.engine.tick();
  assert.deepEqual(h.calls, ["rollback shop v1"]);
});

test("after a resume every window the engine reads starts at the resume at the earliest", () => {
  const asked: number[] = [];
  const load = {
    service: (_key: string, windowMs: number) => {
      asked.push(windowMs);
      return undefined;
    },
    instances: (_key: string, windowMs: number) => {
      asked.push(windowMs);
      return [];
    },
  };
  const cut = loadSince(load, 100_000, 88_000);
  cut.service(WEB, 10_000);
  cut.service(WEB, 60_000);
  cut.instances(WEB, 30_000);
  assert.deepEqual(asked, [10_000, 12_000, 12_000]);
});

test("over the hourly budget a decision is recorded as held back and not applied", async () => {
  const h = await setup();
  await updatePolicy(h.store, h.clock, "t", "shop", { budgetPerHour: 0 });
  h.badRelease();
  await h.engine.tick();
  assert.deepEqual(h.calls, []);
  const [ev] = await h.events("Remediation");
  assert.match(ev.message, /rollback v2 → v1 \(held back: budget of 0 changes per hour used\)/);
});

test("a change that fails is recorded with its error", async () => {
  const h = await setup();
  const engine = new RemediationEngine({
    ctx: h.ctx,
    act: {
      rollback: async () => {
        throw new Error("no release before v2");
      },
      scale: async () => {},
    },
  });
  h.badRelease();
  await engine.tick();
  assert.equal((await h.policy())!.decisions[0].applied, "failed: no release before v2");
  assert.match((await h.events("Remediation"))[0].message, /\(failed: no release before v2\)/);
});

test("throttle while scaling: the low service's concurrency is lowered, then restored when capacity serves", async () => {
  const h = await setup({ criticality: "critical" });
  await h.store.put("service", "t/shop/batch", h.service("batch", "low"));
  h.load
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 20 })
    .setService("t/shop/batch", { requests: 100, rps: 10, inflight: 10 });
  await h.engine.tick();
  assert.deepEqual(h.calls, ["scale web 4"]);
  const batch = async () => (await h.store.get<Service>("service", "t/shop/batch"))!.value;
  assert.deepEqual((await batch()).traffic, { concurrency: 5 });
  assert.equal((await h.policy())!.throttles.length, 1);
  // Still saturated and the new instances not running (the fake scale wrote nothing): kept.
  h.clock.advance(1000);
  await h.engine.tick();
  assert.deepEqual((await batch()).traffic, { concurrency: 5 });
  // Capacity serves (4 running of 4) and the overload is gone: restored.
  const web = (await h.store.get<Service>("service", WEB))!;
  await h.store.put("service", WEB, { ...web.value, instances: 2 });
  h.load.clear(WEB);
  h.clock.advance(1000);
  await h.engine.tick();
  assert.equal((await batch()).traffic, undefined);
  assert.equal((await h.policy())!.throttles.length, 0);
  assert.match(
    (await h.events("RemediationRestored"))[0].message,
    /batch's concurrency is back to herd.yaml's/,
  );
});

test("a throttle is lifted once the new capacity serves and the last 2 s show no queue, before the 10 s average forgets", async () => {
  const h = await setup({ criticality: "critical" });
  await h.store.put("service", "t/shop/batch", h.service("batch", "low"));
  h.load
    .setService(WEB, { requests: 120, rps: 60, inflight: 40 }, 2_000)
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 20 })
    .setService("t/shop/batch", { requests: 100, rps: 10, inflight: 10 });
  await h.engine.tick();
  assert.deepEqual(h.calls, ["scale web 4"]);
  const batch = async () => (await h.store.get<Service>("service", "t/shop/batch"))!.value;
  assert.deepEqual((await batch()).traffic, { concurrency: 5 });
  // Capacity serves (the fake scale wrote nothing: 2 of 2 running) and the queue is gone from the
  // last 2 s, while the 10 s average still holds it: lifted now, not in 10 s.
  const web = (await h.store.get<Service>("service", WEB))!;
  await h.store.put("service", WEB, { ...web.value, instances: 2 });
  h.load.setService(WEB, { requests: 120, rps: 60, inflight: 4 }, 2_000);
  h.clock.advance(1000);
  await h.engine.tick();
  assert.equal((await batch()).traffic, undefined);
});

test("an outcome is judged on the figures after the change: the window is cut to half the wait", () => {
  const rule = {
    name: "errors",
    symptom: "error-rate" as const,
    windowS: 10,
    actions: ["rollback" as const],
  };
  assert.equal(outcomeRule(rule, 60_000).windowS, 10);
  assert.equal(outcomeRule(rule, 10_000).windowS, 5);
  assert.equal(outcomeRule(rule, 1_000).windowS, 2);
});

test("a service throttled twice keeps the override it had before the first throttle", () => {
  const first = { service: "batch", for: "web", previous: {}, since: "2026-01-01T00:00:00.000Z" };
  const again = {
    service: "batch",
    for: "web",
    previous: { concurrency: 5 },
    since: "2026-01-01T00:01:00.000Z",
  };
  const other = {
    service: "jobs",
    for: "web",
    previous: { concurrency: 20 },
    since: "2026-01-01T00:01:00.000Z",
  };
  assert.deepEqual(mergeThrottles([first], [again, other]), [
    { ...again, previous: {}, since: first.since },
    other,
  ]);
});

test("a critical and a low service both saturated: the critical one is scaled out and the low one throttled, never scaled out", async () => {
  const h = await setup({ criticality: "critical" });
  await h.store.put("service", "t/shop/batch", h.service("batch", "low"));
  for (const id of ["c", "d"]) {
    const a = (await h.store.get<Instance>("instance", "a"))!.value;
    await h.store.put<Instance>("instance", id, { ...a, id, service: "batch" });
  }
  // Both saturated, both with rising load; batch comes first in the store's order.
  h.load
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 20 })
    .setService("t/shop/batch", { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService("t/shop/batch", { requests: 1200, rps: 20, inflight: 20 });
  await h.engine.tick();
  assert.deepEqual(h.calls, ["scale web 4"]);
  const batch = async () => (await h.store.get<Service>("service", "t/shop/batch"))!.value;
  assert.deepEqual((await batch()).traffic, { concurrency: 20 });
  // Throttled for web, batch stays saturated on purpose: no scale-out of its own on later passes.
  h.clock.advance(200_000);
  await h.engine.tick();
  assert.ok(!h.calls.some((c) => c.startsWith("scale batch")), String(h.calls));
});

test("without a machine provider the engine scales out only onto room today's nodes have; with one it asks for all", async () => {
  // Room for web's two instances (the default request each) and one more.
  const h = await setup({ criticality: "critical", nodeCpu: 3 * DEFAULT_RESOURCES.cpu });
  h.load
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 20 });
  await h.engine.tick();
  assert.deepEqual(h.calls, ["scale web 3"]);
  const [decision] = await h.events("Remediation");
  assert.match(decision.message, /scale-out web 2 → 3/);
  // The same with a provider that adds nodes: the whole ask (pending instances bring machines).
  const p = await setup({ criticality: "critical", nodeCpu: 3 * DEFAULT_RESOURCES.cpu });
  p.ctx.settings = { ...p.ctx.settings, machineProvider: true };
  p.load
    .setService(WEB, { requests: 600, rps: 60, inflight: 40 }, 10_000)
    .setService(WEB, { requests: 1200, rps: 20, inflight: 20 });
  await p.engine.tick();
  assert.deepEqual(p.calls, ["scale web 4"]);
});

test("degrade: a failing dependency switches the caller's fallback routes on; calls succeeding again switch them back", async () => {
  const h = await setup();
  const web = (await h.store.get<Service>("service", WEB))!.value;
  const fallback = { status: 200, body: "[]", contentType: "application/json" };
  await h.store.put<Service>("service", WEB, {
    ...web,
    spec: { ...web.spec, routes: [{ host: "shop.test", path: "/recs", fallback }] },
  });
  let edges: CallEdge[] = [{ from: "shop/web", to: "shop/recs", calls: 40, errors: 40, errorRate: 1 }];
  const asked: number[] = [];
  const engine = new RemediationEngine({
    ctx: h.ctx,
    act: { rollback: async () => {}, scale: async () => {} },
    calls: async (_tenant, fromUs) => {
      asked.push(fromUs / 1000);
      return edges;
    },
  });
  await updatePolicy(h.store, h.clock, "t", "shop", {
    rules: [{ name: "deps", symptom: "error-rate", actions: ["degrade"], cooldownS: 5 }],
  });
  h.load.setService(WEB, { requests: 200, errors: 150 });
  await engine.tick();
  const [decided] = await h.events("Remediation");
  assert.match(
    decided.message,
    /^deps: degrade web: web's calls to shop\/recs fail: its 1 route\(s\) with a fallback answer it until they succeed again/,
  );
  assert.ok(decided.details?.includes("spans shop/web → shop/recs: 40 of 40 calls failed (100%)"));
  const switchedAt = h.clock.now();
  const traffic = async () => (await h.store.get<Service>("service", WEB))!.value.traffic;
  assert.deepEqual(await traffic(), { fallback: true });
  assert.deepEqual((await h.policy())!.degraded, [
    { service: "web", dependencies: ["shop/recs"], since: new Date(switchedAt).toISOString() },
  ]);
  // The fallback answers: the error rate is gone, but the probes' calls still fail: kept.
  h.load.setService(WEB, { requests: 200, errors: 2 });
  edges = [{ from: "shop/web", to: "shop/recs", calls: 5, errors: 5, errorRate: 1 }];
  h.clock.advance(2000);
  asked.length = 0;
  await engine.tick();
  assert.deepEqual(await traffic(), { fallback: true });
  assert.deepEqual(asked, [switchedAt], "the calls looked at start at the switch");
  // Too few calls to tell: kept.
  edges = [{ from: "shop/web", to: "shop/recs", calls: 2, errors: 0, errorRate: 0 }];
  h.clock.advance(1000);
  await engine.tick();
  assert.deepEqual(await traffic(), { fallback: true });
  // The probes' calls succeed: switched back.
  edges = [{ from: "shop/web", to: "shop/recs", calls: 6, errors: 0, errorRate: 0 }];
  h.clock.advance(1000);
  await engine.tick();
  assert.equal(await traffic(), undefined);
  assert.equal((await h.policy())!.degraded, undefined);
  const [restored] = await h.events("RemediationRestored");
  assert.match(
    restored.message,
    /web's routes are served by web again, no longer their fallback: its calls succeed again: 0 of 6 calls to shop\/recs failed \(0%\)/,
  );
});

test("the outcome of a restart or a replace says what became of the instance", async () => {
  const h = await setup();
  const view = {
    tenant: "t",
    app: "shop",
    now: 0,
    appRelease: 2,
    releases: [],
    services: [
      {
        name: "web",
        release: 2,
        instances: 3,
        running: 3,
        state: "running" as const,
        crashes: 0,
        spec: { mode: "pet" as const, routes: [] },
      },
    ],
    instances: [
      { id: "p", service: "web", release: 2, node: "n1", state: "running" as const, mode: "pet" as const },
    ],
    nodes: [],
    alerts: [],
    calls: [],
    load: h.load,
  };
  const d = {
    id: "x",
    at: "",
    rule: "errors",
    symptom: "error-rate" as const,
    service: "web",
    target: "p",
    reason: "",
    evidence: [],
    dryRun: false,
  };
  assert.deepEqual(instanceOutcome({ ...d, action: "restart" }, view), [
    "pet p is running again on n1",
    "web runs 3 of 3",
  ]);
  assert.deepEqual(instanceOutcome({ ...d, action: "replace", target: "c" }, view), [
    "c is gone",
    "web runs 3 of 3",
  ]);
  assert.deepEqual(instanceOutcome({ ...d, action: "rollback" }, view), []);
});

test("restart a pet: a dry run changes nothing; then restarted in place once, with the cooldown holding a second", async () => {
  const h = await setup();
  for (const id of ["a", "b", "c"]) {
    const a = (await h.store.get<Instance>("instance", "a"))!.value;
    await h.store.put<Instance>("instance", id, { ...a, id, mode: "pet", generation: 1 });
  }
  const web = (await h.store.get<Service>("service", WEB))!.value;
  await h.store.put<Service>("service", WEB, { ...web, instances: 3 });
  // An old release (no rollback), one pet far worse than the other two.
  const r2 = (await h.store.get<Release>("release", "t/shop/00000002"))!.value;
  await h.store.put<Release>("release", "t/shop/00000002", {
    ...r2,
    createdAt: new Date(h.clock.now() - 7_200_000).toISOString(),
  });
  h.load.setService(WEB, { requests: 300, errors: 50 }).setInstances(WEB, [
    { instance: "a", release: 2, requests: 100, errors: 50 },
    { instance: "b", release: 2, requests: 100, errors: 0 },
    { instance: "c", release: 2, requests: 100, errors: 0 },
  ]);
  const generation = async () => (await h.store.get<Instance>("instance", "a"))!.value.generation;
  await updatePolicy(h.store, h.clock, "t", "shop", { dryRun: true });
  await h.engine.tick();
  const [dry] = await h.events("Remediation");
  assert.match(
    dry.message,
    /^errors: restart a \(dry run: nothing changed\): pet a is far worse than its 2 peers/,
  );
  assert.equal(await generation(), 1);

  await updatePolicy(h.store, h.clock, "t", "shop", { dryRun: false });
  // The dry run's decision cools down like any other (not repeated every second).
  h.clock.advance(1000);
  await h.engine.tick();
  assert.equal(await generation(), 1);
  h.clock.advance(120_000);
  await h.engine.tick();
  assert.equal(await generation(), 2);
  const restarted = (await h.events("Remediation")).find((e) => !e.message.includes("dry run"));
  assert.match(restarted?.message ?? "", /^errors: restart a: pet a is far worse/);
  assert.equal((await h.events("Restarting")).length, 1);
  // Still bad a second later (figures of before the restart): the change needs time to show, no second restart.
  const a = (await h.store.get<Instance>("instance", "a"))!.value;
  await h.store.put<Instance>("instance", "a", { ...a, state: "running" });
  h.clock.advance(1000);
  await h.engine.tick();
  assert.equal(await generation(), 2);
  assert.equal((await h.policy())!.decisions.filter((d) => d.applied === "applied").length, 1);
});
