// Agents' long poll: a wait returns when what its node's agent is told changes (a new
// instance, a stop, a restart), not for other nodes or the agent's own status writes.

import assert from "node:assert/strict";
import { test } from "node:test";
import { testInstance } from "../gateway/testing.ts";
import type { Instance } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { NodeWaits } from "./node-waits.ts";

const put = (store: MemoryStore, i: Instance) => store.put("instance", i.id, i);
/** Resolves with "timeout" when `wait` has not returned within `ms`. */
const within = <T>(wait: Promise<T>, ms: number) =>
  Promise.race([wait, new Promise<"timeout">((r) => setTimeout(r, ms, "timeout"))]);

test("a wait returns on a change for its node only, and at once when it is behind", async (t) => {
  const store = new MemoryStore();
  const shutdown = new AbortController();
  t.after(() => shutdown.abort());
  const waits = new NodeWaits(store, shutdown.signal, () => {});
  const gone = new AbortController().signal;
  const a1 = testInstance("a1", { app: "shop", service: "web" }, "a", 20000);
  await put(store, a1);

  // Without `since`: at once, with the revision to wait from.
  const since = await waits.wait("a", undefined, 5000, gone);
  assert.equal(typeof since, "number");

  // Another node's new instance, and this node's own status write (state, port): no return.
  const waiting = waits.wait("a", since, 5000, gone);
  await put(store, testInstance("b1", { app: "shop", service: "web" }, "b", 20001));
  await put(store, { ...a1, state: "ready", port: 20005 });
  assert.equal(await within(waiting, 150), "timeout");

  // A new instance placed on this node (a service woken from zero): it returns with a later revision.
  await put(store, testInstance("a2", { app: "shop", service: "web" }, "a", undefined, "provisioning"));
  const changed = await within(waiting, 2000);
  assert.ok(typeof changed === "number" && changed > since, `returned ${changed}`);

  // Behind already: at once. A restart (generation) and a stop count; so does a deletion.
  assert.equal(await waits.wait("a", since, 5000, gone), changed);
  for (const change of [
    () => put(store, { ...a1, generation: 2 }),
    () => put(store, { ...a1, generation: 2, desired: "stopped" }),
    () => store.delete("instance", "a1"),
  ]) {
    const from = await waits.wait("a", undefined, 5000, gone);
    const next = waits.wait("a", from, 5000, gone);
    await change();
    const got = await within(next, 2000);
    assert.ok(typeof got === "number" && got > from);
  }
});

test("a wait ends at its timeout, when its agent leaves, and when the server closes", async (t) => {
  const store = new MemoryStore();
  const shutdown = new AbortController();
  t.after(() => shutdown.abort());
  const waits = new NodeWaits(store, shutdown.signal, () => {});
  const since = await waits.wait("a", undefined, 5000, new AbortController().signal);
  const started = Date.now();
  assert.equal(await waits.wait("a", since, 100, new AbortController().signal), since);
  assert.ok(Date.now() - started >= 90);
  const agent = new AbortController();
  const left = waits.wait("a", since, 60_000, agent.signal);
  agent.abort();
  assert.equal(await within(left, 1000), since);
  const closing = waits.wait("a", since, 60_000, new AbortController().signal);
  shutdown.abort();
  assert.equal(await within(closing, 1000), since);
});

test("a new config version of an app wakes the nodes that run it, and only those", async (t) => {
  const store = new MemoryStore();
  const shutdown = new AbortController();
  t.after(() => shutdown.abort());
  const waits = new NodeWaits(store, shutdown.signal, () => {});
  const gone = new AbortController().signal;
  await put(store, testInstance("a1", { app: "shop", service: "web" }, "a", 20000));
  await put(store, testInstance("b1", { app: "blog", service: "web" }, "b", 20001));
  const sinceA = await waits.wait("a", undefined, 5000, gone);
  const sinceB = await waits.wait("b", undefined, 5000, gone);
  const onA = waits.wait("a", sinceA, 5000, gone);
  const onB = waits.wait("b", sinceB, 5000, gone);
  await store.put("config_head", "default/shop", { tenant: "default", app: "shop", stable: 2 });
  const got = await within(onA, 2000);
  assert.ok(typeof got === "number" && got > sinceA, `node a returned ${got}`);
  assert.equal(await within(onB, 150), "timeout");
});
