/**
 * The conformance suite every Store must pass (SQLite, memory, later etcd).
 * This file only exports `runStoreConformance`; it registers no tests by
 * itself, so the test runner picking it up is harmless. Each store's own test
 * file calls it with a way to open a fresh, empty store.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HerdError, isCode } from "../common/errors.ts";
import type { Kind } from "../model/objects.ts";
import type { Store, WatchEvent } from "./store.ts";

/** What the suite asks of the store it opens. */
export interface ConformanceStoreOptions {
  /** Keep only this many changes for watches from a revision (the gone test uses a small number). */
  historyLimit?: number;
}

/** Opens a fresh, empty store; `cleanup` closes it and removes whatever it left behind. */
export type OpenConformanceStore = (
  options: ConformanceStoreOptions,
) => Promise<{ store: Store; cleanup: () => Promise<void> }>;

/** How long one awaited watch event may take before the test fails instead of hanging. */
const EVENT_TIMEOUT_MS = 5000;

/** Registers the shared Store suite under `name`, opening a new store for each test. */
export function runStoreConformance(name: string, open: OpenConformanceStore): void {
  /** Runs `body` with a fresh store and an abort signal for its watches; cleans both up however it ends. */
  async function withStore(
    body: (store: Store, signal: AbortSignal) => Promise<void>,
    options: ConformanceStoreOptions = {},
  ): Promise<void> {
    const { store, cleanup } = await open(options);
    const controller = new AbortController();
    try {
      await body(store, controller.signal);
    } finally {
      controller.abort();
      await cleanup();
    }
  }

  describe(`Store conformance: ${name}`, () => {
    test("snapshot holds every kind's objects as of one revision", async () => {
      await withStore(async (store) => {
        assert.deepEqual(await store.snapshot(), { items: [], revision: 0 });
        await store.put("service", "t/a/web", { n: 1 });
        const app = await store.put("app", "t/a", { n: 2 });
        await store.put("app", "t/b", { n: 3 });
        await store.delete("app", "t/b");
        const snap = await store.snapshot();
        assert.equal(snap.revision, 4);
        assert.deepEqual(
          snap.items.map((o) => [o.kind, o.key, o.value]),
          [
            ["app", "t/a", { n: 2 }],
            ["service", "t/a/web", { n: 1 }],
          ],
        );
        assert.deepEqual(snap.items[0], app);
        // A later write is not in a snapshot taken before it.
        await store.put("app", "t/c", { n: 4 });
        assert.equal(snap.items.length, 2);
        assert.equal((await store.snapshot()).items.length, 3);
      });
    });

    test("get returns what put stored, and undefined for a missing key", async () => {
      await withStore(async (store) => {
        assert.equal(await store.get("app", "t/a"), undefined);
        const value = { tenant: "t", name: "a", nested: { list: [1, 2, { x: "y" }] } };
        const put = await store.put("app", "t/a", value);
        assert.equal(put.kind, "app");
        assert.equal(put.key, "t/a");
        assert.equal(put.revision, 1);
        assert.equal(put.createRevision, 1);
        assert.deepEqual(put.value, value);
        assert.deepEqual(await store.get("app", "t/a"), put);
        // The same key under another kind is another object.
        assert.equal(await store.get("service", "t/a"), undefined);
      });
    });

    test("put replaces the value and keeps createRevision", async () => {
      await withStore(async (store) => {
        const first = await store.put("app", "t/a", { v: 1 });
        await store.put("node", "n1", { v: 0 });
        const second = await store.put("app", "t/a", { v: 2 });
        assert.equal(second.revision, 3);
        assert.equal(second.createRevision, first.revision);
        assert.deepEqual((await store.get("app", "t/a"))?.value, { v: 2 });
        // Deleted and created again, it is a new object.
        await store.delete("app", "t/a");
        const third = await store.put("app", "t/a", { v: 3 });
        assert.equal(third.revision, 5);
        assert.equal(third.createRevision, 5);
      });
    });

    test("list returns one kind in key order, with prefix and limit", async () => {
      await withStore(async (store) => {
        const keys = ["t/b", "t/a/2", "t", "t/a", "t/a/10", "u/a", "t/a/1", "s", "t/é", "t/z", "t/😀"];
        for (const key of keys) await store.put("service", key, { key });
        await store.put("app", "t/a", { other: true });

        const all = await store.list<{ key: string }>("service");
        // Byte (code point) order, as SQLite and etcd sort keys.
        const sorted = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        assert.deepEqual(
          all.items.map((item) => item.key),
          sorted,
        );
        assert.ok(all.items.every((item) => item.kind === "service" && item.value.key === item.key));

        const underA = await store.list("service", { prefix: "t/a/" });
        assert.deepEqual(
          underA.items.map((item) => item.key),
          ["t/a/1", "t/a/10", "t/a/2"],
        );
        const limited = await store.list("service", { prefix: "t/", limit: 2 });
        assert.deepEqual(
          limited.items.map((item) => item.key),
          ["t/a", "t/a/1"],
        );
        assert.deepEqual((await store.list("service", { prefix: "x" })).items, []);
        assert.deepEqual((await store.list("node")).items, []);
      });
    });

    test("list returns the revision it read at", async () => {
      await withStore(async (store) => {
        assert.equal((await store.list("app")).revision, 0);
        await store.put("app", "t/a", {});
        await store.put("node", "n1", {});
        const listed = await store.list("app");
        assert.equal(listed.revision, 2);
        assert.equal(listed.revision, await store.revision());
      });
    });

    test("delete removes the object and says whether there was one", async () => {
      await withStore(async (store) => {
        await store.put("node", "n1", { up: true });
        assert.equal(await store.delete("node", "n1"), true);
        assert.equal(await store.get("node", "n1"), undefined);
        assert.equal(await store.revision(), 2);
        assert.equal(await store.delete("node", "n1"), false);
        assert.equal(await store.delete("node", "never"), false);
        // Deleting nothing is not a change.
        assert.equal(await store.revision(), 2);
      });
    });

    test("expectRevision 0 creates only when the key is absent", async () => {
      await withStore(async (store) => {
        const created = await store.put("app", "t/a", { v: 1 }, { expectRevision: 0 });
        await assert.rejects(store.put("app", "t/a", { v: 2 }, { expectRevision: 0 }), (err) =>
          conflictNaming(err, "app", "t/a", [created.revision, 0]),
        );
        assert.deepEqual((await store.get("app", "t/a"))?.value, { v: 1 });
        assert.equal(await store.delete("app", "missing", { expectRevision: 0 }), false);
        await assert.rejects(store.delete("app", "t/a", { expectRevision: 0 }), (err) =>
          isCode(err, "conflict"),
        );
      });
    });

    test("expectRevision updates and deletes only at that revision", async () => {
      await withStore(async (store) => {
        const first = await store.put("service", "t/a/web", { instances: 1 });
        const second = await store.put(
          "service",
          "t/a/web",
          { instances: 2 },
          { expectRevision: first.revision },
        );
        await assert.rejects(
          store.put("service", "t/a/web", { instances: 3 }, { expectRevision: first.revision }),
          (err) => conflictNaming(err, "service", "t/a/web", [second.revision, first.revision]),
        );
        await assert.rejects(store.delete("service", "t/a/web", { expectRevision: first.revision }), (err) =>
          conflictNaming(err, "service", "t/a/web", [second.revision, first.revision]),
        );
        await assert.rejects(store.put("service", "t/a/none", {}, { expectRevision: 7 }), (err) =>
          conflictNaming(err, "service", "t/a/none", [7]),
        );
        assert.equal(await store.revision(), second.revision, "a rejected write is not a change");
        assert.equal(await store.delete("service", "t/a/web", { expectRevision: second.revision }), true);
      });
    });

    test("revisions are global and strictly increasing", async () => {
      await withStore(async (store) => {
        const seen: number[] = [];
        seen.push((await store.put("app", "t/a", {})).revision);
        seen.push((await store.put("node", "n1", {})).revision);
        seen.push((await store.put("app", "t/a", { v: 2 })).revision);
        await store.delete("node", "n1");
        seen.push(await store.revision());
        seen.push((await store.put("node", "n1", {})).revision);
        assert.deepEqual(seen, [1, 2, 3, 4, 5]);
      });
    });

    test("concurrent puts with the same expectRevision: exactly one wins", async () => {
      await withStore(async (store) => {
        const base = await store.put("instance", "i1", { n: -1 });
        const updates = await Promise.allSettled(
          Array.from({ length: 10 }, (_, n) =>
            store.put("instance", "i1", { n }, { expectRevision: base.revision }),
          ),
        );
        const won = updates.filter((r) => r.status === "fulfilled");
        assert.equal(won.length, 1);
        for (const r of updates) if (r.status === "rejected") assert.ok(isCode(r.reason, "conflict"));
        assert.deepEqual((await store.get("instance", "i1"))?.value, won[0].value.value);

        const creates = await Promise.allSettled(
          Array.from({ length: 10 }, (_, n) => store.put("instance", "i2", { n }, { expectRevision: 0 })),
        );
        assert.equal(creates.filter((r) => r.status === "fulfilled").length, 1);
      });
    });

    test("returned objects are frozen copies", async () => {
      await withStore(async (store, signal) => {
        const input = { name: "a", nested: { list: [{ deep: 1 }] } };
        const events = store.watch({ signal })[Symbol.asyncIterator]();
        const put = await store.put("app", "t/a", input);
        input.nested.list[0].deep = 2;
        const got = await store.get<typeof input>("app", "t/a");
        assert.equal(got?.value.nested.list[0].deep, 1, "the store kept its own copy");
        const listed = (await store.list<typeof input>("app")).items[0];
        const event = (await nextEvent(events)) as WatchEvent<typeof input>;
        for (const object of [put, got!, listed, event.object]) assertDeepFrozen(object);
        assertDeepFrozen(event);
      });
    });

    test("watch replays changes after a revision, then delivers live ones", async () => {
      await withStore(async (store, signal) => {
        await store.put("app", "t/a", { v: 1 });
        await store.put("app", "t/b", { v: 1 });
        await store.put("app", "t/a", { v: 2 });
        const events = store.watch({ fromRevision: 1, signal })[Symbol.asyncIterator]();
        const replayed = [await nextEvent(events), await nextEvent(events)];
        assert.deepEqual(
          replayed.map((e) => [e.type, e.key, e.revision, e.object.value]),
          [
            ["put", "t/b", 2, { v: 1 }],
            ["put", "t/a", 3, { v: 2 }],
          ],
        );
        assert.equal(replayed[1].object.createRevision, 1);
        await store.put("app", "t/c", { v: 1 });
        const live = await nextEvent(events);
        assert.deepEqual([live.type, live.kind, live.key, live.revision], ["put", "app", "t/c", 4]);
      });
    });

    test("watch from the current revision delivers only what comes next", async () => {
      await withStore(async (store, signal) => {
        await store.put("app", "t/a", {});
        const events = store.watch({ fromRevision: await store.revision(), signal })[Symbol.asyncIterator]();
        await store.put("app", "t/b", {});
        assert.equal((await nextEvent(events)).key, "t/b");
      });
    });

    test("watch without fromRevision delivers only changes after the call", async () => {
      await withStore(async (store, signal) => {
        await store.put("app", "t/old", {});
        const events = store.watch({ signal })[Symbol.asyncIterator]();
        await store.put("app", "t/new", {});
        const event = await nextEvent(events);
        assert.deepEqual([event.key, event.revision], ["t/new", 2]);
      });
    });

    test("watch loses and repeats nothing while writes race its start", async () => {
      await withStore(async (store, signal) => {
        const total = 60;
        for (let n = 0; n < 10; n++) await store.put("instance", `i${n}`, { n });
        // Writes keep landing while the watch subscribes, replays and goes live.
        const writing = (async () => {
          for (let n = 10; n < total; n++) {
            await store.put("instance", `i${n % 7}`, { n });
            await new Promise((resolve) => setImmediate(resolve));
          }
        })();
        const events = store.watch({ fromRevision: 5, signal })[Symbol.asyncIterator]();
        // Let a write land between subscribing and reading history, so the
        // same change is both in history and in the live buffer.
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
        const revisions: number[] = [];
        while (revisions.length < total - 5) revisions.push((await nextEvent(events)).revision);
        await writing;
        assert.deepEqual(
          revisions,
          Array.from({ length: total - 5 }, (_, n) => n + 6),
        );
      });
    });

    test("a slow watcher does not block writers and gets every change afterwards", async () => {
      await withStore(async (store, signal) => {
        const events = store.watch({ signal })[Symbol.asyncIterator]();
        for (let n = 0; n < 200; n++) await store.put("event", `e${String(n).padStart(3, "0")}`, { n });
        for (let n = 0; n < 200; n++) assert.equal((await nextEvent(events)).revision, n + 1);
      });
    });

    test("watch delivers only the kinds asked for, in replay and live", async () => {
      await withStore(async (store, signal) => {
        await store.put("app", "t/a", {});
        await store.put("node", "n1", {});
        await store.put("service", "t/a/web", {});
        const events = store
          .watch({ kinds: ["node", "service"], fromRevision: 0, signal })
          [Symbol.asyncIterator]();
        await store.put("app", "t/b", {});
        await store.put("node", "n2", {});
        await store.delete("app", "t/a");
        await store.delete("node", "n1");
        const got: string[] = [];
        for (let n = 0; n < 4; n++) {
          const e = await nextEvent(events);
          got.push(`${e.type} ${e.kind} ${e.key} ${e.revision}`);
        }
        assert.deepEqual(got, [
          "put node n1 2",
          "put service t/a/web 3",
          "put node n2 5",
          "delete node n1 7",
        ]);
      });
    });

    test("delete events carry the last value", async () => {
      await withStore(async (store, signal) => {
        await store.put("node", "n1", { v: 1 });
        const last = await store.put("node", "n1", { v: 2 });
        await store.delete("node", "n1");
        const check = (event: WatchEvent) => {
          assert.equal(event.type, "delete");
          assert.equal(event.revision, 3);
          assert.deepEqual(event.object.value, { v: 2 });
          assert.equal(event.object.revision, last.revision);
          assert.equal(event.object.createRevision, 1);
        };
        // From history, and live.
        const replay = store.watch({ fromRevision: 2, signal })[Symbol.asyncIterator]();
        check(await nextEvent(replay));
        const live = store.watch({ signal })[Symbol.asyncIterator]();
        await store.put("node", "n2", { v: 9 });
        await store.delete("node", "n2");
        const [put, deleted] = [await nextEvent(live), await nextEvent(live)];
        assert.equal(put.type, "put");
        assert.deepEqual(
          [deleted.type, deleted.key, deleted.revision, deleted.object.value],
          ["delete", "n2", 5, { v: 9 }],
        );
      });
    });

    test("watch ends cleanly when its signal aborts", async () => {
      await withStore(async (store) => {
        // Aborted while waiting for the next change.
        const waiting = new AbortController();
        const events = store.watch({ signal: waiting.signal })[Symbol.asyncIterator]();
        const pending = events.next();
        setTimeout(() => waiting.abort(), 20);
        assert.deepEqual(await withTimeout(pending), { done: true, value: undefined });

        // Aborted before iteration starts.
        const early = new AbortController();
        early.abort();
        const none = store.watch({ fromRevision: 0, signal: early.signal });
        for await (const _ of none) assert.fail("an aborted watch delivers nothing");

        // Aborted by the consumer in the middle of a for-await loop.
        await store.put("app", "t/a", {});
        await store.put("app", "t/b", {});
        const midway = new AbortController();
        const keys: string[] = [];
        for await (const event of store.watch({ fromRevision: 0, signal: midway.signal })) {
          keys.push(event.key);
          midway.abort();
        }
        assert.deepEqual(keys, ["t/a"]);
      });
    });

    test("watch from a compacted revision throws gone", async () => {
      await withStore(
        async (store, signal) => {
          for (let n = 1; n <= 6; n++) await store.put("app", `t/a${n}`, { n });
          for (const fromRevision of [0, 2]) {
            await assert.rejects(
              async () => {
                for await (const _ of store.watch({ fromRevision, signal }))
                  assert.fail("no event before gone");
              },
              (err) => isCode(err, "gone") && (err as HerdError).status === 410,
            );
          }
          // The oldest revision still fully covered by history works.
          const events = store.watch({ fromRevision: 3, signal })[Symbol.asyncIterator]();
          const revisions = [await nextEvent(events), await nextEvent(events), await nextEvent(events)].map(
            (e) => e.revision,
          );
          assert.deepEqual(revisions, [4, 5, 6]);
        },
        { historyLimit: 3 },
      );
    });
  });
}

/** Whether `err` is a conflict whose message names the kind, the key and the revisions. */
function conflictNaming(err: unknown, kind: Kind, key: string, revisions: number[]): boolean {
  assert.ok(err instanceof HerdError, `expected a HerdError, got ${err}`);
  assert.equal(err.code, "conflict");
  assert.equal(err.status, 409);
  assert.match(err.message, new RegExp(kind));
  assert.ok(err.message.includes(key), `message names the key: ${err.message}`);
  for (const revision of revisions) {
    if (revision === 0) assert.match(err.message, /not to exist|does not exist/);
    else assert.match(err.message, new RegExp(`\\b${revision}\\b`));
  }
  return true;
}

/** The next watch event, failing (not hanging) when none comes in time or the watch ends. */
async function nextEvent(events: AsyncIterator<WatchEvent>): Promise<WatchEvent> {
  const result = await withTimeout(events.next());
  assert.equal(result.done, false, "the watch ended early");
  return result.value as WatchEvent;
}

async function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing within ${EVENT_TIMEOUT_MS} ms`)), EVENT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function assertDeepFrozen(value: unknown, path = "object"): void {
  if (value === null || typeof value !== "object") return;
  assert.ok(Object.isFrozen(value), `${path} is frozen`);
  for (const [name, child] of Object.entries(value)) assertDeepFrozen(child, `${path}.${name}`);
}
