// The control-plane API over a real socket: auth, OpenAPI, validation errors,
// 404 and 409, the admin token file.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Run } from "../model/job.ts";
import type { Instance, Service } from "../model/objects.ts";
import { removalBlockers } from "./routes/cluster.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-api-"));

before(async () => {
  // Quotas below count in a unit of 0.25 CPU + 256 MiB (herd's default unit is 0.1 CPU).
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    settings: { unit: { cpu: 0.25, memory: 256 * 1024 ** 2 } },
  });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, token = server.adminToken) =>
  apiCall(server, method, path, body, { token });

test("the admin token file is private and only its hash is stored", async () => {
  assert.equal(statSync(server.adminTokenFile).mode & 0o777, 0o600);
  const tokens = await server.store.list("token");
  assert.equal(tokens.items.length, 1);
  assert.notEqual(tokens.items[0].key, server.adminToken);
  assert.match(tokens.items[0].key, /^[0-9a-f]{64}$/);
});

test("every call needs a bearer token", async () => {
  const none = await fetch(`${server.url}/api/v1/apps`);
  assert.equal(none.status, 401);
  assert.equal(((await none.json()) as { code: string }).code, "unauthorized");
  assert.equal((await call("GET", "/apps", undefined, "wrong")).status, 401);
  assert.equal((await call("GET", "/openapi.json", undefined, "wrong")).status, 401);
});

test("the OpenAPI document is generated from the route schemas", async () => {
  const { status, body } = await call("GET", "/openapi.json");
  assert.equal(status, 200);
  assert.equal(body.openapi, "3.0.3");
  for (const path of [
    "/api/v1/apps",
    "/api/v1/apps/{app}/deploys",
    "/api/v1/apps/{app}/scale",
    "/api/v1/nodes/{name}/heartbeat",
    "/api/v1/watch",
  ]) {
    assert.ok(body.paths[path], `${path} is documented`);
  }
  const scale = body.paths["/api/v1/apps/{app}/scale"].post;
  assert.ok(scale.requestBody.content["application/json"].schema.properties.services);
});

test("invalid input is 400 with the field named; unknown objects 404; duplicates 409", async () => {
  const bad = await call("POST", "/apps", { name: "Not Valid" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, "invalid");
  assert.equal(bad.body.details[0].field, "body.name");
  const extra = await call("POST", "/apps", { name: "ok", color: "red" });
  assert.equal(extra.status, 400);
  assert.equal(extra.body.details[0].field, "body.color");
  assert.equal((await call("POST", "/apps", { name: "shop" })).status, 201);
  const dup = await call("POST", "/apps", { name: "shop" });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.code, "conflict");
  const missing = await call("GET", "/apps/nothing");
  assert.equal(missing.status, 404);
  assert.match(missing.body.message, /app nothing does not exist/);
  assert.equal((await call("GET", "/no/such/route")).status, 404);
  const hb = await call("POST", "/nodes/n1/heartbeat", { address: "x" });
  assert.equal(hb.status, 400);
  assert.ok(hb.body.details.some((d: { field: string }) => d.field === "body.capacity"));
});

test("a stale revision is 409 and changes nothing", async () => {
  await call("POST", "/apps", { name: "stale" });
  const svc: Service = {
    tenant: "default",
    app: "stale",
    name: "web",
    release: 1,
    spec: {
      command: "true",
      instances: 1,
      resources: { cpu: 0.1, memory: 1e6 },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 1000 },
      mode: "cattle",
      env: {},
      routes: [],
    },
    instances: 1,
    state: "running",
    message: "",
    crashes: 0,
  };
  await server.store.put("service", "default/stale/web", svc);
  const { body } = await call("GET", "/apps/stale");
  const revision = body.services[0].revision;
  assert.equal(
    (await call("POST", "/apps/stale/scale", { services: { web: 2 }, revisions: { web: revision } })).status,
    200,
  );
  const stale = await call("POST", "/apps/stale/scale", {
    services: { web: 5 },
    revisions: { web: revision },
  });
  assert.equal(stale.status, 409);
  assert.match(stale.body.message, /changed since revision/);
  assert.equal((await call("GET", "/apps/stale")).body.services[0].instances, 2);
  assert.equal((await call("DELETE", `/apps/stale?revision=${body.revision - 1}`)).status, 409);
  const wrongService = await call("POST", "/apps/stale/scale", { services: { db: 1 } });
  assert.equal(wrongService.status, 400);
  assert.equal(wrongService.body.details[0].field, "services.db");
});

test("a deploy body must be a gzip tarball", async () => {
  const res = await fetch(`${server.url}/api/v1/apps/shop/deploys`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "text/plain" },
    body: "hello",
  });
  assert.equal(res.status, 400);
});

test("quotas: set, shown with the units in use, enforced on scale with 403; bad values 400", async () => {
  await call("POST", "/apps", { name: "quota" });
  const svc: Service = {
    tenant: "default",
    app: "quota",
    name: "web",
    release: 1,
    spec: {
      command: "true",
      instances: 1,
      resources: { cpu: 0.5, memory: 256 * 1024 ** 2 },
      health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 1000 },
      mode: "cattle",
      env: {},
      routes: [],
    },
    instances: 1,
    state: "running",
    message: "",
    crashes: 0,
  };
  await server.store.put("service", "default/quota/web", svc);
  const set = await call("PUT", "/tenants/default/quota", { units: 5 });
  assert.equal(set.status, 200);
  assert.deepEqual([set.body.quota, set.body.usage.units >= 2], [{ units: 5 }, true]);
  const over = await call("POST", "/apps/quota/scale", { services: { web: 3 } });
  assert.equal(over.status, 403);
  assert.match(
    over.body.message,
    /over its quota: .* this asks for 6 \(web: 3 × 2\) .* the limit is 5 units/,
  );
  assert.equal((await call("POST", "/apps/quota/scale", { services: { web: 2 } })).status, 200);
  const bad = await call("PUT", "/tenants/default/quota", { units: -1 });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /units/);
  // 0 is a quota of zero units, not "no quota" (a union schema once coerced 0 to null).
  assert.deepEqual((await call("PUT", "/tenants/default/quota", { units: 0 })).body.quota, { units: 0 });
  assert.equal((await call("PUT", "/tenants/default/quota", { units: null })).body.quota, undefined);
  await server.store.delete("service", "default/quota/web");
});

test("cordon, drain and uncordon a node; unknown nodes 404; moving to a node needs a pet", async () => {
  assert.equal((await call("POST", "/nodes/nope/cordon")).status, 404);
  await server.store.put("node", "n9", {
    name: "n9",
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 1, memory: 1e9 },
    allocatable: { cpu: 1, memory: 1e9 },
    state: "ready",
    lastHeartbeat: new Date().toISOString(),
    registeredAt: new Date().toISOString(),
    agentVersion: "t",
    isolation: { cgroups: "none" },
    schedulable: true,
  });
  assert.equal((await call("POST", "/nodes/n9/cordon")).body.schedulable, false);
  const drained = await call("POST", "/nodes/n9/drain");
  assert.deepEqual([drained.body.schedulable, drained.body.draining], [false, true]);
  const listed = (await call("GET", "/nodes")).body.items.find((n: { name: string }) => n.name === "n9");
  assert.deepEqual(listed.drain, { done: true, message: "drained" });
  const back = await call("POST", "/nodes/n9/uncordon");
  assert.deepEqual([back.body.schedulable, back.body.draining], [true, undefined]);
  assert.equal((await call("POST", "/apps/quota/instances/nope/move", {})).status, 404);
  await server.store.delete("node", "n9");
});

test("what blocks a node's removal: live, anything not stopped and unfinished runs; lost, what should still run", () => {
  const i = (id: string, mode: "cattle" | "pet", desired: "running" | "stopped", state: string) =>
    ({ id, mode, desired, state }) as unknown as Instance;
  const r = (id: string, state: string) => ({ id, state }) as unknown as Run;
  const instances = [
    i("web-a", "cattle", "running", "running"),
    i("web-b", "cattle", "stopped", "draining"),
    i("web-c", "cattle", "stopped", "stopped"),
    i("db-0", "pet", "running", "lost"),
    i("web-d", "cattle", "stopped", "lost"),
  ];
  const runs = [r("run-1", "running"), r("run-2", "succeeded")];
  assert.deepEqual(removalBlockers(false, instances, runs), ["web-a", "web-b", "db-0", "web-d", "run run-1"]);
  assert.deepEqual(removalBlockers(true, instances, runs), ["web-a", "db-0"]);
  assert.deepEqual(removalBlockers(true, [i("web-d", "cattle", "stopped", "lost")], runs), []);
});

test("removing a node: refused while it holds what should run; then its record, its replaced instances and its credential go", async () => {
  assert.equal((await call("DELETE", "/nodes/nope")).status, 404);
  const now = new Date().toISOString();
  const node = (state: "ready" | "lost") => ({
    name: "n8",
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 1, memory: 1e9 },
    allocatable: { cpu: 1, memory: 1e9 },
    state,
    lastHeartbeat: now,
    registeredAt: now,
    agentVersion: "t",
    isolation: { cgroups: "none" },
    schedulable: true,
  });
  const instance = (id: string, mode: "cattle" | "pet", desired: "running" | "stopped", state: string) => ({
    id,
    tenant: "default",
    app: "shop",
    service: "web",
    release: 1,
    generation: 1,
    mode,
    node: "n8",
    desired,
    state,
    createdAt: now,
  });
  await server.store.put("node", "n8", node("ready"));
  const agent = (await call("POST", "/tokens", { name: "n8", kind: "agent", node: "n8" })).body
    .token as string;
  // Past auth (400: the body is no heartbeat) while the node is there.
  assert.equal((await call("POST", "/nodes/n8/heartbeat", {}, agent)).status, 400);
  await server.store.put("instance", "shop-web-a", instance("shop-web-a", "cattle", "running", "running"));
  const live = await call("DELETE", "/nodes/n8");
  assert.equal(live.status, 409);
  assert.match(live.body.message, /node n8 still holds shop-web-a: drain it first \(herd nodes drain n8\)/);

  // Lost: what stays is a lost node's replaced cattle (the service controller deletes them soon anyway).
  await server.store.put("node", "n8", node("lost"));
  await server.store.put("instance", "shop-web-a", instance("shop-web-a", "cattle", "stopped", "lost"));
  const removed = await call("DELETE", "/nodes/n8");
  assert.equal(removed.status, 200);
  assert.deepEqual([removed.body.removed, removed.body.credentialsRevoked], ["n8", 1]);
  assert.equal(await server.store.get("node", "n8"), undefined);
  assert.equal(await server.store.get("instance", "shop-web-a"), undefined);
  // Its agent cannot come back: its credential is refused.
  assert.equal((await call("POST", "/nodes/n8/heartbeat", {}, agent)).status, 401);
  assert.equal(await server.store.get("node", "n8"), undefined);
  const events = (await call("GET", "/events?limit=20")).body.items as { reason: string; message: string }[];
  assert.ok(
    events.some(
      (e) => e.reason === "NodeRemoved" && /node n8 removed by .*1 credential\(s\) revoked/.test(e.message),
    ),
    JSON.stringify(events.map((e) => e.reason)),
  );
});
