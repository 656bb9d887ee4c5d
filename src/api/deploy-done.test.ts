import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { DeployLogEntry } from "../controllers/deploy-log.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { whenServed } from "./deploy-done.ts";
import { GatewayBook } from "./gateway-book.ts";

const done: DeployLogEntry = {
  time: new Date(0).toISOString(),
  type: "done",
  message: "v2 is serving at http://hello.localhost:8080/",
  state: "succeeded",
};

test("a deploy's done line waits for every reporting gateway to serve the version it ended at", async () => {
  const book = new GatewayBook(new MemoryStore(), silentLogger);
  const report = (id: string, version: number) => book.report(id, { version, applied: true, routes: 1 });
  assert.deepEqual(await book.untilApplied(7, 1000), [], "no gateway reports here: nothing to wait for");

  report("a", 7);
  report("b", 6);
  const started = Date.now();
  const waiting = book.untilApplied(7, 5000);
  setTimeout(() => report("b", 8), 200);
  assert.deepEqual(await waiting, []);
  assert.ok(Date.now() - started >= 150, "it waited for b");

  report("b", 9);
  book.report("a", { version: 9, applied: false, serving: 8, routes: 1, error: "bad route" });
  assert.deepEqual(await book.untilApplied(9, 200), ["a"], "a refused it: still behind at the deadline");
});

test("a succeeded done line names a gateway still behind; other lines pass at once", async () => {
  const behind = { configVersion: 5, untilApplied: async () => ["gw-1"] };
  const signal = new AbortController().signal;
  const late = await whenServed(behind, done, signal, 3000);
  assert.equal(late.message, `${done.message} (not yet applied by gateway gw-1 after 3 s)`);
  const failed: DeployLogEntry = { ...done, state: "failed", message: "crashed" };
  assert.equal(await whenServed(behind, failed, signal), failed);
  const step: DeployLogEntry = { ...done, type: "step", state: undefined };
  assert.equal(await whenServed(behind, step, signal), step);
  const caughtUp = { configVersion: 5, untilApplied: async () => [] };
  assert.equal(await whenServed(caughtUp, done, signal), done);
});
