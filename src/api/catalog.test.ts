// The catalog's routes over a real socket: who sees which tenant's apps and
// packages (a tenant its own, a platform admin every tenant's), and the 400s
// that name the field at fault.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ArtifactStore } from "../builder/artifact-store.ts";
import { PACKAGES_METADATA } from "../catalog/lockfile.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { SlugPackages } from "../model/catalog.ts";
import { type App, appKey, type Release, releaseKey } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
let tokens: TestTokens;
const dir = mkdtempSync(join(tmpdir(), "herd-catalog-api-"));

/** App `shop` in `tenant` serving release 1, whose slug ships lodash at `lodash`. */
async function shop(tenant: string, digest: string, lodash: string): Promise<void> {
  const created = await apiCall(server, "POST", `/apps?tenant=${tenant}`, { name: "shop" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const release: Release = {
    tenant,
    app: "shop",
    version: 1,
    createdAt: new Date().toISOString(),
    description: "seeded",
    source: "0".repeat(64),
    slug: digest,
    services: {
      web: { dependsOn: ["worker", "pay/api"] } as Release["services"][string],
      worker: {} as Release["services"][string],
    },
  };
  await server.store.put("release", releaseKey(tenant, "shop", 1), release, { expectRevision: 0 });
  const o = await server.store.get<App>("app", appKey(tenant, "shop"));
  await server.store.put(
    "app",
    o!.key,
    { ...o!.value, release: 1, latestVersion: 1 },
    { expectRevision: o!.revision },
  );
  const packages: SlugPackages = {
    lockfile: "package-lock.json",
    from: "node_modules/.package-lock.json",
    packages: [{ name: "lodash", version: lodash }],
  };
  await new ArtifactStore(join(dir, "artifacts")).putMetadata(digest, PACKAGES_METADATA, packages);
}

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  await shop("a", "a".repeat(64), "4.17.21");
  await shop("b", "b".repeat(64), "4.17.15");
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const get = (path: string, token: string) => apiCall(server, "GET", path, undefined, { token });
const found = (body: { items: { tenant: string; app: string; package: { version: string } }[] }) =>
  body.items.map((m) => `${m.tenant}/${m.app}@${m.package.version}`);

test("a tenant's viewer sees its own apps and packages; naming another tenant is refused", async () => {
  const apps = await get("/catalog/apps", tokens.viewerA);
  assert.equal(apps.status, 200, JSON.stringify(apps.body));
  assert.deepEqual(
    apps.body.items.map(
      (s: { tenant: string; app: string; packages: number }) => `${s.tenant}/${s.app}:${s.packages}`,
    ),
    ["a/shop:1"],
  );
  const search = await get("/catalog/packages?name=lodash", tokens.viewerA);
  assert.equal(search.status, 200);
  assert.deepEqual(found(search.body), ["a/shop@4.17.21"]);
  assert.equal((await get("/catalog/packages?name=lodash&tenant=b", tokens.viewerA)).status, 403);
  assert.equal((await get("/catalog/apps/shop?tenant=b", tokens.viewerA)).status, 403);
  const one = await get("/catalog/apps/shop", tokens.viewerA);
  assert.equal(one.status, 200);
  assert.equal(one.body.releases[0].slug, "a".repeat(64));
  const pkgs = await get("/catalog/apps/shop/releases/1/packages", tokens.viewerA);
  assert.deepEqual(pkgs.body.packages.packages, [{ name: "lodash", version: "4.17.21" }]);
  assert.equal((await get("/catalog/apps/shop/releases/2/packages", tokens.viewerA)).status, 404);
  assert.equal((await get("/catalog/apps/nope", tokens.viewerA)).status, 404);
});

test("a platform admin naming no tenant sees every tenant's; naming one, that tenant's", async () => {
  const all = await get("/catalog/packages?name=lodash", tokens.admin);
  assert.deepEqual(found(all.body), ["a/shop@4.17.21", "b/shop@4.17.15"]);
  const ranged = await get(
    `/catalog/packages?name=lodash&version=${encodeURIComponent("<4.17.20")}`,
    tokens.admin,
  );
  assert.deepEqual(found(ranged.body), ["b/shop@4.17.15"]);
  const b = await get("/catalog/packages?name=lodash&tenant=b", tokens.admin);
  assert.deepEqual(found(b.body), ["b/shop@4.17.15"]);
  const apps = await get("/catalog/apps", tokens.admin);
  assert.deepEqual(
    apps.body.items.map((s: { tenant: string }) => s.tenant),
    ["a", "b"],
  );
});

test("an app's entry: declared dependencies of the serving release, none seen yet; the config version in effect", async () => {
  const platform = await apiCall(
    server,
    "POST",
    "/config/catalog/platform/base/versions",
    { set: { TZ: "UTC" } },
    { token: tokens.admin },
  );
  assert.equal(platform.status, 201, JSON.stringify(platform.body));
  const before = await get("/catalog/apps/shop", tokens.viewerA);
  assert.deepEqual(before.body.config, { stable: null, gray: null });
  const v1 = await apiCall(
    server,
    "POST",
    "/apps/shop/config/versions?tenant=a",
    { platform: "base@1", set: { OWN: "1" }, message: "first" },
    { token: tokens.ownerA },
  );
  assert.equal(v1.status, 201, JSON.stringify(v1.body));
  const one = await get("/catalog/apps/shop", tokens.viewerA);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.deepEqual(one.body.dependencies.declared, {
    release: 1,
    services: { web: ["shop/worker", "pay/api"], worker: [] },
  });
  assert.deepEqual(one.body.dependencies.observed?.calls, [], "no traces yet");
  assert.deepEqual(one.body.dependencies.drift, {
    notObserved: [
      { from: "shop/web", to: "shop/worker" },
      { from: "shop/web", to: "pay/api" },
    ],
    undeclared: [],
  });
  const { stable, gray } = one.body.config;
  assert.deepEqual(
    [stable?.version, stable?.message, stable?.platform, stable?.middleware, gray],
    [1, "first", { name: "base", version: 1 }, [], null],
  );
});

test("machines without apps:read are refused; a member of two tenants must name one", async () => {
  assert.equal((await get("/catalog/apps", tokens.ingestA)).status, 403);
  assert.equal((await get("/catalog/packages?name=x", tokens.gateway)).status, 403);
  const two = await get("/catalog/packages?name=lodash", tokens.ownerAViewerB);
  assert.equal(two.status, 400);
  assert.equal(two.body.details[0].field, "querystring.tenant");
  assert.deepEqual(found((await get("/catalog/packages?name=lodash&tenant=b", tokens.ownerAViewerB)).body), [
    "b/shop@4.17.15",
  ]);
});

test("bad input is a 400 naming the field", async () => {
  const cases: [string, string][] = [
    ["/catalog/packages", "querystring.name"],
    ["/catalog/packages?name=", "querystring.name"],
    ["/catalog/packages?name=has%20space", "querystring.name"],
    ["/catalog/packages?name=@scope", "querystring.name"],
    ["/catalog/packages?name=lodash&version=not-a-range", "querystring.version"],
    ["/catalog/packages?name=lodash&version=", "querystring.version"],
    ["/catalog/packages?name=lodash&all=maybe", "querystring.all"],
    ["/catalog/apps/shop?window=forever", "querystring.window"],
    ["/catalog/apps/shop?window=0s", "querystring.window"],
    ["/catalog/apps/shop?window=25h", "querystring.window"],
    ["/catalog/apps/Shop", "params.app"],
    ["/catalog/apps/shop/releases/v1/packages", "params.version"],
    ["/catalog/apps/shop/releases/0/packages", "params.version"],
    ["/catalog/apps/shop/releases/1/packages?against=x", "querystring.against"],
  ];
  for (const [path, field] of cases) {
    const r = await get(path, tokens.viewerA);
    assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, "invalid");
    assert.equal(r.body.details?.[0]?.field, field, `${path}: ${JSON.stringify(r.body)}`);
    assert.ok(r.body.message.includes(field), r.body.message);
  }
});
