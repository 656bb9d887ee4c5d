import assert from "node:assert/strict";
import { test } from "node:test";
import type { Instance } from "../model/objects.ts";
import { controlPlaneInformer } from "./informer-kinds.ts";
import { MemoryStore } from "./memory-store.ts";

function instance(id: string, node: string | null, service = "web"): Instance {
  return {
    id,
    tenant: "t",
    app: "shop",
    service,
    release: 1,
    mode: "cattle",
    node,
    desired: "running",
    generation: 1,
    state: node ? "provisioning" : "pending",
    reason: "",
    message: "",
    run: {
      slug: "x",
      command: "node app.js",
      env: {},
      resources: { cpu: 100, memory: 64 * 1024 * 1024 },
      health: { kind: "process", startupMs: 1000 } as Instance["run"]["health"],
    },
    restarts: 0,
    createdAt: "2026-01-01T00:00:00.000Z",
  };
}

test("informer: what was there before it started, then every change, indexed by node and service", async () => {
  const store = new MemoryStore();
  await store.put("instance", "a", instance("a", "n1"));
  await store.put("instance", "b", instance("b", null));
  await store.put("event", "e1", { note: "not kept" });
  const informer = controlPlaneInformer(store);
  try {
    await informer.sync();
    assert.deepEqual(
      informer.by<Instance>("instance", "node", "n1").map((o) => o.key),
      ["a"],
    );
    assert.equal(informer.by("instance", "service", "t/shop/web").length, 2);

    // b is placed on n2, a moves to n2, c appears, then a is deleted.
    const b = await store.get<Instance>("instance", "b");
    await store.put("instance", "b", instance("b", "n2"), { expectRevision: b?.revision });
    await store.put("instance", "a", instance("a", "n2"));
    await store.put("instance", "c", instance("c", "n1", "worker"));
    await informer.sync();
    assert.deepEqual(
      informer.by("instance", "node", "n1").map((o) => o.key),
      ["c"],
    );
    assert.deepEqual(
      informer
        .by("instance", "node", "n2")
        .map((o) => o.key)
        .sort(),
      ["a", "b"],
    );
    assert.deepEqual(informer.values("instance", "service").sort(), ["t/shop/web", "t/shop/worker"]);
    await store.delete("instance", "a");
    await informer.sync();
    assert.equal(informer.get("instance", "a"), undefined);
    assert.deepEqual(
      informer.by("instance", "node", "n2").map((o) => o.key),
      ["b"],
    );
    // The cache hands out what the store wrote, at the store's revision: a CAS write with it succeeds.
    const cached = informer.get<Instance>("instance", "b");
    const stored = await store.get<Instance>("instance", "b");
    assert.equal(cached?.revision, stored?.revision);
    assert.deepEqual(cached?.value, stored?.value);
    await store.put(
      "instance",
      "b",
      { ...cached?.value, state: "running" },
      { expectRevision: cached?.revision },
    );
  } finally {
    informer.stop();
    await store.close();
  }
});

test("informer: a read a moment old only makes a write with its revision fail", async () => {
  const store = new MemoryStore();
  await store.put("instance", "a", instance("a", "n1"));
  const informer = controlPlaneInformer(store);
  try {
    await informer.sync();
    const seen = informer.get<Instance>("instance", "a");
    await store.put("instance", "a", instance("a", "n2"));
    // The cache may still hold the old object; writing with its revision is refused by the store.
    await assert.rejects(
      store.put("instance", "a", { ...seen?.value, state: "running" }, { expectRevision: seen?.revision }),
      (err: Error & { code?: string }) => err.code === "conflict",
    );
    await informer.sync();
    assert.equal(informer.get<Instance>("instance", "a")?.value.node, "n2");
  } finally {
    informer.stop();
    await store.close();
  }
});

test("informer: a watch that falls behind the store's history relists and serves the current state", async () => {
  const store = new MemoryStore({ historyLimit: 5 });
  const informer = controlPlaneInformer(store);
  try {
    await informer.sync();
    // More changes than the store keeps, written without yielding: the informer's watch overflows (gone).
    const writes: Promise<unknown>[] = [];
    for (let n = 0; n < 50; n++) writes.push(store.put("instance", `i${n}`, instance(`i${n}`, "n1")));
    writes.push(store.delete("instance", "i0"));
    await Promise.all(writes);
    await informer.sync();
    assert.equal(informer.count("instance"), 49);
    assert.equal(informer.by("instance", "node", "n1").length, 49);
    assert.equal(informer.get("instance", "i0"), undefined);
  } finally {
    informer.stop();
    await store.close();
  }
});

test("informer: changes(kind) moves when an object of that kind changes, and only then", async () => {
  const store = new MemoryStore();
  const informer = controlPlaneInformer(store);
  try {
    await informer.sync();
    const before = informer.changes("service");
    await store.put("instance", "a", instance("a", "n1"));
    await store.put("event", "e1", { note: "not kept" });
    await informer.sync();
    assert.equal(informer.changes("service"), before, "other kinds leave it");
    await store.put("service", "t/shop/web", { tenant: "t", app: "shop", name: "web" });
    await informer.sync();
    const put = informer.changes("service");
    assert.notEqual(put, before);
    await store.delete("service", "t/shop/web");
    await informer.sync();
    assert.notEqual(informer.changes("service"), put);
  } finally {
    informer.stop();
  }
});

test("informer: subscribe hears each change with the object before and after, and a reset on relist", async () => {
  const store = new MemoryStore({ historyLimit: 5 });
  const informer = controlPlaneInformer(store);
  const heard: string[] = [];
  const unsubscribe = informer.subscribe((c) => {
    if (c.reset) heard.push("reset");
    else
      heard.push(
        `${c.kind} ${c.key} ${(c.before?.value as Instance | undefined)?.node ?? "-"}→${(c.after?.value as Instance | undefined)?.node ?? "-"}`,
      );
  });
  try {
    await informer.sync();
    assert.deepEqual(heard, ["reset"], "the first list is a reset");
    await store.put("instance", "a", instance("a", null));
    const a = await store.get<Instance>("instance", "a");
    await store.put("instance", "a", instance("a", "n1"), { expectRevision: a?.revision ?? 0 });
    await store.put("event", "e1", { note: "not kept" });
    await store.delete("instance", "a");
    await informer.sync();
    assert.deepEqual(heard.slice(1), ["instance a -→-", "instance a -→n1", "instance a n1→-"]);
    // Fall behind the store's history: the relist is heard as a reset.
    const writes: Promise<unknown>[] = [];
    for (let n = 0; n < 20; n++) writes.push(store.put("instance", `i${n}`, instance(`i${n}`, "n1")));
    await Promise.all(writes);
    await informer.sync();
    assert.ok(heard.includes("reset", 1), heard.join(", "));
    unsubscribe();
    const count = heard.length;
    await store.put("instance", "z", instance("z", "n2"));
    await informer.sync();
    assert.equal(heard.length, count, "no more after unsubscribe");
  } finally {
    informer.stop();
    await store.close();
  }
});
