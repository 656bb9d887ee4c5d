// GET /apps/:app/rollout and POST /apps/:app/rollout/<action> against a real
// control plane, with a canary in flight written into its store.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import type { App, Service } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-api-rollouts-"));
let server: RunningServer;
let tokens: TestTokens;

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  const m = parseManifest(`app: shop
services:
  web:
    command: node server.js
    rollout: { strategy: canary, steps: [{ weight: 10, pause: 1h }, { weight: 50 }] }
  worker:
    command: node worker.js
`);
  await server.store.put<App>("app", "a/shop", {
    tenant: "a",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 2,
  });
  for (const name of ["web", "worker"]) {
    const spec = normalizeService("shop", name, m.services[name], undefined);
    const svc: Service = {
      tenant: "a",
      app: "shop",
      name,
      release: name === "web" ? 2 : 1,
      spec,
      instances: 1,
      state: name === "web" ? "updating" : "running",
      message: "",
      crashes: 0,
    };
    if (name === "web")
      svc.progressive = {
        strategy: "canary",
        baseline: 1,
        release: 2,
        phase: "steps",
        step: 0,
        weight: 10,
        stepStartedAt: new Date().toISOString(),
        analyses: [],
      };
    await server.store.put<Service>("service", `a/shop/${name}`, svc);
  }
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("GET /apps/:app/rollout: each service's strategy, and the canary's phase, step and weight", async () => {
  const r = await apiCall(server, "GET", "/apps/shop/rollout", undefined, { token: tokens.viewerA });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(
    r.body.items.map((s: { service: string; strategy: string; progressive?: { weight: number } }) => [
      s.service,
      s.strategy,
      s.progressive?.weight,
    ]),
    [
      ["web", "canary", 10],
      ["worker", "rolling", undefined],
    ],
  );
  assert.equal(r.body.items[0].progressive.steps.length, 2);
  const one = await apiCall(server, "GET", "/apps/shop/rollout?service=worker", undefined, {
    token: tokens.viewerA,
  });
  assert.deepEqual(
    one.body.items.map((s: { service: string }) => s.service),
    ["worker"],
  );
  const bad = await apiCall(server, "GET", "/apps/shop/rollout?service=Web!", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.details[0].field, "querystring.service");
});

test("a viewer may not act; a deployer pauses, resumes and promotes; unknown services are 404, no rollout 409", async () => {
  const denied = await apiCall(server, "POST", "/apps/shop/rollout/pause", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(denied.status, 403);
  const paused = await apiCall(server, "POST", "/apps/shop/rollout/pause", undefined, {
    token: tokens.deployerA,
  });
  assert.equal(paused.status, 200, JSON.stringify(paused.body));
  assert.equal(paused.body.items[0].progressive.paused, true);
  const again = await apiCall(server, "POST", "/apps/shop/rollout/pause", undefined, {
    token: tokens.deployerA,
  });
  assert.deepEqual(again.body.items, [], "already paused: nothing changed");
  const resumed = await apiCall(server, "POST", "/apps/shop/rollout/resume?service=web", undefined, {
    token: tokens.deployerA,
  });
  assert.equal(resumed.body.items[0].progressive.paused, false);
  const none = await apiCall(server, "POST", "/apps/shop/rollout/promote?service=worker", undefined, {
    token: tokens.deployerA,
  });
  assert.equal(none.status, 409);
  assert.match(none.body.message, /worker has no canary or blue\/green rollout in progress/);
  const missing = await apiCall(server, "POST", "/apps/shop/rollout/abort?service=db", undefined, {
    token: tokens.deployerA,
  });
  assert.equal(missing.status, 404);
  const promoted = await apiCall(server, "POST", "/apps/shop/rollout/promote", undefined, {
    token: tokens.deployerA,
  });
  assert.equal(promoted.status, 200);
  assert.equal(promoted.body.items[0].progressive.phase, "promoting");
  const other = await apiCall(server, "GET", "/apps/shop/rollout?tenant=b", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(other.status, 403);
});
