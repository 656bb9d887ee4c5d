// Service discovery's registry: a service's healthy endpoints (running, on a
// ready node) with weights and metadata; a watch with the version cursor
// returns when the list changes (an instance added, a node not ready), not
// before. The list and watch logic runs over a MemoryStore (the server's
// controllers would move these hand-made instances); the route, its
// permission, tenancy and bad input over a real socket.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { testInstance, testNode, testService } from "../gateway/testing.ts";
import type { Service } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { type EndpointList, ServiceEndpoints } from "./service-endpoints.ts";
import { apiCall } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-discovery-"));
let server: RunningServer;
let tokens: TestTokens;
const PATH = "/apps/shop/services/web/endpoints?tenant=a";
const store = new MemoryStore();
const stop = new AbortController();
const registry = new ServiceEndpoints(store, stop.signal, () => {});
const never = new AbortController().signal;
const get = (app: string, since?: number, timeoutMs = 10_000, tenant = "a") =>
  registry.get(tenant, app, "web", since, timeoutMs, never) as Promise<EndpointList>;

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  await server.store.put("service", "a/shop/web", { ...testService("a", "shop", "web", []), instances: 0 });
  await store.put("node", "n1", testNode("n1", "10.0.0.1"));
  await store.put("node", "n2", testNode("n2", "10.0.0.2"));
  await store.put("service", "a/shop/web", testService("a", "shop", "web", []));
  const tenantA = { tenant: "a", app: "shop", service: "web" };
  await store.put("instance", "w1", testInstance("w1", tenantA, "n1", 20001));
  await store.put("instance", "w2", testInstance("w2", tenantA, "n2", 20002));
  await store.put("instance", "w3", testInstance("w3", tenantA, "n1", undefined, "provisioning"));
});
after(async () => {
  stop.abort();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("lists running instances on ready nodes with weights and metadata", async () => {
  const res = { body: await get("shop") };
  assert.equal(res.body.app, "shop");
  assert.equal(res.body.service, "web");
  assert.ok(res.body.version > 0);
  assert.deepEqual(
    res.body.endpoints.map((e: { instance: string; address: string; port: number; weight: number }) => [
      e.instance,
      e.address,
      e.port,
      e.weight,
    ]),
    [
      ["w1", "10.0.0.1", 20001, 50],
      ["w2", "10.0.0.2", 20002, 50],
    ],
  );
  assert.deepEqual(res.body.endpoints[0].metadata, { node: "n1", release: 1, labels: {} });
});

test("a watch returns when the list changes, with a newer version; an unchanged list waits its timeout", async () => {
  const first = await get("shop");
  const idle = await get("shop", first.version, 200);
  assert.equal(idle.version, first.version);
  // A write that changes nothing the registry shows (a message) wakes nobody.
  let woken = false;
  const watch = get("shop", first.version).then((list) => {
    woken = true;
    return list;
  });
  const w3 = testInstance(
    "w3",
    { tenant: "a", app: "shop", service: "web" },
    "n1",
    undefined,
    "provisioning",
  );
  await store.put("instance", "w3", { ...w3, message: "pulling" });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(woken, false, "a change the list does not show wakes no watch");
  await store.put("instance", "w3", { ...w3, state: "running", port: 20003 });
  const changed = await watch;
  assert.ok(changed.version > first.version);
  assert.deepEqual(
    changed.endpoints.map((e: { instance: string }) => e.instance),
    ["w1", "w2", "w3"],
  );
  // A node that stops being ready takes its instances out.
  const next = get("shop", changed.version);
  await store.put("node", "n1", { ...testNode("n1", "10.0.0.1"), state: "not_ready" });
  assert.deepEqual(
    (await next).endpoints.map((e: { instance: string }) => e.instance),
    ["w2"],
  );
});

test("during a canary each release's share is split over its endpoints", async () => {
  await store.put("service", "b/api/web", {
    ...testService("b", "api", "web", []),
    release: 2,
    progressive: { release: 2, weight: 20 } as Service["progressive"],
  });
  const target = { tenant: "b", app: "api", service: "web" };
  await store.put("instance", "o1", testInstance("o1", target, "n2", 21001));
  await store.put("instance", "o2", testInstance("o2", target, "n2", 21002));
  await store.put("instance", "n1x", { ...testInstance("n1x", target, "n2", 21003), release: 2 });
  // The registry applies the watch's events a moment after the writes.
  let list: EndpointList | undefined;
  while ((list?.endpoints.length ?? 0) < 3) {
    if (list === undefined) await new Promise((r) => setTimeout(r, 10));
    list = await get("api", list?.version, 1000, "b");
  }
  assert.deepEqual(
    list?.endpoints.map((e: { instance: string; weight: number }) => [e.instance, e.weight]),
    [
      ["n1x", 20],
      ["o1", 40],
      ["o2", 40],
    ],
  );
});

test("the route: apps:read in the service's tenant, 404 for an unknown service, 400 naming the field", async () => {
  const ok = await apiCall(server, "GET", PATH, undefined, { token: tokens.viewerA });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body.endpoints, []);
  assert.equal(typeof ok.body.version, "number");
  // viewer-a is no member of b; the agent and gateway credentials read no app.
  assert.equal(
    (
      await apiCall(server, "GET", "/apps/api/services/web/endpoints?tenant=b", undefined, {
        token: tokens.viewerA,
      })
    ).status,
    403,
  );
  assert.equal((await apiCall(server, "GET", PATH, undefined, { token: tokens.agentN1 })).status, 403);
  const missing = await apiCall(server, "GET", "/apps/shop/services/nope/endpoints?tenant=a");
  assert.equal(missing.status, 404);
  assert.match(missing.body.message, /no service nope in tenant a/);
  const bad = await apiCall(server, "GET", `${PATH}&since=-1`);
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /since/);
  const long = await apiCall(server, "GET", `${PATH}&since=1&timeoutMs=999999`);
  assert.equal(long.status, 400);
  assert.match(long.body.message, /timeoutMs/);
});
