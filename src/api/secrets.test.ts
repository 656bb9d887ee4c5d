// Apps' secrets through the real control plane: values go in and never come
// out of the API; releases pin versions; only the heartbeat reply to the
// node running an instance carries the values; a change rolls out.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { RunningServer } from "../daemons/control-plane.ts";
import { ConfigSource } from "../gateway/config-source.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Consumer, Deploy, Instance, Release } from "../model/objects.ts";
import type { Heartbeat, HeartbeatReply } from "../model/protocol.ts";
import { apiCall, testServer, waitFor } from "./testing.ts";

const fixture = testServer("herd-secrets-api-");
let server: RunningServer;
before(async () => {
  server = await fixture.started;
});

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

const heartbeat = (instances: Heartbeat["instances"] = []): Heartbeat => ({
  address: "127.0.0.1",
  labels: {},
  capacity: { cpu: 4, memory: 8 * 1024 ** 3 },
  agentVersion: "test",
  isolation: { cgroups: "none", reason: "test" },
  instances,
});

/** A deploy through the controllers with a web service whose env refers to `secrets` (build skipped). */
async function deploy(app: string, env: Record<string, string | { secret: string }>): Promise<Deploy> {
  const d = await server.controllers.deploys.startDeploy("default", app, async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: { web: normalizeService(app, "web", { command: "node server.js", env }, undefined) },
    description: "test",
  }));
  return waitFor("the deploy past its build", async () => {
    const o = (await call("GET", `/apps/${app}/deploys/${d.id}`)).body as Deploy;
    return o.state === "building" ? undefined : o;
  });
}

test("set, list, unset: the API answers names, versions and who, never the value; 400s name the field", async () => {
  const put = await call("PUT", "/apps/vault/secrets/api-key", { value: "s3cr3t-value-one" });
  assert.equal(put.status, 201);
  assert.deepEqual(Object.keys(put.body.secret).sort(), [
    "createdAt",
    "name",
    "updatedAt",
    "updatedBy",
    "version",
  ]);
  assert.equal(put.body.secret.version, 1);
  assert.equal(put.body.secret.updatedBy, "user admin");
  assert.equal(put.body.deploy, undefined, "no release refers to it: nothing to roll out");
  const again = await call("PUT", "/apps/vault/secrets/api-key", { value: "s3cr3t-value-two" });
  assert.equal(again.status, 200);
  assert.equal(again.body.secret.version, 2);

  const list = await call("GET", "/apps/vault/secrets");
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.items.map((s: { name: string; version: number }) => [s.name, s.version]),
    [["api-key", 2]],
  );
  assert.ok(!JSON.stringify(list.body).includes("s3cr3t"));

  const bad = await call("PUT", "/apps/vault/secrets/api-key", { value: "" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.details[0].field, "body.value");
  const missing = await call("PUT", "/apps/vault/secrets/api-key", {});
  assert.equal(missing.body.details[0].field, "body.value");
  const extra = await call("PUT", "/apps/vault/secrets/api-key", { value: "x", note: "y" });
  assert.equal(extra.status, 400);
  assert.equal(extra.body.details[0].field, "body.note");
  const name = await call("PUT", "/apps/vault/secrets/9lives", { value: "x" });
  assert.equal(name.status, 400);
  assert.equal(name.body.details[0].field, "params.name");

  const del = await call("DELETE", "/apps/vault/secrets/api-key");
  assert.equal(del.status, 200);
  assert.equal(del.body.deleted.name, "api-key");
  assert.equal((await call("DELETE", "/apps/vault/secrets/api-key")).status, 404);
  assert.deepEqual((await call("GET", "/apps/vault/secrets")).body.items, []);
});

test("secrets are never snapshotted or watched, even encrypted", async () => {
  await call("PUT", "/apps/vault/secrets/other", { value: "x-never-shown" });
  for (const path of ["/snapshot?kinds=secret", "/watch?kinds=service,secret"]) {
    const res = await call("GET", path);
    assert.equal(res.status, 400, path);
    assert.equal(res.body.details[0].field, "querystring.kinds");
  }
  const all = await call("GET", "/snapshot");
  assert.ok(!all.body.items.some((o: { kind: string }) => o.kind === "secret"));
});

test("a deploy whose env refers to a missing secret fails, naming the variable and the secret", async () => {
  await server.store.put("app", "default/lost", {
    tenant: "default",
    name: "lost",
    createdAt: "",
    release: null,
    latestVersion: 0,
  });
  const d = await deploy("lost", { DB_PASSWORD: { secret: "db-password" } });
  assert.equal(d.state, "failed");
  assert.match(d.message, /services\.web\.env\.DB_PASSWORD: secret db-password is not set for app lost/);
  assert.match(d.message, /herd secrets set db-password --app lost/);
});

test("a release pins versions; only the heartbeat reply carries values; a change rolls out; unset in use is 409", async () => {
  const value1 = "pg-password-first-7f3a";
  const value2 = "pg-password-second-91bc";
  assert.equal((await call("PUT", "/apps/shop/secrets/db-password", { value: value1 })).status, 201);
  assert.equal((await call("POST", "/nodes/n1/heartbeat", heartbeat())).status, 200);
  await server.store.put("app", "default/shop", {
    tenant: "default",
    name: "shop",
    createdAt: "",
    release: null,
    latestVersion: 0,
  });
  const d = await deploy("shop", { GREETING: "hi", DB_PASSWORD: { secret: "db-password" } });
  assert.equal(d.state, "rolling_out", d.message);

  const releases = (await call("GET", "/apps/shop/releases")).body.items as Release[];
  assert.deepEqual(releases[0]!.secrets, { "db-password": 1 });
  assert.deepEqual(releases[0]!.services.web!.secrets, { DB_PASSWORD: "db-password" });
  assert.deepEqual(releases[0]!.services.web!.env, { GREETING: "hi" });

  const inst = await waitFor("the instance on n1", async () =>
    (await server.store.list<Instance>("instance")).items.map((o) => o.value).find((i) => i.node === "n1"),
  );
  assert.deepEqual(inst.run.secrets, { DB_PASSWORD: { secret: "db-password", version: 1 } });
  const reply = (await call("POST", "/nodes/n1/heartbeat", heartbeat())).body as HeartbeatReply;
  const desired = reply.instances.find((i) => i.id === inst.id)!;
  assert.deepEqual(desired.secretEnv, { DB_PASSWORD: value1 });
  assert.equal(desired.run.env.DB_PASSWORD, undefined);

  // Nothing the API shows holds the value.
  for (const path of [
    "/apps/shop",
    "/apps/shop/releases",
    "/apps/shop/instances",
    "/apps/shop/secrets",
    "/events?limit=2000",
    "/snapshot",
  ]) {
    const text = JSON.stringify((await call("GET", path)).body);
    assert.ok(!text.includes(value1), `${path} does not show the value`);
  }

  // A new value: a new release with version 2 rolls out.
  const put = await call("PUT", "/apps/shop/secrets/db-password", { value: value2 });
  assert.equal(put.status, 200);
  assert.ok(put.body.deploy, "the change started a deploy");
  const rel = (await call("GET", "/apps/shop/releases")).body.items as Release[];
  assert.equal(rel[0]!.version, 2);
  assert.deepEqual(rel[0]!.secrets, { "db-password": 2 });
  assert.match(rel[0]!.description, /Secret db-password changed/);
  const next = await waitFor("an instance of v2", async () =>
    (await server.store.list<Instance>("instance")).items.map((o) => o.value).find((i) => i.release === 2),
  );
  const reply2 = (await call("POST", "/nodes/n1/heartbeat", heartbeat())).body as HeartbeatReply;
  assert.deepEqual(reply2.instances.find((i) => i.id === next.id)!.secretEnv, { DB_PASSWORD: value2 });
  // The v1 instance never ran (no agent here), so the rollout replaced it: a stop carries no values.
  const old = reply2.instances.find((i) => i.id === inst.id)!;
  assert.equal(old.action, "stop");
  assert.equal(old.secretEnv, undefined);

  const del = await call("DELETE", "/apps/shop/secrets/db-password");
  assert.equal(del.status, 409);
  assert.match(del.body.message, /release v2 gives it to web as DB_PASSWORD/);

  // A key rotation changes nothing the agents get.
  const rotated = await call("POST", "/secrets/rotate-key");
  assert.equal(rotated.status, 200);
  assert.equal(rotated.body.droppedKeys.length, 1);
  const reply3 = (await call("POST", "/nodes/n1/heartbeat", heartbeat())).body as HeartbeatReply;
  assert.deepEqual(reply3.instances.find((i) => i.id === next.id)!.secretEnv, { DB_PASSWORD: value2 });

  // v2 comes up healthy and serves; a rollback is v1's content with the secret version v1 pinned.
  const healthy = {
    id: next.id,
    generation: next.generation,
    state: "healthy" as const,
    pid: 4242,
    port: 20001,
  };
  await waitFor("v2 serving", async () => {
    await call("POST", "/nodes/n1/heartbeat", heartbeat([healthy]));
    return (await call("GET", "/apps/shop")).body.app.release === 2 ? true : undefined;
  });
  const back = await call("POST", "/apps/shop/rollback", { version: 1 });
  assert.equal(back.status, 202, JSON.stringify(back.body));
  const rolled = (await call("GET", "/apps/shop/releases")).body.items as Release[];
  assert.equal(rolled[0]!.rollbackOf, 1);
  assert.deepEqual(rolled[0]!.secrets, { "db-password": 1 });
  const v3 = await waitFor("an instance of v3", async () =>
    (await server.store.list<Instance>("instance")).items.map((o) => o.value).find((i) => i.release === 3),
  );
  const reply4 = (await call("POST", "/nodes/n1/heartbeat", heartbeat())).body as HeartbeatReply;
  assert.deepEqual(reply4.instances.find((i) => i.id === v3.id)!.secretEnv, { DB_PASSWORD: value1 });

  // A secret gone from under an instance: the agent is told why, and fails the start with it.
  await server.store.delete("secret", "default/shop/db-password");
  const reply5 = (await call("POST", "/nodes/n1/heartbeat", heartbeat())).body as HeartbeatReply;
  const broken = reply5.instances.find((i) => i.id === v3.id)!;
  assert.equal(broken.secretEnv, undefined);
  assert.equal(broken.secretError, "env DB_PASSWORD: secret db-password is not set");
});

test("alert receivers: header values go to the secret store; GET and /snapshot show references", async () => {
  const value = "Bearer hook-token-3c9d";
  const dup = await call("PUT", "/alerts/receivers/ops", {
    url: "http://127.0.0.1:1/hook",
    headers: { Authorization: "a", authorization: "b" },
  });
  assert.equal(dup.status, 400);
  assert.equal(dup.body.details[0].field, "headers.authorization");

  const put = await call("PUT", "/alerts/receivers/ops", {
    url: "http://127.0.0.1:1/hook",
    headers: { Authorization: value, "X-Team": "ops-team-7" },
  });
  assert.equal(put.status, 201);
  assert.deepEqual(put.body.headers, {
    Authorization: { secret: "authorization", version: 1 },
    "X-Team": { secret: "x-team", version: 1 },
  });
  for (const path of ["/alerts/receivers", "/snapshot?kinds=alert_receiver", "/events?limit=2000"]) {
    assert.ok(!JSON.stringify((await call("GET", path)).body).includes(value), path);
  }
  assert.equal(await server.secrets.value("default", "_receiver.ops", "authorization"), value);

  // Replaced without X-Team: its secret goes; deleted: all of them go.
  await call("PUT", "/alerts/receivers/ops", {
    url: "http://127.0.0.1:1/hook",
    headers: { Authorization: value },
  });
  assert.deepEqual(
    (await server.secrets.list("default", "_receiver.ops")).map((s) => [s.name, s.version]),
    [["authorization", 2]],
  );
  assert.equal((await call("DELETE", "/alerts/receivers/ops")).status, 200);
  assert.deepEqual(await server.secrets.list("default", "_receiver.ops"), []);
});

test("consumers' HS256 secrets: in the secret store, not in GET or /snapshot; gateways fetch them", async () => {
  const secret = "h".repeat(20) + "s256-shared-secret-e1";
  await call("POST", "/consumers", { name: "mobile" });
  const added = await call("POST", "/consumers/mobile/jwt", { key: "mobile-app", secret });
  assert.equal(added.status, 201);
  for (const path of ["/consumers/mobile", "/consumers", "/snapshot?kinds=consumer"]) {
    assert.ok(!JSON.stringify((await call("GET", path)).body).includes(secret), path);
  }
  const stored = await server.store.get<{ jwt: { secretRef?: unknown; secret?: string }[] }>(
    "consumer",
    "default/mobile",
  );
  assert.equal(stored?.value.jwt[0]?.secret, undefined);
  assert.deepEqual(stored?.value.jwt[0]?.secretRef, { secret: added.body.id, version: 1 });

  const forGateways = await call("GET", "/gateways/jwt-secrets");
  assert.deepEqual(forGateways.body.items, [
    { tenant: "default", consumer: "mobile", id: added.body.id, secret },
  ]);

  // A gateway following this control plane gets the secret filled in, from that endpoint only.
  const gwDir = mkdtempSync(join(tmpdir(), "herd-secrets-gw-"));
  let consumers: Consumer[] = [];
  const source = new ConfigSource({
    server: server.url,
    token: server.adminToken,
    dataDir: gwDir,
    logger: silentLogger,
    cacheIntervalMs: 0,
    onTable: () => {},
    onObjects: (objects) => {
      consumers = objects.consumers as Consumer[];
    },
  });
  try {
    await source.start();
    await waitFor("the consumer with its secret", async () =>
      consumers.find((c) => c.name === "mobile")?.jwt[0]?.secret === secret ? true : undefined,
    );
  } finally {
    await source.close();
    rmSync(gwDir, { recursive: true, force: true });
  }

  const removed = await call("DELETE", `/consumers/mobile/jwt/${added.body.id}`);
  assert.equal(removed.status, 200);
  assert.deepEqual((await call("GET", "/gateways/jwt-secrets")).body.items, []);
  assert.deepEqual(await server.secrets.list("default", "_consumer.mobile"), []);
});

test("who may: viewers list names, deployers set, only admins rotate, only gateways and admins read HS256 secrets", async () => {
  assert.equal((await call("POST", "/tenants", { name: "team" })).status, 201);
  const tokens: Record<string, string> = {};
  for (const [name, role] of [
    ["vic", "viewer"],
    ["dee", "deployer"],
  ] as const) {
    assert.equal((await call("POST", "/users", { name })).status, 201);
    assert.equal((await call("PUT", `/tenants/team/members/${name}`, { role })).status, 200);
    tokens[name] = (await call("POST", "/tokens", { name: `${name}'s`, user: name })).body.token;
  }
  tokens.gw = (await call("POST", "/tokens", { name: "gw", kind: "gateway" })).body.token;
  const as = (who: string, method: string, path: string, body?: unknown) =>
    apiCall(server, method, path, body, { token: tokens[who] });

  const set = await as("dee", "PUT", "/apps/web/secrets/token", { value: "team-secret-value" });
  assert.equal(set.status, 201);
  assert.equal(set.body.secret.updatedBy, "user dee");
  assert.equal(
    await server.secrets.value("team", "web", "token"),
    "team-secret-value",
    "in the token's tenant",
  );
  const listed = await as("vic", "GET", "/apps/web/secrets");
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.body.items.map((s: { name: string }) => s.name),
    ["token"],
  );
  assert.equal((await as("vic", "PUT", "/apps/web/secrets/token", { value: "x" })).status, 403);
  assert.equal((await as("vic", "DELETE", "/apps/web/secrets/token")).status, 403);
  assert.equal((await as("dee", "GET", "/apps/shop/secrets?tenant=default")).status, 403, "another tenant");
  assert.equal((await as("dee", "POST", "/secrets/rotate-key")).status, 403);
  assert.equal((await as("dee", "GET", "/gateways/jwt-secrets")).status, 403);
  assert.equal((await as("gw", "GET", "/gateways/jwt-secrets")).status, 200);
  assert.equal((await as("gw", "GET", "/apps/web/secrets?tenant=team")).status, 403);
});
