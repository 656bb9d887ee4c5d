// herd catalog against a test API: what it asks for (package and version split
// at the last @, --all, --release) and what it prints, tables and --json.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { CatalogApp, CatalogAppSummary, PackageSearch, ReleasePackages } from "../model/catalog.ts";
import { parsePackageArg } from "./catalog.ts";
import { runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-10T00:00:00Z");
const summary: CatalogAppSummary[] = [
  {
    tenant: "a",
    app: "shop",
    release: 2,
    slug: "2".repeat(64),
    packages: 3,
    instances: 3,
    running: 2,
    nodes: ["n1", "n2"],
    owners: ["alice"],
  },
  {
    tenant: "a",
    app: "old",
    release: 1,
    slug: "1".repeat(64),
    packages: null,
    instances: 0,
    running: 0,
    nodes: [],
    owners: [],
  },
];
const entry: CatalogApp = {
  tenant: "a",
  app: "shop",
  createdAt: "2026-01-01T00:00:00Z",
  release: 2,
  owners: ["alice", "carol"],
  deployers: ["user alice"],
  releases: [
    {
      version: 2,
      createdAt: "2026-01-09T00:00:00Z",
      description: "Deploy 2",
      current: true,
      source: "0".repeat(64),
      slug: "2".repeat(64),
      services: ["web", "worker"],
      deployedBy: "user alice",
      packages: { lockfile: "package-lock.json", from: "node_modules/.package-lock.json", count: 2 },
      changes: { against: 1, added: 1, removed: 0 },
      runs: [
        { service: "web", node: "n1", instances: 2, running: 2 },
        { service: "worker", node: null, instances: 1, running: 0 },
      ],
    },
    {
      version: 1,
      createdAt: "2026-01-02T00:00:00Z",
      description: "Deploy 1",
      current: false,
      source: "0".repeat(64),
      slug: "1".repeat(64),
      services: ["web"],
      deployedBy: null,
      packages: null,
      changes: null,
      runs: [],
    },
  ],
  dependencies: {
    declared: { release: 2, services: { web: ["shop/worker", "pay/api"], worker: [] } },
    observed: {
      window: "15m",
      calls: [
        { from: "gateway", to: "shop/web", calls: 40, rate: 0.044, errors: 2, errorRate: 0.05, p99: 12_000 },
        { from: "shop/web", to: "shop/worker", calls: 9, rate: 0.01, errors: 0, errorRate: 0, p99: 3_000 },
        { from: "shop/worker", to: "postgres", calls: 5, rate: 0.005, errors: 0, errorRate: 0, p99: 1_000 },
      ],
    },
    drift: {
      notObserved: [{ from: "shop/web", to: "pay/api" }],
      undeclared: [{ from: "shop/worker", to: "postgres" }],
    },
  },
  config: {
    stable: {
      version: 3,
      createdAt: "2026-01-09T00:00:00Z",
      author: "user alice",
      message: "pool 4",
      platform: { name: "base", version: 4 },
      middleware: [{ name: "redis", version: 1 }],
    },
    gray: {
      version: 4,
      createdAt: "2026-01-09T12:00:00Z",
      author: "user carol",
      message: "pool 8",
      platform: { name: "base", version: 5 },
      middleware: [],
      startedAt: "2026-01-09T12:00:00Z",
      by: "user carol",
      share: 10,
    },
  },
};
const packages = (release: number, against: string | null): ReleasePackages => ({
  tenant: "a",
  app: "shop",
  release,
  slug: String(release).repeat(64),
  packages:
    release === 1
      ? null
      : {
          lockfile: "package-lock.json",
          from: "node_modules/.package-lock.json",
          packages: [
            { name: "@acme/util", version: "1.0.0" },
            { name: "lodash", version: "4.17.21" },
          ],
        },
  ...(against === null
    ? {}
    : {
        changes: {
          against: Number(against),
          added: [{ name: "lodash", version: "4.17.21" }],
          removed: [{ name: "lodash", version: "4.17.20" }],
        },
      }),
});
const search: PackageSearch = {
  name: "lodash",
  version: "^4",
  all: false,
  items: [
    {
      tenant: "a",
      app: "shop",
      release: 2,
      current: true,
      instances: 3,
      running: 2,
      nodes: ["n1"],
      package: { name: "lodash", version: "4.17.21" },
    },
  ],
  unknown: [{ tenant: "a", app: "old", release: 1 }],
};

let api: TestApi;
before(async () => {
  api = await startTestApi((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/api/v1/catalog/apps") return sendJson(res, 200, { items: summary });
    if (url.pathname === "/api/v1/catalog/apps/shop") return sendJson(res, 200, entry);
    const m = /^\/api\/v1\/catalog\/apps\/shop\/releases\/(\d+)\/packages$/.exec(url.pathname);
    if (m) return sendJson(res, 200, packages(Number(m[1]), url.searchParams.get("against")));
    if (url.pathname === "/api/v1/catalog/packages") return sendJson(res, 200, search);
    sendJson(res, 404, { code: "not_found", message: "no" });
  });
});
after(() => api.close());
const cli = (...argv: string[]) => runCli(argv, { server: api.url, token: "t", now: NOW });
const lastUrl = () => api.requests.at(-1)?.url;

test("parsePackageArg: the version or range after the last @, scoped names kept whole", () => {
  assert.deepEqual(parsePackageArg("lodash"), { name: "lodash" });
  assert.deepEqual(parsePackageArg("lodash@4.17.21"), { name: "lodash", version: "4.17.21" });
  assert.deepEqual(parsePackageArg("@acme/util"), { name: "@acme/util" });
  assert.deepEqual(parsePackageArg("@acme/util@>=1 <2"), { name: "@acme/util", version: ">=1 <2" });
  assert.throws(() => parsePackageArg("lodash@"), /nothing after @/);
});

test("herd catalog: one line per app; packages unknown said so", async () => {
  const r = await cli("catalog");
  assert.equal(r.code, 0, r.err);
  assert.equal(lastUrl(), "/api/v1/catalog/apps");
  const lines = r.out.trimEnd().split("\n");
  assert.match(lines[0], /^TENANT +APP +RELEASE +SLUG +PACKAGES +INSTANCES +NODES +OWNERS$/);
  assert.match(lines[1], /^a +shop +v2 +222222222222 +3 +2\/3 +n1,n2 +alice$/);
  assert.match(lines[2], /^a +old +v1 +111111111111 +unknown +0\/0 +- +-$/);
});

test("herd catalog --app: releases, the serving release's packages, the calls; --release picks another", async () => {
  const r = await cli("catalog", "--app", "shop", "--window", "1h");
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(
    api.requests.slice(-2).map((q) => q.url),
    ["/api/v1/catalog/apps/shop?window=1h", "/api/v1/catalog/apps/shop/releases/2/packages"],
  );
  assert.match(r.out, /^app shop \(tenant a\), serving v2\nowners: alice, carol\ndeployed by: user alice\n/);
  assert.match(
    r.out,
    /v2 \* +24h ago +222222222222 +2 +\+1 -0 +user alice +web 2\/2 n1; worker 0\/1 pending +Deploy 2/,
  );
  assert.match(r.out, /v1 +8d ago +111111111111 +unknown +- +- +- +Deploy 1/);
  assert.match(
    r.out,
    /Packages of v2 \(slug 222222222222\), from node_modules\/\.package-lock\.json, lockfile package-lock\.json:/,
  );
  assert.match(r.out, /@acme\/util +1\.0\.0\nlodash +4\.17\.21/);
  assert.match(r.out, /gateway +shop\/web +40 +0\.044 +5% +12ms/);
  assert.match(r.out, /\nconfig: v3 \(platform base@4; middleware redis@1\), by user alice 24h ago\n/);
  assert.match(r.out, /\nconfig gray: v4 \(platform base@5\) to 10% of instances, by user carol 12h ago\n/);
  assert.match(
    r.out,
    /Dependencies \(dependsOn of v2; seen in the traces over 15m\):\nFROM +TO +DECLARED +SEEN\n/,
  );
  assert.match(r.out, /shop\/web +shop\/worker +yes +yes\n/);
  assert.match(r.out, /shop\/web +pay\/api +yes +no \(declared, not seen\)\n/);
  assert.match(r.out, /shop\/worker +postgres +no +yes \(undeclared\)\n/);

  const old = await cli("catalog", "--app", "shop", "--release", "v1");
  assert.equal(old.code, 0, old.err);
  assert.equal(lastUrl(), "/api/v1/catalog/apps/shop/releases/1/packages");
  assert.match(
    old.out,
    /Packages of v1 \(slug 111111111111\): unknown \(built before herd recorded packages\)/,
  );

  const diff = await cli("catalog", "--app", "shop", "--against", "1");
  assert.equal(diff.code, 0, diff.err);
  assert.equal(lastUrl(), "/api/v1/catalog/apps/shop/releases/2/packages?against=1");
  assert.match(
    diff.out,
    /Package changes of v2 since v1:\n +NAME +VERSION\n- +lodash +4\.17\.20\n\+ +lodash +4\.17\.21\n/,
  );

  const json = await cli("catalog", "--app", "shop", "--json");
  const parsed = JSON.parse(json.out);
  assert.equal(parsed.releases.length, 2);
  assert.equal(parsed.releasePackages.packages.packages[1].name, "lodash");
});

test("herd catalog search: name and version asked for, matches and unknown releases printed", async () => {
  const r = await cli("catalog", "search", "lodash@^4", "--all");
  assert.equal(r.code, 0, r.err);
  const asked = new URL(lastUrl()!, "http://x").searchParams;
  assert.deepEqual([asked.get("name"), asked.get("version"), asked.get("all")], ["lodash", "^4", "true"]);
  assert.match(
    r.out,
    /^TENANT +APP +RELEASE +VERSION +INSTANCES +NODES\na +shop +v2 \* +4\.17\.21 +2\/3 +n1\n/,
  );
  assert.match(
    r.out,
    /Packages unknown \(built before herd recorded them; deploy again to record\): a\/old v1/,
  );
  const json = await cli("catalog", "search", "lodash", "--json");
  assert.deepEqual(JSON.parse(json.out), search);
  assert.equal(new URL(lastUrl()!, "http://x").searchParams.has("version"), false);
});

test("herd catalog: usage errors say what is wrong", async () => {
  for (const [argv, pattern] of [
    [["catalog", "search"], /search takes one package/],
    [["catalog", "search", "a", "b"], /search takes one package/],
    [["catalog", "search", "lodash", "--app", "x"], /--app is not for search/],
    [["catalog", "--release", "2"], /--release needs --app/],
    [["catalog", "--against", "2"], /--against needs --app/],
    [["catalog", "--all"], /--all is for `herd catalog search`/],
    [["catalog", "--app", "shop", "--release", "two"], /--release two: expected a whole number/],
    [["catalog", "extra"], /unexpected argument: extra/],
  ] as const) {
    const before = api.requests.length;
    const r = await cli(...argv);
    assert.notEqual(r.code, 0, argv.join(" "));
    assert.match(r.err, pattern, argv.join(" "));
    if (argv[1] !== "--app") assert.equal(api.requests.length, before, "nothing asked of the server");
  }
});
