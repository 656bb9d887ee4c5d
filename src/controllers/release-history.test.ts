import assert from "node:assert/strict";
import { test } from "node:test";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { finishedDeploys, pruneDeploys, pruneReleases } from "./release-history.ts";

test("an app keeps its newest releases and every one something uses; other apps are left alone", async (t) => {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  t.after(() => informer.stop());
  const release = (app: string, version: number) =>
    store.put("release", `default/${app}/${String(version).padStart(8, "0")}`, {
      tenant: "default",
      app,
      version,
      slug: "a".repeat(64),
    });
  for (let v = 1; v <= 12; v++) await release("shop", v);
  await release("blog", 1);
  await store.put("app", "default/shop", { tenant: "default", name: "shop", release: 12 });
  // In use: a canary's baseline and new release, an old instance still draining, a deploy in flight
  // from v5, a run not finished, a version set's pin and the release it rolls back to.
  await store.put("service", "default/shop/web", {
    tenant: "default",
    app: "shop",
    name: "web",
    release: 12,
    progressive: { baseline: 3, release: 12 },
  });
  await store.put("instance", "shop-web-1", { tenant: "default", app: "shop", release: 4 });
  await store.put("instance", "blog-web-1", { tenant: "default", app: "blog", release: 1 });
  await store.put("deploy", "default/shop/d1", { state: "rolling_out", release: 12, previous: 5 });
  await store.put("deploy", "default/shop/d0", { state: "succeeded", release: 6, previous: 2 });
  await store.put("run", "run-1", { tenant: "default", app: "shop", release: 7, state: "running" });
  await store.put("run", "run-0", { tenant: "default", app: "shop", release: 8, state: "succeeded" });
  await store.put("version_set", "default/prod/00000001", {
    apps: { shop: { version: 9 } },
    steps: [{ app: "shop", version: 9, from: 1 }],
  });

  assert.deepEqual(await pruneReleases(store, informer, "default", "shop", 3), [2, 6, 8]);
  const left = (await store.list<{ version: number }>("release", { prefix: "default/shop/" })).items
    .map((o) => o.value.version)
    .sort((a, b) => a - b);
  assert.deepEqual(left, [1, 3, 4, 5, 7, 9, 10, 11, 12]);
  assert.equal((await store.list("release", { prefix: "default/blog/" })).items.length, 1);
  // Nothing more to delete; 0 keeps every release.
  assert.deepEqual(await pruneReleases(store, informer, "default", "shop", 3), []);
  assert.deepEqual(await pruneReleases(store, informer, "default", "shop", 0), []);
});

test("an app keeps its newest finished deploys; one still rolling out stays, other apps are left alone", async () => {
  const store = new MemoryStore();
  const deploy = (app: string, n: number, state: string) =>
    store.put("deploy", `default/${app}/d${String(n).padStart(3, "0")}`, {
      id: `d${String(n).padStart(3, "0")}`,
      tenant: "default",
      app,
      state,
      createdAt: new Date(Date.UTC(2026, 11, 1, 0, n)).toISOString(),
    });
  for (let n = 1; n <= 6; n++)
    await deploy("shop", n, n === 2 ? "rolling_out" : n % 2 ? "succeeded" : "failed");
  await deploy("blog", 1, "succeeded");
  assert.equal(await pruneDeploys(store, await finishedDeploys(store, "default", "shop"), 3), 2);
  const left = (await store.list<{ id: string }>("deploy", { prefix: "default/shop/" })).items.map(
    (o) => o.value.id,
  );
  assert.deepEqual(left.sort(), ["d002", "d004", "d005", "d006"]);
  assert.equal((await store.list("deploy", { prefix: "default/blog/" })).items.length, 1);
  assert.equal(await pruneDeploys(store, await finishedDeploys(store, "default", "shop"), 3), 0);
});
