// The control-plane API over a real socket: auth, OpenAPI, validation errors,
// 404 and 409, the admin token file.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { type RunningServer, startServer } from "./server.ts";
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
