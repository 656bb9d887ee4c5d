// The autoscaler against an in-memory store, a manual clock and a small
// in-memory LoadFigures: figures in, Service counts, events and status out.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { LoadFigures, ServiceFigures } from "../model/load.ts";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import type { App, Event, Instance, Service, Tenant } from "../model/objects.ts";
import { Autoscaler } from "./autoscale.ts";
import { answerValue } from "./autoscale-query.ts";
import { scaleServices } from "./scale.ts";
import { testContext } from "./testing.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Figures the test sets: one constant rate per window length, as a gateway recorder would report. */
class TestLoad implements LoadFigures {
  readonly figures = new Map<number, Partial<ServiceFigures>>();
  service(_key: string, windowMs: number): ServiceFigures | undefined {
    const f = this.figures.get(windowMs);
    if (!f) return undefined;
    return {
      rps: 0,
      errorRate: 0,
      requests: 0,
      errors: 0,
      shed: 0,
      inflight: 0,
      waiting: 0,
      coveredMs: windowMs,
      ...f,
    };
  }
  instances() {
    return [];
  }
}

async function setup(autoscale: string, instances = 1) {
  const dir = mkdtempSync(join(tmpdir(), "herd-autoscale-"));
  dirs.push(dir);
  const load = new TestLoad();
  const { ctx, store, clock } = testContext(dir, { load });
  const m = parseManifest(`app: shop
services:
  web:
    command: node server.js
    instances: ${instances}
    autoscale: ${autoscale}
`);
  const spec = normalizeService("shop", "web", m.services.web, undefined);
  await store.put<Tenant>("tenant", "default", { name: "default", createdAt: new Date().toISOString() });
  await store.put<App>("app", "default/shop", {
    tenant: "default",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  });
  await store.put<Service>("service", "default/shop/web", {
    tenant: "default",
    app: "shop",
    name: "web",
    release: 1,
    spec,
    instances: spec.instances,
    state: "running",
    message: "",
    crashes: 0,
  });
  const scaler = new Autoscaler(ctx);
  const count = async () => (await store.get<Service>("service", "default/shop/web"))!.value.instances;
  const events = async () => (await store.list<Event>("event")).items.map((o) => o.value);
  return { store, clock, load, ctx, scaler, count, events };
}

test("a load step scales out on the next round, with an Autoscaled event that carries the figures", async () => {
  const h = await setup("{ min: 1, max: 20, target: { rps: 10 }, stableWindow: 60s, panicWindow: 6s }");
  h.load.figures.set(60_000, { rps: 10, lastRequestAt: h.clock.now() });
  h.load.figures.set(6_000, { rps: 10, lastRequestAt: h.clock.now() });
  await h.scaler.tick();
  assert.equal(await h.count(), 1);
  h.load.figures.set(6_000, { rps: 43, lastRequestAt: h.clock.now() });
  h.clock.advance(1000);
  await h.scaler.tick();
  assert.equal(await h.count(), 5);
  const e = (await h.events()).find((x) => x.reason === "Autoscaled");
  assert.ok(e);
  assert.match(e.message, /^web scaled from 1 to 5: panic: the last 6s ask for 5/);
  assert.ok(
    e.details?.some((l) => /^panic 6s: 43 rps → 5$/.test(l)),
    JSON.stringify(e.details),
  );
  const [s] = await h.scaler.status("default", "shop");
  assert.equal(s.mode, "panic");
  assert.equal(s.instances, 5);
  assert.equal(s.panicWant, 5);
  assert.equal(s.decisions.length, 1);
  assert.equal(s.decisions[0].to, 5);
});

test("min 0: idle for idleAfter → zero instances; without gateway figures it never goes to zero", async () => {
  const h = await setup("{ min: 0, max: 3, target: { concurrency: 5 }, idleAfter: 10s }");
  const start = h.clock.now();
  h.load.figures.set(60_000, { lastRequestAt: start });
  h.load.figures.set(6_000, { lastRequestAt: start });
  await h.scaler.tick();
  for (let i = 0; i < 9; i++) {
    h.clock.advance(1000);
    await h.scaler.tick();
  }
  assert.equal(await h.count(), 1);
  h.clock.advance(1000);
  await h.scaler.tick();
  assert.equal(await h.count(), 1, "idle is confirmed for 2 s first");
  h.clock.advance(2000);
  await h.scaler.tick();
  assert.equal(await h.count(), 0);
  const [s] = await h.scaler.status("default", "shop");
  assert.equal(s.mode, "idle");
  assert.match(s.decisions.at(-1)!.reason, /^idle: no request for 12s \(idleAfter 10s\)/);

  const blind = await setup("{ min: 0, max: 3, target: { concurrency: 5 }, idleAfter: 10s }");
  blind.ctx.load = undefined;
  for (let i = 0; i < 20; i++) {
    blind.clock.advance(1000);
    await blind.scaler.tick();
  }
  assert.equal(await blind.count(), 1);
});

test("a scale over the tenant's quota is refused once as an event and the count stays", async () => {
  const h = await setup("{ min: 1, max: 20, target: { rps: 10 } }");
  const t = (await h.store.get<Tenant>("tenant", "default"))!;
  await h.store.put<Tenant>("tenant", "default", { ...t.value, quota: { units: 2 } });
  h.load.figures.set(60_000, { rps: 100 });
  h.load.figures.set(6_000, { rps: 100 });
  for (let i = 0; i < 3; i++) {
    h.clock.advance(1000);
    await h.scaler.tick();
  }
  assert.equal(await h.count(), 1);
  const refused = (await h.events()).filter((e) => e.reason === "AutoscaleRefused");
  assert.equal(refused.length, 1, "one event per distinct problem");
  assert.match(refused[0].message, /could not scale from 1 to 5 .*over its quota/);
  const [s] = await h.scaler.status("default", "shop");
  assert.match(s.decisions.at(-1)!.problem ?? "", /quota/);
});

test("cpu target: the agents' usage per instance over the cores it asked for", async () => {
  const h = await setup("{ min: 1, max: 10, target: { cpu: 50% } }", 2);
  for (const id of ["a", "b"]) {
    await h.store.put("instance", `default/shop/${id}`, {
      id,
      tenant: "default",
      app: "shop",
      service: "web",
      release: 1,
      node: "n1",
      desired: "running",
      state: "running",
      run: { resources: { cpu: 0.25, memory: 1 } },
    } as unknown as Instance);
  }
  // Each instance uses 0.25 cores of its 0.25: share 2.0 in all, 50 % each → 4 instances.
  const scaler = new Autoscaler(h.ctx, { cpuCores: () => 0.25 });
  h.clock.advance(1000);
  await scaler.tick();
  assert.equal(await h.count(), 4);
});

test("herd scale on an autoscaled service is kept inside [min, max], with a warning", async () => {
  const h = await setup("{ min: 2, max: 4, target: { rps: 10 } }");
  const deps = { store: h.store, events: h.ctx.events, unit: h.ctx.settings.unit };
  const r = await scaleServices(deps, { tenant: "default", app: "shop", services: { web: 9 } });
  assert.equal(r.items[0].instances, 4);
  assert.match(r.warnings[0], /web is autoscaled between 2 and 4: 9 became 4; the autoscaler may change it/);
  const inside = await scaleServices(deps, { tenant: "default", app: "shop", services: { web: 3 } });
  assert.equal(inside.items[0].instances, 3);
  assert.match(inside.warnings[0], /^web is autoscaled between 2 and 4; the autoscaler may change it$/);
});

test("a query answer reads as one number: a scalar, or a vector's sum", () => {
  assert.equal(answerValue({ resultType: "scalar", result: [1, "7"] }), 7);
  assert.equal(
    answerValue({
      resultType: "vector",
      result: [{ value: [1, "2"] }, { value: [1, "3.5"] }],
    }),
    5.5,
  );
  assert.equal(answerValue({ resultType: "vector", result: [] }), undefined);
});

test("a restarted autoscaler keeps the scale-down delay and the last decisions from the store", async () => {
  const h = await setup(
    "{ min: 1, max: 20, target: { rps: 10 }, stableWindow: 10s, panicWindow: 6s, scaleDownDelay: 60s }",
  );
  const step = async (scaler: Autoscaler, seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      h.clock.advance(1000);
      await scaler.tick();
    }
  };
  const rps = (n: number) => {
    h.load.figures.set(10_000, { rps: n, lastRequestAt: h.clock.now() });
    h.load.figures.set(6_000, { rps: n, lastRequestAt: h.clock.now() });
  };
  rps(40);
  await step(h.scaler, 20);
  assert.equal(await h.count(), 4);
  // Load drops at 20 s: the delay holds 4 until 80 s.
  rps(10);
  await step(h.scaler, 10);
  assert.equal(await h.count(), 4);
  // kill -9 at 30 s: the old autoscaler is gone without a word; a new one starts on the same store.
  const stored = (await h.store.get<{ mem: { wants: unknown[] } }>("autoscale_state", "default/shop/web"))!;
  assert.ok(stored.value.mem.wants.length <= 2, JSON.stringify(stored.value.mem.wants));
  const again = new Autoscaler(h.ctx);
  await step(again, 1);
  const [s] = await again.status("default", "shop");
  assert.deepEqual(
    s.decisions.map((d) => [d.from, d.to]),
    [[1, 4]],
    "the decisions from before the restart",
  );
  await step(again, 48);
  assert.equal(await h.count(), 4, "still inside the scale-down delay at 79 s");
  // At 80 s the delay of the wants seen before the restart is over (a fresh memory would hold until 90 s).
  await step(again, 2);
  assert.equal(await h.count(), 2);
  const [after] = await again.status("default", "shop");
  assert.deepEqual(after.decisions.at(-1)?.to, 2);
});

test("a restarted autoscaler keeps the idle timer; states of services no longer autoscaled are dropped", async () => {
  const h = await setup("{ min: 0, max: 3, target: { concurrency: 5 }, idleAfter: 30s }");
  const start = h.clock.now();
  h.load.figures.set(60_000, { lastRequestAt: start });
  h.load.figures.set(6_000, { lastRequestAt: start });
  for (let i = 0; i < 20; i++) {
    h.clock.advance(1000);
    await h.scaler.tick();
  }
  assert.equal(await h.count(), 1);
  // Restarted at 20 s: the gateways' figures come back without the last request (it is the store's now).
  h.load.figures.set(60_000, {});
  h.load.figures.set(6_000, {});
  const again = new Autoscaler(h.ctx);
  for (let i = 0; i < 11; i++) {
    h.clock.advance(1000);
    await again.tick();
  }
  assert.equal(await h.count(), 1, "at 31 s idle holds, confirmed for 2 s first");
  h.clock.advance(2000);
  await again.tick();
  assert.equal(await h.count(), 0, "idle 30 s after the last request, not 30 s after the restart");
  // A service no longer autoscaled: its state goes, also one left from a service gone while away.
  await h.store.put("autoscale_state", "default/gone/web", { mem: {}, decisions: [], savedAt: 0 });
  const svc = (await h.store.get<Service>("service", "default/shop/web"))!.value;
  const { autoscale: _, ...spec } = svc.spec;
  await h.store.put<Service>("service", "default/shop/web", { ...svc, spec });
  await new Autoscaler(h.ctx).tick();
  assert.deepEqual((await h.store.list("autoscale_state")).items, []);
});
