import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../common/clock.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { grayCatalog, rollbackCatalog } from "./catalog-gray.ts";
import { ConfigCenter } from "./center.ts";

test("a platform version in gray release to one tenant, rolled back, then promoted to every tenant", async () => {
  const store = new MemoryStore();
  const center = new ConfigCenter(store, new ManualClock(0));
  const admin = "user admin";
  await center.change({ layer: "platform", namespace: "base", author: admin, set: { POOL: "4" } });
  await center.change({ layer: "platform", namespace: "base", author: admin, set: { POOL: "8" } });
  await center.change({ layer: "middleware", namespace: "cache", author: admin, set: { TTL: "60" } });
  const pinned = { platform: { name: "base", version: 1 } };
  for (const ns of ["acme/web", "acme/api", "globex/web"])
    await center.change({ layer: "app", namespace: ns, author: "user d", set: { NAME: ns }, ...pinned });
  // An app that does not use base, and one in a gray release of its own.
  await center.change({ layer: "app", namespace: "acme/solo", author: "user d", set: { X: "1" } });
  await center.change({
    layer: "app",
    namespace: "acme/busy",
    author: "user d",
    set: { X: "1" },
    ...pinned,
  });
  await center.change({
    layer: "app",
    namespace: "acme/busy",
    author: "user d",
    set: { X: "2" },
    gray: { share: 10 },
  });
  const pool = async (tenant: string, app: string) => (await center.effective(tenant, app))?.values.POOL;

  const gray = await grayCatalog(center, store, {
    layer: "platform",
    name: "base",
    version: 2,
    tenants: ["acme"],
    author: admin,
  });
  assert.deepEqual(
    gray.moved.map((m) => [m.tenant, m.app, m.from, m.to]),
    [
      ["acme", "api", 1, 2],
      ["acme", "web", 1, 2],
    ],
  );
  assert.deepEqual(
    gray.skipped.map((s) => s.app),
    ["busy"],
  );
  assert.equal(await pool("acme", "web"), "8");
  assert.equal(await pool("globex", "web"), "4", "another tenant keeps its version");
  const latest = (await center.versions("app", "acme/web")).at(-1);
  assert.equal(latest?.message, "platform base@2 (was @1) for tenant acme");
  assert.equal(latest?.author, admin);
  assert.equal(latest?.entries.NAME?.kind, "key", "the app's own entries stay");

  // Rolled back: acme's apps pin base@1 again, as new versions.
  const back = await rollbackCatalog(center, store, {
    layer: "platform",
    name: "base",
    version: 2,
    tenants: ["acme"],
    author: admin,
  });
  assert.deepEqual(
    back.moved.map((m) => [m.app, m.from, m.to]),
    [
      ["api", 2, 1],
      ["web", 2, 1],
    ],
  );
  assert.equal(await pool("acme", "web"), "4");

  // Promoted: every tenant's apps that use base.
  const all = await grayCatalog(center, store, {
    layer: "platform",
    name: "base",
    version: 2,
    author: admin,
  });
  assert.deepEqual(
    all.moved.map((m) => `${m.tenant}/${m.app}`),
    ["acme/api", "acme/web", "globex/web"],
  );
  assert.equal(await pool("globex", "web"), "8");
  assert.equal(all.moved[2]?.appVersion, 2);

  // An unknown version: 404.
  await assert.rejects(
    grayCatalog(center, store, { layer: "platform", name: "base", version: 9, author: admin }),
    /no config version 9/,
  );
});

test("a middleware version is swapped in place in an app's list", async () => {
  const store = new MemoryStore();
  const center = new ConfigCenter(store, new ManualClock(0));
  for (const v of ["1", "2"])
    await center.change({ layer: "middleware", namespace: "cache", author: "a", set: { TTL: v } });
  await center.change({ layer: "middleware", namespace: "queue", author: "a", set: { Q: "1" } });
  await center.change({
    layer: "app",
    namespace: "acme/web",
    author: "d",
    set: { N: "1" },
    middleware: [
      { name: "cache", version: 1 },
      { name: "queue", version: 1 },
    ],
  });
  await grayCatalog(center, store, {
    layer: "middleware",
    name: "cache",
    version: 2,
    tenants: ["acme"],
    author: "a",
  });
  const v = (await center.versions("app", "acme/web")).at(-1);
  assert.deepEqual(v?.uses?.middleware, [
    { name: "cache", version: 2 },
    { name: "queue", version: 1 },
  ]);
});
