import assert from "node:assert/strict";
import { test } from "node:test";
import { isCode } from "../common/errors.ts";
import { MemoryStore } from "./memory-store.ts";
import { runStoreConformance } from "./store.case.test.ts";

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
