import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { ManualClock } from "../common/clock.ts";
import { silentLogger } from "../common/log.ts";
import { EventRecorder } from "../controllers/events.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Service } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { DependencyDrift } from "./dependency-drift.ts";

test("a new finding is one warning event and a gauge until it goes; a finding that stays is not repeated", async () => {
  const store = new MemoryStore();
  const events = new EventRecorder(store, new ManualClock(), silentLogger);
  const registry = new Registry();
  await store.put("tenant", "t", { name: "t", createdAt: "2026-01-01T00:00:00Z" });
  for (const [name, dependsOn] of [
    ["web", ["api"]],
    ["api", []],
  ] as const) {
    const svc = {
      tenant: "t",
      app: "shop",
      name,
      spec: normalizeService("shop", name, { command: "x", dependsOn: [...dependsOn] }, undefined),
    };
    await store.put("service", `t/shop/${name}`, svc as unknown as Service);
  }
  let calls = [
    { from: "shop/web", to: "shop/api" },
    { from: "shop/api", to: "shop/web" },
  ];
  const drift = new DependencyDrift({
    store,
    events,
    registry,
    logger: silentLogger,
    calls: async () => calls,
  });
  await drift.check();
  await drift.check();
  // Both come in the same millisecond: their order in the list is not defined.
  const reasons = (await events.list({ tenant: "t" })).map((e) => e.reason).sort();
  assert.deepEqual(reasons, ["UndeclaredDependency", "UndeclaredDependencyCycle"]);
  const text = await registry.metrics();
  assert.match(
    text,
    /herd_dependency_drift\{tenant="t",app="shop",kind="undeclared-cycle",from="shop\/api",to="shop\/web"\} 1/,
  );
  calls = [{ from: "shop/web", to: "shop/api" }];
  await drift.check();
  assert.doesNotMatch(await registry.metrics(), /kind="undeclared/);
});
