// The config center through the real control plane: versions with author and
// message, refused files, history, diff, rollback, the catalog's layers, gray
// release, and the heartbeat reply that carries each instance's config.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import type { RunningServer } from "../daemons/control-plane.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Deploy, Instance } from "../model/objects.ts";
import type { Heartbeat, HeartbeatReply } from "../model/protocol.ts";
import { apiCall, testServer, waitFor } from "./testing.ts";

const fixture = testServer("herd-config-api-");
let server: RunningServer;
before(async () => {
  server = await fixture.started;
});

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

const heartbeat = (instances: Heartbeat["instances"] = []): Heartbeat => ({
  address: "127.0.0.1",
  labels: { zone: "a" },
  capacity: { cpu: 16, memory: 32 * 1024 ** 3 },
  agentVersion: "test",
  isolation: { cgroups: "none", reason: "test" },
  instances,
});

test("set, get, history, diff, rollback; a file that does not parse is refused and the running version kept", async () => {
  assert.equal((await call("POST", "/apps", { name: "conf" })).status, 201);
  const v1 = await call("POST", "/apps/conf/config/versions", {
    set: { GREETING: "hello" },
    files: { "app.yaml": { format: "yaml", content: "pool: 4\n" } },
    message: "first",
  });
  assert.equal(v1.status, 201, JSON.stringify(v1.body));
  assert.equal(v1.body.version.version, 1);
  assert.equal(v1.body.version.author, "user admin");
  const bad = await call("POST", "/apps/conf/config/versions", {
    files: { "app.yaml": { format: "yaml", content: "pool: [4\n" } },
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.details[0].field, "entries.app.yaml");
  assert.match(bad.body.message, /not valid YAML.*the running version stays/);
  const badFormat = await call("POST", "/apps/conf/config/versions", {
    files: { "x.conf": { format: "toml", content: "" } },
  });
  assert.equal(badFormat.status, 400);
  assert.match(badFormat.body.details[0].field, /files/);
  assert.equal((await call("POST", "/apps/conf/config/versions", {})).status, 400);
  assert.equal((await call("POST", "/apps/nope/config/versions", { set: { A: "1" } })).status, 404);

  const v2 = await call("POST", "/apps/conf/config/versions", {
    set: { GREETING: "bonjour" },
    unset: ["app.yaml"],
  });
  assert.equal(v2.body.version.version, 2);
  const got = await call("GET", "/apps/conf/config");
  assert.deepEqual(got.body.config.values, { GREETING: "bonjour" });
  assert.deepEqual(got.body.config.origins, { GREETING: "app v2" });
  const history = await call("GET", "/apps/conf/config/versions");
  assert.deepEqual(
    history.body.items.map((v: { version: number; message: string }) => [v.version, v.message]),
    [
      [1, "first"],
      [2, ""],
    ],
  );
  const d = await call("GET", "/apps/conf/config/diff");
  assert.deepEqual(
    d.body.changes.map((c: { name: string; change: string }) => [c.name, c.change]),
    [
      ["GREETING", "changed"],
      ["app.yaml", "removed"],
    ],
  );
  const rb = await call("POST", "/apps/conf/config/rollback", { version: 1 });
  assert.equal(rb.status, 201);
  assert.equal(rb.body.version.version, 3);
  assert.equal(rb.body.version.rollbackOf, 1);
  assert.equal((await call("GET", "/apps/conf/config")).body.config.files["app.yaml"].content, "pool: 4\n");
  assert.equal((await call("GET", "/apps/conf/config?version=2")).body.config.values.GREETING, "bonjour");
});

test("catalog layers: the platform admin writes them, an app pins a version, each key says where it came from", async () => {
  const base = await call("POST", "/config/catalog/platform/base/versions", {
    set: { TZ: "UTC", LOG: "info" },
  });
  assert.equal(base.status, 201, JSON.stringify(base.body));
  await call("POST", "/config/catalog/middleware/cache/versions", { set: { LOG: "warn" } });
  assert.equal((await call("POST", "/config/catalog/other/x/versions", { set: { A: "1" } })).status, 400);
  assert.equal((await call("POST", "/apps", { name: "layered" })).status, 201);
  const pinned = await call("POST", "/apps/layered/config/versions", {
    platform: "base@1",
    middleware: ["cache@1"],
    set: { OWN: "1" },
  });
  assert.equal(pinned.status, 201, JSON.stringify(pinned.body));
  const missing = await call("POST", "/apps/layered/config/versions", { platform: "base@7" });
  assert.equal(missing.status, 404);
  const eff = (await call("GET", "/apps/layered/config")).body.config;
  assert.deepEqual(eff.origins, { TZ: "platform base@1", LOG: "middleware cache@1", OWN: "app v1" });
  const catalog = await call("GET", "/config/catalog");
  assert.deepEqual(
    catalog.body.items.map((n: { layer: string; name: string }) => `${n.layer}/${n.name}`),
    ["platform/base", "middleware/cache"],
  );
});

test("the heartbeat reply carries each instance's config; a gray version reaches only its share, then rolls back", async () => {
  assert.equal((await call("POST", "/nodes/n1/heartbeat", heartbeat())).status, 200);
  await server.store.put("app", "default/gray", {
    tenant: "default",
    name: "gray",
    createdAt: "",
    release: null,
    latestVersion: 0,
  });
  const started = await server.controllers.deploys.startDeploy("default", "gray", async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: {
      web: normalizeService(
        "gray",
        "web",
        { command: "node s.js", instances: 4, config: { onChange: "signal" } },
        undefined,
      ),
    },
    description: "test",
  }));
  await waitFor("the deploy to place its instances", async () => {
    const o = (await call("GET", `/apps/gray/deploys/${started.id}`)).body as Deploy;
    return o.state === "building" ? undefined : o;
  });
  const instances = await waitFor("4 instances", async () => {
    const items = ((await call("GET", "/apps/gray/instances")).body.items as Instance[]).filter(
      (i) => i.node === "n1",
    );
    return items.length === 4 ? items : undefined;
  });
  await call("POST", "/apps/gray/config/versions", { set: { MODE: "old" } });
  const beat = async (applied: Record<string, number>) => {
    const res = await call(
      "POST",
      "/nodes/n1/heartbeat",
      heartbeat(
        instances.map((i) => ({
          id: i.id,
          generation: i.generation,
          state: "healthy",
          ...(applied[i.id] !== undefined ? { configVersion: applied[i.id] } : {}),
        })),
      ),
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return new Map(
      (res.body as HeartbeatReply).instances.filter((d) => d.app === "gray").map((d) => [d.id, d.config]),
    );
  };
  const first = await beat({});
  for (const i of instances) {
    assert.equal(first.get(i.id)?.version, 1);
    assert.equal(first.get(i.id)?.onChange, "signal");
    assert.equal(first.get(i.id)?.document?.values.MODE, "old");
  }
  const applied = Object.fromEntries(instances.map((i) => [i.id, 1]));
  const quiet = await beat(applied);
  assert.ok(
    [...quiet.values()].every((c) => c?.document === undefined),
    "no content for an agent that has it",
  );

  const gray = await call("POST", "/apps/gray/config/versions", {
    set: { MODE: "new" },
    gray: { share: 50 },
  });
  assert.equal(gray.status, 201, JSON.stringify(gray.body));
  assert.equal(gray.body.head.gray.version, 2);
  assert.equal((await call("POST", "/apps/gray/config/versions", { set: { MODE: "x" } })).status, 409);
  const during = await beat(applied);
  const grayIds = instances.filter((i) => during.get(i.id)?.version === 2).map((i) => i.id);
  assert.equal(grayIds.length, 2, "half of 4");
  for (const id of grayIds) assert.equal(during.get(id)?.document?.values.MODE, "new");
  const status = await call("GET", "/apps/gray/config/status");
  assert.deepEqual(
    status.body.instances
      .filter((i: { behind: boolean }) => i.behind)
      .map((i: { id: string }) => i.id)
      .sort(),
    grayIds.sort(),
  );
  for (const id of grayIds) applied[id] = 2;
  await beat(applied);
  assert.ok(
    (await call("GET", "/apps/gray/config/status")).body.instances.every(
      (i: { behind: boolean }) => !i.behind,
    ),
  );

  const abort = await call("POST", "/apps/gray/config/abort");
  assert.equal(abort.status, 200);
  assert.equal(abort.body.aborted, 2);
  const back = await beat(applied);
  for (const id of grayIds) {
    assert.equal(back.get(id)?.version, 1);
    assert.equal(back.get(id)?.document?.values.MODE, "old");
  }
  assert.equal((await call("POST", "/apps/gray/config/promote")).status, 409);
});

test("a viewer reads an app's config but cannot change it; only a platform admin writes the catalog", async () => {
  await call("POST", "/users", { name: "vic" });
  await call("PUT", "/tenants/default/members/vic", { role: "viewer" });
  const token = await call("POST", "/tokens", { user: "vic", name: "t" });
  assert.ok(token.body.token, JSON.stringify(token.body));
  const as = (method: string, path: string, body?: unknown) =>
    apiCall(server, method, path, body, { token: token.body.token });
  assert.equal((await as("GET", "/apps/conf/config")).status, 200);
  assert.equal((await as("POST", "/apps/conf/config/versions", { set: { A: "1" } })).status, 403);
  assert.equal((await as("POST", "/config/catalog/platform/base/versions", { set: { A: "1" } })).status, 403);
  assert.equal((await as("POST", "/config/catalog/platform/base/gray", { version: 1 })).status, 403);
});

test("a catalog version in gray release to a tenant: that tenant's apps pin it, then roll back", async () => {
  assert.equal((await call("POST", "/tenants", { name: "acme" })).status, 201);
  assert.equal((await call("POST", "/apps?tenant=acme", { name: "shop" })).status, 201);
  await call("POST", "/config/catalog/platform/edge/versions", { set: { POOL: "4" } });
  await call("POST", "/config/catalog/platform/edge/versions", { set: { POOL: "8" } });
  for (const q of ["", "?tenant=acme"]) {
    const app = q ? "shop" : "layered";
    const r = await call("POST", `/apps/${app}/config/versions${q}`, {
      platform: "edge@1",
      set: { APP: app },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  const bad = await call("POST", "/config/catalog/platform/edge/gray", { version: 0, tenants: ["acme"] });
  assert.equal(bad.status, 400);
  const gray = await call("POST", "/config/catalog/platform/edge/gray", { version: 2, tenants: ["acme"] });
  assert.equal(gray.status, 200, JSON.stringify(gray.body));
  assert.deepEqual(
    gray.body.moved.map((m: { tenant: string; app: string; to: number }) => `${m.tenant}/${m.app}@${m.to}`),
    ["acme/shop@2"],
  );
  const pool = async (app: string, q: string) =>
    (await call("GET", `/apps/${app}/config${q}`)).body.config.values.POOL;
  assert.equal(await pool("shop", "?tenant=acme"), "8");
  assert.equal(await pool("layered", ""), "4", "the default tenant keeps edge@1");
  const events = (await call("GET", "/events?tenant=acme&app=shop&limit=50")).body.items;
  assert.ok(
    events.some((e: { reason: string }) => e.reason === "ConfigCatalogGray"),
    JSON.stringify(events),
  );
  const back = await call("POST", "/config/catalog/platform/edge/gray/rollback", {
    version: 2,
    tenants: ["acme"],
  });
  assert.equal(back.status, 200, JSON.stringify(back.body));
  assert.equal(await pool("shop", "?tenant=acme"), "4");
});
