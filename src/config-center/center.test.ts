import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../common/clock.ts";
import { HerdError } from "../common/errors.ts";
import type { Instance } from "../model/objects.ts";
import { controlPlaneInformer } from "../store/informer-kinds.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { ConfigCenter } from "./center.ts";

const NS = "shop/web";

function instance(id: string, node = "n1"): Instance {
  return {
    id,
    tenant: "shop",
    app: "web",
    service: "web",
    release: 1,
    mode: "cattle",
    node,
    desired: "running",
    generation: 1,
    state: "running",
    reason: "",
    message: "",
    run: {
      slug: "x",
      command: "x",
      env: {},
      resources: { cpu: 1, memory: 1 },
      health: { kind: "process", intervalMs: 1, timeoutMs: 1, failures: 1, startupMs: 1 },
    },
    restarts: 0,
    createdAt: "",
  };
}

async function rejects(p: Promise<unknown>, code: string, text?: RegExp): Promise<HerdError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof HerdError, String(err));
    assert.equal(err.code, code, err.message);
    if (text) assert.match(err.message, text);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

test("every change is a new version with author and message; rollback restores old content as a new version", async () => {
  const center = new ConfigCenter(new MemoryStore(), new ManualClock(0));
  const v1 = await center.change({
    layer: "app",
    namespace: NS,
    author: "user a",
    message: "first",
    set: { GREETING: "hi" },
  });
  assert.equal(v1.version.version, 1);
  assert.equal(v1.head?.stable, 1);
  const v2 = await center.change({
    layer: "app",
    namespace: NS,
    author: "user b",
    set: { GREETING: "hello", X: "1" },
  });
  assert.deepEqual(v2.version.entries.GREETING, { kind: "key", value: "hello" });
  assert.equal(v2.version.author, "user b");
  await rejects(
    center.change({ layer: "app", namespace: NS, author: "a", set: { X: "1" } }),
    "conflict",
    /nothing to change/,
  );
  const v3 = await center.change({ layer: "app", namespace: NS, author: "a", rollbackTo: 1 });
  assert.equal(v3.version.version, 3);
  assert.equal(v3.version.rollbackOf, 1);
  assert.deepEqual(v3.version.entries, v1.version.entries);
  assert.equal((await center.effective("shop", "web"))?.values.GREETING, "hi");
  assert.deepEqual(
    (await center.versions("app", NS)).map((v) => v.version),
    [1, 2, 3],
  );
});

test("a file that does not parse is refused with a 400 naming it, and the running version stays", async () => {
  const center = new ConfigCenter(new MemoryStore());
  await center.change({
    layer: "app",
    namespace: NS,
    author: "a",
    files: { "app.json": { format: "json", content: '{"a":1}' } },
  });
  const err = await rejects(
    center.change({
      layer: "app",
      namespace: NS,
      author: "a",
      files: { "app.json": { format: "json", content: '{\n"a":\n\n' } },
    }),
    "invalid",
    // Input that ends too soon: the line it ends on.
    /entries\.app\.json: not valid JSON: .* \(line 2\)/,
  );
  assert.equal(err.details?.[0]?.field, "entries.app.json");
  // An error inside the file: its line once, not V8's "at position 9 (line 2 column 1)" beside it.
  await rejects(
    center.change({
      layer: "app",
      namespace: NS,
      author: "a",
      files: { "app.json": { format: "json", content: '{"a": 1,\n' } },
    }),
    "invalid",
    /^entries\.app\.json: not valid JSON: [^()]* \(line 2\); nothing was changed/,
  );
  await rejects(
    center.change({
      layer: "app",
      namespace: NS,
      author: "a",
      files: { "a.yaml": { format: "yaml", content: "a: [1,\nb: 2" } },
    }),
    "invalid",
    /not valid YAML/,
  );
  await rejects(
    center.change({
      layer: "app",
      namespace: NS,
      author: "a",
      files: { "a.properties": { format: "properties", content: "ok=1\njustakey" } },
    }),
    "invalid",
    /line 2/,
  );
  await rejects(
    center.change({ layer: "app", namespace: NS, author: "a", set: { "../x": "1" } }),
    "invalid",
    /entries\.\.\.\/x/,
  );
  assert.equal((await center.head("shop", "web")).stable, 1);
  assert.equal((await center.versions("app", NS)).length, 1);
});

test("the effective config merges platform < middleware < app and says where each key came from", async () => {
  const center = new ConfigCenter(new MemoryStore());
  await center.change({
    layer: "platform",
    namespace: "base",
    author: "admin",
    set: { TZ: "UTC", LOG: "info" },
  });
  await center.change({
    layer: "middleware",
    namespace: "redis",
    author: "admin",
    set: { LOG: "warn", REDIS_POOL: "4" },
  });
  await rejects(
    center.change({ layer: "app", namespace: NS, author: "a", platform: { name: "base", version: 9 } }),
    "not_found",
  );
  await center.change({
    layer: "app",
    namespace: NS,
    author: "a",
    set: { REDIS_POOL: "8" },
    platform: { name: "base", version: 1 },
    middleware: [{ name: "redis", version: 1 }],
  });
  const eff = await center.effective("shop", "web");
  assert.deepEqual(eff?.values, { TZ: "UTC", LOG: "warn", REDIS_POOL: "8" });
  assert.deepEqual(eff?.origins, { TZ: "platform base@1", LOG: "middleware redis@1", REDIS_POOL: "app v1" });
  // A new platform version changes nothing for the app until it picks it.
  await center.change({ layer: "platform", namespace: "base", author: "admin", set: { TZ: "Europe/Paris" } });
  assert.equal((await center.effective("shop", "web"))?.values.TZ, "UTC");
  await center.change({ layer: "app", namespace: NS, author: "a", platform: { name: "base", version: 2 } });
  assert.equal((await center.effective("shop", "web"))?.values.TZ, "Europe/Paris");
  assert.deepEqual(await center.catalog(), [
    { layer: "platform", name: "base", versions: [1, 2] },
    { layer: "middleware", name: "redis", versions: [1] },
  ]);
});

test("a gray version reaches only its share, blocks other changes, then promotes or rolls back", async () => {
  const store = new MemoryStore();
  const center = new ConfigCenter(store);
  for (let i = 0; i < 10; i++) await store.put("instance", `i${i}`, instance(`i${i}`));
  await center.change({ layer: "app", namespace: NS, author: "a", set: { K: "old" } });
  await center.change({ layer: "app", namespace: NS, author: "a", set: { K: "new" }, gray: { share: 30 } });
  const t = await center.targets("shop", "web");
  assert.equal(t.gray.size, 3);
  assert.equal([...t.target.values()].filter((v) => v === 2).length, 3);
  await rejects(
    center.change({ layer: "app", namespace: NS, author: "a", set: { K: "x" } }),
    "conflict",
    /gray release/,
  );
  // Reported versions: who is behind.
  center.recordApplied(
    [...t.target].map(([id]) => ({ id, generation: 1, state: "healthy" as const, configVersion: 1 })),
  );
  const status = await center.status("shop", "web");
  assert.equal(status.instances.filter((i) => i.behind).length, 3);
  const { aborted } = await center.abortGray("shop", "web");
  assert.equal(aborted, 2);
  assert.equal((await center.status("shop", "web")).instances.filter((i) => i.behind).length, 0);
  await center.change({
    layer: "app",
    namespace: NS,
    author: "a",
    set: { K: "newer" },
    gray: { instances: ["i4"] },
  });
  const named = await center.targets("shop", "web");
  assert.deepEqual([...named.gray], ["i4"]);
  await center.promote("shop", "web");
  assert.equal((await center.head("shop", "web")).stable, 3);
  assert.equal((await center.effective("shop", "web"))?.values.K, "newer");
});

for (const reads of ["store", "informer"] as const) {
  test(`heartbeat config (reads from the ${reads}): the content only when the agent reported another version`, async () => {
    const store = new MemoryStore();
    const informer = reads === "informer" ? controlPlaneInformer(store) : undefined;
    const center = new ConfigCenter(store, new ManualClock(0), informer);
    try {
      await center.change({ layer: "app", namespace: NS, author: "a", set: { K: "v" } });
      await informer?.sync();
      const d = { id: "i1", app: "web", tenant: "shop", service: "web", action: "run" } as never;
      const first = await center.forInstances([d], []);
      assert.equal(first.get("i1")?.version, 1);
      assert.equal(first.get("i1")?.onChange, "file");
      assert.equal(first.get("i1")?.document?.values.K, "v");
      const again = await center.forInstances(
        [d],
        [{ id: "i1", generation: 1, state: "healthy", configVersion: 1 }],
      );
      assert.equal(again.get("i1")?.document, undefined);
      const none = await center.forInstances([{ ...(d as object), app: "other" } as never], []);
      assert.equal(none.size, 0);
      // A new head reaches the informer's reader once synced.
      await center.change({ layer: "app", namespace: NS, author: "a", set: { K: "w" } });
      await informer?.sync();
      assert.equal((await center.forInstances([d], []))?.get("i1")?.version, 2);
    } finally {
      informer?.stop();
    }
  });
}
