// Changes applied to a memory store: what each action writes.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { normalizeService } from "../../model/manifest.ts";
import type { Event, Instance, Node, Service } from "../../model/objects.ts";
import { DEFAULT_SETTINGS } from "../context.ts";
import { testContext } from "../testing.ts";
import { type Actuators, applyChange, restoreDegrade, restoreThrottle } from "./act.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-remedy-act-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function setup() {
  const { ctx, store, clock } = testContext(dir);
  const act: Actuators = { rollback: async () => {}, scale: async () => {} };
  return { store, clock, ctx, act };
}

const instance = (id: string): Instance => ({
  id,
  tenant: "t",
  app: "shop",
  service: "web",
  release: 1,
  mode: "cattle",
  node: "n1",
  desired: "running",
  generation: 0,
  state: "running",
  reason: "",
  message: "",
  run: {} as Instance["run"],
  restarts: 0,
  createdAt: new Date(0).toISOString(),
});

const service = (name: string, extra: Partial<Service> = {}): Service => ({
  tenant: "t",
  app: "shop",
  name,
  release: 1,
  spec: normalizeService("shop", name, { command: "x", concurrency: 50 }, undefined),
  instances: 2,
  state: "running",
  message: "",
  crashes: 0,
  ...extra,
});

test("replace: the instance leaves the gateway now and stops after the drain; the controller replaces it", async () => {
  const h = setup();
  await h.store.put("instance", "a", instance("a"));
  await applyChange(
    h.ctx,
    h.act,
    "t",
    "shop",
    { kind: "replace", service: "web", instance: "a" },
    "errors: a fails",
  );
  const a = (await h.store.get<Instance>("instance", "a"))!.value;
  assert.equal(a.desired, "stopped");
  assert.equal(a.state, "draining");
  assert.equal(a.drainUntil, new Date(h.clock.now() + DEFAULT_SETTINGS.drainMs).toISOString());
  assert.match(a.message, /replaced by the remediation engine: errors: a fails/);
  const events = await h.ctx.events.list({ tenant: "t", app: "shop" });
  assert.deepEqual(
    events.map((e: Event) => [e.reason, e.instance]),
    [["Replaced", "a"]],
  );
  // Already stopping: nothing to replace, and the decision says so.
  await assert.rejects(
    applyChange(h.ctx, h.act, "t", "shop", { kind: "replace", service: "web", instance: "a" }, "again"),
    /no longer running/,
  );
});

test("restart: a pet gets a new generation in place (same id, node and data), out of the gateway until healthy", async () => {
  const h = setup();
  await h.store.put("instance", "p", { ...instance("p"), mode: "pet", generation: 3, restarts: 1 });
  const made = await applyChange(
    h.ctx,
    h.act,
    "t",
    "shop",
    { kind: "restart", service: "web", instance: "p" },
    "errors: p fails",
  );
  assert.deepEqual(made, { throttles: [] });
  const p = (await h.store.get<Instance>("instance", "p"))!.value;
  assert.equal(p.generation, 4);
  assert.equal(p.restarts, 2);
  assert.equal(p.state, "provisioning");
  assert.equal(p.desired, "running");
  assert.equal(p.node, "n1");
  assert.equal(p.reason, "Restarting");
  const events = await h.ctx.events.list({ tenant: "t", app: "shop" });
  assert.deepEqual(
    events.map((e: Event) => [e.reason, e.instance]),
    [["Restarting", "p"]],
  );
  assert.match(
    events[0].message,
    /restarting pet p in place \(generation 4\) for the remediation engine: errors: p fails/,
  );
  await h.store.put("instance", "p", { ...p, desired: "stopped" });
  await assert.rejects(
    applyChange(h.ctx, h.act, "t", "shop", { kind: "restart", service: "web", instance: "p" }, "again"),
    /no longer running/,
  );
});

test("cordon: the node takes nothing new; degrade: the fallback switch and back; throttle and its restore", async () => {
  const h = setup();
  await h.store.put<Node>("node", "n1", { name: "n1", schedulable: true } as Node);
  await applyChange(h.ctx, h.act, "t", "shop", { kind: "cordon", node: "n1" }, "errors: all fail on n1");
  assert.equal((await h.store.get<Node>("node", "n1"))!.value.schedulable, false);

  await h.store.put("service", "t/shop/web", service("web", { traffic: { concurrency: 9 } }));
  const made = await applyChange(
    h.ctx,
    h.act,
    "t",
    "shop",
    { kind: "degrade", service: "web", dependencies: ["shop/pay"] },
    "calls to pay fail",
  );
  assert.deepEqual(made.degraded, {
    service: "web",
    dependencies: ["shop/pay"],
    since: new Date(h.clock.now()).toISOString(),
  });
  assert.deepEqual((await h.store.get<Service>("service", "t/shop/web"))!.value.traffic, {
    concurrency: 9,
    fallback: true,
  });
  await restoreDegrade(h.ctx, "t", "shop", made.degraded!);
  assert.deepEqual((await h.store.get<Service>("service", "t/shop/web"))!.value.traffic, { concurrency: 9 });

  await h.store.put("service", "t/shop/batch", service("batch", { traffic: { concurrency: 20 } }));
  const {
    throttles: [t],
  } = await applyChange(
    h.ctx,
    h.act,
    "t",
    "shop",
    { kind: "throttle", throttle: [{ service: "batch", concurrency: 3, previous: 20 }] },
    "web overloaded",
  );
  assert.deepEqual((await h.store.get<Service>("service", "t/shop/batch"))!.value.traffic, {
    concurrency: 3,
  });
  await restoreThrottle(h.ctx, "t", "shop", t);
  assert.deepEqual((await h.store.get<Service>("service", "t/shop/batch"))!.value.traffic, {
    concurrency: 20,
  });
});
