import assert from "node:assert/strict";
import { test } from "node:test";
import { isCode } from "../common/errors.ts";
import { MemoryStore } from "./memory-store.ts";
import { runStoreConformance } from "./store.case.test.ts";
import { updateObject } from "./store.ts";

runStoreConformance("memory", async (options) => {
  const store = new MemoryStore(options);
  return { store, cleanup: () => store.close() };
});

test("memory: a watcher more than historyLimit changes behind ends with gone", async () => {
  const store = new MemoryStore({ historyLimit: 5 });
  const controller = new AbortController();
  try {
    const events = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    for (let n = 0; n < 7; n++) await store.put("event", `e${n}`, { n });
    await assert.rejects(events.next(), (err) => isCode(err, "gone"));
  } finally {
    controller.abort();
    await store.close();
  }
});

test("memory: closing the store ends open watches with unavailable, and later calls too", async () => {
  const store = new MemoryStore();
  const controller = new AbortController();
  try {
    const events = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    const pending = events.next();
    await store.close();
    await assert.rejects(pending, (err) => isCode(err, "unavailable"));
    await assert.rejects(store.get("app", "t/a"), (err) => isCode(err, "unavailable"));
  } finally {
    controller.abort();
  }
});

test("updateObject: a change lost to another writer is made again on what that writer wrote", async () => {
  const store = new MemoryStore();
  try {
    // Absent: created (only if still absent).
    const made = await updateObject<{ n: number }>(store, "app", "t/a", (o) => ({
      n: (o?.value.n ?? 0) + 1,
    }));
    assert.deepEqual(made?.value, { n: 1 });
    // The first attempt reads n=1, then another writer puts n=10 before it writes: it reads again.
    let attempts = 0;
    const after = await updateObject<{ n: number }>(store, "app", "t/a", async (o) => {
      if (++attempts === 1) await store.put("app", "t/a", { n: 10 });
      return { n: (o?.value.n ?? 0) + 1 };
    });
    assert.equal(attempts, 2);
    assert.deepEqual(after?.value, { n: 11 });
    // Undefined writes nothing; a throw refuses and writes nothing.
    const revision = await store.revision();
    assert.equal(await updateObject(store, "app", "t/a", () => undefined), undefined);
    await assert.rejects(
      updateObject(store, "app", "t/a", () => {
        throw new Error("refused");
      }),
      /refused/,
    );
    assert.equal(await store.revision(), revision);
  } finally {
    await store.close();
  }
});
