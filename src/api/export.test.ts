// GET /apps/:app/export/kubernetes against a real control plane: the current
// release's objects, counts from `herd scale`, secrets by name only (a value
// set through the API never appears), who may read it, and its 400/404/409.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import type { RunningServer } from "../daemons/control-plane.ts";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import type { App, Release, Service } from "../model/objects.ts";
import { releaseKey } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall, testServer } from "./testing.ts";

const fixture = testServer("herd-api-export-");
let server: RunningServer;
let tokens: TestTokens;
const SECRET_VALUE = "very-secret-value-42";

before(async () => {
  server = await fixture.started;
  tokens = await createTestTokens(server.url, server.adminToken);
  const set = await apiCall(server, "PUT", "/apps/shop/secrets/DB_URL?tenant=a", { value: SECRET_VALUE });
  assert.ok(set.status < 300, JSON.stringify(set.body));
  const m = parseManifest(`app: shop
services:
  web:
    command: node server.js
    instances: 2
    env: { DB_URL: { secret: DB_URL } }
    routes: [{ host: shop.example.com, path: /shop }]
  db:
    command: ./db
    mode: pet
`);
  const specs = Object.fromEntries(
    Object.entries(m.services).map(([name, s]) => [name, normalizeService("shop", name, s, undefined)]),
  );
  const now = new Date().toISOString();
  await server.store.put<Release>("release", releaseKey("a", "shop", 3), {
    tenant: "a",
    app: "shop",
    version: 3,
    createdAt: now,
    description: "test",
    source: "0".repeat(64),
    slug: "0".repeat(64),
    services: specs,
  });
  await server.store.put<App>("app", "a/shop", {
    tenant: "a",
    name: "shop",
    createdAt: now,
    release: 3,
    latestVersion: 3,
  });
  await server.store.put<App>("app", "a/empty", {
    tenant: "a",
    name: "empty",
    createdAt: now,
    release: null,
    latestVersion: 0,
  });
  for (const [name, spec] of Object.entries(specs)) {
    await server.store.put<Service>("service", `a/shop/${name}`, {
      tenant: "a",
      app: "shop",
      name,
      release: 3,
      spec,
      instances: name === "web" ? 5 : spec.instances, // as after `herd scale web=5`
      state: "running",
      message: "",
      crashes: 0,
    });
  }
});

test("GET /apps/:app/export/kubernetes: the current release's objects for the tenant's viewers", async () => {
  const r = await apiCall(server, "GET", "/apps/shop/export/kubernetes", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.release, 3);
  assert.equal(r.body.image, "herd.local/a/shop:v3");
  const names = r.body.objects.map(
    (o: { kind: string; metadata: { name: string } }) => `${o.kind}/${o.metadata.name}`,
  );
  assert.deepEqual(names, [
    "Secret/shop-secrets",
    "StatefulSet/shop-db",
    "Service/shop-db-pods",
    "Deployment/shop-web",
    "Service/shop-web",
    "Ingress/shop",
  ]);
  const web = r.body.objects.find((o: { kind: string }) => o.kind === "Deployment");
  assert.equal(web.spec.replicas, 5, "the count now, after herd scale");
  assert.ok(!JSON.stringify(r.body).includes(SECRET_VALUE), "a secret's value never leaves");
  const secret = r.body.objects[0];
  assert.deepEqual(secret.stringData, { DB_URL: "REPLACE_ME" });

  const image = await apiCall(
    server,
    "GET",
    "/apps/shop/export/kubernetes?image=registry.example.com/shop:v3",
    undefined,
    {
      token: tokens.viewerA,
    },
  );
  assert.equal(image.body.objects[1].spec.template.spec.containers[0].image, "registry.example.com/shop:v3");
});

test("GET /apps/:app/export/kubernetes: 400 names the field, 404 elsewhere, 409 before a release, 401 without a token", async () => {
  const bad = await apiCall(server, "GET", "/apps/shop/export/kubernetes?image=Not%20An%20Image", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /image/);
  const other = await apiCall(server, "GET", "/apps/shop/export/kubernetes?tenant=b", undefined, {
    token: tokens.ownerAViewerB,
  });
  assert.equal(other.status, 404);
  const none = await apiCall(server, "GET", "/apps/nope/export/kubernetes", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(none.status, 404);
  const empty = await apiCall(server, "GET", "/apps/empty/export/kubernetes", undefined, {
    token: tokens.viewerA,
  });
  assert.equal(empty.status, 409);
  assert.match(empty.body.message, /no release yet/);
  const anon = await apiCall(server, "GET", "/apps/shop/export/kubernetes", undefined, {
    token: "herd_pat_nope",
  });
  assert.equal(anon.status, 401);
});
