// Live configuration through the real API: route objects (CRUD, validation,
// clashes, optimistic concurrency), traffic overrides, gateway reports.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Route } from "../model/manifest.ts";
import type { App, Service } from "../model/objects.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-live-config-"));

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

/** An app with services as a deploy leaves them (no instances: the controllers have nothing to start). */
async function seedApp(app: string, services: Record<string, Partial<Route>[]>): Promise<void> {
  const a: App = {
    tenant: "default",
    name: app,
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  };
  await server.store.put("app", `default/${app}`, a);
  for (const [name, routes] of Object.entries(services)) {
    const svc: Service = {
      tenant: "default",
      app,
      name,
      release: 1,
      spec: {
        command: "true",
        instances: 0,
        resources: { cpu: 0.1, memory: 1e6 },
        health: { kind: "tcp", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 1000 },
        mode: "cattle",
        env: {},
        routes: routes.map((r) => ({ host: "x.localhost", path: "/", ...r })),
        breaker: { failures: 5, openMs: 5000 },
      },
      instances: 0,
      state: "running",
      message: "",
      crashes: 0,
    };
    await server.store.put("service", `default/${app}/${name}`, svc);
  }
}

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  await seedApp("shop", { web: [{ host: "shop.localhost" }], api: [] });
  await seedApp("blog", { web: [{ host: "blog.localhost" }] });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("route objects", () => {
  test("create, read, list (with herd.yaml's), replace with a revision, delete", async () => {
    const created = await call("PUT", "/apps/shop/routes/beta", {
      service: "api",
      host: "shop.localhost",
      path: "/beta",
      rateLimit: { rate: 50 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.spec.service, "api");
    const revision = created.body.revision;
    assert.ok(revision > 0);

    const one = await call("GET", "/apps/shop/routes/beta");
    assert.equal(one.status, 200);
    assert.deepEqual(one.body.spec, {
      service: "api",
      host: "shop.localhost",
      path: "/beta",
      rateLimit: { rate: 50 },
    });

    const list = await call("GET", "/apps/shop/routes");
    assert.equal(list.status, 200);
    const fromYaml = list.body.items.find((i: { source: string }) => i.source === "herd.yaml");
    assert.deepEqual(fromYaml, {
      source: "herd.yaml",
      service: "web",
      route: { host: "shop.localhost", path: "/" },
    });
    const fromApi = list.body.items.find((i: { source: string }) => i.source === "api");
    assert.equal(fromApi.name, "beta");
    assert.deepEqual(fromApi.route.rateLimit, { rate: 50, burst: 50, per: "route" });

    const replaced = await call("PUT", `/apps/shop/routes/beta?revision=${revision}`, {
      service: "api",
      host: "shop.localhost",
      path: "/beta",
      rateLimit: { rate: 5 },
    });
    assert.equal(replaced.status, 200);
    assert.ok(replaced.body.revision > revision);

    const stale = await call("PUT", `/apps/shop/routes/beta?revision=${revision}`, {
      service: "api",
      host: "shop.localhost",
      path: "/beta",
    });
    assert.equal(stale.status, 409);
    assert.match(stale.body.message, /changed since revision/);
    assert.equal((await call("GET", "/apps/shop/routes/beta")).body.spec.rateLimit.rate, 5);
    assert.equal(
      (await call("PUT", "/apps/shop/routes/beta?revision=0", { service: "api", host: "a.localhost" }))
        .status,
      409,
    );

    assert.equal((await call("DELETE", `/apps/shop/routes/beta?revision=${revision}`)).status, 409);
    const deleted = await call("DELETE", `/apps/shop/routes/beta?revision=${replaced.body.revision}`);
    assert.equal(deleted.status, 200);
    assert.equal((await call("GET", "/apps/shop/routes/beta")).status, 404);
    assert.equal((await call("DELETE", "/apps/shop/routes/beta")).status, 404);
  });

  test("invalid input is 400 naming the field", async () => {
    const rate = await call("PUT", "/apps/shop/routes/bad", {
      service: "api",
      host: "shop.localhost",
      rateLimit: { rate: 0 },
    });
    assert.equal(rate.status, 400);
    assert.equal(rate.body.code, "invalid");
    assert.equal(rate.body.details[0].field, "rateLimit.rate");
    assert.match(rate.body.message, /^rateLimit\.rate: must be a number above 0/);

    const idle = await call("PUT", "/apps/shop/routes/bad", {
      service: "api",
      host: "shop.localhost",
      timeouts: { idle: "25h" },
    });
    assert.equal(idle.status, 400);
    assert.equal(idle.body.details[0].field, "timeouts.idle");
    assert.equal(
      idle.body.message,
      "timeouts.idle: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 10ms to 24h; got 25h",
    );

    const extra = await call("PUT", "/apps/shop/routes/bad", {
      service: "api",
      host: "shop.localhost",
      color: "red",
    });
    assert.equal(extra.status, 400);
    assert.equal(extra.body.details[0].field, "color");

    const noService = await call("PUT", "/apps/shop/routes/bad", { service: "nope", host: "shop.localhost" });
    assert.equal(noService.status, 400);
    assert.equal(noService.body.details[0].field, "service");

    const split = await call("PUT", "/apps/shop/routes/bad", {
      service: "api",
      host: "shop.localhost",
      split: { to: [{ service: "api", weight: 10 }] },
    });
    assert.equal(split.status, 400);
    assert.equal(split.body.details[0].field, "split.to.0.service");

    const name = await call("PUT", "/apps/shop/routes/Bad_Name", { service: "api", host: "shop.localhost" });
    assert.equal(name.status, 400);
    assert.equal(name.body.details[0].field, "params.name");
    assert.equal((await call("GET", "/apps/nope/routes")).status, 404);
  });

  test("timeouts as durations or seconds: kept as given, normalised to ms in the table's route", async () => {
    const timeouts = { connect: "500ms", request: 30, idle: "2m" };
    const created = await call("PUT", "/apps/shop/routes/slow", {
      service: "api",
      host: "shop.localhost",
      path: "/slow",
      timeouts,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual((await call("GET", "/apps/shop/routes/slow")).body.spec.timeouts, timeouts);
    const listed = (await call("GET", "/apps/shop/routes")).body.items.find(
      (i: { name?: string }) => i.name === "slow",
    );
    assert.deepEqual(listed.route.timeouts, { connectMs: 500, requestMs: 30_000, idleMs: 120_000 });
    assert.equal((await call("DELETE", "/apps/shop/routes/slow")).status, 200);
  });

  test("a host and path another route serves is 409: herd.yaml's of another app, or another route object", async () => {
    const yaml = await call("PUT", "/apps/shop/routes/steal", { service: "api", host: "blog.localhost" });
    assert.equal(yaml.status, 409);
    assert.match(yaml.body.message, /already served by blog\/web/);

    assert.equal(
      (await call("PUT", "/apps/blog/routes/feed", { service: "web", host: "feed.localhost", path: "/rss" }))
        .status,
      201,
    );
    const api = await call("PUT", "/apps/shop/routes/feed2", {
      service: "api",
      host: "feed.localhost",
      path: "/rss",
    });
    assert.equal(api.status, 409);
    assert.match(api.body.message, /already served by route blog\/feed/);
    // Another method on the same path is another route.
    const post = await call("PUT", "/apps/shop/routes/feed2", {
      service: "api",
      host: "feed.localhost",
      path: "/rss",
      methods: ["POST"],
    });
    assert.equal(post.status, 201);
    // Replacing a route object with itself is no clash.
    assert.equal(
      (await call("PUT", "/apps/blog/routes/feed", { service: "web", host: "feed.localhost", path: "/rss" }))
        .status,
      200,
    );
  });
});

describe("traffic overrides", () => {
  test("PATCH sets, turns off and clears a service's policies; 400 names the field; stale revision 409", async () => {
    const set = await call("PATCH", "/apps/shop/services/web/traffic", {
      concurrency: 10,
      breaker: { failures: 2 },
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body.service.traffic, { breaker: { failures: 2, openMs: 5000 }, concurrency: 10 });
    assert.deepEqual(set.body.effective.breaker, { failures: 2, openMs: 5000 });

    const off = await call("PATCH", "/apps/shop/services/web/traffic", { breaker: false });
    assert.equal(off.body.service.traffic.breaker, null);
    assert.equal(off.body.effective.breaker, undefined);

    const back = await call("PATCH", "/apps/shop/services/web/traffic", { breaker: null, concurrency: null });
    assert.equal(back.body.service.traffic, undefined);
    assert.deepEqual(back.body.effective.breaker, { failures: 5, openMs: 5000 });

    const bad = await call("PATCH", "/apps/shop/services/web/traffic", { concurrency: -1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.details[0].field, "concurrency");
    const stale = await call("PATCH", "/apps/shop/services/web/traffic?revision=1", { criticality: "low" });
    assert.equal(stale.status, 409);
    assert.equal(
      (await call("PATCH", "/apps/shop/services/nope/traffic", { criticality: "low" })).status,
      404,
    );
  });

  test("breaker.open and outlier.ejection as durations or seconds: stored in ms; a bad one is 400 naming the field inside", async () => {
    const set = await call("PATCH", "/apps/blog/services/web/traffic", {
      breaker: { open: "1500ms" },
      outlier: { failures: 2, ejection: "2m" },
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body.service.traffic, {
      breaker: { failures: 5, openMs: 1500 },
      outlier: { failures: 2, ejectionMs: 120_000, maxShare: 0.5 },
    });
    assert.deepEqual(set.body.effective.breaker, { failures: 5, openMs: 1500 });
    const seconds = await call("PATCH", "/apps/blog/services/web/traffic", { breaker: { open: 30 } });
    assert.deepEqual(seconds.body.effective.breaker, { failures: 5, openMs: 30_000 });

    const long = await call("PATCH", "/apps/blog/services/web/traffic", { breaker: { open: "11m" } });
    assert.equal(long.status, 400);
    assert.equal(long.body.details[0].field, "breaker.open");
    assert.equal(
      long.body.message,
      "breaker.open: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 100ms to 10m; got 11m",
    );
    const soon = await call("PATCH", "/apps/blog/services/web/traffic", { outlier: { ejection: "soon" } });
    assert.equal(soon.status, 400);
    assert.equal(soon.body.details[0].field, "outlier.ejection");
    assert.match(soon.body.message, /^outlier\.ejection: must be a duration .*from 100ms to 1h; got soon$/);
    const zero = await call("PATCH", "/apps/blog/services/web/traffic", { outlier: { ejection: 0 } });
    assert.equal(zero.status, 400);
    assert.match(zero.body.message, /^outlier\.ejection: .*; got 0$/);
    // The refused ones changed nothing.
    const back = await call("PATCH", "/apps/blog/services/web/traffic", { breaker: null, outlier: null });
    assert.equal(back.body.service.traffic, undefined);
  });
});

describe("gateway reports", () => {
  test("GET /gateways compares each gateway's version with the config version", async () => {
    // Any change to what gateways follow moves the config version.
    await call("PUT", "/apps/shop/routes/cfg", { service: "api", host: "cfg.localhost" });
    const { body: first } = await call("GET", "/gateways");
    const version = first.configVersion;
    assert.ok(version > 0);

    const ack = await call("PUT", "/gateways/gw-1/status", {
      version,
      applied: true,
      routes: 3,
      url: "http://127.0.0.1:8080",
    });
    assert.equal(ack.status, 200, JSON.stringify(ack.body));
    assert.equal(ack.body.inSync, true);

    await call("DELETE", "/apps/shop/routes/cfg");
    let list = (await call("GET", "/gateways")).body;
    assert.ok(list.configVersion > version, "a deletion is a change too");
    assert.equal(list.items[0].inSync, false);

    const nack = await call("PUT", "/gateways/gw-1/status", {
      version: list.configVersion,
      applied: false,
      error: "route default/shop/x: rateLimit.rate: bad",
      serving: version,
      routes: 3,
    });
    assert.equal(nack.body.inSync, false);
    list = (await call("GET", "/gateways")).body;
    assert.deepEqual(
      { version: list.items[0].version, rejected: list.items[0].rejectedVersion, error: list.items[0].error },
      { version, rejected: list.configVersion, error: "route default/shop/x: rateLimit.rate: bad" },
    );
    await call("PUT", "/gateways/gw-1/status", { version: list.configVersion, applied: true, routes: 2 });
    list = (await call("GET", "/gateways")).body;
    assert.equal(list.items[0].inSync, true);
    assert.equal(list.items[0].error, undefined);

    const bad = await call("PUT", "/gateways/gw-1/status", { version: -1, applied: true, routes: 0 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.details[0].field, "version");
    assert.equal((await call("DELETE", "/gateways/gw-1")).status, 204);
    assert.equal((await call("GET", "/gateways")).body.items.length, 0);
  });
});

test("the OpenAPI document has the live-configuration routes and their schemas", async () => {
  const { body } = await call("GET", "/openapi.json");
  const put = body.paths["/api/v1/apps/{app}/routes/{name}"].put;
  assert.ok(put.requestBody.content["application/json"].schema.properties.rateLimit);
  assert.ok(body.paths["/api/v1/apps/{app}/services/{service}/traffic"].patch);
  assert.ok(body.paths["/api/v1/gateways/{id}/status"].put);
  assert.ok(body.paths["/api/v1/gateways"].get);
});
