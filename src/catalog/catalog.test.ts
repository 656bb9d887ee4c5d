// The catalog read over a seeded store: summaries, one app's releases with
// packages (known and unknown), placements, owners, who deployed (matched from
// the audit trail), observed calls of the app only; the package search by
// version and range, in service or all, within a tenant or every tenant.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { ObservedCall, SlugPackages } from "../model/catalog.ts";
import type { Member } from "../model/identity.ts";
import type { App, Deploy, Instance, Release } from "../model/objects.ts";
import { appKey, releaseKey } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { type AuditSource, Catalog } from "./catalog.ts";

const slug = (c: string) => c.repeat(64);

async function seed() {
  const store = new MemoryStore();
  const app = (tenant: string, name: string, release: number | null): App => ({
    tenant,
    name,
    createdAt: "2026-01-01T00:00:00.000Z",
    release,
    latestVersion: release ?? 0,
  });
  const release = (tenant: string, name: string, version: number, s: string, extra: Partial<Release> = {}) =>
    store.put<Release>("release", releaseKey(tenant, name, version), {
      tenant,
      app: name,
      version,
      createdAt: `2026-01-0${version}T00:00:00.000Z`,
      description: `deploy ${version}`,
      source: slug("0"),
      slug: s,
      services: { web: {} as Release["services"][string], worker: {} as Release["services"][string] },
      ...extra,
    });
  const deploy = (tenant: string, name: string, id: string, version: number, at: string) =>
    store.put<Deploy>("deploy", `${appKey(tenant, name)}/${id}`, {
      id,
      tenant,
      app: name,
      state: "succeeded",
      createdAt: at,
      release: version,
      message: "",
    });
  let n = 0;
  const instance = (
    tenant: string,
    name: string,
    release: number,
    node: string | null,
    state: Instance["state"],
    extra: Partial<Instance> = {},
  ) => {
    const id = `i${++n}`;
    return store.put<Instance>("instance", id, {
      id,
      tenant,
      app: name,
      service: "web",
      release,
      mode: "cattle",
      node,
      desired: "running",
      generation: 1,
      state,
      reason: "",
      message: "",
      run: {} as Instance["run"],
      restarts: 0,
      createdAt: "2026-01-01T00:00:00.000Z",
      ...extra,
    });
  };
  const member = (tenant: string, user: string, role: Member["role"]) =>
    store.put<Member>("member", `${tenant}/${user}`, { tenant, user, role, addedAt: "" });

  await store.put("app", "a/shop", app("a", "shop", 2));
  await release("a", "shop", 1, slug("1"));
  await release("a", "shop", 2, slug("2"), { secrets: { API_KEY: 3 } });
  // v3 records who made it (v1 and v2 were made before releases did: the audit trail tells).
  await release("a", "shop", 3, slug("3"), { rollbackOf: 1, createdBy: "user zoe" });
  await deploy("a", "shop", "d1", 1, "2026-01-01T00:00:00.000Z");
  await deploy("a", "shop", "d2", 2, "2026-01-02T00:00:00.000Z");
  await deploy("a", "shop", "d3", 3, "2026-01-03T00:00:00.000Z");
  await instance("a", "shop", 2, "n1", "running");
  await instance("a", "shop", 2, "n1", "running");
  await instance("a", "shop", 2, "n2", "ready");
  await instance("a", "shop", 2, null, "pending", { service: "worker" });
  await instance("a", "shop", 1, "n1", "draining", { desired: "stopped" });
  await store.put("app", "a/blog", app("a", "blog", 1));
  await release("a", "blog", 1, slug("4"));
  await store.put("app", "a/empty", app("a", "empty", null));
  await store.put("app", "b/shop", app("b", "shop", 1));
  await release("b", "shop", 1, slug("5"));
  await instance("b", "shop", 1, "n2", "running");
  await member("a", "alice", "owner");
  await member("a", "bob", "viewer");
  await member("a", "carol", "owner");
  await member("b", "dave", "owner");

  const pkgs = (...list: [string, string][]): SlugPackages => ({
    lockfile: "package-lock.json",
    from: "node_modules/.package-lock.json",
    packages: list.map(([name, version]) => ({ name, version })),
  });
  // Slug 3 (a rollback of v1) is v1's content in life; here it has its own list to tell them apart.
  const metadata = new Map<string, SlugPackages>([
    [slug("1"), pkgs(["lodash", "4.17.20"], ["express", "4.18.2"])],
    [slug("2"), pkgs(["lodash", "4.17.21"], ["express", "4.18.2"], ["ms", "2.1.3"])],
    [slug("3"), pkgs(["lodash", "4.17.20"])],
    [slug("5"), pkgs(["lodash", "4.17.21"])],
    // slug 4 (a/blog v1) was built before herd recorded packages.
  ]);
  let reads = 0;
  const artifacts = {
    getMetadata: async <T>(digest: string, name: string): Promise<T | undefined> => {
      assert.equal(name, "packages");
      reads++;
      return metadata.get(digest) as T | undefined;
    },
  };
  const audit: AuditSource = {
    list: (q, routes) => {
      assert.deepEqual([q.tenant, q.app], ["a", "shop"]);
      assert.ok(routes?.includes("POST /api/v1/apps/:app/rollback"));
      const trail = [
        {
          at: "2026-01-01T00:00:00.500Z",
          actor: "user alice",
          route: "POST /api/v1/apps/:app/deploys",
          status: 202,
        },
        {
          // Between v2's deploy and its audit entry: not a write that makes a release.
          at: "2026-01-02T00:00:00.800Z",
          actor: "user bob",
          route: "POST /api/v1/apps/:app/scale",
          status: 200,
        },
        {
          at: "2026-01-02T00:00:01.000Z",
          actor: "user mallory",
          route: "POST /api/v1/apps/:app/deploys",
          status: 403,
        },
        {
          at: "2026-01-02T00:00:02.000Z",
          actor: "service account ci",
          route: "POST /api/v1/apps/:app/deploys",
          status: 202,
        },
        // v3's deploy began at 2026-01-03T00:00:00; nothing in the trail within minutes of it.
        {
          at: "2026-01-03T01:00:00.000Z",
          actor: "user late",
          route: "POST /api/v1/apps/:app/rollback",
          status: 202,
        },
      ];
      return trail.filter((e) => routes?.includes(e.route));
    },
  };
  const calls: ObservedCall[] = [
    { from: "gateway", to: "shop/web", calls: 10, rate: 1, errors: 0, errorRate: 0, p99: 900 },
    { from: "shop/web", to: "shop/worker", calls: 5, rate: 0.5, errors: 1, errorRate: 0.2, p99: 300 },
    { from: "shop/web", to: "postgres", calls: 5, rate: 0.5, errors: 0, errorRate: 0, p99: 100 },
    { from: "shopping/web", to: "gateway", calls: 1, rate: 0.1, errors: 0, errorRate: 0, p99: 1 },
  ];
  const observedTenants: string[] = [];
  const catalog = new Catalog({
    store,
    artifacts,
    audit,
    observe: async (tenant, window) => {
      observedTenants.push(`${tenant} ${window}`);
      return calls;
    },
  });
  return { store, catalog, reads: () => reads, observedTenants };
}

test("apps: one line per app of the tenant, or of every tenant", async () => {
  const { catalog } = await seed();
  const mine = await catalog.apps("a");
  assert.deepEqual(
    mine.map((s) => [
      s.app,
      s.release,
      s.packages,
      s.instances,
      s.running,
      s.nodes.join(","),
      s.owners.join(","),
    ]),
    [
      ["blog", 1, null, 0, 0, "", "alice,carol"],
      ["empty", null, null, 0, 0, "", "alice,carol"],
      ["shop", 2, 3, 4, 2, "n1,n2", "alice,carol"],
    ],
  );
  assert.equal(mine[2].slug, slug("2"));
  const all = await catalog.apps(undefined);
  assert.deepEqual(
    all.map((s) => `${s.tenant}/${s.app}:${s.owners.join(",")}`),
    ["a/blog:alice,carol", "a/empty:alice,carol", "a/shop:alice,carol", "b/shop:dave"],
  );
});

test("app: releases newest first with slugs, package counts, who deployed, where each runs; observed calls of this app", async () => {
  const { catalog, observedTenants } = await seed();
  const c = await catalog.app("a", "shop", "15m");
  assert.equal(c.release, 2);
  assert.deepEqual(c.owners, ["alice", "carol"]);
  assert.deepEqual(
    c.releases.map((r) => [r.version, r.current, r.slug, r.packages?.count ?? null, r.deployedBy]),
    [
      [3, false, slug("3"), 1, "user zoe"],
      [2, true, slug("2"), 3, "service account ci"],
      [1, false, slug("1"), 2, "user alice"],
    ],
  );
  assert.deepEqual(c.deployers, ["user zoe", "service account ci", "user alice"]);
  assert.deepEqual(
    c.releases.map((r) => r.changes),
    [{ against: 2, added: 1, removed: 3 }, { against: 1, added: 2, removed: 1 }, null],
  );
  assert.equal(c.releases[0].rollbackOf, 1);
  assert.deepEqual(c.releases[1].secrets, { API_KEY: 3 });
  assert.deepEqual(c.releases[1].services, ["web", "worker"]);
  assert.deepEqual(c.releases[1].runs, [
    { service: "web", node: "n1", instances: 2, running: 2 },
    { service: "web", node: "n2", instances: 1, running: 0 },
    { service: "worker", node: null, instances: 1, running: 0 },
  ]);
  assert.deepEqual(c.releases[2].runs, [], "a draining instance is not where v1 runs");
  assert.deepEqual(observedTenants, ["a 15m"]);
  assert.deepEqual(
    c.dependencies.observed?.calls.map((e) => `${e.from} -> ${e.to}`),
    ["gateway -> shop/web", "shop/web -> shop/worker", "shop/web -> postgres"],
    "shopping/web is another app",
  );
  await assert.rejects(catalog.app("a", "nope", "15m"), { code: "not_found" });
  await assert.rejects(catalog.app("b", "blog", "15m"), { code: "not_found" }, "tenant b has no blog");
});

test("app: a trace store that cannot answer leaves observed calls out and says why", async () => {
  const { store } = await seed();
  const catalog = new Catalog({
    store,
    artifacts: { getMetadata: async () => undefined },
    audit: { list: () => [] },
    observe: async () => {
      throw new Error("trace query timed out");
    },
  });
  const c = await catalog.app("a", "shop", "1h");
  assert.equal(c.dependencies.observed, null);
  assert.equal(c.dependencies.observedError, "trace query timed out");
  assert.ok(c.releases.every((r) => r.packages === null));
  assert.deepEqual(
    c.releases.map((r) => r.deployedBy),
    ["user zoe", null, null],
    "only the recorded author without the audit trail",
  );
});

test("releasePackages: the full list, null when unknown, 404 for a release or app that is not there", async () => {
  const { catalog, reads } = await seed();
  const r = await catalog.releasePackages("a", "shop", 2);
  assert.equal(r.slug, slug("2"));
  assert.deepEqual(
    r.packages?.packages.map((p) => `${p.name}@${p.version}`),
    ["lodash@4.17.21", "express@4.18.2", "ms@2.1.3"],
  );
  const before = reads();
  await catalog.releasePackages("a", "shop", 2);
  assert.equal(reads(), before, "a slug's list is read once");
  assert.equal((await catalog.releasePackages("a", "blog", 1)).packages, null);
  assert.equal(r.changes, undefined, "no changes unless asked");
  const since = await catalog.releasePackages("a", "shop", 2, 1);
  assert.deepEqual(since.changes, {
    against: 1,
    added: [
      { name: "lodash", version: "4.17.21" },
      { name: "ms", version: "2.1.3" },
    ],
    removed: [{ name: "lodash", version: "4.17.20" }],
  });
  await assert.rejects(catalog.releasePackages("a", "shop", 2, 7), /has no release v7/);
  await assert.rejects(catalog.releasePackages("a", "shop", 9), /has no release v9/);
  await assert.rejects(catalog.releasePackages("a", "nope", 1), { code: "not_found" });
});

test("search: by version or range, releases in service unless all, within the tenant or every tenant", async () => {
  const { catalog } = await seed();
  const rows = (s: Awaited<ReturnType<Catalog["search"]>>) =>
    s.items.map(
      (m) => `${m.tenant}/${m.app} v${m.release} ${m.package.version}${m.current ? " current" : ""}`,
    );

  const exact = await catalog.search({ tenant: "a", name: "lodash", version: "4.17.21", all: false });
  assert.deepEqual(rows(exact), ["a/shop v2 4.17.21 current"]);
  assert.equal(exact.items[0].instances, 4);
  assert.equal(exact.items[0].running, 2);
  assert.deepEqual(exact.items[0].nodes, ["n1", "n2"]);
  assert.deepEqual(
    exact.unknown,
    [{ tenant: "a", app: "blog", release: 1 }],
    "blog v1 serves, packages unknown",
  );

  const range = await catalog.search({ tenant: "a", name: "lodash", version: "<4.17.21", all: false });
  assert.deepEqual(rows(range), [], "v1 and v3 (4.17.20) are not in service");
  const history = await catalog.search({ tenant: "a", name: "lodash", version: "<4.17.21", all: true });
  assert.deepEqual(rows(history), ["a/shop v3 4.17.20", "a/shop v1 4.17.20"]);

  const any = await catalog.search({ tenant: undefined, name: "lodash", all: false });
  assert.deepEqual(rows(any), ["a/shop v2 4.17.21 current", "b/shop v1 4.17.21 current"]);
  const theirs = await catalog.search({ tenant: "b", name: "express", all: true });
  assert.deepEqual(rows(theirs), [], "tenant b ships no express; a's are not searched");
  assert.deepEqual((await catalog.search({ tenant: "a", name: "left-pad", all: true })).items, []);
});
