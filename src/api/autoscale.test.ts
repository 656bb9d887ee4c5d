// GET /apps/:app/autoscale and POST /apps/:app/scale on an autoscaled service,
// against a real control plane (its autoscaler runs, with no gateway figures).

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

const dir = mkdtempSync(join(tmpdir(), "herd-api-autoscale-"));
let server: RunningServer;
let tokens: TestTokens;

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  const m = parseManifest(`app: shop
services:
  web:
    command: node server.js
    autoscale: { min: 2, max: 6, target: { concurrency: 8 } }
  worker:
    command: node worker.js
`);
  await server.store.put<App>("app", "a/shop", {
    tenant: "a",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  });
  for (const name of ["web", "worker"]) {
    const spec = normalizeService("shop", name, m.services[name], undefined);
    await server.store.put<Service>("service", `a/shop/${name}`, {
      tenant: "a",
      app: "shop",
      name,
      release: 1,
      spec,
      instances: spec.instances,
      state: "running",
      message: "",
      crashes: 0,
    });
  }
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("GET /apps/:app/autoscale: the autoscaled services only, for the tenant's viewers; 404 elsewhere", async () => {
  const r = await apiCall(server, "GET", "/apps/shop/autoscale", undefined, { token: tokens.viewerA });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.items.length, 1);
  const [web] = r.body.items;
  assert.equal(web.service, "web");
  assert.equal(web.instances, 2, "herd.yaml's start count 1, clamped to min 2");
  assert.deepEqual([web.min, web.max, web.target], [2, 6, { metric: "concurrency", value: 8 }]);
  assert.ok(["waiting", "stable"].includes(web.mode), web.mode);
  const other = await apiCall(server, "GET", "/apps/shop/autoscale?tenant=b", undefined, {
    token: tokens.ownerAViewerB,
  });
  assert.equal(other.status, 404);
  const none = await apiCall(server, "GET", "/apps/nope/autoscale", undefined, { token: tokens.viewerA });
  assert.equal(none.status, 404);
});

test("POST /apps/:app/scale keeps an autoscaled count inside [min, max] and warns; others as asked", async () => {
  const r = await apiCall(
    server,
    "POST",
    "/apps/shop/scale",
    { services: { web: 40, worker: 3 } },
    { token: tokens.deployerA },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const counts = Object.fromEntries(r.body.items.map((s: Service) => [s.name, s.instances]));
  assert.deepEqual(counts, { web: 6, worker: 3 });
  assert.deepEqual(r.body.warnings, [
    "web is autoscaled between 2 and 6: 40 became 6; the autoscaler may change it",
  ]);
  const events = await apiCall(server, "GET", "/events?app=shop&tenant=a", undefined, {
    token: tokens.viewerA,
  });
  assert.ok(
    events.body.items.some(
      (e: { reason: string; message: string }) =>
        e.reason === "Scaled" && e.message === "web scaled from 2 to 6",
    ),
    JSON.stringify(events.body.items),
  );
});
